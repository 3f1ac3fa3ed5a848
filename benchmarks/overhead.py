"""Fixed costs: the overhead of a call (f(x, y) = x + y on numpy scalars and on
10-vectors, argument checks included) and compile time as graphs grow (100, 1,000 and
10,000 elementwise ops, compiled in a warm process)."""

from __future__ import annotations

import random

import numpy as np

from harness import Case, Workload, threads

CALLS = 1000  # calls per timed sample: one call is well under the timer's resolution


# ---------------------------------------------------------------------------
# call overhead
# ---------------------------------------------------------------------------

def _irkit_add(xy):
    import irkit as ik
    x, y = xy
    if np.ndim(x) == 0:
        a, b = ik.dscalar("x"), ik.dscalar("y")
    else:
        a, b = ik.dvector("x"), ik.dvector("y")
    f = ik.function([a, b], a + b)
    return lambda: f(x, y)


def _numba_add(xy):
    import numba
    add = numba.njit(lambda a, b: a + b)
    x, y = xy
    add(x, y)
    return lambda: add(x, y)


def _jax_add(xy):
    import jax
    jax.config.update("jax_enable_x64", True)
    add = jax.jit(lambda a, b: a + b)
    x, y = xy
    return lambda: add(x, y).block_until_ready()


def _pytensor_add(xy):
    import pytensor
    import pytensor.tensor as pt
    x, y = xy
    a, b = (pt.dscalar(), pt.dscalar()) if np.ndim(x) == 0 else (pt.dvector(), pt.dvector())
    f = pytensor.function([a, b], a + b)
    return lambda: f(x, y)


def _torch_add(xy):
    import torch
    torch.set_num_threads(threads())
    x, y = (torch.tensor(v) for v in xy)  # torch's calls take its own tensors
    return lambda: torch.add(x, y)


def call_overhead(kind: str) -> Workload:
    def setup(quick: bool):
        if kind == "scalar":
            return np.float64(1.5), np.float64(2.25)
        return np.linspace(0, 1, 10), np.linspace(1, 2, 10)
    what = "numpy float64 scalars" if kind == "scalar" else "float64 10-vectors"
    return Workload(
        f"call_{kind}", f"the cost of a call of f(x, y) = x + y on {what}, checks included "
        f"({CALLS} calls per sample).", setup=setup, reference=lambda xy: xy[0] + xy[1], tol=0.0,
        inner=CALLS, threads_matter=False, group="Call overhead",
        systems={"irkit": _irkit_add, "numpy": lambda xy: (lambda: np.add(*xy)), "numba": _numba_add,
                 "jax": _jax_add, "pytensor": _pytensor_add, "torch": _torch_add})


# ---------------------------------------------------------------------------
# compile time against graph size
# ---------------------------------------------------------------------------

def random_program(n_ops: int, seed: int = 0) -> list[tuple[str, int, int]]:
    """n_ops binary steps over two inputs; step k reads two earlier values (one of the last ten,
    so the graph is deep as well as wide). Value k + 2 is step k's result."""
    rng = random.Random(seed)
    steps = []
    for k in range(n_ops):
        count = k + 2
        steps.append((rng.choice(OPS), rng.randrange(max(0, count - 10), count), rng.randrange(count)))
    return steps


OPS = ("add", "mul", "sub", "maximum", "tanh_add", "gauss_mul")


def evaluate(m, program, x, y):
    """The program's last value in namespace m (numpy, irkit, jax.numpy, pytensor.tensor)."""
    values = [x, y]
    for op, i, j in program:
        a, b = values[i], values[j]
        values.append({"add": lambda: a + b, "mul": lambda: a * b, "sub": lambda: a - b,
                       "maximum": lambda: m.maximum(a, b), "tanh_add": lambda: m.tanh(a) + b,
                       "gauss_mul": lambda: m.exp(-a * a) * b}[op]())
    return values[-1]


def _inputs(quick: bool):
    return np.linspace(-1, 1, 1000, dtype=np.float32), np.linspace(1, 2, 1000, dtype=np.float32)


def _compile_irkit(n_ops):
    def build(xy):
        import irkit as ik
        ik.config.cache_dir = None  # the compile itself, not a cache hit
        program = random_program(n_ops)
        a, b = ik.vector("x", dtype="float32"), ik.vector("y", dtype="float32")
        out = evaluate(ik, program, a, b)
        state = {}

        def compile_once():
            state["f"] = ik.function([a, b], out)
            return state["f"]
        return Case(compile_once, result=lambda: state["f"](*xy))
    return build


def _compile_jax(n_ops):
    def build(xy):
        import jax
        import jax.numpy as jnp
        program = random_program(n_ops)
        state = {}

        def compile_once():  # a new function each time: jax's in-process caches would hit otherwise
            state["f"] = jax.jit(lambda a, b: evaluate(jnp, program, a, b)).lower(*xy).compile()
            return state["f"]
        return Case(compile_once, result=lambda: state["f"](*xy))
    return build


def _compile_pytensor(n_ops):
    def build(xy):
        import pytensor
        import pytensor.tensor as pt
        program = random_program(n_ops)
        a, b = pt.vector("x", dtype="float32"), pt.vector("y", dtype="float32")
        out = evaluate(pt, program, a, b)
        state = {}

        def compile_once():
            state["f"] = pytensor.function([a, b], out)
            return state["f"]
        return Case(compile_once, result=lambda: state["f"](*xy))
    return build


def compile_graph(n_ops: int) -> Workload:
    systems = {"irkit": _compile_irkit(n_ops), "jax": _compile_jax(n_ops)}
    if n_ops <= 1000:  # pytensor's graph rewrites take minutes beyond that
        systems["pytensor"] = _compile_pytensor(n_ops)
    return Workload(
        f"compile_{n_ops}", f"compile time of a random elementwise graph of {n_ops:,} ops over two float32 "
        "vectors, in a warm process (irkit's compile cache off).", setup=_inputs,
        reference=lambda xy: evaluate(np, random_program(n_ops), *xy), tol=1e-4, threads_matter=False,
        repeat=3 if n_ops < 10_000 else 1, heavy=n_ops >= 10_000, group="Compile time against graph size",
        systems=systems)


WORKLOADS = [call_overhead("scalar"), call_overhead("vector"),
             *[compile_graph(n) for n in (100, 1_000, 10_000)]]
