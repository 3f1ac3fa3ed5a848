"""The upstream `arith` dialect as irkit loads it: xDSL's ops plus `arith.remf`.

xDSL 0.74 lacks `arith.remf` (MLIR's floating remainder, C's fmod), which
numpy's `%` and `//` on floats need. It is defined here with MLIR's name and
syntax, so the loops level stays upstream MLIR that mlir-opt reads.
"""

from xdsl.dialects.arith import Arith, FloatingPointLikeBinaryOperation
from xdsl.ir import Dialect
from xdsl.irdl import irdl_op_definition


@irdl_op_definition
class RemFOp(FloatingPointLikeBinaryOperation):
    """Floating remainder with the sign of the dividend (C's fmod)."""

    name = "arith.remf"


ARITH = Dialect("arith", [*Arith.operations, RemFOp], list(Arith.attributes), list(Arith._interfaces))
