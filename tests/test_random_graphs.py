"""Property test: random expression graphs, compiled by irkit, agree with numpy.

Each example draws sizes (0 included), a pool of inputs whose shapes broadcast
against (n, m) — (n, m), (1, m), (n, 1), (m,), () — and then a sequence of
operations (elementwise math, broadcasting binary ops, comparisons and where,
reductions with keepdims, slicing and transposes that keep shapes) applied
to values of the pool. The same graph is evaluated with numpy, and a few of
its values (the last one and two random ones) are outputs.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import irkit as ik

UNARY = [
    ("exp∘tanh", lambda x: ik.exp(ik.tanh(x)), lambda x: np.exp(np.tanh(x))),
    ("sin", ik.sin, np.sin),
    ("cos", ik.cos, np.cos),
    ("tanh", ik.tanh, np.tanh),
    ("sigmoid", ik.sigmoid, lambda x: 1 / (1 + np.exp(-x))),
    ("softplus", ik.softplus, lambda x: np.logaddexp(0, x)),
    ("abs", ik.abs, np.abs),
    ("neg", lambda x: -x, np.negative),
    ("square", ik.square, np.square),
    ("log1p|x|", lambda x: ik.log1p(ik.abs(x)), lambda x: np.log1p(np.abs(x))),
    ("sqrt|x|", lambda x: ik.sqrt(ik.abs(x)), lambda x: np.sqrt(np.abs(x))),
    ("relu", ik.relu, lambda x: np.maximum(x, 0)),
    ("floor", ik.floor, np.floor),
    ("sign", ik.sign, np.sign),
    ("clip", lambda x: ik.clip(x, -0.5, 0.7), lambda x: np.clip(x, -0.5, 0.7)),
    ("x*2.5+1", lambda x: x * 2.5 + 1, lambda x: x * 2.5 + 1),
]
BINARY = [
    ("add", lambda a, b: a + b, np.add),
    ("sub", lambda a, b: a - b, np.subtract),
    ("mul", lambda a, b: a * b, np.multiply),
    ("div", lambda a, b: a / (ik.abs(b) + 1), lambda a, b: a / (np.abs(b) + 1)),
    ("maximum", ik.maximum, np.maximum),
    ("minimum", ik.minimum, np.minimum),
    ("where", lambda a, b: ik.where(a > b, a, b * 0.5), lambda a, b: np.where(a > b, a, b * 0.5)),
    ("mod", lambda a, b: a % (ik.abs(b) + 1), lambda a, b: np.mod(a, np.abs(b) + 1)),
]


def _reduce(kind: str, axis):
    def irk(x):
        return getattr(ik, kind)(x, axis=axis, keepdims=True)

    def ref(x):
        return getattr(np, kind)(x, axis=axis, keepdims=True)
    return irk, ref


@st.composite
def graphs(draw):
    n = draw(st.integers(0, 4))
    m = draw(st.integers(0, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    shapes = {"A": (n, m), "B": (1, m), "C": (n, 1), "v": (m,), "s": ()}
    static = {"A": (None, None), "B": (1, None), "C": (None, 1), "v": (None,), "s": ()}
    names = draw(st.lists(st.sampled_from(sorted(shapes)), min_size=1, max_size=4, unique=True))
    inputs = [ik.tensor(k, shape=static[k], dtype="float64") for k in names]
    values = [rng.uniform(-3, 3, shapes[k]) for k in names]
    pool = list(zip(inputs, values))
    steps = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["unary", "binary", "binary", "reduce", "index"]))
        k = draw(st.integers(0, len(pool) - 1))
        x, xv = pool[k]
        if kind == "unary":
            name, irk, ref = draw(st.sampled_from(UNARY))
            pool.append((irk(x), ref(xv)))
        elif kind == "binary":
            name, irk, ref = draw(st.sampled_from(BINARY))
            y, yv = pool[draw(st.integers(0, len(pool) - 1))]
            pool.append((irk(x, y), ref(xv, yv)))
        elif kind == "reduce":
            if xv.ndim == 0:
                continue
            red = draw(st.sampled_from(["sum", "mean", "max", "min", "prod"]))
            axis = draw(st.sampled_from([None, 0, -1] if xv.ndim == 2 else [None, 0]))
            if red in ("max", "min") and (xv.size == 0 or 0 in np.shape(xv)):
                continue
            if red == "mean" and xv.size == 0:
                continue
            irk, ref = _reduce(red, axis)
            out, outv = irk(x), ref(xv)
            if outv.ndim != xv.ndim:  # axis=None with keepdims keeps rank
                continue
            name = f"{red}(axis={axis})"
            pool.append((out, outv))
        else:
            if xv.ndim == 0:
                continue
            choice = draw(st.sampled_from(["reverse", "transpose2", "expand-squeeze"]))
            name = choice
            if choice == "reverse":
                pool.append((x[::-1], xv[::-1]))
            elif choice == "transpose2":
                pool.append((x.T.T + 0.0, xv.T.T + 0.0))
            else:
                pool.append((ik.squeeze(ik.expand_dims(x, 0), 0), xv))
        steps.append(name)
    outs = [len(pool) - 1] + draw(st.lists(st.integers(0, len(pool) - 1), max_size=2))
    return inputs, values, [pool[k] for k in outs], steps


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(graphs())
def test_random_graph_matches_numpy(graph):
    inputs, values, outs, steps = graph
    f = ik.function(inputs, [o for o, _ in outs])
    got = f(*values)
    for g, (_, want) in zip(got, outs):
        want = np.asarray(want)
        assert g.shape == want.shape, steps
        assert g.dtype == want.dtype, steps
        np.testing.assert_allclose(g, want, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=str(steps))


def test_strategy_draws_varied_graphs():
    """The strategy must really vary: several sizes and ops over a few draws."""
    seen = set()

    @settings(max_examples=30, deadline=None, derandomize=True)
    @given(graphs())
    def collect(graph):
        seen.update(graph[3])

    collect()
    assert len(seen) >= 8, seen




def _large_elementwise_graph(n_ops: int, seed: int):
    """n_ops binary steps over two dynamic float64 vectors, each reading one of the last ten
    values and any earlier one (deep and wide, most values read several times), as irkit
    and numpy functions of (x, y)."""
    rng = np.random.default_rng(seed)
    steps = [(int(rng.integers(4)), int(rng.integers(max(0, k + 2 - 10), k + 2)), int(rng.integers(k + 2)))
             for k in range(n_ops)]

    def evaluate(m, x, y):
        values = [x, y]
        for kind, i, j in steps:
            a, b = values[i], values[j]
            values.append([lambda: a + b, lambda: a * 0.5 - b, lambda: m.tanh(a) + b,
                           lambda: m.exp(-a * a) * b][kind]())
        return values[-1]
    return evaluate


def test_a_large_graph_fuses_into_a_few_kernels_with_one_loop_each():
    """3,000 elementwise steps (3,852 ops) over vectors of one (unknown) length: about as
    few kernels as 1,024 ops each (fuse's max-ops) allow, not one for almost every op as when a full kernel's
    readers each got a kernel of their own; each kernel one loop, though its outputs'
    sizes are those of x or of y as its ops' shape rules say; and numpy's values."""
    evaluate = _large_elementwise_graph(3000, seed=5)
    x, y = ik.dvector("x"), ik.dvector("y")
    f = ik.function([x, y], evaluate(ik, x, y))
    fused = f.ir("fused")
    ops, kernels = fused.count(" = ik."), fused.count("ikf.kernel ins(%")  # (not the 0-d constants' kernel)
    assert ops > 3000 and kernels <= -(-ops // 1024) + 1, (ops, kernels)
    assert f.ir("loops").count('"scf.parallel"') == kernels
    xv, yv = np.linspace(-1, 1, 257), np.linspace(0.5, 1.5, 257)
    want = evaluate(np, xv, yv)
    np.testing.assert_allclose(f(xv, yv), want, rtol=1e-9, atol=1e-9 * np.abs(want).max())
