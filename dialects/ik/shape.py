"""Shape ops of `ik`: reshape, transpose, expand_dims, squeeze, broadcast_to,
concatenate, and `dim` (a size as a 0-d int64 tensor).

Sizes that are not static are operands: 0-d int64 tensors (`x.shape[0]`,
arithmetic on it, or any integer scalar). A static list property says, per
result dim, either its size, `DYN` (take the next operand) or `INFER` (-1 in
reshape).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from xdsl.dialects import arith, memref
from xdsl.dialects.builtin import TensorType, i64
from xdsl.irdl import irdl_op_definition, operand_def, result_def, var_operand_def

from irkit import ops as K
from irkit.dialects.ik import scalar as S
from irkit.dialects.ik.base import IkOp, SameDtype, normalize_axis
from irkit.dialects.ik.calculus import as_dtype_of, batch_dims, batch_shape, float_dtype, unbroadcast
from irkit.errors import ShapeError
from irkit.types import dtype_of

DYN = -2      # a size given by the next operand
INFER = -1    # reshape's -1


def target_dims(d, static: tuple[int, ...], operands) -> list:
    """Static sizes with each DYN replaced by the value of the next operand."""
    values = iter(operands)
    out = []
    for s in static:
        if s == DYN:
            try:
                out.append(d.value(next(values)))
            except StopIteration:
                raise ShapeError("fewer size operands than dynamic sizes") from None
        else:
            out.append(s)
    if next(values, None) is not None:
        raise ShapeError("more size operands than dynamic sizes")
    return out


@irdl_op_definition
class ReshapeOp(SameDtype, IkOp):
    """numpy's reshape (C order); one size may be -1 and is inferred."""

    name = "ik.reshape"
    x = operand_def(TensorType)
    sizes = var_operand_def(TensorType)
    result = result_def(TensorType)
    PARAMS: ClassVar = {"shape": ()}

    @property
    def SHAPE_OPERANDS(self):  # noqa: N802  (every operand after x)
        return tuple(range(1, len(self.operands)))

    @classmethod
    def shape_rule(cls, d, operands, p):
        x, sizes = operands[0], operands[1:]
        target = target_dims(d, p.shape, sizes)
        total = d.product(d.shape_of(x))
        infer = [k for k, s in enumerate(target) if isinstance(s, int) and s == INFER]
        if len(infer) > 1:
            raise ShapeError("can only specify one unknown dimension (-1)")
        for k, s in enumerate(target):
            if isinstance(s, int) and s < INFER:
                raise ShapeError(f"negative size {s} in reshape")
            if not isinstance(s, int):  # a symbolic size: checked at run time
                d.check(d.le(0, s), f"negative size in dim {k} of reshape")
        message = (f"cannot reshape an array of shape {_fmt_dims(d.shape_of(x))} "
                   f"into shape {_fmt_dims(target)}")
        if infer:
            k = infer[0]
            known = d.product([s for j, s in enumerate(target) if j != k])
            inferred = d.floordiv(total, known)
            d.check(d.logical_and(d.lt(0, known), d.eq(d.mul(inferred, known), total)), message)
            target[k] = inferred
        else:
            d.check(d.eq(d.product(target), total), message)
        return [target]


    def evaluate(self, p, x, *sizes):
        shape = list(p.shape)
        it = iter(sizes)
        shape = [int(next(it)) if s == DYN else s for s in shape]
        return [np.reshape(x, shape)]

    def lower(self, bz):
        bz.reshape_view(self.x, self.result)

    def vjp(self, g, ins, out):
        x = ins[0]
        nb = batch_dims(g, out)
        gx = K.reshape(g, batch_shape(g, nb) + list(x.shape)) if float_dtype(x) else None
        return [gx] + [None] * (len(ins) - 1)

    def jvp(self, ts, ins, out):
        return None if ts[0] is None else K.reshape(ts[0], out.shape)


def _fmt_dims(dims) -> str:
    return "(" + ", ".join(str(s) if isinstance(s, int) else "?" for s in dims) + ")"


@irdl_op_definition
class TransposeOp(SameDtype, IkOp):
    """Permute axes: result axis k is axis perm[k] of x."""

    name = "ik.transpose"
    x = operand_def(TensorType)
    result = result_def(TensorType)
    PARAMS: ClassVar = {"perm": ()}
    FUSIBLE: ClassVar = True

    @classmethod
    def check_operands(cls, operands, p):
        rank = len(operands[0].type.get_shape())
        if sorted(p.perm) != list(range(rank)):
            raise ShapeError(f"axes {p.perm} are not a permutation of the {rank} axes of x")

    @classmethod
    def shape_rule(cls, d, operands, p):
        xs = d.shape_of(operands[0])
        return [[xs[a] for a in p.perm]]


    def evaluate(self, p, x):
        return [np.asarray(np.transpose(x, p.perm), order="C")]

    def lower(self, bz):
        bz.transpose_view(self)

    def vjp(self, g, ins, out):
        perm = self.params.perm
        nb = batch_dims(g, out)
        inverse = [perm.index(k) for k in range(len(perm))]
        return [K.transpose(g, list(range(nb)) + [nb + k for k in inverse])]

    def jvp(self, ts, ins, out):
        return None if ts[0] is None else K.transpose(ts[0], self.params.perm)

    def emit_element(self, em, idx):
        perm = self.params.perm
        src = [None] * len(perm)
        for k, a in enumerate(perm):
            src[a] = idx[k]
        return em.at(self.x, src)


