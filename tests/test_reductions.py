"""Reductions against numpy: sum mean max min prod argmax argmin var std any all over
axis=None|int|negative|tuple with keepdims, across dtypes; empty arrays; float32 accuracy;
softmax, log_softmax and logsumexp (stable for huge logits); ddof."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special

import irkit as ik
from conftest import ALL_DTYPES, assert_matches, quiet, sample

# numpy reductions and their irkit forms; numpy's unsigned results are int64 in irkit
REDUCTIONS = {
    "sum": (ik.sum, np.sum),
    "prod": (ik.prod, np.prod),
    "max": (ik.max, np.max),
    "min": (ik.min, np.min),
    "mean": (ik.mean, np.mean),
    "var": (ik.var, np.var),
    "std": (ik.std, np.std),
    "any": (ik.any, np.any),
    "all": (ik.all, np.all),
    "argmax": (ik.argmax, np.argmax),
    "argmin": (ik.argmin, np.argmin),
}


def _want(np_fn, x, **kw):
    with quiet():
        out = np.asarray(np_fn(x, **kw))
    if out.dtype.kind == "u" and out.dtype.itemsize > 1:  # numpy's uint64 sum/prod: int64 in irkit
        out = out.astype(np.int64)
    if out.dtype == np.intp:
        out = out.astype(np.int64)
    return out


def _data(rng, dt, shape):
    x = sample(rng, dt, shape)
    if np.dtype(dt).kind in "iu" and np.dtype(dt).itemsize == 1:
        x = x // 8 if np.dtype(dt).kind == "i" else x // 16  # keep int8 prods and sums varied but small
    return x


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reduction_all_dtypes(name, rng, failures):
    """Each reduction on every dtype over axis=1 of a matrix, and over axis=None for some."""
    ik_fn, np_fn = REDUCTIONS[name]
    xs = [ik.matrix(f"x_{dt}", dtype=dt) for dt in ALL_DTYPES]
    data = [_data(rng, dt, (5, 7)) for dt in ALL_DTYPES]
    for a in data:
        if a.dtype.kind in "iu":
            a[1, 2] = a[1, 4] = a.max()  # ties: argmax/argmin give the first
            a[3, 3] = a[3, 5] = a.min()
    whole = ["float32", "int8", "uint8", "bool"]
    cases = [(dt, 1) for dt in ALL_DTYPES] + [(dt, None) for dt in whole]
    outs = [ik_fn(xs[ALL_DTYPES.index(dt)], axis=axis) for dt, axis in cases]
    got = ik.function(xs, outs)(*data)
    for (dt, axis), g in zip(cases, got):
        what = f"{name}({dt}, axis={axis})"
        failures.check(what, assert_matches, g, _want(np_fn, data[ALL_DTYPES.index(dt)], axis=axis), what=what)
    failures.raise_if_any()


AXES_KEEPDIMS = [(None, False), (None, True), (0, False), (1, True), (-1, False), (-3, True), ((0, 2), False),
                 ((2, 0), True), ((-1, 1), False), ((0, 1, 2), True), ((), False)]


@pytest.mark.parametrize("name", ["sum", "max", "mean", "var"])
def test_axes_and_keepdims(name, rng, failures):
    ik_fn, np_fn = REDUCTIONS[name]
    x = ik.tensor3("x", dtype="float64")
    cases = list(AXES_KEEPDIMS)
    outs = [ik_fn(x, axis=axis, keepdims=keep) for axis, keep in cases]
    outs.append(getattr(x, name)(axis=-1, keepdims=True))  # the method form as well
    cases.append((-1, True))
    f = ik.function([x], outs)
    for shape in [(3, 4, 5), (2, 1, 6)]:
        data = sample(rng, "float64", shape)
        got = f(data)
        for (axis, keep), g in zip(cases, got):
            what = f"{name}(axis={axis}, keepdims={keep}) on {shape}"
            failures.check(what, assert_matches, g, _want(np_fn, data, axis=axis, keepdims=keep), what=what)
    failures.raise_if_any()


def test_argmax_argmin_axes_keepdims_and_nan(failures):
    x = ik.tensor3("x", dtype="float32")
    cases = [("argmax", None, False), ("argmax", 0, True), ("argmax", -1, False), ("argmin", None, True),
             ("argmin", 1, False), ("argmin", -1, True)]
    outs = [getattr(ik, fn)(x, axis=axis, keepdims=keep) for fn, axis, keep in cases]
    outs += [x.argmax(axis=2), x.argmin()]
    f = ik.function([x], outs)
    rng = np.random.default_rng(5)
    data = rng.integers(-3, 4, size=(3, 4, 5)).astype(np.float32)  # many ties
    data[1, 2, 3] = np.nan  # the first NaN wins, as in numpy
    data[2, 0, 1] = np.nan
    data[0, 3, :] = -np.inf
    got = f(data)
    for (fn, axis, keep), g in zip(cases, got):
        what = f"{fn}(axis={axis}, keepdims={keep})"
        failures.check(what, assert_matches, g, _want(getattr(np, fn), data, axis=axis, keepdims=keep),
                       what=what)
    failures.check("x.argmax(axis=2)", assert_matches, got[-2], _want(np.argmax, data, axis=2))
    failures.check("x.argmin()", assert_matches, got[-1], _want(np.argmin, data))
    failures.raise_if_any()
    with pytest.raises(TypeError):
        ik.argmax(x, axis=(0, 1))


def test_nan_and_inf_in_reductions():
    x = ik.matrix("x")
    f = ik.function([x], [x.max(axis=1), x.min(axis=1), x.sum(axis=1), x.mean(axis=1), x.prod(axis=1),
                          ik.max(x), ik.min(x), x.any(axis=1), x.all(axis=1)])
    data = np.array([[1.0, np.nan, 3.0], [np.nan, -1.0, 0.0], [np.inf, -np.inf, 1.0], [-np.inf, 2.0, 5.0],
                     [0.0, 0.0, 0.0]])
    got = f(data)
    with quiet():
        wants = [data.max(axis=1), data.min(axis=1), data.sum(axis=1), data.mean(axis=1), data.prod(axis=1),
                 np.max(data), np.min(data), data.any(axis=1), data.all(axis=1)]
    for k, (g, w) in enumerate(zip(got, wants)):
        assert_matches(g, w, what=f"output {k}")


def test_empty_reductions():
    """The sum of nothing is 0, the product 1, any False, all True, the mean NaN; max over an
    empty axis raises ValueError at call time; reducing a non-empty axis of an empty array is fine."""
    x = ik.matrix("x", dtype="float32")
    i = ik.matrix("i", dtype="int32")
    f = ik.function([x, i], [x.sum(), x.sum(axis=0), x.sum(axis=1, keepdims=True), x.prod(axis=0),
                             i.sum(axis=0), i.prod(), x.any(axis=0), x.all(axis=0), i.any(), x.mean(axis=0),
                             x.max(axis=1), i.min(axis=1), x.argmax(axis=1)])
    for shape in [(0, 3), (0, 0), (3, 0)]:
        xv, iv = np.zeros(shape, np.float32), np.zeros(shape, np.int32)
        if shape[1] == 0:  # max over an empty axis: numpy raises, and so does irkit (at the call)
            with pytest.raises(ValueError):
                f(xv, iv)
            continue
        got = f(xv, iv)
        with quiet():
            wants = [xv.sum(), xv.sum(axis=0), xv.sum(axis=1, keepdims=True), xv.prod(axis=0), iv.sum(axis=0),
                     iv.prod(), xv.any(axis=0), xv.all(axis=0), iv.any(), xv.mean(axis=0), xv.max(axis=1),
                     iv.min(axis=1), xv.argmax(axis=1).astype(np.int64)]
        for k, (g, w) in enumerate(zip(got, wants)):
            assert_matches(g, w, what=f"{shape} output {k}")
        assert got[0].shape == () and got[0] == 0
    g = ik.function([x, i], [x.sum(), x.sum(axis=0), x.sum(axis=1), x.prod(axis=1), i.sum(axis=1), i.prod(),
                             x.any(axis=1), x.all(axis=1), x.mean(axis=1), i.mean()])
    for shape in [(0, 0), (3, 0), (0, 3)]:
        xv, iv = np.zeros(shape, np.float32), np.zeros(shape, np.int32)
        got = g(xv, iv)
        with quiet():
            wants = [xv.sum(), xv.sum(axis=0), xv.sum(axis=1), xv.prod(axis=1), iv.sum(axis=1), iv.prod(),
                     xv.any(axis=1), xv.all(axis=1), xv.mean(axis=1), iv.mean()]
        for k, (g_, w) in enumerate(zip(got, wants)):
            assert_matches(g_, w, what=f"{shape} output {k}")

    # reducing an empty axis with max/min/argmax: numpy raises ValueError
    with pytest.raises(ValueError):
        np.zeros((0, 3)).max(axis=0)
    for fn in (lambda v: v.max(), lambda v: v.min(axis=0), lambda v: v.argmax(), lambda v: ik.argmin(v, axis=0)):
        h = ik.function([x], fn(x))
        with pytest.raises(ValueError):
            h(np.zeros((0, 3), np.float32))
        assert h(np.ones((2, 3), np.float32)) is not None  # still works afterwards
    # statically empty: an error while building
    e = ik.tensor("e", shape=(0, 3), dtype="float64")
    with pytest.raises(ValueError):
        ik.max(e)
    with pytest.raises(ValueError):
        e.argmin(axis=0)
    assert_matches(ik.function([e], e.sum(axis=0))(np.zeros((0, 3))), np.zeros(3))


def test_float32_sum_of_ten_million_is_accurate(rng):
    x = ik.vector("x", dtype="float32")
    f = ik.function([x], [x.sum(), x.mean()])
    data = (rng.random(10 ** 7, dtype=np.float32) + np.float32(0.5)).astype(np.float32)
    exact = data.astype(np.float64).sum()
    got = f(data)
    assert got[0].dtype == np.float32 and got[1].dtype == np.float32
    assert abs(float(got[0]) - exact) / exact < 1e-5
    assert abs(float(got[1]) - exact / data.size) / (exact / data.size) < 1e-5
    # ones: an exactly representable total (a naive float32 loop stalls at 2**24)
    ones = np.ones(10 ** 7, np.float32)
    assert float(f(ones)[0]) == 1e7


def test_ddof(rng, failures):
    x = ik.matrix("x", dtype="float64")
    xi = ik.matrix("xi", dtype="int32")
    cases = [("var", None, 1), ("var", 0, 1), ("var", 1, 2), ("std", None, 1), ("std", 1, 1), ("var", 1, 0),
             ("std", (0, 1), 3)]
    outs = [getattr(ik, fn)(x, axis=axis, ddof=ddof) for fn, axis, ddof in cases]
    outs += [x.var(axis=0, ddof=1, keepdims=True), x.std(ddof=1), ik.var(xi, axis=1, ddof=1), xi.std(ddof=2)]
    f = ik.function([x, xi], outs)
    xv = sample(rng, "float64", (4, 6))
    iv = sample(rng, "int32", (4, 6))
    got = f(xv, iv)
    wants = [getattr(np, fn)(xv, axis=axis, ddof=ddof) for fn, axis, ddof in cases]
    wants += [xv.var(axis=0, ddof=1, keepdims=True), xv.std(ddof=1), np.var(iv, axis=1, ddof=1), iv.std(ddof=2)]
    for k, (g, w) in enumerate(zip(got, wants)):
        failures.check(f"output {k}", assert_matches, g, w, what=f"output {k}")
    failures.raise_if_any()


def test_ddof_at_least_the_count():
    """numpy divides by max(n - ddof, 0): inf (or nan for zero spread), never a negative variance."""
    x = ik.vector("x")
    f = ik.function([x], [x.var(ddof=3), x.var(ddof=4), x.std(ddof=5)])
    xv = np.array([1.0, 2.0, 4.0])
    got = f(xv)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        wants = [np.var(xv, ddof=3), np.var(xv, ddof=4), np.std(xv, ddof=5)]
    for k, (g, w) in enumerate(zip(got, wants)):
        assert_matches(g, w, what=f"output {k}")


def test_reduction_axis_errors():
    x = ik.tensor3("x")
    for build in (lambda: x.sum(axis=3), lambda: x.max(axis=-4), lambda: ik.mean(x, axis=(0, 5)),
                  lambda: x.argmax(axis=3), lambda: ik.logsumexp(x, axis=4), lambda: ik.softmax(x, axis=3)):
        with pytest.raises(ik.ShapeError):
            build()
    with pytest.raises(ValueError):  # numpy: "duplicate value in 'axis'"
        x.sum(axis=(1, 1))
    with pytest.raises(ValueError):
        x.var(axis=(0, -3))


# ---------------------------------------------------------------------------
# softmax family
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_softmax_family(dt, rng, failures):
    x = ik.matrix("x", dtype=dt)
    exprs = {
        "softmax": (ik.softmax(x), lambda v: scipy.special.softmax(v, axis=-1)),
        "softmax axis 0": (ik.softmax(x, axis=0), lambda v: scipy.special.softmax(v, axis=0)),
        "log_softmax": (ik.log_softmax(x), lambda v: scipy.special.log_softmax(v, axis=-1)),
        "log_softmax axis 0": (ik.log_softmax(x, axis=0), lambda v: scipy.special.log_softmax(v, axis=0)),
        "log(softmax)": (ik.log(ik.softmax(x, axis=1)), lambda v: scipy.special.log_softmax(v, axis=1)),
        "logsumexp": (ik.logsumexp(x), lambda v: scipy.special.logsumexp(v)),
        "logsumexp axis 1": (ik.logsumexp(x, axis=1), lambda v: scipy.special.logsumexp(v, axis=1)),
        "logsumexp axis -2 keep": (ik.logsumexp(x, axis=-2, keepdims=True),
                                   lambda v: scipy.special.logsumexp(v, axis=-2, keepdims=True)),
        "logsumexp tuple": (ik.logsumexp(x, axis=(0, 1)), lambda v: scipy.special.logsumexp(v, axis=(0, 1))),
    }
    f = ik.function([x], [e for e, _ in exprs.values()])
    normal = sample(rng, dt, (4, 6))
    huge = np.array([[1000.0, -1000.0, 0.0, 999.0], [-1000.0, -1000.0, -1000.0, -999.0],
                     [1000.0, 1000.0, 1000.0, 1000.0]], dt)
    with_inf = np.array([[-np.inf, 0.0, 1.0], [-np.inf, -np.inf, -np.inf]], dt)
    for label, data in [("normal", normal), ("huge", huge), ("-inf", with_inf)]:
        got = f(data)
        for (what, (_, ref)), g in zip(exprs.items(), got):
            with quiet():
                want = np.asarray(ref(data.astype(np.float64))).astype(dt)
            if label == "-inf" and "softmax" in what and "log" not in what:
                continue  # an all -inf row is 0/0 in any formula; checked below for finite rows
            failures.check(f"{what} ({label})", assert_matches, g, want, what=f"{what} ({label})")
        if label == "huge":
            for what, g in zip(exprs, got):
                failures.check(f"{what} finite", np.testing.assert_array_equal, np.isfinite(g), True)
    failures.raise_if_any()
    # the finite row of the -inf case
    got = f(with_inf[:1])
    assert_matches(got[0], scipy.special.softmax(with_inf[:1].astype(np.float64), axis=-1).astype(dt))


def test_softmax_dtypes_and_rows_sum_to_one(rng):
    x32 = ik.matrix("x32", dtype="float32")
    i = ik.matrix("i", dtype="int32")
    i8 = ik.matrix("i8", dtype="int8")
    f = ik.function([x32, i, i8], [ik.softmax(x32).sum(axis=-1), ik.softmax(i), ik.log_softmax(i8),
                                    ik.logsumexp(i8, axis=1)])
    xv = sample(rng, "float32", (5, 300), -50, 50)
    iv = sample(rng, "int32", (3, 4))
    i8v = sample(rng, "int8", (3, 4))
    got = f(xv, iv, i8v)
    assert_matches(got[0], np.ones(5, np.float32), rtol=1e-5)
    assert_matches(got[1], scipy.special.softmax(iv.astype(np.float64), axis=-1))
    assert_matches(got[2], scipy.special.log_softmax(i8v.astype(np.float32), axis=-1))
    assert_matches(got[3], scipy.special.logsumexp(i8v.astype(np.float32), axis=1))


@pytest.fixture
def low_parallel_threshold():
    """Compile with loops split across threads from a thousand elements on."""
    old = ik.config.parallel_threshold
    ik.config.parallel_threshold = 1000
    yield
    ik.config.parallel_threshold = old


def test_threaded_loops(rng, failures, low_parallel_threshold):
    """Loops split across threads: elementwise, broadcast, reductions along either axis,
    argmax, matmul; float32 sums against the exact (float64) sum."""
    x = ik.matrix("x", dtype="float32")
    r = ik.tensor("r", shape=(1, None), dtype="float32")
    i = ik.vector("i", dtype="int64")
    f = ik.function([x, r, i], [ik.exp(x) * r + 1, (x > r).sum(axis=0), x.max(axis=1), x.argmax(axis=0),
                                x.sum(axis=0), x.sum(axis=1), x.mean(), i * 3 - 7, (i % 5).sum(),
                                ik.where(x > 0, x, r), i.argmin(), x.T @ x[:, :20], ik.softmax(x, axis=0)])
    assert "scf.parallel" in f.ir("loops")
    for shape, n in [((301, 1003), 300_001), ((7, 3), 5), ((1, 4097), 0), ((2053, 1), 1)]:
        xv = rng.standard_normal(shape).astype(np.float32)
        rv = rng.standard_normal((1, shape[1])).astype(np.float32)
        iv = rng.integers(-1000, 1000, n)
        if n == 0:  # argmin of nothing raises; check the rest with a non-empty i below
            with pytest.raises(ValueError):
                f(xv, rv, iv)
            iv = np.array([3])
        got = f(xv, rv, iv)
        x64 = xv.astype(np.float64)
        with quiet():
            wants = [np.exp(xv) * rv + 1, (xv > rv).sum(axis=0), xv.max(axis=1), xv.argmax(axis=0).astype(np.int64),
                     x64.sum(axis=0).astype(np.float32), x64.sum(axis=1).astype(np.float32),
                     np.float32(x64.mean()), iv * 3 - 7, (iv % 5).sum(), np.where(xv > 0, xv, rv),
                     np.int64(iv.argmin()), (x64.T @ x64[:, :20]).astype(np.float32),
                     scipy.special.softmax(x64, axis=0).astype(np.float32)]
        tols = {4: dict(atol=1e-4), 5: dict(atol=1e-4), 11: dict(rtol=1e-4, atol=1e-3)}
        for k, (g, w) in enumerate(zip(got, wants)):
            failures.check(f"output {k} {shape}", assert_matches, g, np.asarray(w), what=f"output {k} {shape}",
                           **tols.get(k, {}))
    failures.raise_if_any()


def test_integer_mean_accumulates_in_float():
    """numpy's mean of integers sums in float64: no int64 overflow for large values."""
    i = ik.vector("i", dtype="int64")
    m = ik.matrix("m", dtype="int64")
    f = ik.function([i, m], [i.mean(), m.mean(axis=0), ik.var(i), i.std()])
    iv = np.array([2 ** 62, 2 ** 62, 2 ** 62, 2 ** 62 + 8, -(2 ** 40)], np.int64)
    mv = np.full((4, 2), 2 ** 62, np.int64)
    got = f(iv, mv)
    for g, w in zip(got, [iv.mean(), mv.mean(axis=0), np.var(iv), np.std(iv)]):
        assert_matches(g, w, rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
def test_full_reductions_in_blocks_across_their_boundaries(dtype, rng, failures):
    """A full reduction runs as blocks of BLOCK elements (passes/block_reductions.py), their
    partial results combined in block order, then the rest: sizes on either side of one
    and two blocks' worth, 1-d and 2-d (a block holds whole rows), against numpy; an
    integer sum wraps as numpy's does."""
    from irkit.passes.block_reductions import BLOCK
    x = ik.vector("x", dtype=dtype)
    m = ik.matrix("m", dtype=dtype)
    f = ik.function([x, m], [x.sum(), x.max(), x.min(), m.sum(), m.max(), (x % 3 + 1).prod() if "int" in dtype
                             else ik.exp(x * 1e-3).prod()])
    assert f.ir("loops").count("scf.parallel") >= 6  # one a reduction
    for n in (1, BLOCK - 1, BLOCK, 2 * BLOCK - 1, 2 * BLOCK, 2 * BLOCK + 1, 5 * BLOCK + 7):
        if "int" in dtype:
            xv = rng.integers(-2 ** 20, 2 ** 20, n).astype(dtype)
        else:
            xv = rng.standard_normal(n).astype(dtype)
        rows = max(1, n // 3000)
        mv = np.resize(xv, (rows, 3001))
        if "int" in dtype:
            wants = [xv.sum(), xv.max(), xv.min(), mv.sum(), mv.max(), (xv % 3 + 1).prod()]
        else:  # float32 sums accumulate in float64, as irkit's do
            wants = [xv.sum(dtype=np.float64).astype(dtype), xv.max(), xv.min(),
                     mv.sum(dtype=np.float64).astype(dtype), mv.max(),
                     np.exp(xv.astype(np.float64) * 1e-3).prod().astype(dtype)]
        got = f(xv, mv)
        for k, (g, w) in enumerate(zip(got, wants)):
            # a product of n rounded exps: each factor's error adds up
            rtol = 1e-5 if dtype == "float32" else 1e-12
            if k == 5 and "float" in dtype:
                rtol = 4 * float(np.finfo(dtype).eps) * n
            failures.check(f"output {k} n={n}", assert_matches, g, np.asarray(w), what=f"output {k} n={n}",
                           rtol=rtol)
    failures.raise_if_any()


def test_a_blocked_sum_is_the_same_number_on_one_thread_and_two(rng, low_parallel_threshold):
    """The blocks and the order their results combine in depend on the sizes only."""
    x = ik.vector("x", dtype="float64")
    old = ik.config.num_threads
    try:
        ik.config.num_threads = 1
        one = ik.function([x], [x.sum(), (ik.sin(x) * x).sum()])
        ik.config.num_threads = 2
        two = ik.function([x], [x.sum(), (ik.sin(x) * x).sum()])
    finally:
        ik.config.num_threads = old
    data = rng.standard_normal(300_007) * 1e3
    for a, b in zip(one(data), two(data)):
        assert a.tobytes() == b.tobytes()
    exact = math.fsum(data)
    assert abs(float(one(data)[0]) - exact) <= 1e-12 * np.abs(data).sum()


def test_a_blocked_max_propagates_nan_from_any_block(rng):
    x = ik.vector("x", dtype="float32")
    f = ik.function([x], [x.max(), x.min(), x.sum()])
    data = rng.standard_normal(200_000).astype(np.float32)
    for at in (0, 70_000, 199_999):  # the first block, a middle one, the rest after the blocks
        d = data.copy()
        d[at] = np.nan
        assert all(np.isnan(v) for v in f(d)), at
