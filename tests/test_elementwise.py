"""Elementwise ops against numpy: values, dtypes (numpy 2 promotion, float16 widened to
float32), broadcasting, dynamic and empty shapes, NaN/inf, and the errors numpy gives.

Each op compiles once for every dtype it is checked on: the function takes one input per
dtype and also applies the op to constants (so constant folding, which uses the op's numpy
reference, is checked beside the generated code)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special

import irkit as ik
from conftest import ALL_DTYPES, assert_exact, assert_matches, irkit_dtype, quiet, sample

N = 37  # an odd length: vector loops get a remainder


def _numpy_dtype(np_fn, *dtypes):
    """numpy's result dtype for np_fn on arrays of `dtypes`, or None when numpy has no loop."""
    try:
        with np.errstate(all="ignore"):
            out = np_fn(*[np.ones(1, d) for d in dtypes])
    except TypeError:
        return None
    return irkit_dtype(np.asarray(out).dtype)


def _reference(np_fn, out_dtype, *arrays):
    """numpy's answer; where numpy would compute in float16, compute in irkit's float32."""
    with np.errstate(all="ignore"):
        natural = np.asarray(np_fn(*[np.ones(1, a.dtype) for a in arrays]))
        if natural.dtype == np.float16:
            arrays = [a.astype(np.float32) for a in arrays]
        return np.asarray(np_fn(*arrays)).astype(out_dtype)


FLOAT_SPECIALS = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.5, -2.5, 1e-8, 1e-30, np.inf, -np.inf, np.nan])


def _unary_data(rng, dtype):
    x = sample(rng, dtype, N)
    if np.dtype(dtype).kind == "f":
        x = np.concatenate([x, FLOAT_SPECIALS.astype(dtype)])
    return x


# ---------------------------------------------------------------------------
# unary ops: every dtype numpy defines the op for
# ---------------------------------------------------------------------------

def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def _np_softplus(x):
    return np.logaddexp(0.0, x.astype(np.float64))


UNARY = {
    "exp": (ik.exp, np.exp),
    "exp2": (ik.exp2, np.exp2),
    "expm1": (ik.expm1, np.expm1),
    "log": (ik.log, np.log),
    "log2": (ik.log2, np.log2),
    "log10": (ik.log10, np.log10),
    "log1p": (ik.log1p, np.log1p),
    "sqrt": (ik.sqrt, np.sqrt),
    "sin": (ik.sin, np.sin),
    "cos": (ik.cos, np.cos),
    "tan": (ik.tan, np.tan),
    "sinh": (ik.sinh, np.sinh),
    "cosh": (ik.cosh, np.cosh),
    "tanh": (ik.tanh, np.tanh),
    "arcsin": (ik.arcsin, np.arcsin),
    "arccos": (ik.arccos, np.arccos),
    "arctan": (ik.arctan, np.arctan),
    "arcsinh": (ik.arcsinh, np.arcsinh),
    "arccosh": (ik.arccosh, np.arccosh),
    "arctanh": (ik.arctanh, np.arctanh),
    "erf": (ik.erf, scipy.special.erf),
    "neg": (lambda x: -x, np.negative),
    "abs": (ik.abs, np.abs),
    "sign": (ik.sign, np.sign),
    "floor": (ik.floor, np.floor),
    "ceil": (ik.ceil, np.ceil),
    "round": (ik.round, np.round),
    "trunc": (ik.trunc, np.trunc),
    "square": (ik.square, np.square),
    "invert": (lambda x: ~x, np.invert),
    "isnan": (ik.isnan, np.isnan),
    "isinf": (ik.isinf, np.isinf),
    "isfinite": (ik.isfinite, np.isfinite),
    "relu": (ik.relu, lambda x: np.maximum(x, np.zeros((), x.dtype))),
}


# The libm-backed functions share one conversion path for integer and bool inputs (convert,
# then the float function): each runs in generated code on float32, float64 and two of the
# non-float dtypes (rotating, so every dtype meets several functions), and folded as a
# constant on every dtype.
LIBM = ["exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "sin", "cos", "tan", "sinh", "cosh",
        "tanh", "arcsin", "arccos", "arctan", "arcsinh", "arccosh", "arctanh", "erf"]
NON_FLOAT = ["int8", "int16", "int32", "int64", "uint8", "bool"]


