"""Contractions of `ik`: matmul with numpy's semantics for operands of rank >= 2
(batch dims broadcast). `ik.dot`, `ik.outer` and 1-D operands are built from
it (and from expand_dims/squeeze) by the Python API.

On the CPU, float32 and float64 matmuls call scipy's BLAS (sgemm/dgemm), one
call per batch element; other dtypes run as loops.
"""

from __future__ import annotations

import numpy as np
from xdsl.dialects import arith, func, memref
from xdsl.dialects.builtin import DYNAMIC_INDEX, MemRefType, TensorType, i1
from xdsl.irdl import irdl_op_definition, operand_def, result_def

from irkit import ops as K
from irkit.dialects.ik import scalar as S
from irkit.dialects.ik.calculus import as_dtype_of, batch_dims, float_dtype, unbroadcast
from irkit.dialects.ik.base import IkOp
from irkit.dtypes import ufunc_result
from irkit.errors import ShapeError
from irkit.loops import INDEX, broadcast_index
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


def _swap_last(v):
    r = v.ndim
    return K.transpose(v, list(range(r - 2)) + [r - 1, r - 2])


def _batch_offset(c, ivs, bdims, mat):
    """Element offset of one matrix in a (broadcast) batch of matrices of `mat` elements."""
    off = c.index(0)
    for iv, dim in zip(broadcast_index(c, ivs, bdims) if bdims else [], bdims):
        off = c.emit(arith.AddiOp(c.emit(arith.MuliOp(off, c.as_index(dim))), iv))
    return c.emit(arith.MuliOp(off, c.as_index(mat)))


def _gemm(bz, a, b, out, dims, dt: np.dtype) -> None:
    """`func.call @irkit_gemm_f32/f64(transA, transB, M, N, K, alpha, A, offA, ldA, B, offB, ldB,
    beta, C, offC, ldC)`: row-major C = alpha op(A) op(B) + beta C (the backend calls BLAS)."""
    name = f"irkit_gemm_{'f32' if dt == np.float32 else 'f64'}"
    ft = S.scalar_type(dt)
    flat_t = MemRefType(ft, [DYNAMIC_INDEX])
    bz.declare(name, [i1, i1, INDEX, INDEX, INDEX, ft, flat_t, INDEX, INDEX, flat_t, INDEX, INDEX,
                      ft, flat_t, INDEX, INDEX])
    sa, sb = a.transposed_from or a, b.transposed_from or b
    m, n, k = dims[-2], dims[-1], a.dims[-1]
    batch = dims[:-2]
    c = bz.cur
    fa, fb, fc = bz.flat(sa), bz.flat(sb), bz.flat(out)
    one, zero = S.constant(c, 1.0, dt), S.constant(c, 0.0, dt)
    t_a = S.constant(c, a.transposed_from is not None, np.dtype(bool))
    t_b = S.constant(c, b.transposed_from is not None, np.dtype(bool))
    mats = [bz.d.product(sa.dims[-2:]), bz.d.product(sb.dims[-2:]), bz.d.mul(m, n)]

    known = int(np.prod([x for x in (m, n, k) if isinstance(x, int)]))
    if known > bz.small_gemm or bz.small_gemm == 0:  # large whatever the dynamic sizes are (or empty)
        small = None
    elif all(isinstance(x, int) for x in (m, n, k)):
        small = True
    else:
        work = bz.d.mul(bz.d.mul(m, n), k)
        small = c.emit(arith.CmpiOp(c.as_index(work), c.index(bz.small_gemm), "sle"))
    trans = (a.transposed_from is not None, b.transposed_from is not None)
    # a row times a matrix (or a matrix times a column) is BLAS's gemv: gemm would pack the matrix
    vector = "row" if m == 1 else "column" if n == 1 else None

    def body(cc, ivs, _):
        offs = [_batch_offset(cc, ivs, buf.dims[:-2], mat) for buf, mat in zip((sa, sb, out), mats)]
        lda, ldb = cc.as_index(sa.dims[-1]), cc.as_index(sb.dims[-1])

        def call(ci):
            if vector is not None:
                _gemv(bz, ci, vector, trans, (fa, offs[0], lda), (fb, offs[1], ldb), (fc, offs[2]), m, n, k, dt)
                return
            ci.emit(func.CallOp(name, [t_a, t_b, ci.as_index(m), ci.as_index(n), ci.as_index(k), one,
                                       fa, offs[0], lda, fb, offs[1], ldb, zero, fc, offs[2], ci.as_index(n)], []))

        def inline(ci):
            _small_gemm(ci, (fa, offs[0], lda), (fb, offs[1], ldb), (fc, offs[2]), m, n, k, trans, dt)
        if small is True:
            inline(cc)
        elif small is None:
            call(cc)
        else:
            cc.if_else(small, inline, call)
        return []
    c.loop_nest(batch, [], body)