@irdl_op_definition
class ExpandDimsOp(SameDtype, IkOp):
    """Insert axes of size 1 at `axes` (positions in the result)."""

    name = "ik.expand_dims"
    x = operand_def(TensorType)
    result = result_def(TensorType)
    PARAMS: ClassVar = {"axes": ()}
    FUSIBLE: ClassVar = True

    @classmethod
    def shape_rule(cls, d, operands, p):
        xs = list(d.shape_of(operands[0]))
        rank = len(xs) + len(p.axes)
        axes = sorted(normalize_axis(a, rank) for a in p.axes)
        if len(set(axes)) != len(axes):
            raise ShapeError(f"repeated axis in {p.axes}")
        out = []
        it = iter(xs)
        for k in range(rank):
            out.append(1 if k in axes else next(it))
        return [out]


    def evaluate(self, p, x):
        return [np.expand_dims(x, p.axes)]

    def vjp(self, g, ins, out):
        nb = batch_dims(g, out)
        return [K.squeeze(g, tuple(nb + a for a in self.params.axes))]

    def jvp(self, ts, ins, out):
        return None if ts[0] is None else K.expand_dims(ts[0], self.params.axes)

    def emit_element(self, em, idx):
        axes = set(self.params.axes)
        return em.at(self.x, [i for k, i in enumerate(idx) if k not in axes])

    def lower(self, bz):
        bz.reshape_view(self.x, self.result)


@irdl_op_definition
class SqueezeOp(SameDtype, IkOp):
    """Remove axes of size 1 (`axes`, positions in x); a dynamic one is checked at run time."""

    name = "ik.squeeze"
    x = operand_def(TensorType)
    result = result_def(TensorType)
    PARAMS: ClassVar = {"axes": ()}
    FUSIBLE: ClassVar = True

    @classmethod
    def shape_rule(cls, d, operands, p):
        xs = d.shape_of(operands[0])
        for a in p.axes:
            if not 0 <= a < len(xs):
                raise ShapeError(f"axis {a} is out of bounds for an array of rank {len(xs)}")
            d.check(d.eq(xs[a], 1), f"cannot squeeze axis {a}: its size is not 1")
        return [[s for k, s in enumerate(xs) if k not in p.axes]]


    def evaluate(self, p, x):
        return [np.squeeze(x, p.axes) if p.axes else x]

    def vjp(self, g, ins, out):
        nb = batch_dims(g, out)
        return [K.expand_dims(g, tuple(nb + a for a in self.params.axes))]

    def jvp(self, ts, ins, out):
        return None if ts[0] is None else K.squeeze(ts[0], self.params.axes)

    def emit_element(self, em, idx):
        axes = set(self.params.axes)
        rank = len(self.x.type.get_shape())
        it = iter(idx)
        return em.at(self.x, [em.index(0) if k in axes else next(it) for k in range(rank)])

    def lower(self, bz):
        bz.reshape_view(self.x, self.result)


@irdl_op_definition
class BroadcastToOp(SameDtype, IkOp):
    """numpy's broadcast_to: x's dims must be 1 (statically) or equal the target's."""

    name = "ik.broadcast_to"
    x = operand_def(TensorType)
    sizes = var_operand_def(TensorType)
    result = result_def(TensorType)
    PARAMS: ClassVar = {"shape": ()}
    FUSIBLE: ClassVar = True

    @property
    def SHAPE_OPERANDS(self):  # noqa: N802
        return tuple(range(1, len(self.operands)))

    @classmethod
    def shape_rule(cls, d, operands, p):
        xs = d.shape_of(operands[0])
        target = target_dims(d, p.shape, operands[1:])
        if len(xs) > len(target):
            raise ShapeError(f"cannot broadcast an array of rank {len(xs)} to rank {len(target)}")
        off = len(target) - len(xs)
        for k, s in enumerate(xs):
            if not (isinstance(s, int) and s == 1):
                target[off + k] = d.check_eq(target[off + k], s,
                                             f"cannot broadcast dim {k} of x to size of dim {off + k}")
        return [target]


    def evaluate(self, p, x, *sizes):
        it = iter(sizes)
        shape = [int(next(it)) if s == DYN else s for s in p.shape]
        return [np.asarray(np.broadcast_to(x, shape), order="C")]

    def emit_element(self, em, idx):
        return em.operand(self.x, idx)

    def vjp(self, g, ins, out):
        x = ins[0]
        gx = unbroadcast(g, x, batch_dims(g, out)) if float_dtype(x) else None
        return [gx] + [None] * (len(ins) - 1)

    def jvp(self, ts, ins, out):
        return None if ts[0] is None else K.broadcast_to(ts[0], out.shape)


