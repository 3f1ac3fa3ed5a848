"""BLAS epilogues and shared variables updated in place: `ik.gemm` (beta c + alpha a @ b),
the gemm-epilogue rewrite that makes it of `c ± s * (a @ b)`, and donation: a function
that updates a shared variable writes the new value over the old one where nothing can
fail afterwards. numpy is the oracle; the cases that must not write in place (aliasing,
read-only values, a failing call) are checked against the values they must keep."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import irkit as ik


# ---------------------------------------------------------------------------
# ik.gemm
# ---------------------------------------------------------------------------

GEMM_SHAPES = [(3, 4, 5), (300, 200, 100), (1, 50, 30), (40, 1, 30), (20, 30, 1), (1, 1, 1), (5, 6, 0)]


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m,n,k", GEMM_SHAPES)
def test_gemm_matches_numpy(rng, dtype, m, n, k, static):
    """Small products of static shape run as inlined loops; the others call the runtime's
    irkit_gemm, which runs small ones as its own loops, larger ones as BLAS gemm, single
    rows as gemv, no terms (k = 0) as beta c; (static) single rows and columns are gemv;
    transposed operands are read in place."""
    def matrix(name, shape):
        return ik.tensor(name, dtype=dtype, shape=shape) if static else ik.matrix(name, dtype=dtype)
    C, A, B = matrix("C", (m, n)), matrix("A", (m, k)), matrix("B", (k, n))
    A_t, B_t = matrix("At", (k, m)), matrix("Bt", (n, k))
    alpha = ik.scalar("alpha", dtype=dtype)
    f = ik.function([C, A, B, alpha], ik.gemm(C, A, B, alpha, 0.5))
    f_t = ik.function([C, A_t, B_t], ik.gemm(C, A_t.T, B_t.T, -1.0, 2.0))  # A, B given transposed
    f_a = ik.function([C, A_t, B], ik.gemm(C, A_t.T, B, 1.5, -1.0))
    f_b = ik.function([C, A, B_t], ik.gemm(C, A, B_t.T, 1.0, 1.0))
    c = rng.standard_normal((m, n)).astype(dtype)
    a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    tol = 1e-4 if dtype == "float32" else 1e-12
    got = f(c, a, b, np.asarray(3.0, dtype))
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got, 0.5 * c + 3.0 * (a @ b), rtol=tol, atol=tol * max(k, 1))
    got_t = f_t(c, np.ascontiguousarray(a.T), np.ascontiguousarray(b.T))
    np.testing.assert_allclose(got_t, 2.0 * c - a @ b, rtol=tol, atol=tol * max(k, 1))
    np.testing.assert_allclose(f_a(c, np.ascontiguousarray(a.T), b), 1.5 * (a @ b) - c, rtol=tol, atol=tol * max(k, 1))
    np.testing.assert_allclose(f_b(c, a, np.ascontiguousarray(b.T)), a @ b + c, rtol=tol, atol=tol * max(k, 1))


@pytest.mark.parametrize("m,n,k", [(4, 5, 3), (200, 300, 100), (1, 40, 30)])
def test_gemm_with_beta_zero_does_not_read_c(rng, m, n, k):
    """As in BLAS: beta = 0 ignores c, NaNs included."""
    C, A, B = ik.matrix("C"), ik.matrix("A"), ik.matrix("B")
    f = ik.function([C, A, B], ik.gemm(C, A, B, 2.0, 0.0))
    c = np.full((m, n), np.nan)
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    np.testing.assert_allclose(f(c, a, b), 2.0 * (a @ b), rtol=1e-12, atol=1e-12)


def test_gemm_errors_name_the_operands():
    C, A, B = ik.matrix("C"), ik.matrix("A"), ik.matrix("B")
    f = ik.function([C, A, B], ik.gemm(C, A, B))
    with pytest.raises(ik.ShapeError, match="C .* does not have the product's number of rows"):
        f(np.zeros((3, 4)), np.zeros((2, 5)), np.zeros((5, 4)))
    with pytest.raises(ik.ShapeError, match="cannot contract A .* with B"):
        f(np.zeros((2, 4)), np.zeros((2, 5)), np.zeros((3, 4)))
    with pytest.raises(ik.DTypeError, match="ik.gemm takes operands of one dtype, float32 or float64"):
        ik.gemm(ik.matrix("c", dtype="int64"), ik.matrix("a", dtype="int64"), ik.matrix("b", dtype="int64"))
    with pytest.raises(ik.ShapeError, match="operand 0 of ik.gemm must have rank 2"):
        ik.gemm(ik.vector("v"), A, B)


def test_gemm_gradients(rng):
    """vjp for all five operands against central differences (float64), and the jvp (Rop)."""
    c, a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 2)), rng.standard_normal((2, 4))
    ik.verify_grad(lambda C, A, B, al, be: ik.gemm(C, A, B, al, be), [c, a, b, np.array(0.7), np.array(-1.3)],
                   rng=rng)
    C, A, B = ik.matrix("C"), ik.matrix("A"), ik.matrix("B")
    al, be = ik.scalar("al"), ik.scalar("be")
    out = ik.gemm(C, A, B, al, be)
    tc, ta, tb = ik.matrix("tc"), ik.matrix("ta"), ik.matrix("tb")
    tal, tbe = ik.scalar("tal"), ik.scalar("tbe")
    rop = ik.Rop(out, [C, A, B, al, be], [tc, ta, tb, tal, tbe])
    f = ik.function([C, A, B, al, be, tc, ta, tb, tal, tbe], rop)
    vals = [c, a, b, 0.7, -1.3]
    tangents = [rng.standard_normal(np.shape(v)) for v in vals]
    want = (-1.3 * tangents[0] + 0.7 * (tangents[1] @ b + a @ tangents[2]) + tangents[3] * (a @ b)
            + tangents[4] * c)
    np.testing.assert_allclose(f(*vals, *tangents), want, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# the gemm-epilogue rewrite, in ik.function
# ---------------------------------------------------------------------------

def test_sgd_update_is_one_gemm(rng):
    """W - lr * (x.T @ d) compiles to one gemm and no separate product or subtraction."""
    W = ik.shared(rng.standard_normal((6, 4)), name="W")
    x, d = ik.matrix("x"), ik.matrix("d")
    f = ik.function([x, d], [], updates=[(W, W - 0.1 * ik.dot(x.T, d))])
    fused = f.ir("fused")
    assert fused.count("ik.gemm") == 1 and "ik.matmul" not in fused
    assert "ik.transpose %x " in fused  # x.T stays a view that BLAS reads, not a kernel's copy
    assert "memref.copy" not in f.ir("loops")
    w0 = W.get_value()
    xv, dv = rng.standard_normal((5, 6)), rng.standard_normal((5, 4))
    f(xv, dv)
    np.testing.assert_allclose(W.get_value(), w0 - 0.1 * xv.T @ dv, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("form,a_shape,b_shape", [
    ("c + a @ b", (7, 5), (5, 3)), ("a @ b + c", (7, 5), (5, 3)), ("c - a @ b", (7, 5), (5, 3)),
    ("c - s * (a @ b)", (7, 5), (5, 3)), ("c + (a @ b) * s", (7, 5), (5, 3)),
    ("c + a @ b.T", (7, 5), (3, 5)), ("c - s * (a.T @ b)", (5, 7), (5, 3))])
def test_rewritten_forms_match_numpy(rng, form, a_shape, b_shape):
    c_, a_, b_ = ik.matrix("c"), ik.matrix("a"), ik.matrix("b")
    s_ = ik.scalar("s")
    f = ik.function([c_, a_, b_, s_], eval(form, {"c": c_, "a": a_, "b": b_, "s": s_}))
    assert "ik.gemm" in f.ir("fused") and "ik.matmul" not in f.ir("fused")
    a, b, c = rng.standard_normal(a_shape), rng.standard_normal(b_shape), rng.standard_normal((7, 3))
    want = eval(form, {"c": c, "a": a, "b": b, "s": 0.3})
    np.testing.assert_allclose(f(c, a, b, 0.3), want, rtol=1e-12, atol=1e-12)


def test_a_product_used_twice_is_not_rewritten(rng):
    c_, a_, b_ = ik.matrix("c"), ik.matrix("a"), ik.matrix("b")
    p = ik.dot(a_, b_)
    f = ik.function([c_, a_, b_], [c_ + p, p])
    assert "ik.gemm" not in f.ir("fused")
    c, a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 2)), rng.standard_normal((2, 4))
    got = f(c, a, b)
    np.testing.assert_allclose(got[0], c + a @ b, rtol=1e-12)


# ---------------------------------------------------------------------------
# shared variables updated in place
# ---------------------------------------------------------------------------

def _sgd(rng, shape=(6, 4)):
    W = ik.shared(rng.standard_normal(shape), name="W")
    x, d = ik.matrix("x"), ik.matrix("d")
    f = ik.function([x, d], ik.sum(W), updates=[(W, W - 0.1 * ik.dot(x.T, d))])
    return W, f


def test_update_writes_into_the_shared_array(rng):
    """The new value is written over the old array (Theano's in-place update): the array
    get_value(borrow=True) gave stays the variable's value and holds each new value."""
    W, f = _sgd(rng)
    returns = [line for line in f.ir("loops").splitlines() if line.strip().startswith("func.return")]
    assert "%W" in returns[-1]  # W's own buffer is the new value
    held = W.get_value(borrow=True)
    want = held.copy()
    for _ in range(3):
        xv, dv = rng.standard_normal((5, 6)), rng.standard_normal((5, 4))
        loss = f(xv, dv)
        np.testing.assert_allclose(loss, want.sum(), rtol=1e-12)  # the old value is read first
        want = want - 0.1 * xv.T @ dv
        assert W.get_value(borrow=True) is held
        np.testing.assert_allclose(held, want, rtol=1e-12, atol=1e-12)


def test_an_input_that_aliases_the_shared_array_is_not_overwritten(rng):
    """The update reads an input that is the shared variable's own array (shared with
    borrow=True): the call must not write over what the product still reads."""
    a = rng.standard_normal((4, 4))
    keep = a.copy()
    W = ik.shared(a, name="W", borrow=True)
    x = ik.matrix("x")
    f = ik.function([x], [], updates=[(W, W - ik.dot(x.T, x))])
    f(a)
    np.testing.assert_allclose(W.get_value(), keep - keep.T @ keep, rtol=1e-12, atol=1e-12)
    # and a view of it (one row) as the input
    W.set_value(keep.copy())
    w = W.get_value(borrow=True)
    f(w[1:3])
    np.testing.assert_allclose(W.get_value(), keep - keep[1:3].T @ keep[1:3], rtol=1e-12, atol=1e-12)


def test_two_shared_variables_on_one_array_stay_right(rng):
    a = rng.standard_normal((3, 3))
    keep = a.copy()
    U, V = ik.shared(a, name="U", borrow=True), ik.shared(a, name="V", borrow=True)
    x = ik.matrix("x")
    f = ik.function([x], [], updates=[(U, U + ik.dot(x, x)), (V, V - ik.dot(x, x))])
    xv = rng.standard_normal((3, 3))
    f(xv)
    np.testing.assert_allclose(U.get_value(), keep + xv @ xv, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(V.get_value(), keep - xv @ xv, rtol=1e-12, atol=1e-12)


def test_a_read_only_value_is_not_written(rng):
    a = rng.standard_normal((4, 3))
    a.setflags(write=False)
    W, f = _sgd(rng, (4, 3))
    W.set_value(a, borrow=True)
    xv, dv = rng.standard_normal((2, 4)), rng.standard_normal((2, 3))
    f(xv, dv)
    np.testing.assert_allclose(W.get_value(), a - 0.1 * xv.T @ dv, rtol=1e-12, atol=1e-12)
    assert W.get_value(borrow=True) is not a


def test_a_failing_call_leaves_updated_variables_unchanged(rng):
    """An update whose write would come before a check that fails: the call raises and the
    shared variable keeps its value (it is not written in place there)."""
    v = ik.shared(np.arange(4.0), name="v")
    x, y = ik.vector("x"), ik.vector("y")
    f = ik.function([x, y], x + y, updates=[(v, ik.exp(v))])
    before = v.get_value()
    with pytest.raises(ik.ShapeError):
        f(np.zeros(3), np.zeros(2))
    np.testing.assert_array_equal(v.get_value(), before)
    f(np.zeros(2), np.zeros(2))
    np.testing.assert_allclose(v.get_value(), np.exp(before))


def _returns(f) -> str:
    return [line for line in f.ir("loops").splitlines() if line.strip().startswith("func.return")][-1]


def test_elementwise_update_of_unknown_size_is_in_place(rng):
    """w + x where w's size is only checked equal to x's at run time: the check makes the
    sizes one, so the sum is written over w (no new array each step)."""
    w = ik.shared(np.zeros(7), name="w")
    held = w.get_value(borrow=True)
    x = ik.vector("x")
    f = ik.function([x], [], updates=[(w, w * 0.5 + x)])
    assert "%w" in _returns(f) and "memref.copy" not in f.ir("loops")
    want = np.zeros(7)
    for _ in range(3):
        xv = rng.standard_normal(7)
        f(xv)
        want = want * 0.5 + xv
        assert w.get_value(borrow=True) is held
        np.testing.assert_allclose(held, want, rtol=1e-12)
    with pytest.raises(ik.ShapeError):
        f(np.zeros(6))
    np.testing.assert_allclose(held, want, rtol=1e-12)


def test_donated_buffer_is_not_taken_by_another_result(rng):
    """An output computed from the shared variable after its update: the variable's buffer
    is not written with that output (which would then be copied out to be returned); both
    results are fresh arrays, nothing copied, the values numpy's."""
    w = ik.shared(rng.standard_normal(50), name="w")
    w0 = w.get_value()
    x = ik.vector("x")
    f = ik.function([x], ik.tanh(w) * x + w, updates=[(w, w + x)])
    assert "memref.copy" not in f.ir("loops")
    xv = rng.standard_normal(50)
    np.testing.assert_allclose(f(xv), np.tanh(w0) * xv + w0, rtol=1e-12)
    np.testing.assert_allclose(w.get_value(), w0 + xv, rtol=1e-12)


def test_a_counter_and_repeated_calls(rng):
    step = ik.shared(np.float64(0.0), name="step")
    f = ik.function([], step, updates=[(step, step + 1)])
    assert [float(f()) for _ in range(4)] == [0.0, 1.0, 2.0, 3.0]
    assert float(step.get_value()) == 4.0


def test_pickled_training_step_still_updates(rng, tmp_path):
    W, f = _sgd(rng)
    g = pickle.loads(pickle.dumps(f))
    W2 = [s for s, _ in g.updates][0]
    w0 = W2.get_value()
    xv, dv = rng.standard_normal((5, 6)), rng.standard_normal((5, 4))
    g(xv, dv)
    np.testing.assert_allclose(W2.get_value(), w0 - 0.1 * xv.T @ dv, rtol=1e-12, atol=1e-12)


def test_equal_sizes_are_checked_once(rng):
    """A size equality a check already required is not checked again: x @ W checked that W's
    rows are x's columns, so the update's gemm does not check its rows again (its columns,
    d's, are new and checked)."""
    W = ik.shared(rng.standard_normal((6, 4)), name="W")
    x, d = ik.matrix("x"), ik.matrix("d")
    f = ik.function([x, d], ik.sum(ik.dot(x, W)), updates=[(W, W - 0.1 * ik.dot(x.T, d))])
    loops = f.ir("loops")
    assert "cannot contract x" in loops
    assert "does not have the product's number of rows" not in loops
    assert "does not have the product's number of columns" in loops
    with pytest.raises(ik.ShapeError, match="number of columns"):
        f(np.zeros((5, 6)), np.zeros((5, 3)))


def test_the_bufferizers_index_of_views_follows_reassignment():
    """Whether an allocation is read later is asked of the values whose buffer it is
    (passes/bufferize.py _Buffers): a value given another buffer leaves the old one's set,
    values from a nested bufferizer's update join theirs."""
    from xdsl.dialects.builtin import IndexType
    from xdsl.ir import Block
    from irkit.passes.bufferize import Alloc, Buf, _Buffers
    v, w = Block(arg_types=[IndexType(), IndexType()]).args
    first, second = Alloc("alloc"), Alloc("alloc")
    bufs = _Buffers()
    bufs[v] = Buf(None, [], first)
    bufs.update({w: Buf(None, [], first)})
    assert bufs.values_of(first) == {v, w} and bufs.values_of(second) == set()
    bufs[v] = Buf(None, [], second)
    assert bufs.values_of(first) == {w} and bufs.values_of(second) == {v}
    assert bufs[v].root is second and len(bufs) == 2
