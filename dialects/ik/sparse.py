"""Sparse matrices in `ik`: ops over the components of a compressed matrix.

A compressed sparse matrix is not a type of its own here: it is its components,
ordinary tensors that the Python API (`irkit.sparse`) keeps together:

- `data`    (nnz,)        the stored values;
- `indices` (nnz,) int    the minor index of each stored value;
- `indptr`  (n_major+1,)  where each major slice starts in data/indices;
- `minor`   () int64      the size of the minor axis.

CSR is major = rows, minor = columns; CSC is the CSR of the transpose, so every
op is written once, for CSR, and CSC reuses it on the transposed problem. The
ops, each a native loop nest at the buffer level (`lower`), never a densified
product:

- `ik.sparse_matmul`      S @ M, parallel over the rows of S;
- `ik.sparse_matmul_t`    S^T @ G (a scatter-add over the rows of S, sequential);
- `ik.sparse_sampled_dot` A @ B^T sampled at S's pattern: out[p] = A[row(p), :] . B[indices[p], :];
- `ik.sparse_rows`        the major index of each stored value (indptr expanded);
- `ik.sparse_indptr`      indptr from sorted major indices (counts, then a prefix sum);
- `ik.sparse_validate`    the indices, once the whole structure is checked.

The first three close under differentiation: the vjp of a product with respect to
the dense operand is the other product, with respect to the values the sampled
product, and the sampled product's vjps are the two products.

Every kernel checks the structure it reads (indptr bounds and order, indices in
range), so a malformed matrix is an error, never a read out of bounds.
"""

from __future__ import annotations

from typing import Callable, ClassVar

import numpy as np
from xdsl.dialects import arith, memref, scf
from xdsl.dialects.builtin import TensorType, i64
from xdsl.ir import Block, Region, SSAValue
from xdsl.irdl import irdl_op_definition, operand_def, result_def
from xdsl.rewriter import InsertPoint

from irkit import ops as K
from irkit.dialects.ik import scalar as S
from irkit.dialects.ik.base import IkOp
from irkit.dialects.ik.calculus import as_dtype_of, batch_dims, float_dtype
from irkit.dtypes import ufunc_result
from irkit.errors import DTypeError, GradientUndefinedError, ShapeError
from irkit.loops import INDEX, Cursor
from irkit.types import dtype_of

INT64 = np.dtype(np.int64)


# ---------------------------------------------------------------------------
# build-time checks shared by the ops
# ---------------------------------------------------------------------------

def _rank(v: SSAValue) -> int:
    return len(v.type.get_shape())


def _check_structure(op: str, indices: SSAValue, indptr: SSAValue) -> None:
    for what, v in (("indices", indices), ("indptr", indptr)):
        if _rank(v) != 1:
            raise ShapeError(f"{op}: {what} must be 1-d, got rank {_rank(v)}")
        if dtype_of(v.type).kind not in "iu":
            raise DTypeError(f"{op}: {what} must be integers, got {dtype_of(v.type).name}")


def _check_size_operand(op: str, what: str, v: SSAValue) -> None:
    if _rank(v) != 0 or dtype_of(v.type).kind not in "iu":
        raise ShapeError(f"{op}: {what} must be a 0-d integer, got {dtype_of(v.type).name} of rank {_rank(v)}")


def _check_values(op: str, what: str, v: SSAValue) -> None:
    if dtype_of(v.type).kind not in "iuf":
        raise DTypeError(f"{op}: {what} must be numbers (integers or floats), got {dtype_of(v.type).name}")


def _n_major(d, indptr: SSAValue, op: str):
    """len(indptr) - 1, which must not be negative."""
    length = d.shape_of(indptr)[0]
    d.check(d.le(1, length), "indptr is empty; it holds one entry more than the matrix has rows")
    return d.sub(length, 1)


def _same_nnz(d, op: str, data: SSAValue, indices: SSAValue):
    return d.check_eq(d.shape_of(data)[0], d.shape_of(indices)[0],
                      "data and indices differ in length (one stored value per index)")


# ---------------------------------------------------------------------------
# buffer-level helpers: loops over the rows of a compressed matrix
# ---------------------------------------------------------------------------

def _load(c: Cursor, buf: SSAValue, idx: list) -> SSAValue:
    return c.emit(memref.LoadOp.get(buf, idx))


