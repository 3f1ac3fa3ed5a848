"""The fused level, dialect `ikf`: kernels.

An `ikf.kernel` groups tensor-level (`ik`) ops that become one loop nest:
elementwise work, broadcasts, index remaps and reductions. Its body is
isolated from above and written in `ik` ops over tensors, so it reads like
the graph it came from. It has two forms, as `linalg.generic` does:

- tensor form (after `fuse`): `ins(...)` and results;
- buffer form (after `bufferize`): `ins(...)` and `outs(...)` memrefs that the
  kernel writes, no results. The body still has tensor semantics: block
  arguments are the inputs' values, `ikf.yield` gives the outputs' values.

`lower-to-loops` turns each kernel into `scf` loops, one element at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects.builtin import MemRefType, TensorType
from xdsl.ir import Attribute, Dialect, Region, SSAValue
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    irdl_op_definition,
    lazy_traits_def,
    region_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import (
    EffectInstance,
    HasParent,
    IsolatedFromAbove,
    IsTerminator,
    MemoryEffect,
    MemoryEffectKind,
    Pure,
    ReturnLike,
    SingleBlockImplicitTerminator,
)
from xdsl.utils.exceptions import VerifyException


class KernelEffects(MemoryEffect):
    """A tensor-form kernel is pure (its body is); a buffer-form kernel reads and writes."""

    @classmethod
    def get_effects(cls, op):
        if op.outputs:
            return frozenset((EffectInstance(MemoryEffectKind.READ), EffectInstance(MemoryEffectKind.WRITE)))
        return frozenset()


@irdl_op_definition
class YieldOp(IRDLOperation):
    """The values a kernel's body gives, one per output."""

    name = "ikf.yield"
    values = var_operand_def()
    traits = lazy_traits_def(lambda: (IsTerminator(), ReturnLike(), HasParent(KernelOp), Pure()))
    assembly_format = "$values attr-dict (`:` type($values)^)?"

    def __init__(self, values: Sequence[SSAValue]):
        super().__init__(operands=[values])


@irdl_op_definition
class KernelOp(IRDLOperation):
    """One loop nest's worth of tensor-level work (see the module docstring)."""

    name = "ikf.kernel"
    inputs = var_operand_def()
    outputs = var_operand_def(MemRefType)
    res = var_result_def(TensorType)
    body = region_def("single_block")
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    traits = traits_def(IsolatedFromAbove(), SingleBlockImplicitTerminator(YieldOp), KernelEffects())

    def __init__(self, inputs: Sequence[SSAValue], outputs: Sequence[SSAValue],
                 result_types: Sequence[Attribute], body: Region):
        super().__init__(operands=[inputs, outputs], result_types=[result_types], regions=[body])

    @property
    def yield_op(self) -> YieldOp:
        op = self.body.block.last_op
        assert isinstance(op, YieldOp)
        return op

    def verify_(self) -> None:
        block = self.body.block
        if len(block.args) != len(self.inputs):
            raise VerifyException(f"ikf.kernel: {len(self.inputs)} inputs but {len(block.args)} block arguments")
        for k, (v, a) in enumerate(zip(self.inputs, block.args)):
            if not isinstance(a.type, TensorType):
                raise VerifyException(f"ikf.kernel: block argument {k} must be a tensor")
            same_elt = isinstance(v.type, MemRefType) or v.type.get_element_type() == a.type.get_element_type()
            if v.type.get_shape() != a.type.get_shape() or not same_elt:
                raise VerifyException(f"ikf.kernel: input {k} of type {v.type} does not match its "
                                      f"block argument {a.type}")
        if self.outputs and self.res:
            raise VerifyException("ikf.kernel has either outs (buffer form) or results (tensor form), not both")
        produced = self.outputs.types if self.outputs else self.res.types
        yielded = self.yield_op.values.types
        if len(produced) != len(yielded):
            raise VerifyException(f"ikf.kernel yields {len(yielded)} values for {len(produced)} outputs")
        for k, (p, y) in enumerate(zip(produced, yielded)):
            same_elt = isinstance(p, MemRefType) or p.get_element_type() == y.get_element_type()
            if p.get_shape() != y.get_shape() or not same_elt:
                raise VerifyException(f"ikf.kernel: output {k} has type {p} but the body yields {y}")

    def print(self, printer: Printer) -> None:
        def group(keyword, values):
            if not values:
                printer.print_string(f" {keyword}()")
                return
            printer.print_string(f" {keyword}(")
            printer.print_list(values, printer.print_ssa_value)
            printer.print_string(" : ")
            printer.print_list(values.types, printer.print_attribute)
            printer.print_string(")")

        group("ins", self.inputs)
        if self.outputs:
            group("outs", self.outputs)
        if self.attributes:
            printer.print_string(" attrs = ")
            printer.print_op_attributes(self.attributes)
        printer.print_string(" ")
        printer.print_region(self.body)
        if self.res:
            printer.print_string(" -> ")
            with printer.in_parens():
                printer.print_list(self.res.types, printer.print_attribute)

    @classmethod
    def parse(cls, parser: Parser) -> "KernelOp":
        def group(keyword):
            pos = parser.pos
            if not parser.parse_optional_characters(keyword):
                return []
            parser.parse_punctuation("(")
            if parser.parse_optional_punctuation(")"):
                return []
            names = parser.parse_comma_separated_list(Parser.Delimiter.NONE, parser.parse_unresolved_operand)
            parser.parse_punctuation(":")
            types = parser.parse_comma_separated_list(Parser.Delimiter.NONE, parser.parse_type)
            parser.parse_punctuation(")")
            return parser.resolve_operands(names, types, pos)

        ins = group("ins")
        outs = group("outs")
        attrs = {}
        if parser.parse_optional_keyword("attrs"):
            parser.parse_punctuation("=")
            attrs = parser.expect(parser.parse_optional_attr_dict, "expected attributes")
        body = parser.parse_region()
        types: list[Attribute] = []
        if parser.parse_optional_punctuation("->"):
            types = parser.parse_comma_separated_list(Parser.Delimiter.PAREN, parser.parse_type)
        op = cls(ins, outs, types, body)
        op.attributes |= attrs
        return op


IKF = Dialect("ikf", [KernelOp, YieldOp], [])
