"""Recurrent workloads: an Elman RNN forward and back-propagated through time, by
irkit's scan, a hand-written numpy BPTT, and (when installed) JAX's lax.scan and
PyTensor's scan, on the same data.

- `rnn_fwd_*` / `rnn_bptt_*`: h_t = tanh(x_t W + h_{t-1} U), float32; BPTT is the
  gradient of sum(h) with respect to W, U and h0.
- `rnn2012_*`: the Theano 2012 paper's RNN benchmark: a word-level Elman network
  (sigmoid hidden, softmax output over the vocabulary, summed NLL), 100-step
  sequences, batch 1, one full BPTT + SGD update per sequence; reported as words/s.
"""

from __future__ import annotations

import sys
from typing import Callable

import numpy as np

import irkit as ik


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# ---------------------------------------------------------------------------
# tanh RNN: forward and BPTT
# ---------------------------------------------------------------------------

def _rnn_data(T: int, B: int, I: int, H: int):  # noqa: E741
    rng = np.random.default_rng(7)
    x = rng.standard_normal((T, B, I)).astype("float32")
    W = (rng.standard_normal((I, H)) / np.sqrt(I)).astype("float32")
    U = (rng.standard_normal((H, H)) / np.sqrt(H)).astype("float32")
    h0 = np.zeros((B, H), "float32")
    return x, W, U, h0


def _numpy_forward(x, W, U, h0):
    hs = np.empty((len(x),) + h0.shape, np.float32)
    h = h0
    xw = x @ W  # the input projection of every step at once
    for t in range(len(x)):
        h = np.tanh(xw[t] + h @ U)
        hs[t] = h
    return hs


def _numpy_bptt(x, W, U, h0):
    hs = _numpy_forward(x, W, U, h0)
    T = len(x)
    prev = np.concatenate([h0[None], hs[:-1]])
    deltas = np.empty_like(hs)
    dh = np.zeros_like(h0)
    for t in range(T - 1, -1, -1):
        da = (1.0 + dh) * (1.0 - hs[t] * hs[t])
        deltas[t] = da
        dh = da @ U.T
    B, H = h0.shape
    flat = deltas.reshape(T * B, H)
    dW = x.reshape(T * B, -1).T @ flat
    dU = prev.reshape(T * B, H).T @ flat
    return dW, dU, dh


def _irkit_rnn(grad: bool):
    x = ik.tensor3("x", dtype="float32")
    W, U, h0 = ik.matrix("W", dtype="float32"), ik.matrix("U", dtype="float32"), ik.matrix("h0", dtype="float32")
    xw = ik.reshape(ik.dot(ik.reshape(x, (-1, x.shape[2])), W), (x.shape[0], x.shape[1], W.shape[1]))
    hs, _ = ik.scan(lambda a, h, U: ik.tanh(a + ik.dot(h, U)), sequences=xw, outputs_info=h0, non_sequences=U)
    if not grad:
        return ik.function([x, W, U, h0], hs)
    return ik.function([x, W, U, h0], ik.grad(ik.sum(hs), [W, U, h0]))


def _jax_rnn(grad: bool):
    import jax
    import jax.numpy as jnp

    def forward(x, W, U, h0):
        def step(h, a):
            h = jnp.tanh(a + h @ U)
            return h, h
        _, hs = jax.lax.scan(step, h0, x @ W)
        return hs
    if not grad:
        return jax.jit(forward)
    return jax.jit(jax.grad(lambda x, W, U, h0: forward(x, W, U, h0).sum(), argnums=(1, 2, 3)))


def _pytensor_rnn(grad: bool):
    import pytensor
    import pytensor.tensor as pt
    x, W, U, h0 = pt.tensor3("x", dtype="float32"), pt.matrix("W", dtype="float32"), \
        pt.matrix("U", dtype="float32"), pt.matrix("h0", dtype="float32")
    hs, _ = pytensor.scan(lambda a, h, U: pt.tanh(a + pt.dot(h, U)), sequences=pt.dot(x, W), outputs_info=h0,
                          non_sequences=U, mode=_pytensor_mode())
    out = hs if not grad else pytensor.grad(hs.sum(), [W, U, h0])
    return pytensor.function([x, W, U, h0], out, mode=_pytensor_mode())


def _pytensor_mode():
    """PyTensor's C backend: its numba backend needs another llvmlite than irkit's, and both
    run in this one process."""
    import pytensor
    from pytensor.compile.mode import Mode
    pytensor.config.linker = "cvm"        # also for the scans that pytensor.grad makes
    pytensor.config.mode = "FAST_RUN"
    return Mode(linker="cvm", optimizer="fast_run")


