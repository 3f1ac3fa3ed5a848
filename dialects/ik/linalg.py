"""Contractions of `ik`: matmul with numpy's semantics for operands of rank >= 2
(batch dims broadcast). `ik.dot`, `ik.outer` and 1-D operands are built from
it (and from expand_dims/squeeze) by the Python API. `ik.gemm` is BLAS's
C <- beta C + alpha A B on matrices, which the `gemm-epilogue` pass makes of a
product added to (or subtracted from) a matrix: the sum is the product's own
epilogue, written over C's buffer when C dies there.

On the CPU, a float32 or float64 product is one call per batch element of the runtime's
`irkit_gemm_f32/f64` (`gemm_runtime` below, compiled once per machine): loops for small
products, BLAS sgemm/dgemm (gemv for a single row) for the others; one of static shape and
few multiply-adds is inlined as loops instead, a static single row or column calls gemv.
Other dtypes run as loops.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from xdsl.dialects import arith, func, memref
from xdsl.dialects.builtin import DYNAMIC_INDEX, MemRefType, ModuleOp, TensorType, i1
from xdsl.irdl import irdl_op_definition, operand_def, result_def
from xdsl.rewriter import InsertPoint

from irkit import ops as K
from irkit.dialects.ik import scalar as S
from irkit.dialects.ik.calculus import as_dtype_of, batch_dims, float_dtype, unbroadcast
from irkit.dialects.ik.base import IkOp
from irkit.dtypes import ufunc_result
from irkit.errors import DTypeError, ShapeError
from irkit.loops import INDEX, Cursor, broadcast_index
from irkit.types import dtype_of, format_shape, static_shape


def operand_name(v, fallback: str) -> str:
    hint = getattr(v, "name_hint", None)
    return hint if hint else fallback


@irdl_op_definition
class MatmulOp(IkOp):
    """a @ b over the last two axes; leading (batch) axes broadcast."""

    name = "ik.matmul"
    a = operand_def(TensorType)
    b = operand_def(TensorType)
    result = result_def(TensorType)

    @classmethod
    def check_operands(cls, operands, p):
        for k, v in enumerate(operands):
            if len(v.type.get_shape()) < 2:
                raise ShapeError(f"operand {k} of ik.matmul must have rank >= 2 "
                                 "(the Python API handles 1-D operands)")

    @classmethod
    def shape_rule(cls, d, operands, p):
        a, b = operands
        sa, sb = d.shape_of(a), d.shape_of(b)
        na, nb = operand_name(a, "a"), operand_name(b, "b")
        d.check_eq(sa[-1], sb[-2],
                   f"cannot contract {na} (shape {format_shape(static_shape(a.type))}) with "
                   f"{nb} (shape {format_shape(static_shape(b.type))}): inner dimensions differ")
        ba, bb = sa[:-2], sb[:-2]
        rank = max(len(ba), len(bb))
        batch = []
        for i in range(rank):
            ja, jb = i - (rank - len(ba)), i - (rank - len(bb))
            if ja < 0:
                batch.append(bb[jb])
            elif jb < 0:
                batch.append(ba[ja])
            else:
                batch.append(d.broadcast(ba[ja], bb[jb], f"batch dim {i} of {na} and {nb} differ"))
        return [batch + [sa[-2], sb[-1]]]

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        return [ufunc_result(np.matmul, tuple(dtypes))]

    def evaluate(self, p, a, b):
        return [np.asarray(np.matmul(a, b)).astype(dtype_of(self.result.type), copy=False)]

    def vjp(self, g, ins, out):
        """g @ b^T and a^T @ g, summed over the batch dims each operand was broadcast along."""
        a, b = ins
        nb = batch_dims(g, out)
        ga = unbroadcast(K.matmul(g, _swap_last(b)), a, nb) if float_dtype(a) else None
        gb = unbroadcast(K.matmul(_swap_last(a), g), b, nb) if float_dtype(b) else None
        return [ga, gb]

    def jvp(self, ts, ins, out):
        a, b = ins
        terms = []
        if ts[0] is not None:
            terms.append(K.matmul(ts[0], b))
        if ts[1] is not None:
            terms.append(K.matmul(a, ts[1]))
        if not terms:
            return None
        total = terms[0] if len(terms) == 1 else terms[0] + terms[1]
        return as_dtype_of(K.broadcast_to(total, out.shape) if total.static_shape != out.static_shape
                           else total, out)

    def lower(self, bz):
        """float32/float64: one BLAS gemm per (broadcast) batch element, reading an operand
        that is a transpose of the last two axes without copying it; other dtypes: loops."""
        dims = bz.result_dims(self)[0]
        out = bz.alloc(self.result.type, dims)
        dt = dtype_of(self.result.type)
        if dt.kind == "f" and dtype_of(self.a.type) == dt and dtype_of(self.b.type) == dt:
            _gemm(bz, bz.buf.get(self.a) or bz.buffer_of(self.a), bz.buf.get(self.b) or bz.buffer_of(self.b),
                  out, dims, dt)
        else:
            _matmul_loops(bz, bz.buffer_of(self.a), bz.buffer_of(self.b), out, dims,
                          dtype_of(self.a.type), dtype_of(self.b.type), dt)
        bz.set_result(self.result, out)


@irdl_op_definition
class GemmOp(IkOp):
    """beta * c + alpha * (a @ b): a, b, c matrices of one float dtype, c of the product's
    shape, alpha and beta 0-d. As in BLAS, beta = 0 means c is not read (NaNs in it stay out)."""

    name = "ik.gemm"
    c = operand_def(TensorType)
    a = operand_def(TensorType)
    b = operand_def(TensorType)
    alpha = operand_def(TensorType)
    beta = operand_def(TensorType)
    result = result_def(TensorType)

    @classmethod
    def check_operands(cls, operands, p):
        for k, (v, rank) in enumerate(zip(operands, (2, 2, 2, 0, 0))):
            if len(v.type.get_shape()) != rank:
                raise ShapeError(f"operand {k} of ik.gemm must have rank {rank}, not {len(v.type.get_shape())}")

    @classmethod
    def shape_rule(cls, d, operands, p):
        c, a, b = operands[:3]
        sa, sb, sc = d.shape_of(a), d.shape_of(b), d.shape_of(c)
        na, nb, nc = operand_name(a, "a"), operand_name(b, "b"), operand_name(c, "c")
        d.check_eq(sa[1], sb[0], f"cannot contract {na} (shape {format_shape(static_shape(a.type))}) with "
                                 f"{nb} (shape {format_shape(static_shape(b.type))}): inner dimensions differ")
        m = d.check_eq(sc[0], sa[0], f"{nc} (shape {format_shape(static_shape(c.type))}) does not have the "
                                     f"product's number of rows")
        n = d.check_eq(sc[1], sb[1], f"{nc} (shape {format_shape(static_shape(c.type))}) does not have the "
                                     f"product's number of columns")
        return [[m, n]]

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        if len(set(dtypes)) != 1 or dtypes[0] not in (np.float32, np.float64):
            raise DTypeError(f"ik.gemm takes operands of one dtype, float32 or float64, not "
                             f"{', '.join(d.name for d in dtypes)}")
        return [dtypes[0]]

    def evaluate(self, p, c, a, b, alpha, beta):
        ab = np.matmul(a, b)
        out = alpha * ab if beta == 0 else beta * c + alpha * ab
        return [np.asarray(out, dtype=dtype_of(self.result.type))]

    def vjp(self, g, ins, out):
        """g may carry leading batch axes (a batch of cotangents): the scalars' gradients keep them."""
        c, a, b, alpha, beta = ins
        return [beta * g, alpha * K.matmul(g, _swap_last(b)), alpha * K.matmul(_swap_last(a), g),
                K.sum(g * K.matmul(a, b), axis=(-2, -1)), K.sum(g * c, axis=(-2, -1))]

    def jvp(self, ts, ins, out):
        c, a, b, alpha, beta = ins
        tc, ta, tb, talpha, tbeta = ts
        terms = []
        if ta is not None:
            terms.append(alpha * K.matmul(ta, b))
        if tb is not None:
            terms.append(alpha * K.matmul(a, tb))
        if talpha is not None:
            terms.append(talpha * K.matmul(a, b))
        if tc is not None:
            terms.append(beta * tc)
        if tbeta is not None:
            terms.append(tbeta * c)
        if not terms:
            return None
        total = terms[0]
        for t in terms[1:]:
            total = total + t
        return as_dtype_of(K.broadcast_to(total, out.shape) if total.static_shape != out.static_shape
                           else total, out)

    def lower(self, bz):
        """One BLAS gemm (or gemv) over a buffer holding c: c's own when c dies here and
        the product does not read it (a shared variable's, when the function may update it
        in place), else a copy."""
        dims = bz.result_dims(self)[0]
        dt = dtype_of(self.result.type)
        a = bz.buf.get(self.a) or bz.buffer_of(self.a)
        b = bz.buf.get(self.b) or bz.buffer_of(self.b)
        read = {id(x.root) for x in (a, b)} | {id(x.transposed_from.root) for x in (a, b) if x.transposed_from}
        c = bz.buffer_of(self.c)
        out = bz.copy(c, self.c.type) if id(c.root) in read else bz.writable_copy_of(self.c)
        alpha, beta = bz.scalar(self.alpha), bz.scalar(self.beta)
        _gemm(bz, a, b, out, dims, dt, alpha, beta)
        bz.set_result(self.result, out)


