"""Indexing against numpy: basic (ints, slices with any step, None, ...), advanced (integer
arrays, non-adjacent ones going first, x[arange(n), t]), boolean masks, set_subtensor and
inc_subtensor (np.add.at semantics for repeats), and out-of-bounds indices (IndexError, at
build time when the shape and index are known, else at the call; never a crash or garbage)."""

from __future__ import annotations

import numpy as np
import pytest

import irkit as ik
from conftest import assert_matches, quiet, sample


def _check_all(names, got, wants, failures, suffix=""):
    assert len(got) == len(wants) == len(names)
    for name, g, w in zip(names, got, wants):
        failures.check(name + suffix, assert_matches, g, np.asarray(w), what=name + suffix)
    failures.raise_if_any()


# ---------------------------------------------------------------------------
# basic indexing
# ---------------------------------------------------------------------------

BASIC_KEYS = [
    1, -1, (1, 2), (-1, -2, -3), slice(1, 3), slice(None, None, 2), slice(None, None, -1), slice(-2, None),
    slice(None, -1), (slice(1, 4, 2), slice(None, None, -3)), (Ellipsis, 0), None, (slice(None), None, 1),
    (Ellipsis, None), (1, Ellipsis, 2), slice(5, None), slice(10, 20), (slice(None, None, -1), slice(None, None, -2),
                                                                        slice(1, -1)),
    (slice(None), slice(3, 1)), slice(-100, 100), (0, 0, 0), (slice(None), slice(None), slice(None, None, -1)),
    (slice(3, 0, -1), slice(-1, -4, -2)), (slice(None, -10, -1)), (Ellipsis,), (None, Ellipsis, None),
    (slice(-3, -1), 2, slice(None, None, 3)), (0, slice(None), None, -1),
]


def test_basic_indexing_static_keys(rng, failures):
    x = ik.tensor3("x", dtype="float64")
    f = ik.function([x], [x[k] for k in BASIC_KEYS])
    for shape in [(4, 5, 6), (3, 4, 3), (7, 3, 8)]:
        xv = sample(rng, "float64", shape)
        got = f(xv)
        _check_all([repr(k) for k in BASIC_KEYS], got, [xv[k] for k in BASIC_KEYS], failures, f" on {shape}")


def test_basic_indexing_symbolic(rng, failures):
    x = ik.tensor3("x", dtype="int32")
    i = ik.lscalar("i")
    j = ik.scalar("j", dtype="int32")
    n = x.shape[0]
    exprs = {
        "x[i]": (x[i], lambda v, i_, j_: v[i_]),
        "x[-i]": (x[-i], lambda v, i_, j_: v[-i_]),
        "x[i:i + 2]": (x[i:i + 2], lambda v, i_, j_: v[i_:i_ + 2]),
        "x[:, j, ::2]": (x[:, j, ::2], lambda v, i_, j_: v[:, j_, ::2]),
        "x[n - 1]": (x[n - 1], lambda v, i_, j_: v[v.shape[0] - 1]),
        "x[j:, :i]": (x[j:, :i], lambda v, i_, j_: v[j_:, :i_]),
        "x[::-1][i]": (x[::-1][i], lambda v, i_, j_: v[::-1][i_]),
        "x[i, j, i]": (x[i, j, i], lambda v, i_, j_: v[i_, j_, i_]),
        "x[:n - i]": (x[:n - i], lambda v, i_, j_: v[:v.shape[0] - i_]),
        "x[i:][j]": (x[i:][j], lambda v, i_, j_: v[i_:][j_]),
        "x[..., i:j:-1]": (x[..., i:j:-1], lambda v, i_, j_: v[..., i_:j_:-1]),
    }
    f = ik.function([x, i, j], [e for e, _ in exprs.values()])
    for shape, iv, jv in [((4, 5, 6), 1, 2), ((3, 3, 3), 2, 0), ((5, 4, 3), 0, -1), ((3, 6, 2), -2, 1)]:
        xv = sample(rng, "int32", shape)
        got = f(xv, iv, np.int32(jv))
        _check_all(list(exprs), got, [ref(xv, iv, jv) for _, ref in exprs.values()], failures,
                   f" on {shape}, i={iv}, j={jv}")


