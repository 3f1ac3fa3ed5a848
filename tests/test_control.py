"""ik.scan and ik.ifelse: against numpy loops, their derivatives against finite
differences and a hand-written BPTT, their laziness and their errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import irkit as ik

RNG = np.random.default_rng(20261204)


def rand(*shape, dtype="float64", scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(dtype)


def elman(dtype="float64"):
    X, h0 = ik.matrix("X", dtype=dtype), ik.vector("h0", dtype=dtype)
    W, U = ik.matrix("W", dtype=dtype), ik.matrix("U", dtype=dtype)
    hs, updates = ik.scan(lambda x, h, W, U: ik.tanh(ik.dot(x, W) + ik.dot(h, U)),
                          sequences=X, outputs_info=h0, non_sequences=[W, U])
    return (X, h0, W, U), hs, updates


def elman_numpy(x, h, w, u):
    out = []
    for t in range(len(x)):
        h = np.tanh(x[t] @ w + h @ u)
        out.append(h)
    return np.array(out).reshape(len(x), len(h))


# ---------------------------------------------------------------------------
# scan, forward
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_elman_rnn_matches_a_numpy_loop(dtype):
    inputs, hs, updates = elman(dtype)
    assert updates == {}
    f = ik.function(list(inputs), hs)
    x, h, w, u = rand(7, 3, dtype=dtype), rand(4, dtype=dtype), rand(3, 4, dtype=dtype), \
        rand(4, 4, dtype=dtype, scale=.5)
    got = f(x, h, w, u)
    assert got.dtype == dtype and got.shape == (7, 4)
    np.testing.assert_allclose(got, elman_numpy(x, h, w, u), rtol=1e-5 if dtype == "float32" else 1e-12)


def test_sequence_taps_and_state_taps():
    x, h0 = ik.matrix("x", dtype="float64"), ik.matrix("h0", dtype="float64")

    def step(xm2, x0, xp1, hm3, hm1):
        return 0.5 * hm1 - 0.25 * hm3 + xm2 * x0 - xp1

    hs, _ = ik.scan(step, sequences=dict(input=x, taps=[-2, 0, 1]),
                    outputs_info=dict(initial=h0, taps=[-3, -1]))
    f = ik.function([x, h0], hs)
    xv, h0v = rand(9, 2), rand(4, 2)   # four initial rows: taps use the last three
    hist = list(h0v)
    want = []
    for t in range(9 - 3):
        xm2, x0, xp1 = xv[t], xv[t + 2], xv[t + 3]
        h = 0.5 * hist[-1] - 0.25 * hist[-3] + xm2 * x0 - xp1
        hist.append(h)
        want.append(h)
    np.testing.assert_allclose(f(xv, h0v), np.array(want), rtol=1e-13)


def test_recurrent_and_per_step_outputs_and_a_captured_value():
    x, a0 = ik.vector("x", dtype="float64"), ik.scalar("a0", dtype="float64")
    scale = ik.scalar("scale", dtype="float64")   # read by the step without being passed

    def step(v, acc):
        nxt = acc + v * scale
        return [nxt, nxt * nxt, ik.exp(v)]

    (acc, sq, ex), _ = ik.scan(step, sequences=x, outputs_info=[a0, None, None])
    f = ik.function([x, a0, scale], [acc, sq, ex])
    xv = rand(6)
    got = f(xv, 1.5, 2.0)
    want = 1.5 + np.cumsum(xv * 2.0)
    np.testing.assert_allclose(got[0], want, rtol=1e-13)
    np.testing.assert_allclose(got[1], want ** 2, rtol=1e-13)
    np.testing.assert_allclose(got[2], np.exp(xv), rtol=1e-13)


def test_go_backwards_and_n_steps_shorter_than_the_sequence():
    x = ik.vector("x", dtype="float64")
    n = ik.lscalar("n")
    out, _ = ik.scan(lambda v, acc: acc * 2 + v, sequences=x, outputs_info=ik.constant(0.0, "float64"),
                     go_backwards=True, n_steps=n)
    f = ik.function([x, n], out)
    xv = rand(6)
    for steps in (6, 3, 0):
        acc, want = 0.0, []
        for v in xv[::-1][:steps]:
            acc = acc * 2 + v
            want.append(acc)
        np.testing.assert_allclose(f(xv, steps), np.array(want), rtol=1e-13)


def test_zero_steps_give_empty_outputs_of_the_right_shape():
    X = ik.tensor3("X", dtype="float32")
    h0 = ik.vector("h0", dtype="float32")
    hs, ys = ik.scan(lambda x, h: [h + ik.sum(x, axis=0), ik.dot(x, h)], sequences=X,
                     outputs_info=[h0, None])[0]
    f = ik.function([X, h0], [hs, ys])
    got_h, got_y = f(np.zeros((0, 5, 3), np.float32), np.ones(3, np.float32))
    assert got_h.shape == (0, 3) and got_y.shape == (0, 5)
    got_h, got_y = f(np.ones((2, 5, 3), np.float32), np.ones(3, np.float32))
    np.testing.assert_allclose(got_h, [[6, 6, 6], [11, 11, 11]])


def test_n_steps_without_sequences_and_symbolic():
    k = ik.lscalar("k")
    out, _ = ik.scan(lambda acc: acc * 3, outputs_info=ik.constant(np.ones(2)), n_steps=k)
    f = ik.function([k], out)
    np.testing.assert_allclose(f(3), [[3, 3], [9, 9], [27, 27]])
    assert f(0).shape == (0, 2)


def test_until_stops_after_the_step_where_it_holds():
    limit = ik.scalar("limit", dtype="float64")

    def step(acc):
        nxt = acc * 2
        return nxt, ik.until(nxt > limit)

    out, _ = ik.scan(step, outputs_info=ik.constant(1.0, "float64"), n_steps=100)
    f = ik.function([limit], out)
    np.testing.assert_allclose(f(50.0), [2, 4, 8, 16, 32, 64])
    np.testing.assert_allclose(f(1e300), 2.0 ** np.arange(1, 101))


def test_updates_of_shared_variables_inside_the_step():
    total = ik.shared(np.float64(0.0), name="total")
    count = ik.shared(np.int64(0), name="count")
    x = ik.vector("x", dtype="float64")

    def step(v):
        return v * 2, {total: total + v, count: count + 1}

    out, updates = ik.scan(step, sequences=x)
    assert list(updates) == [total, count]
    f = ik.function([x], out, updates=updates)
    np.testing.assert_allclose(f(np.array([1.0, 2.0, 3.0])), [2, 4, 6])
    assert total.get_value() == 6.0 and count.get_value() == 3
    f(np.array([10.0]))
    assert total.get_value() == 16.0 and count.get_value() == 4
    f(np.zeros(0))  # no step: the variables keep their values
    assert total.get_value() == 16.0 and count.get_value() == 4


def test_each_step_sees_the_shared_variable_as_the_previous_step_left_it():
    s = ik.shared(np.array([1.0, 1.0]), name="s")
    out, updates = ik.scan(lambda: (ik.sum(s), {s: s * 2}), n_steps=3)
    f = ik.function([], out, updates=updates)
    np.testing.assert_allclose(f(), [2, 4, 8])
    np.testing.assert_allclose(s.get_value(), [8, 8])


def test_nested_scans():
    m = ik.matrix("m", dtype="float64")

    def row_cumsum(row):
        inner, _ = ik.scan(lambda v, acc: acc + v, sequences=row, outputs_info=ik.constant(0.0, "float64"))
        return inner

    out, _ = ik.scan(row_cumsum, sequences=m)
    f = ik.function([m], out)
    mv = rand(3, 5)
    np.testing.assert_allclose(f(mv), np.cumsum(mv, axis=1), rtol=1e-13)


def test_the_step_is_a_native_loop_and_invariant_work_stays_outside():
    inputs, hs, _ = elman()
    X, h0, W, U = inputs
    hs2, _ = ik.scan(lambda x, h: ik.tanh(ik.dot(x, W) + ik.dot(h, ik.exp(U))), sequences=X, outputs_info=h0)
    f = ik.function([X, h0, W, U], hs2)
    tensor = f.ir("tensor")
    body = tensor[tensor.index('"ik.scan"'):]
    assert "ik.exp %U" in tensor[:tensor.index('"ik.scan"')] and "ik.exp " not in body
    loops = f.ir("loops")
    assert "scf.for" in loops and '"ik.scan"(' not in loops
    x, h, w, u = rand(4, 3), rand(4), rand(3, 4), rand(4, 4, scale=.3)
    np.testing.assert_allclose(f(x, h, w, u), elman_numpy(x, h, w, np.exp(u)), rtol=1e-12)


def test_scan_ir_round_trips_through_the_text():
    from xdsl.parser import Parser
    from irkit.pipeline import make_context
    inputs, hs, _ = elman()
    f = ik.function(list(inputs), hs)
    text = f.ir("tensor")
    assert str(Parser(make_context(), text).parse_module()) == text.rstrip("\n")


# ---------------------------------------------------------------------------
# scan, bad input
# ---------------------------------------------------------------------------

def test_a_step_returning_the_wrong_number_of_outputs():
    x = ik.vector("x")
    with pytest.raises(ValueError, match="returned 2 outputs, but outputs_info has 1"):
        ik.scan(lambda v, a: [a + v, a], sequences=x, outputs_info=ik.constant(0.0, "float32"))


def test_a_recurrent_output_that_changes_dtype_or_shape():
    x = ik.vector("x", dtype="float32")
    with pytest.raises(ik.DTypeError, match="output 0 as float64, but its initial value is float32"):
        ik.scan(lambda v, a: ik.cast(a, "float64") + 1, sequences=x, outputs_info=ik.constant(0.0, "float32"))
    h0 = ik.constant(np.zeros(3, np.float32))
    with pytest.raises(ik.ShapeError, match=r"shape \(3, 1\).*cannot change between steps"):
        ik.scan(lambda v, a: ik.expand_dims(a, 1), sequences=x, outputs_info=h0)


def test_a_shape_that_changes_at_run_time_is_reported():
    x = ik.vector("x", dtype="float64")
    h0 = ik.vector("h0", dtype="float64")
    out, _ = ik.scan(lambda v, h: h[1:] * v, sequences=x, outputs_info=h0)
    f = ik.function([x, h0], out)
    with pytest.raises(ik.ShapeError, match="ik.scan at .*changes between steps"):
        f(np.ones(3), np.ones(4))


def test_taps_beyond_the_initial_state():
    x = ik.vector("x")
    with pytest.raises(ik.ShapeError, match=r"reaching 3 steps back, but its initial value has only 2 rows"):
        ik.scan(lambda v, a, b: a + b, sequences=x,
                outputs_info=dict(initial=ik.constant(np.zeros(2, np.float32)), taps=[-3, -1]))
    with pytest.raises(ValueError, match="must be negative"):
        ik.scan(lambda v, a: a, sequences=x, outputs_info=dict(initial=ik.constant(0.0, "float32"), taps=[0]))
    h0 = ik.vector("h0", dtype="float32")
    out, _ = ik.scan(lambda v, a, b: a + b, sequences=x, outputs_info=dict(initial=h0, taps=[-3, -1]))
    f = ik.function([x, h0], out)
    with pytest.raises(ik.IrkitError, match="initial value of output 0 has too few rows"):
        f(np.ones(4, np.float32), np.ones(2, np.float32))


def test_bad_n_steps():
    x = ik.constant(np.zeros(4))
    with pytest.raises(ValueError, match="n_steps=-1 is negative"):
        ik.scan(lambda v: v, sequences=x, n_steps=-1)
    with pytest.raises(ik.ShapeError, match="n_steps=9, but sequence 0"):
        ik.scan(lambda v: v, sequences=x, n_steps=9)
    with pytest.raises(ValueError, match="n_steps is needed"):
        ik.scan(lambda a: a, outputs_info=ik.constant(0.0))
    n = ik.lscalar("n")
    v = ik.vector("v", dtype="float64")
    out, _ = ik.scan(lambda e: e * 2, sequences=v, n_steps=n)
    f = ik.function([v, n], out)
    with pytest.raises(ik.IrkitError, match="n_steps is negative"):
        f(np.ones(3), -2)
    with pytest.raises(ik.IrkitError, match="sequence 0 is too short for n_steps"):
        f(np.ones(3), 5)


# ---------------------------------------------------------------------------
# ifelse
# ---------------------------------------------------------------------------

def test_ifelse_evaluates_only_the_branch_taken():
    c = ik.scalar("c", dtype="bool")
    x, i = ik.vector("x", dtype="float64"), ik.lscalar("i")
    r = ik.ifelse(c, x[i] * 2, ik.sum(x))      # x[i] is out of range when the else branch runs
    f = ik.function([c, x, i], r)
    assert f(True, np.arange(3.0), 1) == 2.0
    assert f(False, np.arange(3.0), 10) == 3.0
    with pytest.raises(ik.IndexOutOfBoundsError):
        f(True, np.arange(3.0), 10)
    # where stays eager: the same graph through where evaluates both sides
    g = ik.function([c, x, i], ik.where(c, x[i] * 2, ik.sum(x)))
    with pytest.raises(ik.IndexOutOfBoundsError):
        g(False, np.arange(3.0), 10)


def test_ifelse_with_tuples_nested_and_inside_scan():
    c, d = ik.scalar("c", dtype="bool"), ik.scalar("d", dtype="bool")
    x = ik.vector("x", dtype="float64")
    a, b = ik.ifelse(c, (x + 1, ik.sum(x)), (x - 1, ik.ifelse(d, ik.max(x), ik.min(x))))
    f = ik.function([c, d, x], [a, b])
    xv = np.array([1.0, 5.0, 3.0])
    for cv, dv in [(True, True), (False, True), (False, False)]:
        got = f(cv, dv, xv)
        np.testing.assert_allclose(got[0], xv + 1 if cv else xv - 1)
        assert got[1] == (xv.sum() if cv else xv.max() if dv else xv.min())
    out, _ = ik.scan(lambda v, acc: ik.ifelse(v > 0, acc + v, acc - 1.0), sequences=x,
                     outputs_info=ik.constant(0.0, "float64"))
    np.testing.assert_allclose(ik.function([x], out)(np.array([1.0, -2, 3])), [1, 0, 3])


def test_ifelse_bad_input():
    x = ik.vector("x", dtype="float32")
    with pytest.raises(ik.ShapeError, match="ik.ifelse: the condition must be 0-d"):
        ik.ifelse(x > 0, x, x)
    with pytest.raises(ik.DTypeError, match="output 0 is float32 in the then branch and int64"):
        ik.ifelse(ik.sum(x) > 0, x, ik.lvector("y"))
    with pytest.raises(ik.ShapeError, match="output 0 has shape"):
        ik.ifelse(ik.sum(x) > 0, x, ik.matrix("m", dtype="float32"))
    with pytest.raises(ValueError, match="gives 2 values, the else branch 1"):
        ik.ifelse(ik.sum(x) > 0, (x, x), (x,))


# ---------------------------------------------------------------------------
# derivatives
# ---------------------------------------------------------------------------

def test_bptt_of_an_elman_rnn_against_finite_differences():
    def cost(X, h0, W, U):
        hs, _ = ik.scan(lambda x, h, W, U: ik.tanh(ik.dot(x, W) + ik.dot(h, U)),
                        sequences=X, outputs_info=h0, non_sequences=[W, U])
        return ik.sum(hs ** 2)
    ik.verify_grad(cost, [rand(5, 3), rand(4), rand(3, 4, scale=.5), rand(4, 4, scale=.5)],
                   rng=np.random.default_rng(1))


def test_gradients_through_taps_backwards_and_per_step_outputs():
    def taps(X, H0):
        hs, _ = ik.scan(lambda xm1, xp1, hm2, hm1: ik.sin(hm1) * 0.5 + hm2 * xm1 - xp1,
                        sequences=dict(input=X, taps=[-1, 1]), outputs_info=dict(initial=H0, taps=[-2, -1]))
        return ik.sum(hs * ik.cos(hs))
    ik.verify_grad(taps, [rand(7, 2), rand(3, 2)], rng=np.random.default_rng(2))

    def backwards(X, H0):
        def step(x, h):
            hn = h * ik.tanh(x)
            return hn, ik.sum(hn * x)
        (hs, ys), _ = ik.scan(step, sequences=X, outputs_info=[H0, None], go_backwards=True)
        return ik.sum(ys) + ik.sum(hs[-1])
    ik.verify_grad(backwards, [rand(6, 3), rand(3)], rng=np.random.default_rng(3))


def test_gradients_through_nested_scans_until_and_ifelse():
    def nested(M, w):
        def outer(row, acc):
            inner, _ = ik.scan(lambda x, a: ik.tanh(a * w + x), sequences=row, outputs_info=acc)
            return inner[-1]
        out, _ = ik.scan(outer, sequences=M, outputs_info=ik.zeros((), "float64"))
        return ik.sum(out ** 2)
    ik.verify_grad(nested, [rand(3, 4), np.array(0.7)], rng=np.random.default_rng(4))

    def stopped(a, w):
        def step(acc):
            nxt = acc * w + 0.1
            return nxt, ik.until(nxt > 3.0)
        out, _ = ik.scan(step, outputs_info=a, n_steps=50)
        return ik.sum(out ** 2)
    ik.verify_grad(stopped, [np.array(0.5), np.array(1.3)], rng=np.random.default_rng(5))

    def branch(x, y):
        return ik.sum(ik.ifelse(ik.sum(x) > 0, ik.exp(x) * y, ik.sin(y)))
    ik.verify_grad(branch, [np.array([0.5, 0.2]), np.array([0.3, -0.1])], rng=np.random.default_rng(6))
    ik.verify_grad(branch, [np.array([-0.5, 0.2]), np.array([0.3, -0.1])], rng=np.random.default_rng(6))


def test_truncated_bptt_against_a_hand_written_one():
    (X, h0, W, U), _, _ = elman()
    hs, _ = ik.scan(lambda x, h, W, U: ik.tanh(ik.dot(x, W) + ik.dot(h, U)), sequences=X, outputs_info=h0,
                    non_sequences=[W, U], truncate_gradient=3)
    cost = ik.sum(hs ** 2)
    f = ik.function([X, h0, W, U], ik.grad(cost, [X, h0, W, U]))
    x, h, w, u = rand(8, 3), rand(4), rand(3, 4, scale=.5), rand(4, 4, scale=.5)
    H = elman_numpy(x, h, w, u)
    prev = np.vstack([h[None], H[:-1]])
    dx, dw, du = np.zeros_like(x), np.zeros_like(w), np.zeros_like(u)
    carried = np.zeros(4)
    for t in range(7, 7 - 3, -1):   # only the last three steps are visited
        da = (2 * H[t] + carried) * (1 - H[t] ** 2)
        dw += np.outer(x[t], da)
        du += np.outer(prev[t], da)
        dx[t] = da @ w.T
        carried = da @ u.T
    got = f(x, h, w, u)
    for g, want in zip(got, [dx, np.zeros(4), dw, du]):
        np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-12)


def test_rop_and_hessian_vector_products_through_scan():
    (X, h0, W, U), hs, _ = elman()
    V = ik.matrix("V", dtype="float64")
    x, h, w, u, v = rand(5, 3), rand(4), rand(3, 4, scale=.5), rand(4, 4, scale=.5), rand(4, 4)
    eps = 1e-6
    fh = ik.function([X, h0, W, U], hs)
    fd = (fh(x, h, w, u + eps * v) - fh(x, h, w, u - eps * v)) / (2 * eps)
    np.testing.assert_allclose(ik.function([X, h0, W, U, V], ik.Rop(hs, U, V))(x, h, w, u, v), fd,
                               rtol=1e-6, atol=1e-8)
    gU = ik.grad(ik.sum(hs ** 2), U)
    fg = ik.function([X, h0, W, U], gU)
    fd = (fg(x, h, w, u + eps * v) - fg(x, h, w, u - eps * v)) / (2 * eps)
    grad_of_inner = ik.function([X, h0, W, U, V], ik.grad(ik.sum(gU * V), U))
    rop_of_grad = ik.function([X, h0, W, U, V], ik.Rop(gU, U, V))
    np.testing.assert_allclose(grad_of_inner(x, h, w, u, v), fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(rop_of_grad(x, h, w, u, v), fd, rtol=1e-6, atol=1e-8)


def test_gradient_with_zero_steps_is_zero():
    (X, h0, W, U), hs, _ = elman()
    f = ik.function([X, h0, W, U], ik.grad(ik.sum(hs) + ik.sum(h0 ** 2), [W, h0]))
    gw, gh = f(np.zeros((0, 3)), np.ones(4), np.ones((3, 4)), np.ones((4, 4)))
    np.testing.assert_array_equal(gw, np.zeros((3, 4)))
    np.testing.assert_array_equal(gh, 2 * np.ones(4))


# ---------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------

def test_a_long_scan_whose_last_value_only_is_used_keeps_only_its_taps():
    """10^6 steps of a 100-float state: stacked, that is 800 MB; only the last step is kept."""
    script = textwrap.dedent("""
        import resource, numpy as np, irkit as ik
        h0 = ik.vector("h0", dtype="float64")
        hs, _ = ik.scan(lambda h: h * 0.5 + 1.0, outputs_info=h0, n_steps=1_000_000)
        f = ik.function([h0], hs[-1])
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = f(np.zeros(100))
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        assert np.allclose(out, 2.0), out
        print(grown)
    """)
    got = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr
    assert int(got.stdout.split()[-1]) < 50_000, f"the scan grew the process by {got.stdout.split()[-1]} KiB"
