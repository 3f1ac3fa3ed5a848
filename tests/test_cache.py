"""The on-disk compile cache: a second process compiling the same graph runs no pass and
no LLVM (the graph-keyed index points at the machine code) and computes the same thing;
the same LLVM IR reached from another graph reuses the machine code; a damaged entry is a
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
    try:
        f(np.ones((4, 3), np.float32), np.ones((4, 5), np.float32))
    except ik.ShapeError as e:
        error = str(e)
    print(json.dumps({"stages": sorted(f.timings), "out": out.tolist(), "error": error,
                      "llvm": "define" in f.ir("llvm")}))
""")


def _run(env_extra: dict) -> dict:
    env = dict(os.environ, **env_extra)
    got = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert got.returncode == 0, got.stderr
    return json.loads(got.stdout.strip().splitlines()[-1])


def _objects(root, suffix: str = ".o") -> list:
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.endswith(suffix)]


def test_a_second_process_loads_the_compiled_code(tmp_path):
    env = {"IRKIT_CACHE_DIR": str(tmp_path), "IRKIT_CACHE": "1"}
    first = _run(env)
    objects = sorted(_objects(tmp_path) + _objects(tmp_path, ".json"))
    # the function, the runtime and its float32 product (x @ w: not its float64 one); the index
    assert len(_objects(tmp_path)) == 3 and len(_objects(tmp_path, ".json")) == 1
    assert {"bufferize", "llvm-ir", "llvm-jit"} <= set(first["stages"])
    second = _run(env)
    assert second["out"] == first["out"]
    assert second["stages"] == ["build", "cache", "total"]  # no pass, no LLVM
    assert second["error"] == first["error"] and "inner dimensions differ" in first["error"]
    assert second["llvm"]  # f.ir("llvm") is made again on demand
    assert sorted(_objects(tmp_path) + _objects(tmp_path, ".json")) == objects  # a hit writes nothing


def test_the_graph_key_sees_locations_and_the_llvm_key_shares_code(tmp_path):
    """The same graph built on another line is another graph entry (its error messages name
    that line), but the same machine code: the object is shared."""
    env = {"IRKIT_CACHE_DIR": str(tmp_path), "IRKIT_CACHE": "1"}
    first = _run(env)
    global SCRIPT
    moved = "\n\n" + SCRIPT
    got = subprocess.run([sys.executable, "-c", moved], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, **env))
    assert got.returncode == 0, got.stderr
    second = json.loads(got.stdout.strip().splitlines()[-1])
    assert second["out"] == first["out"]
    assert "bufferize" in second["stages"] and "llvm-jit" in second["stages"]
    assert len(_objects(tmp_path, ".json")) == 2
    assert second["error"] != first["error"]  # another line


def test_python_derivative_rules_are_not_keyed_by_graph(tmp_path):
    """An OpFromGraph's vjp is Python code the graph text cannot show: such a function is
    cached by its LLVM IR only."""
    script = textwrap.dedent("""
        import numpy as np, irkit as ik
        x = ik.vector("x")
        double = ik.OpFromGraph([x], [x * 2.0], vjp=lambda i, o, g: [g[0] * 2.0])
        v = ik.vector("v")
        f = ik.function([v], ik.grad(ik.sum(double(v)[0]), v))
        print(f(np.ones(3)).tolist())
    """)
    env = dict(os.environ, IRKIT_CACHE_DIR=str(tmp_path), IRKIT_CACHE="1")
    got = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "[2.0, 2.0, 2.0]"
    assert _objects(tmp_path) and not _objects(tmp_path, ".json")


def test_a_damaged_entry_is_a_miss(tmp_path):
    env = {"IRKIT_CACHE_DIR": str(tmp_path), "IRKIT_CACHE": "1"}
    first = _run(env)
    for path in _objects(tmp_path) + _objects(tmp_path, ".json"):
        with open(path, "r+b") as f:
            f.seek(60)
            f.write(b"\xde\xad\xbe\xef" * 8)
    again = _run(env)
    assert again["out"] == first["out"]


def test_the_cache_can_be_turned_off(tmp_path):
    _run({"IRKIT_CACHE_DIR": str(tmp_path), "IRKIT_CACHE": "0"})
    assert os.listdir(tmp_path) == []


PRODUCTS = textwrap.dedent("""
    import json, sys, numpy as np, irkit as ik
    from irkit.backends import runtime
    dtypes = sys.argv[1].split(",") if sys.argv[1] else []
    out = {}
    x = ik.vector("x", dtype="float32")
    out["add"] = ik.function([x], x + 1.0)(np.ones(3, np.float32)).tolist()
    for dt in dtypes:
        a, b = ik.matrix("a", dtype=dt), ik.matrix("b", dtype=dt)
        f = ik.function([a, b], ik.dot(a, b))
        out[dt] = f(np.full((2, 3), 2.0, dt), np.full((3, 4), 0.5, dt)).tolist()
        out[dt + " stages"] = sorted(f.timings)
    out["ready"] = sorted(p for p in ("irkit_gemm_f32", "irkit_gemm_f64") if runtime.ready([p]))
    print(json.dumps(out))
""")


def _products(tmp_path, dtypes: str) -> dict:
    env = dict(os.environ, IRKIT_CACHE_DIR=str(tmp_path), IRKIT_CACHE="1")
    got = subprocess.run([sys.executable, "-c", PRODUCTS, dtypes], capture_output=True, text=True, env=env,
                         timeout=300)
    assert got.returncode == 0, got.stderr
    return json.loads(got.stdout.strip().splitlines()[-1])


def test_the_runtime_compiles_only_the_products_a_function_calls(tmp_path):
    """x + 1 calls no product: the process has the runtime and that function only. A float64
    product then compiles the float64 loops, not the float32 ones; a second process that
    loads both functions from the cache loads that product with them, and runs them."""
    none = _products(tmp_path, "")
    assert none["add"] == [2.0, 2.0, 2.0] and none["ready"] == []
    assert len(_objects(tmp_path)) == 2  # the function and the runtime
    first = _products(tmp_path, "float64")
    assert first["ready"] == ["irkit_gemm_f64"] and first["float64"] == [[3.0] * 4] * 2
    assert len(_objects(tmp_path)) == 4  # and the product, and its function
    second = _products(tmp_path, "float64")
    assert second == {**first, "float64 stages": ["build", "cache", "total"]}
    assert len(_objects(tmp_path)) == 4
    both = _products(tmp_path, "float32,float64")
    assert both["ready"] == ["irkit_gemm_f32", "irkit_gemm_f64"] and both["float32"] == [[3.0] * 4] * 2
