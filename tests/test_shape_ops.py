"""Shape ops, creation ops and contractions against numpy: reshape (with -1 and symbolic
sizes), transpose, expand_dims, squeeze, flatten, broadcast_to, concatenate, stack, zeros/ones/
full/*_like/eye/arange (also with symbolic n), dot/matmul/outer for every rank combination."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import irkit as ik
from conftest import assert_isolated_ok, assert_matches, sample


def _check_all(got, wants, failures, names=None):
    names = names or [f"output {k}" for k in range(len(wants))]
    assert len(got) == len(wants)
    for name, g, w in zip(names, got, wants):
        failures.check(name, assert_matches, g, np.asarray(w), what=name)
    failures.raise_if_any()


# ---------------------------------------------------------------------------
# reshape, flatten
# ---------------------------------------------------------------------------

def test_reshape_forms(rng, failures):
    x = ik.matrix("x", dtype="float32")
    T = ik.tensor3("T", dtype="int16")
    n, m = x.shape
    exprs = {
        "x.reshape(-1)": (x.reshape(-1), lambda a, t: a.reshape(-1)),
        "reshape(x, (m, n))": (ik.reshape(x, (m, n)), lambda a, t: a.reshape(a.shape[1], a.shape[0])),
        "x.reshape(n, m, 1)": (x.reshape(n, m, 1), lambda a, t: a.reshape(*a.shape, 1)),
        "x.reshape((1, -1, m))": (x.reshape((1, -1, m)), lambda a, t: a.reshape(1, -1, a.shape[1])),
        "x.reshape([n * m])": (x.reshape([n * m]), lambda a, t: a.reshape(a.size)),
        "x.T.reshape(-1)": (x.T.reshape(-1), lambda a, t: a.T.reshape(-1)),
        "x[:, ::2].reshape(-1)": (x[:, ::2].reshape(-1), lambda a, t: a[:, ::2].reshape(-1)),
        "T.reshape((T.shape[0], -1))": (T.reshape((T.shape[0], -1)), lambda a, t: t.reshape(t.shape[0], -1)),
        "T.reshape(-1, T.shape[2])": (T.reshape(-1, T.shape[2]), lambda a, t: t.reshape(-1, t.shape[2])),
        "T.flatten()": (T.flatten(), lambda a, t: t.flatten()),
        "T.ravel()": (T.ravel(), lambda a, t: t.ravel()),
        "ik.flatten(T, 2)": (ik.flatten(T, 2), lambda a, t: t.reshape(t.shape[0], -1)),
        "T.flatten(3)": (T.flatten(3), lambda a, t: t),
        "(T + 1).reshape(-1)": ((T + 1).reshape(-1), lambda a, t: (t + 1).reshape(-1)),
        "x.reshape(-1) * 2": (x.reshape(-1) * 2, lambda a, t: a.reshape(-1) * 2),
    }
    f = ik.function([x, T], [e for e, _ in exprs.values()])
    for xs, ts in [((3, 4), (2, 3, 4)), ((1, 5), (1, 1, 7)), ((0, 3), (2, 0, 3)), ((6, 2), (3, 2, 1))]:
        a, t = sample(rng, "float32", xs), sample(rng, "int16", ts)
        got = f(a, t)
        _check_all(got, [ref(a, t) for _, ref in exprs.values()], failures, [f"{k} {xs}" for k in exprs])


def test_reshape_infer_next_to_a_zero_size_raises():
    """numpy: "cannot reshape array of size 0 into shape (1,newaxis,0)" -- a ShapeError, not a
    division by zero that kills the process (run in a subprocess so a crash is a failure)."""
    out = assert_isolated_ok("""
        import numpy as np, irkit as ik
        x = ik.matrix("x")
        f = ik.function([x], x.reshape((1, -1, x.shape[0])))
        print(f(np.ones((2, 3))).shape)
        try:
            f(np.zeros((0, 3)))
        except ik.ShapeError as e:
            print("ShapeError")
        v, k = ik.vector("v"), ik.lscalar("k")
        g = ik.function([v, k], v.reshape((k, -1)))
        try:
            g(np.ones(4), 0)  # numpy: cannot reshape array of size 4 into shape (0,newaxis)
        except ik.ShapeError as e:
            print("ShapeError")
    """)
    assert out.split() == ["(1,", "3,", "2)", "ShapeError", "ShapeError"]


def test_reshape_errors():
    x = ik.matrix("x")
    f = ik.function([x], x.reshape(-1, 3))
    assert_matches(f(np.ones((2, 6))), np.ones((4, 3)))
    with pytest.raises(ik.ShapeError):  # 10 elements into rows of 3
        f(np.ones((2, 5)))
    s = ik.tensor("s", shape=(2, 6))
    with pytest.raises(ik.ShapeError):
        s.reshape(5, 2)
    with pytest.raises(ik.ShapeError):
        s.reshape(-1, 5)
    with pytest.raises(ik.ShapeError):
        s.reshape(-1, -1)
    assert s.reshape(3, -1).static_shape == (3, 4)
    n = x.shape[0]
    g = ik.function([x], x.reshape(n, 2, -1))
    assert_matches(g(np.arange(12.0).reshape(3, 4)), np.arange(12.0).reshape(3, 2, 2))
    with pytest.raises(ik.ShapeError):
        g(np.ones((3, 3)))
    # symbolic sizes that are negative: numpy's "negative dimensions are not allowed"
    v = ik.vector("v")
    k, j = ik.lscalar("k"), ik.lscalar("j")
    h = ik.function([v, k, j], [v.reshape((k, j)) + 1, v.reshape((k, -1))])
    got = h(np.arange(4.0), 2, 2)
    assert_matches(got[0], np.arange(4.0).reshape(2, 2) + 1)
    assert_matches(got[1], np.arange(4.0).reshape(2, -1))
    for kv, jv in [(-1, -4), (-2, -2), (-2, 2)]:
        with pytest.raises(ik.ShapeError):
            h(np.arange(4.0), kv, jv)


# ---------------------------------------------------------------------------
# transpose, expand_dims, squeeze, broadcast_to
# ---------------------------------------------------------------------------

def test_transpose_expand_squeeze(rng, failures):
    x = ik.matrix("x", dtype="float64")
    T = ik.tensor3("T", dtype="int32")
    v = ik.vector("v", dtype="uint8")
    s = ik.scalar("s", dtype="float32")
    S = ik.tensor("S", shape=(1, None, 1, None), dtype="float64")
    exprs = {
        "x.T": (x.T, lambda d: d["x"].T),
        "ik.transpose(x)": (ik.transpose(x), lambda d: np.transpose(d["x"])),
        "T.T": (T.T, lambda d: d["T"].T),
        "transpose(T, (1, 0, 2))": (ik.transpose(T, (1, 0, 2)), lambda d: np.transpose(d["T"], (1, 0, 2))),
        "T.transpose(2, 0, 1)": (T.transpose(2, 0, 1), lambda d: d["T"].transpose(2, 0, 1)),
        "T.transpose((0, 2, 1))": (T.transpose((0, 2, 1)), lambda d: d["T"].transpose((0, 2, 1))),
        "transpose(T, (-1, 0, 1))": (ik.transpose(T, (-1, 0, 1)), lambda d: np.transpose(d["T"], (-1, 0, 1))),
        "v.T": (v.T, lambda d: d["v"].T),
        "s.T": (s.T, lambda d: d["s"].T),
        "x.T + 1": (x.T + 1, lambda d: d["x"].T + 1),
        "expand_dims(v, 0)": (ik.expand_dims(v, 0), lambda d: np.expand_dims(d["v"], 0)),
        "expand_dims(v, -1)": (ik.expand_dims(v, -1), lambda d: np.expand_dims(d["v"], -1)),
        "expand_dims(x, 1)": (ik.expand_dims(x, 1), lambda d: np.expand_dims(d["x"], 1)),
        "expand_dims(x, (0, 3))": (ik.expand_dims(x, (0, 3)), lambda d: np.expand_dims(d["x"], (0, 3))),
        "expand_dims(x, (-1, 0))": (ik.expand_dims(x, (-1, 0)), lambda d: np.expand_dims(d["x"], (-1, 0))),
        "expand_dims(s, 0)": (ik.expand_dims(s, 0), lambda d: np.expand_dims(d["s"], 0)),
        "squeeze(S)": (ik.squeeze(S), lambda d: np.squeeze(d["S"])),
        "S.squeeze(0)": (S.squeeze(0), lambda d: d["S"].squeeze(0)),
        "squeeze(S, (0, 2))": (ik.squeeze(S, (0, 2)), lambda d: np.squeeze(d["S"], (0, 2))),
        "squeeze(S, -2)": (ik.squeeze(S, -2), lambda d: np.squeeze(d["S"], -2)),
        "squeeze(expand_dims(x, 1), 1)": (ik.squeeze(ik.expand_dims(x, 1), 1), lambda d: d["x"]),
        "x.squeeze() (nothing static)": (x.squeeze(), lambda d: d["x"]),
        "broadcast_to(v, (3, n))": (ik.broadcast_to(v, (3, v.shape[0])),
                                    lambda d: np.broadcast_to(d["v"], (3, d["v"].shape[0]))),
        "broadcast_to(s, (2, 3))": (ik.broadcast_to(s, (2, 3)), lambda d: np.broadcast_to(d["s"], (2, 3))),
        "broadcast_to(S, ...)": (ik.broadcast_to(S, (2, 4, S.shape[1], 3, S.shape[3])),
                                 lambda d: np.broadcast_to(d["S"], (2, 4, d["S"].shape[1], 3, d["S"].shape[3]))),
        "broadcast_to(x, x.shape)": (ik.broadcast_to(x, x.shape), lambda d: d["x"]),
        "broadcast_to(x[None], (2,) + shape)": (ik.broadcast_to(x[None], (2, x.shape[0], x.shape[1])),
                                                lambda d: np.broadcast_to(d["x"][None], (2,) + d["x"].shape)),
    }
    f = ik.function([x, T, v, s, S], [e for e, _ in exprs.values()])
    for xs, ts, n, ss in [((3, 4), (2, 3, 4), 5, (1, 2, 1, 3)), ((1, 0), (0, 2, 1), 0, (1, 0, 1, 2))]:
        d = {"x": sample(rng, "float64", xs), "T": sample(rng, "int32", ts), "v": sample(rng, "uint8", n),
             "s": np.float32(1.5), "S": sample(rng, "float64", ss)}
        got = f(d["x"], d["T"], d["v"], d["s"], d["S"])
        _check_all(got, [ref(d) for _, ref in exprs.values()], failures, [f"{k} {xs}" for k in exprs])


def test_shape_op_errors():
    x = ik.matrix("x")
    T = ik.tensor3("T")
    with pytest.raises(ValueError):
        ik.transpose(T, (0, 1))
    with pytest.raises(ValueError):
        T.transpose(0, 0, 1)
    with pytest.raises(ValueError):
        ik.expand_dims(x, 3)
    with pytest.raises(ValueError):
        ik.expand_dims(x, (0, 0))
    with pytest.raises(ValueError):
        ik.squeeze(ik.tensor("s", shape=(2, 1)), 0)
    with pytest.raises(ValueError):
        ik.broadcast_to(ik.tensor("a", shape=(3,)), (2, 4))
    with pytest.raises(ValueError):
        ik.broadcast_to(x, (3,))
    # a dynamic dim that must be 1 (squeeze) or must match (broadcast_to) is checked at the call
    f = ik.function([x], [ik.squeeze(x, 1), ik.broadcast_to(x, (2, x.shape[0], 1))])
    got = f(np.ones((3, 1)))
    assert_matches(got[0], np.ones(3))
    assert_matches(got[1], np.ones((2, 3, 1)))
    with pytest.raises(ik.ShapeError):
        f(np.ones((3, 2)))


# ---------------------------------------------------------------------------
# concatenate, stack
# ---------------------------------------------------------------------------

def test_concatenate_and_stack(rng, failures):
    a = ik.matrix("a", dtype="float32")
    b = ik.matrix("b", dtype="float32")
    c = ik.matrix("c", dtype="int8")
    u = ik.vector("u", dtype="float64")
    w = ik.vector("w", dtype="float64")
    exprs = {
        "concat axis 0": (ik.concatenate([a, b], axis=0), lambda d: np.concatenate([d["a"], d["b"]], axis=0)),
        "concat default": (ik.concatenate([a, b, a]), lambda d: np.concatenate([d["a"], d["b"], d["a"]])),
        "concat axis 1": (ik.concatenate([a.T, b.T], axis=1), lambda d: np.concatenate([d["a"].T, d["b"].T], 1)),
        "concat axis -1 mixed dtypes": (ik.concatenate([a, c], axis=-1),
                                        lambda d: np.concatenate([d["a"], d["c"]], axis=-1)),
        "concat 1-D": (ik.concatenate([u, w, u * 2]), lambda d: np.concatenate([d["u"], d["w"], d["u"] * 2])),
        "concat of one": (ik.concatenate([u]), lambda d: np.concatenate([d["u"]])),
        "concat with constant": (ik.concatenate([u, np.array([7.0, 8.0])]),
                                 lambda d: np.concatenate([d["u"], [7.0, 8.0]])),
        "stack axis 0": (ik.stack([u, w]), lambda d: np.stack([d["u"], d["w"]])),
        "stack axis 1": (ik.stack([u, w, u], axis=1), lambda d: np.stack([d["u"], d["w"], d["u"]], axis=1)),
        "stack axis -1 2-D": (ik.stack([a, b], axis=-1), lambda d: np.stack([d["a"], d["b"]], axis=-1)),
        "stack 2-D axis 1": (ik.stack([a, b], axis=1), lambda d: np.stack([d["a"], d["b"]], axis=1)),
        "concat then reduce": (ik.concatenate([a, b], 0).sum(axis=0),
                               lambda d: np.concatenate([d["a"], d["b"]], 0).sum(axis=0)),
    }
    f = ik.function([a, b, c, u, w], [e for e, _ in exprs.values()])
    for (r, k), n in [((2, 3), 4), ((0, 3), 0), ((3, 0), 1)]:
        d = {"a": sample(rng, "float32", (r, k)), "b": sample(rng, "float32", (r, k)),
             "c": sample(rng, "int8", (r, 2)), "u": sample(rng, "float64", n), "w": sample(rng, "float64", n)}
        got = f(d["a"], d["b"], d["c"], d["u"], d["w"])
        _check_all(got, [ref(d) for _, ref in exprs.values()], failures, [f"{key} {(r, k)}" for key in exprs])
    # unequal sizes on the joined axis are fine; on another axis: ShapeError at the call
    g = ik.function([a, b], ik.concatenate([a, b], axis=0))
    assert_matches(g(np.ones((1, 3), np.float32), np.zeros((2, 3), np.float32)),
                   np.concatenate([np.ones((1, 3), np.float32), np.zeros((2, 3), np.float32)]))
    with pytest.raises(ik.ShapeError):
        g(np.ones((1, 3), np.float32), np.ones((1, 4), np.float32))
    with pytest.raises(ValueError):
        ik.concatenate([a, u])
    with pytest.raises(ValueError):
        ik.concatenate([])
    with pytest.raises(ValueError):
        ik.concatenate([ik.tensor("p", shape=(2, 3)), ik.tensor("q", shape=(2, 4))])


# ---------------------------------------------------------------------------
# creation
# ---------------------------------------------------------------------------

def test_creation_ops(failures):
    x = ik.matrix("x", dtype="float32")
    k = ik.scalar("k", dtype="int32")
    fv = ik.scalar("fv", dtype="float64")
    n, m = x.shape
    exprs = {
        "zeros((2, 3))": (ik.zeros((2, 3)), lambda a, kk, v: np.zeros((2, 3))),
        "ones(4, float32)": (ik.ones(4, dtype="float32"), lambda a, kk, v: np.ones(4, np.float32)),
        "zeros((n, 3), int8)": (ik.zeros((n, 3), "int8"), lambda a, kk, v: np.zeros((a.shape[0], 3), np.int8)),
        "ones(n)": (ik.ones(n), lambda a, kk, v: np.ones(a.shape[0])),
        "full((n, 2), 7, int8)": (ik.full((n, 2), 7, dtype="int8"),
                                  lambda a, kk, v: np.full((a.shape[0], 2), 7, np.int8)),
        "full((2, m), fv)": (ik.full((2, m), fv), lambda a, kk, v: np.full((2, a.shape[1]), v)),
        "full(3, 2.5)": (ik.full(3, 2.5), lambda a, kk, v: np.full(3, 2.5)),
        "full((2,), True)": (ik.full((2,), True), lambda a, kk, v: np.full((2,), True)),
        "zeros_like(x)": (ik.zeros_like(x), lambda a, kk, v: np.zeros_like(a)),
        "ones_like(x, int32)": (ik.ones_like(x, dtype="int32"), lambda a, kk, v: np.ones_like(a, np.int32)),
        "zeros((0, 2))": (ik.zeros((0, 2)), lambda a, kk, v: np.zeros((0, 2))),
        "eye(3)": (ik.eye(3), lambda a, kk, v: np.eye(3)),
        "eye(n)": (ik.eye(n), lambda a, kk, v: np.eye(a.shape[0])),
        "eye(3, 4, k=1)": (ik.eye(3, 4, k=1), lambda a, kk, v: np.eye(3, 4, 1)),
        "eye(n, m, k=-1, int16)": (ik.eye(n, m, k=-1, dtype="int16"),
                                   lambda a, kk, v: np.eye(a.shape[0], a.shape[1], -1, np.int16)),
        "eye(2, 5, k=7)": (ik.eye(2, 5, k=7), lambda a, kk, v: np.eye(2, 5, 7)),
        "arange(5)": (ik.arange(5), lambda a, kk, v: np.arange(5)),
        "arange(2, 10, 3)": (ik.arange(2, 10, 3), lambda a, kk, v: np.arange(2, 10, 3)),
        "arange(10, 2, -3)": (ik.arange(10, 2, -3), lambda a, kk, v: np.arange(10, 2, -3)),
        "arange(1.0, 2.0, 0.25)": (ik.arange(1.0, 2.0, 0.25), lambda a, kk, v: np.arange(1.0, 2.0, 0.25)),
        "arange(4, dtype=float32)": (ik.arange(4, dtype="float32"), lambda a, kk, v: np.arange(4, dtype=np.float32)),
        "arange(0)": (ik.arange(0), lambda a, kk, v: np.arange(0)),
        "arange(n)": (ik.arange(n), lambda a, kk, v: np.arange(a.shape[0])),
        "arange(0, m, 2)": (ik.arange(0, m, 2), lambda a, kk, v: np.arange(0, a.shape[1], 2)),
        "arange(n, 0, -1)": (ik.arange(n, 0, -1), lambda a, kk, v: np.arange(a.shape[0], 0, -1)),
        "arange(k)": (ik.arange(k), lambda a, kk, v: np.arange(kk)),
        "arange(k, n + 5)": (ik.arange(k, n + 5), lambda a, kk, v: np.arange(kk, a.shape[0] + 5)),
        "arange(n) * 1.5 + x.sum()": (ik.arange(n) * 1.5, lambda a, kk, v: np.arange(a.shape[0]) * 1.5),
        "x + eye(n, m)": (x + ik.eye(n, m, dtype="float32"),
                          lambda a, kk, v: a + np.eye(a.shape[0], a.shape[1], dtype=np.float32)),
    }
    f = ik.function([x, k, fv], [e for e, _ in exprs.values()])
    for shape, kk in [((3, 4), 2), ((1, 1), 0), ((0, 5), -3), ((4, 2), 9)]:
        a = np.ones(shape, np.float32)
        got = f(a, kk, 0.5)
        wants = [ref(a, np.int32(kk), np.float64(0.5)) for _, ref in exprs.values()]
        _check_all(got, wants, failures, [f"{key} {shape}" for key in exprs])
    assert ik.zeros(3).dtype == np.float64  # floatX
    assert ik.arange(3).dtype == np.int64
    assert ik.arange(3.0).dtype == np.float64
    with pytest.raises(ValueError):
        ik.zeros((-1, 2))
    with pytest.raises(ValueError):
        ik.full((2, 2), np.ones(2))
    with pytest.raises(ValueError):  # step zero: numpy raises ZeroDivisionError/ValueError
        g = ik.function([k], ik.arange(0, 5, k))
        g(0)


# ---------------------------------------------------------------------------
# dot, matmul, outer
# ---------------------------------------------------------------------------

def _contract_shapes(ra, rb, kind):
    """Operand shapes for a contraction of ranks ra, rb with numpy's rules (K=3 inner)."""
    K = 3
    if kind == "matmul":
        batch_a = [(2, 1, 4)[i] for i in range(3)][3 - max(ra - 2, 0):] if ra > 2 else []
        batch_b = [(2, 5, 4)[i] for i in range(3)][3 - max(rb - 2, 0):] if rb > 2 else []
        a = (K,) if ra == 1 else tuple(batch_a) + (2, K)
        b = (K,) if rb == 1 else tuple(batch_b) + (K, 4)
        return a, b
    # dot: a's last with b's second to last
    a = (K,) if ra == 1 else (2, 5, 4)[:ra - 1] + (K,)
    b = (K,) if rb == 1 else (3, 2)[:rb - 2] + (K, 4)
    return a, b