def _beta_times(c, beta, x, dt):
    """beta * x, and 0 where beta is 0 (BLAS's beta: x, a NaN included, is then not read)."""
    zero = S.constant(c, 0.0, dt)
    keep = c.emit(arith.CmpfOp(beta, zero, "one"))
    return c.emit(arith.SelectOp(keep, S.mul(c, beta, x, dt, _FAST), zero))


def _scale(c, out, dims, beta, dt) -> None:
    """out <- beta * out, element by element."""
    def body(ci, ivs, _):
        x = ci.emit(memref.LoadOp.get(out.memref, ivs))
        ci.emit(memref.StoreOp.get(_beta_times(ci, beta, x, dt), out.memref, ivs))
        return []
    c.loop_nest(dims, [], body)


def reads_as_factor(use) -> bool:
    """A use of a value as a factor of a product, which BLAS reads transposed in place (so a
    transpose used only this way is never copied: fuse leaves it alone, bufferize views it)."""
    op = use.operation
    return isinstance(op, MatmulOp) or (isinstance(op, GemmOp) and use.index in (1, 2))


def _swap_last(v):
    r = v.ndim
    return K.transpose(v, list(range(r - 2)) + [r - 1, r - 2])


def _batch_offset(c, ivs, bdims, mat):
    """Element offset of one matrix in a (broadcast) batch of matrices of `mat` elements."""
    off = c.index(0)
    for iv, dim in zip(broadcast_index(c, ivs, bdims) if bdims else [], bdims):
        off = c.emit(arith.AddiOp(c.emit(arith.MuliOp(off, c.as_index(dim))), iv))
    return c.emit(arith.MuliOp(off, c.as_index(mat)))


