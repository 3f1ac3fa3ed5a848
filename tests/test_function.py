"""ik.function's contract (design.md, "Public Python contract"): outputs, shared variables and
updates, givens, keyword calls, input conversion, aliasing, errors that name the input or
the user's source line, debugprint and the IR of each stage."""

from __future__ import annotations

import ctypes
import gc
import inspect
import subprocess
import sys
import textwrap
import threading
import weakref

import numpy as np
import pytest
from xdsl.parser import Parser

import irkit as ik
from irkit.pipeline import make_context
from conftest import assert_matches


# ---------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------

def test_output_forms():
    x = ik.vector("x")
    xv = np.array([1.0, 2.0, 3.0])
    one = ik.function([x], x * 2)
    got = one(xv)
    assert isinstance(got, np.ndarray)
    assert_matches(got, xv * 2)
    lst = ik.function([x], [x * 2])
    got = lst(xv)
    assert isinstance(got, list) and len(got) == 1
    assert_matches(got[0], xv * 2)
    two = ik.function([x], [x * 2, x.sum()])
    got = two(xv)
    assert isinstance(got, list) and len(got) == 2
    assert_matches(got[1], np.asarray(xv.sum()))
    tup = ik.function([x], (x + 1, x - 1))
    got = tup(xv)
    assert isinstance(got, (list, tuple)) and len(got) == 2
    # a constant output and an output that is an input
    c = ik.function([x], [ik.constant(np.arange(3)), x])
    got = c(xv)
    assert_matches(got[0], np.arange(3))
    assert_matches(got[1], xv)
    # 0-d outputs are 0-d arrays
    s = ik.function([x], x.sum())(xv)
    assert isinstance(s, np.ndarray) and s.shape == ()


def test_updates_only_returns_empty_list():
    W = ik.shared(np.zeros(3), name="W")
    f = ik.function([], [], updates=[(W, W + 1)])
    assert f() == []
    assert f() == []
    assert_matches(W.get_value(), np.full(3, 2.0))
    x = ik.vector("x")
    g = ik.function([x], [], updates={W: W * x})
    assert g(np.array([1.0, 2.0, 3.0])) == []
    assert_matches(W.get_value(), np.array([2.0, 4.0, 6.0]))


# ---------------------------------------------------------------------------
# shared variables
# ---------------------------------------------------------------------------

def test_shared_variable_values_are_copies():
    a = np.arange(6.0).reshape(2, 3)
    W = ik.shared(a, name="W")
    a[0, 0] = 100.0  # shared(value) copied it
    assert W.get_value()[0, 0] == 0.0
    v = W.get_value()
    v[0, 1] = -5.0  # get_value returns a copy
    assert W.get_value()[0, 1] == 1.0
    b = np.ones((2, 3))
    W.set_value(b)
    b[:] = 7.0  # set_value copied it
    assert_matches(W.get_value(), np.ones((2, 3)))
    assert W.name == "W" and W.dtype == np.float64 and W.ndim == 2
    # borrow=True may alias, and still returns the current value
    assert_matches(W.get_value(borrow=True), np.ones((2, 3)))
    # the value a compiled function returns is not the shared storage either
    f = ik.function([], W)
    out = f()
    out[:] = 42.0
    assert_matches(W.get_value(), np.ones((2, 3)))
    assert_matches(f(), np.ones((2, 3)))


def test_shared_set_value_checks_dtype_and_rank():
    W = ik.shared(np.zeros((2, 3), np.float32), name="W32")
    f = ik.function([], W * 2)
    W.set_value(np.ones((4, 5), np.float32))  # another shape: dims are dynamic
    assert_matches(f(), np.full((4, 5), 2.0, np.float32))
    with pytest.raises(ik.DTypeError):
        W.set_value(np.ones((2, 3), np.float64))  # lossy
    with pytest.raises(ik.ShapeError):
        W.set_value(np.ones(3, np.float32))  # rank
    with pytest.raises(ik.ShapeError):
        W.set_value(np.ones((1, 2, 3), np.float32))
    W.set_value(np.ones((2, 2), np.int8))  # lossless: converted
    assert W.get_value().dtype == np.float32
    assert_matches(f(), np.full((2, 2), 2.0, np.float32))
    I = ik.shared(np.zeros(3, np.int64))
    with pytest.raises(ik.DTypeError):
        I.set_value(np.ones(3, np.float64))
    I.set_value(np.array([1, 2, 3], np.int32))
    assert I.get_value().dtype == np.int64
    row = ik.shared(np.zeros((1, 3)))  # a static 1 (broadcasts) stays 1
    with pytest.raises(ik.ShapeError):
        row.set_value(np.zeros((2, 3)))
    with pytest.raises(ik.DTypeError):
        ik.shared(np.array([1 + 2j]))
    with pytest.raises(ik.DTypeError):
        ik.shared(np.zeros(3, np.float16))


