"""Graph leaves: named inputs (`ik.scalar`, `ik.vector`, `ik.matrix`, `ik.tensor`, ...)
and shared variables (`ik.shared`), whose value lives between calls.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from xdsl.dialects.builtin import StringAttr

from irkit.dialects.ik.create import PlaceholderOp
from irkit.dtypes import as_dtype
from irkit.errors import DTypeError, ShapeError
from irkit.types import format_shape, tensor_type
from irkit.variable import Variable


def _placeholder(name: str | None, dtype: np.dtype, shape: Sequence[int | None], kind: str) -> PlaceholderOp:
    for k, s in enumerate(shape):
        if s is not None and (not isinstance(s, (int, np.integer)) or s < 0):
            raise ShapeError(f"{name or 'input'}: size {s!r} of dim {k} must be a non-negative int or None")
    op = PlaceholderOp.create(result_types=[tensor_type(dtype, shape)],
                              properties={"label": StringAttr(f"{kind}:{name or ''}")})
    return op


def tensor(name: str | None = None, shape: Sequence[int | None] | None = None, dtype: Any = None,
           ndim: int | None = None) -> Variable:
    """A named input. `shape` has an int per static dim and None per dynamic one."""
    if shape is None:
        if ndim is None:
            raise TypeError("ik.tensor needs shape= (None for a dynamic dim) or ndim=")
        shape = (None,) * ndim
    elif ndim is not None and ndim != len(shape):
        raise ShapeError(f"ik.tensor: ndim={ndim} does not match shape {tuple(shape)}")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"an input's name must be a string, not {type(name).__name__}")
    shape = tuple(None if s is None else int(s) for s in shape)
    op = _placeholder(name, as_dtype(dtype), shape, "input")
    var = Variable(op.result, name)
    op.ik_leaf = var
    return var


def scalar(name: str | None = None, dtype: Any = None) -> Variable:
    """A 0-d input."""
    return tensor(name, (), dtype)


def vector(name: str | None = None, dtype: Any = None, shape: Sequence[int | None] = (None,)) -> Variable:
    """A 1-d input."""
    return tensor(name, shape, dtype, ndim=1)


def matrix(name: str | None = None, dtype: Any = None,
           shape: Sequence[int | None] = (None, None)) -> Variable:
    """A 2-d input."""
    return tensor(name, shape, dtype, ndim=2)


def tensor3(name: str | None = None, dtype: Any = None) -> Variable:
    return tensor(name, (None,) * 3, dtype)


def tensor4(name: str | None = None, dtype: Any = None) -> Variable:
    return tensor(name, (None,) * 4, dtype)


def row(name: str | None = None, dtype: Any = None) -> Variable:
    """A (1, n) input: broadcasts along its first axis."""
    return tensor(name, (1, None), dtype)


def col(name: str | None = None, dtype: Any = None) -> Variable:
    """An (n, 1) input: broadcasts along its second axis."""
    return tensor(name, (None, 1), dtype)


def _typed(kind, dtype):
    def make(name: str | None = None) -> Variable:
        return kind(name, dtype)
    make.__doc__ = f"{kind.__doc__} ({dtype})"
    return make


iscalar = lscalar = _typed(scalar, "int64")
ivector = lvector = _typed(vector, "int64")
imatrix = lmatrix = _typed(matrix, "int64")
fscalar, fvector, fmatrix = _typed(scalar, "float32"), _typed(vector, "float32"), _typed(matrix, "float32")
dscalar, dvector, dmatrix = _typed(scalar, "float64"), _typed(vector, "float64"), _typed(matrix, "float64")
bscalar, bvector, bmatrix = _typed(scalar, "bool"), _typed(vector, "bool"), _typed(matrix, "bool")


class SharedVariable(Variable):
    """A variable whose value lives between calls; functions read it and `updates=` write it.

    Its type has a dynamic size for each dim except those of size 1 (which broadcast), unless
    `shape=` says otherwise; `set_value` keeps the dtype and rank and those static sizes."""

    __slots__ = ("container",)

    def __init__(self, value: np.ndarray, name: str | None, shape: tuple) -> None:
        op = _placeholder(name, value.dtype, shape, "shared")
        super().__init__(op.result, name)
        op.ik_leaf = self
        self.container = [value]

    def get_value(self, borrow: bool = False) -> np.ndarray:
        """The current value: a copy, or the array itself with borrow=True (do not modify it)."""
        v = self.container[0]
        return v if borrow else v.copy()

    def set_value(self, value: Any, borrow: bool = False) -> None:
        """Replace the value (copied unless borrow=True); dtype and rank must stay."""
        self.container[0] = self._check(value, borrow)

    def _check(self, value: Any, borrow: bool) -> np.ndarray:
        arr = np.asarray(value)
        dt = self.dtype
        label = f"shared variable {self.name!r}" if self.name else "shared variable"
        if arr.dtype != dt:
            lossless = arr.dtype != object and np.can_cast(arr.dtype, dt, "safe")
            from_python = not isinstance(value, (np.ndarray, np.generic)) and arr.dtype != object \
                and np.can_cast(arr.dtype, dt, "same_kind")
            if not (lossless or from_python):
                raise DTypeError(f"{label} has dtype {dt.name}; cannot set a value of dtype "
                                 f"{arr.dtype.name} (it would lose precision)")
        if arr.ndim != self.ndim:
            raise ShapeError(f"{label} has rank {self.ndim} (shape {format_shape(self.static_shape)}); "
                             f"cannot set a value of shape {arr.shape}")
        for k, (s, got) in enumerate(zip(self.static_shape, arr.shape)):
            if s is not None and s != got:
                raise ShapeError(f"{label} has static size {s} in dim {k}; cannot set a value of shape {arr.shape}")
        if borrow and arr.dtype == dt and arr.flags.c_contiguous and arr.flags.aligned and arr.dtype.isnative:
            return arr
        return np.array(arr, dtype=dt, order="C", copy=True)


def shared(value: Any, name: str | None = None, dtype: Any = None,
           shape: Sequence[int | None] | None = None, borrow: bool = False) -> SharedVariable:
    """A shared variable holding a copy of `value` (the array itself with borrow=True)."""
    if isinstance(value, Variable):
        raise TypeError("ik.shared takes a value (a number or an array), not a symbolic variable")
    if isinstance(value, float) and dtype is None:
        dtype = "floatX"
    arr = np.asarray(value)
    dt = as_dtype(dtype if dtype is not None else arr.dtype, "dtype of shared value")
    if shape is None:
        shape = tuple(1 if s == 1 else None for s in arr.shape)
    else:
        shape = tuple(shape)
        if len(shape) != arr.ndim:
            raise ShapeError(f"shape {shape} does not match the value's shape {arr.shape}")
        for k, (s, got) in enumerate(zip(shape, arr.shape)):
            if s is not None and s != got:
                raise ShapeError(f"static size {s} of dim {k} does not match the value's shape {arr.shape}")
    if borrow and arr.dtype == dt and arr.flags.c_contiguous and arr.flags.aligned:
        init = arr
    else:
        init = np.array(arr, dtype=dt, order="C", copy=True)
    return SharedVariable(init, name, shape)


def leaf_of(value) -> Variable | None:
    """The input or shared variable a placeholder result stands for."""
    op = value.owner
    return getattr(op, "ik_leaf", None) if isinstance(op, PlaceholderOp) else None
