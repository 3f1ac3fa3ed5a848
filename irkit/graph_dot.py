"""Pictures of graphs: `ik.graph_svg(expr_or_function, path)` and `irkit-opt --emit=dot`.

`to_dot` makes Graphviz DOT text (the one place that does); `graph_svg` renders it with
the `graphviz` Python package and Graphviz's `dot` program. What is drawn:

- a compiled function: its graph at the tensor level, after autodiff and rewrites (what
  `f.ir("tensor")` prints); its outputs and the new values of its shared variables;
- a variable or a list of them: the graph as built, derivatives not yet taken;
- a module (irkit-opt): every function in it, at whatever level it is.

Each op is a box with its name, its parameters and the dtype and shape of each result;
inputs, shared variables and constants have shapes and colours of their own; edges go
from a value to its users, top to bottom in data-flow order; an op with regions (scan,
ifelse, and at the loops level scf.for) is a cluster holding the ops of its bodies.
"""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from xdsl.dialects import func
from xdsl.dialects.builtin import MemRefType, ModuleOp, TensorType
from xdsl.ir import Attribute, Block, Operation, SSAValue
from xdsl.printer import Printer

from irkit.errors import IrkitError

if TYPE_CHECKING:
    from irkit.function import Function
    from irkit.variable import Variable

# (shape, fill colour) by kind of node
_STYLE = {
    "input": 'shape=invhouse, style=filled, fillcolor="#cfe2ff"',
    "shared": 'shape=cylinder, style=filled, fillcolor="#ffe8a3"',
    "constant": 'shape=box, style="rounded,filled", fillcolor="#e9ecef", fontsize=10',
    "op": 'shape=box, style="rounded,filled", fillcolor="#ffffff"',
    "region-arg": 'shape=invhouse, style="dashed,filled", fillcolor="#eef5ff"',
    "output": 'shape=house, style=filled, fillcolor="#d1f0d8"',
    "yield": 'shape=house, style="dashed,filled", fillcolor="#f1f8f2"',
}
_TERMINATORS = ("func.return", "ik.yield", "ikad.yield", "ikf.yield", "scf.yield", "scf.reduce.return",
                "scf.condition", "memref.alloca_scope.return")
_SKIPPED_PROPERTIES = ("operandSegmentSizes", "resultSegmentSizes", "sym_name", "function_type")
_MAX_PARAM_CHARS = 48


class GraphvizNotFoundError(IrkitError, RuntimeError):
    """Rendering a picture needs Graphviz's `dot` program (or the `graphviz` Python package)."""


def to_dot(graph: Function | Variable | Sequence[Variable] | ModuleOp, title: str | None = None) -> str:
    """The DOT text of a compiled function, a variable, a list of variables, or a module."""
    from irkit.function import Function
    from irkit.variable import Variable
    if isinstance(graph, ModuleOp):
        return _Drawer(title or "module").module(graph, roles=None)
    if isinstance(graph, Function):
        return _Drawer(title or graph.name).module(*_function_module(graph))
    roots = list(graph) if isinstance(graph, (list, tuple)) else [graph]
    if not roots or not all(isinstance(v, Variable) for v in roots):
        raise TypeError("ik.graph_svg draws a compiled function, a variable or a list of variables, "
                        f"not {type(graph).__name__}")
    return _Drawer(title or "graph").module(*_expression_module(roots))


def graph_svg(graph: Function | Variable | Sequence[Variable], path: str | os.PathLike,
              title: str | None = None) -> str:
    """Draw `graph` (a compiled function, a variable or a list of variables) into `path`.

    The format follows the suffix: .svg (also .png, .pdf, any format of Graphviz's `dot`);
    .dot or .gv writes the DOT text itself, which needs no Graphviz. Returns the path."""
    path = os.fspath(path)
    text = to_dot(graph, title)
    fmt = os.path.splitext(path)[1].lstrip(".").lower()
    if fmt in ("dot", "gv"):
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
        return path
    if not fmt:
        raise ValueError(f"ik.graph_svg: {path!r} has no suffix to say the format (.svg, .png, .pdf, .dot)")
    data = render(text, fmt)
    with open(path, "wb") as out:
        out.write(data)
    return path


def render(dot_text: str, fmt: str = "svg") -> bytes:
    """DOT text rendered by Graphviz's `dot` into `fmt` (svg, png, pdf, ...)."""
    if shutil.which("dot") is None:
        raise GraphvizNotFoundError(
            "drawing a graph needs Graphviz's `dot` program, which is not on PATH: install Graphviz from "
            "your OS's packages (Debian/Ubuntu: apt-get install graphviz; Fedora: dnf install graphviz; "
            "macOS: brew install graphviz; conda: conda install graphviz), or give a path ending in .dot "
            "or .gv to write the DOT text without it")
    try:
        import graphviz
    except ImportError:
        raise GraphvizNotFoundError("drawing a graph needs the `graphviz` Python package: "
                                    "pip install graphviz") from None
    try:
        return graphviz.Source(dot_text).pipe(format=fmt)
    except graphviz.ExecutableNotFound as e:
        raise GraphvizNotFoundError(f"Graphviz's `dot` could not be run: {e}") from None
    except ValueError as e:  # an unknown format
        raise ValueError(f"ik.graph_svg: Graphviz cannot write {fmt!r}: {e}") from None


