"""Composite ops of `ik`: softmax, log_softmax, logsumexp.

They stay whole through the tensor level, so that rewrites can recognise them
(log∘softmax → log_softmax) and so that later their gradients can be the
fused, stable forms. The `decompose` pass expands each into its max-shifted
stable formula over primitive ops just before fusion, which then makes one
kernel of it.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.irdl import irdl_op_definition, operand_def, result_def

from irkit import ops as K
from irkit.dialects.ik.base import IkOp
from irkit.dialects.ik.reduce import AxesReduction
from irkit.dialects.ik.calculus import as_dtype_of, batch_dims, float_dtype
from irkit.dtypes import float_result
from irkit.errors import ShapeError
from irkit.types import dtype_of


class _AlongAxis(IkOp):
    x = operand_def(TensorType)
    result = result_def(TensorType)
    PARAMS: ClassVar = {"axis": -1}

    @classmethod
    def check_operands(cls, operands, p):
        rank = len(operands[0].type.get_shape())
        if not 0 <= p.axis < max(rank, 1) or rank == 0:
            raise ShapeError(f"axis {p.axis} is out of bounds for an array of rank {rank}")

    @classmethod
    def shape_rule(cls, d, operands, p):
        return [d.shape_of(operands[0])]

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        return [float_result(dtypes[0])]


def _np_logsumexp(x, axes, keepdims):
    m = np.max(x, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axes)


@irdl_op_definition
class SoftmaxOp(_AlongAxis):
    """exp(x) / sum(exp(x)) along `axis`, computed max-shifted."""

    name = "ik.softmax"

    def evaluate(self, p, x):
        x = x.astype(dtype_of(self.result.type))
        e = np.exp(x - np.max(x, axis=p.axis, keepdims=True))
        return [e / np.sum(e, axis=p.axis, keepdims=True)]

    def decompose(self, x):
        axis = self.params.axis
        x = K.cast(x, dtype_of(self.result.type))
        e = K.exp(x - K.max(x, axis=axis, keepdims=True))
        return e / K.sum(e, axis=axis, keepdims=True)

    def vjp(self, g, ins, out):
        """y * (g - sum(g * y)) along axis."""
        if not float_dtype(ins[0]):
            return [None]
        axis = self.params.axis + batch_dims(g, out)
        return [as_dtype_of(out * (g - K.sum(g * out, axis=axis, keepdims=True)), ins[0])]

    def jvp(self, ts, ins, out):
        if ts[0] is None:
            return None
        t = as_dtype_of(ts[0], out)
        return out * (t - K.sum(t * out, axis=self.params.axis, keepdims=True))


@irdl_op_definition
class LogSoftmaxOp(_AlongAxis):
    """log(softmax(x)) along `axis`, as x - max - log(sum(exp(x - max)))."""

    name = "ik.log_softmax"

    def evaluate(self, p, x):
        x = x.astype(dtype_of(self.result.type))
        z = x - np.max(x, axis=p.axis, keepdims=True)
        return [z - np.log(np.sum(np.exp(z), axis=p.axis, keepdims=True))]

    def decompose(self, x):
        axis = self.params.axis
        x = K.cast(x, dtype_of(self.result.type))
        z = x - K.max(x, axis=axis, keepdims=True)
        return z - K.log(K.sum(K.exp(z), axis=axis, keepdims=True))

    def vjp(self, g, ins, out):
        """g - softmax(x) * sum(g) along axis: softmax is exp(y) <= 1, so nothing overflows."""
        if not float_dtype(ins[0]):
            return [None]
        axis = self.params.axis + batch_dims(g, out)
        return [as_dtype_of(g - K.exp(out) * K.sum(g, axis=axis, keepdims=True), ins[0])]

    def jvp(self, ts, ins, out):
        if ts[0] is None:
            return None
        t = as_dtype_of(ts[0], out)
        return t - K.sum(K.exp(out) * t, axis=self.params.axis, keepdims=True)


@irdl_op_definition
class LogSumExpOp(AxesReduction):
    """log(sum(exp(x))) over `axes`, shifted by the (finite) max so it never overflows."""

    name = "ik.logsumexp"

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        return [float_result(dtypes[0])]

    def evaluate(self, p, x):
        return [np.asarray(_np_logsumexp(x.astype(dtype_of(self.result.type)), p.axes, p.keepdims))]

    def partial(self, x, out):
        """softmax(x) over axes: exp(x - logsumexp(x)), shaped like x."""
        p = self.params
        y = out if p.keepdims or not p.axes else K.expand_dims(out, p.axes)
        return K.exp(as_dtype_of(x, out) - y)

    def decompose(self, x):
        p = self.params
        x = K.cast(x, dtype_of(self.result.type))
        m = K.max(x, axis=p.axes, keepdims=True)
        m = K.where(K.isfinite(m), m, 0)
        out = K.log(K.sum(K.exp(x - m), axis=p.axes, keepdims=True)) + m
        return out if p.keepdims else K.squeeze(out, axis=p.axes)


OPS = [SoftmaxOp, LogSoftmaxOp, LogSumExpOp]
