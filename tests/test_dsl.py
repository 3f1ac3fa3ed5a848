"""The .irk DSL: the design's MLP and an RNN compile and match numpy; errors carry the
file, line and column with a caret; generated and mutated text gives only irkit's errors."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import irkit as ik

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "examples")
RNG = np.random.default_rng(7)


def _mlp_params(n=6):
    x = RNG.random((n, 784)).astype(np.float32)
    t = RNG.integers(0, 10, n)
    W1 = (RNG.standard_normal((784, 500)) * 0.05).astype(np.float32)
    W2 = (RNG.standard_normal((500, 10)) * 0.05).astype(np.float32)
    return x, t, W1, np.zeros(500, np.float32), W2, np.zeros(10, np.float32)


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_the_dsl_loads_on_first_use():
    """`import irkit` leaves the DSL's parser (lark) unloaded; ik.dsl, ik.compile_dsl and
    ik.parse_dsl load it when first read, and an unknown name is still an AttributeError."""
    code = ("import sys, irkit as ik; before = 'lark' in sys.modules; "
            "fns = (ik.dsl.load, ik.compile_dsl, ik.parse_dsl); after = 'lark' in sys.modules; "
            "missing = not hasattr(ik, 'no_such_name'); "
            "print(before, after, missing, 'compile_dsl' in dir(ik), fns[1] is sys.modules['irkit.dsl'].compile_dsl)")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr
    assert got.stdout.split() == ["False", "True", "True", "True", "True"]


def test_the_mlp_of_the_design_parses_compiles_and_runs():
    path = os.path.join(EXAMPLES, "mlp.irk")
    module = ik.parse_dsl(open(path).read(), path)
    names = [op.sym_name.data for op in module.ops]
    assert names == ["predict", "loss", "step"]
    assert "ik.matmul" in str(module) and "ikad.grad" in str(module)
    fns = ik.dsl.load(path)
    x, t, W1, b1, W2, b2 = _mlp_params()
    p = _softmax(np.tanh(x @ W1 + b1) @ W2 + b2)
    np.testing.assert_allclose(fns.predict(x, W1, b1, W2, b2), p, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fns.loss(x, t, W1, b1, W2, b2), -np.mean(np.log(p[np.arange(6), t])), rtol=1e-5)
    # the step is SGD: against the Python builder's own gradient of the same loss
    X, T = ik.matrix("X", dtype="float32"), ik.lvector("T")
    params = [ik.tensor(n, shape=s.shape, dtype="float32") for n, s in zip(["W1", "b1", "W2", "b2"], [W1, b1, W2, b2])]
    h = ik.tanh(X @ params[0] + params[1])
    loss = -ik.mean(ik.log(ik.softmax(h @ params[2] + params[3])[ik.arange(X.shape[0]), T]))
    want = ik.function([X, T, *params], [w - 0.1 * g for w, g in zip(params, ik.grad(loss, params))])(
        x, t, W1, b1, W2, b2)
    for got, w in zip(fns.step(x, t, W1, b1, W2, b2), want):
        np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6)


def test_an_rnn_in_the_dsl_with_scan_and_grad():
    fns = ik.dsl.load(os.path.join(EXAMPLES, "rnn.irk"))
    xs = RNG.standard_normal((6, 3)).astype(np.float32)
    h0 = np.zeros(4, np.float32)
    W = (RNG.standard_normal((3, 4)) * 0.5).astype(np.float32)
    U = (RNG.standard_normal((4, 4)) * 0.5).astype(np.float32)
    h, want = h0, []
    for k in range(6):
        h = np.tanh(xs[k] @ W + h @ U)
        want.append(h)
    np.testing.assert_allclose(fns.states(xs, h0, W, U), np.array(want), rtol=1e-5, atol=1e-6)
    cost, gW, gU = fns.loss_and_grads(xs, h0, W, U)
    np.testing.assert_allclose(cost, (want[-1] ** 2).sum(), rtol=1e-5)
    assert gW.shape == (3, 4) and gU.shape == (4, 4)


def test_expressions_methods_indexing_tuples_and_keywords():
    src = """
    def f(a: f64[n, 3], i: i64) -> (f64[n], f64, f64[3, n], f64) {
        s = a.sum(axis=1)           # a method with a keyword
        m, k = max(a), a[i, 0]      # tuple unpacking
        b = where(a > 0, a, -a).T   # a builtin, a comparison, .T
        c = a[1:, ::2][0, -1] ** 2 + abs(m) // 1 % 7
        return s, k, b, c
    }
    """
    fns = ik.compile_dsl(src)
    a = RNG.standard_normal((4, 3))
    s, k, b, c = fns.f(a, 2)
    np.testing.assert_allclose(s, a.sum(axis=1))
    assert k == a[2, 0]
    np.testing.assert_allclose(b, np.abs(a).T)
    np.testing.assert_allclose(c, a[1:, ::2][0, -1] ** 2 + np.abs(a.max()) // 1 % 7)


def test_ifelse_and_calls_between_functions():
    src = """
    def pick(c: bool, x: f64[n]) -> f64[n] { return ifelse(c, twice(x), x - 1.0) }
    def twice(x: f64[m]) -> f64[m] { return 2.0 * x }
    """
    fns = ik.compile_dsl(src)
    x = np.arange(3.0)
    np.testing.assert_allclose(fns.pick(True, x), 2 * x)
    np.testing.assert_allclose(fns.pick(False, x), x - 1)


# ---------------------------------------------------------------------------
# errors with places
# ---------------------------------------------------------------------------

def _error(src, kind=ik.ParseError):
    with pytest.raises(kind) as info:
        ik.compile_dsl(src, "model.irk")
    return info.value


def test_a_syntax_error_has_its_line_column_and_a_caret():
    e = _error("def f(x: f32[n]) -> f32[n] {\n    y = x +* 2\n    return y\n}\n")
    assert (e.line, e.column) == (2, 12)
    assert str(e).startswith("model.irk:2:12: unexpected '*'")
    assert "    y = x +* 2\n               ^" in str(e)


def test_unknown_names_arity_dtypes_and_named_dims():
    e = _error("def f(x: f32[n]) -> f32[n] {\n  return tanhh(x)\n}")
    assert "model.irk:2:10: unknown name 'tanhh'" in str(e)
    e = _error("def g(x: f32[n]) -> f32[n] { return x }\ndef f(x: f32[n]) -> f32[n] {\n  return g(x, x)\n}")
    assert "model.irk:3:10: g takes 1 arguments, got 2" in str(e)
    e = _error("def g(x: i64[n]) -> i64[n] { return x }\ndef f(x: f32[n]) -> i64[n] { return g(x) }", ik.DTypeError)
    assert "argument 'x' of g must be int64, not float32" in str(e) and e.line == 2
    e = _error("def f(x: f32[3], y: f32[n]) -> f32[3] { return x + y }\n"
               "def g(a: f32[3], b: f32[4]) -> f32[3] { return f(a, b) }", ik.ShapeError)
    assert "cannot broadcast" in str(e) or "size" in str(e)
    e = _error("def f(a: f32[n], b: f32[n]) -> f32[n] { return a + b }\n"
               "def g(a: f32[3], b: f32[4]) -> f32[3] { return f(a, b) }", ik.ShapeError)
    assert "named dim 'n' is 3 in 'a' (axis 0) but 4 in 'b' (axis 0)" in str(e)
    e = _error("def f(x: f32[n]) -> f32[n] { y = x }")
    assert "no return statement" in str(e)
    e = _error("def f(x: f32[n]) -> (f32[n], f32[n]) { return x }")
    assert "returns 1 values but declares 2" in str(e)


def test_a_named_dim_that_disagrees_at_the_call():
    fns = ik.compile_dsl("def f(a: f32[n], b: f32[n]) -> f32[n] { return a * b }")
    np.testing.assert_allclose(fns.f(np.ones(3, np.float32), np.full(3, 2, np.float32)), 2)
    with pytest.raises(ik.ShapeError):
        fns.f(np.ones(3, np.float32), np.ones(4, np.float32))


@pytest.mark.parametrize("src", ["", "   \n# only a comment\n", "\x00\x01\xff garbage", "def", "def f(",
                                 "def f(x: f99) -> f32 { return x }", "}{", "def f() -> f32 { return 1.0 } }"])
def test_empty_and_garbage_input(src):
    try:
        got = ik.compile_dsl(src)
    except ik.IrkitError as e:
        assert isinstance(e, ik.ParseError) and str(e)
    else:
        assert vars(got) == {} and not src.strip().startswith("def")


def test_deeply_nested_expressions_build():
    depth = 1000
    src = "def f(x: f64) -> f64 { return " + "-(" * depth + "x" + ")" * depth + " }"
    assert ik.compile_dsl(src).f(2.0) == 2.0
    src = "def f(x: f64) -> f64 { return " + "(" * depth + "x + 1.0" + ")" * depth + " }"
    assert ik.compile_dsl(src).f(2.0) == 3.0


# ---------------------------------------------------------------------------
# the parser, against generated and mutated text
# ---------------------------------------------------------------------------

TOKENS = ["def", "f", "g", "x", "y", "n", "(", ")", "{", "}", "[", "]", ":", ",", "->", "=", "return", "f32",
          "i64", "+", "-", "*", "/", "**", "@", ">", "==", ".T", ".sum", "1", "2.5", "tanh", "grad", "scan",
          "\n", " ", "#", "\"s\"", "...", "?", ";", "axis=", "~", "&"]
VALID = ("def f(x: f32[n, 3], y: f32[3]) -> f32[n] {\n    h = tanh(x @ y + 1.0)\n    return h * 2.0\n}\n")


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_generated_token_soup_gives_only_irkit_errors(tokens):
    with contextlib.suppress(ik.IrkitError):  # any other exception fails the test
        ik.parse_dsl(" ".join(tokens))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(VALID)), st.integers(0, 6), st.text(max_size=4))
def test_mutated_programs_give_only_irkit_errors(at, cut, insert):
    src = VALID[:at] + insert + VALID[at + cut:]
    try:
        ik.parse_dsl(src)
    except ik.IrkitError as e:
        if isinstance(e, ik.ParseError) and e.line is not None:
            assert f":{e.line}:{e.column}:" in str(e)


# ---------------------------------------------------------------------------
# irkit-opt reads the DSL
# ---------------------------------------------------------------------------

def _opt(*args, stdin=None):
    import shutil
    import subprocess
    import sys
    exe = os.path.join(os.path.dirname(sys.executable), "irkit-opt")
    exe = exe if os.path.exists(exe) else shutil.which("irkit-opt")
    return subprocess.run([exe, *args], input=stdin, capture_output=True, text=True, timeout=300)


def test_irkit_opt_reads_irk_files_and_stdin_and_round_trips():
    path = os.path.join(EXAMPLES, "rnn.irk")
    first = _opt(path)
    assert first.returncode == 0, first.stderr
    assert '"ik.scan"' in first.stdout and "func.func @loss_and_grads" in first.stdout
    again = _opt("-", stdin=first.stdout)
    assert again.returncode == 0 and again.stdout == first.stdout
    lowered = _opt("-", "-p", "default", stdin="# a model\ndef f(x: f32[n]) -> f32[n] { return exp(x) }\n")
    assert lowered.returncode == 0, lowered.stderr
    assert "math.exp" in lowered.stdout and "memref" in lowered.stdout


def test_irkit_opt_reports_dsl_errors_as_file_line_col():
    got = _opt("-", "-x", "irk", stdin="def f(x: f32[n]) -> f32[n] {\n  return x +* 2\n}\n")
    assert got.returncode == 1
    assert got.stderr.startswith("<stdin>:2:13: error: unexpected '*'")
    assert "Traceback" not in got.stderr
