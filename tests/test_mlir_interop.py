"""irkit's loops level is upstream MLIR: the real `mlir-opt` (Debian's mlir-22-tools) verifies
and lowers it to LLVM, `mlir-runner` runs it, and the printed numbers match irkit's own
native results. And the other way: a func/arith/math/scf/memref module written by hand
compiles and runs through irkit's backend.

Without mlir-opt these tests skip, except in CI (`IRKIT_CI=1`, set by .ci/run, which
installs the package): there a missing mlir-opt is a failure.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

import irkit as ik

LLVM_BIN = "/usr/lib/llvm-22/bin"
LLVM_LIB = "/usr/lib/llvm-22/lib"


def _tool(name: str) -> str | None:
    path = os.path.join(LLVM_BIN, name)
    return path if os.path.exists(path) else shutil.which(name)


MLIR_OPT, MLIR_RUNNER = _tool("mlir-opt"), _tool("mlir-runner")
if MLIR_OPT is None or MLIR_RUNNER is None:
    if os.environ.get("IRKIT_CI"):
        raise RuntimeError("CI needs mlir-opt and mlir-runner (Debian's mlir-22-tools); .ci/run installs them")
    pytestmark = pytest.mark.skip(reason="mlir-opt/mlir-runner not installed (Debian's mlir-22-tools)")

LOWER = ("builtin.module(convert-scf-to-cf,convert-math-to-llvm,expand-strided-metadata,finalize-memref-to-llvm,"
         "convert-arith-to-llvm,convert-cf-to-llvm,convert-func-to-llvm,reconcile-unrealized-casts)")


def _runtime_libs() -> str:
    libs = []
    for name in ("libmlir_runner_utils", "libmlir_c_runner_utils"):
        found = sorted(f for f in os.listdir(LLVM_LIB) if f.startswith(name + ".so")) if os.path.isdir(LLVM_LIB) else []
        libs.append(os.path.join(LLVM_LIB, found[0]) if found else name + ".so")
    return ",".join(libs)


def _type(a: np.ndarray) -> str:
    elt = {"float64": "f64", "float32": "f32"}[a.dtype.name]
    return f"memref<{'x'.join(map(str, a.shape))}x{elt}>" if a.ndim else f"memref<{elt}>"


def _dyn_type(a: np.ndarray) -> str:
    elt = {"float64": "f64", "float32": "f32"}[a.dtype.name]
    return f"memref<{'?x' * a.ndim}{elt}>"


def run_upstream(f: ik.Function, *args: np.ndarray, loops: str | None = None) -> np.ndarray:
    """f's loops level (or the given loops text), with an @entry that feeds `args` as globals
    and prints the result, lowered by mlir-opt and run by mlir-runner; the printed numbers."""
    loops = f.ir("loops") if loops is None else loops
    body = loops.rstrip()
    assert body.endswith("}")
    lines = []
    for k, a in enumerate(args):
        nested = np.array2string(a, separator=", ", floatmode="unique", threshold=10 ** 9).replace("\n", "")
        dense = f"dense<{nested}>" if a.ndim else f"dense<{float(a)!r}>"
        lines.append(f'  memref.global "private" constant @arg{k} : {_type(a)} = {dense}')
    out_t = re.search(r"func\.func @main\([^)]*\) -> (memref<[^>]*>)", loops).group(1)
    elt = "f64" if out_t.endswith("f64>") else "f32"
    lines.append(f"  func.func private @printMemref{elt.upper()}(memref<*x{elt}>)")
    lines.append("  func.func @entry() {")
    operands = []
    for k, a in enumerate(args):
        lines.append(f"    %g{k} = memref.get_global @arg{k} : {_type(a)}")
        if a.ndim:
            lines.append(f"    %a{k} = memref.cast %g{k} : {_type(a)} to {_dyn_type(a)}")
            operands.append((f"%a{k}", _dyn_type(a)))
        else:
            operands.append((f"%g{k}", _type(a)))
    names, types = ", ".join(o for o, _ in operands), ", ".join(t for _, t in operands)
    lines.append(f"    %r = func.call @main({names}) : ({types}) -> {out_t}")
    lines.append(f"    %u = memref.cast %r : {out_t} to memref<*x{elt}>")
    lines.append(f"    func.call @printMemref{elt.upper()}(%u) : (memref<*x{elt}>) -> ()")
    lines.append("    return\n  }")
    module = body[:-1] + "\n".join(lines) + "\n}\n"
    lowered = subprocess.run([MLIR_OPT, f"--pass-pipeline={LOWER}"], input=module, capture_output=True, text=True,
                             timeout=300)
    assert lowered.returncode == 0, lowered.stderr + "\n" + module
    ran = subprocess.run([MLIR_RUNNER, "-e", "entry", "-entry-point-result=void", f"-shared-libs={_runtime_libs()}"],
                         input=lowered.stdout, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    data = ran.stdout.split("data =", 1)[1]
    return np.array([float(v) for v in re.findall(r"[-+]?(?:nan|inf|\d+\.?\d*(?:e[-+]?\d+)?)", data)])


def test_mlir_opt_verifies_every_level_of_irkit_loops():
    x = ik.matrix("x", dtype="float64")
    f = ik.function([x], ik.softmax(x, axis=1) * ik.sum(x))
    got = subprocess.run([MLIR_OPT, "--verify-each"], input=f.ir("loops"), capture_output=True, text=True,
                         timeout=300)
    assert got.returncode == 0, got.stderr


@pytest.mark.parametrize("case", ["elementwise_and_sum", "broadcast_columns", "scan", "ifelse"])
def test_upstream_mlir_runs_irkit_loops_with_the_same_results(case):
    rng = np.random.default_rng(3)
    if case == "elementwise_and_sum":
        x = ik.vector("x", dtype="float64")
        f, args = ik.function([x], ik.exp(x) * 2 + ik.sum(x)), [rng.standard_normal(7)]
    elif case == "broadcast_columns":
        m, v = ik.matrix("m", dtype="float64"), ik.vector("v", dtype="float64")
        f, args = ik.function([m, v], ik.tanh(m - v) / (1 + ik.max(m, axis=0))), [rng.standard_normal((3, 4)),
                                                                                  rng.standard_normal(4)]
    elif case == "scan":
        x = ik.vector("x", dtype="float64")
        acc, _ = ik.scan(lambda e, a: a * 0.5 + ik.sin(e), sequences=x, outputs_info=ik.constant(0.0, "float64"))
        f, args = ik.function([x], acc), [rng.standard_normal(6)]
    else:
        x = ik.vector("x", dtype="float64")
        f, args = ik.function([x], ik.ifelse(ik.sum(x) > 0, ik.exp(x), -x)), [np.array([0.5, -0.25, 1.0])]
    mine = np.asarray(f(*args)).ravel()
    theirs = run_upstream(f, *args)
    np.testing.assert_allclose(theirs, mine, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", ["full", "rows", "columns", "softmax_columns"])
def test_gpu_loops_run_by_upstream_mlir_match_the_cpu(case):
    """The GPU pipeline's loops level (parallel-reductions: reducing scf.parallel, rows spread
    over threads, column nests interchanged) keeps the numbers: upstream MLIR runs it."""
    from irkit.function import _print
    x = ik.matrix("x", dtype="float64")
    out = {"full": ik.sum(x * x), "rows": ik.max(x, axis=1) + ik.sum(x, axis=1),
           "columns": ik.sum(x, axis=0) - ik.min(x, axis=0), "softmax_columns": ik.softmax(x, axis=0)}[case]
    f = ik.function([x], out)
    a = np.random.default_rng(4).standard_normal((5, 7))
    gpu_loops = _print(f._gpu_loops())
    assert "scf.parallel" in gpu_loops
    theirs = run_upstream(f, a, loops=gpu_loops)
    np.testing.assert_allclose(theirs, np.asarray(f(a)).ravel(), rtol=1e-5, atol=1e-6)  # printed: 6 digits


def test_a_hand_written_upstream_module_runs_through_irkit():
    """func/arith/math/scf/memref as mlir-opt prints them, compiled by irkit's LLVM backend:
    y[i] = sqrt(x[i]) + i, for a dynamic size."""
    text = """
    module {
      func.func @main(%x: memref<?xf64>) -> memref<?xf64> {
        %c0 = arith.constant 0 : index
        %c1 = arith.constant 1 : index
        %n = memref.dim %x, %c0 : memref<?xf64>
        %y = memref.alloc(%n) {alignment = 64 : i64} : memref<?xf64>
        scf.for %i = %c0 to %n step %c1 {
          %v = memref.load %x[%i] : memref<?xf64>
          %s = math.sqrt %v : f64
          %ii = arith.index_cast %i : index to i64
          %fi = arith.sitofp %ii : i64 to f64
          %r = arith.addf %s, %fi : f64
          memref.store %r, %y[%i] : memref<?xf64>
        }
        return %y : memref<?xf64>
      }
    }
    """
    verified = subprocess.run([MLIR_OPT], input=text, capture_output=True, text=True, timeout=300)
    assert verified.returncode == 0, verified.stderr
    from xdsl.parser import Parser

    from irkit.backends import jit
    from irkit.backends.llvm import Translator
    from irkit.pipeline import make_context
    module = Parser(make_context(), text).parse_module()
    compiled = jit.compile_ir(str(Translator(jit.vector_isa()).translate(module).module))
    # irkit's calling convention: (data, size) per memref, then a slot for the results; 0 = success
    fn = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p)(
        compiled.address("main"))
    x = np.array([1.0, 4.0, 9.0, 16.0])
    slots = (ctypes.c_int64 * 2)()
    assert fn(x.ctypes.data, len(x), ctypes.addressof(slots)) == 0
    assert slots[1] == 4
    y = np.ctypeslib.as_array(ctypes.cast(slots[0], ctypes.POINTER(ctypes.c_double)), shape=(4,)).copy()
    np.testing.assert_allclose(y, np.sqrt(x) + np.arange(4))
