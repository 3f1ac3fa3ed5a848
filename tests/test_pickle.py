"""Pickled compiled functions: they unpickle in this process and in others (a subprocess, a
spawn pool's workers) and compute what numpy computes, with the state of their shared
variables as it was when pickled; a warm compile cache means no pass runs on unpickling;
what cannot travel as IR text, or a pickle of another irkit version, is a clear error."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import irkit as ik
from irkit import serialize

LR = 0.5


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _numpy_step(W: np.ndarray, b: np.ndarray, X: np.ndarray, T: np.ndarray):
    """The logistic-regression step the compiled function takes: (cost, new W, new b)."""
    n = X.shape[0]
    p = _softmax(X @ W + b)
    cost = -np.mean(np.log(p[np.arange(n), T]))
    d = p.copy()
    d[np.arange(n), T] -= 1.0
    d /= n
    return cost, W - LR * (X.T @ d), b - LR * d.sum(axis=0)


def _train_step():
    """A compiled training step with two shared variables and their updates."""
    x, t = ik.matrix("x"), ik.ivector("t")
    W = ik.shared(np.random.default_rng(0).normal(size=(4, 3)), name="W")
    b = ik.shared(np.zeros(3), name="b")
    p = ik.softmax(x @ W + b, axis=-1)
    cost = -ik.mean(ik.log(p[ik.arange(x.shape[0]), t]))
    gW, gb = ik.grad(cost, [W, b])
    return ik.function([x, t], cost, updates=[(W, W - LR * gW), (b, b - LR * gb)], name="train"), W, b


def _data(seed: int = 1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(6, 4)), rng.integers(0, 3, size=6)


def test_a_round_trip_keeps_the_state_and_computes_the_same():
    f, W, b = _train_step()
    X, T = _data()
    f(X, T)
    f(X, T)  # the state after two steps is what is pickled
    state = W.get_value(), b.get_value()
    g = pickle.loads(pickle.dumps(f))
    assert repr(g) == "<irkit.Function train('x', 't')>"
    assert [s.name for s in g.shared] == ["W", "b"] and g.shared[0] is not W
    np.testing.assert_array_equal(g.shared[0].get_value(), state[0])
    np.testing.assert_array_equal(g.shared[1].get_value(), state[1])
    cost, W1, b1 = _numpy_step(*state, X, T)
    np.testing.assert_allclose(g(X, T), cost, rtol=1e-12)
    np.testing.assert_allclose(g.shared[0].get_value(), W1, rtol=1e-12)
    np.testing.assert_allclose(g.shared[1].get_value(), b1, rtol=1e-12)
    np.testing.assert_array_equal(W.get_value(), state[0])  # the original is a separate function
    # the unpickled function pickles again, and shows its levels
    h = pickle.loads(pickle.dumps(g))
    np.testing.assert_array_equal(h.shared[0].get_value(), g.shared[0].get_value())
    assert "ik.matmul" in g.ir("tensor") and "define" in g.ir("llvm")


def test_keyword_calls_and_errors_name_the_inputs_after_unpickling():
    f, _, _ = _train_step()
    g = pickle.loads(pickle.dumps(f))
    X, T = _data()
    cost, _, _ = _numpy_step(*[s.get_value() for s in g.shared], X, T)
    np.testing.assert_allclose(g(t=T, x=X), cost, rtol=1e-12)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'y'; inputs are 'x', 't'"):
        g(y=X, t=T)
    with pytest.raises(ik.ShapeError, match=r"input 't' expects rank 1") as got:
        g(X, T.reshape(2, 3))
    with pytest.raises(ik.ShapeError) as want:
        f(X, T.reshape(2, 3))
    assert str(got.value) == str(want.value)


def test_run_time_errors_keep_the_users_source_line():
    """The graph's source locations travel with it: a run-time check names the same line."""
    a, c = ik.matrix("a"), ik.matrix("c")
    f = ik.function([a, c], a @ c)
    g = pickle.loads(pickle.dumps(f))
    bad = np.ones((2, 3)), np.ones((2, 3))
    with pytest.raises(ik.ShapeError) as want:
        f(*bad)
    with pytest.raises(ik.ShapeError) as got:
        g(*bad)
    assert "test_pickle.py" in str(got.value) and str(got.value) == str(want.value)


def test_control_flow_constants_and_several_outputs_round_trip():
    x, n, mask = ik.vector("x"), ik.iscalar("n"), ik.bvector("mask")
    h, _ = ik.scan(lambda xt, h: h * 0.5 + xt, sequences=[x], outputs_info=[ik.constant(0.0)])
    y = ik.ifelse(n > 2, x * np.pi, x - np.nan)
    z = ik.where(mask, x, -np.inf).max() + ik.cast(mask, "int32").sum()
    f = ik.function([x, n, mask], [h, y, z, ik.grad(h.sum(), x)])
    g = pickle.loads(pickle.dumps(f))
    for args in [(np.arange(3.0), 3, np.array([True, False, True])),
                 (np.arange(4.0), 1, np.array([False, False, True, False]))]:
        for got, want in zip(g(*args), f(*args)):
            np.testing.assert_array_equal(got, want)
    assert np.isnan(g(np.arange(2.0), 0, np.array([True, True]))[1]).all()


