"""Hessian-free training of a small recurrent network: each update solves (H + λI) d = -g
by conjugate gradients, where every product H v is `ik.Rop` of the gradient — the R-operator
taken through the scan, never forming H (Martens & Sutskever's method, in miniature).

    python examples/hessian_free.py [--iterations 15] [--hidden 8]

The task: read a noisy sine wave and predict its next value; the model is a tanh RNN
with a linear read-out, loss = mean squared error.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import irkit as ik


def data(T: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 6 * np.pi, T + 1)
    wave = np.sin(t) + 0.05 * rng.standard_normal(T + 1)
    return wave[:-1, None].astype("float64"), wave[1:].astype("float64")


def build():
    x, y = ik.matrix("x", dtype="float64"), ik.vector("y", dtype="float64")
    params = [ik.matrix("W", dtype="float64"), ik.matrix("U", dtype="float64"), ik.vector("b", dtype="float64"),
              ik.vector("v", dtype="float64")]
    W, U, b, v = params
    h0 = ik.zeros((U.shape[0],), "float64")
    hs, _ = ik.scan(lambda x_t, h, W, U, b: ik.tanh(ik.dot(x_t, W) + ik.dot(h, U) + b), sequences=x,
                    outputs_info=h0, non_sequences=[W, U, b])
    loss = ik.mean((ik.dot(hs, v) - y) ** 2)
    grads = ik.grad(loss, params)
    directions = [ik.tensor(f"d{p.name}", shape=(None,) * p.ndim, dtype="float64") for p in params]
    hv = ik.Rop(grads, params, directions)          # H d, through the scan's jvp rule
    loss_and_grad = ik.function([x, y, *params], [loss, *grads])
    hessian_vector = ik.function([x, y, *params, *directions], hv)
    return loss_and_grad, hessian_vector


def conjugate_gradient(apply, g, iters: int = 20, tol: float = 1e-10):
    """Solve apply(d) = -g for d (lists of arrays)."""
    def dot(a, b):
        return sum(float(np.vdot(p, q)) for p, q in zip(a, b))
    d = [np.zeros_like(t) for t in g]
    r = [-t for t in g]
    p = [t.copy() for t in r]
    rr = dot(r, r)
    for _ in range(iters):
        ap = apply(p)
        curvature = dot(p, ap)
        if curvature <= 0:          # negative curvature: stop at the current point
            break
        alpha = rr / curvature
        d = [a + alpha * b for a, b in zip(d, p)]
        r = [a - alpha * b for a, b in zip(r, ap)]
        new = dot(r, r)
        if new < tol:
            break
        p = [a + (new / rr) * b for a, b in zip(r, p)]
        rr = new
    return d


def main(iterations: int = 15, hidden: int = 8, damping: float = 1e-2, seed: int = 0, quiet: bool = False):
    x, y = data(seed=seed)
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal((1, hidden)) * 0.5, rng.standard_normal((hidden, hidden)) * 0.3,
              np.zeros(hidden), rng.standard_normal(hidden) * 0.3]
    t0 = time.perf_counter()
    loss_and_grad, hessian_vector = build()
    losses = []
    for it in range(iterations):
        loss, *g = loss_and_grad(x, y, *params)
        losses.append(float(loss))

        def apply(vs):
            hv = hessian_vector(x, y, *params, *vs)
            return [a + damping * b for a, b in zip(hv, vs)]
        step = conjugate_gradient(apply, g)
        trial = [p + s for p, s in zip(params, step)]
        if loss_and_grad(x, y, *trial)[0] < loss:
            params, damping = trial, damping * 0.7
        else:
            damping *= 3.0   # the quadratic model was wrong: trust it less
        if not quiet:
            print(f"iteration {it + 1:2d}  loss {loss:.5f}  damping {damping:.3g}")
    final = float(loss_and_grad(x, y, *params)[0])
    if not quiet:
        print(f"final loss {final:.5f} (from {losses[0]:.5f}) in {time.perf_counter() - t0:.1f} s")
    return losses[0], final


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=15)
    ap.add_argument("--hidden", type=int, default=8)
    args = ap.parse_args()
    main(args.iterations, args.hidden)