def _as_index(c: Cursor, x: SSAValue, dt: np.dtype) -> SSAValue:
    return c.emit(arith.IndexCastOp(S.convert(c, x, dt, INT64), INDEX))


def _parallel_for(c: Cursor, n, body: Callable[[Cursor, SSAValue], None]) -> None:
    """scf.parallel over [0, n): its iterations write disjoint elements, so the backend may
    split it across threads (and the GPU backend makes it a kernel)."""
    block = Block(arg_types=[INDEX])
    terminator = scf.ReduceOp()
    block.add_op(terminator)
    c.emit(scf.ParallelOp([c.index(0)], [c.as_index(n)], [c.index(1)], Region(block)))
    body(Cursor(InsertPoint.before(terminator)), block.args[0])


class _Structure:
    """indptr and indices of one compressed matrix at the buffer level, read with checks."""

    def __init__(self, bz, op: IkOp, indices: SSAValue, indptr: SSAValue) -> None:
        self.op = op.name
        self.indices = bz.buffer_of(indices).memref
        self.indptr = bz.buffer_of(indptr).memref
        self.idt, self.pdt = dtype_of(indices.type), dtype_of(indptr.type)
        self.nnz = bz.cur.as_index(bz.buffer_of(indices).dims[0])
        self.n_major = bz.cur.emit(arith.SubiOp(bz.cur.as_index(bz.buffer_of(indptr).dims[0]), bz.cur.index(1)))

    def check_ends(self, c: Cursor) -> None:
        """indptr starts at 0 and ends at nnz: every stored value belongs to one row."""
        first = _as_index(c, _load(c, self.indptr, [c.index(0)]), self.pdt)
        last = _as_index(c, _load(c, self.indptr, [self.n_major]), self.pdt)
        c.require(c.emit(arith.CmpiOp(first, c.index(0), "eq")),
                  f"ValueError: {self.op}: indptr[0] must be 0")
        c.require(c.emit(arith.CmpiOp(last, self.nnz, "eq")),
                  f"ValueError: {self.op}: indptr[-1] must equal the number of stored values (len(indices))")

    def row(self, c: Cursor, i: SSAValue) -> tuple[SSAValue, SSAValue]:
        """[start, end) of row i in data/indices, checked: 0 <= start <= end <= nnz."""
        start = _as_index(c, _load(c, self.indptr, [i]), self.pdt)
        end = _as_index(c, _load(c, self.indptr, [c.emit(arith.AddiOp(i, c.index(1)))]), self.pdt)
        ok = c.emit(arith.AndIOp(c.emit(arith.CmpiOp(c.index(0), start, "sle")),
                                 c.emit(arith.AndIOp(c.emit(arith.CmpiOp(start, end, "sle")),
                                                     c.emit(arith.CmpiOp(end, self.nnz, "sle"))))))
        c.require(ok, f"ValueError: {self.op}: indptr must be non-decreasing, from 0 to the number of "
                      "stored values")
        return start, end

    def minor(self, c: Cursor, p: SSAValue, bound) -> SSAValue:
        """indices[p] as an index, checked to be in [0, bound)."""
        raw = S.convert(c, _load(c, self.indices, [p]), self.idt, INT64)
        # one unsigned comparison: a negative index reads as a huge one
        ok = c.emit(arith.CmpiOp(raw, c.emit(arith.IndexCastOp(c.as_index(bound), i64)), "ult"))
        c.require(ok, f"IndexError: {self.op}: a stored index is out of bounds for the minor axis")
        return c.emit(arith.IndexCastOp(raw, INDEX))


# Below this many columns in the dense operand, a row of S @ M keeps its sums in registers
# (one pass over the row's nonzeros a column); from it on, each nonzero adds a scaled row
# of M to the output row (one pass, contiguous and vectorised inner loop).
REGISTER_COLUMNS = 4
_FAST = arith.FastMathFlagsAttr(["reassoc", "contract"])


def _accumulate(c: Cursor, total: SSAValue, v: SSAValue, x: SSAValue, dt: np.dtype) -> SSAValue:
    """total + v * x for a sum carried from one stored value to the next: a multiply and an
    add, never one fused multiply-add. The sum is a chain the loop cannot split (a stored
    index out of bounds stops it), and the chain's step is then an add (2-3 cycles) instead
    of a multiply-add (4): 10^6 values in rows of 1,000, 0.95 -> 0.50 ms. The rounding is
    scipy's (its csr_matvec multiplies, then adds)."""
    return S.add(c, total, S.mul(c, v, x, dt), dt)


