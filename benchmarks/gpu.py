"""irkit's GPU backend on the issue's GPU workloads, in one short run for a lent device:

    python benchmarks/gpu.py [--quick] [--output benchmarks/RESULTS-gpu.md]

- elementwise bandwidth: `x + 1` and the transcendental chain on 10^8 float32 (2^20 with
  --quick), as a fraction of the device's peak memory bandwidth (from the driver's memory
  clock and bus width: 2 x clock x width, DDR);
- softmax cross-entropy forward and backward on (4096, 1000) float32;
- the MLP 784-500-10 SGD step at batch 128 (parameters resident on the device), beside
  JAX's jit of the same step on the same GPU where JAX has a GPU backend (the issue's goal:
  irkit within 1.5x);
- matmul 2048^3 float32 and float64 in GFLOP/s (irkit's tiled kernel; cuBLAS through
  PyTorch beside it when a CUDA build of torch is installed).

Inputs live on the device (DeviceArray), so the times are the kernels' and launches', not
PCIe copies; each call ends synchronised (irkit reads the error flag back). Every workload
is checked once against the CPU backend before it is timed. Writes a markdown table naming
the device. Needs a GPU: without one it stops with irkit's DeviceError.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from typing import Callable

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import irkit as ik  # noqa: E402
from irkit.backends import cuda  # noqa: E402
from irkit.backends.dlpack import DeviceArray  # noqa: E402

ATTR_MEMORY_CLOCK_KHZ, ATTR_BUS_WIDTH_BITS = 36, 37


def peak_bandwidth() -> float:
    """Bytes per second the device's memory moves at most (DDR: two transfers a clock)."""
    drv = cuda.driver()
    return 2.0 * drv.attribute(ATTR_MEMORY_CLOCK_KHZ) * 1e3 * drv.attribute(ATTR_BUS_WIDTH_BITS) / 8


