"""`autodiff`: derivative ops (`ikad.grad`, `ikad.vjp`, `ikad.jvp`) become tensor ops.

Each is expanded where it stands, in program order, so that one nested in another's
forward graph (grad of grad) is already plain tensor ops when the outer one is
taken. Reverse mode walks the ops before the derivative op backwards, from the
seeds, calling each op's `vjp` rule; forward mode walks them forwards calling
`jvp`, and takes the derivative of the op's vjp rule (the double-Lop trick) for
an op that states no jvp. Only values that depend on the variables are visited;
`ikad.stop_gradient` and the op's `constant(...)` values stop a derivative, and
integer and bool values never carry one. `ikad.stop_gradient` is removed at the end.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import builtin, func
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from irkit import graph
from irkit import ops as K
from irkit.dialects.autodiff import CustomOp, GradOp, JvpOp, StopGradientOp, VjpOp, depends_on
from irkit.dialects.ik.base import describe, op_location
from irkit.errors import DisconnectedInputError, GradientUndefinedError
from irkit.types import dtype_of
from irkit.variable import Variable


def rule_for_op(op):
    from irkit.custom import rule_for
    return rule_for(op)


def is_float(v: SSAValue) -> bool:
    return hasattr(v.type, "get_element_type") and dtype_of(v.type).kind == "f"


def _name(v: SSAValue) -> str:
    return repr(v.name_hint) if v.name_hint else f"a {dtype_of(v.type).name} value"


class Differentiator:
    """Expands the derivative ops of one block (a function body)."""

    def __init__(self, block: Block) -> None:
        self.block = block

    def ops_before(self, anchor: Operation) -> list[Operation]:
        out = []
        for op in self.block.ops:
            if op is anchor:
                return out
            out.append(op)
        return out

    def active(self, sources, anchor: Operation, consts: set) -> set[SSAValue]:
        """Float values before `anchor` that depend on `sources` (not through constants)."""
        act = {v for v in sources if is_float(v) and v not in consts}
        for op in self.ops_before(anchor):
            if isinstance(op, StopGradientOp) or not any(v in act for v in op.operands):
                continue
            act.update(r for r in op.results if is_float(r) and r not in consts)
        return act

    # -- reverse mode ---------------------------------------------------------------
    def backward(self, anchor: Operation, seeds, wrt, consts: set) -> list[Variable | None]:
        """Cotangents of `wrt` given cotangents `seeds` [(value, Variable)] of later values."""
        act = self.active(wrt, anchor, consts)
        ct: dict[SSAValue, Variable] = {}
        for v, c in seeds:
            if v in act and c is not None:
                ct[v] = c if v not in ct else ct[v] + c
        for op in reversed(self.ops_before(anchor)):
            if not any(r in ct for r in op.results) or not any(v in act for v in op.operands):
                continue
            ins = [Variable(v) for v in op.operands]
            with graph.inserting_before(anchor, op_location(op)):
                try:
                    if hasattr(op, "vjp_multi"):  # ops with several results (custom ops)
                        grads = op.vjp_multi([ct.get(r) for r in op.results], ins,
                                             [Variable(r) for r in op.results])
                    elif len(op.results) != 1 or not hasattr(op, "vjp"):
                        raise GradientUndefinedError("it has no gradient")
                    else:
                        grads = op.vjp(ct[op.results[0]], ins, Variable(op.results[0]))
                except GradientUndefinedError as e:
                    raise GradientUndefinedError(f"{describe(op)}: {e}") from None
            for v, gv in zip(op.operands, grads):
                if gv is not None and v in act:
                    ct[v] = gv if v not in ct else ct[v] + gv
        return [ct.get(w) for w in wrt]

    # -- forward mode -----------------------------------------------------------------
    def forward(self, anchor: Operation, wrt, tangents, consts: set) -> dict[SSAValue, Variable]:
        tan = {w: t for w, t in zip(wrt, tangents) if w not in consts and is_float(w)}
        for op in self.ops_before(anchor):
            if isinstance(op, StopGradientOp) or not any(v in tan for v in op.operands):
                continue
            out = [r for r in op.results if is_float(r) and r not in consts]
            if not out:
                continue
            ts = [tan.get(v) for v in op.operands]
            ins = [Variable(v) for v in op.operands]
            with graph.inserting_before(anchor, op_location(op)):
                if isinstance(op, CustomOp):
                    got = rule_for_op(op).jvp_rule(ts, ins, [Variable(r) for r in op.results])
                    if got is NotImplemented:
                        got = self._custom_jvp_from_vjp(anchor, op, ts, ins)
                    for r, t in zip(op.results, got if isinstance(got, list) else [got]):
                        if t is not None:
                            tan[r] = t
                    continue
                if hasattr(op, "jvp_multi"):  # region ops (scan, if) with several results
                    for r, t in zip(op.results, op.jvp_multi(ts, ins, [Variable(r) for r in op.results])):
                        if t is not None:
                            tan[r] = t
                    continue
                if len(op.results) != 1:
                    raise GradientUndefinedError(f"{describe(op)}: no derivative through an op with several results")
                y = Variable(op.results[0])
                rule = getattr(op, "jvp", None)
                got = rule(ts, ins, y) if rule is not None else NotImplemented
                if got is NotImplemented:
                    got = self._jvp_from_vjp(anchor, op, ts, ins, y)
            if got is not None:
                tan[op.results[0]] = got
        return tan

    def _jvp_from_vjp(self, anchor, op, ts, ins, y) -> Variable | None:
        """J t as the derivative of u -> <vjp(u), t> with respect to u (linear in u)."""
        rule = getattr(op, "vjp", None)
        if rule is None:
            raise GradientUndefinedError(f"{describe(op)} has no derivative")
        u = K.zeros_like(y)
        gs = rule(u, ins, y)
        seeds = [(g.value, t) for g, t in zip(gs, ts) if g is not None and t is not None]
        if not seeds:
            return None
        return self.backward(anchor, seeds, [u.value], set())[0]

    def _custom_jvp_from_vjp(self, anchor, op, ts, ins) -> list:
        """Each output's tangent from the custom vjp rule, by the double-Lop trick."""
        outs = [Variable(r) for r in op.results]
        out = []
        for k, y in enumerate(outs):
            u = K.zeros_like(y)
            cts = [u if j == k else None for j in range(len(outs))]
            gs = op.vjp_multi(cts, ins, outs)
            seeds = [(g.value, t) for g, t in zip(gs, ts) if g is not None and t is not None]
            out.append(self.backward(anchor, seeds, [u.value], set())[0] if seeds else None)
        return out

    # -- the ops ------------------------------------------------------------------------
    def expand(self, op: Operation) -> None:
        loc = op_location(op)
        mode = op.disconnected.data if op.disconnected is not None else "raise"
        consts = set(op.consts)
        with graph.inserting_before(op, loc):
            if isinstance(op, JvpOp):
                tan = self.forward(op, list(op.wrt), [Variable(t) for t in op.tangents], consts)
                results = [tan[o] if o in tan else K.zeros_like(Variable(o)) for o in op.outs]
                Rewriter.replace_op(op, [], [_typed(r, o.type).value for r, o in zip(results, op.results_)])
                return
            if isinstance(op, GradOp):
                cost = op.cost[0]
                seeds = [(cost, K.ones((), dtype_of(cost.type)))]
            else:
                seeds = [(v, Variable(c)) for v, c in zip(op.outs, op.cotangents)]
            grads = self.backward(op, seeds, list(op.wrt), consts)
            results = []
            connected = depends_on([v for v, _ in seeds], op.wrt, consts)
            for w, g, r in zip(op.wrt, grads, op.grads):
                if g is None:
                    g = self._zero_gradient(w, seeds, mode if w not in connected else "ignore", op)
                results.append(_typed(g, r.type).value)
        Rewriter.replace_op(op, [], results)

    def _zero_gradient(self, w: SSAValue, seeds, mode: str, op: Operation) -> Variable:
        """The gradient of a variable no derivative reached: zeros, if it is connected only
        through integer values or `mode` allows a disconnected one."""
        what = "the cost does not depend on" if isinstance(op, GradOp) else "the outputs do not depend on"
        message = f"{describe(op)}: {what} {_name(w)}"
        if mode == "raise":
            raise DisconnectedInputError(message + " (pass disconnected_inputs='ignore' for a zero gradient)")
        if mode == "warn":
            warnings.warn(message + "; its gradient is zero", stacklevel=2)
        v, c = seeds[0]
        nb = c.ndim - len(v.type.get_shape())
        return K.zeros(list(c.shape[:nb]) + list(Variable(w).shape), dtype_of(w.type))