def _zero_fill(c: Cursor, buf: SSAValue, dims: list, dt: np.dtype) -> None:
    zero = S.constant(c, 0, dt)

    def body(cc, ivs, _):
        cc.emit(memref.StoreOp.get(zero, buf, ivs))
        return []
    c.loop_nest(dims, [], body)


# ---------------------------------------------------------------------------
# the products
# ---------------------------------------------------------------------------

def _product_dtype(dtypes: list[np.dtype]) -> np.dtype:
    return ufunc_result(np.matmul, (dtypes[0], dtypes[-1]))


def _np_rows(indptr: np.ndarray) -> np.ndarray:
    indptr = np.asarray(indptr, dtype=np.int64)
    if indptr.size == 0 or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
        raise ValueError("indptr must be non-decreasing from 0")
    return np.repeat(np.arange(indptr.size - 1), np.diff(indptr))


def _np_check_minor(indices: np.ndarray, bound: int) -> np.ndarray:
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= bound):
        raise IndexError("a stored index is out of bounds")
    return indices


def _batched(g, out, op: IkOp) -> None:
    if batch_dims(g, out):
        raise GradientUndefinedError(f"{op.name}: batched cotangents (jacobian, hessian) through sparse "
                                     "products are not supported; take the gradient of a scalar cost")


class _ProductOperands:
    """Mixin: the operands of both products, (data, indices, indptr, minor, dense)."""

    @classmethod
    def check_operands(cls, operands, p):
        data, indices, indptr, minor, m = operands
        _check_structure(cls.name, indices, indptr)
        _check_size_operand(cls.name, "the column count", minor)
        _check_values(cls.name, "data", data)
        _check_values(cls.name, "the dense operand", m)
        if _rank(data) != 1 or _rank(m) != 2:
            raise ShapeError(f"{cls.name}: data must be 1-d and the dense operand 2-d, got ranks "
                             f"{_rank(data)} and {_rank(m)}")