def _decl(name, shape, dtype):
    """An input whose size-1 dims are static (so they broadcast), the rest dynamic."""
    return ik.tensor(name, shape=tuple(1 if s == 1 else None for s in shape), dtype=dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32", "int64", "int32"])
def test_matmul_every_rank_combination(dtype, rng, failures):
    ranks = list(itertools.product([1, 2, 3, 4], repeat=2))
    if dtype == "int32":  # the loop form is dtype-generic: int64 runs every combination
        ranks = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 2), (1, 3), (3, 4)]
    inputs, data, outs, wants, names = [], [], [], [], []
    for ra, rb in ranks:
        sa, sb = _contract_shapes(ra, rb, "matmul")
        a, b = _decl(f"a{ra}{rb}", sa, dtype), _decl(f"b{ra}{rb}", sb, dtype)
        av, bv = sample(rng, dtype, sa), sample(rng, dtype, sb)
        inputs += [a, b]
        data += [av, bv]
        outs.append(a @ b if (ra + rb) % 2 else ik.matmul(a, b))
        wants.append(np.matmul(av, bv))
        names.append(f"matmul rank {ra} x rank {rb}: {sa} @ {sb}")
    got = ik.function(inputs, outs)(*data)
    tol = {"float32": dict(rtol=1e-5, atol=1e-5)}.get(dtype, {})
    for name, g, w in zip(names, got, wants):
        failures.check(name, assert_matches, g, w, what=name, **tol)
    failures.raise_if_any()