def _compiled_dtypes(name, ok):
    if name not in LIBM:
        return ok
    k = LIBM.index(name)
    chosen = {NON_FLOAT[(2 * k) % 6], NON_FLOAT[(2 * k + 1) % 6]}
    return [dt for dt in ok if dt in ("float32", "float64") or dt in chosen]


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_all_dtypes(name, rng, failures):
    ik_fn, np_fn = UNARY[name]
    ok, rejected = [], []
    for dt in ALL_DTYPES:
        (ok if _numpy_dtype(np_fn, dt) is not None else rejected).append(dt)
    assert ok, "every op is defined for some dtype"
    for dt in rejected:  # numpy has no loop: irkit refuses while building
        with pytest.raises(ik.DTypeError):
            ik_fn(ik.vector("x", dtype=dt))
    compiled = _compiled_dtypes(name, ok)
    inputs = [ik.vector(f"x_{dt}", dtype=dt) for dt in compiled]
    data = {dt: _unary_data(rng, dt) for dt in ok}
    outs = [ik_fn(x) for x in inputs] + [ik_fn(ik.constant(data[dt])) for dt in ok]
    f = ik.function(inputs, outs)
    got = f(*[data[dt] for dt in compiled])
    results = [(f"{name}({dt})", dt, g) for dt, g in zip(compiled, got)]
    results += [(f"{name}(constant {dt})", dt, g) for dt, g in zip(ok, got[len(compiled):])]
    for what, dt, g in results:
        want = _reference(np_fn, _numpy_dtype(np_fn, dt), data[dt])
        failures.check(what, assert_matches, g, want, what=what)
    failures.raise_if_any()


@pytest.mark.parametrize("name,ik_fn,ref", [("sigmoid", ik.sigmoid, _np_sigmoid),
                                            ("softplus", ik.softplus, _np_softplus)])
def test_sigmoid_softplus(name, ik_fn, ref, rng, failures):
    """Not numpy functions: the reference is the formula in float64, the dtype that of a
    transcendental function (ints and bools widen like np.exp does, float16 to float32)."""
    dts = ALL_DTYPES
    inputs = [ik.vector(f"x_{dt}", dtype=dt) for dt in dts]
    data = [_unary_data(rng, dt) for dt in dts]
    # large magnitudes: no overflow to inf/nan in either direction
    data[0] = np.concatenate([data[0], np.array([-1000, -100, -30, 30, 100, 1000], np.float32)])
    data[1] = np.concatenate([data[1], np.array([-1000, -100, -30, 30, 100, 1000], np.float64)])
    outs = [ik_fn(x) for x in inputs] + [ik_fn(ik.constant(a)) for a in data]
    got = ik.function(inputs, outs)(*data)
    for k, (dt, a) in enumerate(zip(dts, data)):
        want_dt = _numpy_dtype(np.exp, dt)
        with np.errstate(all="ignore"):
            want = ref(a).astype(want_dt)
        failures.check(f"{name}({dt})", assert_matches, got[k], want, what=f"{name}({dt})")
        failures.check(f"{name}(constant {dt})", assert_matches, got[len(dts) + k], want,
                       what=f"{name}(constant {dt})")
    failures.raise_if_any()


def test_unary_exact_special_values():
    """Rounding ties, signed zeros, NaN through sign/relu/abs: bit-exact."""
    x = ik.vector("x", dtype="float64")
    xs = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.0, -0.0, 2.7, -2.7, np.nan, np.inf, -np.inf])
    f = ik.function([x], [ik.round(x), ik.floor(x), ik.ceil(x), ik.trunc(x), ik.sign(x),
                          ik.abs(x), -x, ik.relu(x)])
    got = f(xs)
    wants = [np.round(xs), np.floor(xs), np.ceil(xs), np.trunc(xs), np.sign(xs), np.abs(xs), -xs,
             np.maximum(xs, 0.0)]
    for name, g, w in zip(["round", "floor", "ceil", "trunc", "sign", "abs", "neg", "relu"], got, wants):
        assert_exact(g, w, what=name)


def test_integer_wraparound_in_unary():
    """abs/neg of the most negative int wrap as in numpy; uint8 negation wraps."""
    a = ik.vector("a", dtype="int8")
    u = ik.vector("u", dtype="uint8")
    f = ik.function([a, u], [abs(a), -a, -u, ik.square(a)])
    av = np.array([-128, -127, -1, 0, 1, 127], np.int8)
    uv = np.array([0, 1, 2, 255, 128], np.uint8)
    got = f(av, uv)
    with np.errstate(all="ignore"):
        wants = [np.abs(av), -av, -uv, np.square(av)]
    for g, w in zip(got, wants):
        assert_exact(g, w)


# ---------------------------------------------------------------------------
# binary ops
# ---------------------------------------------------------------------------

BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "truediv": (lambda a, b: a / b, np.true_divide),
    "floordiv": (lambda a, b: a // b, np.floor_divide),
    "mod": (lambda a, b: a % b, np.remainder),
    "pow": (lambda a, b: a ** b, np.power),
    "maximum": (ik.maximum, np.maximum),
    "minimum": (ik.minimum, np.minimum),
    "arctan2": (ik.arctan2, np.arctan2),
    "and": (lambda a, b: a & b, np.bitwise_and),
    "or": (lambda a, b: a | b, np.bitwise_or),
    "xor": (lambda a, b: a ^ b, np.bitwise_xor),
    "eq": (lambda a, b: a == b, np.equal),
    "ne": (lambda a, b: a != b, np.not_equal),
    "lt": (lambda a, b: a < b, np.less),
    "le": (lambda a, b: a <= b, np.less_equal),
    "gt": (lambda a, b: a > b, np.greater),
    "ge": (lambda a, b: a >= b, np.greater_equal),
}

