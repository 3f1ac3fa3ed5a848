"""LLVM on every core: `jit.split_module` cuts a module into parts that each define some
functions and declare the others, `jit.compile_ir` compiles the parts side by side (each in
its own LLVM context, past llvmlite's lock) and loads them into one engine, where calls
between parts resolve. Checked: the cut itself (text), the machine code against numpy,
functions compiled from several Python threads at once, and a cache entry of several
objects read back by a second process."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import irkit as ik
from irkit.backends import jit


def _module(n_functions: int, body_lines: int, extra: str = "") -> str:
    """@f0 ... @f{n-1}: f_k(x) = f_{k-1}(x) + k with a chain of body_lines adds each (internal
    but the last, which the host calls)."""
    out = ['; ModuleID = "t"', 'target triple = "unknown-unknown-unknown"', 'target datalayout = ""', extra]
    for k in range(n_functions):
        linkage = "" if k == n_functions - 1 else "internal "
        out.append(f'define {linkage}i64 @"f{k}"(i64 %".1") noinline')
        out.append("{")
        out.append("entry:")
        prev = '%".1"'
        if k:
            out.append(f'  %"c" = call i64 @"f{k - 1}"(i64 %".1")')
            prev = '%"c"'
        for j in range(body_lines):
            out.append(f'  %"v{j}" = add i64 {prev}, {1 if j == 0 else 0}')
            prev = f'%"v{j}"'
        out.append(f"  ret i64 {prev}")
        out.append("}")
    return "\n".join(out) + "\n"


def test_split_module_defines_each_function_once_and_declares_the_rest():
    text = _module(4, 600)
    parts = jit.split_module(text, 2)
    assert len(parts) == 2
    defined = [re.findall(r'^define [^@]*@"(f\d)"', p, re.M) for p in parts]
    assert sorted(sum(defined, [])) == ["f0", "f1", "f2", "f3"]
    assert all(defined), "each part defines something"
    for p, mine in zip(parts, defined):
        declared = re.findall(r'^declare i64 @"(f\d)"\(i64 %"\.1"\)$', p, re.M)
        assert sorted(declared + mine) == ["f0", "f1", "f2", "f3"]
        assert "define internal" not in p  # the parts link to each other's functions
        assert 'target triple' in p


def test_always_inlined_helpers_are_defined_in_every_part():
    """A helper the parts' loops must inline to vectorise (backends/vecmath.py) is copied
    whole, still internal, into each part, never declared across parts."""
    helper = ['define internal i64 @"helper"(i64 %".1") alwaysinline nounwind readnone', "{", "entry:",
              '  %"h" = mul i64 %".1", 3', '  ret i64 %"h"', "}"]
    text = _module(4, 600, extra="\n".join(helper))
    parts = jit.split_module(text, 2)
    assert len(parts) == 2
    for p in parts:
        assert p.count('define internal i64 @"helper"') == 1
        assert 'declare i64 @"helper"' not in p


def test_math_helpers_that_are_not_inlined_are_defined_in_every_part():
    """vecmath's helpers that are never inlined (sin and cos with their vector variant, a
    tanh loop's scalar remainder) are copied whole too, named as llvmlite prints them: a
    declaration would lose the vector variant that lets the calling loop vectorise."""
    helper = ['define internal i64 @"irkit_vm_tanhf_scalar"(i64 %".1") noinline nounwind readnone', "{",
              "entry:", '  %"h" = mul i64 %".1", 3', '  ret i64 %"h"', "}"]
    parts = jit.split_module(_module(4, 600, extra="\n".join(helper)), 2)
    assert len(parts) == 2
    for p in parts:
        assert p.count('define internal i64 @"irkit_vm_tanhf_scalar"') == 1
        assert 'declare i64 @"irkit_vm_tanhf_scalar"' not in p


def test_machine_code_is_keyed_by_the_compiler_source_too(monkeypatch, tmp_path):
    """An edit of the backend that leaves a function's LLVM IR as it was (how it splits,
    which passes run) must not load the machine code the old backend made."""
    from irkit import compile_cache
    monkeypatch.setattr(ik.config, "cache_dir", str(tmp_path))
    jit._host_signature.cache_clear()
    before = jit.object_key("define void @f() {\nret void\n}")
    monkeypatch.setattr(compile_cache, "compiler_fingerprint", lambda: "edited")
    jit._host_signature.cache_clear()
    try:
        assert jit.object_key("define void @f() {\nret void\n}") != before
    finally:
        monkeypatch.undo()
        jit._host_signature.cache_clear()


def test_an_optnone_function_gets_a_part_of_its_own_with_a_fast_code_generator(monkeypatch, tmp_path):
    """A huge host function is `optnone` (backends/llvm.py): it gets a part of its own, whose
    code generator runs at level 0 (fast instruction selection and register allocation),
    while the other parts keep level 3; the parts still call each other."""
    monkeypatch.setattr(ik.config, "cache_dir", str(tmp_path))
    text = _module(6, 400).replace('@"f2"(i64 %".1") noinline', '@"f2"(i64 %".1") noinline optnone')
    parts = jit.split_module(text, 2)
    defined = [re.findall(r'^define [^@]*@"(f\d)"', p, re.M) for p in parts]
    assert ["f2"] in defined and sorted(sum(defined, [])) == [f"f{k}" for k in range(6)]
    assert [jit._codegen_level(p) for p in parts] == [0 if d == ["f2"] else 3 for d in defined]
    assert jit._codegen_level(text) == 3  # whole, it has functions to optimise
    compiled = jit.compile_ir(text)  # kept: its engine owns the code
    f = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(compiled.address("f5"))
    assert f(10) == 16


def test_a_parallel_loops_arguments_are_a_named_type():
    """The struct a parallel loop's body reads its arguments from is a named type: a literal
    one is spelled out at every access (a kernel of 1,000 inputs made a 10,000-op graph's IR
    200 MB of text)."""
    x = ik.vector("x")
    f = ik.function([x], ik.exp(x) + 1.0)
    text = f.ir("llvm")  # LLVM renames a type that its context already holds: main.par1.ctx.0
    named = re.findall(r'^%"?main\.par\d+\.ctx(\.\d+)?"? = type \{ ptr, i64, ptr, i64(, i\d+)? \}$', text, re.M)
    assert named, [line for line in text.splitlines() if "ctx" in line or "alloca" in line]
    assert not re.search(r"(alloca|getelementptr inbounds) \{", text)
    np.testing.assert_allclose(f(np.linspace(-1, 1, 100_001)), np.exp(np.linspace(-1, 1, 100_001)) + 1.0)


def test_small_modules_and_mutable_globals_stay_whole():
    assert jit.split_module(_module(4, 5), 2) == [_module(4, 5)]
    state = '@"counter" = internal global i64 0'
    text = _module(4, 600, extra=state)
    assert jit.split_module(text, 2) == [text]
    assert len(jit.split_module(_module(4, 600), 1)) == 1


def test_parts_compiled_apart_call_each_other(monkeypatch, tmp_path):
    monkeypatch.setattr(ik.config, "cache_dir", str(tmp_path))
    n, lines = 6, 400
    text = _module(n, lines)
    assert len(jit.split_module(text, 2)) == 2
    compiled = jit.compile_ir(text)
    f = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(compiled.address(f"f{n - 1}"))
    assert f(10) == 10 + n
    # the cache holds every part: a second load finds them all
    again = jit.load_object(jit.object_key(text))
    g = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(again.address(f"f{n - 1}"))
    assert g(-3) == -3 + n


def test_before_load_makes_a_called_symbol_resolvable_on_a_miss_and_on_a_hit(monkeypatch, tmp_path):
    """The code calls a symbol nobody has registered yet (the runtime, compiling on its own
    thread while a function's parts compile): `before_load` registers it just before the
    load, on a fresh compile and on a cache hit alike, and never before the compile."""
    monkeypatch.setattr(ik.config, "cache_dir", str(tmp_path))
    name = f"irkit_test_late_{os.getpid()}_{time.monotonic_ns()}"
    text = _module(2, 10, extra=f'declare i64 @"{name}"(i64 %".1")').replace(
        '  %"c" = call i64 @"f0"(i64 %".1")', f'  %"c" = call i64 @"{name}"(i64 %".1")')
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)
    late = callback_type(lambda x: 100 * x)
    calls = []

    def register() -> None:
        calls.append(name)
        jit.register_symbol(name, ctypes.cast(late, ctypes.c_void_p).value)
    compiled = jit.compile_ir(text, before_load=register)
    assert calls == [name]
    assert callback_type(compiled.address("f1"))(3) == 300 + 1
    monkeypatch.setattr(jit, "_compile_part", lambda *a: pytest.fail("compiled again, not loaded from the cache"))
    again = jit.compile_ir(text, before_load=register)
    assert calls == [name, name]
    assert callback_type(again.address("f1"))(-2) == -200 + 1


def test_functions_compile_from_several_threads_at_once():
    """Graphs built and compiled in several threads at once (the passes' rules insert ops
    through a per-thread context; a shared one once put one thread's ops in another's
    module), LLVM's parts compiled side by side meanwhile: every result is numpy's."""
    errors, results = [], {}
    n = 6
    start = threading.Barrier(n)

    def work(k: int) -> None:
        try:
            rng = np.random.default_rng(k)
            x, w = ik.matrix("x"), ik.matrix("w")
            y = ik.softmax(ik.tanh(x @ w) * (k + 1.0), axis=1) - ik.exp(-x.sum(axis=1, keepdims=True) * k)
            start.wait()
            f = ik.function([x, w], y.sum(axis=0), name=f"threaded_{k}")
            xv, wv = rng.standard_normal((50, 30)), rng.standard_normal((30, 20))
            z = np.tanh(xv @ wv) * (k + 1.0)
            e = np.exp(z - z.max(axis=1, keepdims=True))
            want = (e / e.sum(axis=1, keepdims=True) - np.exp(-xv.sum(axis=1, keepdims=True) * k)).sum(axis=0)
            results[k] = (f(xv, wv), want)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(results) == list(range(n))
    for got, want in results.values():
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def _deep_graph(scale: float):
    x = ik.matrix("x")
    h = x
    for k in range(12):  # enough kernels that the module is cut in parts
        h = ik.softmax(ik.tanh(h * (k + scale)), axis=1) + ik.exp(-h).sum(axis=0)
    return x, h


def _deep_reference(xv: np.ndarray, scale: float) -> np.ndarray:
    h = xv
    for k in range(12):
        z = np.tanh(h * (k + scale))
        e = np.exp(z - z.max(axis=1, keepdims=True))
        h = e / e.sum(axis=1, keepdims=True) + np.exp(-h).sum(axis=0)
    return h


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_compiles_with_threads_of_its_own(monkeypatch, tmp_path):
    """The compile threads are the parent's: a child forked after a compile (multiprocessing's
    default on Linux) makes its own instead of queueing parts no thread takes."""
    monkeypatch.setattr(ik.config, "cache_dir", str(tmp_path))
    xv = np.linspace(0, 1, 12).reshape(3, 4)
    x, h = _deep_graph(1.0)
    np.testing.assert_allclose(ik.function([x], h)(xv), _deep_reference(xv, 1.0), rtol=1e-10)
    pid = os.fork()
    if pid == 0:  # the child: a new graph (no cache hit), compiled in parts, checked
        code = 1
        try:
            x2, h2 = _deep_graph(2.0)
            ok = np.allclose(ik.function([x2], h2)(xv), _deep_reference(xv, 2.0), rtol=1e-10)
            code = 0 if ok else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 120
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child's compile hung")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0


SCRIPT = textwrap.dedent("""
    import sys, numpy as np, irkit as ik
    x = ik.matrix("x")
    h = x
    for k in range(12):  # enough kernels that the module is cut in parts
        h = ik.softmax(ik.tanh(h * (k + 1.0)), axis=1) + ik.exp(-h).sum(axis=0)
    f = ik.function([x], h)
    print(sorted(f.timings), float(f(np.linspace(0, 1, 12).reshape(3, 4)).sum()))
""")


def test_a_cache_entry_of_several_objects_serves_a_second_process(tmp_path):
    env = dict(os.environ, IRKIT_CACHE_DIR=str(tmp_path), IRKIT_CACHE="1")
    runs = [subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
            for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    first, second = (r.stdout.strip().splitlines()[-1] for r in runs)
    assert "llvm-jit" in first and "llvm-jit" not in second  # the second ran no LLVM
    assert first.split("] ")[1] == second.split("] ")[1]