@pytest.mark.parametrize("dtype", ["float64", "int32"])
def test_dot_every_rank_combination(dtype, rng, failures):
    ranks = list(itertools.product([0, 1, 2, 3], repeat=2))
    if dtype == "int32":
        ranks = [(0, 2), (1, 1), (2, 1), (1, 2), (2, 2), (3, 2), (2, 3), (1, 3)]
    inputs, data, outs, wants, names = [], [], [], [], []
    for ra, rb in ranks:
        if ra == 0 or rb == 0:
            sa = () if ra == 0 else (2, 3, 4)[:ra]
            sb = () if rb == 0 else (3, 4, 2)[:rb]
        else:
            sa, sb = _contract_shapes(ra, rb, "dot")
        a, b = _decl(f"a{ra}{rb}", sa, dtype), _decl(f"b{ra}{rb}", sb, dtype)
        av, bv = sample(rng, dtype, sa), sample(rng, dtype, sb)
        inputs += [a, b]
        data += [np.asarray(av), np.asarray(bv)]
        outs.append(ik.dot(a, b) if (ra + rb) % 2 else a.dot(b))
        wants.append(np.dot(av, bv))
        names.append(f"dot rank {ra} x rank {rb}: {sa} . {sb}")
    got = ik.function(inputs, outs)(*data)
    for name, g, w in zip(names, got, wants):
        failures.check(name, assert_matches, g, w, what=name)
    failures.raise_if_any()