def peer(name: str, make: Callable[[], Callable], out: dict) -> None:
    """Add a peer system when it is installed and builds; say why when it does not."""
    try:
        out[name] = make()
    except ImportError:
        return
    except Exception as e:  # an installed peer that fails is reported, not fatal
        print(f"  ({name} left out: {type(e).__name__}: {str(e).splitlines()[0][:120]})", file=sys.stderr)


def _peers(make_jax: Callable, make_pytensor: Callable, args: tuple, out: dict) -> None:
    def jax_run():
        f = make_jax()
        run = (lambda: [np.asarray(v) for v in (lambda r: r if isinstance(r, tuple) else (r,))(f(*args))])
        run()
        return run

    def pytensor_run():
        g = make_pytensor()
        g(*args)
        return lambda: g(*args)
    peer("jax", jax_run, out)
    peer("pytensor", pytensor_run, out)


def rnn(T: int, B: int, I: int, H: int, grad: bool):  # noqa: E741
    def make(quick: bool) -> dict:
        t = min(T, 100) if quick else T
        x, W, U, h0 = _rnn_data(t, B, I, H)
        steps = {"items": t}
        f = _irkit_rnn(grad)
        args = (x, W, U, h0)
        if grad:
            want = _numpy_bptt(*args)
            out = {"irkit": lambda: f(*args), "numpy": lambda: _numpy_bptt(*args),
                   "check": (lambda: np.concatenate([g.ravel() for g in f(*args)]),
                             np.concatenate([g.ravel() for g in want]), 2e-3)}
        else:
            out = {"irkit": lambda: f(*args), "numpy": lambda: _numpy_forward(*args),
                   "check": (lambda: f(*args), _numpy_forward(*args), 1e-4)}
        _peers(lambda: _jax_rnn(grad), lambda: _pytensor_rnn(grad), args, out)
        out.update(steps)
        return out
    return make


# ---------------------------------------------------------------------------
# the cost of a step: a scalar recurrence over a million steps
# ---------------------------------------------------------------------------

def scan_overhead(quick: bool) -> dict:
    """acc_t = 0.5 acc_{t-1} + x_t, float64: the loop itself is all there is to time."""
    n = 100_000 if quick else 1_000_000
    x = np.random.default_rng(11).standard_normal(n)
    xs = ik.vector("x", dtype="float64")
    acc, _ = ik.scan(lambda v, a: a * 0.5 + v, sequences=xs, outputs_info=ik.constant(0.0, "float64"))
    f = ik.function([xs], acc)

    def numpy_loop():
        out = np.empty_like(x)
        a = 0.0
        for t, v in enumerate(x.tolist()):
            a = a * 0.5 + v
            out[t] = a
        return out
    want = numpy_loop()
    out = {"irkit": lambda: f(x), "numpy (Python loop)": numpy_loop, "check": (lambda: f(x), want, 1e-12),
           "items": n}

    def jax_run():
        import jax
        import jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)
        g = jax.jit(lambda v: jax.lax.scan(lambda a, e: (a * 0.5 + e, a * 0.5 + e), jnp.float64(0.0), v)[1])
        g(x).block_until_ready()
        return lambda: g(x).block_until_ready()
    peer("jax", jax_run, out)
    return out


# ---------------------------------------------------------------------------
# the Theano 2012 RNN benchmark: words/s of full BPTT + SGD on 100-word sequences
# ---------------------------------------------------------------------------

STEPS = 100
LR = 0.01


def _lm_params(H: int, V: int):
    rng = np.random.default_rng(2012)
    return [(rng.standard_normal((V, H)) * 0.1).astype("float32"),
            (rng.standard_normal((H, H)) / np.sqrt(H)).astype("float32"),
            np.zeros(H, "float32"),
            (rng.standard_normal((H, V)) * 0.1).astype("float32"),
            np.zeros(V, "float32")]


class NumpyLM:
    """The hand-written BPTT: weight gradients as one contraction over the stacked states."""

    def __init__(self, params):
        self.p = [p.copy() for p in params]

    def grads(self, words, targets):
        W_in, W_rec, b_h, W_out, b_o = self.p
        T, H = len(words), W_rec.shape[0]
        E = W_in[words] + b_h
        hs = np.empty((T, H), np.float32)
        h = np.zeros(H, np.float32)
        for t in range(T):
            h = _sigmoid(E[t] + h @ W_rec)
            hs[t] = h
        logits = hs @ W_out + b_o
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.log(p[np.arange(T), targets]).sum()
        p[np.arange(T), targets] -= 1.0
        dW_out, db_o = hs.T @ p, p.sum(0)
        dhs = p @ W_out.T
        deltas = np.empty_like(hs)
        dh = np.zeros(H, np.float32)
        for t in range(T - 1, -1, -1):
            da = (dhs[t] + dh) * hs[t] * (1.0 - hs[t])
            deltas[t] = da
            dh = da @ W_rec.T
        prev = np.vstack([np.zeros((1, H), np.float32), hs[:-1]])
        dW_rec, db_h = prev.T @ deltas, deltas.sum(0)
        dW_in = np.zeros_like(W_in)
        np.add.at(dW_in, words, deltas)
        return loss, [dW_in, dW_rec, db_h, dW_out, db_o]

    def step(self, words, targets):
        loss, grads = self.grads(words, targets)
        for p, g in zip(self.p, grads):
            p -= LR * g
        return loss


