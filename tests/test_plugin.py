"""A pass from outside irkit: examples/plugin installs, registers through the `irkit.passes`
entry points, appears in irkit-opt --list-passes, runs in pipelines, and passes its own
FileCheck test (the one docs/writing-a-pass.md shows)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PLUGIN = os.path.join(ROOT, "examples", "plugin")


def _tool(name: str) -> str:
    exe = os.path.join(os.path.dirname(sys.executable), name)
    return exe if os.path.exists(exe) else shutil.which(name)


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    """The plugin pip-installed into a directory of its own, put on PYTHONPATH."""
    target = tmp_path_factory.mktemp("plugin")
    got = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                          PLUGIN], capture_output=True, text=True, timeout=600)
    assert got.returncode == 0, got.stdout + got.stderr
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def test_the_plugin_pass_is_listed(plugin_env):
    got = subprocess.run([_tool("irkit-opt"), "--list-passes"], capture_output=True, text=True, env=plugin_env,
                         timeout=300)
    assert got.returncode == 0, got.stderr
    line = next(ln for ln in got.stdout.splitlines() if ln.startswith("double-to-add"))
    assert "Rewrite x * 2 as x + x" in line


def test_the_plugin_pass_runs_and_passes_its_filecheck_test(plugin_env):
    test = os.path.join(PLUGIN, "irkit_double_to_add", "test.mlir")
    opt = subprocess.run([_tool("irkit-opt"), test, "-p", "double-to-add"], capture_output=True, text=True,
                         env=plugin_env, timeout=300)
    assert opt.returncode == 0, opt.stderr
    check = subprocess.run([_tool("filecheck"), test], input=opt.stdout, capture_output=True, text=True,
                           timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    # and in a pipeline with irkit's own passes, down to loops
    lowered = subprocess.run([_tool("irkit-opt"), test, "-p", "double-to-add,default"], capture_output=True,
                             text=True, env=plugin_env, timeout=300)
    assert lowered.returncode == 0, lowered.stderr
    assert "arith.addf" in lowered.stdout and "arith.mulf" in lowered.stdout  # @broadcast keeps its product