def gemm_symbol(dt: np.dtype) -> str:
    return f"irkit_gemm_{'f32' if dt == np.float32 else 'f64'}"


def gemm_signature(dt: np.dtype) -> list:
    """(transA, transB, M, N, K, alpha, A, offA, ldA, B, offB, ldB, beta, C, offC, ldC)"""
    ft = S.scalar_type(dt)
    flat_t = MemRefType(ft, [DYNAMIC_INDEX])
    return [i1, i1, INDEX, INDEX, INDEX, ft, flat_t, INDEX, INDEX, flat_t, INDEX, INDEX, ft, flat_t, INDEX, INDEX]


def _gemm(bz, a, b, out, dims, dt: np.dtype, alpha=None, beta=None, cursor=None) -> None:
    """`func.call @irkit_gemm_f32/f64(transA, transB, M, N, K, alpha, A, offA, ldA, B, offB, ldB,
    beta, C, offC, ldC)`: row-major C = alpha op(A) op(B) + beta C (on the CPU the runtime's
    function of that name, `gemm_runtime`; on a GPU cuBLAS). A product of static shape and
    at most `bz.small_gemm` multiply-adds is inlined as loops instead (LLVM unrolls them for
    the known sizes). alpha and beta are scalar values (None: 1 and 0, C is only written)."""
    name = gemm_symbol(dt)
    bz.declare(name, gemm_signature(dt))
    sa, sb = a.transposed_from or a, b.transposed_from or b
    m, n, k = dims[-2], dims[-1], a.dims[-1]
    batch = dims[:-2]
    c = cursor or bz.cur
    fa, fb, fc = bz.flat(sa, c), bz.flat(sb, c), bz.flat(out, c)
    one = S.constant(c, 1.0, dt) if alpha is None else alpha
    zero = S.constant(c, 0.0, dt) if beta is None else beta
    t_a = S.constant(c, a.transposed_from is not None, np.dtype(bool))
    t_b = S.constant(c, b.transposed_from is not None, np.dtype(bool))
    mats = [_product(c, sa.dims[-2:]), _product(c, sb.dims[-2:]), _product(c, [m, n])]
    static = all(isinstance(x, int) for x in (m, n, k))
    inline = static and 0 < bz.small_gemm and int(np.prod([m, n, k])) <= bz.small_gemm
    trans = (a.transposed_from is not None, b.transposed_from is not None)
    # a row times a matrix (or a matrix times a column) is BLAS's gemv: gemm would pack the matrix
    vector = "row" if m == 1 else "column" if n == 1 else None

    def body(cc, ivs, _):
        offs = [_batch_offset(cc, ivs, buf.dims[:-2], mat) for buf, mat in zip((sa, sb, out), mats)]
        lda, ldb = cc.as_index(sa.dims[-1]), cc.as_index(sb.dims[-1])
        if inline:
            a_steps = (1, lda) if trans[0] else (lda, 1)
            _small_gemm(cc, (fa, offs[0], a_steps), (fb, offs[1], ldb), (fc, offs[2], n), m, n, k, trans[1],
                        dt, alpha, beta)
        elif vector is not None:
            _gemv(bz.declare, cc, vector, trans, (fa, offs[0], lda), (fb, offs[1], ldb), (fc, offs[2]), m, n, k, dt,
                  one, zero)
        else:
            cc.emit(func.CallOp(name, [t_a, t_b, cc.as_index(m), cc.as_index(n), cc.as_index(k), one,
                                       fa, offs[0], lda, fb, offs[1], ldb, zero, fc, offs[2], cc.as_index(n)], []))
        return []
    if beta is None or (isinstance(k, int) and k > 0) or (bz.small_gemm and vector is None and not inline):
        c.loop_nest(batch, [], body)  # (the CPU runtime's irkit_gemm scales C by beta itself when k = 0)
        return

    def empty(ce):  # no terms to sum: C <- beta C (BLAS's gemv would not scale y)
        _scale(ce, out, dims, beta, dt)
    c.if_else(c.emit(arith.CmpiOp(c.as_index(k), c.index(0), "eq")), empty,
              lambda cp: cp.loop_nest(batch, [], body))