def _typed(g: Variable, t) -> Variable:
    """g with exactly the result type the derivative op promised: its dtype, and its static
    dims (checked at run time where g's are dynamic) and dynamic ones."""
    from irkit.dialects.ik.elementwise import CastOp
    from irkit.dialects.ik.shape import BroadcastToOp
    if g.dtype != dtype_of(t):
        g = K.cast(g, dtype_of(t))
    want = [None if d < 0 else d for d in t.get_shape()]
    if len(want) != g.ndim:
        raise GradientUndefinedError(f"a derivative of rank {g.ndim} where rank {len(want)} was expected")
    if any(w is not None and s is None for w, s in zip(want, g.static_shape)):
        sizes = [K.dim(g, k) for k, w in enumerate(want) if w is None]
        op = BroadcastToOp.make([g.value, *[s.value for s in sizes]],
                                shape=tuple(-2 if w is None else w for w in want))
        g = Variable(graph.place(op).results[0])
    if g.value.type != t:  # g is more static than promised: the same values, a more general type
        g = Variable(graph.place(CastOp.create(operands=[g.value], result_types=[t])).results[0])
    return g


def expand_block(block: Block) -> None:
    from irkit.custom import inline, rule_for
    for op in list(block.ops):  # custom ops without a vjp rule: differentiate their bodies
        if isinstance(op, CustomOp) and (rule_for(op) is None or rule_for(op).vjp is None):
            inline(op)
    diff = Differentiator(block)
    for op in list(block.ops):
        if isinstance(op, (GradOp, VjpOp, JvpOp)):
            diff.expand(op)
    for op in list(block.ops):
        if isinstance(op, StopGradientOp):
            Rewriter.replace_op(op, [], [op.x])
        elif isinstance(op, CustomOp):
            inline(op)


@dataclass(frozen=True)
class AutodiffPass(ModulePass):
    """Expand derivative ops (grad, vjp, jvp) into tensor ops with each op's rules."""

    name = "autodiff"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        for f in op.walk():
            if isinstance(f, func.FuncOp) and f.body.blocks:
                expand_block(f.body.block)