def test_contractions_small_dtypes_views_and_outer(rng, failures):
    """int8/uint8/bool matmul (numpy wraps / uses logical ops), mixed dtypes, transposed and
    sliced operands (BLAS sees strided data), size-0 inner dims, outer of any ranks."""
    a8, b8 = ik.matrix("a8", dtype="int8"), ik.matrix("b8", dtype="int8")
    u8 = ik.matrix("u8", dtype="uint8")
    bl = ik.matrix("bl", dtype="bool")
    x, y = ik.matrix("x", dtype="float32"), ik.matrix("y", dtype="float64")
    v = ik.vector("v", dtype="float32")
    T = ik.tensor3("T", dtype="float64")
    exprs = {
        "int8 @ int8": (a8 @ b8, lambda d: d["a8"] @ d["b8"]),
        "uint8 @ uint8.T": (u8 @ u8.T, lambda d: d["u8"] @ d["u8"].T),
        "bool @ bool.T": (bl @ bl.T, lambda d: d["bl"] @ d["bl"].T),
        "int8 @ float32": (a8 @ x, lambda d: d["a8"] @ d["x"]),
        "float32 @ float64": (x.T @ y, lambda d: d["x"].T @ d["y"]),
        "x.T @ x": (x.T @ x, lambda d: d["x"].T @ d["x"]),
        "x[::2].T @ x[::2]": (x[::2].T @ x[::2], lambda d: d["x"][::2].T @ d["x"][::2]),
        "x[:, 1:] @ v[1:]": (x[:, 1:] @ v[1:], lambda d: d["x"][:, 1:] @ d["v"][1:]),
        "dot(x.T, v) (2-D . 1-D)": (ik.dot(v, x), lambda d: np.dot(d["v"], d["x"])),
        "T.transpose(1, 0, 2) @ y": (T.transpose(1, 0, 2) @ y, lambda d: d["T"].transpose(1, 0, 2) @ d["y"]),
        "outer(v, v)": (ik.outer(v, v), lambda d: np.outer(d["v"], d["v"])),
        "outer(x, v)": (ik.outer(x, v), lambda d: np.outer(d["x"], d["v"])),
        "outer(a8, y)": (ik.outer(a8, y), lambda d: np.outer(d["a8"], d["y"])),
        "matmul then add": (x @ x.T + 1, lambda d: d["x"] @ d["x"].T + 1),
    }
    inputs = [a8, b8, u8, bl, x, y, v, T]
    f = ik.function(inputs, [e for e, _ in exprs.values()])
    for n, k in [(4, 3), (3, 0), (5, 1), (1, 2)]:
        d = {"a8": sample(rng, "int8", (n, n)), "b8": sample(rng, "int8", (n, n)),
             "u8": sample(rng, "uint8", (n, k)), "bl": sample(rng, "bool", (n, k)),
             "x": sample(rng, "float32", (n, n)), "y": sample(rng, "float64", (n, 2)),
             "v": sample(rng, "float32", n), "T": sample(rng, "float64", (2, 3, n))}
        got = f(*[d[name] for name in ("a8", "b8", "u8", "bl", "x", "y", "v", "T")])
        for (what, (_, ref)), g in zip(exprs.items(), got):
            failures.check(f"{what} n={n} k={k}", assert_matches, g, ref(d), what=what, rtol=2e-5, atol=1e-5)
    failures.raise_if_any()


