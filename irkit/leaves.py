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
    `shape=` says otherwise; `set_value` keeps the dtype and rank and those static sizes.

    `default_update` (Theano's): an expression for the variable's next value, which every
    `ik.function` whose graph reads the variable applies after each call, unless its
    `updates=` already name the variable or it is made with `no_default_updates=`; `ik.scan`
    applies it after each step of a step function that reads the variable, or `step_update`
    where that is set (a random stream's counter moves by one a step, and to a fresh range of
    2**32 a call, so that calls never meet even when a scan's updates are not passed on)."""

    __slots__ = ("container", "default_update", "step_update")

    def __init__(self, value: np.ndarray, name: str | None, shape: tuple) -> None:
        op = _placeholder(name, value.dtype, shape, "shared")
        super().__init__(op.result, name)
        op.ik_leaf = self
        self.container = [value]
        self.default_update: Variable | None = None
        self.step_update: Variable | None = None

    def __reduce__(self) -> tuple:
        """Pickled as its value, name and static shape: unpickling makes a new variable holding
        the value. Pickle's memo makes everything pickled together (two functions that read
        this variable) share that one new variable, as they shared this one. A default update
        (an expression that may read this variable itself) goes in the state, which pickle
        restores once the variable exists."""
        state = {}
        for attr in ("default_update", "step_update"):
            update = getattr(self, attr, None)
            if update is not None:
                from irkit import serialize
                state[attr] = serialize.expression_state(
                    update, f"the {attr.replace('_', ' ')} of shared variable {self.name!r}")
        return _restore_shared, (self.get_value(borrow=True), self.name, self.static_shape), state or None

    def __setstate__(self, state: dict) -> None:
        from irkit import serialize
        for attr, saved in state.items():
            setattr(self, attr, serialize.expression_from_state(saved))

    def get_value(self, borrow: bool = False) -> np.ndarray:
        """The current value: a copy, or the array itself with borrow=True (do not modify it;
        a function that updates this variable may write the new value into it, as Theano's
        in-place updates do). A value a `target="cuda"` function left on the GPU is copied to
        the host here, once."""
        v = self.container[0]
        if not isinstance(v, np.ndarray):  # a DeviceArray: its host copy is made once, read-only
            v = v.host()
        return v if borrow else v.copy()

    def set_value(self, value: Any, borrow: bool = False) -> None:
        """Replace the value (copied unless borrow=True: then functions that update this
        variable may write into that array, unless it is read-only); dtype and rank must stay."""
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


def _restore_shared(value: np.ndarray, name: str | None, shape: tuple) -> SharedVariable:
    """A pickled shared variable, made again: the value is checked like any set_value."""
    var = SharedVariable(np.asarray(value), name, shape)
    var.set_value(value, borrow=True)
    return var


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


def collect_default_updates(outputs: Sequence[Variable], updated: Sequence[SharedVariable] = (),
                            givens: dict | None = None, skip: Sequence[SharedVariable] = (),
                            stop_at: Sequence[Variable] = (),
                            per_step: bool = False) -> list[tuple[SharedVariable, Variable]]:
    """(shared, shared.default_update) for every shared variable that `outputs` read and that
    has a default update, except those in `updated` (the caller's own updates win) or `skip`.
    The default updates' own graphs are read too (an update may read another variable that
    has one). `givens` (value -> replacement) are followed as `ik.function` follows them;
    the graph is not read beyond `stop_at` (a scan step's non-sequences, say: values made
    outside the step, fixed for all its steps). `per_step`: for a scan's step, where a
    variable's `step_update` (when set) is its update."""
    givens = givens or {}
    excluded = {id(s) for s in updated} | {id(s) for s in skip}
    found: list[tuple[SharedVariable, Variable]] = []
    seen_values: set = {v.value for v in stop_at}
    seen_ops: set = set()
    stack = [o.value for o in outputs]
    while stack:
        v = stack.pop()
        while v in givens and v not in seen_values:  # a replaced value is not read
            seen_values.add(v)
            v = givens[v]
        if v in seen_values:
            continue
        seen_values.add(v)
        op = v.owner
        if isinstance(op, PlaceholderOp):
            leaf = leaf_of(v)
            update = None
            if isinstance(leaf, SharedVariable) and id(leaf) not in excluded:
                update = leaf.step_update if per_step and leaf.step_update is not None else leaf.default_update
            if update is not None:
                excluded.add(id(leaf))
                found.append((leaf, update))
                stack.append(update.value)
        elif op is not None and op not in seen_ops:  # region ops (scan, ifelse) list what they read as operands
            seen_ops.add(op)
            stack.extend(op.operands)
    return found