# -- what to draw ---------------------------------------------------------------------------
@dataclass
class _Roles:
    """What the arguments and results of the drawn function are (without it, arguments are
    inputs and results outputs)."""

    args: list[tuple[str, str]]  # (kind, name) per argument: kind "input" or "shared"
    results: list[str]           # an edge label per returned value


def _function_module(f: Function) -> tuple[ModuleOp, _Roles]:
    from irkit.pipeline import STAGES, make_context, run_passes
    module = run_passes(f._tensor_module(), STAGES["tensor"], make_context())
    args = [("input", v.name or f"#{k}") for k, v in enumerate(f.inputs)] + \
        [("shared", s.name or f"shared #{k}") for k, s in enumerate(f.shared)]
    results = [f"output {k}" if len(f.outputs) > 1 else "output" for k in range(len(f.outputs))] + \
        [f"new {s.name or 'value'}" for s, _ in f.updates]
    return module, _Roles(args, results)


def _expression_module(roots: list[Variable]) -> tuple[ModuleOp, _Roles]:
    """The graph the roots need, as a function of every input it reaches."""
    from irkit.dialects.ik.create import PlaceholderOp
    from irkit.function import build_module
    from irkit.leaves import SharedVariable, leaf_of
    inputs, seen, stack = [], set(), [r.value for r in roots]
    while stack:  # the inputs the roots depend on, in the order they are reached
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        if isinstance(v.owner, PlaceholderOp):
            leaf = leaf_of(v)
            if leaf is not None and not isinstance(leaf, SharedVariable):
                inputs.append(leaf)
            continue
        if isinstance(v.owner, Operation):
            stack.extend(reversed(v.owner.operands))  # leftmost operand first
    module, shared = build_module(inputs, roots, {})
    args = [("input", v.name or f"#{k}") for k, v in enumerate(inputs)] + \
        [("shared", s.name or f"shared #{k}") for k, s in enumerate(shared)]
    results = [r.name or (f"output {k}" if len(roots) > 1 else "output") for k, r in enumerate(roots)]
    return module, _Roles(args, results)


# -- DOT ------------------------------------------------------------------------------------
class _Drawer:
    def __init__(self, title: str) -> None:
        self.title = title
        self.lines: list[str] = []
        self.edges: list[str] = []
        self.node_of: dict[SSAValue, str] = {}
        self.count = 0

    def module(self, module: ModuleOp, roles: _Roles | None) -> str:
        self.lines += [f"digraph {_quote(self.title)} {{",
                       '  graph [rankdir=TB, fontname="Helvetica", fontsize=11, labeljust=l];',
                       '  node [fontname="Helvetica", fontsize=11];',
                       '  edge [fontname="Helvetica", fontsize=9, color="#555555"];']
        for op in module.body.block.ops:
            if isinstance(op, func.FuncOp):
                self._function(op, roles)
            else:
                self._op(op, 1)
        # edges last, at the top level: an edge written inside a cluster would pull its ends into it
        self.lines += self.edges
        self.lines.append("}")
        return "\n".join(self.lines) + "\n"

    def _id(self) -> str:
        self.count += 1
        return f"n{self.count}"

    def _node(self, label: list[str], kind: str, depth: int) -> str:
        node = self._id()
        text = "\\n".join(_escape(line) for line in label)
        self.lines.append(f'{"  " * depth}{node} [label="{text}", {_STYLE[kind]}];')
        return node

    def _edge(self, value: SSAValue, to: str, label: str | None = None, dashed: bool = False) -> None:
        src = self.node_of.get(value)
        if src is None:  # defined outside what is drawn (cannot happen in a verified module)
            return
        attrs = []
        owner = value.owner
        if isinstance(owner, Operation) and len(owner.results) > 1 and label is None:
            label = f"#{owner.results.index(value)}"
        if label:
            attrs.append(f'label="{_escape(label)}"')
        if dashed:
            attrs.append("style=dashed")
        self.edges.append(f"  {src} -> {to}" + (f" [{', '.join(attrs)}]" if attrs else "") + ";")

    def _function(self, fn: func.FuncOp, roles: _Roles | None) -> None:
        self.count += 1
        self.lines.append(f"  subgraph cluster_{self.count} {{")
        self.lines.append(f'    label="{_escape("func @" + fn.sym_name.data)}"; style=rounded; color="#888888";')
        if fn.body.blocks:
            block = fn.body.block
            for k, arg in enumerate(block.args):
                kind, name = roles.args[k] if roles is not None and k < len(roles.args) else \
                    ("input", arg.name_hint or f"arg {k}")
                self.node_of[arg] = self._node([name, kind, _type_text(arg.type)], kind, 2)
            for op in block.ops:
                if isinstance(op, func.ReturnOp):
                    out = self._node(["outputs"], "output", 2)
                    for k, v in enumerate(op.operands):
                        label = roles.results[k] if roles is not None and k < len(roles.results) else \
                            (f"output {k}" if len(op.operands) > 1 else "output")
                        self._edge(v, out, label)
                else:
                    self._op(op, 2)
        self.lines.append("  }")

    def _op(self, op: Operation, depth: int) -> str:
        """Draw `op` (and its bodies); returns its node."""
        pad = "  " * depth
        if op.name in _TERMINATORS:
            node = self._node([op.name], "yield", depth)
            for v in op.operands:
                self._edge(v, node)
            return node
        label = [op.name, *_params(op), *(_type_text(r.type) for r in op.results)]
        kind = "constant" if op.name in ("ik.constant", "arith.constant") else "op"
        if not op.regions:
            node = self._node(label, kind, depth)
        else:  # the op and its bodies in one cluster; each body's yield flows into the op
            self.count += 1
            self.lines.append(f"{pad}subgraph cluster_{self.count} {{")
            self.lines.append(f'{pad}  label="{_escape(op.name)}"; style="rounded,filled"; fillcolor="#f8f9fa"; '
                              'color="#adb5bd";')
            node = self._node(label, kind, depth + 1)
            names = _region_names(op)
            for region, name in zip(op.regions, names):
                for b, block in enumerate(region.blocks):
                    self._block(block, name + (f", block {b}" if len(region.blocks) > 1 else ""), node, depth + 1)
            self.lines.append(f"{pad}}}")
        for k, v in enumerate(op.operands):
            self._edge(v, node)
        for r in op.results:
            self.node_of[r] = node
        return node

    def _block(self, block: Block, title: str, owner_node: str, depth: int) -> None:
        pad = "  " * depth
        self.count += 1
        self.lines.append(f"{pad}subgraph cluster_{self.count} {{")
        self.lines.append(f'{pad}  label="{_escape(title)}"; style=dashed; color="#adb5bd";')
        for k, arg in enumerate(block.args):
            name = arg.name_hint or f"arg {k}"
            self.node_of[arg] = self._node([name, _type_text(arg.type)], "region-arg", depth + 1)
        for inner in block.ops:
            node = self._op(inner, depth + 1)
            if inner.name in _TERMINATORS:  # what the body yields flows out of the op
                self.edges.append(f"  {node} -> {owner_node} [style=dashed, arrowhead=empty];")
        self.lines.append(f"{pad}}}")