def _gemv(bz, c, vector: str, trans, a, b, out, m, n, k, dt) -> None:
    """C (1 x n) = a B or C (m x 1) = A b as `func.call @irkit_gemv_*`: BLAS's column-major
    y = op(M) x, where a row-major matrix is its column-major transpose."""
    name = f"irkit_gemv_{'f32' if dt == np.float32 else 'f64'}"
    ft = S.scalar_type(dt)
    flat_t = MemRefType(ft, [DYNAMIC_INDEX])
    bz.declare(name, [i1, INDEX, INDEX, ft, flat_t, INDEX, INDEX, flat_t, INDEX, ft, flat_t, INDEX])
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
                              S.constant(c, 1.0, dt), mat, off, ld, x, xoff, S.constant(c, 0.0, dt), fc, oc], []))


# Below this many multiply-adds a product runs as inlined, vectorised loops: a BLAS call
# costs more than the work (the matrix-vector products of an RNN step, measured in
# benchmarks/rnn.py).
SMALL_GEMM = 1 << 16
_FAST = arith.FastMathFlagsAttr(["reassoc", "contract"])


def _small_gemm(c, a, b, out, m, n, k, trans, dt) -> None:
    """Row-major C = op(A) op(B) on flat buffers (data, offset, row length): rows of C
    accumulated from rows of B (i-k-j) when B is not transposed, else dot products (i-j-k)."""
    (fa, oa, lda), (fb, ob, ldb), (fc, oc) = a, b, out

    def at(ci, buf, off, row, col, ld):
        i = ci.emit(arith.AddiOp(ci.emit(arith.MuliOp(row, ld)), col))
        return ci.emit(memref.LoadOp.get(buf, [ci.emit(arith.AddiOp(off, i))]))

    def a_at(ci, i, kk):
        return at(ci, fa, oa, kk, i, lda) if trans[0] else at(ci, fa, oa, i, kk, lda)

    def c_index(ci, i, j):
        return ci.emit(arith.AddiOp(oc, ci.emit(arith.AddiOp(ci.emit(arith.MuliOp(i, ci.as_index(n))), j))))

    def row(ci, i, _):
        if trans[1]:
            def col(cj, j, _):
                def acc(ck, kk, s):
                    x = S.mul(ck, a_at(ck, i, kk), at(ck, fb, ob, j, kk, ldb), dt, _FAST)
                    return [S.add(ck, s[0], x, dt, _FAST)]
                total = cj.for_loop(0, k, 1, [S.constant(cj, 0.0, dt)], acc)[0]
                cj.emit(memref.StoreOp.get(total, fc, [c_index(cj, i, j)]))
                return []
            ci.for_loop(0, n, 1, [], col)
            return []
        zero = S.constant(ci, 0.0, dt)

        def clear(cj, j, _):
            cj.emit(memref.StoreOp.get(zero, fc, [c_index(cj, i, j)]))
            return []
        ci.for_loop(0, n, 1, [], clear)

        def axpy(ck, kk, _):
            x = a_at(ck, i, kk)

            def update(cj, j, _):
                idx = c_index(cj, i, j)
                y = S.mul(cj, x, at(cj, fb, ob, kk, j, ldb), dt, _FAST)
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


OPS = [MatmulOp]
