"""Elementwise workloads: memory bandwidth (x + 1 and a copy), the transcendental chain
exp(-x*x)*sin(x) + tanh(0.5*x)/(1+x*x) in float32 and float64, and how its run time
grows with N. Every builder imports its library itself (see harness.py)."""

from __future__ import annotations

import numpy as np

from harness import Case, Workload, threads


def _size(quick: bool, full: int = 10_000_000) -> int:
    return min(full, 1_000_000) if quick else full


def _vector(seed: int, n: int, dtype: str, low: float = -5.0, high: float = 5.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, n).astype(dtype)


# ---------------------------------------------------------------------------
# one elementwise program per library, written from the same expression
# ---------------------------------------------------------------------------

def _chain(m, x):
    """The chain in any numpy-like namespace `m` (numpy, jax.numpy, torch, pytensor.tensor)."""
    return m.exp(-x * x) * m.sin(x) + m.tanh(0.5 * x) / (1 + x * x)


def _irkit(program):
    def build(x: np.ndarray):
        import irkit as ik
        v = ik.vector("x", dtype=str(x.dtype))
        f = ik.function([v], program(ik, v))
        return lambda: f(x)
    return build


def _jax(program):
    def build(x: np.ndarray):
        import jax
        import jax.numpy as jnp
        if x.dtype == np.float64:
            jax.config.update("jax_enable_x64", True)
        f = jax.jit(lambda v: program(jnp, v))
        xd = jax.device_put(x)
        return lambda: f(xd).block_until_ready()
    return build


def _pytensor(program):
    def build(x: np.ndarray):
        import pytensor
        import pytensor.tensor as pt
        v = pt.vector("x", dtype=str(x.dtype))
        f = pytensor.function([v], program(pt, v))
        return lambda: f(x)
    return build


def _torch(program):
    def build(x: np.ndarray):
        import torch
        torch.set_num_threads(threads())
        xt = torch.from_numpy(x)
        return lambda: program(torch, xt)
    return build


def _numba_parallel(kernel_source):
    def build(x: np.ndarray):
        import math  # noqa: F401  (the kernels call math.*)

        import numba
        numba.set_num_threads(threads())
        namespace = {"numba": numba, "math": math}
        exec(kernel_source, namespace)  # one prange loop per workload, compiled for x's dtype
        kernel = namespace["kernel"]
        out = np.empty_like(x)
        kernel(x, out)
        return lambda: kernel(x, out)
    return build


NUMBA_ADD_ONE = """
@numba.njit(parallel=True, fastmath=True)
def kernel(x, out):
    for i in numba.prange(x.size):
        out[i] = x[i] + 1
    return out
"""
NUMBA_COPY = """
@numba.njit(parallel=True)
def kernel(x, out):
    for i in numba.prange(x.size):
        out[i] = x[i]
    return out
"""
NUMBA_CHAIN = """
@numba.njit(parallel=True, fastmath=True)
def kernel(x, out):
    for i in numba.prange(x.size):
        v = x[i]
        out[i] = math.exp(-v * v) * math.sin(v) + math.tanh(0.5 * v) / (1 + v * v)
    return out
"""


def _numpy_into(fn):
    """numpy writing into a preallocated output (its fastest form)."""
    def build(x: np.ndarray):
        out = np.empty_like(x)

        def run() -> np.ndarray:
            fn(x, out)
            return out
        return run
    return build


def add_one() -> Workload:
    def torch_add(x):
        import torch
        torch.set_num_threads(threads())
        xt, out = torch.from_numpy(x), torch.empty(x.shape, dtype=torch.float32)
        return lambda: torch.add(xt, 1, out=out)
    return Workload(
        "add_one", "y = x + 1 on 10M float32 (1M with --quick): bandwidth, 80 MB moved per call.",
        setup=lambda quick: _vector(0, _size(quick), "float32"), reference=lambda x: x + 1, tol=0.0,
        rate=("elements", len),
        systems={"irkit": _irkit(lambda m, v: v + 1),
                 "numpy": _numpy_into(lambda x, out: np.add(x, 1, out=out)),
                 "numpy (new output)": lambda x: (lambda: x + 1),
                 "jax": _jax(lambda m, v: v + 1), "pytensor": _pytensor(lambda m, v: v + 1),
                 "numba parallel": _numba_parallel(NUMBA_ADD_ONE), "torch": torch_add})


def copy() -> Workload:
    def torch_copy(x):
        import torch
        torch.set_num_threads(threads())
        xt, out = torch.from_numpy(x), torch.empty(x.shape, dtype=torch.float32)
        return lambda: out.copy_(xt)
    return Workload(
        "copy", "a copy of the same 10M float32 (irkit: the identity function, whose output never aliases "
        "its input): the fastest copy bounds x + 1.",
        setup=lambda quick: _vector(0, _size(quick), "float32"), reference=lambda x: x, tol=0.0,
        rate=("elements", len),
        systems={"irkit": _irkit(lambda m, v: v),
                 "numpy": _numpy_into(lambda x, out: np.copyto(out, x)),
                 "numba parallel": _numba_parallel(NUMBA_COPY), "torch": torch_copy})


def chain(dtype: str, n: int | None = None, group: str | None = None) -> Workload:
    name = f"chain_{dtype[0]}{dtype[-2:]}" if n is None else f"chain_f32_n{n:.0e}".replace("+0", "")
    description = (f"exp(-x*x)*sin(x) + tanh(0.5*x)/(1+x*x) on 10M {dtype} (1M with --quick)." if n is None
                   else f"the float32 chain on N = {n:,} elements.")

    def setup(quick: bool) -> np.ndarray:
        size = _size(quick) if n is None else (min(n, 100_000) if quick else n)
        return _vector(1, size, dtype)
    return Workload(
        name, description, setup=setup,
        reference=lambda x: _chain(np, x.astype(np.float64)).astype(x.dtype),
        tol=2e-6 if dtype == "float32" else 1e-13, rate=("elements", len), group=group,
        systems={"irkit": _irkit(_chain), "numpy": lambda x: (lambda: _chain(np, x)),
                 "jax": _jax(_chain), "pytensor": _pytensor(_chain),
                 "numba parallel": _numba_parallel(NUMBA_CHAIN), "torch": _torch(_chain)})


def max_ulp_error(got: np.ndarray, x: np.ndarray) -> float:
    """The largest error of `got` in units in the last place of the float64-evaluated chain."""
    exact = _chain(np, x.astype(np.float64))
    spacing = np.spacing(np.abs(exact).astype(x.dtype)).astype(np.float64)
    return float(np.max(np.abs(got.astype(np.float64) - exact) / spacing))


def _irkit_chain_with_accuracy(x: np.ndarray) -> Case:
    """irkit's chain, and its error in ulp against the float64 evaluation (the goal's ≤ 4 ulp)."""
    run = _irkit(_chain)(x)
    return Case(run, notes=lambda: {"max_ulp": max_ulp_error(run(), x)})


WORKLOADS = [add_one(), copy(), chain("float32"), chain("float64"),
             *[chain("float32", n, group="Run time against N (the float32 chain)")
               for n in (1_000, 10_000, 100_000, 1_000_000, 10_000_000)]]
for _w in WORKLOADS[2:4]:
    _w.systems["irkit"] = _irkit_chain_with_accuracy
