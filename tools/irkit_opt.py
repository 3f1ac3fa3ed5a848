"""`irkit-opt`: read IR, run a pass pipeline, print the result (like `mlir-opt`).

    irkit-opt model.mlir -p 'canonicalize,cse,fuse'
    irkit-opt model.mlir --pass-pipeline='builtin.module(default)' --print-ir-after-all
    irkit-opt model.mlir -p default --emit=llvm
    irkit-opt model.mlir -p canonicalize --emit=dot | dot -Tsvg > model.svg
    irkit-opt --list-passes

Built on xDSL's `xDSLOptMain`: irkit's dialects and passes are registered on
top of upstream xDSL's, irkit's own taking precedence on a shared name
(`canonicalize`). `-p default` is the pipeline `ik.function` runs.
A user error (bad input, unknown pass) prints `file:line:col: error: ...` or
`error: ...` and exits 1; a failure inside a pass names the pass and exits 2.
"""

from __future__ import annotations

import io
import re
import sys
import time
from dataclasses import dataclass
from typing import IO, Sequence

from xdsl.passes import ModulePass, PassPipeline
from xdsl.printer import Printer
from xdsl.utils.exceptions import ParseError as XParseError
from xdsl.xdsl_opt_main import xDSLOptMain

from irkit.errors import IrkitError


def _backend_target(name: str, render):
    """An `--emit=<name>` target: `render(module)` gives the text."""

    @dataclass(frozen=True)
    class _Target:
        @classmethod
        def from_spec(cls, spec):
            return cls()

        def emit(self, ctx, module, output: IO[str]) -> None:
            output.write(render(module))
    _Target.name = name
    return _Target


def _llvm_text(module) -> str:
    """--emit=llvm: the loops level translated to LLVM IR (unoptimised)."""
    from irkit.backends import jit
    from irkit.backends.llvm import Translator
    return str(Translator(jit.vector_isa()).translate(module).module)


def _ptx_text(module) -> str:
    """--emit=ptx: the loops level's kernels as PTX for sm_80 (libdevice linked, O3)."""
    from irkit.backends import ptx
    return ptx.emit_ptx(ptx.translate(module).device)


def _dot_text(module) -> str:
    """--emit=dot: the module's graph, at whatever level it is, as Graphviz DOT text."""
    from irkit.graph_dot import to_dot
    return to_dot(module)


