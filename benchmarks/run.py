"""irkit against its peers on the same work, with ratios.

    python benchmarks/run.py [--quick] [--only NAMES] [--families irkit,numpy,...] [--threads 1,2]
                             [--repeat N] [--budget SECONDS] [--output benchmarks/RESULTS.md]
    python benchmarks/run.py --setup pytensor     # pytensor's own venv (see below)
    python benchmarks/run.py --list

Each system family (irkit, numpy, jax, pytensor, numba, torch) runs in its own process,
once per thread count, with every thread pool set to that count and the process pinned
to that many cores (harness.py). Every system's first result is checked against numpy's
before it is timed. The table goes to RESULTS.md and the raw figures to RESULTS.json,
with the machine, the versions and the command that made them; the goals of issue 8
are checked against the figures at the top.

The peers install with `pip install -e .[bench]` (jax, numba, torch). PyTensor cannot
share that environment: it pins numba <= 0.65.1, whose llvmlite (0.47) is older than the
one irkit needs (0.50). `--setup pytensor` makes it a venv of its own under
benchmarks/.venvs/pytensor, which the harness then uses for that family.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import venv

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import elementwise  # noqa: E402
import harness  # noqa: E402
import linalg  # noqa: E402
import models  # noqa: E402
import overhead  # noqa: E402
import rnn  # noqa: E402
import sparse  # noqa: E402

WORKLOADS: list[harness.Workload] = (elementwise.WORKLOADS + linalg.WORKLOADS + overhead.WORKLOADS
                                     + models.WORKLOADS + rnn.WORKLOADS + sparse.WORKLOADS)
PROFILES = os.path.join(HERE, "PROFILES.md")  # the hand-written why of each missed goal


# ---------------------------------------------------------------------------
# the goals of issue 8, read off the figures
# ---------------------------------------------------------------------------

def goals(rows: list[dict], thread_counts: list[int]) -> list[str]:
    at = harness.index(rows)
    lines = []

    def median(workload: str, system: str, n: int) -> float | None:
        r = at.get((workload, system, n))
        return r.get("median") if r else None

    def line(goal: str, value: float | None, limit: float, shown: str) -> None:
        if value is None:
            return
        met = value <= limit
        lines.append(f"| {goal} | {shown} | {'yes' if met else f'no: {value / limit:.2f}x the goal'} |")

    def vs(goal: str, workload: str, peer: str, limit: float, n: int) -> None:
        q = harness.ratio(at, workload, peer, n)
        line(f"{goal} ({n} thread{'s' if n > 1 else ''})", q, limit, "" if q is None else f"{q:.2f}x {peer}")

    for n in thread_counts:
        copies = [r["median"] for (w, s, k), r in at.items() if w == "copy" and k == n and "median" in r]
        mine = median("add_one", "irkit", n)
        if copies and mine:
            q = mine / min(copies)
            line(f"x + 1 <= 1.1x the fastest copy ({n} threads)", q, 1.1, f"{q:.2f}x")
        for w in ("chain_f32", "chain_f64"):
            vs(f"{w} <= 0.25x numpy", w, "numpy", 0.25, n)
            r = at.get((w, "irkit", n))
            if r and "max_ulp" in r:
                line(f"{w} max error <= 4 ulp", r["max_ulp"], 4.0, f"{r['max_ulp']:.2f} ulp")
        vs("softmax-xent <= numba parallel", "softmax_xent_4096x1000", "numba parallel", 1.0, n)
        vs("softmax-xent <= 0.25x pytensor", "softmax_xent_4096x1000", "pytensor", 0.25, n)
        vs("MLP step b128 <= jax (donated)", "mlp_step_b128", "jax (donated)", 1.0, n)
        vs("MLP step b128 <= 0.5x pytensor", "mlp_step_b128", "pytensor", 0.5, n)
        for w in (w.name for w in linalg.WORKLOADS):
            vs(f"{w} within 5% of numpy", w, "numpy", 1.05, n)
        table = [w for w in models.WORKLOADS if w.group == "Theano 2012 MLP"]
        beaten = [(w.name, s) for w in table for s in w.systems if s != "irkit"
                  and (q := harness.ratio(at, w.name, s, n)) is not None and q > 1.0]
        ran = [w for w in table if (w.name, "irkit", n) in at]
        if ran:
            lines.append(f"| 2012 MLP table: irkit >= every peer ({n} threads) | "
                         f"{len(ran)} workloads | {'yes' if not beaten else 'no: behind ' + ', '.join(f'{s} on {w}' for w, s in beaten)} |")
    n = thread_counts[0]
    call = median("call_scalar", "irkit", n)
    line("call overhead <= 0.5 µs (numpy scalars)", None if call is None else call * 1e6, 0.5,
         "" if call is None else f"{call * 1e6:.2f} µs")
    for w, limit in (("compile_mlp_cold", 0.3), ("compile_mlp_warm", 0.05)):
        t = median(w, "irkit", n)
        line(f"{w} <= {limit} s", t, limit, "" if t is None else f"{t:.3f} s")
    return lines


# ---------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------

def setup_family(family: str) -> None:
    """Make a family its own venv under benchmarks/.venvs (pytensor: see the module's doc)."""
    path = os.path.join(HERE, ".venvs", family)
    venv.create(path, with_pip=True, clear=True)
    packages = {"pytensor": ["pytensor", "scipy"]}.get(family, [family])
    subprocess.run([os.path.join(path, "bin", "python"), "-m", "pip", "install", "-q", *packages], check=True)
    print(f"{family}: installed in {path}; the harness runs it from there")


def chosen_workloads(args: argparse.Namespace) -> list[harness.Workload]:
    if args.only:
        names = args.only.split(",")
        known = {w.name for w in WORKLOADS}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SystemExit(f"no workload named {', '.join(unknown)}; `--list` lists them")
        return [w for w in WORKLOADS if w.name in names]
    return [w for w in WORKLOADS if not (args.quick and w.heavy)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, few repeats, no heavy workloads")
    ap.add_argument("--only", help="comma-separated workload names")
    ap.add_argument("--families", default=",".join(harness.FAMILIES), help="the system families to run")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--repeat", type=int, default=None, help="timed samples per system (at most)")
    ap.add_argument("--budget", type=float, default=None, help="seconds of timing per system (at least 3 samples)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every family this many times, alternating their order; each row keeps its fastest")
    ap.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"),
                    help="where to write the markdown table ('-' for stdout only)")
    ap.add_argument("--list", action="store_true", help="list the workloads and exit")
    ap.add_argument("--setup", metavar="FAMILY", help="install a family in its own venv under benchmarks/.venvs")
    ap.add_argument("--render", action="store_true",
                    help="rewrite the markdown from the JSON next to --output (after editing PROFILES.md)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one family here
    ap.add_argument("--rows", help=argparse.SUPPRESS)    # internal: where a worker writes its rows
    args = ap.parse_args()
    if args.repeat is None:
        args.repeat = 3 if args.quick else 15
    if args.budget is None:
        args.budget = 0.5 if args.quick else 3.0
    if args.list:
        for w in WORKLOADS:
            print(f"{w.name:36s} {'(heavy) ' if w.heavy else ''}{w.description}")
        return
    if args.setup:
        setup_family(args.setup)
        return
    if args.render:
        with open(os.path.splitext(args.output)[0] + ".json") as f:
            report = json.load(f)
        extra = open(PROFILES).read() if os.path.exists(PROFILES) else ""
        with open(args.output, "w") as f:
            f.write(harness.markdown(report, WORKLOADS, goals(report["rows"], report["threads"]), extra))
        return
    workloads = chosen_workloads(args)
    if args.worker:
        harness.pin_to_cores(harness.threads())
        rows = harness.run_worker(args.worker, workloads, args.quick, args.repeat, args.budget)
        with open(args.rows, "w") as f:
            json.dump(rows, f)
        return
    families = [f for f in args.families.split(",") if f]
    unknown = [f for f in families if f not in harness.FAMILIES]
    if unknown:
        raise SystemExit(f"unknown families {unknown}; known: {', '.join(harness.FAMILIES)}")
    thread_counts = [int(n) for n in args.threads.split(",")]
    started = time.time()
    result = harness.orchestrate(os.path.abspath(__file__), HERE, families, [w.name for w in workloads],
                                 thread_counts, args.quick, args.repeat, args.budget, workloads, args.rounds)
    report = {"command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
              "seconds": round(time.time() - started), "machine": harness.machine(),
              "threads": thread_counts, **result}
    wrong = [r for r in report["rows"] if r["system"] == "irkit" and "error" in r]
    extra = open(PROFILES).read() if os.path.exists(PROFILES) and not args.quick else ""
    text = harness.markdown(report, workloads, goals(report["rows"], thread_counts), extra)
    if args.output == "-":
        print(text)
    else:
        with open(args.output, "w") as f:
            f.write(text)
        with open(os.path.splitext(args.output)[0] + ".json", "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {args.output} ({report['seconds']} s)", file=sys.stderr)
    if wrong:  # irkit failing a check or a build is a bug, not a slow result
        for r in wrong:
            print(f"irkit failed on {r['workload']} ({r['threads']} threads): {r['error']}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
