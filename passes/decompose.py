"""`decompose`: composite ops (softmax, log_softmax, logsumexp) become their
max-shifted formulas over primitive ops, so that fusion can make kernels of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import builtin
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern

from irkit import graph
from irkit.dialects.ik.base import op_location
from irkit.variable import Variable


class Decompose(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        rule = getattr(op, "decompose", None)
        if rule is None:
            return
        with graph.inserting_before(op, op_location(op), rewriter):
            new = rule(*[Variable(v) for v in op.operands])
        rewriter.replace(op, [], [new.value])


@dataclass(frozen=True)
class DecomposePass(ModulePass):
    """Expand composite ops into primitive ones."""

    name = "decompose"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        PatternRewriteWalker(Decompose()).rewrite_module(op)