class IrkitOptMain(xDSLOptMain):
    version_format = "irkit-opt (irkit {irkit_version}, xdsl {xdsl_version})"

    def register_all_dialects(self) -> None:
        super().register_all_dialects()
        from irkit.dialects.arith_ext import ARITH
        from irkit.dialects.autodiff import IKAD
        from irkit.dialects.fused import IKF
        from irkit.dialects.ik import IK
        # irkit's arith is xDSL's plus arith.remf; it replaces xDSL's (not yet loaded) factory
        self.ctx._registered_dialects["arith"] = lambda: ARITH
        for d in (IK, IKAD, IKF):
            if d.name not in self.ctx.registered_dialect_names:
                self.ctx.register_dialect(d.name, lambda d=d: d)

    def register_all_passes(self) -> None:
        super().register_all_passes()
        from importlib.metadata import entry_points

        from irkit.passes import PASSES
        for name, factory in PASSES.items():
            self.register_pass(name, factory)
        for ep in entry_points(group="irkit.passes"):
            self.register_pass(ep.name, lambda ep=ep: ep.load())

    def register_all_frontends(self) -> None:
        super().register_all_frontends()
        parse_mlir = self.available_frontends["mlir"]

        def parse_mlir_or_empty(stream):
            """MLIR text; empty input (or only comments) is an empty module, as mlir-opt has it."""
            data = stream.read()
            text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
            if not re.sub(r"//[^\n]*", "", text).strip():
                from xdsl.dialects.builtin import ModuleOp
                return ModuleOp([])
            return parse_mlir(io.BytesIO(data) if isinstance(data, bytes) else io.StringIO(data))
        self.available_frontends["mlir"] = parse_mlir_or_empty

        def parse_irk(stream):
            from irkit.dsl import parse_dsl
            data = stream.read()
            return parse_dsl(data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data,
                             self.get_input_name())
        self.available_frontends["irk"] = parse_irk

    def get_input_stream(self):
        """`.irk` by extension; from `-`/stdin, `.irk` when `-x irk` says so or the text starts with `def`."""
        if self.args.input_file not in (None, "-"):
            return super().get_input_stream()
        data = sys.stdin.buffer.read()
        lang = self.args.input_lang
        if lang is None:
            first = re.sub(rb"(#[^\n]*|\s)+", b" ", data[:4096]).strip()
            lang = "irk" if first.startswith(b"def ") or first == b"def" else "mlir"
        return io.BytesIO(data), lang

    def get_input_name(self):
        return "<stdin>" if self.args.input_file in (None, "-") else self.args.input_file

    def register_all_targets(self) -> None:
        super().register_all_targets()
        self.available_targets["llvm"] = lambda: _backend_target("llvm", _llvm_text)
        self.available_targets["ptx"] = lambda: _backend_target("ptx", _ptx_text)
        self.available_targets["dot"] = lambda: _backend_target("dot", _dot_text)

    def register_all_arguments(self, parser) -> None:
        super().register_all_arguments(parser)
        parser.add_argument("--pass-pipeline", dest="pass_pipeline", default=None,
                            help="the pipeline, as 'a,b,c' or 'builtin.module(a,b,c)'")
        parser.add_argument("--list-passes", action="store_true", help="list the passes and exit")
        parser.add_argument("--print-ir-after-all", action="store_true",
                            help="print the IR after each pass (to stderr)")
        parser.add_argument("--print-ir-before-all", action="store_true",
                            help="print the IR before each pass (to stderr)")
        parser.add_argument("--emit", default=None, choices=["mlir", "llvm", "ptx", "dot"],
                            help="the output format (default: mlir; dot: the graph for Graphviz)")
        parser.add_argument("--timing", action="store_true", help="print each pass's wall time (to stderr)")
        parser.add_argument("--verify-each", action="store_true", default=True,
                            help="verify the IR after each pass (the default; --disable-verify turns it off)")
        parser.add_argument("-x", dest="input_lang", choices=["irk", "mlir"], default=None,
                            help="the language of the input read from stdin (default: irk if it starts with def)")

    def setup_pipeline(self) -> None:
        from irkit.pipeline import DEFAULT
        a = self.args
        spec = a.pass_pipeline if a.pass_pipeline is not None else a.passes
        m = re.fullmatch(r"\s*builtin\.module\((.*)\)\s*", spec or "", re.S)
        spec = m.group(1) if m else (spec or "")
        spec = ",".join(",".join(DEFAULT) if p.strip() == "default" else p for p in _split(spec))
        a.passes = spec
        if a.emit:
            a.target = a.emit
        timings = self.timings = []
        start = [time.perf_counter()]

        def callback(prev: ModulePass | None, module, nxt: ModulePass | None) -> None:
            self.current_pass = nxt.name if nxt is not None else None
            now = time.perf_counter()
            if prev is not None:
                timings.append((prev.name, now - start[0]))
                if not a.disable_verify:
                    module.verify()
                if a.print_ir_after_all:
                    _dump(f"IR Dump After {prev.name}", module)
            if nxt is not None and a.print_ir_before_all:
                _dump(f"IR Dump Before {nxt.name}", module)
            start[0] = time.perf_counter()

        try:
            self.pipeline = PassPipeline.parse_spec(self.available_passes, spec, callback)
        except BaseException as e:  # xDSL's ArgSpecParseError is a BaseException
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            known = ", ".join(sorted(self.available_passes))
            _fail(f"error: bad pass pipeline {spec!r}: {e}\n  known passes: {known}", 1)

    def run(self) -> None:
        if self.args.list_passes:
            for name in sorted(self.available_passes):
                cls = self.available_passes[name]()
                doc = (cls.__doc__ or "").strip().splitlines()
                print(f"{name:28s} {doc[0] if doc else ''}")
                for opt in _options(cls):
                    print(f"{'':30s}{opt}")
            return
        super().run()
        if self.args.timing:
            for name, seconds in self.timings:
                print(f"{name:28s} {1e3 * seconds:9.2f} ms", file=sys.stderr)


def _options(cls) -> list[str]:
    """A pass's options as `-p 'name{option=default}'` takes them."""
    import dataclasses
    if not dataclasses.is_dataclass(cls):
        return []
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else "(required)"
        out.append(f"{f.name.replace('_', '-')}={default}")
    return out


def _split(spec: str) -> list[str]:
    """Split a pipeline at top-level commas (not inside {options})."""
    parts, depth, cur = [], 0, ""
    for ch in spec:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def _dump(title: str, module) -> None:
    out = io.StringIO()
    Printer(stream=out).print_op(module)
    print(f"// -----// {title} //----- //\n{out.getvalue()}\n", file=sys.stderr)


def _fail(message: str, code: int) -> None:
    print(message, file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> None:
    driver = None
    try:
        driver = IrkitOptMain(description="irkit modular optimizer driver", args=argv)
        driver.run()
    except XParseError as e:  # file:line:col: error: message, then the line and a caret
        text = str(e)
        lines = text.split("\n")[1:]
        while lines and (not lines[-1].strip() or lines[-1].strip() == e.msg.strip()):
            lines.pop()  # xDSL repeats the message under the caret
        context = "\n".join(lines)
        where = e.span.get_location()
        _fail(f"{where}: error: {e.msg.strip()}" + (f"\n{context}" if context else ""), 1)
    except IrkitError as e:
        line, column, name = getattr(e, "line", None), getattr(e, "column", None), getattr(e, "filename", None)
        text = str(e)
        prefix = f"{name}:{line}:{column}: "
        if line is not None and text.startswith(prefix):  # file:line:col: error: ..., as mlir-opt
            _fail(f"{prefix}error: {text[len(prefix):]}", 1)
        _fail(f"error: {text}", 1)
    except ValueError as e:
        _fail(f"error: {e}", 1)
    except SystemExit:
        raise
    except Exception as e:  # a bug: say which pass and what
        where = getattr(driver, "current_pass", None)
        _fail(f"internal error{f' in pass {where!r}' if where else ''}: {type(e).__name__}: {e}", 2)


if __name__ == "__main__":
    main()