# ---------------------------------------------------------------------------
# advanced indexing
# ---------------------------------------------------------------------------

def test_advanced_indexing(rng, failures):
    x = ik.tensor3("x", dtype="float32")
    idx = ik.lvector("idx")
    idx2 = ik.lvector("idx2")
    im = ik.matrix("im", dtype="int32")
    col = ik.tensor("col", shape=(None, 1), dtype="int64")
    u8 = ik.vector("u8", dtype="uint8")
    i = ik.lscalar("i")
    M = ik.matrix("M", dtype="float64")
    t = ik.lvector("t")
    n = M.shape[0]
    exprs = {
        "x[idx]": (x[idx], lambda d: d["x"][d["idx"]]),
        "x[im]": (x[im], lambda d: d["x"][d["im"]]),
        "x[[0, 2, 1, -1]]": (x[[0, 2, 1, -1]], lambda d: d["x"][[0, 2, 1, -1]]),
        "x[np.array([[1], [0]])]": (x[np.array([[1], [0]])], lambda d: d["x"][np.array([[1], [0]])]),
        "x[:, idx]": (x[:, idx], lambda d: d["x"][:, d["idx"]]),
        "x[..., idx2]": (x[..., idx2], lambda d: d["x"][..., d["idx2"]]),
        "x[idx, idx2] (adjacent)": (x[idx, idx2], lambda d: d["x"][d["idx"], d["idx2"]]),
        "x[:, idx, idx2] (adjacent, middle)": (x[:, idx, idx2], lambda d: d["x"][:, d["idx"], d["idx2"]]),
        "x[idx, :, idx2] (non-adjacent: front)": (x[idx, :, idx2], lambda d: d["x"][d["idx"], :, d["idx2"]]),
        "x[i, :, idx2] (int + array: front)": (x[i, :, idx2], lambda d: d["x"][d["i"], :, d["idx2"]]),
        "x[1, idx] (int next to array)": (x[1, idx], lambda d: d["x"][1, d["idx"]]),
        "x[col, idx2] (broadcast index arrays)": (x[col, idx2], lambda d: d["x"][d["col"], d["idx2"]]),
        "x[1:, idx] (slice then array)": (x[1:, idx], lambda d: d["x"][1:, d["idx"]]),
        "x[::-1, idx, ::2]": (x[::-1, idx, ::2], lambda d: d["x"][::-1, d["idx"], ::2]),
        "x[None, idx]": (x[None, idx], lambda d: d["x"][None, d["idx"]]),
        "x[u8]": (x[u8], lambda d: d["x"][d["u8"]]),
        "x[idx][:, 0]": (x[idx][:, 0], lambda d: d["x"][d["idx"]][:, 0]),
        "M[arange(n), t]": (M[ik.arange(n), t], lambda d: d["M"][np.arange(d["M"].shape[0]), d["t"]]),
        "-log(M[arange(n), t]).mean()": (-ik.log(ik.abs(M[ik.arange(n), t]) + 1).mean(),
                                         lambda d: -np.log(np.abs(d["M"][np.arange(d["M"].shape[0]), d["t"]]) + 1).mean()),
        "M[t, t]": (M[t, t], lambda d: d["M"][d["t"], d["t"]]),
    }
    inputs = [x, idx, idx2, im, col, u8, i, M, t]
    f = ik.function(inputs, [e for e, _ in exprs.values()])
    for shape, nrows in [((4, 5, 6), 3), ((3, 3, 3), 5), ((3, 4, 2), 0)]:
        a, b, c = shape
        ab, bc = min(a, b), min(b, c)  # idx indexes axes 0 and 1, idx2 axes 1 and 2
        d = {"x": sample(rng, "float32", shape), "idx": rng.integers(-ab, ab, 4), "idx2": rng.integers(-bc, bc, 4),
             "im": rng.integers(-a, a, (2, 3)).astype(np.int32), "col": rng.integers(0, a, (3, 1)),
             "u8": rng.integers(0, a, 5).astype(np.uint8), "i": 1, "M": sample(rng, "float64", (nrows, 4)),
             "t": rng.integers(0, min(nrows, 4), nrows) if nrows else np.zeros(0, np.int64)}
        got = f(*[d[v.name] for v in inputs])
        with quiet():  # the mean of no rows is NaN, with a warning
            wants = [ref(d) for _, ref in exprs.values()]
        _check_all(list(exprs), got, wants, failures, f" on {shape}")