@irdl_op_definition
class SparseMatmulOp(_ProductOperands, IkOp):
    """S @ M for S in CSR (data, indices, indptr, minor = its column count) and a dense matrix M."""

    name = "ik.sparse_matmul"
    data = operand_def(TensorType)
    indices = operand_def(TensorType)
    indptr = operand_def(TensorType)
    minor = operand_def(TensorType)
    m = operand_def(TensorType)
    result = result_def(TensorType)
    SHAPE_OPERANDS: ClassVar = (3,)

    @classmethod
    def shape_rule(cls, d, operands, p):
        data, indices, indptr, minor, m = operands
        _same_nnz(d, cls.name, data, indices)
        sm = d.shape_of(m)
        d.check_eq(d.value(minor), sm[0], "cannot multiply: the sparse matrix's column count differs from "
                                          "the dense matrix's row count")
        return [[_n_major(d, indptr, cls.name), sm[1]]]

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        return [_product_dtype(dtypes)]

    def evaluate(self, p, data, indices, indptr, minor, m):
        rows = _np_rows(indptr)
        if np.shape(m)[0] != int(minor):
            raise ValueError("inner dimensions differ")
        cols = _np_check_minor(indices, int(minor))
        dt = dtype_of(self.result.type)
        out = np.zeros((np.size(indptr) - 1, np.shape(m)[1]), dtype=dt)
        np.add.at(out, rows, data.astype(dt)[:, None] * m.astype(dt)[cols])
        return [out]

    def vjp(self, g, ins, out):
        """values: g sampled against M at S's pattern; M: S^T g."""
        _batched(g, out, self)
        data, indices, indptr, minor, m = ins
        gd = as_dtype_of(K._emit(SparseSampledDotOp, [indices, indptr, g, m]), data) if float_dtype(data) else None
        gm = as_dtype_of(K._emit(SparseMatmulTOp, [data, indices, indptr, minor, g]), m) if float_dtype(m) else None
        return [gd, None, None, None, gm]

    def jvp(self, ts, ins, out):
        data, indices, indptr, minor, m = ins
        terms = []
        if ts[0] is not None:
            terms.append(K._emit(SparseMatmulOp, [ts[0], indices, indptr, minor, m]))
        if ts[4] is not None:
            terms.append(K._emit(SparseMatmulOp, [data, indices, indptr, minor, ts[4]]))
        return _total(terms, out)

    def lower(self, bz):
        """Parallel over the rows of S: each output row from the row's nonzeros, one sum for
        an M of one column (M read as a vector), in registers for a narrow M, else as a sum
        of scaled rows of M (a vectorised inner loop)."""
        dims = bz.result_dims(self)[0]
        out = bz.alloc(self.result.type, dims)
        st = _Structure(bz, self, self.indices, self.indptr)
        data, mb = bz.buffer_of(self.data).memref, bz.buffer_of(self.m)
        ddt, mdt, dt = dtype_of(self.data.type), dtype_of(self.m.type), dtype_of(self.result.type)
        c = bz.cur
        st.check_ends(c)
        m_rows, k = c.as_index(mb.dims[0]), c.as_index(dims[1])
        narrow = c.emit(arith.CmpiOp(k, c.index(REGISTER_COLUMNS), "slt"))
        one_column = c.emit(arith.CmpiOp(k, c.index(1), "eq"))

        def term(cc, pos):
            """data[pos] and the row of M it multiplies."""
            v = S.convert(cc, _load(cc, data, [pos]), ddt, dt)
            return v, st.minor(cc, pos, m_rows)

        def vector_row(ci: Cursor, i: SSAValue) -> None:
            # M is one column (S @ v): a term's row of M is one value at its index, with no
            # multiply by M's row stride between the index's load and the value's, and no
            # loop over columns around the row's sum (one core, 10^6 values: rows of 10
            # 1.12 -> 0.95 ms, rows of 1,000 0.62 -> 0.47 ms against the general loop)
            start, end = st.row(ci, i)

            def acc(cp, pos, s):
                v, r = term(cp, pos)
                return [_accumulate(cp, s[0], v, S.convert(cp, _load(cp, m_flat, [r]), mdt, dt), dt)]
            total = ci.for_loop(start, end, 1, [S.constant(ci, 0, dt)], acc)[0]
            ci.emit(memref.StoreOp.get(total, out.memref, [i, ci.index(0)]))

        def row(ci: Cursor, i: SSAValue) -> None:
            start, end = st.row(ci, i)

            def in_registers(cr: Cursor) -> None:
                def column(cj, j, _):
                    def acc(cp, pos, s):
                        v, r = term(cp, pos)
                        return [_accumulate(cp, s[0], v, S.convert(cp, _load(cp, mb.memref, [r, j]), mdt, dt), dt)]
                    total = cj.for_loop(start, end, 1, [S.constant(cj, 0, dt)], acc)[0]
                    cj.emit(memref.StoreOp.get(total, out.memref, [i, j]))
                    return []
                cr.for_loop(0, k, 1, [], column)

            def by_rows(cr: Cursor) -> None:
                zero = S.constant(cr, 0, dt)

                def clear(cj, j, _):
                    cj.emit(memref.StoreOp.get(zero, out.memref, [i, j]))
                    return []
                cr.for_loop(0, k, 1, [], clear)

                def axpy(cp, pos, _):
                    v, r = term(cp, pos)

                    def update(cj, j, _):
                        x = S.convert(cj, _load(cj, mb.memref, [r, j]), mdt, dt)
                        y = S.add(cj, _load(cj, out.memref, [i, j]), S.mul(cj, v, x, dt, _FAST), dt, _FAST)
                        cj.emit(memref.StoreOp.get(y, out.memref, [i, j]))
                        return []
                    cp.for_loop(0, k, 1, [], update)
                    return []
                cr.for_loop(start, end, 1, [], axpy)
            ci.if_else(narrow, in_registers, by_rows)
        # the column count is decided once, outside the loop over rows
        m_flat = bz.flat(mb, c)
        c.if_else(one_column, lambda cv: _parallel_for(cv, dims[0], vector_row),
                  lambda cm: _parallel_for(cm, dims[0], row))
        bz.set_result(self.result, out)