MIXED_PAIRS = [("int8", "uint8"), ("uint8", "int64"), ("int32", "float32"), ("bool", "int8"),
               ("float32", "float64")]


def _binary_data(rng, name, da, db):
    a = sample(rng, da, N)
    b = sample(rng, db, N)
    if name == "pow":
        if np.dtype(db).kind in "iu":  # non-negative integer exponents (negative ones raise)
            b = (np.abs(b.astype(np.int64)) % 9).astype(db)
        if np.dtype(da).kind == "f" and np.dtype(db).kind == "f":
            a = np.abs(a)  # real results (negative ** fraction is NaN in both, but keep data useful)
            a[:3] = [-2.0, -0.5, 0.0]
            b[:3] = [3.0, 2.0, 2.0]
    if name in ("eq", "ne", "le", "ge") and np.dtype(da).kind == np.dtype(db).kind:
        b[::3] = a[::3].astype(db)  # some equal elements
    if np.dtype(da).kind == "f":
        a[-2:] = [np.nan, np.inf]
    if np.dtype(db).kind == "f" and name != "pow":
        b[-3:] = [np.nan, -np.inf, 0.0]
    if np.dtype(db).kind in "iu" and name in ("floordiv", "mod"):
        b[:4] = 0  # integer division by zero gives 0, as numpy
    return a, b


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_all_dtypes(name, rng, failures):
    """Every dtype with itself and the mixed pairs; the generated code runs on every same-dtype
    pair and two of the mixed ones (rotating over the ops), folding on all of them."""
    ik_fn, np_fn = BINARY[name]
    pairs = [(d, d) for d in ALL_DTYPES] + MIXED_PAIRS
    ok = [p for p in pairs if _numpy_dtype(np_fn, *p) is not None]
    for da, db in (p for p in pairs if p not in ok):
        with pytest.raises(ik.DTypeError):
            ik_fn(ik.vector("a", dtype=da), ik.vector("b", dtype=db))
    k0 = sorted(BINARY).index(name)
    mixed = [p for p in ok if p[0] != p[1]]
    chosen = {mixed[(2 * k0) % len(mixed)], mixed[(2 * k0 + 1) % len(mixed)]} if mixed else set()
    compiled = [p for p in ok if p[0] == p[1] or p in chosen]
    data = {p: _binary_data(rng, name, *p) for p in ok}
    inputs = []
    for k, (da, db) in enumerate(compiled):
        inputs += [ik.vector(f"a{k}", dtype=da), ik.vector(f"b{k}", dtype=db)]
    outs = [ik_fn(inputs[2 * k], inputs[2 * k + 1]) for k in range(len(compiled))]
    outs += [ik_fn(ik.constant(data[p][0]), ik.constant(data[p][1])) for p in ok]
    got = ik.function(inputs, outs)(*[a for p in compiled for a in data[p]])
    results = [(f"{name}{p}", p, g) for p, g in zip(compiled, got)]
    results += [(f"{name}{p} folded", p, g) for p, g in zip(ok, got[len(compiled):])]
    for what, p, g in results:
        want = _reference(np_fn, _numpy_dtype(np_fn, *p), *data[p])
        failures.check(what, assert_matches, g, want, what=what)
    failures.raise_if_any()


