"""`ik.debugprint`: a graph as a readable tree, one op per line, shared subtrees named once."""

from __future__ import annotations

import sys
from typing import Any, Sequence, TextIO

from irkit.dialects.ik.create import ConstantOp, PlaceholderOp
from irkit.types import dtype_of, format_shape, static_shape
from irkit.variable import Variable


def _label(n: int) -> str:
    out = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        out = chr(65 + r) + out
    return out


def debugprint(obj: Any, file: TextIO | None = None, print_type: bool = True) -> str:
    """Print (and return) the graph of a variable, a list of them, or a compiled function."""
    from irkit.function import Function
    if isinstance(obj, Function):
        return _write(obj.ir("tensor"), file)
    roots: Sequence[Variable] = obj if isinstance(obj, (list, tuple)) else [obj]
    ids: dict = {}
    lines: list[str] = []

    def type_of(v) -> str:
        return f" {dtype_of(v.type).name}{format_shape(static_shape(v.type))}" if print_type else ""

    def describe(v) -> str:
        return (f" {v.name_hint!r}" if v.name_hint else "") + type_of(v)

    def visit(v, depth: int) -> None:
        op = v.owner
        pad = " |" * depth
        if isinstance(op, PlaceholderOp):
            kind = op.params.label.split(":")[0]
            lines.append(f"{pad}{v.name_hint or '<unnamed>'} [{kind}]{type_of(v)}")
            return
        if isinstance(op, ConstantOp):
            value = op.splat_value()
            text = repr(value.item()) if value is not None else f"array{format_shape(static_shape(v.type))}"
            lines.append(f"{pad}ik.constant {text}{describe(v)}")
            return
        key = op
        if key in ids:
            lines.append(f"{pad}{op.name} [id {ids[key]}]{describe(v)}")
            return
        ids[key] = _label(len(ids))
        params = {k: val for k, val in op.params.as_dict().items() if val not in ((), False, "", None)} \
            if hasattr(op, "params") else {}
        extra = " " + " ".join(f"{k}={val}" for k, val in params.items()) if params else ""
        out = "" if len(op.results) == 1 else f".{list(op.results).index(v)}"
        lines.append(f"{pad}{op.name}{out} [id {ids[key]}]{extra}{describe(v)}")
        for operand in op.operands:
            visit(operand, depth + 1)

    for r in roots:
        visit(r.value if isinstance(r, Variable) else r, 0)
    return _write("\n".join(lines) + "\n", file)


def _write(text: str, file: TextIO | None) -> str:
    (file or sys.stdout).write(text)
    return text