@irdl_op_definition
class SparseMatmulTOp(_ProductOperands, IkOp):
    """S^T @ G for S in CSR (data, indices, indptr; `minor` = its column count, the result's
    row count) and a dense G with one row per row of S."""

    name = "ik.sparse_matmul_t"
    data = operand_def(TensorType)
    indices = operand_def(TensorType)
    indptr = operand_def(TensorType)
    minor = operand_def(TensorType)
    g = operand_def(TensorType)
    result = result_def(TensorType)
    SHAPE_OPERANDS: ClassVar = (3,)

    @classmethod
    def shape_rule(cls, d, operands, p):
        data, indices, indptr, minor, g = operands
        _same_nnz(d, cls.name, data, indices)
        sg = d.shape_of(g)
        d.check_eq(_n_major(d, indptr, cls.name), sg[0],
                   "cannot multiply: the dense matrix's row count differs from the sparse "
                   "matrix's (transposed product)")
        return [[d.value(minor), sg[1]]]

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        return [_product_dtype(dtypes)]

    def evaluate(self, p, data, indices, indptr, minor, g):
        rows = _np_rows(indptr)
        if np.shape(g)[0] != np.size(indptr) - 1:
            raise ValueError("inner dimensions differ")
        cols = _np_check_minor(indices, int(minor))
        dt = dtype_of(self.result.type)
        out = np.zeros((int(minor), np.shape(g)[1]), dtype=dt)
        np.add.at(out, cols, data.astype(dt)[:, None] * g.astype(dt)[rows])
        return [out]

    def vjp(self, gout, ins, out):
        """values: G sampled against gout at S's pattern; G: S gout."""
        _batched(gout, out, self)
        data, indices, indptr, minor, g = ins
        gd = as_dtype_of(K._emit(SparseSampledDotOp, [indices, indptr, g, gout]), data) \
            if float_dtype(data) else None
        gg = as_dtype_of(K._emit(SparseMatmulOp, [data, indices, indptr, minor, gout]), g) if float_dtype(g) else None
        return [gd, None, None, None, gg]

    def jvp(self, ts, ins, out):
        data, indices, indptr, minor, g = ins
        terms = []
        if ts[0] is not None:
            terms.append(K._emit(SparseMatmulTOp, [ts[0], indices, indptr, minor, g]))
        if ts[4] is not None:
            terms.append(K._emit(SparseMatmulTOp, [data, indices, indptr, minor, ts[4]]))
        return _total(terms, out)

    def lower(self, bz):
        """Zeros, then each nonzero adds its value times a row of G into the row of the result
        its index names. Rows of S scatter into shared rows of the result, so the loop is
        sequential (scipy's csr_matvecs for a transposed product does the same)."""
        dims = bz.result_dims(self)[0]
        out = bz.alloc(self.result.type, dims)
        st = _Structure(bz, self, self.indices, self.indptr)
        data, gb = bz.buffer_of(self.data).memref, bz.buffer_of(self.g).memref
        ddt, gdt, dt = dtype_of(self.data.type), dtype_of(self.g.type), dtype_of(self.result.type)
        c = bz.cur
        st.check_ends(c)
        _zero_fill(c, out.memref, dims, dt)
        n_out, k = c.as_index(dims[0]), c.as_index(dims[1])

        def row(ci, i, _):
            start, end = st.row(ci, i)

            def scatter(cp, pos, _):
                v = S.convert(cp, _load(cp, data, [pos]), ddt, dt)
                r = st.minor(cp, pos, n_out)

                def update(cj, j, _):
                    x = S.convert(cj, _load(cj, gb, [i, j]), gdt, dt)
                    y = S.add(cj, _load(cj, out.memref, [r, j]), S.mul(cj, v, x, dt, _FAST), dt, _FAST)
                    cj.emit(memref.StoreOp.get(y, out.memref, [r, j]))
                    return []
                cp.for_loop(0, k, 1, [], update)
                return []
            ci.for_loop(start, end, 1, [], scatter)
            return []
        c.for_loop(0, st.n_major, 1, [], row)
        bz.set_result(self.result, out)