def test_boolean_masks(rng, failures):
    x = ik.matrix("x", dtype="float64")
    v = ik.vector("v", dtype="int16")
    m = ik.matrix("m", dtype="bool")
    mv = ik.vector("mv", dtype="bool")
    T = ik.tensor3("T", dtype="float32")
    exprs = {
        "x[m]": (x[m], lambda d: d["x"][d["m"]]),
        "x[x > 0]": (x[x > 0], lambda d: d["x"][d["x"] > 0]),
        "v[v > 0]": (v[v > 0], lambda d: d["v"][d["v"] > 0]),
        "v[mv]": (v[mv], lambda d: d["v"][d["mv"]]),
        "x[:, mv]": (x.T[mv].T, lambda d: d["x"].T[d["mv"]].T),
        "T[m]": (T[m], lambda d: d["T"][d["m"]]),
        "T[:, mv]": (T[:, ik.ones_like(T[0, :, 0], "bool") & (T[0, :, 0] > 0)],
                     lambda d: d["T"][:, d["T"][0, :, 0] > 0]),
        "x[m].sum()": (x[m].sum(), lambda d: d["x"][d["m"]].sum()),
        "x[[True, False, True]]": (x[np.array([True, False, True])], lambda d: d["x"][[True, False, True]]),
        "v[(v > 0) & (v < 50)] * 2": (v[(v > 0) & (v < 50)] * 2, lambda d: d["v"][(d["v"] > 0) & (d["v"] < 50)] * 2),
    }
    inputs = [x, v, m, mv, T]
    f = ik.function(inputs, [e for e, _ in exprs.values()])
    for n, k in [(3, 4), (3, 1), (3, 0)]:
        d = {"x": sample(rng, "float64", (n, k)), "v": sample(rng, "int16", k), "m": sample(rng, "bool", (n, k)),
             "mv": sample(rng, "bool", k), "T": sample(rng, "float32", (n, k, 2))}
        got = f(*[d[i.name] for i in inputs])
        _check_all(list(exprs), got, [ref(d) for _, ref in exprs.values()], failures, f" on {(n, k)}")
    f(np.zeros((3, 2)), np.ones(2, np.int16), np.zeros((3, 2), bool), np.zeros(2, bool),
      np.zeros((3, 2, 2), np.float32))  # nothing selected: empty results


def test_boolean_mask_shape_mismatch_raises():
    """numpy raises IndexError when a mask's shape does not match the axes it indexes; irkit
    must raise too (IndexError, or ShapeError for a dynamic size), never return elements."""
    x = ik.matrix("x")
    m = ik.matrix("m", dtype="bool")
    f = ik.function([x, m], x[m])
    X = np.arange(12.0).reshape(3, 4)
    with pytest.raises(IndexError):
        X[np.ones((2, 4), bool)]
    with pytest.raises((IndexError, ik.ShapeError)):
        f(X, np.ones((2, 4), bool))
    with pytest.raises((IndexError, ik.ShapeError)):
        f(X, np.ones((3, 5), bool))
    s = ik.tensor("s", shape=(3, 4))
    with pytest.raises(IndexError):  # static sizes: at build time
        s[np.ones((2, 4), bool)]
    with pytest.raises(IndexError):
        s[ik.tensor("sm", shape=(3, 5), dtype="bool")]
    g = ik.function([s, m], [s[m], s[1:][m[1:]]])  # static array, dynamic mask: checked at the call
    M = (X % 3) == 0
    got = g(X, M)
    assert_matches(got[0], X[M])
    assert_matches(got[1], X[1:][M[1:]])
    with pytest.raises((IndexError, ik.ShapeError)):
        g(X, np.ones((3, 3), bool))


