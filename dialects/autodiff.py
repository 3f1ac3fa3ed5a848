"""The autodiff level, dialect `ikad`: derivatives not yet taken.

- `ikad.grad of(%cost : ...) wrt(%W, %b : ...)`: d cost / d W and d cost / d b for a
  0-d float cost;
- `ikad.vjp of(%y : ...) by(%ct : ...) wrt(%x : ...)`: the vector-Jacobian product
  ct^T dy/dx (Lop), for any number of outputs and their cotangents;
- `ikad.jvp of(%y : ...) wrt(%x : ...) along(%t : ...)`: the Jacobian-vector product
  dy/dx t (Rop);
- `ikad.stop_gradient %x`: x, seen by every derivative as a constant;
- `ikad.custom "rule"(%a, %b) {body}`: a user-defined op (ik.OpFromGraph) whose
  derivatives may be given by the user instead of taken through its body.

Each may list `constant(...)` values that derivatives treat as constants (Theano's
consider_constant). The `autodiff` pass expands them in program order into
tensor-level ops, using the rules each `ik` op states beside its definition
(`vjp`, `jvp`), so derivative ops of derivatives (grad of grad, jvp of grad)
compose: an inner one is expanded before the outer one reads it.
"""

from __future__ import annotations

from typing import ClassVar, Iterable

from xdsl.dialects.builtin import StringAttr, TensorType
from xdsl.ir import Dialect, Operation, SSAValue
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    lazy_traits_def,
    prop_def,
    region_def,
    VarConstraint,
    base,
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    result_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.traits import HasParent, IsolatedFromAbove, IsTerminator, Pure, ReturnLike
from xdsl.utils.exceptions import VerifyException

DISCONNECTED = ("raise", "warn", "ignore")


def depends_on(roots: Iterable[SSAValue], targets: Iterable[SSAValue],
               stops: Iterable[SSAValue] = ()) -> set[SSAValue]:
    """The targets that the roots' values depend on, the sense in which a derivative
    is connected. Dependence through integer or boolean values (a comparison, an
    argmax) counts, with a zero derivative; dependence through a shape alone
    (`ik.dim`), a `stops` value or `ikad.stop_gradient` does not."""
    from irkit.dialects.ik.shape import DimOp
    want, stop = set(targets), set(stops)
    found: set[SSAValue] = set()
    seen: set[SSAValue] = set()
    stack = list(roots)
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        if v in want:
            found.add(v)
        if v in stop:
            continue
        op = v.owner
        if isinstance(op, Operation) and not isinstance(op, (StopGradientOp, DimOp)):
            stack.extend(op.operands)
    return found


class _DerivativeOp(IRDLOperation):
    """Operand groups printed as `keyword(%a, %b : t1, t2)`, then `-> (result types)`."""

    GROUPS: ClassVar[tuple[str, ...]] = ()   # (field name, keyword) pairs flattened: see _groups
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    traits = traits_def(Pure())

    @classmethod
    def _groups(cls) -> list[tuple[str, str]]:
        return [tuple(g.split(":")) for g in cls.GROUPS]

    def print(self, printer: Printer) -> None:
        for field, keyword in self._groups():
            values = getattr(self, field)
            if not values and field == "consts":
                continue
            printer.print_string(f" {keyword}(")
            printer.print_list(values, printer.print_ssa_value)
            if values:
                printer.print_string(" : ")
                printer.print_list(values.types, printer.print_attribute)
            printer.print_string(")")
        if self.attributes or self.disconnected is not None:
            attrs = dict(self.attributes)
            if self.disconnected is not None:
                attrs["disconnected"] = self.disconnected
            printer.print_string(" ")
            printer.print_op_attributes(attrs)
        printer.print_string(" -> (")
        printer.print_list(self.results.types if hasattr(self.results, "types") else
                           [r.type for r in self.results], printer.print_attribute)
        printer.print_string(")")

    @classmethod
    def parse(cls, parser: Parser):
        groups = []
        for field, keyword in cls._groups():
            pos = parser.pos
            if not parser.parse_optional_characters(keyword):
                if field == "consts":
                    groups.append([])
                    continue
                parser.raise_error(f"{cls.name}: expected `{keyword}(...)`")
            parser.parse_punctuation("(")
            if parser.parse_optional_punctuation(")"):
                groups.append([])
                continue
            names = parser.parse_comma_separated_list(Parser.Delimiter.NONE, parser.parse_unresolved_operand)
            parser.parse_punctuation(":")
            types = parser.parse_comma_separated_list(Parser.Delimiter.NONE, parser.parse_type)
            parser.parse_punctuation(")")
            groups.append(parser.resolve_operands(names, types, pos))
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation("->")
        result_types = parser.parse_comma_separated_list(Parser.Delimiter.PAREN, parser.parse_type)
        props = {}
        if "disconnected" in attrs:
            props["disconnected"] = attrs.pop("disconnected")
        op = cls.build(operands=groups, result_types=[result_types], properties=props)
        op.attributes.update(attrs)
        return op

    def _verify_disconnected(self) -> None:
        mode = self.disconnected.data if self.disconnected is not None else "raise"
        if mode not in DISCONNECTED:
            raise VerifyException(f"{self.name}: disconnected must be one of {DISCONNECTED}, not {mode!r}")