@irdl_op_definition
class SparseSampledDotOp(IkOp):
    """out[p] = A[row(p), :] . B[indices[p], :]: the product A @ B^T at the pattern of a CSR
    matrix (indices, indptr) only, one value per stored entry."""

    name = "ik.sparse_sampled_dot"
    indices = operand_def(TensorType)
    indptr = operand_def(TensorType)
    a = operand_def(TensorType)
    b = operand_def(TensorType)
    result = result_def(TensorType)

    @classmethod
    def check_operands(cls, operands, p):
        indices, indptr, a, b = operands
        _check_structure(cls.name, indices, indptr)
        _check_values(cls.name, "A", a)
        _check_values(cls.name, "B", b)
        if _rank(a) != 2 or _rank(b) != 2:
            raise ShapeError(f"{cls.name}: A and B must be 2-d, got ranks {_rank(a)} and {_rank(b)}")

    @classmethod
    def shape_rule(cls, d, operands, p):
        indices, indptr, a, b = operands
        sa, sb = d.shape_of(a), d.shape_of(b)
        d.check_eq(_n_major(d, indptr, cls.name), sa[0], "A needs one row per row of the pattern")
        d.check_eq(sa[1], sb[1], "A and B differ in their column counts")
        return [[d.shape_of(indices)[0]]]

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        return [ufunc_result(np.matmul, (dtypes[2], dtypes[3]))]

    def evaluate(self, p, indices, indptr, a, b):
        rows = _np_rows(indptr)
        if np.size(rows) != np.size(indices):
            raise ValueError("indptr[-1] must equal len(indices)")
        cols = _np_check_minor(indices, np.shape(b)[0])
        dt = dtype_of(self.result.type)
        return [np.einsum("pj,pj->p", a.astype(dt)[rows], b.astype(dt)[cols]).astype(dt)]

    def vjp(self, g, ins, out):
        """A: S_g B; B: S_g^T A, where S_g has the pattern and g as its values."""
        _batched(g, out, self)
        indices, indptr, a, b = ins
        minor = K.dim(b, 0)
        ga = as_dtype_of(K._emit(SparseMatmulOp, [g, indices, indptr, minor, b]), a) if float_dtype(a) else None
        gb = as_dtype_of(K._emit(SparseMatmulTOp, [g, indices, indptr, minor, a]), b) if float_dtype(b) else None
        return [None, None, ga, gb]

    def jvp(self, ts, ins, out):
        indices, indptr, a, b = ins
        terms = []
        if ts[2] is not None:
            terms.append(K._emit(SparseSampledDotOp, [indices, indptr, ts[2], b]))
        if ts[3] is not None:
            terms.append(K._emit(SparseSampledDotOp, [indices, indptr, a, ts[3]]))
        return _total(terms, out)

    def lower(self, bz):
        """Parallel over the rows of the pattern; a dot product per stored entry."""
        dims = bz.result_dims(self)[0]
        out = bz.alloc(self.result.type, dims)
        st = _Structure(bz, self, self.indices, self.indptr)
        ab, bb = bz.buffer_of(self.a), bz.buffer_of(self.b)
        adt, bdt, dt = dtype_of(self.a.type), dtype_of(self.b.type), dtype_of(self.result.type)
        c = bz.cur
        st.check_ends(c)
        b_rows, k = c.as_index(bb.dims[0]), c.as_index(ab.dims[1])

        def row(ci: Cursor, i: SSAValue) -> None:
            start, end = st.row(ci, i)

            def entry(cp, pos, _):
                r = st.minor(cp, pos, b_rows)

                def acc(cj, j, s):
                    x = S.convert(cj, _load(cj, ab.memref, [i, j]), adt, dt)
                    y = S.convert(cj, _load(cj, bb.memref, [r, j]), bdt, dt)
                    return [S.add(cj, s[0], S.mul(cj, x, y, dt, _FAST), dt, _FAST)]
                total = cp.for_loop(0, k, 1, [S.constant(cp, 0, dt)], acc)[0]
                cp.emit(memref.StoreOp.get(total, out.memref, [pos]))
                return []
            ci.for_loop(start, end, 1, [], entry)
        _parallel_for(c, st.n_major, row)
        bz.set_result(self.result, out)


def _total(terms: list, out):
    if not terms:
        return None
    total = terms[0] if len(terms) == 1 else terms[0] + terms[1]
    return as_dtype_of(total, out)


# ---------------------------------------------------------------------------
# structure: rows of the stored values, indptr from rows, validation
# ---------------------------------------------------------------------------

