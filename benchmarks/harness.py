"""The benchmark harness: workloads, one process per system family, timing, the report.

A workload builds its data from a seed (the same bytes in every process), computes
numpy's answer, and names a builder per system. A builder takes the data and returns
what to call (a `Case` when the thing to check differs from what a call returns, as in
a training step). Every system's first call is checked against numpy's answer before
anything is timed.

The orchestrator runs each family (irkit, numpy, jax, pytensor, numba, torch) in its own
process, once per thread count, with the thread pools of every library set to that count
and the process pinned to that many cores, so no library is measured with more threads
than another. Modules that define workloads import their systems lazily, inside the
builders: a family's process imports nothing of the others (pytensor, which pins another
llvmlite than irkit's, can then run from its own virtual environment).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

FAMILIES = ("irkit", "numpy", "jax", "pytensor", "numba", "torch")
#: the module each family imports: its presence decides whether the family runs
FAMILY_MODULE = {"irkit": "irkit", "numpy": "numpy", "jax": "jax", "pytensor": "pytensor",
                 "numba": "numba", "torch": "torch"}


@dataclass
class Case:
    """What a builder returns when a call's value is not the thing to check."""
    run: Callable[[], Any]
    result: Callable[[], Any] | None = None  # called once after the first run: checked against numpy
    notes: Callable[[], dict] | None = None  # figures other than time to report (an error in ulp)


@dataclass(frozen=True)
class Seconds:
    """A call that measures itself (a compile in a child process) returns this: the
    harness records it instead of the call's wall time."""
    value: float


@dataclass
class Workload:
    name: str
    description: str
    setup: Callable[[bool], Any]                          # quick -> data, deterministic
    reference: Callable[[Any], Any]                       # data -> numpy's answer
    systems: dict[str, Callable[[Any], Any]]              # "irkit", "numba parallel", ... -> builder
    tol: float = 1e-5                                      # relative and absolute, on the flattened answer
    rate: tuple[str, Callable[[Any], float]] | None = None  # (unit, data -> items per call)
    inner: int = 1               # calls per timed sample (tiny calls); times are divided by it
    heavy: bool = False          # left out of --quick
    threads_matter: bool = True  # else measured once, at one thread
    repeat: int | None = None    # a cap on the repeats (slow calls)
    group: str | None = None     # workloads that share a summary table (the 2012 MLP table)


def family_of(system: str) -> str:
    return system.split()[0]


# ---------------------------------------------------------------------------
# in a worker: one family, one thread count
# ---------------------------------------------------------------------------

def threads() -> int:
    """The thread count this process was started for."""
    return int(os.environ.get("IRKIT_BENCH_THREADS", "1"))


def thread_env(n: int) -> dict[str, str]:
    """The variables every library here reads for its thread pools, set to n."""
    return {"IRKIT_BENCH_THREADS": str(n), "IRKIT_NUM_THREADS": str(n), "OMP_NUM_THREADS": str(n),
            "OPENBLAS_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n), "NUMBA_NUM_THREADS": str(n),
            "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen={'true' if n > 1 else 'false'} "
                         f"intra_op_parallelism_threads={n}"}


def pin_to_cores(n: int) -> None:
    """Pin this process to n cores, so libraries that size their pools from the machine
    (XLA, torch) cannot use more than the others."""
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cores[:n])


def flatten(value: Any) -> np.ndarray:
    if isinstance(value, (list, tuple)):
        parts = [flatten(v) for v in value]
        return np.concatenate(parts) if parts else np.zeros(0)
    return np.asarray(value, dtype=np.float64).ravel()


def check(system: str, got: Any, want: Any, tol: float) -> None:
    g, w = flatten(got), flatten(want)
    if g.shape != w.shape:
        raise AssertionError(f"{system}: result has {g.size} numbers, numpy's has {w.size}")
    scale = max(1.0, float(np.max(np.abs(w)))) if w.size else 1.0
    if not np.allclose(g, w, rtol=tol, atol=tol * scale, equal_nan=True):
        diff = np.abs(g - w)
        k = int(np.nanargmax(diff))
        raise AssertionError(f"{system}: result differs from numpy's (max abs diff {diff[k]:.3g} at {k}: "
                             f"{g[k]!r} vs {w[k]!r}, tolerance {tol:g})")


def time_calls(run: Callable[[], Any], repeat: int, inner: int, budget: float) -> list[float]:
    """Per-call seconds of `repeat` samples (fewer when a sample is slow: the budget in
    seconds bounds a system's timing, never below three samples)."""
    times: list[float] = []
    t_start = time.perf_counter()
    while len(times) < repeat:
        t0 = time.perf_counter()
        for _ in range(inner):
            value = run()
        dt = time.perf_counter() - t0
        times.append(value.value if isinstance(value, Seconds) else dt / inner)
        if len(times) >= 3 and time.perf_counter() - t_start > budget:
            break
    return times


