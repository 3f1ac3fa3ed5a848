"""`decompose`: composite ops (softmax, log_softmax, logsumexp) become their
max-shifted formulas over primitive ops, so that fusion can make kernels of them; and a
scatter of one increment per row into zeros (the gradient of x[arange(n), labels]) becomes
the elementwise select it is (after canonicalize, whose rules turn an SGD step through an
indexing into a sparse scatter into the weights first).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import builtin
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import GreedyRewritePatternApplier, PatternRewriter, PatternRewriteWalker, RewritePattern

from irkit import graph
from irkit import ops as K
from irkit.dialects import ik as I
from irkit.dialects.ik.base import op_location
from irkit.passes.rules import RuleTable, is_const, owner, var
from irkit.variable import Variable


class Decompose(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        rule = getattr(op, "decompose", None)
        if rule is None:
            return
        with graph.inserting_before(op, op_location(op), rewriter):
            new = rule(*[Variable(v) for v in op.operands])
        rewriter.replace(op, [], [new.value])


def _sizes_of(x) -> list:
    """x's sizes: a fill's own size operands where x is one, else read off x."""
    fill = owner(x.value, I.FillOp)
    if fill is None:
        return [x.shape[k] for k in range(x.ndim)]
    sizes = iter(fill.sizes)
    return [var(next(sizes)) if d == -2 else d for d in fill.params.shape]


def one_per_row(op):
    """scatter_inc(zeros (n, m), y, (arange(n), j)) -> where(j[:, None] == arange(m), y[:, None],
    0): the gradient of x[arange(n), labels] (cross-entropy's) as elementwise work the next
    kernel fuses, not an n x m buffer of zeros written, incremented and read back. Only when
    the arange is provably all n rows (one increment each); j's bounds stay checked."""
    p = op.params
    if p.mode != "inc" or tuple(p.axes) != (0, 1) or len(op.indices) != 2 or not is_const(op.x, 0):
        return None
    shape = op.x.type.get_shape()
    rows, labels = op.indices
    arange = owner(rows, I.ArangeOp)
    if len(shape) != 2 or arange is None or not is_const(arange.start, 0) or not is_const(arange.step, 1) \
            or len(labels.type.get_shape()) != 1 or len(op.y.type.get_shape()) > 1:
        return None
    from irkit.passes.fuse import symbolic_shapes
    shapes = symbolic_shapes(op.parent_block())
    algebra = shapes["__algebra__"]
    n, k, kj = shapes[op.x][0], shapes[rows][0], shapes[labels][0]
    if not (algebra.same(n, k) and algebra.same(k, kj)):
        return None
    from irkit.random import require
    x, j = var(op.x), var(labels)
    n, m = _sizes_of(x)  # from the zeros' own sizes: reading them off x would keep x alive
    j = require(j, K.all((j >= -m) & (j < m)),
                "IndexError: ik.scatter: an index is out of bounds for axis 1")
    j = K.where(j < 0, j + m, j)
    y = K.broadcast_to(var(op.y), (n,))
    hit = K.expand_dims(j, 1) == K.expand_dims(K.arange(0, m, 1, dtype=j.dtype), 0)
    g = K.where(hit, K.expand_dims(y, 1), K.zeros((), dtype=x.dtype))
    return g if g.value.type == op.result.type else None


@dataclass(frozen=True)
class DecomposePass(ModulePass):
    """Expand composite ops into primitive ones."""

    name = "decompose"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        PatternRewriteWalker(GreedyRewritePatternApplier([Decompose(), RuleTable([(I.ScatterOp, one_per_row)])])
                             ).rewrite_module(op)
