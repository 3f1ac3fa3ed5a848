"""irkit against its peers on the same work, in one process, with ratios.

    python benchmarks/run.py [--quick] [--only NAME] [--repeat N] [--output benchmarks/RESULTS.md]

Each workload builds its data once, checks irkit's result against numpy's, then
times every system on it (warm-up call first; median, min and max of the
repeats). numpy is always a peer; the others are added when installed.
The table is written to RESULTS.md (and the raw figures to RESULTS.json)
with the machine, the versions and the command that made it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import irkit as ik  # noqa: E402


@dataclass
class Workload:
    name: str
    description: str
    make: Callable[[bool], dict]  # quick -> {"irkit": fn, "numpy": fn, ..., "check": (got_fn, want, tol)}
    results: dict = field(default_factory=dict)
    rate: tuple[str, float] | None = None  # (unit, items per call): also report items/s
    heavy: bool = False                    # left out of --quick


def timeit(fn: Callable[[], object], repeat: int) -> list[float]:
    fn()  # warm up (and compile caches, page faults of the first output)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


# ---------------------------------------------------------------------------
# workloads
# ---------------------------------------------------------------------------

def add_one(quick: bool) -> dict:
    n = 1_000_000 if quick else 10_000_000
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    y = np.empty_like(x)
    v = ik.vector("x", dtype="float32")
    f = ik.function([v], v + 1)
    return {"irkit": lambda: f(x), "numpy": lambda: np.add(x, 1, out=y),
            "numpy (alloc)": lambda: x + 1,
            "check": (lambda: f(x), x + 1, 0.0)}


def copy(quick: bool) -> dict:
    n = 1_000_000 if quick else 10_000_000
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    y = np.empty_like(x)
    v = ik.vector("x", dtype="float32")
    f = ik.function([v], v)  # an output never aliases an input: this is a copy
    return {"irkit": lambda: f(x), "numpy": lambda: np.copyto(y, x),
            "check": (lambda: f(x), x, 0.0)}


def chain(dtype: str) -> Callable[[bool], dict]:
    def make(quick: bool) -> dict:
        n = 1_000_000 if quick else 10_000_000
        x = np.random.default_rng(1).uniform(-5, 5, n).astype(dtype)
        v = ik.vector("x", dtype=dtype)
        f = ik.function([v], ik.exp(-v * v) * ik.sin(v) + ik.tanh(0.5 * v) / (1 + v * v))

        def numpy_chain():
            return np.exp(-x * x) * np.sin(x) + np.tanh(0.5 * x) / (1 + x * x)
        want = numpy_chain()
        tol = 1e-6 if dtype == "float32" else 1e-14
        return {"irkit": lambda: f(x), "numpy": numpy_chain, "check": (lambda: f(x), want, tol)}
    return make


def compile_graph(n_ops: int) -> Callable[[bool], dict]:
    """Compile time of an elementwise graph of n_ops ops (random DAG over two inputs)."""
    def make(quick: bool) -> dict:
        import random
        rng = random.Random(0)
        x, y = ik.vector("x", dtype="float32"), ik.vector("y", dtype="float32")
        pool = [x, y]
        ops = [lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a - b,
               lambda a, b: ik.maximum(a, b), lambda a, b: ik.tanh(a) + b, lambda a, b: ik.exp(-a * a) * b]
        while len(pool) < n_ops + 2:
            pool.append(rng.choice(ops)(rng.choice(pool[-10:]), rng.choice(pool)))
        out = pool[-1]
        data = [np.linspace(-1, 1, 1000, dtype=np.float32), np.linspace(1, 2, 1000, dtype=np.float32)]
        f = ik.function([x, y], out)
        want = _numpy_eval(pool, data)
        return {"irkit": lambda: ik.function([x, y], out), "check": (lambda: f(*data), want, 1e-4)}
    return make


def _numpy_eval(pool, data):
    """Evaluate the graph of pool[-1] with each op's numpy reference (via constant folding)."""
    from irkit.function import build_module
    from irkit.dialects.ik.base import IkOp
    inputs = pool[:2]
    module, _ = build_module(inputs, [pool[-1]], {})
    env = {}
    fn = next(iter(module.ops))
    for arg, value in zip(fn.body.block.args, data):
        env[arg] = value
    for op in fn.body.block.ops:
        if isinstance(op, IkOp):
            outs = op.evaluate(op.params, *[env[v] for v in op.operands])
            env.update(zip(op.results, outs))
        else:
            return env[op.operands[0]]


from rnn import rnn, rnn2012, scan_overhead  # noqa: E402

