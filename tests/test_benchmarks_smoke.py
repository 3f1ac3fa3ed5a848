"""The benchmark harness runs (quick sizes): every workload checks irkit against numpy
before it is timed, so this also catches a wrong result. Timings are not asserted."""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def test_benchmark_harness_quick(tmp_path):
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run([sys.executable, os.path.join(HERE, "..", "benchmarks", "run.py"), "--quick",
                           "--repeat", "1", "--output", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "RESULTS.json").read_text())
    names = [w["name"] for w in report["workloads"]]
    assert {"add_one", "copy", "chain_f32", "chain_f64", "compile_300"} <= set(names)
    for w in report["workloads"]:
        assert w["systems"]["irkit"]["median"] > 0
    assert "| irkit |" in out.read_text()
