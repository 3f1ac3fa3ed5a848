"""irkit-opt as a command: pipelines and their options, outputs, and bad input (a clear
message and exit code 1, never a traceback or a hang)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SIMPLE = """func.func @f(%x: tensor<?xf64>) -> tensor<?xf64> {
  %0 = ik.exp %x : (tensor<?xf64>) -> tensor<?xf64>
  func.return %0 : tensor<?xf64>
}
"""


def opt(*args, stdin: str | bytes | None = None, timeout: int = 300):
    exe = os.path.join(os.path.dirname(sys.executable), "irkit-opt")
    exe = exe if os.path.exists(exe) else shutil.which("irkit-opt")
    text = not isinstance(stdin, bytes)
    return subprocess.run([exe, *args], input=stdin, capture_output=True, text=text, timeout=timeout)


def test_list_passes_shows_descriptions_and_options():
    got = opt("--list-passes")
    assert got.returncode == 0, got.stderr
    lines = got.stdout.splitlines()
    fuse = lines.index(next(ln for ln in lines if ln.startswith("fuse ")))
    assert "kernels" in lines[fuse] and lines[fuse + 1].strip() == "max-ops=1024"
    for name in ("autodiff", "bufferize", "lower-to-loops", "sink-branches", "scan-keep-last", "hoist-allocs",
                 "gemm-epilogue"):
        assert any(ln.startswith(name + " ") for ln in lines), name


def test_pass_options_both_pipeline_spellings_and_output_file(tmp_path):
    out = tmp_path / "out.mlir"
    got = opt("-", "-p", "fuse{max-ops=64},bufferize", "-o", str(out), stdin=SIMPLE)
    assert got.returncode == 0, got.stderr
    assert "memref" in out.read_text()
    nested = opt("-", "--pass-pipeline", "builtin.module(canonicalize,cse)", stdin=SIMPLE)
    assert nested.returncode == 0 and "ik.exp" in nested.stdout


def test_print_ir_after_all_heads_each_dump():
    got = opt("-", "-p", "canonicalize,cse", "--print-ir-after-all", stdin=SIMPLE)
    assert got.returncode == 0
    assert "// -----// IR Dump After canonicalize //----- //" in got.stderr
    assert "// -----// IR Dump After cse //----- //" in got.stderr


@pytest.mark.parametrize("args, stdin, message", [
    (["-p", "no-such-pass"], SIMPLE, "known passes:"),
    (["-p", "fuse{no-such-option=1}"], SIMPLE, "bad pass pipeline"),
    ([], "func.func @f(%x: tensor<?xf64>) -> tensor<?xf64> {\n  %0 = ik.exp %y : (tensor<?xf64>) -> tensor<?xf64>\n",
     "<stdin>:3:1: error:"),
    ([], "", None),
    ([], b"\x00\xff\xfe garbage \x01", "error"),
])
def test_bad_input_is_a_message_and_exit_1(args, stdin, message):
    got = opt("-", *args, stdin=stdin)
    err = got.stderr if isinstance(got.stderr, str) else got.stderr.decode()
    assert "Traceback" not in err
    if message is None:  # an empty module is valid input
        assert got.returncode == 0
        return
    assert got.returncode == 1, err
    assert message in err


def test_a_ten_megabyte_input_does_not_hang():
    line = "  // " + "x" * 1000 + "\n"
    big = "// big\n" + line * 10_000 + SIMPLE
    assert len(big) > 10_000_000
    got = opt("-", "-p", "canonicalize", stdin=big, timeout=300)
    assert got.returncode == 0, got.stderr[:2000]
    assert "ik.exp" in got.stdout
