"""`Variable`: a symbolic tensor, as the Python API hands it to users.

A Variable wraps one xDSL SSA value (the result of a tensor-level op) and
gives it numpy's operators and methods. `.dtype`, `.ndim` and `.name` are
plain Python; `.shape` is a tuple of symbolic int64 scalars (`n = x.shape[0]`)
usable wherever a size is expected.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from xdsl.ir import SSAValue

from irkit.types import dtype_of, format_shape, static_shape

_NAME_OK = re.compile(r"[A-Za-z_][A-Za-z0-9_$.]*")


def _defers(o: Any) -> bool:
    """Whether `o` is another kind of operand that implements the reflected operator itself
    (a sparse matrix: `dense @ S`, `dense * S`), which Python then calls."""
    return getattr(o, "__irkit_defer__", False)


class Variable:
    """A symbolic tensor: the result of an op, or a named input."""

    __slots__ = ("value", "_name", "_index_of", "__weakref__")
    __array_priority__ = 1000  # numpy defers to our operators: np_array + x builds a graph

    def __init__(self, value: SSAValue, name: str | None = None) -> None:
        self.value = value
        self._name = None
        self._index_of = None  # (base, key) when made by x[key]; set/inc_subtensor read it
        if name is not None:
            self.name = name

    # -- plain attributes ------------------------------------------------------
    @property
    def name(self) -> str | None:
        return self._name

    @name.setter
    def name(self, name: str | None) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"a variable's name must be a string, not {type(name).__name__}")
        self._name = name
        if name and _NAME_OK.fullmatch(name):
            self.value.name_hint = name

    @property
    def type(self):
        return self.value.type

    @property
    def dtype(self) -> np.dtype:
        return dtype_of(self.value.type)

    @property
    def ndim(self) -> int:
        return len(self.value.type.get_shape())

    @property
    def static_shape(self) -> tuple:
        """The shape as far as it is known while building: ints, None where dynamic."""
        return static_shape(self.value.type)

    @property
    def shape(self) -> tuple["Variable", ...]:
        return tuple(_ops.dim(self, k) for k in range(self.ndim))

    @property
    def size(self) -> "Variable":
        return _ops.prod_dims(self.shape)

    @property
    def T(self) -> "Variable":  # noqa: N802
        return _ops.transpose(self)

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return f"Variable({label}{self.dtype.name}, shape={format_shape(self.static_shape)})"

    def __reduce__(self):
        # a node of a graph being built (xDSL objects, not picklable); a compiled function
        # carries its graph as text and pickles (irkit/serialize.py)
        from irkit.serialize import NotPicklableError
        raise NotPicklableError(f"{self!r} is a node of a graph being built and does not pickle; pickle the "
                                "compiled function instead (ik.function(...) carries its graph)")

    def __bool__(self) -> bool:
        raise TypeError("a symbolic variable has no truth value: use ik.where for elementwise "
                        "choices (or compare numbers after calling the compiled function)")

    def __len__(self) -> int:
        if self.ndim and self.static_shape[0] is not None:
            return self.static_shape[0]
        raise TypeError("len() of a variable whose first dim is not static; use x.shape[0]")

    def __iter__(self):
        raise TypeError("a symbolic variable cannot be iterated; index it (x[i]) instead")

    __hash__ = object.__hash__

    # -- arithmetic --------------------------------------------------------------
    def __add__(self, o): return _ops.add(self, o)
    def __radd__(self, o): return _ops.add(o, self)
    def __sub__(self, o): return _ops.sub(self, o)
    def __rsub__(self, o): return _ops.sub(o, self)
    def __mul__(self, o): return NotImplemented if _defers(o) else _ops.mul(self, o)
    def __rmul__(self, o): return _ops.mul(o, self)
    def __truediv__(self, o): return _ops.true_divide(self, o)
    def __rtruediv__(self, o): return _ops.true_divide(o, self)
    def __floordiv__(self, o): return _ops.floor_divide(self, o)
    def __rfloordiv__(self, o): return _ops.floor_divide(o, self)
    def __mod__(self, o): return _ops.mod(self, o)
    def __rmod__(self, o): return _ops.mod(o, self)
    def __pow__(self, o): return _ops.pow(self, o)
    def __rpow__(self, o): return _ops.pow(o, self)
    def __matmul__(self, o): return NotImplemented if _defers(o) else _ops.matmul(self, o)
    def __rmatmul__(self, o): return _ops.matmul(o, self)
    def __neg__(self): return _ops.neg(self)
    def __pos__(self): return self
    def __abs__(self): return _ops.abs(self)
    def __invert__(self): return _ops.invert(self)
    def __and__(self, o): return _ops.bitwise_and(self, o)
    def __rand__(self, o): return _ops.bitwise_and(o, self)
    def __or__(self, o): return _ops.bitwise_or(self, o)
    def __ror__(self, o): return _ops.bitwise_or(o, self)
    def __xor__(self, o): return _ops.bitwise_xor(self, o)
    def __rxor__(self, o): return _ops.bitwise_xor(o, self)
    def __eq__(self, o): return _ops.eq(self, o)  # type: ignore[override]
    def __ne__(self, o): return _ops.ne(self, o)  # type: ignore[override]
    def __lt__(self, o): return _ops.lt(self, o)
    def __le__(self, o): return _ops.le(self, o)
    def __gt__(self, o): return _ops.gt(self, o)
    def __ge__(self, o): return _ops.ge(self, o)
    def __getitem__(self, key): return _ops.getitem(self, key)

    # -- numpy's methods ---------------------------------------------------------
    def sum(self, axis=None, keepdims=False): return _ops.sum(self, axis, keepdims)
    def prod(self, axis=None, keepdims=False): return _ops.prod(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return _ops.mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return _ops.max(self, axis, keepdims)
    def min(self, axis=None, keepdims=False): return _ops.min(self, axis, keepdims)
    def argmax(self, axis=None, keepdims=False): return _ops.argmax(self, axis, keepdims)
    def argmin(self, axis=None, keepdims=False): return _ops.argmin(self, axis, keepdims)
    def var(self, axis=None, keepdims=False, ddof=0): return _ops.var(self, axis, keepdims, ddof)
    def std(self, axis=None, keepdims=False, ddof=0): return _ops.std(self, axis, keepdims, ddof)
    def any(self, axis=None, keepdims=False): return _ops.any(self, axis, keepdims)
    def all(self, axis=None, keepdims=False): return _ops.all(self, axis, keepdims)
    def dot(self, o): return _ops.dot(self, o)
    def clip(self, lo=None, hi=None): return _ops.clip(self, lo, hi)
    def astype(self, dtype): return _ops.cast(self, dtype)
    def flatten(self, ndim: int = 1): return _ops.flatten(self, ndim)
    def ravel(self): return _ops.flatten(self)
    def squeeze(self, axis=None): return _ops.squeeze(self, axis)

    def reshape(self, *shape: Any, ndim: int | None = None) -> "Variable":
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _ops.reshape(self, shape)

    def transpose(self, *axes: Any) -> "Variable":
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return _ops.transpose(self, axes or None)


from irkit import ops as _ops  # noqa: E402  (ops builds Variables; Variable's methods call ops)