def test_functions_sharing_a_variable_keep_sharing_it():
    x = ik.vector("x")
    acc = ik.shared(np.zeros(3), name="acc")
    add = ik.function([x], [], updates=[(acc, acc + x)])
    read = ik.function([], acc * 2.0)
    add(np.ones(3))
    add2, read2 = pickle.loads(pickle.dumps((add, read)))
    assert add2.updates[0][0] is read2.shared[0]
    add2(np.arange(3.0))
    np.testing.assert_array_equal(read2(), 2.0 * (1.0 + np.arange(3.0)))
    np.testing.assert_array_equal(read(), 2.0 * np.ones(3))  # the originals are untouched


def test_a_shared_variable_pickles_with_its_type():
    s = ik.shared(np.arange(6, dtype=np.float32).reshape(6, 1), name="col")
    t = pickle.loads(pickle.dumps(s))
    assert (t.name, t.dtype, t.static_shape) == ("col", np.float32, (None, 1))
    np.testing.assert_array_equal(t.get_value(), s.get_value())
    with pytest.raises(ik.ShapeError, match="static size 1 in dim 1"):
        t.set_value(np.zeros((2, 2), np.float32))


def test_an_expression_over_shared_variables_round_trips():
    """What a shared variable's default update pickles as: an expression rebuilt over the
    unpickled shared variables, usable in a new function."""
    a, b = ik.shared(np.arange(3.0), name="a"), ik.shared(np.ones(3), name="b")
    expr = ik.ifelse(a.sum() > 0, a * 2.0 + b, b)
    state = pickle.loads(pickle.dumps(serialize.expression_state(expr, "an expression")))
    rebuilt = serialize.expression_from_state(state)
    a2, b2 = state["shared"]
    np.testing.assert_array_equal(ik.function([], rebuilt)(), np.arange(3.0) * 2.0 + 1.0)
    a2.set_value(-np.ones(3))
    np.testing.assert_array_equal(ik.function([], rebuilt)(), np.ones(3))
    np.testing.assert_array_equal(a.get_value(), np.arange(3.0))


def test_a_default_update_travels_with_its_shared_variable():
    s = ik.shared(np.zeros(2), name="counter")
    s.default_update = s + 1.0
    t = pickle.loads(pickle.dumps(s))
    step = ik.function([], t.default_update, updates=[(t, t.default_update)])
    np.testing.assert_array_equal(step(), np.ones(2))
    np.testing.assert_array_equal(t.get_value(), np.ones(2))


def test_a_custom_op_with_python_derivatives_is_refused_when_pickling():
    a = ik.vector("a")
    norm = ik.OpFromGraph([a], ik.sqrt(ik.sum(a * a)), name="safe_norm",
                          vjp=lambda ins, outs, cts: [cts[0] * ins[0] / outs[0]])
    x = ik.vector("x")
    f = ik.function([x], ik.grad(norm(x), x), name="uses_norm")
    with pytest.raises(pickle.PicklingError, match=r"'uses_norm'.*custom op 'safe_norm#\d+'.*vjp is a Python"):
        pickle.dumps(f)
    assert isinstance(pytest.raises(ik.IrkitError, pickle.dumps, f).value, pickle.PicklingError)


def test_a_custom_op_without_rules_is_differentiated_through_its_body_after_unpickling(monkeypatch):
    """Its rule name is made one that no OpFromGraph is registered under, so a rule that
    happens to be registered under the same name where it is unpickled is never used."""
    import irkit.custom
    a = ik.vector("a")
    square = ik.OpFromGraph([a], a * a, name="square")
    x = ik.vector("x")
    f = ik.function([x], ik.grad(square(x).sum(), x))
    data = pickle.dumps(f)
    wrong = ik.OpFromGraph([a], a * a, name="wrong", vjp=lambda ins, outs, cts: [cts[0] * 0.0])
    monkeypatch.setitem(irkit.custom._RULES, square.name, wrong)
    g = pickle.loads(data)
    np.testing.assert_array_equal(g(np.arange(3.0)), 2.0 * np.arange(3.0))


def test_an_op_from_outside_irkits_dialects_is_refused():
    from xdsl.dialects import func
    from xdsl.dialects.builtin import ModuleOp
    from xdsl.dialects.test import TestOp
    fn = func.FuncOp("main", ([], []))
    fn.body.block.add_ops([TestOp.create(), func.ReturnOp()])
    with pytest.raises(pickle.PicklingError,
                       match=r"cannot pickle function 'main': .*the op 'test.op'.*irkit's dialects do not define"):
        serialize.graph_text_for_pickling(ModuleOp([fn]), "function 'main'")