def test_shared_scalar_and_python_values():
    s = ik.shared(0.5, name="s")
    assert s.ndim == 0 and s.dtype == np.float64
    n = ik.shared(3, name="n")
    assert n.dtype == np.int64
    f = ik.function([], s * n, updates=[(n, n + 1)])
    assert_matches(f(), np.asarray(1.5))
    assert_matches(f(), np.asarray(2.0))
    assert n.get_value() == 5


def test_updates_are_simultaneous_and_after_the_call():
    a = ik.shared(np.array([1.0, 2.0]), name="a")
    b = ik.shared(np.array([10.0, 20.0]), name="b")
    x = ik.vector("x")
    f = ik.function([x], a + b + x, updates=[(a, b), (b, a + x)])
    out = f(np.array([100.0, 200.0]))
    assert_matches(out, np.array([111.0, 222.0]))  # computed from the old values
    assert_matches(a.get_value(), np.array([10.0, 20.0]))
    assert_matches(b.get_value(), np.array([101.0, 202.0]))
    # the output and the new shared value are distinct buffers even when they are the same value
    c = ik.shared(np.zeros(3), name="c")
    g = ik.function([], c + 1, updates=[(c, c + 1)])
    out = g()
    out[:] = -1.0
    assert_matches(c.get_value(), np.ones(3))
    out2 = g()
    assert_matches(out2, np.full(3, 2.0))
    assert_matches(c.get_value(), np.full(3, 2.0))
    assert_matches(out, np.full(3, -1.0))  # an earlier output is not overwritten by later calls


def test_failed_call_changes_no_shared_value():
    """A call that fails at run time (an out-of-bounds index in one output, computed after
    others) applies none of the updates."""
    W = ik.shared(np.arange(4.0), name="W")
    b = ik.shared(np.array(1.0), name="b")
    k = ik.shared(np.array(0, np.int64), name="k")
    idx = ik.lvector("idx")
    x = ik.vector("x")
    f = ik.function([x, idx], [x * 2 + W, W[idx] + b, (x * W).sum()],
                    updates=[(W, W + x), (b, b * 3), (k, k + 1)])
    with pytest.raises(IndexError):
        f(np.ones(4), np.array([0, 9]))
    assert_matches(W.get_value(), np.arange(4.0))
    assert_matches(b.get_value(), np.asarray(1.0))
    assert_matches(k.get_value(), np.asarray(0))
    # a dtype error in the arguments: nothing changes either
    with pytest.raises(ik.DTypeError):
        f(np.ones(4), np.array([0.5]))
    # the update's own computation failing (a shape mismatch inside W + x)
    with pytest.raises(ik.ShapeError):
        f(np.ones(5), np.array([0]))
    assert_matches(W.get_value(), np.arange(4.0))
    assert k.get_value() == 0
    # a good call applies all of them
    out = f(np.ones(4), np.array([3, -1]))
    assert_matches(out[1], np.array([4.0, 4.0]))
    assert_matches(W.get_value(), np.arange(4.0) + 1)
    assert_matches(b.get_value(), np.asarray(3.0))
    assert k.get_value() == 1


def test_update_checks_at_build_time():
    W = ik.shared(np.zeros(3, np.float32), name="W")
    x = ik.vector("x", dtype="float64")
    with pytest.raises(ik.DTypeError):  # float64 into float32 loses precision
        ik.function([x], [], updates=[(W, W + x)])
    with pytest.raises(ik.ShapeError):
        ik.function([], [], updates=[(W, W.sum())])
    with pytest.raises(TypeError):
        ik.function([x], [], updates=[(x, x + 1)])
    with pytest.raises(ValueError):
        ik.function([], [], updates=[(W, W + 1), (W, W * 2)])
    f = ik.function([], [], updates=[(W, W + 1)])  # a Python scalar stays float32 (weak)
    f()
    assert W.get_value().dtype == np.float32