def test_contraction_errors():
    a = ik.tensor("a", shape=(3, 4))
    b = ik.tensor("b", shape=(5, 6))
    with pytest.raises(ik.ShapeError):
        a @ b
    with pytest.raises(ik.ShapeError):
        ik.dot(a, b)
    with pytest.raises(ValueError):
        ik.matmul(ik.scalar("s"), a)
    x, y = ik.matrix("x"), ik.matrix("y")
    f = ik.function([x, y], x @ y)
    assert_matches(f(np.ones((2, 3)), np.ones((3, 4))), np.full((2, 4), 3.0))
    with pytest.raises(ik.ShapeError):
        f(np.ones((2, 3)), np.ones((4, 3)))
    p = ik.tensor3("p")
    q = ik.tensor3("q")
    g = ik.function([p, q], p @ q)
    with pytest.raises(ik.ShapeError):  # batch dims differ (dynamic dims do not broadcast)
        g(np.ones((2, 3, 4)), np.ones((3, 4, 5)))


def test_shape_attributes_and_numpy_keyword_signatures(rng):
    x = ik.matrix("x", dtype="float32")
    assert x.ndim == 2 and isinstance(x.ndim, int)
    assert x.dtype == np.float32 and isinstance(x.dtype, np.dtype)
    n, m = x.shape
    assert isinstance(n, ik.Variable) and n.dtype == np.int64 and n.ndim == 0
    outs = [n, m * 2, x.size, ik.zeros((n, 3)).shape[0] + m,
            ik.transpose(x, axes=(1, 0)), ik.expand_dims(x, axis=0), ik.squeeze(ik.expand_dims(x, 1), axis=1),
            ik.reshape(x, shape=(-1,)), ik.broadcast_to(x, shape=(2, n, m)), ik.concatenate([x, x], axis=1),
            ik.stack([x, x], axis=-1), x.reshape((m, n)), x.transpose((1, 0)), x.transpose()]
    f = ik.function([x], outs)
    xv = sample(rng, "float32", (3, 5))
    got = f(xv)
    wants = [np.int64(3), np.int64(10), np.int64(15), np.int64(8), np.transpose(xv, axes=(1, 0)),
             np.expand_dims(xv, axis=0), xv, np.reshape(xv, (-1,)), np.broadcast_to(xv, (2, 3, 5)),
             np.concatenate([xv, xv], axis=1), np.stack([xv, xv], axis=-1), xv.reshape(5, 3), xv.transpose((1, 0)),
             xv.transpose()]
    for k, (g, w) in enumerate(zip(got, wants)):
        assert_matches(g, np.asarray(w), what=f"output {k}")
    s = ik.tensor("s", shape=(4, None))
    assert s.shape[0] is not None and len(s) == 4
    with pytest.raises(TypeError):
        len(x)  # the first dim is not static
    with pytest.raises(TypeError):
        bool(x > 0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("size", [(3, 5, 4), (70, 50, 40), (1, 500, 300)], ids=["loops", "blas", "blas-one-row"])
def test_matmul_with_transposed_operands_small_and_large(dtype, size, rng):
    """The runtime's irkit_gemm (sizes known at run time only) runs a product of at most
    SMALL_GEMM multiply-adds as loops, a larger one as BLAS (a single row of the result:
    gemv); either reads a transposed operand (a.T, b.T) in place, with and without a batch."""
    from irkit.dialects.ik.linalg import SMALL_GEMM
    m, n, k = size
    assert (m * n * k <= SMALL_GEMM) == (size == (3, 5, 4))
    a, at = ik.matrix("a", dtype=dtype), ik.matrix("at", dtype=dtype)
    b, bt = ik.matrix("b", dtype=dtype), ik.matrix("bt", dtype=dtype)
    ab = ik.tensor3("ab", dtype=dtype)
    outs = [a @ b, at.T @ b, a @ bt.T, at.T @ bt.T, ab @ bt.T]
    av, bv = sample(rng, dtype, (m, k)), sample(rng, dtype, (k, n))
    abv = sample(rng, dtype, (2, m, k))
    got = ik.function([a, at, b, bt, ab], outs)(av, np.ascontiguousarray(av.T), bv, np.ascontiguousarray(bv.T), abv)
    wants = [av @ bv] * 4 + [abv @ bv]
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)
    for g, w in zip(got, wants):
        np.testing.assert_allclose(g, w, **tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_vector_matrix_products_above_the_inline_size_use_gemv(dtype, rng):
    """A row times a matrix and a matrix times a column (static 1s from 1-D operands), large
    enough for BLAS: gemv, with the matrix read as stored or transposed."""
    v, M, Mt = ik.vector("v", dtype=dtype), ik.matrix("M", dtype=dtype), ik.matrix("Mt", dtype=dtype)
    w = ik.vector("w", dtype=dtype)
    f = ik.function([v, M, Mt, w], [ik.dot(v, M), ik.dot(v, Mt.T), ik.dot(M, w), ik.dot(Mt.T, w)])
    assert "irkit_gemv" in f.ir("loops")
    vv, Mv, wv = sample(rng, dtype, (300,)), sample(rng, dtype, (300, 310)), sample(rng, dtype, (310,))
    got = f(vv, Mv, np.ascontiguousarray(Mv.T), wv)
    tol = dict(rtol=1e-4, atol=1e-3) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)
    for g, want in zip(got, [vv @ Mv, vv @ Mv, Mv @ wv, Mv @ wv]):
        np.testing.assert_allclose(g, want, **tol)


