"""Rewrites as data: a table of small rules, each a function from an op to its
replacement (or None), applied by one pattern (tinygrad's PatternMatcher, MLIR's DRR).

A rule reads like the identity it states and builds its replacement with the
Python API (`irkit.ops`); the new ops are built detached, with the matched op's
source location, and inserted before it only when the replacement is accepted.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
from xdsl.ir import Operation, SSAValue
from xdsl.pattern_rewriter import PatternRewriter, RewritePattern

from irkit import graph
from irkit.dialects.ik.base import op_location
from irkit.dialects.ik.create import ConstantOp
from irkit.variable import Variable

Rule = Callable[[Operation], "SSAValue | Variable | None"]


def splat(v: SSAValue):
    """The single value every element of `v` has when it is known (a splat constant, or a
    broadcast, fill or reshape of one), else None."""
    from irkit.dialects import ik as I
    op = v.owner
    if isinstance(op, ConstantOp):
        return op.splat_value() if op.result.type.get_shape() else op.array()[()]
    if isinstance(op, (I.BroadcastToOp, I.ExpandDimsOp, I.SqueezeOp, I.ReshapeOp, I.FillOp)):
        return splat(op.operands[0])
    return None


def is_const(v: SSAValue, value: float) -> bool:
    s = splat(v)
    return s is not None and not (isinstance(s, (float, np.floating)) and np.isnan(s)) and s == value


def owner(v: SSAValue, cls: type) -> Operation | None:
    """v's defining op when it is a `cls`."""
    op = v.owner
    return op if isinstance(op, cls) else None


def var(v: SSAValue) -> Variable:
    return Variable(v)


class RuleTable(RewritePattern):
    """Applies the first rule of `rules[type(op)]` that gives a replacement of the same type."""

    def __init__(self, rules: Iterable[tuple[type | tuple[type, ...], Rule]]) -> None:
        self.rules: dict[type, list[Rule]] = {}
        for classes, rule in rules:
            for cls in classes if isinstance(classes, tuple) else (classes,):
                self.rules.setdefault(cls, []).append(rule)

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        rules = self.rules.get(type(op))
        if not rules:
            return
        for rule in rules:
            # the replacement is built detached and inserted only once accepted, so a
            # rejected one leaves the IR untouched (and the walker sees no change)
            with graph.detached(op_location(op)) as created:
                new = rule(op)
            value = new.value if isinstance(new, Variable) else new
            if value is None or value.type != op.results[0].type:
                graph.discard(created)
                continue
            graph.attach_before(value, op, rewriter)
            graph.discard(created)
            rewriter.replace(op, [], [value])
            return