# ---------------------------------------------------------------------------
# givens, keywords, Python scalars
# ---------------------------------------------------------------------------

def test_givens():
    x = ik.vector("x")
    y = ik.vector("y")
    z = x * 2 + 1
    f = ik.function([y], z, givens={x: y + 10})
    assert_matches(f(np.array([1.0, 2.0])), np.array([23.0, 25.0]))
    W = ik.shared(np.ones(2), name="W")
    g = ik.function([x], W * x, givens=[(W, x + 1)])
    assert_matches(g(np.array([2.0, 3.0])), np.array([6.0, 12.0]))
    h = ik.function([], x.sum(), givens={x: np.array([1.0, 2.0, 4.0])})
    assert_matches(h(), np.asarray(7.0))
    with pytest.raises((ik.DTypeError, ik.ShapeError)):
        ik.function([y], z, givens={x: ik.matrix("m")})


def test_keyword_calls():
    a = ik.scalar("a")
    b = ik.vector("b")
    c = ik.vector("c", dtype="int64")
    f = ik.function([a, b, c], a * b + c)
    want = 2.0 * np.array([1.0, 2.0]) + np.array([3, 4])
    assert_matches(f(a=2.0, b=np.array([1.0, 2.0]), c=np.array([3, 4])), want)
    assert_matches(f(2.0, c=np.array([3, 4]), b=np.array([1.0, 2.0])), want)
    assert_matches(f(2.0, np.array([1.0, 2.0]), np.array([3, 4])), want)
    with pytest.raises(TypeError):
        f(2.0, b=np.ones(2))  # missing c
    with pytest.raises(TypeError):
        f(2.0, np.ones(2), np.ones(2, np.int64), b=np.ones(2))  # b twice
    with pytest.raises(TypeError):
        f(a=1.0, b=np.ones(2), c=np.ones(2, np.int64), d=1)  # unknown name
    with pytest.raises(TypeError):
        f(1.0, np.ones(2))  # too few positional
    with pytest.raises(TypeError):
        f(1.0, np.ones(2), np.ones(2, np.int64), 4)  # too many


def test_python_scalars_for_0d_inputs():
    d = ik.scalar("d")
    i = ik.scalar("i", dtype="int32")
    i8 = ik.scalar("i8", dtype="int8")
    b = ik.scalar("b", dtype="bool")
    f32 = ik.scalar("f32", dtype="float32")
    f = ik.function([d, i, i8, b, f32], [d * 2, i + 1, i8 * 2, ~b, f32 / 2])
    got = f(1.5, 7, -3, True, 0.25)
    wants = [np.asarray(3.0), np.asarray(8, np.int32), np.asarray(-6, np.int8), np.asarray(False),
             np.asarray(0.125, np.float32)]
    for g, w in zip(got, wants):
        assert_matches(g, w)
    got = f(2, np.int32(5), np.int8(1), np.bool_(False), 1)  # ints into float inputs are fine
    assert_matches(got[0], np.asarray(4.0))
    assert_matches(got[4], np.asarray(0.5, np.float32))
    with pytest.raises(ik.DTypeError):
        f(1.0, 2.5, 1, True, 1.0)  # a float into an int input
    with pytest.raises(ik.DTypeError):
        f(1.0, 2, 300, True, 1.0)  # out of int8's range
    with pytest.raises(ik.ShapeError):
        f(np.ones(2), 1, 1, True, 1.0)  # an array for a 0-d input