def gemm_runtime(dtypes: Sequence[np.dtype] = (np.dtype(np.float32), np.dtype(np.float64))) -> ModuleOp:
    """`@irkit_gemm_f32/f64` (those of `dtypes`) as the CPU runs them, compiled once into the
    runtime (backends/runtime.py), so a compiled function holds one call per product whatever
    its sizes turn out to be: k = 0 scales C by beta (as BLAS's gemm); a product of at most
    SMALL_GEMM multiply-adds runs as the loops of `_small_gemm` (a BLAS call costs more than
    the work); a larger one calls BLAS (`@irkit_blas_gemm_*`, gemv for a single row)."""
    functions = []
    for dt in map(np.dtype, dtypes):
        types = gemm_signature(dt)
        blas = gemm_symbol(dt).replace("irkit_", "irkit_blas_")
        f = func.FuncOp(gemm_symbol(dt), (types, []))
        block = f.body.block
        c = Cursor(InsertPoint.at_end(block))
        ta, tb, m, n, k, alpha, fa, oa, lda, fb, ob, ldb, beta, fc, oc, ldc = block.args

        def empty(ce):
            def row(ci, i, _):
                def col(cj, j, _):
                    idx = cj.emit(arith.AddiOp(oc, cj.emit(arith.AddiOp(cj.emit(arith.MuliOp(i, ldc)), j))))
                    x = cj.emit(memref.LoadOp.get(fc, [idx]))
                    cj.emit(memref.StoreOp.get(_beta_times(cj, beta, x, dt), fc, [idx]))
                    return []
                ci.for_loop(0, n, 1, [], col)
                return []
            ce.for_loop(0, m, 1, [], row)

        def small(cs):
            # op(A)'s steps as values (LLVM versions the loops for a unit step): one loop
            # nest per form, not per transposition of A
            one = cs.index(1)
            steps = (cs.emit(arith.SelectOp(ta, one, lda)), cs.emit(arith.SelectOp(ta, lda, one)))

            def variant(cv, b_transposed):
                _small_gemm(cv, (fa, oa, steps), (fb, ob, ldb), (fc, oc, ldc), m, n, k, b_transposed, dt,
                            alpha, beta)
            cs.if_else(tb, lambda cv: variant(cv, True), lambda cv: variant(cv, False))

        def large(cl):
            cl.emit(func.CallOp(blas, list(block.args), []))

        def nonempty(cn):
            work = cn.emit(arith.MuliOp(cn.emit(arith.MuliOp(m, n)), k))
            cn.if_else(cn.emit(arith.CmpiOp(work, cn.index(SMALL_GEMM), "sle")), small, large)
        c.if_else(c.emit(arith.CmpiOp(k, c.index(0), "eq")), empty, nonempty)
        c.emit(func.ReturnOp())
        functions += [func.FuncOp.external(blas, types, []), f]
    return ModuleOp(functions)


