"""The derivative API: ik.Rop, ik.jacobian, ik.hessian, grad of grad, Hessian-vector
products, known_grads, consider_constant, ik.stop_gradient, disconnected inputs, the
errors for bad input, ik.verify_grad's own failure, ik.OpFromGraph with custom rules,
the stable softmax cross-entropy gradient, float32 against float64, shared variables
with updates, and the `autodiff` pass (no `ikad.` op survives it; `irkit-opt -p autodiff`).

Finite differences (float64, central) and closed forms in numpy are the oracles."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest

import irkit as ik
from irkit.errors import DisconnectedInputError, DTypeError, GradientError, GradientUndefinedError, ShapeError

HERE = os.path.basename(__file__)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def fd_jacobian(f, pts, k, eps=1e-6) -> np.ndarray:
    """d f / d pts[k] by central differences, of shape f.shape + pts[k].shape."""
    x = np.array(pts[k], dtype=np.float64)
    args = list(pts)
    out = None
    flat = x.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        args[k] = x.copy()
        up = np.asarray(f(*args), np.float64)
        flat[i] = old - eps
        args[k] = x.copy()
        down = np.asarray(f(*args), np.float64)
        flat[i] = old
        col = (up - down) / (2 * eps)
        if out is None:
            out = np.zeros(col.shape + (flat.size,))
        out[..., i] = col
    return out.reshape(out.shape[:-1] + x.shape)


def fd_hessian(f, x, eps=1e-4) -> np.ndarray:
    """The Hessian of a scalar f at x by second central differences."""
    x = np.array(x, dtype=np.float64)
    n = x.size
    H = np.zeros((n, n))
    flat = x.reshape(-1)

    def at(i, di, j, dj):
        y = flat.copy()
        y[i] += di
        y[j] += dj
        return float(f(y.reshape(x.shape)))
    for i in range(n):
        for j in range(n):
            H[i, j] = (at(i, eps, j, eps) - at(i, eps, j, -eps) - at(i, -eps, j, eps)
                       + at(i, -eps, j, -eps)) / (4 * eps * eps)
    return H.reshape(x.shape + x.shape)


def fd_directional(f, pts, ts, eps=1e-6):
    up = f(*[p + eps * t for p, t in zip(pts, ts)])
    down = f(*[p - eps * t for p, t in zip(pts, ts)])
    return (np.asarray(up) - np.asarray(down)) / (2 * eps)


# ---------------------------------------------------------------------------
# Rop
# ---------------------------------------------------------------------------

def _mlp(W, x, b):
    return ik.tanh(W @ x + b)


ROP_CASES = {
    "mlp_layer": (_mlp, [(3, 4), (4,), (3,)]),
    "softmax_axis0": (lambda X: ik.softmax(X, 0) * X, [(3, 2)]),
    "gather_repeats_prod": (lambda X: ik.prod(X[[0, 0, 2]] ** 2, 1), [(3, 2)]),
    "logsumexp_broadcast": (lambda X, v: ik.logsumexp(X * v, 1, keepdims=True) + v, [(2, 3), (3,)]),
    "batched_matmul": (lambda A, B: ik.sin(A @ B), [(2, 2, 3), (3, 2)]),
    "scalar_out": (lambda X, y: ik.sum(ik.exp(X) * y), [(2, 3), ()]),
}


@pytest.mark.parametrize("name", sorted(ROP_CASES))
def test_rop_matches_directional_finite_differences(name):
    fn, shapes = ROP_CASES[name]
    rng = _rng(zlib.crc32(name.encode()))
    pts = [rng.uniform(-1, 1, s) for s in shapes]
    ts = [rng.uniform(-1, 1, s) for s in shapes]
    xs = [ik.tensor(f"x{k}", shape=(None,) * len(s), dtype="float64") for k, s in enumerate(shapes)]
    tv = [ik.tensor(f"t{k}", shape=(None,) * len(s), dtype="float64") for k, s in enumerate(shapes)]
    out = fn(*xs)
    partial = ik.Rop(out, xs[:1], tv[:1])              # only the first variable moves
    f = ik.function(xs + tv, [out, ik.Rop(out, xs, tv), partial])
    value, rop, rop0 = f(*pts, *ts)
    num = fd_directional(lambda *a: f(*a, *ts)[0], pts, ts)
    np.testing.assert_allclose(rop, num, rtol=1e-6, atol=1e-7)
    num0 = fd_directional(lambda a: f(a, *pts[1:], *ts)[0], pts[:1], ts[:1])
    np.testing.assert_allclose(rop0, num0, rtol=1e-6, atol=1e-7)


def test_rop_several_outputs_and_consider_constant():
    x = ik.vector("x", dtype="float64")
    t = ik.vector("t", dtype="float64")
    y = x ** 2
    outs = [ik.sin(x), ik.sum(y * x)]
    r = ik.Rop(outs, x, t)
    assert isinstance(r, list) and len(r) == 2
    rc = ik.Rop(ik.sum(y * x), x, t, consider_constant=[y])     # y held fixed: d = sum(y * t)
    f = ik.function([x, t], r + [rc])
    xv, tv = np.array([0.3, -1.2, 2.0]), np.array([1.0, 0.5, -2.0])
    got = f(xv, tv)
    np.testing.assert_allclose(got[0], np.cos(xv) * tv, rtol=1e-12)
    np.testing.assert_allclose(got[1], np.sum(3 * xv ** 2 * tv), rtol=1e-12)
    np.testing.assert_allclose(got[2], np.sum(xv ** 2 * tv), rtol=1e-12)


# ---------------------------------------------------------------------------
# jacobian and hessian
# ---------------------------------------------------------------------------

def test_jacobian_against_finite_differences():
    rng = _rng(1)
    v = ik.vector("v", dtype="float64")
    M = ik.matrix("M", dtype="float64")
    e1 = ik.tanh(M @ v) * v[:3]                    # rank 1, shape (3,)
    e2 = ik.outer(ik.sin(v), v[:2]) * 2.0          # rank 2, shape (4, 2)
    e3 = ik.softmax(M, 1) * ik.sum(v)              # (3, 4)
    jac = [*ik.jacobian(e1, [v, M]), ik.jacobian(e2, v), *ik.jacobian(e3, [M, v]), ik.jacobian(ik.sum(v * v), v)]
    f = ik.function([v, M], jac)
    fe = ik.function([v, M], [e1, e2, e3])
    vv, Mv = rng.uniform(-1, 1, 4), rng.uniform(-1, 1, (3, 4))
    got = f(vv, Mv)
    want = [fd_jacobian(lambda a, b: fe(a, b)[0], [vv, Mv], 0), fd_jacobian(lambda a, b: fe(a, b)[0], [vv, Mv], 1),
            fd_jacobian(lambda a, b: fe(a, b)[1], [vv, Mv], 0),
            fd_jacobian(lambda a, b: fe(a, b)[2], [vv, Mv], 1), fd_jacobian(lambda a, b: fe(a, b)[2], [vv, Mv], 0),
            2 * vv]
    shapes = [(3, 4), (3, 3, 4), (4, 2, 4), (3, 4, 3, 4), (3, 4, 4), (4,)]
    for k, (g, w, s) in enumerate(zip(got, want, shapes)):
        assert g.shape == s, f"jacobian {k}: shape {g.shape}, expected {s}"
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7, err_msg=f"jacobian {k}")


def _cost_vec(x):
    return ik.sum(ik.sin(x) * x ** 2) + ik.logsumexp(x) * ik.sum(x)


def _cost_mat(X):
    return ik.sum(ik.tanh(X @ X.T)) + ik.sum(ik.prod(X, 1) ** 2)


def test_hessian_against_finite_differences():
    rng = _rng(2)
    x = ik.vector("x", dtype="float64")
    X = ik.matrix("X", dtype="float64")
    # the gradient in X of cost * sum(X) does not depend on X: its block is "disconnected"
    f = ik.function([x, X], [ik.hessian(_cost_vec(x), x), ik.hessian(_cost_mat(X), X),
                             *ik.hessian(_cost_vec(x) * ik.sum(X), [x, X], disconnected_inputs="ignore")])
    cv = ik.function([x], _cost_vec(x))
    cm = ik.function([X], _cost_mat(X))
    xv, Xv = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, (2, 3))
    hv, hm, hx, hX = f(xv, Xv)
    assert hv.shape == (3, 3) and hm.shape == (2, 3, 2, 3)
    np.testing.assert_allclose(hv, fd_hessian(cv, xv), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hm, fd_hessian(cm, Xv), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hv, hv.T, rtol=1e-12)
    # cost * sum(X): d2/dx2 scales by sum(X); d2/dX2 is 0
    np.testing.assert_allclose(hx, hv * Xv.sum(), rtol=1e-10)
    np.testing.assert_array_equal(hX, np.zeros((2, 3, 2, 3)))


def test_lop_with_batched_cotangents_is_the_jacobian():
    rng = _rng(3)
    x = ik.vector("x", dtype="float64")
    y = ik.sin(x) * ik.sum(x)
    seeds = ik.tensor("s", shape=(None, None), dtype="float64")
    f = ik.function([x, seeds], [ik.Lop(y, x, seeds), ik.jacobian(y, x)])
    xv = rng.uniform(-1, 1, 3)
    S = rng.uniform(-1, 1, (2, 3))
    lop, jac = f(xv, S)
    assert lop.shape == (2, 3)
    np.testing.assert_allclose(lop, S @ jac, rtol=1e-12)
    np.testing.assert_allclose(jac, fd_jacobian(ik.function([x], y), [xv], 0), rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------
# higher order
# ---------------------------------------------------------------------------

def test_grad_of_grad():
    rng = _rng(4)
    x = ik.vector("x", dtype="float64")
    g = ik.grad(ik.sum(ik.sin(x) * x ** 2), x)
    gg = ik.grad(ik.sum(g), x)
    ggg = ik.grad(ik.sum(gg * gg), x)
    s = ik.scalar("s", dtype="float64")
    d1 = ik.grad(s ** 4 * ik.exp(s), s)
    d2 = ik.grad(d1, s)
    d3 = ik.grad(d2, s)
    f = ik.function([x, s], [g, gg, ggg, d1, d2, d3])
    xv = rng.uniform(-2, 2, 4)
    sv = np.array(0.7)
    got = f(xv, sv)
    np.testing.assert_allclose(got[0], np.cos(xv) * xv ** 2 + 2 * xv * np.sin(xv), rtol=1e-12)
    h = -np.sin(xv) * xv ** 2 + 4 * xv * np.cos(xv) + 2 * np.sin(xv)
    np.testing.assert_allclose(got[1], h, rtol=1e-12)
    dh = -np.cos(xv) * xv ** 2 - 6 * xv * np.sin(xv) + 6 * np.cos(xv)
    np.testing.assert_allclose(got[2], 2 * h * dh, rtol=1e-10)
    e = np.exp(sv)
    np.testing.assert_allclose(got[3], e * (sv ** 4 + 4 * sv ** 3), rtol=1e-12)
    np.testing.assert_allclose(got[4], e * (sv ** 4 + 8 * sv ** 3 + 12 * sv ** 2), rtol=1e-12)
    np.testing.assert_allclose(got[5], e * (sv ** 4 + 12 * sv ** 3 + 36 * sv ** 2 + 24 * sv), rtol=1e-12)
    # and against finite differences of the first gradient, through other ops
    ik.verify_grad(lambda a, b: ik.grad(ik.sum(ik.softmax(a @ b, 1) * ik.expand_dims(a[:, 0], 1)), b),
                   [rng.uniform(-1, 1, (2, 3)), rng.uniform(-1, 1, (3, 2))], n_tests=1, rng=rng)


def test_hessian_vector_products_both_ways():
    rng = _rng(5)
    for cost_fn, shape in [(_cost_vec, (3,)), (_cost_mat, (2, 3))]:
        x = ik.tensor("x", shape=(None,) * len(shape), dtype="float64")
        v = ik.tensor("v", shape=(None,) * len(shape), dtype="float64")
        g = ik.grad(cost_fn(x), x)
        forward_over_reverse = ik.Rop(g, x, v)
        reverse_over_reverse = ik.grad(ik.sum(g * v), x)
        f = ik.function([x, v], [forward_over_reverse, reverse_over_reverse])
        xv, vv = rng.uniform(-1, 1, shape), rng.uniform(-1, 1, shape)
        H = fd_hessian(ik.function([x], cost_fn(x)), xv).reshape(xv.size, xv.size)
        want = (H @ vv.reshape(-1)).reshape(shape)
        a, b = f(xv, vv)
        np.testing.assert_allclose(a, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------
# known_grads, consider_constant, stop_gradient
# ---------------------------------------------------------------------------

def test_known_grads():
    rng = _rng(6)
    W = ik.matrix("W", dtype="float64")
    x = ik.vector("x", dtype="float64")
    gy = ik.vector("gy", dtype="float64")
    y = ik.tanh(W @ x)
    only = ik.grad(None, [W, x], known_grads={y: gy})
    both = ik.grad(ik.sum(x ** 2), [W, x], known_grads={y: gy}, disconnected_inputs="ignore")
    f = ik.function([W, x, gy], only + both)
    Wv, xv, gv = rng.uniform(-1, 1, (3, 4)), rng.uniform(-1, 1, 4), rng.uniform(-1, 1, 3)
    yv = np.tanh(Wv @ xv)
    dy = gv * (1 - yv ** 2)
    got = f(Wv, xv, gv)
    np.testing.assert_allclose(got[0], np.outer(dy, xv), rtol=1e-12)
    np.testing.assert_allclose(got[1], Wv.T @ dy, rtol=1e-12)
    np.testing.assert_allclose(got[2], np.outer(dy, xv), rtol=1e-12)
    np.testing.assert_allclose(got[3], Wv.T @ dy + 2 * xv, rtol=1e-12)
    with pytest.raises(ValueError):
        ik.grad(None, x)


def test_consider_constant_and_stop_gradient():
    x = ik.vector("x", dtype="float64")
    y = x ** 2
    plain = ik.grad(ik.sum(y * x), x)
    const = ik.grad(ik.sum(y * x), x, consider_constant=[y])
    sg = ik.stop_gradient(x ** 2)
    stopped = ik.grad(ik.sum(sg * x), x)
    both = ik.grad(ik.sum(ik.stop_gradient(x) * ik.exp(x)), x)
    hv = ik.hessian(ik.sum(ik.stop_gradient(x) * x ** 3), x)   # d2/dx2 of c * x^3 = 6 c x
    f = ik.function([x], [plain, const, sg, stopped, both, hv])
    xv = np.array([0.5, -1.5, 2.0])
    got = f(xv)
    np.testing.assert_allclose(got[0], 3 * xv ** 2, rtol=1e-12)
    np.testing.assert_allclose(got[1], xv ** 2, rtol=1e-12)
    np.testing.assert_allclose(got[2], xv ** 2, rtol=1e-12)   # the value passes unchanged
    np.testing.assert_allclose(got[3], xv ** 2, rtol=1e-12)
    np.testing.assert_allclose(got[4], xv * np.exp(xv), rtol=1e-12)
    np.testing.assert_allclose(got[5], np.diag(6 * xv * xv), rtol=1e-12)
    assert "ikad.stop_gradient" not in f.ir("tensor")


# ---------------------------------------------------------------------------
# disconnected inputs
# ---------------------------------------------------------------------------

def test_disconnected_raise_names_the_variable_and_line():
    x = ik.vector("x", dtype="float64")
    z = ik.matrix("zeta", dtype="float64")
    cost = ik.sum(x ** 2) + ik.sum(ik.stop_gradient(z))
    with pytest.raises(DisconnectedInputError) as info:
        ik.grad(cost, [x, z])  # the line the error names
    line = sys._getframe().f_lineno - 1
    msg = str(info.value)
    assert "zeta" in msg
    assert f"{HERE}:{line}" in msg, msg
    with pytest.raises(DisconnectedInputError, match="zeta"):
        ik.grad(ik.sum(x), z, consider_constant=[x])  # z never reached
    with pytest.raises(ValueError):
        ik.grad(cost, x, disconnected_inputs="loud")


def test_disconnected_warn_and_ignore_give_zeros():
    x = ik.vector("x", dtype="float64")
    z = ik.matrix("zeta", dtype="float64")
    cost = ik.sum(x ** 2)
    with pytest.warns(UserWarning, match="zeta"):
        warned = ik.grad(cost, [x, z], disconnected_inputs="warn")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ignored = ik.grad(cost, [x, z], disconnected_inputs="ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = ik.function([x, z], warned + ignored)
    xv, zv = np.array([1.0, -2.0]), np.ones((2, 3))
    got = f(xv, zv)
    for k in (0, 2):
        np.testing.assert_array_equal(got[k], 2 * xv)
    for k in (1, 3):
        assert got[k].shape == (2, 3)
        np.testing.assert_array_equal(got[k], np.zeros((2, 3)))


def test_dependence_through_integers_is_a_zero_gradient_and_a_shape_is_none():
    """Theano's rule: a cost reached through a comparison or an argmax depends on x, with a
    zero derivative (no error); a cost reached only through x's shape does not."""
    x = ik.vector("x", dtype="float64")
    xv = np.array([1.5, -2.0, 0.5])
    step = ik.sum(ik.cast(x > 0, "float64"))
    picked = ik.cast(ik.argmax(x), "float64")
    mixed = ik.sum(ik.where(x > 0, x * 3.0, 0.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a warning
        got = ik.function([x], ik.grad(step, x) + ik.grad(picked, x) * 0.0 + ik.grad(mixed, x))(xv)
    np.testing.assert_array_equal(got, np.where(xv > 0, 3.0, 0.0))
    with pytest.raises(DisconnectedInputError, match="'x'"):
        ik.grad(ik.cast(x.shape[0], "float64") * 2.0, x)


def test_disconnected_warn_warns_once():
    x = ik.vector("x", dtype="float64")
    y = ik.vector("y", dtype="float64")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = ik.grad(ik.sum(x), [x, y], disconnected_inputs="warn")
        got = ik.function([x, y], g)(np.ones(2), np.ones(3))
    assert [str(w.message) for w in caught] == ["the cost does not depend on 'y'; its gradient is zero"]
    np.testing.assert_array_equal(got[1], np.zeros(3))


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------

def _raises_here(kind, fn, *needles):
    """fn() raises `kind` whose message holds each needle and the caller's line."""
    line = sys._getframe(1).f_lineno
    with pytest.raises(kind) as info:
        fn()
    msg = str(info.value)
    for n in needles:
        assert n in msg, f"{n!r} not in: {msg}"
    assert f"{HERE}:{line}" in msg, f"the error does not name the user's line {HERE}:{line}: {msg}"


def test_bad_costs_and_variables():
    X = ik.tensor("X", shape=(2, 3), dtype="float64")
    v = ik.vector("v", dtype="float64")
    i = ik.lvector("i")
    _raises_here(ShapeError, lambda: ik.grad(X * 2.0, X), "(2, 3)")
    _raises_here(ShapeError, lambda: ik.grad(v, v), "(?,)")
    _raises_here(DTypeError, lambda: ik.grad(ik.sum(i), i), "int64")
    _raises_here(DTypeError, lambda: ik.grad(ik.sum(ik.cast(v, "int64")), v), "int64")   # integer cost
    _raises_here(DTypeError, lambda: ik.grad(ik.all(v > 0), v), "bool")                  # bool cost
    _raises_here(DTypeError, lambda: ik.grad(ik.sum(v * ik.cast(i, "float64")), i), "'i'", "int64")
    _raises_here(DTypeError, lambda: ik.Rop(ik.cast(i, "float64"), i, i), "'i'")
    _raises_here(DTypeError, lambda: ik.jacobian(v * 2.0, [v, i]), "'i'")
    _raises_here(DTypeError, lambda: ik.hessian(ik.sum(v), i), "'i'")


def test_bad_eval_points():
    v = ik.vector("v", dtype="float64")
    M = ik.matrix("M", dtype="float64")
    _raises_here(ShapeError, lambda: ik.Rop(v * 2.0, v, M), "'v'")           # rank 2 tangent for a vector
    _raises_here(ShapeError, lambda: ik.Lop(M * 2.0, M, v))                  # cotangent of lower rank
    with pytest.raises(ValueError):
        ik.Rop(v * 2.0, [v, M], [v])
    with pytest.raises(ValueError):
        ik.Lop([v, M], v, [v])


def test_verify_grad_raises_on_a_wrong_gradient():
    x = ik.vector("x", dtype="float64")
    mask = np.zeros(5)
    mask[2] = 1.0

    def wrong_vjp(inputs, outputs, cts):
        (a,), (g,) = inputs, cts
        return [g * ik.cos(a) * (1.0 + 0.5 * ik.constant(mask))]   # wrong at element 2 only

    def right_vjp(inputs, outputs, cts):
        return [cts[0] * ik.cos(inputs[0])]
    bad = ik.OpFromGraph([x], ik.sin(x), name="bad_sin", vjp=wrong_vjp)
    good = ik.OpFromGraph([x], ik.sin(x), name="good_sin", vjp=right_vjp)
    rng = _rng(7)
    pt = rng.uniform(-1, 1, 5)
    with pytest.raises(GradientError) as info:
        ik.verify_grad(lambda a: bad(a), [pt], rng=rng)
    msg = str(info.value)
    assert "(2,)" in msg and "input 0" in msg and "1 of 5" in msg, msg
    ik.verify_grad(lambda a: good(a), [pt], rng=rng)
    # a wrong rule on the second input is named as such
    y = ik.vector("y", dtype="float64")
    bad2 = ik.OpFromGraph([x, y], x * y, vjp=lambda i, o, c: [c[0] * i[1], c[0] * i[1]])
    with pytest.raises(GradientError, match="input 1"):
        ik.verify_grad(lambda a, b: bad2(a, b), [pt, pt + 1.5], rng=rng)


# ---------------------------------------------------------------------------
# OpFromGraph
# ---------------------------------------------------------------------------

def _safe_norm(vjp=False, jvp=False):
    x = ik.vector("x", dtype="float64")

    def vjp_rule(inputs, outputs, cts):
        (a,), (n,), (g,) = inputs, outputs, cts
        return [g * a / ik.maximum(n, 1e-12)]

    def jvp_rule(inputs, outputs, tangents):
        (a,), (n,), (t,) = inputs, outputs, tangents
        return ik.sum(a * t) / ik.maximum(n, 1e-12)
    return ik.OpFromGraph([x], ik.sqrt(ik.sum(x * x)), name="safe_norm",
                          vjp=vjp_rule if vjp else None, jvp=jvp_rule if jvp else None)


@pytest.mark.parametrize("rules", ["neither", "vjp", "jvp", "both"])
def test_op_from_graph_rules(rules):
    """Away from 0 every variant has the exact derivatives; at 0 the custom rules give 0
    where the body's derivative is 0/0. Without a vjp both modes go through the body (the
    documented fallback), so the jvp alone does not change them."""
    op = _safe_norm(vjp=rules in ("vjp", "both"), jvp=rules in ("jvp", "both"))
    a = ik.vector("a", dtype="float64")
    t = ik.vector("t", dtype="float64")
    n = op(a)
    assert n.ndim == 0 and n.dtype == np.float64
    out = n * ik.sum(a)
    f = ik.function([a, t], [out, ik.grad(out, a), ik.Rop(out, a, t), ik.grad(n, a), ik.Rop(n, a, t)])
    av, tv = np.array([0.6, -1.2, 2.0]), np.array([1.0, 0.5, -0.3])
    val, g, r, gn, rn = f(av, tv)
    norm = np.linalg.norm(av)
    np.testing.assert_allclose(val, norm * av.sum(), rtol=1e-12)
    want_g = av / norm * av.sum() + norm
    np.testing.assert_allclose(g, want_g, rtol=1e-12)
    np.testing.assert_allclose(r, want_g @ tv, rtol=1e-12)
    zero = np.zeros(3)
    with np.errstate(all="ignore"):
        _, _, _, gn0, rn0 = f(zero, tv)
    if rules in ("vjp", "both"):
        np.testing.assert_array_equal(gn0, zero)
        np.testing.assert_array_equal(rn0, 0.0)
    else:  # through the body: d sqrt(s) at s = 0
        assert not np.all(np.isfinite(gn0)) and not np.isfinite(rn0)
    ik.verify_grad(lambda v: op(v) * v, [av], n_tests=1, rng=_rng(8))


def test_op_from_graph_custom_rules_are_used():
    """A straight-through rounding: the body's derivative is 0, the rules say 1."""
    x = ik.vector("x", dtype="float64")
    vjp = ik.OpFromGraph([x], ik.round(x), vjp=lambda i, o, c: [c[0]])
    both = ik.OpFromGraph([x], ik.round(x), vjp=lambda i, o, c: [c[0]], jvp=lambda i, o, t: [t[0] * 3.0])
    plain = ik.OpFromGraph([x], ik.round(x))
    a, t = ik.vector("a", dtype="float64"), ik.vector("t", dtype="float64")
    outs = []
    for op in (vjp, both, plain):
        y = ik.sum(op(a) * a)
        outs += [y, ik.grad(y, a), ik.Rop(op(a), a, t)]
    f = ik.function([a, t], outs)
    av, tv = np.array([0.4, 1.7, -2.2]), np.array([1.0, -2.0, 0.5])
    got = f(av, tv)
    r = np.round(av)
    for k in range(3):
        np.testing.assert_allclose(got[3 * k], np.sum(r * av), rtol=1e-12)
    np.testing.assert_allclose(got[1], r + av, rtol=1e-12)      # vjp: g
    np.testing.assert_allclose(got[2], tv, rtol=1e-12)          # Rop from the vjp (double Lop)
    np.testing.assert_allclose(got[4], r + av, rtol=1e-12)
    np.testing.assert_allclose(got[5], 3 * tv, rtol=1e-12)      # the custom jvp
    np.testing.assert_allclose(got[7], r, rtol=1e-12)           # the body: round has 0
    np.testing.assert_array_equal(got[8], np.zeros(3))


def test_op_from_graph_multiple_outputs_and_used_twice():
    x = ik.vector("x", dtype="float64")
    w = ik.vector("w", dtype="float64")

    def vjp(inputs, outputs, cts):
        (a, b), (g1, g2) = inputs, cts
        return [g1 * ik.cos(a) * b - g2 * ik.sin(a), g1 * ik.sin(a)]
    op = ik.OpFromGraph([x, w], [ik.sin(x) * w, ik.cos(x)], name="sc", vjp=vjp)
    a, b, t = ik.vector("a", dtype="float64"), ik.vector("b", dtype="float64"), ik.vector("t", dtype="float64")
    s, c = op(a, b)
    s2, c2 = op(s, c)                          # used twice, the second time on its own outputs
    cost_both = ik.sum(s * 2.0 + c ** 2)
    cost_first = ik.sum(s)                     # the second output gets no cotangent
    cost_nested = ik.sum(s2 * c2)
    outs = [*ik.grad(cost_both, [a, b]), ik.grad(cost_first, a),
            *ik.grad(cost_nested, [a, b]), *ik.Rop([s, c], [a, b], [t, t]), cost_nested]
    f = ik.function([a, b, t], outs)
    av, bv, tv = np.array([0.3, -0.8, 1.1]), np.array([1.5, 0.5, -1.0]), np.array([0.2, -1.0, 0.7])
    got = f(av, bv, tv)
    np.testing.assert_allclose(got[0], 2 * np.cos(av) * bv - 2 * np.cos(av) * np.sin(av), rtol=1e-12)
    np.testing.assert_allclose(got[1], 2 * np.sin(av), rtol=1e-12)
    np.testing.assert_allclose(got[2], np.cos(av) * bv, rtol=1e-12)
    np.testing.assert_allclose(got[5], np.cos(av) * bv * tv + np.sin(av) * tv, rtol=1e-12)
    np.testing.assert_allclose(got[6], -np.sin(av) * tv, rtol=1e-12)

    def nested(a_, b_):
        s_, c_ = np.sin(a_) * b_, np.cos(a_)
        return np.sum(np.sin(s_) * c_ * np.cos(s_))
    np.testing.assert_allclose(got[7], nested(av, bv), rtol=1e-12)
    np.testing.assert_allclose(got[3], fd_jacobian(nested, [av, bv], 0), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(got[4], fd_jacobian(nested, [av, bv], 1), rtol=1e-6, atol=1e-8)
    assert "ikad." not in f.ir("tensor")


def test_op_from_graph_rejects_bad_calls():
    x = ik.vector("x", dtype="float64")
    op = ik.OpFromGraph([x], x * 2.0, vjp=lambda i, o, c: [c[0] * 2.0])
    with pytest.raises(TypeError):
        op(x, x)
    with pytest.raises(DTypeError):
        op(ik.lvector("i"))
    with pytest.raises(ShapeError):
        op(ik.matrix("m", dtype="float64"))
    with pytest.raises(TypeError):
        ik.OpFromGraph([x], x, vjp=3)


def test_op_from_graph_rule_errors_and_batched_derivatives():
    """A rule's derivative of the wrong shape would broadcast into a wrong gradient: an error
    naming the op and the line. ik.jacobian/ik.hessian push a batch of cotangents, which a
    custom vjp cannot take: an error, not a silently wrong result; through the body
    (no vjp) they are exact."""
    x = ik.vector("x", dtype="float64")
    a = ik.vector("a", dtype="float64")
    bad_rank = ik.OpFromGraph([x], ik.sin(x), name="bad_rank", vjp=lambda i, o, c: [ik.sum(c[0])])
    y = bad_rank(a)  # the line errors name
    line = sys._getframe().f_lineno - 1
    with pytest.raises(ShapeError, match="bad_rank") as info:
        ik.function([a], ik.grad(ik.sum(y * a), a))
    assert f"{HERE}:{line}" in str(info.value), str(info.value)
    bad_jvp = ik.OpFromGraph([x], ik.sin(x), name="bad_jvp", vjp=lambda i, o, c: [c[0] * ik.cos(i[0])],
                             jvp=lambda i, o, t: ik.sum(t[0]))
    with pytest.raises(ShapeError, match="bad_jvp"):
        ik.function([a], ik.Rop(bad_jvp(a), a, a))
    with_vjp = _safe_norm(vjp=True)
    body_only = _safe_norm()
    av = np.array([0.6, -1.2, 2.0])
    n = np.linalg.norm(av)
    norm = with_vjp(a)  # the line errors name: the custom op's
    line = sys._getframe().f_lineno - 1
    for z in (ik.jacobian(norm * a, a), ik.hessian(norm, a)):
        with pytest.raises(GradientUndefinedError, match="safe_norm") as info:
            ik.function([a], z)
        assert f"{HERE}:{line}" in str(info.value), str(info.value)
    jac, hess = ik.function([a], [ik.jacobian(body_only(a) * a, a), ik.hessian(body_only(a), a)])(av)
    np.testing.assert_allclose(jac, np.outer(av, av) / n + n * np.eye(3), rtol=1e-12)
    np.testing.assert_allclose(hess, (np.eye(3) - np.outer(av, av) / n ** 2) / n, rtol=1e-12)


def test_op_from_graph_vjp_count_and_none():
    """A vjp must return one cotangent per input; None is a zero cotangent."""
    a, b = ik.vector("a", dtype="float64"), ik.vector("b", dtype="float64")
    x, y = ik.vector("x", dtype="float64"), ik.vector("y", dtype="float64")
    short = ik.OpFromGraph([a, b], a * b, name="short", vjp=lambda i, o, c: [c[0] * i[1]])
    with pytest.raises(GradientUndefinedError, match="short.*returned 1 cotangents for 2 inputs"):
        ik.function([x, y], ik.grad(ik.sum(short(x, y)), [x, y]))
    half = ik.OpFromGraph([a, b], a * b, name="half", vjp=lambda i, o, c: [c[0] * i[1], None])
    gx, gy = ik.function([x, y], ik.grad(ik.sum(half(x, y)), [x, y]))(np.ones(2), np.array([3.0, 4.0]))
    np.testing.assert_array_equal(gx, [3.0, 4.0])
    np.testing.assert_array_equal(gy, [0.0, 0.0])


# ---------------------------------------------------------------------------
# numerics
# ---------------------------------------------------------------------------

def test_softmax_cross_entropy_gradient_is_stable_in_float32():
    z = ik.matrix("z", dtype="float32")
    t = ik.lvector("t")
    n = z.shape[0]
    cost = -ik.mean(ik.log(ik.softmax(z))[ik.arange(n), t])
    g = ik.grad(cost, z)
    f = ik.function([z, t], [cost, g])
    zv = np.array([[1000.0, -1000.0, 0.0, 999.0],
                   [-1000.0, 1000.0, 1000.0, -999.0],
                   [-1000.0, -1000.0, -1000.0, -1000.0],
                   [1000.0, 0.0, -1000.0, 500.0]], np.float32)
    tv = np.array([1, 2, 0, 0])
    cv, gv = f(zv, tv)
    assert gv.dtype == np.float32 and cv.dtype == np.float32
    z64 = zv.astype(np.float64)
    m = z64.max(1, keepdims=True)
    lse = m + np.log(np.exp(z64 - m).sum(1, keepdims=True))
    sm = np.exp(z64 - lse)
    onehot = np.eye(4)[tv]
    assert np.all(np.isfinite(gv)) and np.isfinite(cv)
    np.testing.assert_allclose(gv, (sm - onehot) / 4, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(cv, -np.mean((z64 - lse)[np.arange(4), tv]), rtol=1e-5)
    ir = f.ir("tensor")   # differentiated as log_softmax: no log of a softmax is left
    assert "ik.log_softmax" in ir and "ik.softmax" not in ir and not re.search(r"ik\.log\s", ir), ir


def _model(dtype):
    W = ik.matrix("W", dtype=dtype)
    x = ik.matrix("x", dtype=dtype)
    b = ik.vector("b", dtype=dtype)
    h = ik.tanh(x @ W + b)
    cost = ik.mean(ik.logsumexp(h * 3.0, 1)) + ik.sum(ik.softplus(W) ** 2) * 0.1 + ik.max(h)
    return ik.function([W, x, b], ik.grad(cost, [W, x, b]))


def test_float32_gradients_agree_with_float64():
    rng = _rng(9)
    f32, f64 = _model("float32"), _model("float64")
    args = [rng.uniform(-1, 1, (3, 4)), rng.uniform(-1, 1, (5, 3)), rng.uniform(-1, 1, 4)]
    g32 = f32(*[a.astype(np.float32) for a in args])
    g64 = f64(*args)
    for a, b in zip(g32, g64):
        assert a.dtype == np.float32 and b.dtype == np.float64
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


# ---------------------------------------------------------------------------
# shared variables, updates, the IR
# ---------------------------------------------------------------------------

def test_sgd_step_through_shared_variables():
    rng = _rng(10)
    W0, b0 = rng.uniform(-1, 1, (3, 2)), rng.uniform(-1, 1, 2)
    W = ik.shared(W0.copy(), name="W")
    b = ik.shared(b0.copy(), name="b")
    x, y = ik.matrix("x", dtype="float64"), ik.matrix("y", dtype="float64")
    cost = ik.mean((x @ W + b - y) ** 2)
    gW, gb = ik.grad(cost, [W, b])
    lr = 0.1
    step = ik.function([x, y], cost, updates=[(W, W - lr * gW), (b, b - lr * gb)])
    xv, yv = rng.uniform(-1, 1, (4, 3)), rng.uniform(-1, 1, (4, 2))
    c = step(xv, yv)
    r = xv @ W0 + b0 - yv
    np.testing.assert_allclose(c, np.mean(r ** 2), rtol=1e-12)
    dW, db = 2 * xv.T @ r / r.size, 2 * r.sum(0) / r.size
    np.testing.assert_allclose(W.get_value(), W0 - lr * dW, rtol=1e-12)
    np.testing.assert_allclose(b.get_value(), b0 - lr * db, rtol=1e-12)
    c2 = step(xv, yv)
    assert c2 < c   # a small step downhill


def test_ir_after_autodiff_has_no_ikad_op():
    x = ik.vector("x", dtype="float64")
    cost = ik.sum(ik.exp(ik.stop_gradient(x) * x))
    f = ik.function([x], [ik.grad(cost, x), ik.Rop(ik.grad(cost, x), x, x)])
    assert "ikad.grad" in f.ir("autodiff") and "ikad.jvp" in f.ir("autodiff")
    tensor = f.ir("tensor")
    assert "ikad." not in tensor, tensor
    xv = np.array([0.5, -1.0])
    got = f(xv)
    np.testing.assert_allclose(got[0], xv * np.exp(xv * xv), rtol=1e-12)
    np.testing.assert_allclose(got[1], xv ** 3 * np.exp(xv * xv), rtol=1e-12)  # stop_gradient(x) stays constant


def test_irkit_opt_expands_ikad_grad(tmp_path):
    from irkit.function import build_module
    x = ik.vector("x", dtype="float64")
    cost = ik.sum(ik.sin(x) * x)
    module, _ = build_module([x], [ik.grad(cost, x)], {})
    text = str(module)
    assert "ikad.grad" in text
    src = tmp_path / "grad.mlir"
    src.write_text(text)
    opt = os.path.join(os.path.dirname(sys.executable), "irkit-opt")
    proc = subprocess.run([opt, str(src), "-p", "autodiff"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "ikad." not in out, out
    assert "ik.cos" in out and "func.func" in out, out
    # the expanded text parses and runs to the same gradient as the API's
    from xdsl.parser import Parser
    from irkit.pipeline import make_context
    Parser(make_context(), out).parse_module()
    xv = np.array([0.3, -1.2, 2.0])
    np.testing.assert_allclose(ik.function([x], ik.grad(cost, x))(xv), np.cos(xv) * xv + np.sin(xv), rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_max_gradient_of_a_transcendental_is_one_at_the_argmax(dtype):
    """max's derivative compares each element with the maximum, and the loops may compute
    f(x) twice (in the reduction, in the mask): every loop must give the same bits, so libm's
    vector and scalar forms must split a row at the same places (a remainder run at another
    vector width gave a NaN or a zero gradient for 92 of these shapes)."""
    x = ik.matrix("x", dtype=dtype)
    for fn in (ik.tanh, ik.exp, ik.sin, ik.log1p, ik.sigmoid, ik.log):
        h = fn(x)
        g = ik.function([x], [ik.grad(ik.max(h), x), ik.grad(ik.max(h, axis=1).sum(), x),
                              ik.grad(ik.min(h, axis=0).sum(), x)])
        for rows, cols in [(3, c) for c in range(1, 70)] + [(17, 5), (17, 37), (1, 129), (5, 100)]:
            a = np.random.default_rng(cols * 7 + rows).uniform(0.1, 1, (rows, cols)).astype(dtype)
            got = g(a)
            for k, (v, ones) in enumerate(zip(got, (1, rows, cols))):
                assert not np.isnan(v).any() and (v != 0).sum() == ones, (fn.__name__, rows, cols, k)