def test_scalars_of_the_exact_dtype_take_the_native_entry():
    """numpy scalars of a 0-d input's dtype (and Python floats for float64) are read in place
    by the native entry; with the slow path marked busy, anything it hands over would raise."""
    d, f32, i64, b = ik.dscalar("d"), ik.fscalar("f32"), ik.lscalar("i64"), ik.scalar("b", dtype="bool")
    f = ik.function([d, f32, i64, b], [d * 2, f32 + 1, i64 - 1, ~b])
    values = (np.float64(1.25), np.float32(0.5), np.int64(7), np.bool_(True))
    f._local.busy = True
    try:
        for args in (values, (1.25, *values[1:]), (values[0], values[1], np.longlong(7), values[3])):
            got = f._native.call(*args)
            for g, w in zip(got, [np.asarray(2.5), np.asarray(1.5, np.float32), np.asarray(6), np.asarray(False)]):
                assert_matches(g, w)
        with pytest.raises(ik.CompileError, match="rejected"):  # float32 scalar into float64: converted
            f._native.call(np.float32(1.25), *values[1:])
    finally:
        f._local.busy = False
    assert values[0] == 1.25 and values[2] == 7  # read, never written
    assert_matches(f(np.float32(1.25), 0.5, 7, True)[0], np.asarray(2.5))


def test_the_native_builtin_keeps_its_method_def_alive_itself():
    """CPython reads a builtin's PyMethodDef when it frees the builtin. A natively called
    function's class holds its builtin (a reference cycle), and the garbage collector may
    break such a cycle in any order (at the latest at exit): the PyMethodDef must lie in an
    object the builtin holds and the collector never clears, as a bytes object in its `self`
    tuple, not in a ctypes structure the collector can free first (that crashed 4 exits in
    10 after a 2,000-op graph)."""
    x, y = ik.dscalar("x"), ik.dscalar("y")
    f = ik.function([x, y], x + y)
    builtin = type(f).__call__
    assert builtin is f._native.call and type(builtin).__name__ == "builtin_function_or_method"
    method_def = ctypes.c_void_p.from_address(id(builtin) + 16).value  # PyCFunctionObject.m_ml
    holders = [item for item in builtin.__self__ if isinstance(item, bytes)]
    assert any(ctypes.cast(ctypes.c_char_p(b), ctypes.c_void_p).value <= method_def
               and method_def + 32 <= ctypes.cast(ctypes.c_char_p(b), ctypes.c_void_p).value + len(b)
               for b in holders), "the PyMethodDef is not inside the builtin's own self"
    assert builtin.__name__.startswith("irkit_entry_")
    assert builtin(np.float64(1.5), np.float64(2.25)) == 3.75
    ref = weakref.ref(f)
    del f, builtin
    gc.collect()
    assert ref() is None  # the cycle is collected, the builtin with it


def test_the_runtime_code_outlives_its_cache_entry():
    """Arrays hold their buffers through a capsule whose destructor is the runtime's compiled
    irkit_capsule_free: that code stays mapped even once nothing refers to the runtime's
    engine (here the process forgets it has the runtime, and compiles it again), or freeing
    the arrays would jump into unmapped memory (a segfault, in a child process here)."""
    code = textwrap.dedent("""
        import gc, numpy as np, irkit as ik
        from irkit.backends import runtime
        x = ik.vector("x")
        f = ik.function([x], ik.exp(x) + 1.0)
        arrays = [f(np.ones(n)) for n in (10, 1000, 3_000_000)]
        runtime._ready.clear()
        gc.collect()
        del arrays
        print(ik.function([x], x * 2.0)(np.ones(3)).tolist())
    """)
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, (got.returncode, got.stderr[-2000:])
    assert got.stdout.split("\n")[-2] == "[2.0, 2.0, 2.0]"


# ---------------------------------------------------------------------------
# input conversion
# ---------------------------------------------------------------------------