# ---------------------------------------------------------------------------
# set_subtensor / inc_subtensor
# ---------------------------------------------------------------------------

def _np_set(x, key, y):
    out = x.copy()
    out[key] = y
    return out


def _np_inc(x, key, y):
    out = x.copy()
    np.add.at(out, key, y)
    return out


def test_set_and_inc_subtensor(rng, failures):
    x = ik.matrix("x", dtype="float64")
    y = ik.vector("y", dtype="float64")
    idx = ik.lvector("idx")
    i = ik.lscalar("i")
    xi = ik.matrix("xi", dtype="int32")
    cases = {
        "set x[1]": (ik.set_subtensor(x[1], y), lambda d: _np_set(d["x"], 1, d["y"])),
        "inc x[-1]": (ik.inc_subtensor(x[-1], y), lambda d: _np_inc(d["x"], -1, d["y"])),
        "set x[:, 0] = 5": (ik.set_subtensor(x[:, 0], 5.0), lambda d: _np_set(d["x"], (slice(None), 0), 5.0)),
        "set x[1:3, ::2]": (ik.set_subtensor(x[1:3, ::2], -1.0), lambda d: _np_set(d["x"], (slice(1, 3), slice(None, None, 2)), -1.0)),
        "inc x[::-1] += y": (ik.inc_subtensor(x[::-1], y), lambda d: _np_inc(d["x"], slice(None, None, -1), d["y"])),
        "inc x[i]": (ik.inc_subtensor(x[i], y * 2), lambda d: _np_inc(d["x"], d["i"], d["y"] * 2)),
        "set x[idx] (repeats: last wins)": (ik.set_subtensor(x[idx], y), lambda d: _np_set(d["x"], d["idx"], d["y"])),
        "inc x[idx] (repeats: all add)": (ik.inc_subtensor(x[idx], y), lambda d: _np_inc(d["x"], d["idx"], d["y"])),
        "inc x[idx, idx]": (ik.inc_subtensor(x[idx, idx], 1.0), lambda d: _np_inc(d["x"], (d["idx"], d["idx"]), 1.0)),
        "set x[:, idx]": (ik.set_subtensor(x[:, idx], 7.0), lambda d: _np_set(d["x"], (slice(None), d["idx"]), 7.0)),
        "inc x[1:, idx]": (ik.inc_subtensor(x[1:, idx], 1.0), lambda d: _np_inc(d["x"], (slice(1, None), d["idx"]), 1.0)),
        "set x[x > 0] = 0": (ik.set_subtensor(x[x > 0], 0.0), lambda d: _np_set(d["x"], d["x"] > 0, 0.0)),
        "inc x[x < 0] += 10": (ik.inc_subtensor(x[x < 0], 10.0), lambda d: _np_inc(d["x"], d["x"] < 0, 10.0)),
        "set x[None, 0]": (ik.set_subtensor(x[None, 0], y), lambda d: _np_set(d["x"], (None, 0), d["y"])),
        "inc xi[idx] (int, python scalar)": (ik.inc_subtensor(xi[idx], 3), lambda d: _np_inc(d["xi"], d["idx"], 3)),
        "set xi[0] from float (cast)": (ik.set_subtensor(xi[0], ik.cast(y, "int32")),
                                        lambda d: _np_set(d["xi"], 0, d["y"].astype(np.int32))),
    }
    f = ik.function([x, y, idx, i, xi], [e for e, _ in cases.values()])
    for n, k in [(4, 3), (5, 2)]:
        d = {"x": sample(rng, "float64", (n, k)), "y": sample(rng, "float64", k),
             "idx": np.array([0, 1, -1, 0, 1, 0]),
             "i": 2, "xi": sample(rng, "int32", (n, k))}
        # idx indexes rows (x[idx]) and columns (x[:, idx]): keep it within both
        got = f(d["x"], d["y"], d["idx"], d["i"], d["xi"])
        _check_all(list(cases), got, [ref(d) for _, ref in cases.values()], failures, f" on {(n, k)}")
    # the value broadcasts; a shape that does not fit raises
    g = ik.function([x, y], ik.set_subtensor(x[:2], y))
    assert_matches(g(np.zeros((3, 2)), np.array([1.0, 2.0])), _np_set(np.zeros((3, 2)), slice(None, 2), [1.0, 2.0]))
    with pytest.raises(ik.ShapeError):
        g(np.zeros((3, 2)), np.ones(3))
    with pytest.raises(TypeError):
        ik.set_subtensor(x + 1, y)