WORKLOADS = [
    Workload("add_one", "y = x + 1, float32 (10M; 1M with --quick)", add_one),
    Workload("copy", "a copy of float32 (irkit: the identity function); numpy: np.copyto", copy),
    Workload("chain_f32", "exp(-x*x)*sin(x) + tanh(0.5*x)/(1+x*x), float32", chain("float32")),
    Workload("chain_f64", "the same chain, float64", chain("float64")),
    Workload("compile_300", "compile time of a 300-op elementwise graph (in a warm process)",
             compile_graph(300)),
    Workload("scan_overhead", "the cost of a scan step: acc = 0.5 * acc + x_t over 1M steps, float64 "
             "(100k with --quick)", scan_overhead, rate=("steps", 1_000_000)),
    Workload("rnn_fwd_T1000_H10", "tanh RNN forward, T=1000, B=1, I=H=10, float32 (T=100 with --quick)",
             rnn(1000, 1, 10, 10, grad=False), rate=("steps", 1000)),
    Workload("rnn_bptt_T1000_H10", "its BPTT: d sum(h) / d (W, U, h0)", rnn(1000, 1, 10, 10, grad=True),
             rate=("steps", 1000)),
    Workload("rnn_fwd_T200_B16_H100", "tanh RNN forward, T=200, B=16, I=100, H=100, float32",
             rnn(200, 16, 100, 100, grad=False), rate=("steps", 200)),
    Workload("rnn_bptt_T200_B16_H100", "its BPTT", rnn(200, 16, 100, 100, grad=True), rate=("steps", 200)),
    *[Workload(f"rnn2012_H{h}_V{v}", f"Theano 2012 RNN: Elman (sigmoid), hidden {h}, vocabulary {v}, 100-word "
               "sequences, batch 1, full BPTT + SGD", rnn2012(h, v), rate=("words", 100), heavy=h >= 500)
      for h, v in ((50, 10), (100, 54), (500, 3000), (1500, 3000))],
]


# ---------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------

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
    import llvmlite
    import scipy
    import xdsl
    from importlib.metadata import PackageNotFoundError, version
    peers = {}
    for name in ("jax", "pytensor", "numba", "torch"):  # read from the metadata, not imported here
        try:
            peers[name] = version(name)
        except PackageNotFoundError:
            continue
    return {**peers, "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__, "llvmlite": llvmlite.__version__,
            "xdsl": str(getattr(xdsl, "__version__", "?")), "irkit": ik.__version__,
            "irkit threads": ik.config.num_threads}


def run(args: argparse.Namespace) -> dict:
    chosen = [w for w in WORKLOADS if (not args.only or w.name in args.only.split(","))
              and not (args.quick and w.heavy and not args.only)]
    if not chosen:
        raise SystemExit(f"no workload named {args.only!r}; known: {', '.join(w.name for w in WORKLOADS)}")
    report = {"machine": machine(), "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "workloads": []}
    for w in chosen:
        systems = w.make(args.quick)
        items = systems.pop("items", w.rate[1] if w.rate else None)  # per call, at this size
        got_fn, want, tol = systems.pop("check")
        got = got_fn()
        if not np.allclose(got, want, rtol=tol, atol=tol):
            raise SystemExit(f"{w.name}: irkit's result differs from numpy's "
                             f"(max abs diff {np.max(np.abs(got - want))})")
        row = {"name": w.name, "description": w.description, "systems": {}, "rate": w.rate}
        for name, fn in systems.items():
            times = timeit(fn, min(args.repeat, 5) if w.name.startswith("compile") else args.repeat)
            row["systems"][name] = {"median": statistics.median(times), "min": min(times), "max": max(times)}
        base = row["systems"]["irkit"]["median"]
        for name, r in row["systems"].items():
            r["irkit_ratio"] = base / r["median"]
            if w.rate:
                r["rate"] = items / r["median"]
        report["workloads"].append(row)
        print(f"{w.name:10s} " + "  ".join(f"{n} {1e3 * r['median']:.2f} ms" for n, r in row["systems"].items()),
              flush=True)
    return report


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = ["# Benchmark results", "",
             f"Made by `{report['command']}` on {report['date']}.", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in m.items()) + ".", "",
             "Times are per call (median, min, max of the repeats after a warm-up call). "
             "`irkit/peer` is irkit's median over the peer's: below 1 means irkit is faster.", ""]
    for row in report["workloads"]:
        unit = row.get("rate") and row["rate"][0]
        lines += [f"## {row['name']}: {row['description']}", "",
                  "| system | median ms | min ms | max ms | irkit/peer |" + (f" {unit}/s |" if unit else ""),
                  "|---|---|---|---|---|" + ("---|" if unit else "")]
        for name, r in row["systems"].items():
            lines.append(f"| {name} | {1e3 * r['median']:.3f} | {1e3 * r['min']:.3f} | {1e3 * r['max']:.3f} | "
                         f"{r['irkit_ratio']:.2f} |" + (f" {r['rate']:,.0f} |" if unit else ""))
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, few repeats (a smoke test)")
    ap.add_argument("--only", help="comma-separated workload names")
    ap.add_argument("--repeat", type=int, default=None, help="timed repeats per system")
    ap.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"),
                    help="where to write the markdown table ('-' for stdout only)")
    args = ap.parse_args()
    if args.repeat is None:
        args.repeat = 3 if args.quick else 15
    report = run(args)
    text = markdown(report)
    if args.output == "-":
        print(text)
        return
    with open(args.output, "w") as f:
        f.write(text)
    with open(os.path.splitext(args.output)[0] + ".json", "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