def test_lossless_conversion_and_downcast():
    x64 = ik.vector("x64", dtype="float64")
    n64 = ik.vector("n64", dtype="int64")
    x32 = ik.vector("x32", dtype="float32")
    f = ik.function([x64, n64, x32], [x64 * 2, n64 + 1, x32 + 1])
    got = f(np.array([1, 2], np.float32), np.array([1, 2], np.int32), np.array([1, 2], np.int8))
    assert_matches(got[0], np.array([2.0, 4.0]))
    assert_matches(got[1], np.array([2, 3]))
    assert_matches(got[2], np.array([2.0, 3.0], np.float32))
    got = f(np.array([1, 2], np.uint8), np.array([True, False]), np.array([3, 4], np.int16))
    assert_matches(got[1], np.array([2, 1]))
    got = f([1.0, 2.0], [5, 6], [0.5, 1.5])  # Python lists convert
    assert_matches(got[2], np.array([1.5, 2.5], np.float32))
    with pytest.raises(ik.DTypeError) as info:
        f(np.ones(2), np.ones(2, np.int64), np.ones(2, np.float64))  # float64 into float32: lossy
    assert "x32" in str(info.value)
    with pytest.raises(ik.DTypeError) as info:
        f(np.ones(2), np.ones(2, np.float64), np.ones(2, np.float32))  # float into int
    assert "n64" in str(info.value)
    with pytest.raises(ik.DTypeError):
        f(np.ones(2), np.ones(2, np.uint64), np.ones(2, np.float32))
    g = ik.function([x32], x32 * 1, allow_input_downcast=True)
    with np.errstate(over="ignore"):
        want = np.array([0.1, 1e40, 2.5]).astype(np.float32)
    assert_matches(g(np.array([0.1, 1e40, 2.5])), want)
    i32 = ik.vector("i32", dtype="int32")
    h = ik.function([i32], i32 + 1)
    with pytest.raises(ik.DTypeError):
        h(np.array([1, 2], np.int64))
    h2 = ik.function([i32], i32 + 1, allow_input_downcast=True)
    assert_matches(h2(np.array([1, 2], np.int64)), np.array([2, 3], np.int32))


def _unaligned(a: np.ndarray) -> np.ndarray:
    out = np.ndarray(shape=a.shape, dtype=a.dtype, buffer=bytearray(a.nbytes + 1), offset=1)
    out[...] = a
    return out


def test_non_contiguous_readonly_and_odd_layout_inputs():
    x = ik.matrix("x")
    v = ik.vector("v", dtype="float32")
    f = ik.function([x, v], [x * 2 + 1, x.sum(axis=0), (x @ x.T), v * 3])
    base = np.arange(48.0).reshape(6, 8)
    vb = np.arange(10, dtype=np.float32)
    ro = base.copy()
    ro.flags.writeable = False
    vro = vb.copy()
    vro.flags.writeable = False
    cases = [
        (base[:, ::2], vb[::3]),
        (base.T, vb[::-1]),
        (base[1:5, 2:7], vb[2:8]),
        (np.asfortranarray(base), vro),
        (ro, np.broadcast_to(np.float32(2.0), (5,))),  # read-only, zero stride
        (np.broadcast_to(np.arange(3.0), (4, 3)), vb),
        (base.astype(">f8"), vb.astype(">f4")),  # big-endian: lossless
        (base[::-2, ::-3], vb),
        (_unaligned(base), _unaligned(vb)),  # misaligned data (a byte offset into a buffer)
    ]
    assert not cases[-1][0].flags.aligned and not cases[-1][1].flags.aligned
    for xv, vv in cases:
        xc, vc = np.array(xv, dtype=np.float64), np.array(vv, dtype=np.float32)
        got = f(xv, vv)
        assert_matches(got[0], xc * 2 + 1)
        assert_matches(got[1], xc.sum(axis=0))
        assert_matches(got[2], xc @ xc.T)
        assert_matches(got[3], vc * 3)
    assert not ro.flags.writeable and ro[0, 0] == 0.0


# ---------------------------------------------------------------------------
# aliasing
# ---------------------------------------------------------------------------

def test_outputs_never_alias_inputs_or_each_other():
    x = ik.matrix("x")
    f = ik.function([x], [x, x])
    xv = np.arange(6.0).reshape(2, 3)
    keep = xv.copy()
    a, b = f(xv)
    assert not np.shares_memory(a, xv) and not np.shares_memory(b, xv) and not np.shares_memory(a, b)
    a[0, 0] = 99.0
    assert b[0, 0] == 0.0 and xv[0, 0] == 0.0
    b[1, 1] = -7.0
    np.testing.assert_array_equal(xv, keep)
    # views of the input: transpose, reshape, slice, and the identity
    g = ik.function([x], [x.T, x.reshape(-1), x[1:], x[:, ::2], x, x.T])
    outs = g(xv)
    for o in outs:
        assert not np.shares_memory(o, xv)
        o[...] = -1.0
    np.testing.assert_array_equal(xv, keep)
    for i, o in enumerate(outs):
        for p in outs[i + 1:]:
            assert not np.shares_memory(o, p)
    # a single output that is the input itself
    h = ik.function([x], x)
    out = h(xv)
    assert not np.shares_memory(out, xv)
    out[:] = 5.0
    np.testing.assert_array_equal(xv, keep)
    # earlier results are not overwritten by later calls (buffers are not recycled under the user)
    k = ik.function([x], [x * 2, (x * 2).sum(axis=1)])
    r1 = k(xv)
    r1_copy = [r.copy() for r in r1]
    r2 = k(xv + 100)
    for r, c in zip(r1, r1_copy):
        np.testing.assert_array_equal(r, c)
    assert not np.shares_memory(r1[0], r2[0])
    # common subexpressions: two outputs that are the same value are still two arrays
    s, t = ik.function([x], [ik.exp(x), ik.exp(x)])(xv)
    assert not np.shares_memory(s, t)


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------

