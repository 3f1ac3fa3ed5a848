"""The benchmark harness runs (quick sizes, irkit and numpy, one thread): every system's
first result is checked against numpy's before it is timed, so this also catches a wrong
result. Timings are not asserted."""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RUN = os.path.join(HERE, "..", "benchmarks", "run.py")


def test_benchmark_harness_quick(tmp_path):
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run([sys.executable, RUN, "--quick", "--repeat", "1", "--families", "irkit,numpy",
                           "--threads", "1", "--output", str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    report = json.loads((tmp_path / "RESULTS.json").read_text())
    listed = subprocess.run([sys.executable, RUN, "--list"], capture_output=True, text=True, check=True).stdout
    light = {line.split()[0] for line in listed.splitlines() if "(heavy)" not in line}
    rows = {(r["workload"], r["system"]): r for r in report["rows"]}
    for name in light:  # every workload ran irkit, and irkit's result matched numpy's
        r = rows[(name, "irkit")]
        assert "error" not in r and r["median"] > 0, r
    assert any(system == "numpy" and "median" in r for (_, system), r in rows.items())
    text = out.read_text()
    assert "| irkit | 1 |" in text and "## Goals" in text


def test_a_wrong_result_fails_the_run(tmp_path):
    """A system whose answer differs from numpy's is reported, and when it is irkit the
    run fails: the check is what makes the timings mean anything."""
    sys.path.insert(0, os.path.join(HERE, "..", "benchmarks"))
    try:
        import harness
    finally:
        sys.path.pop(0)
    import numpy as np
    w = harness.Workload("wrong", "x + 1, computed as x + 2", setup=lambda quick: np.arange(4.0),
                         reference=lambda x: x + 1, systems={"numpy": lambda x: (lambda: x + 2)})
    (row,) = harness.run_worker("numpy", [w], quick=True, repeat=1, budget=0.1)
    assert "differs from numpy" in row["error"] and "median" not in row


def test_unknown_workloads_and_families_are_named(tmp_path):
    for args, needle in ((["--only", "no_such_workload"], "no_such_workload"),
                         (["--families", "tensorflow"], "tensorflow")):
        proc = subprocess.run([sys.executable, RUN, "--quick", *args, "--output", str(tmp_path / "r.md")],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode != 0 and needle in proc.stderr, proc.stderr
