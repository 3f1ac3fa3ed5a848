"""`stabilize`: rewrites for numerical stability, each an identity that avoids an
overflow, an underflow or a cancellation:

    log(softmax(x))        -> log_softmax(x)
    log(1 + x)             -> log1p(x)
    exp(x) - 1             -> expm1(x)
    log(sigmoid(x))        -> -softplus(-x)
    log(1 - sigmoid(x))    -> -softplus(x)
    log(sum(exp(x)))       -> logsumexp(x)   (max-shifted)

softmax, log_softmax and logsumexp are themselves computed max-shifted (see
`decompose`).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import builtin
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriteWalker
from xdsl.transforms.dead_code_elimination import region_dce

from irkit import ops as K
from irkit.dialects import ik as I
from irkit.passes.rules import RuleTable, is_const, owner, var


def log_softmax(op):
    """log(softmax(x)) -> log_softmax(x)."""
    sm = owner(op.x, I.SoftmaxOp)
    if sm is not None:
        return K.log_softmax(var(sm.x), sm.params.axis)


def log1p(op):
    """log(1 + x) -> log1p(x)."""
    add = owner(op.x, I.AddOp)
    if add is None:
        return None
    for one, x in ((add.lhs, add.rhs), (add.rhs, add.lhs)):
        if is_const(one, 1) and x.type == add.result.type:
            return K.log1p(var(x))


def expm1(op):
    """exp(x) - 1 -> expm1(x)."""
    e = owner(op.lhs, I.ExpOp)
    if e is not None and is_const(op.rhs, 1) and e.result.type == op.result.type:
        return K.expm1(var(e.x))


def log_sigmoid(op):
    """log(sigmoid(x)) -> -softplus(-x); log(1 - sigmoid(x)) -> -softplus(x)."""
    s = owner(op.x, I.SigmoidOp)
    if s is not None:
        return -K.softplus(-var(s.x))
    sub = owner(op.x, I.SubOp)
    if sub is not None and is_const(sub.lhs, 1) and (s := owner(sub.rhs, I.SigmoidOp)) is not None \
            and s.result.type == sub.result.type:
        return -K.softplus(var(s.x))


def logsumexp(op):
    """log(sum(exp(x))) -> logsumexp(x)."""
    s = owner(op.x, I.SumOp)
    if s is not None and (e := owner(s.x, I.ExpOp)) is not None:
        return K.logsumexp(var(e.x), s.params.axes, s.params.keepdims)


RULES = [(I.LogOp, log_softmax), (I.LogOp, log1p), (I.LogOp, log_sigmoid), (I.LogOp, logsumexp),
         (I.SubOp, expm1)]


@dataclass(frozen=True)
class StabilizePass(ModulePass):
    """Numerically stable forms: log_softmax, log1p, expm1, softplus, logsumexp."""

    name = "stabilize"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        PatternRewriteWalker(RuleTable(RULES), post_walk_func=region_dce).rewrite_module(op)