def test_call_errors_name_the_input():
    weights = ik.matrix("weights", dtype="float32")
    labels = ik.vector("labels", dtype="int64")
    f = ik.function([weights, labels], weights.sum(axis=1) + labels)
    with pytest.raises(ik.ShapeError) as info:
        f(np.ones(3, np.float32), np.ones(3, np.int64))  # rank
    assert "weights" in str(info.value)
    with pytest.raises(ik.DTypeError) as info:
        f(np.ones((3, 2), np.float32), np.ones(3, np.float32))  # dtype
    assert "labels" in str(info.value)
    with pytest.raises(ik.ShapeError):
        f(np.ones((3, 2), np.float32), np.ones(4, np.int64))  # sizes disagree inside
    with pytest.raises(TypeError):
        f(np.array(["a", "b"], dtype=object), np.ones(2, np.int64))
    s = ik.tensor("s", shape=(2, None), dtype="float64")
    g = ik.function([s], s * 2)
    with pytest.raises(ik.ShapeError) as info:
        g(np.ones((3, 4)))  # static dim
    assert "s" in str(info.value)
    with pytest.raises(TypeError):
        g(s)  # a symbolic variable is not a value


def test_missing_and_duplicate_inputs():
    x = ik.vector("x")
    y = ik.vector("y")
    with pytest.raises(ik.MissingInputError) as info:
        ik.function([x], x + y)
    assert "y" in str(info.value)
    with pytest.raises(ValueError):
        ik.function([x, ik.vector("x")], x)
    with pytest.raises(ValueError):
        ik.function([x, x], x)
    with pytest.raises(TypeError):
        ik.function([x * 2], x)  # an input must be a leaf
    with pytest.raises(TypeError):
        ik.function([ik.shared(np.zeros(2))], x)
    with pytest.raises(TypeError):
        ik.function(x, x)


def test_build_time_shape_error_names_source_line():
    a = ik.matrix("a", shape=(3, 4))
    b = ik.matrix("b", shape=(5, 6))
    with pytest.raises(ik.ShapeError) as info:
        c = a @ b  # the line the message quotes
    line = inspect.getframeinfo(inspect.currentframe()).lineno - 1
    message = str(info.value)
    assert "c = a @ b  # the line the message quotes" in message
    assert str(line) in message
    assert "(3, 4)" in message and "(5, 6)" in message
    with pytest.raises(ik.ShapeError) as info:
        bad = ik.tensor("p", shape=(2, 3)) + ik.tensor("q", shape=(4, 3))  # elementwise mismatch
    assert "bad = ik.tensor" in str(info.value)


def test_reshape_to_wrong_size():
    s = ik.tensor("s", shape=(2, 3))
    with pytest.raises(ik.ShapeError):
        s.reshape(4, 2)
    x = ik.matrix("x")
    f = ik.function([x], x.reshape(4, 2))
    assert_matches(f(np.ones((2, 4))), np.ones((4, 2)))
    with pytest.raises(ik.ShapeError):
        f(np.ones((3, 3)))


def test_unknown_dtype():
    with pytest.raises(ik.DTypeError):
        ik.vector("v", dtype="complex64")
    with pytest.raises(ik.DTypeError):
        ik.matrix("m", dtype="float128")
    with pytest.raises(ik.DTypeError):
        ik.scalar("s", dtype="not-a-dtype")
    with pytest.raises(ik.DTypeError):
        ik.zeros(3, dtype="complex128")
    with pytest.raises(TypeError):  # DTypeError is a TypeError
        ik.vector("v", dtype="uint32")