def test_inc_subtensor_many_repeats_accumulate():
    """All repeats add (np.add.at), also on a large index array and in int dtype."""
    v = ik.vector("v", dtype="int64")
    idx = ik.lvector("idx")
    w = ik.vector("w", dtype="int64")
    f = ik.function([v, idx, w], [ik.inc_subtensor(v[idx], w), ik.set_subtensor(v[idx], w)])
    rng = np.random.default_rng(3)
    idx_v = rng.integers(-10, 10, 5000)
    w_v = rng.integers(-5, 6, 5000)
    got = f(np.zeros(10, np.int64), idx_v, w_v)
    assert_matches(got[0], _np_inc(np.zeros(10, np.int64), idx_v, w_v))
    assert_matches(got[1], _np_set(np.zeros(10, np.int64), idx_v, w_v))  # last one wins
    assert_matches(got[0], np.bincount(idx_v % 10, weights=w_v, minlength=10).astype(np.int64))


# ---------------------------------------------------------------------------
# out of bounds
# ---------------------------------------------------------------------------

def test_out_of_bounds_static_at_build_time():
    s = ik.tensor("s", shape=(3, 4))
    for build in (lambda: s[3], lambda: s[-4], lambda: s[:, 4], lambda: s[0, -5], lambda: s[1, 2, 3],
                  lambda: s[[0, 3]], lambda: s[:, [1, -5]], lambda: s[np.array([[0], [7]])],
                  lambda: ik.set_subtensor(s[5], 1.0), lambda: ik.inc_subtensor(s[[0, 9]], 1.0)):
        with pytest.raises(IndexError):
            build()
    with pytest.raises(ik.IndexOutOfBoundsError):
        s[3]
    # in bounds: fine, and slices never go out of bounds
    f = ik.function([s], [s[2], s[-3, -4], s[[0, -1]], s[10:], s[-10:2]])
    sv = np.arange(12.0).reshape(3, 4)
    for g, w in zip(f(sv), [sv[2], sv[-3, -4], sv[[0, -1]], sv[10:], sv[-10:2]]):
        assert_matches(g, w)


