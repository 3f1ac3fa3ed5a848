"""Tensor and memref types: xDSL's builtin types, with `None` for a dynamic dim in Python."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from xdsl.dialects.builtin import DYNAMIC_INDEX, MemRefType, TensorType
from xdsl.ir import Attribute

from irkit.dtypes import element_type, from_element_type

StaticShape = tuple  # tuple[int | None, ...]


def tensor_type(dtype: np.dtype, shape: Sequence[int | None]) -> TensorType:
    return TensorType(element_type(dtype), [DYNAMIC_INDEX if d is None else int(d) for d in shape])


def memref_type(dtype: np.dtype, shape: Sequence[int | None]) -> MemRefType:
    return MemRefType(element_type(dtype), [DYNAMIC_INDEX if d is None else int(d) for d in shape])


def static_shape(t: Attribute) -> StaticShape:
    """The shape of a tensor or memref type, `None` for each dynamic dim."""
    return tuple(None if d == DYNAMIC_INDEX else d for d in t.get_shape())


def dtype_of(t: Attribute) -> np.dtype:
    return from_element_type(t.get_element_type())


def rank_of(t: Attribute) -> int:
    return len(t.get_shape())


def format_shape(shape: Sequence[int | None]) -> str:
    """(3, ?) style, as error messages show shapes."""
    inner = ", ".join("?" if d is None else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def format_type(t: Attribute) -> str:
    return f"{dtype_of(t).name}{format_shape(static_shape(t))}"