def _region_names(op: Operation) -> list[str]:
    """The names the op's definition gives its regions (then_region, body), else region k."""
    try:
        names = [name for name, _ in type(op).get_irdl_definition().regions]
    except AttributeError:  # an op not defined with IRDL
        names = []
    if len(names) != len(op.regions):  # a variadic region list
        names = [f"region {k}" for k in range(len(op.regions))]
    return names


def _params(op: Operation) -> list[str]:
    """An op's parameters, one `name=value` line each (the values that are not defaults)."""
    from xdsl.dialects.arith import ConstantOp as ArithConstantOp
    from xdsl.dialects.builtin import FloatAttr, IntegerAttr

    from irkit.dialects.ik.create import ConstantOp
    if isinstance(op, ConstantOp):
        value = op.splat_value()
        return [repr(value.item()) if value is not None else "array"]
    if isinstance(op, ArithConstantOp) and isinstance(op.value, (IntegerAttr, FloatAttr)):
        return [repr(op.value.value.data)]  # its type is the result's, shown below
    if hasattr(op, "params"):
        items = [(k, str(v)) for k, v in op.params.as_dict().items() if v not in ((), False, "", None)]
    else:
        items = [(k, _attr_text(v)) for k, v in {**op.properties, **op.attributes}.items()
                 if k not in _SKIPPED_PROPERTIES and not _is_no_flags(v)]
    return [_shorten(f"{k}={v}") for k, v in items]


def _is_no_flags(attr: Attribute) -> bool:
    """arith's fastmath=none, on nearly every float op of the loops level: noise in a picture."""
    from xdsl.dialects.arith import FastMathFlagsAttr
    return isinstance(attr, FastMathFlagsAttr) and not attr.data


def _type_text(t: Attribute) -> str:
    """float32(?, 3) for a tensor or memref of an irkit dtype; else the type as MLIR prints it."""
    from irkit.errors import DTypeError
    from irkit.types import format_type
    if isinstance(t, (TensorType, MemRefType)):
        try:
            return format_type(t)
        except DTypeError:  # an element type irkit has no dtype for (index)
            pass
    return _attr_text(t)


def _attr_text(attr: Attribute) -> str:
    out = io.StringIO()
    Printer(stream=out).print_attribute(attr)
    return _shorten(out.getvalue())


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_PARAM_CHARS else text[:_MAX_PARAM_CHARS - 1] + "…"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _quote(text: str) -> str:
    return f'"{_escape(text)}"'

