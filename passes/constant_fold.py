"""`constant-fold`: ops whose operands are all constants become constants.

The value comes from the op's own numpy reference (`evaluate`), so folding
agrees with numpy by construction. Results larger than `max-elements` stay
ops (a zeros((4096, 4096)) is cheaper to fill at run time than to carry), and
an op that numpy rejects (an index out of bounds) is left for the run time to
report with the user's inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects import builtin
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern

from irkit.dialects.ik.base import IkOp
from irkit.dialects.ik.create import ConstantOp, PlaceholderOp


class FoldConstants(RewritePattern):
    def __init__(self, max_elements: int) -> None:
        self.max_elements = max_elements

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        if not isinstance(op, IkOp) or isinstance(op, (ConstantOp, PlaceholderOp)) or not op.results:
            return
        if not all(isinstance(v.owner, ConstantOp) for v in op.operands):
            return
        for r in op.results:
            shape = r.type.get_shape()
            if any(d < 0 for d in shape) or int(np.prod(shape)) > self.max_elements:
                return
        try:
            with np.errstate(all="ignore"):
                values = op.evaluate(op.params, *[v.owner.array() for v in op.operands])
        except Exception:  # numpy's own error: leave it to run time, where inputs are known
            return
        new_ops = []
        for r, value in zip(op.results, values):
            value = np.asarray(value)
            if value.shape != tuple(r.type.get_shape()):
                return
            c = ConstantOp.from_array(value.astype(np.dtype(value.dtype), copy=False))
            if c.result.type != r.type:
                return
            c.location = op.location
            new_ops.append(c)
        rewriter.replace(op, new_ops, [c.result for c in new_ops])


@dataclass(frozen=True)
class ConstantFoldPass(ModulePass):
    """Evaluate ops on constant operands with their numpy reference."""

    name = "constant-fold"
    max_elements: int = 65536

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        PatternRewriteWalker(FoldConstants(self.max_elements)).rewrite_module(op)