def seconds(fn: Callable[[], object], budget: float = 1.0, repeat: int = 20) -> tuple[float, float]:
    """(median, min) seconds of fn(), after one warm-up call."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeat and (len(times) < 3 or time.perf_counter() - start < budget):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), float(np.min(times))


def check(name: str, got, want, rtol: float) -> None:
    got = np.asarray(got.numpy() if isinstance(got, DeviceArray) else got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if not np.allclose(got, want, rtol=rtol, atol=rtol):
        worst = float(np.max(np.abs(got - want)))
        raise AssertionError(f"{name}: the GPU result differs from the CPU's (max abs difference {worst:g})")


def elementwise(n: int, peak: float) -> list[tuple]:
    rows = []
    x = ik.vector("x", "float32")
    chain = ik.exp(-x * x) * ik.sin(x) + ik.tanh(0.5 * x) / (1 + x * x)
    a = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    d = DeviceArray.from_numpy(a)
    for name, expr in (("x + 1", x + 1), ("transcendental chain", chain)):
        gpu, cpu = ik.function([x], expr, target="cuda"), ik.function([x], expr)
        check(name, gpu(d), cpu(a), 1e-5)
        med, best = seconds(lambda: gpu(d))
        moved = 2 * a.nbytes  # read x, write the result
        share = f" = {100 * moved / med / peak:.0f}% of peak" if peak > 0 else " (the driver gave no peak)"
        rows.append((f"{name}, {n:,} float32", med, best, f"{moved / med / 1e9:.0f} GB/s{share}"))
    return rows


def softmax_xent() -> list[tuple]:
    x, t = ik.matrix("x", "float32"), ik.lvector("t")
    loss = -ik.mean(ik.log_softmax(x)[ik.arange(x.shape[0]), t])
    outs = [loss, ik.grad(loss, x)]
    rng = np.random.default_rng(1)
    a, labels = rng.standard_normal((4096, 1000)).astype(np.float32), rng.integers(0, 1000, 4096)
    gpu, cpu = ik.function([x, t], outs, target="cuda"), ik.function([x, t], outs)
    da, dt = DeviceArray.from_numpy(a), DeviceArray.from_numpy(labels)
    for g, c in zip(gpu(da, dt), cpu(a, labels)):
        check("softmax-xent", g, c, 1e-4)
    med, best = seconds(lambda: gpu(da, dt))
    return [("softmax-xent fwd+bwd (4096, 1000) float32", med, best, "")]


def mlp_step() -> list[tuple]:
    import models
    params = [p.astype(np.float32) for p in models.mlp_params((784, 500, 10), seed=10)]
    X, y = models.minibatch(128, 784, 10, seed=9)
    X = X.astype(np.float32)
    steps = {}
    for target in ("cuda", "cpu"):
        inputs, loss, updates = models._irkit_training_graph(params, 0.01)
        steps[target] = ik.function(inputs, loss, updates=updates, target=target)
    first_loss = steps["cpu"](X, y)
    check("MLP step", steps["cuda"](X, y), first_loss, 1e-4)
    dX, dy = DeviceArray.from_numpy(X), DeviceArray.from_numpy(y)
    med, best = seconds(lambda: steps["cuda"](dX, dy))
    note = "parameters resident on the device"
    jax_median = _jax_mlp_step(params, X, y, first_loss)
    if jax_median is not None:
        note += f"; JAX jit (donated) on this GPU {1e3 * jax_median:.3f} ms, irkit/JAX {med / jax_median:.2f}x (goal <= 1.5x)"
    return [("MLP 784-500-10 SGD step, batch 128", med, best, note)]


def _jax_mlp_step(params: list[np.ndarray], X: np.ndarray, y: np.ndarray, first_loss) -> float | None:
    """JAX's jit of the same step on the GPU, parameters donated (benchmarks/models.py
    jax_trainer), its first loss checked against irkit's CPU step: median seconds a step, or
    None where JAX has no GPU here."""
    try:
        import jax
        if not jax.devices("gpu"):
            return None
    except (ImportError, RuntimeError):  # no JAX, or JAX without a GPU backend
        return None
    import models
    trainer = models.jax_trainer(params, 0.01, donate=True)
    dX, dy = jax.device_put(X), jax.device_put(y)
    check("MLP step (JAX)", np.asarray(trainer.step(dX, dy)), first_loss, 1e-4)

    def run():
        trainer.step(dX, dy)
        trainer.sync()
    return seconds(run)[0]


def matmuls(n: int) -> list[tuple]:
    rows = []
    for dtype in ("float32", "float64"):
        A, B = ik.matrix("A", dtype), ik.matrix("B", dtype)
        gpu = ik.function([A, B], A @ B, target="cuda")
        rng = np.random.default_rng(2)
        a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
        da, db = DeviceArray.from_numpy(a), DeviceArray.from_numpy(b)
        check(f"matmul {dtype}", gpu(da, db), a.astype(np.float64) @ b, 1e-3 if dtype == "float32" else 1e-9)
        med, best = seconds(lambda: gpu(da, db))
        note = f"{2 * n ** 3 / med / 1e9:,.0f} GFLOP/s"
        cublas = _torch_cublas(n, dtype)
        if cublas is not None:
            note += f"; cuBLAS (torch) {2 * n ** 3 / cublas / 1e9:,.0f} GFLOP/s, irkit/cuBLAS {med / cublas:.2f}x"
        rows.append((f"matmul {n}^3 {dtype}", med, best, note))
    return rows


def _torch_cublas(n: int, dtype: str) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    a = torch.randn(n, n, dtype=getattr(torch, dtype), device="cuda")

    def run():
        a @ a
        torch.cuda.synchronize()
    return seconds(run)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a plumbing check)")
    ap.add_argument("--output", default=os.path.join(HERE, "RESULTS-gpu.md"))
    args = ap.parse_args()
    drv = cuda.driver()  # DeviceError here when there is no GPU
    peak = peak_bandwidth()
    rows = elementwise(1 << 20 if args.quick else 100_000_000, peak)
    rows += softmax_xent() + mlp_step() + matmuls(256 if args.quick else 2048)
    lines = [
        "# irkit on a GPU",
        "",
        f"Made by `python benchmarks/gpu.py{' --quick' if args.quick else ''}` on "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
        f"Device: {drv.name} ({drv.sm}), peak memory bandwidth {peak / 1e9:,.0f} GB/s; launcher "
        f"{drv.launcher}. Inputs on the device; every result checked against the CPU backend first.",
        "",
        "| workload | median | min | |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {1e3 * med:.3f} ms | {1e3 * best:.3f} ms | {note} |" for name, med, best, note in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.output, "w", encoding="utf-8") as out:
        out.write(text)


if __name__ == "__main__":
    main()
