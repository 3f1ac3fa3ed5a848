"""Ops of `ik` that make arrays: constants, fill (zeros/ones/full), arange, eye,
and `placeholder`, the leaf a Python variable stands for while a graph is built.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from xdsl.dialects import arith
from xdsl.dialects.builtin import BytesAttr, DenseIntOrFPElementsAttr, TensorType, i64
from xdsl.irdl import irdl_op_definition, operand_def, prop_def, result_def, var_operand_def

from irkit.dialects.ik import scalar as S
from irkit.dialects.ik.base import IkOp
from irkit.dialects.ik.shape import target_dims
from irkit.errors import CompileError
from irkit.types import dtype_of, static_shape, tensor_type


def dense_from_numpy(a: np.ndarray) -> DenseIntOrFPElementsAttr:
    """A dense attribute holding `a`; a constant array is stored as one element (a splat)."""
    a = np.asarray(a, order="C")
    t = tensor_type(a.dtype, a.shape)
    if a.size > 1 and (a == a.flat[0]).all() and not (a.dtype.kind == "f" and np.isnan(a.flat[0])):
        return DenseIntOrFPElementsAttr(t, BytesAttr(a.flat[:1].tobytes()))
    return DenseIntOrFPElementsAttr(t, BytesAttr(a.tobytes()))


def numpy_from_dense(attr: DenseIntOrFPElementsAttr) -> np.ndarray:
    dt = dtype_of(attr.type)
    shape = static_shape(attr.type)
    flat = np.frombuffer(attr.data.data, dtype=dt)
    if flat.size == 1 and int(np.prod(shape)) != 1:
        return np.full(shape, flat[0], dtype=dt)
    return flat.reshape(shape).copy()


def is_splat(attr: DenseIntOrFPElementsAttr) -> bool:
    return len(attr.data.data) == dtype_of(attr.type).itemsize


@irdl_op_definition
class ConstantOp(IkOp):
    """A constant array (a single stored element means every element is that one)."""

    name = "ik.constant"
    value = prop_def(DenseIntOrFPElementsAttr)
    result = result_def(TensorType)
    assembly_format = None  # printed as `ik.constant dense<...> : tensor<...>` (see print/parse)
    FUSIBLE: ClassVar = True

    def print(self, printer) -> None:
        printer.print_string(" ")
        if self.attributes:
            printer.print_op_attributes(self.attributes)
            printer.print_string(" ")
        data = np.frombuffer(self.value.data.data, dtype=dtype_of(self.result.type))
        if data.dtype.kind == "f" and not np.isfinite(data).all():
            # xDSL reads hex floats inside dense<[...]> as integers: use MLIR's hex-string form
            printer.print_string(f'dense<"0x{self.value.data.data.hex().upper()}"> : ')
            printer.print_attribute(self.result.type)
        else:
            printer.print_attribute(self.value)

    @classmethod
    def parse(cls, parser) -> "ConstantOp":
        attrs = parser.parse_optional_attr_dict()
        if "value" in attrs:  # the generic-looking form {value = dense<...>} : type
            value = attrs.pop("value")
            parser.parse_punctuation(":")
            parser.parse_type()
        else:
            value = parser.parse_attribute()
        if not isinstance(value, DenseIntOrFPElementsAttr):
            parser.raise_error(f"ik.constant expects a dense<...> value, got {value}")
        op = cls.create(result_types=[value.type], properties={"value": value})
        op.attributes.update(attrs)
        return op

    @classmethod
    def from_array(cls, a: np.ndarray, loc=None) -> "ConstantOp":
        attr = dense_from_numpy(a)
        return cls.create(result_types=[attr.type], properties={"value": attr})

    @classmethod
    def shape_rule(cls, d, operands, p):
        raise CompileError("ik.constant takes its type from its value")

    def verify_(self):
        from xdsl.utils.exceptions import VerifyException
        if self.result.type != self.value.type:
            raise VerifyException(f"ik.constant: result type {self.result.type} differs from "
                                  f"its value's type {self.value.type}")

    def array(self) -> np.ndarray:
        return numpy_from_dense(self.value)

    def evaluate(self, p):
        return [self.array()]

    def splat_value(self):
        """The single value of a splat constant, else None."""
        if is_splat(self.value):
            return np.frombuffer(self.value.data.data, dtype=dtype_of(self.result.type))[0]
        return None

    def index_value(self, d):
        dt = dtype_of(self.result.type)
        if self.result.type.get_shape() or dt.kind not in "iu":
            return NotImplemented
        return int(self.array())

    def emit_element(self, em, idx):
        v = self.splat_value()
        if v is not None:
            return S.constant(em, v, dtype_of(self.result.type))
        return em.constant_element(self, idx)


@irdl_op_definition
class FillOp(IkOp):
    """An array of the given shape with every element equal to `value` (zeros, ones, full)."""

    name = "ik.fill"
    value = operand_def(TensorType)
    sizes = var_operand_def(TensorType)
    result = result_def(TensorType)
    PARAMS: ClassVar = {"shape": ()}
    FUSIBLE: ClassVar = True

    @property
    def SHAPE_OPERANDS(self):  # noqa: N802
        return tuple(range(1, len(self.operands)))

    @classmethod
    def check_operands(cls, operands, p):
        if operands[0].type.get_shape():
            raise CompileError("ik.fill takes a 0-d value")

    @classmethod
    def shape_rule(cls, d, operands, p):
        dims = target_dims(d, p.shape, operands[1:])
        for k, s in enumerate(dims):
            d.check(d.le(0, s), f"ValueError: negative size in dim {k}")
        return [dims]

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        return [np.dtype(dtype) if dtype is not None else dtypes[0]]

    def evaluate(self, p, value, *sizes):
        it = iter(sizes)
        shape = [int(next(it)) if s == -2 else s for s in p.shape]
        return [np.full(shape, value, dtype=dtype_of(self.result.type))]

    def emit_element(self, em, idx):
        v = em.at(self.value, [])
        return S.convert(em, v, dtype_of(self.value.type), dtype_of(self.result.type))

    def vjp(self, g, ins, out):
        """The fill value gets the sum of g over the whole array."""
        from irkit import ops as K
        from irkit.dialects.ik.calculus import as_dtype_of, batch_dims, float_dtype
        value = ins[0]
        if not float_dtype(value):
            return [None] * len(ins)
        nb = batch_dims(g, out)
        total = K.sum(g, tuple(range(nb, g.ndim))) if g.ndim > nb else g
        return [as_dtype_of(total, value)] + [None] * (len(ins) - 1)

    def jvp(self, ts, ins, out):
        from irkit import ops as K
        return None if ts[0] is None else K.broadcast_to(K.cast(ts[0], out.dtype), out.shape)


@irdl_op_definition
class ArangeOp(IkOp):
    """start, start + step, ... up to (not including) stop; `length` is set when static."""

    name = "ik.arange"
    start = operand_def(TensorType)
    stop = operand_def(TensorType)
    step = operand_def(TensorType)
    result = result_def(TensorType)
    PARAMS: ClassVar = {"length": -1}
    SHAPE_OPERANDS: ClassVar = (0, 1, 2)
    FUSIBLE: ClassVar = True

    @classmethod
    def shape_rule(cls, d, operands, p):
        if p.length >= 0:
            return [[p.length]]
        start, stop, step = (d.value(v) for v in operands)
        d.check(d.logical_or(d.lt(step, 0), d.lt(0, step)), "ValueError: arange's step must not be zero")
        return [[d.maximum(0, d.ceildiv(d.sub(stop, start), step))]]

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        from irkit.dtypes import promote
        return [np.dtype(dtype) if dtype is not None else promote(*dtypes)]

    def evaluate(self, p, start, stop, step):
        out = np.arange(start.item(), stop.item(), step.item(), dtype=dtype_of(self.result.type))
        return [out]

    def emit_element(self, em, idx):
        dt = dtype_of(self.result.type)
        start = S.convert(em, em.at(self.start, []), dtype_of(self.start.type), dt)
        step = S.convert(em, em.at(self.step, []), dtype_of(self.step.type), dt)
        i = S.convert(em, em.emit(arith.IndexCastOp(idx[0], i64)), np.dtype(np.int64), dt)
        if dt.kind == "f":
            return em.emit(arith.AddfOp(start, em.emit(arith.MulfOp(i, step))))
        return em.emit(arith.AddiOp(start, em.emit(arith.MuliOp(i, step))))


@irdl_op_definition
class EyeOp(IkOp):
    """Ones on the k-th diagonal of an n x m array, zeros elsewhere."""

    name = "ik.eye"
    sizes = var_operand_def(TensorType)
    result = result_def(TensorType)
    PARAMS: ClassVar = {"shape": (), "k": 0}
    FUSIBLE: ClassVar = True

    @property
    def SHAPE_OPERANDS(self):  # noqa: N802
        return tuple(range(len(self.operands)))

    @classmethod
    def shape_rule(cls, d, operands, p):
        dims = target_dims(d, p.shape, operands)
        for k, s in enumerate(dims):
            d.check(d.le(0, s), f"ValueError: negative size in dim {k}")
        return [dims]

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        return [np.dtype(dtype) if dtype is not None else np.dtype(np.float64)]

    def evaluate(self, p, *sizes):
        it = iter(sizes)
        n, m = [int(next(it)) if s == -2 else s for s in p.shape]
        return [np.eye(n, m, p.k, dtype=dtype_of(self.result.type))]

    def emit_element(self, em, idx):
        dt = dtype_of(self.result.type)
        shifted = em.emit(arith.AddiOp(idx[0], em.index(self.params.k)))
        on = em.emit(arith.CmpiOp(shifted, idx[1], "eq"))
        return em.emit(arith.SelectOp(on, S.constant(em, 1, dt), S.constant(em, 0, dt)))


@irdl_op_definition
class PlaceholderOp(IkOp):
    """A graph leaf while building in Python: an input or a shared variable, named.

    It never reaches a compiled function: `ik.function` turns it into an argument."""

    name = "ik.placeholder"
    result = result_def(TensorType)
    assembly_format = "attr-dict `:` type($result)"
    PARAMS: ClassVar = {"label": ""}

    @classmethod
    def shape_rule(cls, d, operands, p):
        raise CompileError("ik.placeholder takes its type when it is made")

    def verify_(self):
        pass


OPS = [ConstantOp, FillOp, ArangeOp, EyeOp, PlaceholderOp]