def _product(c, dims) -> object:
    """The product of dims as an int or an index value built at cursor c."""
    known = int(np.prod([x for x in dims if isinstance(x, int)]))
    out = known
    for x in dims:
        if not isinstance(x, int):
            out = x if out == 1 and isinstance(out, int) else c.emit(arith.MuliOp(c.as_index(out), x))
    return out


def _gemv(declare, c, vector: str, trans, a, b, out, m, n, k, dt, alpha, beta) -> None:
    """C (1 x n) = a B or C (m x 1) = A b as `func.call @irkit_gemv_*`: BLAS's column-major
    y = op(M) x, where a row-major matrix is its column-major transpose."""
    name = f"irkit_gemv_{'f32' if dt == np.float32 else 'f64'}"
    ft = S.scalar_type(dt)
    flat_t = MemRefType(ft, [DYNAMIC_INDEX])
    declare(name, [i1, INDEX, INDEX, ft, flat_t, INDEX, INDEX, flat_t, INDEX, ft, flat_t, INDEX])
    (fa, oa, lda), (fb, ob, ldb), (fc, oc) = a, b, out
    if vector == "row":   # y (n) = B^T a: B row-major (k x n) is column-major (n x k)
        mat, off, ld, x, xoff = fb, ob, ldb, fa, oa
        t = trans[1]
        rows, cols = (k, n) if t else (n, k)
    else:                  # y (m) = A b: A row-major (m x k) is column-major (k x m), transposed
        mat, off, ld, x, xoff = fa, oa, lda, fb, ob
        t = not trans[0]
        rows, cols = (k, m) if t else (m, k)
    c.emit(func.CallOp(name, [S.constant(c, t, np.dtype(bool)), c.as_index(rows), c.as_index(cols),
                              alpha, mat, off, ld, x, xoff, beta, fc, oc], []))


# Below this many multiply-adds a product runs as vectorised loops (inlined when its shape
# is static, else the runtime's): a BLAS call costs more than the work (the matrix-vector
# products of an RNN step, measured in benchmarks/rnn.py).
SMALL_GEMM = 1 << 16
_FAST = arith.FastMathFlagsAttr(["reassoc", "contract"])