def run_worker(family: str, workloads: list[Workload], quick: bool, repeat: int, budget: float) -> list[dict]:
    """Build, check and time every system of `family` in `workloads`; one row per system."""
    n = threads()
    rows = []
    for w in workloads:
        mine = {s: b for s, b in w.systems.items() if family_of(s) == family}
        if not mine:
            continue
        data = w.setup(quick)
        want = w.reference(data)
        for system, build in mine.items():
            row = {"workload": w.name, "system": system, "threads": n}
            try:
                case = build(data)
                case = case if isinstance(case, Case) else Case(case)
                first = case.run()
                got = case.result() if case.result else first
                if not isinstance(got, Seconds):
                    check(system, got, want, w.tol)
                if case.notes:
                    row.update(case.notes())
                times = time_calls(case.run, min(repeat, w.repeat or repeat), w.inner, budget)
            except ImportError as e:
                row["error"] = f"not installed ({e.name or e})"
            except Exception as e:  # a peer that fails is reported in the table, not fatal
                row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
            else:
                row.update(median=statistics.median(times), min=min(times), max=max(times), samples=len(times))
                if w.rate:
                    row["rate"] = w.rate[1](data) / row["median"]
            rows.append(row)
            status = row.get("error") or f"{_fmt(row['median'])}"
            print(f"  [{n} thread{'s' if n > 1 else ''}] {w.name:28s} {system:20s} {status}", file=sys.stderr,
                  flush=True)
    return rows


# ---------------------------------------------------------------------------
# the orchestrator
# ---------------------------------------------------------------------------

def interpreter_for(family: str, here: str) -> str:
    """The Python that runs a family: its own venv under benchmarks/.venvs when one was
    made (`run.py --setup pytensor`), else this one."""
    own = os.path.join(here, ".venvs", family, "bin", "python")
    return own if os.path.exists(own) else sys.executable


def family_version(python: str, family: str) -> str | None:
    """The installed version of a family's package for that interpreter, or None."""
    code = ("import importlib.metadata as m, importlib.util as u, sys\n"
            f"name = {FAMILY_MODULE[family]!r}\n"
            "if u.find_spec(name) is None: sys.exit(3)\n"
            "print(m.version(name))")
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def orchestrate(script: str, here: str, families: list[str], names: list[str], thread_counts: list[int],
                quick: bool, repeat: int, budget: float, workloads: list[Workload], rounds: int = 1) -> dict:
    """Every family's workers, each thread count in its own process. With rounds > 1 the
    whole sequence runs again, the families in reverse order every other round, and each
    row keeps its fastest round: this machine's speed drifts over minutes, and one round
    would compare each family with the others at different moments."""
    by_name = {w.name: w for w in workloads}
    versions: dict[str, str] = {}
    installed = []
    for family in families:
        python = interpreter_for(family, here)
        version = family_version(python, family)
        if version is None:
            print(f"{family}: not installed, left out", file=sys.stderr)
            continue
        versions[family] = version + ("" if python == sys.executable else f" (its own venv: {python})")
        installed.append((family, python))
    best: dict[tuple, dict] = {}
    for r in range(rounds):
        order = installed if r % 2 == 0 else installed[::-1]
        for row in _one_round(script, order, names, thread_counts, quick, repeat, budget, by_name,
                              f" (round {r + 1} of {rounds})" if rounds > 1 else ""):
            key = (row["workload"], row["system"], row["threads"])
            kept = best.get(key)
            if kept is None or ("error" in kept and "error" not in row) or \
                    ("median" in row and "median" in kept and row["median"] < kept["median"]):
                best[key] = {**row, "rounds": rounds} if rounds > 1 else row
    return {"versions": versions, "rows": list(best.values())}


def _one_round(script: str, families: list[tuple[str, str]], names: list[str], thread_counts: list[int],
               quick: bool, repeat: int, budget: float, by_name: dict, label: str) -> list[dict]:
    rows: list[dict] = []
    for family, python in families:
        for n in thread_counts:
            chosen = [name for name in names if family_of_any(by_name[name], family)
                      and (by_name[name].threads_matter or n == thread_counts[0])]
            if not chosen:
                continue
            print(f"{family} with {n} thread{'s' if n > 1 else ''}: {len(chosen)} workloads{label}", file=sys.stderr,
                  flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "rows.json")
                cmd = [python, script, "--worker", family, "--only", ",".join(chosen), "--repeat", str(repeat),
                       "--budget", str(budget), "--rows", out] + (["--quick"] if quick else [])
                env = {**os.environ, **thread_env(n)}
                proc = subprocess.run(cmd, env=env)
                if proc.returncode != 0 or not os.path.exists(out):
                    rows += [{"workload": name, "system": family, "threads": n,
                              "error": f"worker exited with {proc.returncode}"} for name in chosen]
                    continue
                with open(out) as f:
                    rows += json.load(f)
    return rows


def family_of_any(w: Workload, family: str) -> bool:
    return any(family_of(s) == family for s in w.systems)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import scipy
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__, "os": platform.platform()}


# ---------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------

def _unit(seconds: float) -> tuple[str, float]:
    if seconds < 1e-3:
        return "µs", 1e6
    if seconds < 1.0:
        return "ms", 1e3
    return "s", 1.0


