"""Contractions of `ik`: matmul with numpy's semantics for operands of rank >= 2
(batch dims broadcast). `ik.dot`, `ik.outer` and 1-D operands are built from
it (and from expand_dims/squeeze) by the Python API.

On the CPU, float32 and float64 matmuls call scipy's BLAS (sgemm/dgemm), one
call per batch element; other dtypes run as loops.
"""

from __future__ import annotations

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.irdl import irdl_op_definition, operand_def, result_def

from irkit.dialects.ik.base import IkOp
from irkit.dtypes import ufunc_result
from irkit.errors import ShapeError
from irkit.types import dtype_of, format_shape, static_shape


def operand_name(v, fallback: str) -> str:
    hint = getattr(v, "name_hint", None)
    return hint if hint else fallback


@irdl_op_definition
class MatmulOp(IkOp):
    """a @ b over the last two axes; leading (batch) axes broadcast."""

    name = "ik.matmul"
    a = operand_def(TensorType)
    b = operand_def(TensorType)
    result = result_def(TensorType)

    @classmethod
    def check_operands(cls, operands, p):
        for k, v in enumerate(operands):
            if len(v.type.get_shape()) < 2:
                raise ShapeError(f"operand {k} of ik.matmul must have rank >= 2 "
                                 "(the Python API handles 1-D operands)")

    @classmethod
    def shape_rule(cls, d, operands, p):
        a, b = operands
        sa, sb = d.shape_of(a), d.shape_of(b)
        na, nb = operand_name(a, "a"), operand_name(b, "b")
        d.check_eq(sa[-1], sb[-2],
                   f"cannot contract {na} (shape {format_shape(static_shape(a.type))}) with "
                   f"{nb} (shape {format_shape(static_shape(b.type))}): inner dimensions differ")
        ba, bb = sa[:-2], sb[:-2]
        rank = max(len(ba), len(bb))
        batch = []
        for i in range(rank):
            ja, jb = i - (rank - len(ba)), i - (rank - len(bb))
            if ja < 0:
                batch.append(bb[jb])
            elif jb < 0:
                batch.append(ba[ja])
            else:
                batch.append(d.broadcast(ba[ja], bb[jb], f"batch dim {i} of {na} and {nb} differ"))
        return [batch + [sa[-2], sb[-1]]]

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        return [ufunc_result(np.matmul, tuple(dtypes))]

    def evaluate(self, p, a, b):
        return [np.asarray(np.matmul(a, b)).astype(dtype_of(self.result.type), copy=False)]

    def lower(self, bz):
        bz.matmul(self)


OPS = [MatmulOp]
