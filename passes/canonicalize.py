"""`canonicalize`: algebraic identities of the tensor level, as a table, plus the
upstream canonicalization patterns of the ops that declare them (arith, scf, ...).

Each identity applies only when the replacement has exactly the op's type (no
broadcast or dtype change is lost). Identities that are false with NaN or inf
(x * 0 -> 0, x - x -> 0) are not here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects import builtin
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import GreedyRewritePatternApplier, PatternRewriteWalker
from xdsl.transforms.canonicalize import CanonicalizationRewritePattern
from xdsl.transforms.dead_code_elimination import region_dce

from irkit import graph
from irkit import ops as K
from irkit.dialects import ik as I
from irkit.passes.rules import RuleTable, is_const, owner, splat, var
from irkit.types import dtype_of


def _same(a, b) -> bool:
    return a.type == b.type


def add_zero(op):
    """x + 0 -> x and 0 + x -> x."""
    if is_const(op.rhs, 0) and _same(op.lhs, op.result):
        return op.lhs
    if is_const(op.lhs, 0) and _same(op.rhs, op.result):
        return op.rhs


def sub_zero(op):
    """x - 0 -> x."""
    if is_const(op.rhs, 0) and _same(op.lhs, op.result):
        return op.lhs


def mul_one(op):
    """x * 1 -> x and 1 * x -> x."""
    if is_const(op.rhs, 1) and _same(op.lhs, op.result):
        return op.lhs
    if is_const(op.lhs, 1) and _same(op.rhs, op.result):
        return op.rhs


def div_one(op):
    """x / 1 -> x."""
    if is_const(op.rhs, 1) and _same(op.lhs, op.result):
        return op.lhs


def neg_neg(op):
    """-(-x) -> x."""
    inner = owner(op.x, I.NegOp)
    if inner is not None:
        return inner.x


def sub_neg(op):
    """a - (-b) -> a + b."""
    inner = owner(op.rhs, I.NegOp)
    if inner is not None:
        return K.add(var(op.lhs), var(inner.x))


def add_neg(op):
    """a + (-b) -> a - b."""
    inner = owner(op.rhs, I.NegOp)
    if inner is not None:
        return K.sub(var(op.lhs), var(inner.x))


def pow_const(op):
    """x ** 1 -> x, x ** 2 -> square(x), x ** 0.5 -> sqrt(x) (floats)."""
    e = splat(op.rhs)
    if e is None or not _same(op.lhs, op.result):
        return None
    if e == 1:
        return op.lhs
    if e == 2:
        return K.square(var(op.lhs))
    if e == 0.5 and dtype_of(op.lhs.type).kind == "f":
        return K.sqrt(var(op.lhs))


def exact_cast(src: np.dtype, dst: np.dtype) -> bool:
    """Whether every value of src is exactly a value of dst (numpy's "safe" says yes to
    int64 -> float64, which rounds above 2**53)."""
    if not np.can_cast(src, dst, "safe"):
        return False
    if src.kind in "iu" and dst.kind == "f":
        return np.finfo(dst).nmant + 1 >= src.itemsize * 8 - (src.kind == "i")
    return True


def cast_cast(op):
    """cast(cast(x, t1), t2) -> cast(x, t2) when x -> t1 loses nothing."""
    inner = owner(op.x, I.CastOp)
    if inner is not None and exact_cast(dtype_of(inner.x.type), dtype_of(inner.result.type)):
        return K.cast(var(inner.x), dtype_of(op.result.type))
    if dtype_of(op.x.type) == dtype_of(op.result.type):
        return op.x


def transpose_transpose(op):
    """transpose(transpose(x, p), q) -> transpose(x, p∘q); the identity permutation -> x."""
    perm = op.params.perm
    if list(perm) == list(range(len(perm))):
        return op.x
    inner = owner(op.x, I.TransposeOp)
    if inner is not None:
        p = inner.params.perm
        return K.transpose(var(inner.x), [p[a] for a in perm])


def reshape_reshape(op):
    """reshape(reshape(x), s) -> reshape(x, s); a reshape to x's own static shape -> x."""
    if _same(op.x, op.result) and all(d >= 0 for d in op.x.type.get_shape()):
        return op.x
    inner = owner(op.x, I.ReshapeOp)
    if inner is not None:
        return graph.place(I.ReshapeOp.make([inner.x, *op.sizes], shape=op.params.shape)).results[0]


def squeeze_expand(op):
    """squeeze(expand_dims(x, axes), axes) -> x."""
    inner = owner(op.x, I.ExpandDimsOp)
    if inner is not None and inner.params.axes == op.params.axes:
        return inner.x


def log_exp(op):
    """log(exp(x)) -> x."""
    inner = owner(op.x, I.ExpOp)
    if inner is not None:
        return inner.x


def where_same(op):
    """where(c, x, x) -> x."""
    if op.a is op.b and _same(op.a, op.result):
        return op.a


