"""How an op of the tensor dialect `ik` states its semantics, once.

Every op class carries, beside its operand and property definitions:

- `PARAMS`: its properties as Python values (`op.params`), with defaults;
- `shape_rule(d, operands, p)`: result shapes over a dim algebra
  (`irkit.shapes`), used for build-time types, verification, fusion and
  buffer sizes alike;
- `dtype_rule(dtypes, p, dtype)`: result dtypes;
- `evaluate(p, *arrays)`: the reference semantics on numpy arrays, used by
  constant folding and stated in numpy's own terms;
- and how it lowers: `emit_element(em, idx)` for ops that fuse into a
  kernel (one element at a time, see `irkit.passes.lower_to_loops`), or
  `lower(bz)` for ops that stand alone at the buffer level.

The verifier is generic: it reruns the rules on the operand types and
checks the result types against them.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np
from xdsl.dialects.builtin import (
    DenseArrayBase,
    FileLineColLoc,
    FloatAttr,
    IntegerAttr,
    StringAttr,
    TensorType,
    UnitAttr,
    f64,
    i64,
)
from xdsl.ir import Attribute, SSAValue
from xdsl.irdl import IRDLOperation, ParsePropInAttrDict, opt_prop_def, traits_def
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

from irkit.errors import CompileError, IrkitError, ShapeError, SourceLoc
from irkit.shapes import DimAlgebra, StaticDims
from irkit.types import dtype_of, format_type, static_shape, tensor_type


_PARAM_CONSTRAINT = {tuple: DenseArrayBase, bool: UnitAttr, int: IntegerAttr, float: FloatAttr, str: StringAttr}


class Params:
    """An op's properties as Python values: tuples of ints, ints, floats, bools, strings."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]) -> None:
        object.__setattr__(self, "_values", values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Params are read-only")

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def __repr__(self) -> str:
        return f"Params({self._values})"


def encode_param(value: Any) -> Attribute | None:
    if value is None or value is False:
        return None
    if value is True:
        return UnitAttr()
    if isinstance(value, (tuple, list)):
        return DenseArrayBase.from_list(i64, [int(v) for v in value])
    if isinstance(value, (int, np.integer)):
        return IntegerAttr(int(value), i64)
    if isinstance(value, (float, np.floating)):
        return FloatAttr(float(value), f64)
    if isinstance(value, str):
        return StringAttr(value)
    raise TypeError(f"cannot encode op parameter {value!r}")


def decode_param(attr: Attribute | None, default: Any) -> Any:
    if attr is None:
        return False if default is False else default
    if isinstance(attr, UnitAttr):
        return True
    if isinstance(attr, DenseArrayBase):
        return tuple(int(v) for v in attr.get_values())
    if isinstance(attr, IntegerAttr):
        return int(attr.value.data)
    if isinstance(attr, FloatAttr):
        return float(attr.value.data)
    if isinstance(attr, StringAttr):
        return attr.data
    raise TypeError(f"cannot decode op parameter {attr}")


def op_location(op: IRDLOperation) -> SourceLoc | None:
    loc = op.location
    if isinstance(loc, FileLineColLoc):
        return SourceLoc(loc.filename.data, loc.line.data, loc.column.data)
    return None


def describe(op: IRDLOperation) -> str:
    """`ik.add at train.py:12:  y = a + b`, for messages."""
    loc = op_location(op)
    return f"{op.name} at {loc}" if loc is not None else op.name


class IkOp(IRDLOperation):
    """Base of every tensor-level op: value semantics, pure, rules stated once."""

    PARAMS: ClassVar[dict[str, Any]] = {}
    # Operands (by position) that hold sizes or bounds: 0-d integer tensors read
    # as index values, never fused into the kernel that consumes them.
    SHAPE_OPERANDS: ClassVar[tuple[int, ...]] = ()
    # Whether the op may join an elementwise kernel (then it has emit_element).
    FUSIBLE: ClassVar[bool] = False

    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "operands attr-dict `:` functional-type(operands, results)"
    traits = traits_def(Pure())

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Declare each entry of PARAMS as an optional property (absent = the default), so
        that the op prints, parses and verifies with them."""
        super().__init_subclass__(**kwargs)
        for name, default in cls.__dict__.get("PARAMS", {}).items():
            if name not in cls.__dict__:
                setattr(cls, name, opt_prop_def(_PARAM_CONSTRAINT[type(default)]))

    # -- rules ---------------------------------------------------------------
    @classmethod
    def shape_rule(cls, d: DimAlgebra, operands: Sequence[SSAValue], p: Params) -> list[list]:
        raise CompileError(f"{cls.name} states no shape rule")

    @classmethod
    def dtype_rule(cls, dtypes: list[np.dtype], p: Params, dtype: np.dtype | None) -> list[np.dtype]:
        raise CompileError(f"{cls.name} states no dtype rule")

    @classmethod
    def check_operands(cls, operands: Sequence[SSAValue], p: Params) -> None:
        """Extra build-time checks (ranks, axes); raise ShapeError/DTypeError."""

    def evaluate(self, p: Params, *args: np.ndarray) -> list[np.ndarray]:
        raise CompileError(f"{self.name} has no numpy reference to evaluate with")

    # -- parameters ----------------------------------------------------------
    @classmethod
    def make_params(cls, given: dict[str, Any]) -> Params:
        unknown = set(given) - set(cls.PARAMS)
        if unknown:
            raise TypeError(f"{cls.name} has no parameter {', '.join(sorted(unknown))}")
        values = dict(cls.PARAMS)
        values.update(given)
        return Params(values)

    @property
    def params(self) -> Params:
        return Params({k: decode_param(self.properties.get(k), v) for k, v in self.PARAMS.items()})

    # -- construction ----------------------------------------------------------
    @classmethod
    def make(cls, operands: Sequence[SSAValue], dtype: np.dtype | None = None,
             loc: SourceLoc | None = None, **params: Any) -> "IkOp":
        """Build the op, inferring result types; static shape errors raise here."""
        p = cls.make_params(params)
        context = f"{cls.name} at {loc}" if loc is not None else cls.name
        try:
            cls.check_operands(operands, p)
            shapes = cls.shape_rule(StaticDims(context), operands, p)
            dtypes = cls.dtype_rule([dtype_of(v.type) for v in operands], p, dtype)
            if len(dtypes) == 1 and len(shapes) != 1:
                dtypes = dtypes * len(shapes)
        except IrkitError as e:
            msg = str(e)
            if not msg.startswith(cls.name):
                msg = f"{context}: {msg}"
            raise type(e)(msg) from None
        props = {}
        for k, v in p.as_dict().items():
            attr = encode_param(v)
            if attr is not None and v != cls.PARAMS.get(k, object()):
                props[k] = attr
        op = cls.create(operands=list(operands),
                        result_types=[tensor_type(dt, s) for dt, s in zip(dtypes, shapes)],
                        properties=props)
        if loc is not None:
            op.location = loc.attr()
        return op

    # -- verification --------------------------------------------------------
    def verify_(self) -> None:
        p = self.params
        try:
            self.check_operands(self.operands, p)
            shapes = self.shape_rule(StaticDims(self.name), self.operands, p)
            fixed = [dtype_of(r.type) for r in self.results]
            dtypes = self.dtype_rule([dtype_of(v.type) for v in self.operands], p,
                                     fixed[0] if fixed else None)
            if len(dtypes) == 1 and len(shapes) != 1:
                dtypes = dtypes * len(shapes)
        except (IrkitError, TypeError, ValueError, IndexError) as e:
            raise VerifyException(f"{self.name}: {e}") from e
        if len(shapes) != len(self.results):
            raise VerifyException(f"{self.name}: expected {len(shapes)} results, got {len(self.results)}")
        for k, (res, shape, dt) in enumerate(zip(self.results, shapes, dtypes)):
            if not isinstance(res.type, TensorType):
                raise VerifyException(f"{self.name}: result {k} must be a tensor, got {res.type}")
            got = static_shape(res.type)  # a result may be less static than the rule infers
            ok = len(got) == len(shape) and all(e is None or g is None or g == e for g, e in zip(got, shape))
            if not ok or dtype_of(res.type) != dt:
                raise VerifyException(
                    f"{self.name}: result {k} has type {format_type(res.type)}, but the operands give "
                    f"{dt.name}{tuple('?' if s is None else s for s in shape)}")

    # -- index values ----------------------------------------------------------
    def index_value(self, d: DimAlgebra) -> Any:
        """The value of this 0-d integer result as a dim, when it is a shape computation."""
        return NotImplemented


class SameDtype:
    """Mixin: the result has the dtype of the first operand (shape and index ops)."""

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        return [dtypes[0]]


def normalize_axis(axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1) or (rank == 0 and axis not in (0, -1)):
        raise ShapeError(f"{what} {axis} is out of bounds for an array of rank {rank}")
    return axis % rank if rank else 0


def normalize_axes(axes: int | Sequence[int] | None, rank: int, what: str = "axis") -> tuple[int, ...]:
    """None -> every axis; negative axes wrap; repeats are an error."""
    if axes is None:
        return tuple(range(rank))
    if isinstance(axes, (int, np.integer)):
        axes = (int(axes),)
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)):
            raise TypeError(f"{what} must be an int or a tuple of ints, not {type(a).__name__}")
        if not -rank <= a < rank:
            raise ShapeError(f"{what} {a} is out of bounds for an array of rank {rank}")
        out.append(int(a) % rank)
    if len(set(out)) != len(out):
        raise ShapeError(f"repeated {what} in {tuple(axes)}")
    return tuple(sorted(out))


def broadcast_rule(d: DimAlgebra, operands: Sequence[SSAValue], names: Sequence[str] | None = None) -> list:
    """numpy's broadcasting over the operands' shapes (only static 1s broadcast)."""
    shapes = [d.shape_of(v) for v in operands]
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        dim: Any = 1
        first = True
        for k, s in enumerate(shapes):
            j = i - (rank - len(s))
            if j < 0:
                continue
            name = names[k] if names else f"operand {k}"
            if first:
                dim, first = s[j], False
                continue
            dim = d.broadcast(dim, s[j], f"cannot broadcast: dim {j} of {name} does not match "
                                         f"the other operands (only dims of static size 1 broadcast)")
        out.append(dim)
    return out