@irdl_op_definition
class GradOp(_DerivativeOp):
    """The gradient of a 0-d float `cost` with respect to each of `wrt`."""

    name = "ikad.grad"
    GROUPS: ClassVar = ("cost:of", "wrt:wrt", "consts:constant")
    cost = var_operand_def(TensorType)
    wrt = var_operand_def(TensorType)
    consts = var_operand_def(TensorType)
    grads = var_result_def(TensorType)
    disconnected = opt_prop_def(StringAttr)

    def verify_(self) -> None:
        if len(self.cost) != 1 or self.cost[0].type.get_shape():
            raise VerifyException("ikad.grad takes one 0-d cost")
        if len(self.grads) != len(self.wrt):
            raise VerifyException("ikad.grad: one result per wrt value")
        for v, g in zip(self.wrt, self.grads):
            if v.type != g.type:
                raise VerifyException(f"ikad.grad: a gradient has the type of its variable ({v.type}), not {g.type}")
        self._verify_disconnected()


@irdl_op_definition
class VjpOp(_DerivativeOp):
    """sum over outputs of cotangent^T d output / d wrt, for each of `wrt` (Theano's Lop).
    Cotangents may carry extra leading (batch) dims; the results then carry them too."""

    name = "ikad.vjp"
    GROUPS: ClassVar = ("outs:of", "cotangents:by", "wrt:wrt", "consts:constant")
    outs = var_operand_def(TensorType)
    cotangents = var_operand_def(TensorType)
    wrt = var_operand_def(TensorType)
    consts = var_operand_def(TensorType)
    grads = var_result_def(TensorType)
    disconnected = opt_prop_def(StringAttr)

    def verify_(self) -> None:
        if len(self.outs) != len(self.cotangents) or not self.outs:
            raise VerifyException("ikad.vjp: one cotangent per output, and at least one output")
        if len(self.grads) != len(self.wrt):
            raise VerifyException("ikad.vjp: one result per wrt value")
        self._verify_disconnected()


@irdl_op_definition
class JvpOp(_DerivativeOp):
    """d output / d wrt applied to the tangents, for each of `outs` (Theano's Rop)."""

    name = "ikad.jvp"
    GROUPS: ClassVar = ("outs:of", "wrt:wrt", "tangents:along", "consts:constant")
    outs = var_operand_def(TensorType)
    wrt = var_operand_def(TensorType)
    tangents = var_operand_def(TensorType)
    consts = var_operand_def(TensorType)
    results_ = var_result_def(TensorType)
    disconnected = opt_prop_def(StringAttr)

    def verify_(self) -> None:
        if len(self.wrt) != len(self.tangents):
            raise VerifyException("ikad.jvp: one tangent per wrt value")
        if len(self.results_) != len(self.outs):
            raise VerifyException("ikad.jvp: one result per output")
        self._verify_disconnected()


@irdl_op_definition
class StopGradientOp(IRDLOperation):
    """x itself, with no derivative: every derivative treats it as a constant."""

    name = "ikad.stop_gradient"
    T: ClassVar = VarConstraint("T", base(TensorType))
    x = operand_def(T)
    result = result_def(T)
    traits = traits_def(Pure())
    assembly_format = "$x attr-dict `:` type($result)"


@irdl_op_definition
class YieldOp(IRDLOperation):
    """The values a custom op's body gives, one per result."""

    name = "ikad.yield"
    values = var_operand_def()
    traits = lazy_traits_def(lambda: (IsTerminator(), ReturnLike(), HasParent(CustomOp), Pure()))
    assembly_format = "$values attr-dict (`:` type($values)^)?"

    def __init__(self, values):
        super().__init__(operands=[values])


@irdl_op_definition
class CustomOp(IRDLOperation):
    """A user-defined op (ik.OpFromGraph): its body computes it; derivatives use the vjp/jvp
    rules registered in this process under `rule` (see irkit.custom), or, without a vjp rule,
    differentiate through the body. The autodiff pass inlines it afterwards."""

    name = "ikad.custom"
    args = var_operand_def(TensorType)
    res = var_result_def(TensorType)
    body = region_def("single_block")
    rule = prop_def(StringAttr)
    traits = traits_def(IsolatedFromAbove(), Pure())
    assembly_format = "$rule `(` $args `)` attr-dict `:` functional-type($args, $res) $body"

    def verify_(self) -> None:
        block = self.body.block
        for a, v in zip(block.args, self.args, strict=False):  # an operand may be more static
            if a.type.get_element_type() != v.type.get_element_type() or \
                    len(a.type.get_shape()) != len(v.type.get_shape()):
                raise VerifyException("ikad.custom: the body's arguments must match the operands")
        if len(block.args) != len(self.args):
            raise VerifyException("ikad.custom: one body argument per operand")
        last = block.last_op
        if not isinstance(last, YieldOp) or [v.type for v in last.values] != [r.type for r in self.res]:
            raise VerifyException("ikad.custom: the body must yield values of the result types")

    def vjp_multi(self, cts, ins, outs):
        from irkit.custom import rule_for
        return rule_for(self).vjp_rule(cts, ins, outs)

    def jvp(self, ts, ins, out):
        from irkit.custom import rule_for
        return rule_for(self).jvp_rule(ts, ins, [out])


IKAD = Dialect("ikad", [GradOp, VjpOp, JvpOp, StopGradientOp, CustomOp, YieldOp], [])