def test_blas_threads_follow_config_num_threads(rng):
    """config.num_threads sets the threads of the BLAS irkit calls, as of its own kernels,
    and products stay right."""
    from irkit.backends import jit
    A = ik.matrix("A")
    f = ik.function([A], A @ A)  # loads irkit's BLAS
    lib = jit.blas()
    if lib.get_threads is None:
        pytest.skip(f"the BLAS irkit calls ({lib.name}) has no thread-count functions")
    before = ik.config.num_threads
    a = rng.standard_normal((200, 200))
    try:
        for n in (1, 2):
            ik.config.num_threads = n
            assert lib.get_threads() == n
            np.testing.assert_allclose(f(a), a @ a, rtol=1e-12, atol=1e-12)
    finally:
        ik.config.num_threads = before
    assert lib.get_threads() == before


def test_blas_is_numpys_openblas_when_numpy_bundles_one():
    """One OpenBLAS in the process: irkit calls the build numpy's wheel bundles (ILP64)."""
    import glob
    import os
    from irkit.backends import jit
    here = os.path.dirname(np.__file__)
    bundled = glob.glob(os.path.join(os.path.dirname(here), "numpy.libs", "libscipy_openblas64_*")) + \
        glob.glob(os.path.join(here, ".dylibs", "libscipy_openblas64_*"))
    if not bundled or os.environ.get("IRKIT_BLAS"):
        pytest.skip("numpy's wheel bundles no OpenBLAS here, or IRKIT_BLAS picks another")
    assert jit.blas().int_bits == 64
    assert "openblas64_" in jit.blas().name