@irdl_op_definition
class SparseRowsOp(IkOp):
    """The major index (the row, for CSR) of each stored value: indptr expanded, int64."""

    name = "ik.sparse_rows"
    indptr = operand_def(TensorType)
    indices = operand_def(TensorType)
    result = result_def(TensorType)

    @classmethod
    def check_operands(cls, operands, p):
        _check_structure(cls.name, operands[1], operands[0])

    @classmethod
    def shape_rule(cls, d, operands, p):
        _n_major(d, operands[0], cls.name)
        return [[d.shape_of(operands[1])[0]]]

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        return [INT64]

    def evaluate(self, p, indptr, indices):
        rows = _np_rows(indptr)
        if rows.size != np.size(indices):
            raise ValueError("indptr[-1] must equal len(indices)")
        return [rows.astype(np.int64)]

    def lower(self, bz):
        """Parallel over rows; the checks on indptr's ends and order make every entry written once."""
        dims = bz.result_dims(self)[0]
        out = bz.alloc(self.result.type, dims)
        st = _Structure(bz, self, self.indices, self.indptr)
        c = bz.cur
        st.check_ends(c)

        def row(ci: Cursor, i: SSAValue) -> None:
            start, end = st.row(ci, i)
            value = ci.emit(arith.IndexCastOp(i, i64))

            def fill(cp, pos, _):
                cp.emit(memref.StoreOp.get(value, out.memref, [pos]))
                return []
            ci.for_loop(start, end, 1, [], fill)
        _parallel_for(c, st.n_major, row)
        bz.set_result(self.result, out)


@irdl_op_definition
class SparseIndptrOp(IkOp):
    """indptr (n+1,) of a compressed matrix with n major slices, from the major index of each
    stored value (sorted, as `ik.nonzero` gives them): counts per slice, then a prefix sum."""

    name = "ik.sparse_indptr"
    rows = operand_def(TensorType)
    n = operand_def(TensorType)
    result = result_def(TensorType)
    SHAPE_OPERANDS: ClassVar = (1,)

    @classmethod
    def check_operands(cls, operands, p):
        rows, n = operands
        if _rank(rows) != 1 or dtype_of(rows.type).kind not in "iu":
            raise ShapeError(f"{cls.name}: the major indices must be a 1-d integer array")
        _check_size_operand(cls.name, "the major size", n)

    @classmethod
    def shape_rule(cls, d, operands, p):
        return [[d.add(d.value(operands[1]), 1)]]

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        return [INT64]

    def evaluate(self, p, rows, n):
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= int(n) or np.any(np.diff(rows) < 0)):
            raise ValueError("major indices must be sorted and in range")
        return [np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=int(n)))]).astype(np.int64)]

    def lower(self, bz):
        dims = bz.result_dims(self)[0]
        out = bz.alloc(self.result.type, dims)
        rows = bz.buffer_of(self.rows)
        rdt = dtype_of(self.rows.type)
        c = bz.cur
        n = c.emit(arith.SubiOp(c.as_index(dims[0]), c.index(1)))
        _zero_fill(c, out.memref, dims, INT64)
        one = S.constant(c, 1, INT64)

        def count(cp, pos, prev):
            raw = S.convert(cp, _load(cp, rows.memref, [pos]), rdt, INT64)
            ok = cp.emit(arith.AndIOp(
                cp.emit(arith.CmpiOp(raw, prev[0], "sge")),
                cp.emit(arith.CmpiOp(raw, cp.emit(arith.IndexCastOp(n, i64)), "slt"))))
            cp.require(ok, f"ValueError: {self.name}: the major indices must be sorted and in [0, n)")
            slot = cp.emit(arith.AddiOp(cp.emit(arith.IndexCastOp(raw, INDEX)), cp.index(1)))
            cp.emit(memref.StoreOp.get(cp.emit(arith.AddiOp(_load(cp, out.memref, [slot]), one)), out.memref, [slot]))
            return [raw]
        c.for_loop(0, rows.dims[0], 1, [S.constant(c, 0, INT64)], count)

        def prefix(ci, i, total):
            s = ci.emit(arith.AddiOp(total[0], _load(ci, out.memref, [i])))
            ci.emit(memref.StoreOp.get(s, out.memref, [i]))
            return [s]
        c.for_loop(1, dims[0], 1, [S.constant(c, 0, INT64)], prefix)
        bz.set_result(self.result, out)


