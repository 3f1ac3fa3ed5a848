"""Dtypes: the supported set, their IR element types, and numpy 2's promotion rules.

irkit supports float32, float64, int8, int16, int32, int64, uint8 and bool.
Result dtypes of elementwise math are numpy's own (asked of numpy, so they
agree by construction), with float16 widened to float32 since irkit has no
half type. Python scalars are weak (NEP 50): `float32 tensor * 2.0` stays
float32.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np
from xdsl.dialects.builtin import (
    Float32Type,
    Float64Type,
    IntegerType,
    Signedness,
    f32,
    f64,
    i1,
    i8,
    i16,
    i32,
    i64,
)
from xdsl.ir import Attribute

from irkit.errors import DTypeError

ui8 = IntegerType(8, Signedness.UNSIGNED)

SUPPORTED: dict[str, Attribute] = {
    "float32": f32,
    "float64": f64,
    "int8": i8,
    "int16": i16,
    "int32": i32,
    "int64": i64,
    "uint8": ui8,
    "bool": i1,
}

_BY_ELEMENT: dict[Attribute, np.dtype] = {t: np.dtype(n) for n, t in SUPPORTED.items()}

_ALIASES = {"floatX": None, "float": "float64", "int": "int64", "bool_": "bool",
            "f32": "float32", "f64": "float64", "i8": "int8", "i16": "int16",
            "i32": "int32", "i64": "int64", "u8": "uint8", "i1": "bool"}


def as_dtype(dtype: Any, what: str = "dtype") -> np.dtype:
    """Normalise `dtype` (a name, a numpy dtype or type, a Python type) to a supported np.dtype."""
    from irkit.config import config
    if dtype is None:
        return np.dtype(config.floatX)
    if isinstance(dtype, str) and dtype in _ALIASES:
        dtype = _ALIASES[dtype] or config.floatX
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise DTypeError(f"unknown {what} {dtype!r}; irkit supports {', '.join(SUPPORTED)}") from None
    if dt.name not in SUPPORTED:
        raise DTypeError(f"unsupported {what} {dt.name!r}; irkit supports {', '.join(SUPPORTED)}")
    return dt.newbyteorder("=") if dt.byteorder not in "=|" else dt


def element_type(dtype: np.dtype) -> Attribute:
    return SUPPORTED[np.dtype(dtype).name]


def from_element_type(t: Attribute) -> np.dtype:
    try:
        return _BY_ELEMENT[t]
    except KeyError:
        raise DTypeError(f"element type {t} has no irkit dtype") from None


def is_float(dt: np.dtype) -> bool:
    return dt.kind == "f"


def is_int(dt: np.dtype) -> bool:
    return dt.kind in "iu"


def is_bool(dt: np.dtype) -> bool:
    return dt.kind == "b"


def is_float_type(t: Attribute) -> bool:
    return isinstance(t, (Float32Type, Float64Type))


def _widen(dt: np.dtype) -> np.dtype:
    if dt == np.float16:
        return np.dtype(np.float32)
    if dt.name not in SUPPORTED:
        if dt.kind == "u":
            return np.dtype(np.int64)
        raise DTypeError(f"numpy gives dtype {dt.name}, which irkit does not support")
    return dt


@functools.lru_cache(maxsize=None)
def ufunc_result(fn: Callable, dtypes: tuple[np.dtype, ...]) -> np.dtype:
    """The dtype numpy gives for `fn` applied to arrays of `dtypes` (float16 widened)."""
    args = [np.zeros(1, dtype=d) for d in dtypes]
    with np.errstate(all="ignore"):
        try:
            out = fn(*args)
        except TypeError as e:
            raise DTypeError(f"{getattr(fn, '__name__', fn)} is not defined for "
                             f"{', '.join(d.name for d in dtypes)}") from e
    return _widen(np.asarray(out).dtype)


def promote(*dtypes: np.dtype) -> np.dtype:
    return _widen(np.result_type(*dtypes))


def float_result(dt: np.dtype) -> np.dtype:
    """The dtype of a transcendental function of `dt` (numpy's, float16 widened)."""
    return _widen(np.promote_types(dt, np.float16))


def weak_scalar_dtype(value: int | float | bool, partner: np.dtype | None) -> np.dtype:
    """The dtype a Python scalar takes when combined with a tensor of dtype `partner` (NEP 50)."""
    from irkit.config import config
    if partner is None:
        if isinstance(value, bool):
            return np.dtype(np.bool_)
        if isinstance(value, int):
            return np.dtype(np.int64)
        return np.dtype(config.floatX) if isinstance(value, float) else np.dtype(np.float64)
    dt = _widen(np.result_type(partner, value))
    if isinstance(value, int) and not isinstance(value, bool) and dt.kind in "iu":
        info = np.iinfo(dt)
        if not info.min <= value <= info.max:
            raise DTypeError(f"Python integer {value} is out of bounds for {dt.name}")
    return dt