def _irkit_lm(params):
    shared = [ik.shared(p.copy(), name=n) for p, n in zip(params, ["W_in", "W_rec", "b_h", "W_out", "b_o"])]
    W_in, W_rec, b_h, W_out, b_o = shared
    words, targets = ik.lvector("words"), ik.lvector("targets")
    h0 = ik.zeros((W_rec.shape[0],), "float32")
    hs, _ = ik.scan(lambda e, h, U: ik.sigmoid(e + ik.dot(h, U)), sequences=W_in[words] + b_h, outputs_info=h0,
                    non_sequences=W_rec)
    logp = ik.log_softmax(ik.dot(hs, W_out) + b_o)
    loss = -ik.sum(logp[ik.arange(words.shape[0]), targets])
    grads = ik.grad(loss, shared)
    train = ik.function([words, targets], loss, updates=[(p, p - LR * g) for p, g in zip(shared, grads)])
    check = ik.function([words, targets], [loss, *grads])
    return train, check


def _jax_lm(params):
    import jax
    import jax.numpy as jnp

    def loss_fn(p, words, targets):
        W_in, W_rec, b_h, W_out, b_o = p

        def step(h, e):
            h = jax.nn.sigmoid(e + h @ W_rec)
            return h, h
        _, hs = jax.lax.scan(step, jnp.zeros(W_rec.shape[0], jnp.float32), W_in[words] + b_h)
        logp = jax.nn.log_softmax(hs @ W_out + b_o)
        return -logp[jnp.arange(words.shape[0]), targets].sum()

    @jax.jit
    def step(p, words, targets):
        loss, g = jax.value_and_grad(loss_fn)(p, words, targets)
        return loss, [w - LR * d for w, d in zip(p, g)]
    state = {"p": [jnp.asarray(p) for p in params]}

    def run(words, targets):
        loss, state["p"] = step(state["p"], words, targets)
        return float(loss)
    return run


def _pytensor_lm(params):
    import pytensor
    import pytensor.tensor as pt
    mode = _pytensor_mode()
    shared = [pytensor.shared(p.copy()) for p in params]
    W_in, W_rec, b_h, W_out, b_o = shared
    words, targets = pt.lvector("words"), pt.lvector("targets")
    hs, _ = pytensor.scan(lambda e, h, U: pt.sigmoid(e + pt.dot(h, U)), sequences=W_in[words] + b_h,
                          outputs_info=pt.zeros((W_rec.shape[0],), dtype="float32"), non_sequences=W_rec,
                          mode=mode)
    logp = pt.special.log_softmax(pt.dot(hs, W_out) + b_o, axis=-1)
    loss = -logp[pt.arange(words.shape[0]), targets].sum()
    grads = pytensor.grad(loss, shared)
    return pytensor.function([words, targets], loss, mode=mode,
                             updates=[(p, p - np.float32(LR) * g) for p, g in zip(shared, grads)])


def rnn2012(H: int, V: int):
    def make(quick: bool) -> dict:
        params = _lm_params(H, V)
        rng = np.random.default_rng(5)
        words = rng.integers(0, V, STEPS)
        targets = np.roll(words, -1)
        train, check = _irkit_lm(params)
        ref = NumpyLM(params)
        loss, grads = ref.grads(words, targets)
        want = np.concatenate([[loss]] + [g.ravel() for g in grads])
        out = {"irkit": lambda: train(words, targets), "numpy": lambda: ref.step(words, targets),
               "check": (lambda: np.concatenate([np.ravel(v) for v in check(words, targets)]), want,
                         2e-3 * max(1.0, float(np.abs(want).max())))}
        for name, maker in (("jax", _jax_lm), ("pytensor", _pytensor_lm)):
            def build(maker=maker):
                fn = maker(params)
                fn(words, targets)
                return lambda: fn(words, targets)
            peer(name, build, out)
        return out
    return make