@irdl_op_definition
class ConcatenateOp(IkOp):
    """Join arrays along an existing axis."""

    name = "ik.concatenate"
    inputs = var_operand_def(TensorType)
    result = result_def(TensorType)
    PARAMS: ClassVar = {"axis": 0}

    @classmethod
    def check_operands(cls, operands, p):
        if not operands:
            raise ShapeError("need at least one array to concatenate")
        ranks = {len(v.type.get_shape()) for v in operands}
        if len(ranks) != 1:
            raise ShapeError(f"all inputs must have the same rank, got ranks {sorted(ranks)}")
        if ranks == {0}:
            raise ShapeError("zero-dimensional arrays cannot be concatenated")

    @classmethod
    def shape_rule(cls, d, operands, p):
        shapes = [d.shape_of(v) for v in operands]
        out = list(shapes[0])
        out[p.axis] = 0
        for k, s in enumerate(shapes):
            for j in range(len(out)):
                if j == p.axis:
                    out[j] = d.add(out[j], s[j])
                else:
                    out[j] = d.check_eq(out[j], s[j], f"input {k} differs in dim {j} from input 0")
        return [out]

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        from irkit.dtypes import promote
        return [promote(*dtypes)]

    def evaluate(self, p, *xs):
        return [np.concatenate(xs, axis=p.axis).astype(dtype_of(self.result.type), copy=False)]

    def lower(self, bz):
        """Each input copied into its place along `axis`."""
        dims = bz.result_dims(self)[0]
        out = bz.alloc(self.result.type, dims)
        axis = self.params.axis
        odt = dtype_of(self.result.type)
        offset: object = 0
        for v in self.inputs:
            src = bz.buffer_of(v)
            vdt = dtype_of(v.type)
            off = bz.cur.as_index(offset)

            def body(c, ivs, _, src=src, off=off, vdt=vdt):
                x = S.convert(c, c.emit(memref.LoadOp.get(src.memref, ivs)), vdt, odt)
                target = list(ivs)
                target[axis] = c.emit(arith.AddiOp(ivs[axis], off))
                c.emit(memref.StoreOp.get(x, out.memref, target))
                return []
            bz.cur.loop_nest(src.dims, [], body)
            offset = bz.d.add(offset, src.dims[axis])
        bz.set_result(self.result, out)

    def vjp(self, g, ins, out):
        """Each input's part of g, along axis."""
        axis = self.params.axis + batch_dims(g, out)
        grads, start = [], 0
        for x in ins:
            stop = start + x.shape[self.params.axis]
            part = g[(slice(None),) * axis + (slice(start, stop),)]
            grads.append(as_dtype_of(part, x) if float_dtype(x) else None)
            start = stop
        return grads

    def jvp(self, ts, ins, out):
        if all(t is None for t in ts):
            return None
        parts = [t if t is not None else K.zeros_like(x, out.dtype) for t, x in zip(ts, ins)]
        return as_dtype_of(K.concatenate(parts, self.params.axis), out)


@irdl_op_definition
class DimOp(IkOp):
    """x.shape[axis] as a 0-d int64 tensor."""

    name = "ik.dim"
    x = operand_def(TensorType)
    result = result_def(TensorType)
    PARAMS: ClassVar = {"axis": 0}
    FUSIBLE: ClassVar = True

    @classmethod
    def check_operands(cls, operands, p):
        rank = len(operands[0].type.get_shape())
        if not 0 <= p.axis < rank:
            raise ShapeError(f"axis {p.axis} is out of bounds for an array of rank {rank}")

    @classmethod
    def shape_rule(cls, d, operands, p):
        return [[]]

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        return [np.dtype(np.int64)]

    def evaluate(self, p, x):
        return [np.asarray(x.shape[p.axis], dtype=np.int64)]

    def index_value(self, d):
        return d.shape_of(self.x)[self.params.axis]

    def emit_element(self, em, idx):
        size = em.dims(self.x)[self.params.axis]
        size = em.index(size) if isinstance(size, int) else size
        return em.emit(arith.IndexCastOp(size, i64))


OPS = [ReshapeOp, TransposeOp, ExpandDimsOp, SqueezeOp, BroadcastToOp, ConcatenateOp, DimOp]
