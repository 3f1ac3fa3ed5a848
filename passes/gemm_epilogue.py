"""`gemm-epilogue`: a product added to a matrix becomes BLAS's gemm, whose epilogue
does the addition:

    c + a @ b,  a @ b + c        -> gemm(c, a, b, alpha=1, beta=1)
    c - a @ b                    -> gemm(c, a, b, alpha=-1, beta=1)
    c + s * (a @ b), c - (a @ b) * s, ...  (s a 0-d scalar)  -> gemm(c, a, b, alpha=±s, beta=1)

The SGD update `W - lr * (x.T @ d)` is the case that matters: as a product and then
an elementwise kernel it writes the gradient (zeroed first by BLAS) and then reads it
back with W; as one gemm, BLAS adds into a buffer holding W, which is W's own when the
function updates W in place (see `bufferize`). Only matrices of one float dtype, c of
exactly the sum's type (no broadcasting), and a product (and scaling) used nowhere else.
Run after cse (uses are counted) and before fuse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects import builtin
from xdsl.ir import SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriteWalker
from xdsl.transforms.dead_code_elimination import region_dce

from irkit import ops as K
from irkit.dialects import ik as I
from irkit.passes.rules import RuleTable, owner, splat, var
from irkit.types import dtype_of


def _single_use(v: SSAValue) -> bool:
    return sum(1 for _ in v.uses) == 1


def _product(v: SSAValue, t) -> I.MatmulOp | None:
    """v's matmul when it is a product of two matrices of v's type and dtype, used only here."""
    mm = owner(v, I.MatmulOp)
    if mm is None or v.type != t or not _single_use(v):
        return None
    if any(len(x.type.get_shape()) != 2 or dtype_of(x.type) != dtype_of(t) for x in (mm.a, mm.b)):
        return None
    return mm


def _scaled_product(v: SSAValue, t) -> tuple[I.MatmulOp, SSAValue | None] | None:
    """(product, 0-d scale or None) when v is a @ b, s * (a @ b) or (a @ b) * s."""
    mm = _product(v, t)
    if mm is not None:
        return mm, None
    mul = owner(v, I.MulOp)
    if mul is None or not _single_use(v):
        return None
    for s, x in ((mul.lhs, mul.rhs), (mul.rhs, mul.lhs)):
        if s.type.get_shape() or dtype_of(s.type) != dtype_of(t):
            continue
        mm = _product(x, t)
        if mm is not None:
            return mm, s
    return None


def accumulate(op):
    """c ± [s *] (a @ b) -> gemm(c, a, b, ±s, 1)."""
    t = op.result.type
    dt = dtype_of(t)
    if len(t.get_shape()) != 2 or dt not in (np.float32, np.float64):
        return None
    sign = -1.0 if isinstance(op, I.SubOp) else 1.0
    pairs = [(op.lhs, op.rhs)] + ([(op.rhs, op.lhs)] if isinstance(op, I.AddOp) else [])
    for c, x in pairs:
        got = _scaled_product(x, t) if c.type == t else None
        if got is None:
            continue
        mm, scale = got
        known = splat(scale) if scale is not None else 1.0
        if known is not None:
            alpha = K.constant(sign * float(known), dt)
        else:
            alpha = var(scale) if sign > 0 else -var(scale)
        return K.gemm(var(c), var(mm.a), var(mm.b), alpha, K.constant(1.0, dt))
    return None


RULES = [((I.AddOp, I.SubOp), accumulate)]


@dataclass(frozen=True)
class GemmEpiloguePass(ModulePass):
    """c ± s (a @ b) as one gemm: BLAS adds the product into (a copy of) c."""

    name = "gemm-epilogue"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        PatternRewriteWalker(RuleTable(RULES), post_walk_func=region_dce).rewrite_module(op)
