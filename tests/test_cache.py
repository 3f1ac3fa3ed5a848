"""The on-disk cache of machine code: a second process compiling the same function skips
LLVM's optimisation and code generation and computes the same thing; a damaged entry is a
miss; IRKIT_CACHE=0 writes nothing. (How much faster is measured, not asserted beyond
"skipped": the benchmarks measure compile times.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, numpy as np, irkit as ik
    x = ik.matrix("x", dtype="float32")
    w = ik.matrix("w", dtype="float32")
    y = ik.softmax(ik.tanh(x @ w) * 2.0, axis=1).sum(axis=0)
    f = ik.function([x, w], y)
    out = f(np.ones((4, 3), np.float32), np.full((3, 5), 0.5, np.float32))
    print(json.dumps({"jit": f.timings["llvm-jit"], "out": out.tolist()}))
""")


def _run(env_extra: dict) -> dict:
    env = dict(os.environ, **env_extra)
    got = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert got.returncode == 0, got.stderr
    return json.loads(got.stdout.strip().splitlines()[-1])


def _objects(root) -> list:
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.endswith(".o")]


def test_a_second_process_loads_the_compiled_code(tmp_path):
    env = {"IRKIT_CACHE_DIR": str(tmp_path), "IRKIT_CACHE": "1"}
    first = _run(env)
    objects = sorted(_objects(tmp_path))
    assert objects  # the function (and the shared runtime)
    second = _run(env)
    assert second["out"] == first["out"]
    assert second["jit"] < first["jit"], (first["jit"], second["jit"])
    assert sorted(_objects(tmp_path)) == objects  # a hit writes nothing


def test_a_damaged_entry_is_a_miss(tmp_path):
    env = {"IRKIT_CACHE_DIR": str(tmp_path), "IRKIT_CACHE": "1"}
    first = _run(env)
    for path in _objects(tmp_path):
        with open(path, "r+b") as f:
            f.seek(60)
            f.write(b"\xde\xad\xbe\xef" * 8)
    again = _run(env)
    assert again["out"] == first["out"]


def test_the_cache_can_be_turned_off(tmp_path):
    _run({"IRKIT_CACHE_DIR": str(tmp_path), "IRKIT_CACHE": "0"})
    assert _objects(tmp_path) == []