def test_out_of_bounds_at_call_time():
    x = ik.matrix("x")
    idx = ik.lvector("idx")
    i = ik.lscalar("i")
    y = ik.vector("y")
    fs = {
        "x[5]": ik.function([x], x[5]),
        "x[i]": ik.function([x, i], x[i]),
        "x[:, i]": ik.function([x, i], x[:, i]),
        "x[idx]": ik.function([x, idx], x[idx]),
        "x[idx, idx]": ik.function([x, idx], x[idx, idx]),
        "set x[idx]": ik.function([x, idx, y], ik.set_subtensor(x[idx], y)),
        "inc x[:, idx]": ik.function([x, idx], ik.inc_subtensor(x[:, idx], 1.0)),
        "inc x[i]": ik.function([x, i, y], ik.inc_subtensor(x[i], y)),
    }
    X = np.arange(12.0).reshape(3, 4)
    calls = [
        ("x[5]", (X,)), ("x[i]", (X, 3)), ("x[i]", (X, -4)), ("x[:, i]", (X, 4)), ("x[idx]", (X, np.array([0, 3]))),
        ("x[idx]", (X, np.array([-4]))), ("x[idx, idx]", (X, np.array([3]))), ("set x[idx]", (X, np.array([0, 7]), np.ones(4))),
        ("inc x[:, idx]", (X, np.array([2, 4]))), ("inc x[:, idx]", (X, np.array([-5]))),
        ("inc x[i]", (X, 3, np.ones(4))),
    ]
    for name, args in calls:
        with pytest.raises(IndexError) as info:
            fs[name](*args)
        assert isinstance(info.value, ik.IndexOutOfBoundsError), name
    # the same functions still work on valid input afterwards
    assert_matches(fs["x[idx]"](X, np.array([2, -3])), X[[2, -3]])
    assert_matches(fs["x[i]"](X, -3), X[-3])
    assert_matches(fs["x[5]"](np.arange(24.0).reshape(6, 4)), np.arange(24.0).reshape(6, 4)[5])


def test_index_errors_like_numpy():
    x = ik.matrix("x")
    with pytest.raises(IndexError):  # too many indices
        x[0, 0, 0]
    with pytest.raises(IndexError):
        x[..., ...]
    with pytest.raises(IndexError):  # float index array
        x[np.array([0.5])]
    with pytest.raises(IndexError):
        x[ik.vector("fidx")]
    with pytest.raises((IndexError, TypeError)):
        x[1.5]
    with pytest.raises(ValueError):
        x[::0]


def test_increment_that_broadcasts_into_a_sum():
    """zeros((6, 5)) + inc_subtensor(zeros(5)[idx], x): the increment broadcasts over rows; the
    canonicaliser must not fold it into the (6, 5) side (where axis 0 means rows)."""
    x = ik.vector("x")
    idx = np.array([0, 1, 1])
    f = ik.function([x], ik.zeros((6, 5)) + ik.inc_subtensor(ik.zeros((5,))[ik.constant(idx)], x))
    row = np.zeros(5)
    np.add.at(row, idx, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(f(np.array([1.0, 2.0, 3.0])), np.zeros((6, 5)) + row)
    ik.verify_grad(lambda v: ik.zeros((6, 5)) + ik.inc_subtensor(ik.zeros((5,))[ik.constant(idx)], v), [np.ones(3)],
                   rng=np.random.default_rng(0))


def test_gradient_of_one_pick_per_row_is_a_fused_select():
    """d/dx of sum(w * x[arange(n), labels]) is w placed at each row's label (negative labels
    counting from the end): computed as a select the kernel fuses (decompose's one_per_row),
    with no scatter or zero buffer left, and out-of-range labels still an IndexError."""
    x, lab, w = ik.matrix("x"), ik.lvector("lab"), ik.vector("w")
    picked = x[ik.arange(x.shape[0]), lab]
    f = ik.function([x, lab, w], ik.grad(ik.sum(w * picked), x))
    assert "= ik.scatter " not in f.ir("fused") and "= ik.where " in f.ir("fused")
    rng = np.random.default_rng(3)
    xv, wv = rng.standard_normal((9, 6)), rng.standard_normal(9)
    labels = np.array([0, 5, -1, -6, 2, 3, 4, -2, 1])
    want = np.zeros_like(xv)
    np.add.at(want, (np.arange(9), labels), wv)
    np.testing.assert_array_equal(f(xv, labels, wv), want)
    for bad in (6, -7):
        with pytest.raises(IndexError):
            f(xv, np.where(np.arange(9) == 4, bad, labels), wv)