BLAS_SCRIPT = """
import numpy as np, irkit as ik
from irkit.backends import jit
A, B, M, x = ik.matrix("A", dtype="float32"), ik.matrix("B", dtype="float32"), ik.matrix("M"), ik.vector("x")
f = ik.function([A, B, M, x], [A @ B, A.T @ A, M @ x, M[:1] @ M.T])
r = np.random.default_rng(0)
a, b = r.standard_normal((70, 50), dtype=np.float32), r.standard_normal((50, 40), dtype=np.float32)
b2 = r.standard_normal((70, 40), dtype=np.float32)
m, v = r.standard_normal((30, 20)), r.standard_normal(20)
ab, atb, mv, m1m = f(a, b, m, v)
np.testing.assert_allclose(ab, a @ b, rtol=1e-4, atol=1e-4)
np.testing.assert_allclose(mv, m @ v, rtol=1e-12)
np.testing.assert_allclose(m1m, m[:1] @ m.T, rtol=1e-12)
g = ik.function([A, B], A.T @ B)
np.testing.assert_allclose(g(a, b2), a.T @ b2, rtol=1e-4, atol=1e-4)
print(jit.blas().int_bits, "llvm-jit" not in f.timings)
"""


@pytest.mark.parametrize("order", [("numpy", "scipy"), ("scipy", "numpy")])
def test_blas_choice_and_compile_cache(tmp_path, order):
    """IRKIT_BLAS picks numpy's (ILP64) or scipy's (LP64) OpenBLAS; compiled code passes
    integers of the chosen width, so an object compiled for one is never loaded for the
    other from the shared compile cache (it would pass 64-bit sizes to a 32-bit BLAS)."""
    import os
    import subprocess
    import sys
    bits, hits = [], []
    for lib in order + order:  # the second round compiles nothing: the cache answers
        env = dict(os.environ, IRKIT_BLAS=lib, IRKIT_CACHE_DIR=str(tmp_path))
        proc = subprocess.run([sys.executable, "-c", BLAS_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0 and "bundles no" in proc.stderr:
            pytest.skip(proc.stderr.strip().splitlines()[-1])
        assert proc.returncode == 0, proc.stderr
        bits.append(int(proc.stdout.split()[0]))
        hits.append(proc.stdout.split()[1] == "True")
    expect = {"numpy": 64, "scipy": 32}
    assert bits == [expect[lib] for lib in order + order]
    assert hits == [False, False, True, True]


def test_blas_choice_rejects_unknown_names():
    import os
    import subprocess
    import sys
    env = dict(os.environ, IRKIT_BLAS="mkl")
    proc = subprocess.run([sys.executable, "-c", "import irkit as ik; m = ik.matrix('m'); ik.function([m], m @ m)"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "IRKIT_BLAS must be 'numpy' or 'scipy', not 'mkl'" in proc.stderr