def test_error_hierarchy():
    assert issubclass(ik.ShapeError, ValueError) and issubclass(ik.ShapeError, ik.IrkitError)
    assert issubclass(ik.DTypeError, TypeError) and issubclass(ik.DTypeError, ik.IrkitError)
    assert issubclass(ik.IndexOutOfBoundsError, IndexError)
    assert issubclass(ik.InvalidValueError, ValueError)
    assert issubclass(ik.MissingInputError, ik.IrkitError)
    assert issubclass(ik.ParseError, ValueError)


# ---------------------------------------------------------------------------
# looking inside
# ---------------------------------------------------------------------------

def test_debugprint_names_the_ops(capsys):
    x = ik.matrix("x")
    W = ik.shared(np.ones((3, 2)), name="W")
    y = ik.tanh(x @ W).sum(axis=1)
    text = ik.debugprint(y)
    printed = capsys.readouterr().out
    assert isinstance(text, str) and text
    assert printed.strip() == "" or text.strip() in printed
    for name in ("tanh", "matmul", "sum", "x", "W"):
        assert name in text, name
    f = ik.function([x], y)
    text_f = ik.debugprint(f)
    assert "tanh" in text_f


def test_ir_stages_parse_back():
    x = ik.matrix("x", dtype="float32")
    v = ik.vector("v", dtype="float32")
    idx = ik.lvector("idx")
    f = ik.function([x, v, idx], [ik.exp(x) + v, x.sum(axis=1), ik.softmax(x)[idx], x @ x.T])
    ctx = make_context()
    for stage in ("tensor", "fused", "loops"):
        text = f.ir(stage)
        assert isinstance(text, str) and "func.func" in text, stage
        module = Parser(ctx, text).parse_module()
        module.verify()
    assert "ik.exp" in f.ir("tensor")
    assert "scf.for" in f.ir("loops") or "scf.parallel" in f.ir("loops")
    llvm = f.ir("llvm")
    assert "define" in llvm
    with pytest.raises(ValueError):
        f.ir("no-such-stage")
    # looking did not change what the function computes
    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    vv = np.ones(3, np.float32)
    got = f(xv, vv, np.array([1, 0]))
    assert_matches(got[0], np.exp(xv) + vv)


def test_huge_allocation_is_a_memory_error():
    k = ik.lscalar("k")
    f = ik.function([k], [ik.zeros((k, k)), ik.arange(k)])
    for big in (10 ** 7, 2 ** 32, 2 ** 40):  # 2**32 squared wraps a 64-bit byte count to 0
        with pytest.raises(MemoryError):
            f(big)
    with pytest.raises(ValueError):
        f(-1)
    got = f(3)
    assert_matches(got[0], np.zeros((3, 3)))
    assert_matches(got[1], np.arange(3))


def test_slice_with_a_symbolic_stop():
    """A bound known only at run time is not an absent bound."""
    a = ik.vector("a", dtype="float64")
    g = ik.tensor("g", shape=(8,), dtype="float64")
    s = g[2:2 + a.shape[0]]
    assert s.static_shape == (None,)
    got = ik.function([a, g], s)(np.ones(3), np.arange(8.0))
    np.testing.assert_array_equal(got, np.arange(8.0)[2:5])


def test_multi_output_kernel_writes_each_output_to_its_own_buffer():
    x, y = ik.matrix("x", dtype="float64"), ik.matrix("y", dtype="float64")
    m = x @ y  # a temporary both outputs could overwrite in place
    f = ik.function([x, y], [ik.cos(m) * 2.0, ik.cos(m) + 1.0])
    yv = np.array([[0.0, 1.0], [2.0, 3.0]])
    first, second = f(np.eye(2), yv)
    np.testing.assert_allclose(first, np.cos(yv) * 2.0)
    np.testing.assert_allclose(second, np.cos(yv) + 1.0)


