"""What the derivative rules of `ik` ops share: undoing a broadcast, expanding a
reduced cotangent back, and zeros of an operand's shape.

Rules receive the cotangent `g` of their result, which may carry extra leading
batch dims (`nb = g.ndim - out.ndim`): `ik.jacobian` pushes a whole identity
through the rules at once. Rules therefore index axes relative to the operand
and shift them by `nb`.
"""

from __future__ import annotations

from typing import Sequence


from irkit import ops as K
from irkit.variable import Variable


def batch_dims(g: Variable, out: Variable) -> int:
    """The leading batch dims g carries beyond out's rank."""
    return g.ndim - out.ndim


def unbroadcast(g: Variable, x: Variable, nb: int = 0) -> Variable:
    """Sum g (of a broadcast result's shape, after nb batch dims) down to x's shape."""
    xs = x.static_shape
    extra = g.ndim - nb - len(xs)
    axes = list(range(nb, nb + extra))
    gs = g.static_shape
    for k, s in enumerate(xs):
        if s == 1 and gs[nb + extra + k] != 1:
            axes.append(nb + extra + k)
    if axes:
        g = K.sum(g, axis=tuple(axes), keepdims=True)
    if extra:
        g = K.squeeze(g, axis=tuple(range(nb, nb + extra)))
    return as_dtype_of(g, x)


def as_dtype_of(g: Variable, x: Variable) -> Variable:
    return g if g.dtype == x.dtype else K.cast(g, x.dtype)


def batch_shape(g: Variable, nb: int) -> list:
    return list(g.shape[:nb])


def zeros_for(x: Variable, g: Variable, nb: int) -> Variable:
    """Zeros of x's shape, after g's nb batch dims, in x's dtype."""
    return K.zeros(batch_shape(g, nb) + list(x.shape), x.dtype)


def expand_reduced(g: Variable, x: Variable, axes: Sequence[int], keepdims: bool, nb: int) -> Variable:
    """A reduction's cotangent broadcast back over the reduced axes of x."""
    if not keepdims and axes:
        g = K.expand_dims(g, tuple(nb + a for a in axes))
    return K.broadcast_to(g, batch_shape(g, nb) + list(x.shape))


def float_dtype(v: Variable) -> bool:
    return v.dtype.kind == "f"