def test_another_irkit_version_is_refused_naming_both(monkeypatch):
    f, _, _ = _train_step()
    data = pickle.dumps(f)
    original = ik.__version__
    monkeypatch.setattr(ik, "__version__", "99.0.0")
    with pytest.raises(pickle.UnpicklingError,
                       match=rf"pickled by irkit {original} \(pickle format \d+\); this is irkit 99\.0\.0") as got:
        pickle.loads(data)
    assert isinstance(got.value, ik.IrkitError)
    monkeypatch.undo()
    monkeypatch.setattr(serialize, "FORMAT", serialize.FORMAT + 1)
    with pytest.raises(pickle.UnpicklingError,
                       match=rf"irkit {original} \(pickle format {serialize.FORMAT - 1}\); this is irkit "
                             rf"{original} \(pickle format {serialize.FORMAT}\)"):
        pickle.loads(data)


def test_a_cuda_function_pickles_without_a_device():
    x = ik.vector("x", dtype="float32")
    w = ik.shared(np.full(4, 2.0, np.float32), name="w")
    f = ik.function([x], (x * w).sum(), updates=[(w, w * 0.5)], target="cuda")
    g = pickle.loads(pickle.dumps(f))
    assert g.target == "cuda" and ".entry" in g.ir("ptx")
    try:
        got = g(np.ones(4, np.float32))
    except ik.DeviceError:
        return  # no GPU here: the first call says so, as for the original
    np.testing.assert_allclose(got, 8.0, rtol=1e-6)
    np.testing.assert_allclose(g.shared[0].get_value(), np.ones(4))


UNPICKLE = textwrap.dedent("""
    import json, pickle, sys, numpy as np
    f = pickle.load(open(sys.argv[1], "rb"))
    X, T = np.load(sys.argv[2]), np.load(sys.argv[3])
    cost = f(X, T)
    print(json.dumps({"cost": float(cost), "W": f.shared[0].get_value().tolist(),
                      "b": f.shared[1].get_value().tolist(), "stages": sorted(f.timings)}))
""")


def _unpickle_in_a_subprocess(tmp_path, cache_dir: str | None) -> dict:
    env = dict(os.environ)
    env.pop("IRKIT_CACHE", None)
    if cache_dir is None:
        env["IRKIT_CACHE"] = "0"
    else:
        env["IRKIT_CACHE_DIR"] = cache_dir
    args = [str(tmp_path / name) for name in ("f.pkl", "X.npy", "T.npy")]
    got = subprocess.run([sys.executable, "-c", UNPICKLE, *args], capture_output=True, text=True, env=env,
                         timeout=300)
    assert got.returncode == 0, got.stderr
    return json.loads(got.stdout.strip().splitlines()[-1])


def test_unpickling_in_another_process_computes_the_same_and_hits_the_cache(tmp_path, monkeypatch):
    from irkit import compile_cache
    cache = tmp_path / "cache"
    monkeypatch.setattr(ik.config, "cache_dir", str(cache))
    compile_cache.compiler_fingerprint.cache_clear()  # irkit's source as the subprocess will see it
    f, W, b = _train_step()
    X, T = _data()
    f(X, T)
    (tmp_path / "f.pkl").write_bytes(pickle.dumps(f))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "T.npy", T)
    cost, W1, b1 = _numpy_step(W.get_value(), b.get_value(), X, T)
    warm = _unpickle_in_a_subprocess(tmp_path, str(cache))
    assert warm["stages"] == ["build", "cache", "total"]  # compiled by this process: no pass runs there
    cold = _unpickle_in_a_subprocess(tmp_path, None)
    assert "bufferize" in cold["stages"]  # without a cache it compiles
    for got in (warm, cold):
        np.testing.assert_allclose(got["cost"], cost, rtol=1e-12)
        np.testing.assert_allclose(got["W"], W1, rtol=1e-12)
        np.testing.assert_allclose(got["b"], b1, rtol=1e-12)


def test_a_spawn_pool_maps_a_compiled_function():
    x = ik.vector("x")
    scale = ik.shared(np.array(3.0), name="scale")
    f = ik.function([x], ik.tanh(x) * scale + x.sum(), name="feature")
    inputs = [np.linspace(-1.0, 1.0, n) for n in range(1, 7)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.map(f, inputs, chunksize=2)
    for got, v in zip(results, inputs):
        np.testing.assert_allclose(got, np.tanh(v) * 3.0 + v.sum(), rtol=1e-12)


def test_a_function_that_draws_random_numbers_continues_its_stream():
    srng = ik.RandomStream(seed=3)
    x = ik.matrix("x")
    f = ik.function([x], x * srng.uniform(x.shape) + srng.normal((3,)))
    X = np.ones((2, 3))
    f(X)
    g = pickle.loads(pickle.dumps(f))
    np.testing.assert_array_equal(g(X), f(X))
    np.testing.assert_array_equal(g(X), f(X))  # the states advance alike
    assert not np.array_equal(g(X), g(X))


def test_a_variable_of_a_graph_being_built_says_to_pickle_the_function():
    x = ik.vector("x")
    for v in (x, ik.exp(x) + 1):
        with pytest.raises(pickle.PicklingError, match="pickle the compiled function instead"):
            pickle.dumps(v)
    f = ik.function([x], ik.exp(x) + 1)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(f))(np.zeros(2)), [2.0, 2.0])