@irdl_op_definition
class SparseValidateOp(IkOp):
    """The indices of a compressed matrix, once its whole structure is checked: indptr runs
    from 0 to len(indices) without decreasing, and each slice's indices are in [0, minor)
    and strictly increasing (scipy's canonical format: sorted, no duplicates). `what` names
    the matrix in the errors."""

    name = "ik.sparse_validate"
    indices = operand_def(TensorType)
    indptr = operand_def(TensorType)
    minor = operand_def(TensorType)
    result = result_def(TensorType)
    SHAPE_OPERANDS: ClassVar = (2,)
    PARAMS: ClassVar = {"what": "sparse matrix"}

    @classmethod
    def check_operands(cls, operands, p):
        _check_structure(cls.name, operands[0], operands[1])
        _check_size_operand(cls.name, "the minor size", operands[2])

    @classmethod
    def shape_rule(cls, d, operands, p):
        _n_major(d, operands[1], cls.name)
        d.check(d.le(0, d.value(operands[2])), f"{p.what}: a negative size")
        return [d.shape_of(operands[0])]

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        return [dtypes[0]]

    def evaluate(self, p, indices, indptr, minor):
        rows = _np_rows(indptr)
        if rows.size != np.size(indices):
            raise ValueError("indptr[-1] must equal len(indices)")
        cols = _np_check_minor(indices, int(minor))
        same_row = rows[1:] == rows[:-1]
        if np.any(same_row & (cols[1:] <= cols[:-1])):
            raise ValueError("indices are not sorted and unique within each row")
        return [np.array(indices, copy=True)]

    def lower(self, bz):
        """Parallel over the major slices; the indices themselves pass through (a copy only
        where the bufferizer needs one)."""
        st = _Structure(bz, self, self.indices, self.indptr)
        c = bz.cur
        what = self.params.what
        minor = bz.index(self.minor)
        c.require(c.emit(arith.CmpiOp(_as_index(c, _load(c, st.indptr, [c.index(0)]), st.pdt), c.index(0), "eq")),
                  f"ValueError: {what}: indptr[0] must be 0")
        c.require(c.emit(arith.CmpiOp(_as_index(c, _load(c, st.indptr, [st.n_major]), st.pdt), st.nnz, "eq")),
                  f"ValueError: {what}: indptr[-1] must equal the number of stored values (len(indices))")

        def row(ci: Cursor, i: SSAValue) -> None:
            start = _as_index(ci, _load(ci, st.indptr, [i]), st.pdt)
            end = _as_index(ci, _load(ci, st.indptr, [ci.emit(arith.AddiOp(i, ci.index(1)))]), st.pdt)
            ci.require(ci.emit(arith.AndIOp(ci.emit(arith.CmpiOp(ci.index(0), start, "sle")),
                                            ci.emit(arith.AndIOp(ci.emit(arith.CmpiOp(start, end, "sle")),
                                                                 ci.emit(arith.CmpiOp(end, st.nnz, "sle")))))),
                       f"ValueError: {what}: indptr must be non-decreasing")
            bound = ci.emit(arith.IndexCastOp(ci.as_index(minor), i64))

            def entry(cp, pos, prev):
                raw = S.convert(cp, _load(cp, st.indices, [pos]), st.idt, INT64)
                cp.require(cp.emit(arith.AndIOp(cp.emit(arith.CmpiOp(raw, S.constant(cp, 0, INT64), "sge")),
                                                cp.emit(arith.CmpiOp(raw, bound, "slt")))),
                           f"IndexError: {what}: a stored index is out of bounds (negative, or not below "
                           "the size of the minor axis)")
                cp.require(cp.emit(arith.CmpiOp(raw, prev[0], "sgt")),
                           f"ValueError: {what}: indices are not sorted and unique within each row/column "
                           "(not in canonical format; call sort_indices() and sum_duplicates())")
                return [raw]
            ci.for_loop(start, end, 1, [S.constant(ci, -1, INT64)], entry)
        _parallel_for(c, st.n_major, row)
        bz.set_result(self.result, bz.buffer_of(self.indices))


OPS = [SparseMatmulOp, SparseMatmulTOp, SparseSampledDotOp, SparseRowsOp, SparseIndptrOp, SparseValidateOp]