def _small_gemm(c, a, b, out, m, n, k, b_transposed: bool, dt, alpha=None, beta=None) -> None:
    """Row-major C = alpha op(A) op(B) + beta C on flat buffers: `a` is (data, offset,
    (row step, column step)) of op(A) (ints or index values: a transposed A's steps are
    swapped), `b` and `out` are (data, offset, row length). Rows of C accumulated from rows
    of B (i-k-j) when B is not transposed, else dot products (i-j-k). alpha None is 1; beta
    None is 0 (C only written)."""
    (fa, oa, (a_row, a_col)), (fb, ob, ldb), (fc, oc, ldc) = a, b, out

    def epilogue_c(ci, idx):
        return _beta_times(ci, beta, ci.emit(memref.LoadOp.get(fc, [idx])), dt)

    def epilogue(ci, total, idx):
        """alpha total + beta C[idx]; beta 0 reads no C (as BLAS)."""
        if alpha is not None:
            total = S.mul(ci, alpha, total, dt, _FAST)
        return total if beta is None else S.add(ci, total, epilogue_c(ci, idx), dt, _FAST)

    def at(ci, buf, off, row, row_step, col, col_step=1):
        i = ci.emit(arith.MuliOp(row, ci.as_index(row_step)))
        i = ci.emit(arith.AddiOp(i, col if col_step == 1 else ci.emit(arith.MuliOp(col, ci.as_index(col_step)))))
        return ci.emit(memref.LoadOp.get(buf, [ci.emit(arith.AddiOp(off, i))]))

    def a_at(ci, i, kk):
        return at(ci, fa, oa, i, a_row, kk, a_col)

    def c_index(ci, i, j):
        return ci.emit(arith.AddiOp(oc, ci.emit(arith.AddiOp(ci.emit(arith.MuliOp(i, ci.as_index(ldc))), j))))

    def row(ci, i, _):
        if b_transposed:
            def col(cj, j, _):
                def acc(ck, kk, s):
                    x = S.mul(ck, a_at(ck, i, kk), at(ck, fb, ob, j, ldb, kk), dt, _FAST)
                    return [S.add(ck, s[0], x, dt, _FAST)]
                total = cj.for_loop(0, k, 1, [S.constant(cj, 0.0, dt)], acc)[0]
                idx = c_index(cj, i, j)
                cj.emit(memref.StoreOp.get(epilogue(cj, total, idx), fc, [idx]))
                return []
            ci.for_loop(0, n, 1, [], col)
            return []
        zero = S.constant(ci, 0.0, dt)

        def clear(cj, j, _):  # the row of C: 0, or beta C
            idx = c_index(cj, i, j)
            cj.emit(memref.StoreOp.get(zero if beta is None else epilogue_c(cj, idx), fc, [idx]))
            return []
        ci.for_loop(0, n, 1, [], clear)

        def axpy(ck, kk, _):
            x = a_at(ck, i, kk)
            if alpha is not None:
                x = S.mul(ck, alpha, x, dt, _FAST)

            def update(cj, j, _):
                idx = c_index(cj, i, j)
                y = S.mul(cj, x, at(cj, fb, ob, kk, ldb, j), dt, _FAST)
                cj.emit(memref.StoreOp.get(S.add(cj, cj.emit(memref.LoadOp.get(fc, [idx])), y, dt, _FAST),
                                           fc, [idx]))
                return []
            ck.for_loop(0, n, 1, [], update)
            return []
        ci.for_loop(0, k, 1, [], axpy)
        return []
    c.for_loop(0, m, 1, [], row)


def _matmul_loops(bz, a, b, out, dims, adt, bdt, dt) -> None:
    """The triple loop, accumulating in the result dtype (integers, bool, mixed dtypes)."""

    def body(c, ivs, _):
        bi, (i, j) = ivs[:-2], ivs[-2:]
        ab = broadcast_index(c, bi, a.dims[:-2]) if a.dims[:-2] else []
        bb = broadcast_index(c, bi, b.dims[:-2]) if b.dims[:-2] else []

        def inner(cc, kv, accs):
            x = S.convert(cc, cc.emit(memref.LoadOp.get(a.memref, ab + [i, kv[0]])), adt, dt)
            y = S.convert(cc, cc.emit(memref.LoadOp.get(b.memref, bb + [kv[0], j])), bdt, dt)
            return [S.add(cc, accs[0], S.mul(cc, x, y, dt), dt)]
        total = c.loop_nest([a.dims[-1]], [S.constant(c, 0, dt)], inner)[0]
        c.emit(memref.StoreOp.get(total, out.memref, ivs))
        return []
    bz.cur.loop_nest(dims, [], body)


OPS = [MatmulOp, GemmOp]