def _fmt(seconds: float) -> str:
    unit, scale = _unit(seconds)
    return f"{seconds * scale:.3g} {unit}"


def index(rows: list[dict]) -> dict[tuple[str, str, int], dict]:
    return {(r["workload"], r["system"], r["threads"]): r for r in rows}


def ratio(rows: dict, workload: str, system: str, n: int) -> float | None:
    """irkit's median over the system's at n threads (below 1: irkit is faster)."""
    mine, theirs = rows.get((workload, "irkit", n)), rows.get((workload, system, n))
    if not mine or not theirs or "median" not in mine or "median" not in theirs:
        return None
    return mine["median"] / theirs["median"]


def workload_table(w: Workload, rows: dict, thread_counts: list[int]) -> list[str]:
    present = [(s, n) for n in thread_counts for s in w.systems if (w.name, s, n) in rows]
    if not present:
        return []
    medians = [rows[(w.name, s, n)].get("median") for s, n in present]
    unit, scale = _unit(min(m for m in medians if m) if any(medians) else 1.0)
    rate_unit = w.rate[0] if w.rate else None
    lines = [f"### {w.name}", "", w.description, "",
             f"| system | threads | median {unit} | min {unit} | max {unit} | irkit/peer |"
             + (f" {rate_unit}/s |" if rate_unit else ""),
             "|---|---|---|---|---|---|" + ("---|" if rate_unit else "")]
    for s, n in present:
        r = rows[(w.name, s, n)]
        if "error" in r:
            lines.append(f"| {s} | {n} | {r['error']} | | | |" + (" |" if rate_unit else ""))
            continue
        q = ratio(rows, w.name, s, n)
        lines.append(f"| {s} | {n} | {r['median'] * scale:.4g} | {r['min'] * scale:.4g} | {r['max'] * scale:.4g} "
                     f"| {'' if q is None else f'{q:.2f}'} |" + (f" {r['rate']:,.0f} |" if rate_unit else ""))
    return lines + [""]


def group_table(title: str, ws: list[Workload], rows: dict, thread_counts: list[int]) -> list[str]:
    """One row per workload and thread count, one column per system: items per second where
    the workloads count items, else the median time."""
    systems = [s for s in dict.fromkeys(s for w in ws for s in w.systems)
               if any((w.name, s, n) in rows for w in ws for n in thread_counts)]
    rated = ws[0].rate is not None
    heading = f"{ws[0].rate[0]}/s; higher is better" if rated else "median time per call; lower is better"
    lines = [f"### {title} ({heading})", "",
             "| workload | threads | " + " | ".join(systems) + " | irkit best? |",
             "|---|---|" + "---|" * (len(systems) + 1)]

    def score(r: dict) -> float:  # higher is better
        return r["rate"] if rated else -r["median"]
    for w in ws:
        for n in thread_counts:
            cells, best = [], None
            for s in systems:
                r = rows.get((w.name, s, n))
                if r is None:
                    cells.append("")
                elif "error" in r:
                    cells.append("failed")
                else:
                    cells.append(f"{r['rate']:,.0f}" if rated else _fmt(r["median"]))
                    best = score(r) if best is None else max(best, score(r))
            if all(c == "" for c in cells):
                continue
            mine = rows.get((w.name, "irkit", n))
            ok = mine is not None and "error" not in mine and score(mine) >= best
            lines.append(f"| {w.name} | {n} | " + " | ".join(cells) + f" | {'yes' if ok else 'no'} |")
    return lines + [""]


def markdown(report: dict, workloads: list[Workload], goals: list[str], extra: str) -> str:
    rows = index(report["rows"])
    counts = report["threads"]
    lines = ["# Benchmark results", "",
             f"Made by `{report['command']}` on {report['date']}.", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in report["machine"].items()) + ".", "",
             "Systems (each family in its own process, all thread pools set to the same count and the "
             "process pinned to that many cores): "
             + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".", "",
             "Times are per call: median, min and max of the timed samples after a first, checked call "
             "(every system's first result is compared with numpy's before timing). `irkit/peer` is irkit's "
             "median over the peer's at the same thread count: below 1 means irkit is faster."
             + (f" Every family ran {rounds} times (`--rounds`), in alternating order; each row is its "
                "fastest round." if (rounds := max((r.get("rounds", 1) for r in report["rows"]), default=1)) > 1
                else ""), ""]
    if goals:
        lines += ["## Goals (issue 8)", "", "| goal | measured | met |", "|---|---|---|", *goals, ""]
    groups: dict[str, list[Workload]] = {}
    for w in workloads:
        if w.group:
            groups.setdefault(w.group, []).append(w)
    if groups:
        lines += ["## Summary tables", ""]
        for title, ws in groups.items():
            lines += group_table(title, ws, rows, counts)
    lines += ["## Workloads", ""]
    for w in workloads:
        lines += workload_table(w, rows, counts)
    if extra:
        lines += [extra.rstrip(), ""]
    return "\n".join(lines)

