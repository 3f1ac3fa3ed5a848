"""Matrix products: n x n times n x n in float32 and float64 (the goal: within 5% of
numpy's BLAS, which irkit calls through scipy)."""

from __future__ import annotations

import numpy as np

from harness import Workload, threads


def _operands(n: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n)
    return rng.standard_normal((n, n)).astype(dtype), rng.standard_normal((n, n)).astype(dtype)


def _irkit(ab):
    import irkit as ik
    a, b = ab
    x, y = ik.matrix("a", dtype=str(a.dtype)), ik.matrix("b", dtype=str(a.dtype))
    f = ik.function([x, y], ik.dot(x, y))
    return lambda: f(a, b)


def _numpy(ab):
    a, b = ab
    out = np.empty_like(a)
    return lambda: np.matmul(a, b, out=out)


def _jax(ab):
    import jax
    if ab[0].dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    a, b = (jax.device_put(v) for v in ab)
    f = jax.jit(lambda x, y: x @ y)
    return lambda: f(a, b).block_until_ready()


def _pytensor(ab):
    import pytensor
    import pytensor.tensor as pt
    dtype = str(ab[0].dtype)
    x, y = pt.matrix("a", dtype=dtype), pt.matrix("b", dtype=dtype)
    f = pytensor.function([x, y], pt.dot(x, y))
    return lambda: f(*ab)


def _torch(ab):
    import torch
    torch.set_num_threads(threads())
    a, b = (torch.from_numpy(v) for v in ab)
    out = torch.empty_like(a)
    return lambda: torch.matmul(a, b, out=out)


def matmul(n: int, dtype: str) -> Workload:
    def setup(quick: bool):
        return _operands(min(n, 256) if quick else n, dtype)
    return Workload(
        f"matmul_{n}_{dtype}", f"{n} x {n} @ {n} x {n}, {dtype} (256 with --quick).", setup=setup,
        reference=lambda ab: ab[0].astype(np.float64) @ ab[1].astype(np.float64),
        tol=2e-4 if dtype == "float32" else 1e-10, rate=("GFLOP", lambda ab: 2 * ab[0].shape[0] ** 3 / 1e9),
        heavy=n >= 2048, group="Matrix products",
        systems={"irkit": _irkit, "numpy": _numpy, "jax": _jax, "pytensor": _pytensor, "torch": _torch})


WORKLOADS = [matmul(n, dtype) for dtype in ("float32", "float64") for n in (256, 1024, 2048)]
