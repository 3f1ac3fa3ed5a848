"""An irkit pass written outside irkit: `x * 2 -> x + x` on the tensor level.

Installed (`pip install examples/plugin`), it registers itself through the entry-point
group `irkit.passes` and then appears in `irkit-opt --list-passes` and in pipelines:

    irkit-opt model.mlir -p 'double-to-add,canonicalize'
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import builtin
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriteWalker

from irkit import ops as K
from irkit.dialects import ik as I
from irkit.passes.rules import RuleTable, is_const, var


def mul_two(op: I.MulOp):
    """x * 2 -> x + x, when the sum has the product's exact type."""
    for x, c in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
        if is_const(c, 2) and x.type == op.result.type:
            return K.add(var(x), var(x))
    return None


@dataclass(frozen=True)
class DoubleToAdd(ModulePass):
    """Rewrite x * 2 as x + x (an example plugin pass)."""

    name = "double-to-add"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        PatternRewriteWalker(RuleTable([(I.MulOp, mul_two)])).rewrite_module(op)
