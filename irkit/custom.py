"""`ik.OpFromGraph`: a user-defined op made from a graph, with optional custom derivatives
(PyTensor's OpFromGraph, JAX's custom_vjp/custom_jvp).

    x, y = ik.vector("x"), ik.vector("y")
    def safe_norm_vjp(inputs, outputs, cotangents):
        (x,), (n,), (g,) = inputs, outputs, cotangents
        return [g * x / ik.maximum(n, 1e-12)]
    safe_norm = ik.OpFromGraph([x], [ik.sqrt(ik.sum(x * x))], name="safe_norm", vjp=safe_norm_vjp)
    z = safe_norm(some_vector)            # a variable, like any op's result

Calling it puts an `ikad.custom` op in the graph whose body is the graph. A derivative
uses `vjp(inputs, outputs, output_cotangents) -> input cotangents` (None for "no
gradient") and `jvp(inputs, outputs, input_tangents) -> output tangents` when given:
without jvp, forward mode differentiates the vjp (double Lop); without vjp, both modes
go through the body. The op is inlined once derivatives are taken, so it fuses like
the ops it is made of. Rules are Python functions, kept by name in this process: IR
text that names a rule no process has registered is differentiated through its body.
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any, Callable, Sequence

from xdsl.dialects.builtin import StringAttr
from xdsl.ir import Region

from irkit import graph
from irkit import ops as K
from irkit.dialects.autodiff import CustomOp, YieldOp
from irkit.errors import DTypeError, GradientUndefinedError, ShapeError, with_location
from irkit.types import format_shape
from irkit.variable import Variable

_RULES: "weakref.WeakValueDictionary[str, OpFromGraph]" = weakref.WeakValueDictionary()
_counter = itertools.count()


def rule_for(op: CustomOp) -> "OpFromGraph | None":
    return _RULES.get(op.rule.data)


class OpFromGraph:
    """An op defined by a graph from `inputs` to `outputs`, with optional derivative rules."""

    def __init__(self, inputs: Sequence[Variable], outputs: Any, name: str | None = None,
                 vjp: Callable | None = None, jvp: Callable | None = None) -> None:
        from irkit.function import build_module
        self.single = not isinstance(outputs, (list, tuple))
        outs = [outputs] if self.single else list(outputs)
        self.inputs = list(inputs)
        self.outputs = [K.as_variable(o) for o in outs]
        module, shared = build_module(self.inputs, self.outputs, {})
        if shared:
            names = ", ".join(repr(s.name) for s in shared)
            raise ValueError(f"OpFromGraph: the graph reads shared variable(s) {names}; pass them as inputs")
        self._func = next(iter(module.ops))
        base = name or "op"
        self.name = f"{base}#{next(_counter)}"
        self.vjp, self.jvp = vjp, jvp
        if vjp is not None and not callable(vjp) or jvp is not None and not callable(jvp):
            raise TypeError("OpFromGraph: vjp and jvp must be functions")
        _RULES[self.name] = self

    def __repr__(self) -> str:
        return f"<OpFromGraph {self.name}: {len(self.inputs)} inputs, {len(self.outputs)} outputs>"

    def __call__(self, *args: Any) -> Any:
        if len(args) != len(self.inputs):
            raise TypeError(f"{self.name} takes {len(self.inputs)} inputs, got {len(args)}")
        values = []
        for k, (a, v) in enumerate(zip(args, self.inputs)):
            a = K.as_variable(a, v.dtype)
            if a.dtype != v.dtype:
                raise DTypeError(f"{self.name}: input {k} must be {v.dtype.name}, not {a.dtype.name}")
            if a.ndim != v.ndim or any(s is not None and t is not None and s != t
                                       for s, t in zip(v.static_shape, a.static_shape)):
                raise ShapeError(f"{self.name}: input {k} must have shape {format_shape(v.static_shape)}, "
                                 f"not {format_shape(a.static_shape)}")
            values.append(a)
        body = self._func.body.clone()
        block = body.block
        ret = block.last_op
        yielded = list(ret.operands)
        block.erase_op(ret)
        block.add_op(YieldOp(yielded))
        op = CustomOp.build(operands=[[a.value for a in values]], result_types=[[o.type for o in self.outputs]],
                            regions=[Region()], properties={"rule": StringAttr(self.name)})
        op.body.add_block(body.detach_block(block))
        graph.place_located(op)  # where the user called it: errors of its rules name that line
        outs = [Variable(r) for r in op.results]
        return outs[0] if self.single else outs

    # -- the rules the autodiff pass calls ---------------------------------------------------
    def vjp_rule(self, cts, ins, outs):
        if any(c is not None and c.ndim != o.ndim for c, o in zip(cts, outs)):
            # ik.jacobian/ik.hessian push a batch of cotangents (extra leading dims) through the
            # rules at once; a user's rule is written for one and would broadcast it wrongly
            raise GradientUndefinedError(
                f"{self.name}: its custom vjp takes one cotangent per output, not the batch of them that "
                "ik.jacobian and ik.hessian (or ik.Lop with batched eval points) push through; use ik.Rop "
                "or ik.grad per row, or an OpFromGraph without vjp (differentiated through its body)")
        cts = [c if c is not None else K.zeros_like(o) for c, o in zip(cts, outs)]
        return self._checked(list(self.vjp(ins, outs, cts)), ins, "vjp", "cotangent", "input")

    def jvp_rule(self, ts, ins, outs):
        if self.jvp is None:
            return NotImplemented
        ts = [t if t is not None else K.zeros_like(x) for t, x in zip(ts, ins)]
        got = self.jvp(ins, outs, ts)
        got = [got] if not isinstance(got, (list, tuple)) else list(got)
        results = self._checked(got, outs, "jvp", "tangent", "output")
        return results[0] if len(results) == 1 else results

    def _checked(self, got: list, like: list[Variable], rule: str, what: str, of: str) -> list:
        """A rule's derivatives: one per value (None: zero), each cast to the value's dtype and
        of its shape; a wrong shape would broadcast silently into a wrong gradient."""
        if len(got) != len(like):
            raise GradientUndefinedError(f"{self.name}: its {rule} returned {len(got)} {what}s for {len(like)} "
                                         f"{of}s (None for an {of} with a zero {what})")
        out = []
        for k, (g, x) in enumerate(zip(got, like)):
            if g is not None:
                g = K.cast(K.as_variable(g, x.dtype), x.dtype)
                if g.ndim != x.ndim or any(a is not None and b is not None and a != b
                                           for a, b in zip(g.static_shape, x.static_shape)):
                    raise ShapeError(with_location(
                        f"{self.name}: its {rule} returned a {what} of shape {format_shape(g.static_shape)} for "
                        f"{of} {k}, of shape {format_shape(x.static_shape)}", graph.current_location()))
            out.append(g)
        return out


def inline(op: CustomOp) -> None:
    """Replace a custom op by the ops of its body."""
    from xdsl.rewriter import InsertPoint, Rewriter
    block = op.body.block
    mapping = dict(zip(block.args, op.args))
    point = InsertPoint.before(op)
    yielded = []
    for inner in list(block.ops):
        if isinstance(inner, YieldOp):
            yielded = [mapping.get(v, v) for v in inner.values]
            continue
        clone = inner.clone(value_mapper=mapping)
        Rewriter.insert_op(clone, point)
        for old, new in zip(inner.results, clone.results):
            mapping[old] = new
    Rewriter.replace_op(op, [], yielded)