def test_fused_kernels_run_after_what_they_read():
    """A multi-output kernel is placed after its last producer, which may be a kernel
    built later: the fused block is re-sorted."""
    x, v = ik.matrix("x", dtype="float64"), ik.matrix("v", dtype="float64")
    h = ik.tanh(x @ x)
    s = 1.0 - h * h
    p = s @ x
    r = ((v @ x) * s * h) @ x
    xv, vv = np.array([[0.1, 0.2], [0.3, 0.4]]), np.array([[1.0, 2.0], [0.5, -1.0]])
    got_p, got_r = ik.function([x, v], [p, r])(xv, vv)
    H = np.tanh(xv @ xv)
    S = 1 - H * H
    np.testing.assert_allclose(got_p, S @ xv, rtol=1e-12)
    np.testing.assert_allclose(got_r, ((vv @ xv) * S * H) @ xv, rtol=1e-12)


def test_sizes_read_by_size_arithmetic_stay_alive():
    """Size arithmetic (dims, integer constants) outside kernels is computed where its value
    is needed, also as an arange's bound and a reshape's dims (this once read a freed buffer)."""
    a = ik.vector("a", dtype="float64")
    b = ik.matrix("b", dtype="float64")
    out = ik.where(ik.constant(np.array([[True], [False]])), ik.exp(a), b)
    size = out.shape[0] * out.shape[1]
    phase = ik.reshape(ik.cast(ik.arange(size), "float64"), out.shape)
    f = ik.function([a, b], [ik.sum(out * phase), size])
    av, bv = np.array([0.1, 0.2, 0.3]), np.ones((2, 3))
    want = np.where([[True], [False]], np.exp(av), bv)
    total, n = f(av, bv)
    np.testing.assert_allclose(total, np.sum(want * np.arange(6.0).reshape(2, 3)))
    assert n == 6


def test_sgd_on_selected_rows_updates_them_in_one_scatter():
    """W - lr * grad(sum(W[idx]**2)) becomes a scatter-increment of W (canonicalize), and
    repeated indices accumulate as numpy's add.at."""
    W = ik.shared(np.arange(12.0).reshape(4, 3), name="W")
    idx = ik.lvector("idx")
    g = ik.grad(ik.sum(W[idx] ** 2), W)
    f = ik.function([idx], [], updates=[(W, W - 0.1 * g)])
    assert "ik.scatter %W" in f.ir("tensor") and "ik.fill" not in f.ir("tensor")
    w0 = W.get_value().copy()
    f(np.array([1, 1, 3]))
    grad = np.zeros_like(w0)
    np.add.at(grad, [1, 1, 3], 2 * w0[[1, 1, 3]])
    np.testing.assert_allclose(W.get_value(), w0 - 0.1 * grad, rtol=1e-15)


def test_each_thread_builds_into_its_own_context():
    """irkit.graph's insertion contexts (where the API's ops go while a rule rewrites) belong
    to the thread that opened them: ops built in a thread's detached() land in its list only."""
    from irkit import graph
    errors: list[str] = []
    n, rounds = 4, 200
    start = threading.Barrier(n)

    def work(k: int) -> None:
        x = ik.vector(f"x{k}")
        start.wait()
        for r in range(rounds):
            with graph.detached() as created:
                y = (x + float(r)) * float(k)
            mine = {id(op) for op in created}
            if id(y.value.owner) not in mine or len(created) < 2:
                errors.append(f"thread {k}, round {r}: {len(created)} ops collected")
                return
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=work, args=(k,)) for k in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors[:3]


def test_a_compile_collects_garbage_less_often_and_restores_the_thresholds(monkeypatch):
    """While a compile runs the cyclic collector's thresholds are raised (its millions of
    short-lived objects were walked again and again); the caller's come back afterwards,
    also when the compile fails."""
    F = sys.modules["irkit.function"]  # (ik.function the function shadows the module)
    seen = []
    compile_ = F.Function._compile

    def recording(self, module):
        seen.append(gc.get_threshold())
        return compile_(self, module)
    monkeypatch.setattr(F.Function, "_compile", recording)
    saved = gc.get_threshold()
    gc.set_threshold(500, 7, 7)
    try:
        x = ik.vector("x")
        ik.function([x], x * 2)
        assert seen == [F.COMPILE_GC_THRESHOLDS]
        assert gc.get_threshold() == (500, 7, 7)
        with pytest.raises(ik.ShapeError):
            ik.function([x], x + ik.constant(np.ones(3)) + ik.constant(np.ones(4)))
        assert gc.get_threshold() == (500, 7, 7)
    finally:
        gc.set_threshold(*saved)