def idempotent(op):
    """relu(relu(x)) -> relu(x), abs(abs(x)) -> abs(x), abs(-x) -> abs(x)."""
    inner = owner(op.x, type(op))
    if inner is not None:
        return op.x
    if isinstance(op, I.AbsOp) and (neg := owner(op.x, I.NegOp)) is not None:
        return K.abs(var(neg.x))


def _increments_of_zeros(v):
    """The ik.scatter "inc" into zeros that only v's one user reads (the gradient of an
    indexing), else None."""
    op = owner(v, I.ScatterOp)
    if op is not None and op.params.mode == "inc" and is_const(op.x, 0) and op.result.has_one_use():
        return op
    return None


def _scatter_into(s, x, y):
    return graph.place(I.ScatterOp.make([x, y, *s.indices], **s.params.as_dict())).results[0]


def add_scatter(op):
    """x + scatter_inc(0, y, idx) -> scatter_inc(x, y, idx): an SGD step on an embedding
    touches its selected rows only (the sum may round differently where indices repeat). Not
    when either side broadcasts: the scatter's axes count from its own rank."""
    for x, g in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
        s = _increments_of_zeros(g)
        if s is not None and _same(x, op.result) and _same(g, op.result):
            return _scatter_into(s, x, s.y)


def sub_scatter(op):
    """x - scatter_inc(0, y, idx) -> scatter_inc(x, -y, idx)."""
    s = _increments_of_zeros(op.rhs)
    if s is not None and _same(op.lhs, op.result) and _same(op.rhs, op.result):
        return _scatter_into(s, op.lhs, K.neg(var(s.y)).value)


def mul_scatter(op):
    """c * scatter_inc(0, y, idx) -> scatter_inc(0, c * y, idx) for a finite scalar c."""
    for c, g in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
        s = _increments_of_zeros(g)
        value = splat(c)
        if s is not None and not c.type.get_shape() and value is not None and np.isfinite(value):
            scaled = K.mul(var(c), var(s.y))
            if scaled.dtype == dtype_of(s.y.type):
                return _scatter_into(s, s.x, scaled.value)


def dim_of_operand(op):
    """dim(f(x, ...), k) -> dim(x, j) when f's shape rule makes that result dim operand x's
    dim j (an elementwise op's, log_softmax's): the value itself is then no longer needed for
    its size, so fusion may recompute it where it is read instead of storing it (a dynamic
    dim broadcasts only when it is a static 1; otherwise the rule's run-time check makes the
    two equal before anything reads the result)."""
    from irkit.dialects.ik.base import IkOp
    from irkit.shapes import Sym, SymbolicDims
    producer = op.x.owner
    if not isinstance(producer, IkOp) or isinstance(producer, I.DimOp) or not hasattr(producer, "shape_rule"):
        return None
    operands = [v for v in producer.operands if hasattr(v.type, "get_shape")]

    def shape_of(v):
        return [d if d >= 0 else Sym((v, j)) for j, d in enumerate(v.type.get_shape())]
    shapes = {v: shape_of(v) for v in operands}
    algebra = SymbolicDims(lambda v: shapes[v] if v in shapes else shape_of(v))
    try:
        dims = producer.shape_rule(algebra, producer.operands, producer.params)
        got = algebra.norm(dims[list(producer.results).index(op.x)][op.params.axis])
    except Exception:  # noqa: BLE001 - a rule that needs more than symbols: leave the dim alone
        return None
    if not isinstance(got, Sym):
        return None
    for v in operands:
        for j, sym in enumerate(shapes[v]):
            if isinstance(sym, Sym) and algebra.norm(sym) is got:
                return K.dim(var(v), j)
    return None


RULES = [
    (I.DimOp, dim_of_operand),
    (I.AddOp, add_zero), (I.AddOp, add_neg), (I.AddOp, add_scatter),
    (I.SubOp, sub_zero), (I.SubOp, sub_neg), (I.SubOp, sub_scatter),
    (I.MulOp, mul_one), (I.MulOp, mul_scatter), (I.TrueDivOp, div_one),
    (I.NegOp, neg_neg), (I.PowOp, pow_const), (I.CastOp, cast_cast),
    (I.TransposeOp, transpose_transpose), (I.ReshapeOp, reshape_reshape),
    (I.SqueezeOp, squeeze_expand), (I.LogOp, log_exp), (I.WhereOp, where_same),
    ((I.ReluOp, I.AbsOp), idempotent),
]


@dataclass(frozen=True)
class CanonicalizePass(ModulePass):
    """Algebraic identities (x + 0, -(-x), transpose of transpose, ...) and upstream
    canonicalization patterns, until nothing changes; then dead code goes."""

    name = "canonicalize"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        pattern = GreedyRewritePatternApplier([RuleTable(RULES), CanonicalizationRewritePattern()],
                                              ctx=ctx, folding_enabled=False)
        PatternRewriteWalker(pattern, post_walk_func=region_dce).rewrite_module(op)