def test_float_floordiv_mod_exact():
    """float // and % are numpy's npy_divmod exactly: signs of zeros, infinities, NaN, x/0."""
    vals = np.array([5.5, -5.5, 3.0, -3.0, 0.0, -0.0, 1e308, -1e-300, 7.0, np.inf, -np.inf, np.nan])
    divs = np.array([2.0, -2.0, 0.3, -0.3, 3.0, 0.0, -0.0, np.inf, -np.inf, np.nan, 1e-300])
    for dt in ("float64", "float32"):
        a = ik.tensor("a", shape=(None, 1), dtype=dt)
        b = ik.tensor("b", shape=(1, None), dtype=dt)
        f = ik.function([a, b], [a // b, a % b, ik.floor_divide(a, b), ik.mod(a, b), a / b])
        with quiet():  # 1e308 is inf in float32
            av = vals.astype(dt)[:, None]
            bv = divs.astype(dt)[None, :]
        got = f(av, bv)
        with np.errstate(all="ignore"):
            wants = [av // bv, av % bv, av // bv, av % bv, av / bv]
        for what, g, w in zip(["//", "%", "floor_divide", "mod", "/"], got, wants):
            assert_exact(g, w, what=f"{dt} {what}")


@pytest.mark.parametrize("dt", ["int8", "int16", "int32", "int64", "uint8"])
def test_integer_floordiv_mod_exact(dt):
    """Python rounding for ints, x // 0 == x % 0 == 0, MIN // -1 wraps: as numpy."""
    info = np.iinfo(dt)
    vals = np.array(sorted({info.min, info.min + 1, -7, -1, 0, 1, 7, info.max - 1, info.max}), dtype=np.int64)
    vals = vals[(vals >= info.min) & (vals <= info.max)].astype(dt)
    a = ik.tensor("a", shape=(None, 1), dtype=dt)
    b = ik.tensor("b", shape=(1, None), dtype=dt)
    f = ik.function([a, b], [a // b, a % b])
    av, bv = vals[:, None], vals[None, :]
    got = f(av, bv)
    with np.errstate(all="ignore"):
        assert_exact(got[0], av // bv, what="//")
        assert_exact(got[1], av % bv, what="%")


def test_integer_negative_power_raises_at_call():
    a = ik.vector("a", dtype="int64")
    b = ik.vector("b", dtype="int64")
    f = ik.function([a, b], a ** b)
    assert_matches(f(np.array([2, 3, -2]), np.array([3, 0, 5])), np.array([8, 1, -32]))
    with pytest.raises(ValueError):  # numpy: "Integers to negative integer powers are not allowed."
        f(np.array([2, 3]), np.array([1, -1]))
    with pytest.raises(ik.InvalidValueError):
        f(np.array([2]), np.array([-2]))


def test_numpy_array_on_the_left_builds_a_graph():
    x = ik.vector("x", dtype="float64")
    c = np.array([1.0, 2.0, 3.0])
    expr = c * x + c
    assert isinstance(expr, ik.Variable)
    f = ik.function([x], [expr, c - x, c / x, c > x])
    xv = np.array([4.0, -1.0, 2.0])
    got = f(xv)
    for g, w in zip(got, [c * xv + c, c - xv, c / xv, c > xv]):
        assert_matches(g, w)


# ---------------------------------------------------------------------------
# NEP 50: Python scalars are weak
# ---------------------------------------------------------------------------

def test_weak_python_scalars():
    f32 = ik.vector("f32", dtype="float32")
    i8 = ik.vector("i8", dtype="int8")
    u8 = ik.vector("u8", dtype="uint8")
    b = ik.vector("b", dtype="bool")
    i32 = ik.vector("i32", dtype="int32")
    exprs = {
        "f32 * 2.0": (f32 * 2.0, lambda v: v["f32"] * 2.0),
        "2.0 ** f32": (2.0 ** f32, lambda v: 2.0 ** v["f32"]),
        "f32 + 1": (f32 + 1, lambda v: v["f32"] + 1),
        "f32 / 3": (f32 / 3, lambda v: v["f32"] / 3),
        "i8 + 3": (i8 + 3, lambda v: v["i8"] + 3),
        "i8 * -2": (i8 * -2, lambda v: v["i8"] * -2),
        "100 - i8": (100 - i8, lambda v: 100 - v["i8"]),
        "i8 * 2.5": (i8 * 2.5, lambda v: v["i8"] * 2.5),
        "u8 - 1": (u8 - 1, lambda v: v["u8"] - 1),
        "u8 + 255": (u8 + 255, lambda v: v["u8"] + 255),
        "i32 * 2.5": (i32 * 2.5, lambda v: v["i32"] * 2.5),
        "i32 / 2": (i32 / 2, lambda v: v["i32"] / 2),
        "b + 1": (b + 1, lambda v: v["b"] + 1),
        "b * 1.5": (b * 1.5, lambda v: v["b"] * 1.5),
        "b & True": (b & True, lambda v: v["b"] & True),
        "f32 > 0.5": (f32 > 0.5, lambda v: v["f32"] > 0.5),
        "maximum(f32, 0)": (ik.maximum(f32, 0), lambda v: np.maximum(v["f32"], 0)),
        "where(b, i8, 1)": (ik.where(b, i8, 1), lambda v: np.where(v["b"], v["i8"], 1)),
        "clip(i8, -5, 5)": (ik.clip(i8, -5, 5), lambda v: np.clip(v["i8"], -5, 5)),
        "f32 + float64 0-d": (f32 + np.float64(2.0), lambda v: v["f32"] + np.float64(2.0)),
        "i8 + int64 array": (i8 + np.array([1], np.int64), lambda v: v["i8"] + np.array([1], np.int64)),
    }
    rng = np.random.default_rng(0)
    vals = {"f32": sample(rng, "float32", 9), "i8": sample(rng, "int8", 9), "u8": sample(rng, "uint8", 9),
            "b": sample(rng, "bool", 9), "i32": sample(rng, "int32", 9)}
    f = ik.function([f32, i8, u8, b, i32], [e for e, _ in exprs.values()])
    got = f(vals["f32"], vals["i8"], vals["u8"], vals["b"], vals["i32"])
    with np.errstate(all="ignore"):
        for (what, (_, ref)), g in zip(exprs.items(), got):
            assert_matches(g, ref(vals), what=what)
    assert (f32 * 2.0).dtype == np.float32


def test_weak_python_int_out_of_range():
    i8 = ik.vector("i8", dtype="int8")
    u8 = ik.vector("u8", dtype="uint8")
    for build in (lambda: i8 + 300, lambda: 300 + i8, lambda: i8 * -129, lambda: u8 + -1,
                  lambda: u8 - 256, lambda: ik.maximum(i8, 1000)):
        with pytest.raises(ik.DTypeError):
            build()
    with pytest.raises(TypeError):  # numpy raises OverflowError; irkit's DTypeError is a TypeError
        i8 + 300


def test_comparison_with_out_of_range_python_int():
    """numpy 2 compares an int8 array with 300 exactly (no error): all False for >, all True for <."""
    i8 = ik.vector("i8", dtype="int8")
    u8 = ik.vector("u8", dtype="uint8")
    f = ik.function([i8, u8], [i8 > 300, i8 < 300, i8 == -1000, i8 != 1000, u8 >= -1, u8 <= -1])
    iv = np.array([-128, 0, 127], np.int8)
    uv = np.array([0, 255], np.uint8)
    got = f(iv, uv)
    wants = [iv > 300, iv < 300, iv == -1000, iv != 1000, uv >= -1, uv <= -1]
    for g, w in zip(got, wants):
        assert_matches(g, w)


# ---------------------------------------------------------------------------
# booleans and dtype errors
# ---------------------------------------------------------------------------

def test_boolean_logic():
    a = ik.vector("a", dtype="bool")
    b = ik.vector("b", dtype="bool")
    x = ik.vector("x", dtype="float64")
    f = ik.function([a, b, x], [a & b, a | b, a ^ b, ~a, ~(x > 0) | a, (x > 0) & (x < 1),
                                ik.logical_and(a, b), ik.logical_not(b), a == b, a + b, a * b])
    av = np.array([True, True, False, False])
    bv = np.array([True, False, True, False])
    xv = np.array([0.5, -1.0, 2.0, np.nan])
    got = f(av, bv, xv)
    wants = [av & bv, av | bv, av ^ bv, ~av, ~(xv > 0) | av, (xv > 0) & (xv < 1),
             np.logical_and(av, bv), np.logical_not(bv), av == bv, av + bv, av * bv]
    for k, (g, w) in enumerate(zip(got, wants)):
        assert_matches(g, w, what=f"output {k}")


def test_dtype_errors_where_numpy_has_no_loop():
    b = ik.vector("b", dtype="bool")
    x = ik.vector("x", dtype="float32")
    i = ik.vector("i", dtype="int32")
    for build in (lambda: -b, lambda: b - b, lambda: ~x, lambda: x & x, lambda: x | i, lambda: x ^ x,
                  lambda: ik.sign(b), lambda: i & x, lambda: ik.invert(x)):
        with pytest.raises(ik.DTypeError):
            build()


def test_unknown_dtypes():
    for dt in ("float16", "complex64", "uint16", "int128", "banana", object):
        with pytest.raises(ik.DTypeError):
            ik.vector("v", dtype=dt)
    x = ik.vector("x")
    for dt in ("float16", "complex128", "U3", "nope"):
        with pytest.raises(ik.DTypeError):
            ik.cast(x, dt)
    with pytest.raises(ik.DTypeError):
        ik.constant(np.array([1 + 2j]))


# ---------------------------------------------------------------------------
# cast / astype
# ---------------------------------------------------------------------------

def test_cast_all_pairs(failures):
    """Every pair of dtypes, on values whose conversion numpy defines (floats in range of the
    target; out-of-range ints wrap)."""
    vals = {
        "float32": np.array([0.0, -0.0, 1.0, -1.0, 2.7, -2.7, 99.5, -100.0, 0.25, 3.0e9, np.inf, np.nan],
                            np.float32),
        "float64": np.array([0.0, -0.0, 1.0, -1.0, 2.7, -2.7, 99.5, -100.0, 0.25, 2.0 ** 60 + 1, np.inf,
                             np.nan]),
        "int8": np.array([-128, -1, 0, 1, 127, 5], np.int8),
        "int16": np.array([-32768, -129, -1, 0, 255, 256, 32767], np.int16),
        "int32": np.array([-2 ** 31, -70000, -1, 0, 1, 300, 2 ** 31 - 1], np.int32),
        "int64": np.array([-2 ** 63, -2 ** 40 - 3, -1, 0, 1, 2 ** 53 + 1, 2 ** 63 - 1], np.int64),
        "uint8": np.array([0, 1, 127, 128, 255], np.uint8),
        "bool": np.array([True, False, True]),
    }

    def usable(src, dst, a):
        # float -> int is only defined (C, numpy) for values the target can hold
        if a.dtype.kind == "f" and np.dtype(dst).kind in "iu":
            info = np.iinfo(dst)
            lo, hi = (info.min, info.max) if np.dtype(dst).kind == "i" else (-100, 300)
            with np.errstate(invalid="ignore"):
                keep = np.isfinite(a) & (np.trunc(a) >= lo) & (np.trunc(a) <= hi)
            return a[keep]
        return a

    inputs, data, outs, wants, names = [], [], [], [], []
    for src in ALL_DTYPES:
        for dst in ALL_DTYPES:
            if src == dst:
                continue
            a = usable(src, dst, vals[src])
            if np.dtype(src).kind == "f" and np.dtype(dst).kind == "u":
                a = a[a >= 0]  # negative float -> uint8 is platform-defined in numpy
            x = ik.vector(f"x_{src}_{dst}", dtype=src)
            inputs.append(x)
            data.append(a)
            outs.append(x.astype(np.float64) if dst == "float64" else ik.cast(x, dst))
            with np.errstate(all="ignore"):
                wants.append(a.astype(dst))
            names.append(f"{src}->{dst}")
    got = ik.function(inputs, outs)(*data)
    for name, g, w in zip(names, got, wants):
        failures.check(name, assert_exact, g, w, what=name)
    failures.raise_if_any()


def test_cast_same_dtype_and_dtype_spellings():
    x = ik.vector("x", dtype="float32")
    assert ik.cast(x, "float32") is x
    assert ik.cast(x, np.float64).dtype == np.float64
    assert x.astype(np.dtype("int16")).dtype == np.int16
    assert x.astype(bool).dtype == np.bool_
    assert x.astype(int).dtype == np.int64
    assert x.astype(float).dtype == np.float64


# ---------------------------------------------------------------------------
# where, clip, maximum/minimum with NaN
# ---------------------------------------------------------------------------

def test_where_and_clip(rng, failures):
    c = ik.vector("c", dtype="bool")
    ci = ik.vector("ci", dtype="int32")
    a = ik.vector("a", dtype="float32")
    b = ik.vector("b", dtype="float64")
    i = ik.vector("i", dtype="int8")
    lo = ik.vector("lo", dtype="float32")
    hi = ik.vector("hi", dtype="float32")
    m = ik.tensor("m", shape=(None, 1), dtype="float32")
    exprs = {
        "where(c, a, b)": (ik.where(c, a, b), lambda v: np.where(v["c"], v["a"], v["b"])),
        "where(c, a, 0.0)": (ik.where(c, a, 0.0), lambda v: np.where(v["c"], v["a"], 0.0).astype(np.float32)),
        "where(ci, i, a)": (ik.where(ci, i, a), lambda v: np.where(v["ci"], v["i"], v["a"])),
        "where(c, i, 7)": (ik.where(c, i, 7), lambda v: np.where(v["c"], v["i"], np.int8(7))),
        "where(a > 0, a, -a)": (ik.where(a > 0, a, -a), lambda v: np.where(v["a"] > 0, v["a"], -v["a"])),
        "where bcast": (ik.where(m > 0, a, m), lambda v: np.where(v["m"] > 0, v["a"], v["m"])),
        "clip(a, -1, 1)": (ik.clip(a, -1.0, 1.0), lambda v: np.clip(v["a"], -1.0, 1.0)),
        "clip(a, lo, hi)": (ik.clip(a, lo, hi), lambda v: np.clip(v["a"], v["lo"], v["hi"])),
        "clip(a, None, 0.5)": (ik.clip(a, None, 0.5), lambda v: np.clip(v["a"], None, 0.5)),
        "clip(a, 0.5)": (a.clip(0.5), lambda v: np.clip(v["a"], 0.5, None)),
        "clip(a, 1, -1) (lo > hi)": (ik.clip(a, 1.0, -1.0), lambda v: np.clip(v["a"], 1.0, -1.0)),
        "clip(i, -3, 100)": (ik.clip(i, -3, 100), lambda v: np.clip(v["i"], -3, 100)),
        "clip(b, lo, 1)": (ik.clip(b, lo, 1), lambda v: np.clip(v["b"], v["lo"], 1)),
        "maximum nan": (ik.maximum(a, lo), lambda v: np.maximum(v["a"], v["lo"])),
        "minimum nan": (ik.minimum(hi, a), lambda v: np.minimum(v["hi"], v["a"])),
    }
    n = 11
    vals = {"c": sample(rng, "bool", n), "ci": rng.integers(-2, 3, n).astype(np.int32),
            "a": sample(rng, "float32", n), "b": sample(rng, "float64", n), "i": sample(rng, "int8", n),
            "lo": np.full(n, -0.5, np.float32), "hi": np.full(n, 0.5, np.float32),
            "m": sample(rng, "float32", (4, 1))}
    vals["a"][:3] = [np.nan, np.inf, -np.inf]
    vals["lo"][3] = np.nan
    vals["hi"][4] = np.nan
    vals["b"][5] = np.nan
    f = ik.function([c, ci, a, b, i, lo, hi, m], [e for e, _ in exprs.values()])
    got = f(*[vals[k] for k in ("c", "ci", "a", "b", "i", "lo", "hi", "m")])
    for (what, (_, ref)), g in zip(exprs.items(), got):
        failures.check(what, assert_matches, g, ref(vals), what=what)
    failures.raise_if_any()


def test_maximum_minimum_propagate_nan_both_sides():
    a = ik.vector("a")
    b = ik.vector("b")
    av = np.array([np.nan, 1.0, np.nan, -np.inf, 0.0, -0.0])
    bv = np.array([1.0, np.nan, np.nan, np.inf, -0.0, 0.0])
    f = ik.function([a, b], [ik.maximum(a, b), ik.minimum(a, b), ik.maximum(b, a), ik.minimum(b, a)])
    got = f(av, bv)
    for g, w in zip(got, [np.maximum(av, bv), np.minimum(av, bv), np.maximum(bv, av), np.minimum(bv, av)]):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        np.testing.assert_array_equal(g[~np.isnan(w)], w[~np.isnan(w)])


# ---------------------------------------------------------------------------
# shapes: broadcasting, dynamic sizes, size 0, 0-d
# ---------------------------------------------------------------------------

def test_broadcasting_patterns(rng, failures):
    s = ik.scalar("s", dtype="float64")
    v = ik.vector("v", dtype="float64")
    M = ik.matrix("M", dtype="float64")
    r = ik.tensor("r", shape=(1, None), dtype="float64")
    c = ik.tensor("c", shape=(None, 1), dtype="float64")
    T = ik.tensor("T", shape=(None, None, None), dtype="float64")
    mid = ik.tensor("mid", shape=(None, 1, None), dtype="float64")
    lead = ik.tensor("lead", shape=(1, 1, None), dtype="float32")
    exprs = {
        "s + v": (s + v, lambda d: d["s"] + d["v"]),
        "M * v": (M * v, lambda d: d["M"] * d["v"]),
        "M - s": (M - s, lambda d: d["M"] - d["s"]),
        "r + c": (r + c, lambda d: d["r"] + d["c"]),
        "c * r + s": (c * r + s, lambda d: d["c"] * d["r"] + d["s"]),
        "M / c": (M / c, lambda d: d["M"] / d["c"]),
        "T + mid": (T + mid, lambda d: d["T"] + d["mid"]),
        "T * M": (T * M, lambda d: d["T"] * d["M"]),
        "lead + T": (lead + T, lambda d: d["lead"] + d["T"]),
        "mid + c": (mid + c, lambda d: d["mid"] + d["c"]),
        "where(c > 0, r, s)": (ik.where(c > 0, r, s), lambda d: np.where(d["c"] > 0, d["r"], d["s"])),
        "maximum(r, c)": (ik.maximum(r, c), lambda d: np.maximum(d["r"], d["c"])),
        "s * 2": (s * 2, lambda d: d["s"] * 2),
        "exp(s) + 1": (ik.exp(s) + 1, lambda d: np.exp(d["s"]) + 1),
    }
    d = {"s": np.float64(1.5), "v": sample(rng, "float64", 5), "M": sample(rng, "float64", (4, 5)),
         "r": sample(rng, "float64", (1, 5)), "c": sample(rng, "float64", (4, 1)),
         "T": sample(rng, "float64", (3, 4, 5)), "mid": sample(rng, "float64", (3, 1, 5)),
         "lead": sample(rng, "float32", (1, 1, 5))}
    f = ik.function([s, v, M, r, c, T, mid, lead], [e for e, _ in exprs.values()])
    got = f(*[d[k] for k in ("s", "v", "M", "r", "c", "T", "mid", "lead")])
    for (what, (_, ref)), g in zip(exprs.items(), got):
        failures.check(what, assert_matches, g, np.asarray(ref(d)), what=what)
    failures.raise_if_any()
    # the same function with other sizes (dynamic dims), including 0
    d2 = {"s": 0.25, "v": sample(rng, "float64", 0), "M": sample(rng, "float64", (2, 0)),
          "r": sample(rng, "float64", (1, 0)), "c": sample(rng, "float64", (2, 1)),
          "T": sample(rng, "float64", (3, 2, 0)), "mid": sample(rng, "float64", (3, 1, 0)),
          "lead": sample(rng, "float32", (1, 1, 0))}
    got = f(*[d2[k] for k in ("s", "v", "M", "r", "c", "T", "mid", "lead")])
    for (what, (_, ref)), g in zip(exprs.items(), got):
        failures.check(what + " (size 0)", assert_matches, g, np.asarray(ref(d2)), what=what)
    failures.raise_if_any()


def test_broadcast_errors():
    a = ik.vector("a")
    b = ik.vector("b")
    f = ik.function([a, b], a + b)
    assert_matches(f(np.ones(3), np.ones(3)), np.full(3, 2.0))
    with pytest.raises(ik.ShapeError):  # a dynamic dim never broadcasts, even when it is 1
        f(np.ones(3), np.ones(1))
    with pytest.raises(ik.ShapeError):
        f(np.ones(3), np.ones(4))
    p = ik.vector("p", shape=(3,))
    q = ik.vector("q", shape=(4,))
    with pytest.raises(ik.ShapeError):  # static mismatch: at build time
        p + q
    with pytest.raises(ValueError):
        ik.matrix("m", shape=(2, 3)) * ik.tensor("t", shape=(4, 1, 2))


def test_dynamic_shapes_one_compile_many_calls(rng):
    x = ik.matrix("x", dtype="float32")
    y = ik.matrix("y", dtype="float32")
    f = ik.function([x, y], [ik.exp(x) * y - 1, x > y, ik.tanh(x) / (ik.abs(y) + 1)])
    for shape in [(1, 1), (3, 5), (0, 4), (4, 0), (17, 33), (1, 1000), (2, 3)]:
        xv, yv = sample(rng, "float32", shape), sample(rng, "float32", shape)
        got = f(xv, yv)
        assert_matches(got[0], np.exp(xv) * yv - 1, what=str(shape))
        assert_matches(got[1], xv > yv, what=str(shape))
        assert_matches(got[2], np.tanh(xv) / (np.abs(yv) + 1), what=str(shape))


def test_zero_d_tensors():
    s = ik.scalar("s", dtype="float64")
    i = ik.scalar("i", dtype="int32")
    f = ik.function([s, i], [s * i, ik.exp(s), s > i, -i, s // 2, i % 3])
    for sv, iv in [(2.5, 3), (-1.5, -7), (np.float64(0.0), np.int32(0)), (np.array(4.0), np.array(5, np.int32))]:
        got = f(sv, iv)
        sa, ia = np.asarray(sv, np.float64), np.asarray(iv, np.int32)
        wants = [sa * ia, np.exp(sa), sa > ia, -ia, sa // 2, ia % 3]
        for g, w in zip(got, wants):
            assert_matches(g, np.asarray(w))
            assert g.shape == ()


def test_size_zero_elementwise():
    x = ik.tensor("x", shape=(None, 0, None), dtype="int16")
    f = ik.function([x], [x + 1, ik.exp(x), x == 0])
    xv = np.zeros((3, 0, 2), np.int16)
    got = f(xv)
    assert_matches(got[0], xv + 1)
    assert_matches(got[1], np.exp(xv.astype(np.float32)))
    assert_matches(got[2], xv == 0)


def test_nan_and_inf_propagation():
    x = ik.vector("x", dtype="float32")
    f = ik.function([x], [x + 1, x * 0, ik.exp(x), ik.log(x), ik.sqrt(x), ik.tanh(x), ik.sigmoid(x),
                          ik.relu(x), ik.abs(x), ik.sign(x), x != x, ik.isnan(x), ik.isinf(x), ik.isfinite(x),
                          ik.clip(x, -1, 1), x ** 2])
    xv = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0], np.float32)
    got = f(xv)
    with np.errstate(all="ignore"):
        wants = [xv + 1, xv * 0, np.exp(xv), np.log(xv), np.sqrt(xv), np.tanh(xv),
                 (1 / (1 + np.exp(-xv))).astype(np.float32), np.maximum(xv, np.float32(0)), np.abs(xv),
                 np.sign(xv), xv != xv, np.isnan(xv), np.isinf(xv), np.isfinite(xv), np.clip(xv, -1, 1), xv ** 2]
    for k, (g, w) in enumerate(zip(got, wants)):
        assert_matches(g, w, what=f"output {k}")


def test_function_forms_match_numpy():
    a = ik.vector("a")
    b = ik.vector("b")
    i = ik.vector("i", dtype="int16")
    exprs = {
        "add": (ik.add(a, b), np.add), "subtract": (ik.subtract(a, b), np.subtract),
        "multiply": (ik.multiply(a, b), np.multiply), "divide": (ik.divide(a, b), np.divide),
        "true_divide": (ik.true_divide(a, b), np.true_divide),
        "floor_divide": (ik.floor_divide(a, b), np.floor_divide), "remainder": (ik.remainder(a, b), np.remainder),
        "power": (ik.power(ik.abs(a), b), lambda x, y: np.power(np.abs(x), y)),
        "pow": (ik.pow(a, 2), lambda x, y: np.power(x, 2)),
        "abs builtin": (abs(a), lambda x, y: np.abs(x)), "absolute": (ik.absolute(b), lambda x, y: np.abs(y)),
        "negative": (ik.negative(a), lambda x, y: -x), "equal": (ik.equal(a, b), np.equal),
        "not_equal": (ik.not_equal(a, b), np.not_equal), "less": (ik.less(a, b), np.less),
        "greater_equal": (ik.greater_equal(a, b), np.greater_equal),
        "logical_or": (ik.logical_or(a > 0, b > 0), lambda x, y: np.logical_or(x > 0, y > 0)),
    }
    int_exprs = {"pow(i, 3)": (ik.pow(i, 3), lambda v: v ** 3), "i ** 2": (i ** 2, lambda v: v ** 2),
                 "2 ** abs(i % 10)": (2 ** (i % 10), lambda v: 2 ** (v % 10))}
    rng = np.random.default_rng(1)
    av, bv = sample(rng, "float64", 9), sample(rng, "float64", 9)
    iv = sample(rng, "int16", 9)
    f = ik.function([a, b, i], [e for e, _ in exprs.values()] + [e for e, _ in int_exprs.values()])
    got = f(av, bv, iv)
    with np.errstate(all="ignore"):
        wants = [ref(av, bv) for _, ref in exprs.values()] + [ref(iv) for _, ref in int_exprs.values()]
    for what, g, w in zip(list(exprs) + list(int_exprs), got, wants):
        assert_matches(g, w, what=what)
