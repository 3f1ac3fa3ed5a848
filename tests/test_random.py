"""ik.RandomStream: the generator against Random123's known answers and its numpy
reference, the distributions by moments, Kolmogorov-Smirnov and chi-square tests at fixed
seeds, reproducibility (across functions, reseeding and processes), the state's advance
through default updates, symbolic sizes, bad input, gradients, scan, and the GPU code."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.stats

import irkit as ik
from irkit import ops as K
from irkit.dialects.ik.random import NextBelowOp, integers_from_words, philox4x32_10

from test_ptx import assemble, need_device, need_ptxas

N = 20000          # samples for the statistical tests
P_MIN = 1e-4       # a correct generator fails a test at a fixed seed with about this probability


def z_bound(n: int) -> float:
    """Five standard errors of a mean of n unit-variance samples."""
    return 5.0 / np.sqrt(n)


def draw_values(draw: ik.Variable, *args) -> np.ndarray:
    return ik.function([], draw)(*args)


# -- the generator ---------------------------------------------------------------------------------

# Random123's kat_vectors: counter (4 words), key (2 words) -> output (4 words)
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter,key,expected", KNOWN_ANSWERS)
def test_reference_philox_gives_random123_known_answers(counter, key, expected):
    got = philox4x32_10([np.uint64(c) for c in counter], key)
    assert [int(w) for w in got] == list(expected)


def test_reference_integers_are_the_128_bit_fixed_point_product():
    """integers_from_words (which the kernels follow step by step) against Python's big ints:
    low + floor(R * (high - low) / 2**128) for the 128-bit word R = w3:w2:w1:w0."""
    rng = np.random.default_rng(0)
    words = [rng.integers(0, 2 ** 32, 200, dtype=np.uint64) for _ in range(4)]
    words[0][:2], words[3][:2] = 2 ** 32 - 1, 2 ** 32 - 1  # carries out of every limb
    for low, high in [(0, 10), (-5, 7), (0, 3 * 2 ** 61), (-(2 ** 63), 2 ** 63 - 1), (2 ** 62, 2 ** 62 + 1)]:
        got = integers_from_words(words, low, high)
        for k in range(200):
            r = sum(int(words[j][k]) << (32 * j) for j in range(4))
            assert int(got[k]) == low + ((r * (high - low)) >> 128)


def test_compiled_philox_gives_the_known_answer():
    """State [key 0, counter 0], element 0 is the all-zero known answer: integers in
    [0, 2**32) are its last word (floor(R * 2**32 / 2**128)), float32 uniforms its first
    word's top 24 bits."""
    srng = ik.RandomStream(0)
    words = srng.integers((2,), 0, 2 ** 32)
    u = srng.uniform((2,), dtype="float32")
    f = ik.function([], [words, u])
    for state in srng.state_variables:
        state.set_value(np.array([0, 0]))
    got_words, got_u = f()
    assert got_words[0] == 0x9B00DBD8
    assert got_u[0] == np.float32((0x6627E8D5 >> 8) * 2.0 ** -24)


def test_compiled_draws_equal_their_numpy_reference():
    """The kernels compute exactly what each op's numpy reference (evaluate) computes, for
    the state each call reads (uniforms and integers bit for bit, normals to rounding)."""
    srng = ik.RandomStream(7)
    n = ik.lscalar("n")
    draws = [srng.uniform((n, 3)), srng.uniform((n,), dtype="float32"), srng.normal((3, n)),
             srng.normal((n,), dtype="float32"), srng.integers((n, 2), -(2 ** 62), 2 ** 62 + 12345),
             srng.integers((n,), -5, 7)]
    f = ik.function([n], draws)
    for size in (0, 1, 37):
        before = [s.get_value() for s in srng.state_variables]
        got = f(size)
        for draw, value, state in zip(draws, got, before):
            op = draw.value.owner
            params = [np.asarray(op.operands[k].owner.array()) for k in range(1, 1 + op.N_PARAMS)]
            want = op.evaluate(op.params, state, *params, np.int64(size))[0]
            assert value.dtype == want.dtype and value.shape == want.shape
            if value.dtype.kind == "f" and op.name == "ik.random_normal":
                np.testing.assert_allclose(value, want, rtol=1e-6 if value.dtype == np.float32 else 1e-13)
            else:
                np.testing.assert_array_equal(value, want)


# -- distributions ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def samples():
    """One function drawing from every continuous distribution at once (symbolic size)."""
    srng = ik.RandomStream(2024)
    n = ik.lscalar("n")
    draws = {
        "normal64": srng.normal((n,)),
        "normal32": srng.normal((n,), dtype="float32"),
        "normal_loc_scale": srng.normal((n,), loc=-3.0, scale=0.5),
        "uniform64": srng.uniform((n,)),
        "uniform32": srng.uniform((n,), dtype="float32"),
        "uniform_ab": srng.uniform((n,), low=-2.0, high=5.0),
        "other_normal": srng.normal((n,)),
    }
    f = ik.function([n], list(draws.values()))
    return dict(zip(draws, f(N)))


@pytest.mark.parametrize("name,dtype", [("normal64", np.float64), ("normal32", np.float32)])
def test_normal_moments_and_kolmogorov_smirnov(samples, name, dtype):
    z = samples[name]
    assert z.dtype == dtype and z.shape == (N,)
    assert abs(z.mean()) < z_bound(N)
    assert abs(z.var() - 1) < 5 * np.sqrt(2.0 / N)
    assert scipy.stats.kstest(z.astype(np.float64), "norm").pvalue > P_MIN
    # the tails: about 2 * N * Phi(-3) beyond 3 sigma, by a binomial bound
    expected = 2 * N * scipy.stats.norm.sf(3)
    assert abs((np.abs(z) > 3).sum() - expected) < 5 * np.sqrt(expected)


def test_normal_with_loc_and_scale(samples):
    x = samples["normal_loc_scale"]
    assert abs(x.mean() + 3) < 0.5 * z_bound(N)
    assert scipy.stats.kstest(x, "norm", args=(-3.0, 0.5)).pvalue > P_MIN


@pytest.mark.parametrize("name,low,high,dtype", [("uniform64", 0, 1, np.float64), ("uniform32", 0, 1, np.float32),
                                                 ("uniform_ab", -2, 5, np.float64)])
def test_uniform_range_moments_and_kolmogorov_smirnov(samples, name, low, high, dtype):
    u = samples[name]
    assert u.dtype == dtype
    assert u.min() >= low and u.max() < high
    width = high - low
    assert abs(u.mean() - (low + high) / 2) < z_bound(N) * width / np.sqrt(12)
    assert abs(u.var() / (width ** 2 / 12) - 1) < 0.05
    assert scipy.stats.kstest(u.astype(np.float64), "uniform", args=(low, width)).pvalue > P_MIN


def test_two_draws_in_one_graph_are_independent(samples):
    a, b = samples["normal64"], samples["other_normal"]
    assert abs(np.corrcoef(a, b)[0, 1]) < z_bound(N)
    # and neither is a shifted copy of the other
    assert abs(np.corrcoef(a[1:], b[:-1])[0, 1]) < z_bound(N)
    assert scipy.stats.ks_2samp(a, b).pvalue > P_MIN


def test_uniform_never_returns_high_where_the_product_rounds_up():
    """Between 1e16 and 1e16 + 2 there is no float64: low + (high - low) * u rounds to high
    for about half of the draws, which the draw clamps to the float below high."""
    srng = ik.RandomStream(5)
    hi = ik.dscalar("hi")
    u = ik.function([hi], srng.uniform((1000,), 1e16, hi))(1e16 + 2)
    assert (u == 1e16).all()


def test_next_below_is_numpys_nextafter_toward_minus_infinity():
    for dt in ("float32", "float64"):
        info = np.finfo(dt)
        values = np.array([1.0, 2.0, 0.0, -0.0, -1.0, 1e-30, -1e-30, info.tiny, info.smallest_subnormal,
                           -info.smallest_subnormal, info.max, np.inf, -np.inf, np.nan, 3.5], dtype=dt)
        x = ik.vector("x", dtype=dt)
        got = ik.function([x], K._emit(NextBelowOp, [x]))(values)
        want = np.nextafter(values, np.array(-np.inf, dtype=dt))
        np.testing.assert_array_equal(got.view(f"int{8 * values.itemsize}"), want.view(f"int{8 * values.itemsize}"))


def test_integers_chi_square_and_bounds():
    srng = ik.RandomStream(11)
    draws = [srng.integers((N,), 10), srng.integers((N,), -3, 4, dtype="int8"),
             srng.integers((N,), -(2 ** 63), 2 ** 63 - 1)]
    small, int8s, full = ik.function([], draws)()
    counts = np.bincount(small, minlength=10)
    assert small.min() >= 0 and small.max() < 10 and len(counts) == 10
    assert scipy.stats.chisquare(counts).pvalue > P_MIN
    assert int8s.dtype == np.int8 and int8s.min() == -3 and int8s.max() == 3
    assert scipy.stats.chisquare(np.bincount(int8s + 3)).pvalue > P_MIN
    # the whole int64 range: every one of the 16 top-bit classes equally likely
    top = (full.view(np.uint64) >> np.uint64(60)).astype(np.int64) ^ 8
    assert scipy.stats.chisquare(np.bincount(top, minlength=16)).pvalue > P_MIN


def test_integers_over_a_range_that_is_not_a_power_of_two_is_unbiased():
    """A range of 3 * 2**61: a 64-bit multiply-shift or modulo would give some values
    twice the probability of others; the 128-bit product does not."""
    srng = ik.RandomStream(12)
    x = draw_values(srng.integers((N,), 0, 3 * 2 ** 61))
    thirds = x // 2 ** 61
    assert scipy.stats.chisquare(np.bincount(thirds, minlength=3)).pvalue > P_MIN
    halves = np.bincount((x >= 3 * 2 ** 60).astype(np.int64), minlength=2)
    assert scipy.stats.chisquare(halves).pvalue > P_MIN


def test_binomial_frequencies_match_the_pmf():
    srng = ik.RandomStream(13)
    n, p = 10, 0.3
    draws = [srng.binomial((N,), n, p), srng.bernoulli((N,), 0.8, dtype="float32"),
             srng.binomial((N // 2, 2), 4, np.array([0.1, 0.9]))]
    k, mask, per_column = ik.function([], draws)()
    assert k.dtype == np.int64 and k.min() >= 0 and k.max() <= n
    observed = np.bincount(k, minlength=n + 1)
    expected = N * scipy.stats.binom.pmf(np.arange(n + 1), n, p)
    keep = expected > 5  # the chi-square approximation needs a few expected counts per cell
    observed = np.append(observed[keep], observed[~keep].sum())
    expected = np.append(expected[keep], expected[~keep].sum())
    assert scipy.stats.chisquare(observed, expected).pvalue > P_MIN
    assert mask.dtype == np.float32 and set(np.unique(mask)) == {0.0, 1.0}
    assert abs(mask.mean() - 0.8) < 5 * np.sqrt(0.8 * 0.2 / N)
    means = per_column.mean(axis=0)
    assert np.all(np.abs(means - np.array([0.4, 3.6])) < 5 * np.sqrt(4 * np.array([0.09, 0.09]) / (N // 2)))


def test_binomial_with_symbolic_n_and_p():
    srng = ik.RandomStream(14)
    n, p = ik.lscalar("n"), ik.dvector("p")
    f = ik.function([n, p], srng.binomial((2000, 3), n, p))
    k = f(6, np.array([0.0, 0.5, 1.0]))
    assert (k[:, 0] == 0).all() and (k[:, 2] == 6).all()
    assert abs(k[:, 1].mean() - 3) < 5 * np.sqrt(1.5 / 2000)
    assert (f(0, np.array([0.2, 0.5, 0.7])) == 0).all()


def test_choice_with_p_follows_p():
    srng = ik.RandomStream(15)
    p = np.array([0.1, 0.0, 0.25, 0.05, 0.6])
    items = np.array([10, 20, 30, 40, 50])
    pv = ik.dvector("p")
    f = ik.function([pv], [srng.choice(items, (N,), p=p), srng.choice(5, (N,), p=pv)])
    picked, by_index = f(p)
    assert set(np.unique(picked)) <= {10, 30, 40, 50}  # 20 has probability 0
    counts = np.bincount(picked // 10 - 1, minlength=5)
    keep = p > 0
    assert scipy.stats.chisquare(counts[keep], N * p[keep]).pvalue > P_MIN
    assert scipy.stats.chisquare(np.bincount(by_index, minlength=5)[keep], N * p[keep]).pvalue > P_MIN


def test_choice_uniform_with_replacement():
    srng = ik.RandomStream(16)
    items = np.array([1.5, 2.5, 3.5])
    x, one = ik.function([], [srng.choice(items, (N,)), srng.choice(items)])()
    assert x.dtype == np.float64
    assert scipy.stats.chisquare(np.bincount((x - 1.5).astype(np.int64))).pvalue > P_MIN
    assert one.shape == () and one in items  # size=None: one item


def test_choice_without_replacement_is_a_uniform_sample():
    """Each call gives distinct items; over calls, every ordered pair is equally likely."""
    srng = ik.RandomStream(17)
    f = ik.function([], srng.choice(4, (2,), replace=False))
    pairs = np.array([f() for _ in range(3000)])
    assert (pairs[:, 0] != pairs[:, 1]).all()
    counts = np.bincount(pairs[:, 0] * 4 + pairs[:, 1], minlength=16).reshape(4, 4)
    assert (np.diag(counts) == 0).all()
    assert scipy.stats.chisquare(counts[~np.eye(4, dtype=bool)]).pvalue > P_MIN


def test_choice_without_replacement_with_p_draws_one_item_after_another():
    """numpy's law: the first item with probability p, the next in proportion to p among
    those left: P(i then j) = p_i * p_j / (1 - p_i)."""
    srng = ik.RandomStream(18)
    p = np.array([0.5, 0.3, 0.2, 0.0])
    f = ik.function([], srng.choice(np.array([0, 1, 2, 3]), (2,), replace=False, p=p))
    pairs = np.array([f() for _ in range(3000)])
    assert (pairs != 3).all() and (pairs[:, 0] != pairs[:, 1]).all()
    observed = np.bincount(pairs[:, 0] * 3 + pairs[:, 1], minlength=9).reshape(3, 3)
    law = np.array([[p[i] * p[j] / (1 - p[i]) if i != j else 0 for j in range(3)] for i in range(3)])
    off = ~np.eye(3, dtype=bool)
    assert scipy.stats.chisquare(observed[off], 3000 * law[off]).pvalue > P_MIN


def test_permutation_and_a_full_sample_are_permutations():
    srng = ik.RandomStream(19)
    m = ik.lscalar("m")
    x = ik.dmatrix("x")
    f = ik.function([m, x], [srng.permutation(m), srng.choice(m, (m,), replace=False), srng.permutation(x)])
    rows = np.arange(12.0).reshape(6, 2)
    first = f(50, rows)
    second = f(50, rows)
    for got in (first, second):
        assert sorted(got[0]) == list(range(50)) and sorted(got[1]) == list(range(50))
        assert sorted(got[2][:, 0].tolist()) == rows[:, 0].tolist()
        np.testing.assert_array_equal(got[2][:, 1] - got[2][:, 0], 1.0)  # whole rows move
    assert not np.array_equal(first[0], second[0])


# -- state, seeds and reproducibility --------------------------------------------------------------------

def test_state_advances_on_every_call_and_reseeding_restores_it():
    srng = ik.RandomStream(42)
    f = ik.function([], [srng.normal((5,)), srng.integers((5,), 100)])
    first, second = f(), f()
    assert not np.array_equal(first[0], second[0]) and not np.array_equal(first[1], second[1])
    assert [int(s.get_value()[1]) for s in srng.state_variables] == [2 * 2 ** 32] * 2  # calls count in the high word
    srng.seed(42)
    again = f()
    np.testing.assert_array_equal(again[0], first[0])
    np.testing.assert_array_equal(again[1], first[1])
    srng.seed(43)
    assert not np.array_equal(f()[0], first[0])


def test_the_same_seed_gives_the_same_numbers_in_two_functions():
    def make(seed):
        srng = ik.RandomStream(seed)
        x = ik.dvector("x")
        return ik.function([x], x + srng.normal(x.shape) + srng.uniform(x.shape))
    ones = np.ones(64)
    a, b, c = make(3), make(3), make(4)
    np.testing.assert_array_equal(a(ones), b(ones))
    np.testing.assert_array_equal(a(ones), b(ones))  # and the second calls too
    assert not np.array_equal(a(ones), c(ones))


def test_the_same_seed_gives_the_same_numbers_in_another_process():
    script = textwrap.dedent("""
        import numpy as np, irkit as ik
        srng = ik.RandomStream(99)
        f = ik.function([], [srng.normal((4,)), srng.integers((4,), 1000), srng.uniform((4,), dtype="float32")])
        f()
        print(repr([a.tolist() for a in f()]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    srng = ik.RandomStream(99)
    f = ik.function([], [srng.normal((4,)), srng.integers((4,), 1000), srng.uniform((4,), dtype="float32")])
    f()
    assert proc.stdout.strip() == repr([a.tolist() for a in f()])


def test_default_updates_of_any_shared_variable():
    counter = ik.shared(np.int64(0), name="counter")
    counter.default_update = counter + 1
    x = ik.lscalar("x")
    f = ik.function([x], x + counter)
    assert [int(f(10)) for _ in range(3)] == [10, 11, 12]
    # the caller's own update wins over the default one
    g = ik.function([x], x + counter, updates=[(counter, counter + 100)])
    g(0)
    assert int(counter.get_value()) == 103
    # no_default_updates: True, or a list of the variables to leave alone
    before = int(counter.get_value())
    ik.function([x], x + counter, no_default_updates=True)(0)
    ik.function([x], x + counter, no_default_updates=[counter])(0)
    assert int(counter.get_value()) == before
    # a variable the graph does not read is not updated
    ik.function([x], x * 2)(1)
    assert int(counter.get_value()) == before


def test_no_default_updates_repeats_the_numbers():
    srng = ik.RandomStream(1)
    f = ik.function([], srng.uniform((3,)), no_default_updates=True)
    np.testing.assert_array_equal(f(), f())


def test_symbolic_sizes_mix_ints_and_shapes():
    srng = ik.RandomStream(8)
    x = ik.dmatrix("x")
    n = ik.lscalar("n")
    f = ik.function([x, n], [srng.normal((x.shape[0], 3, n)), srng.uniform(x.shape), srng.integers(n, 5)])
    a, b, c = f(np.zeros((4, 7)), 2)
    assert a.shape == (4, 3, 2) and b.shape == (4, 7) and c.shape == (2,)
    a, b, c = f(np.zeros((0, 2)), 0)
    assert a.shape == (0, 3, 0) and b.shape == (0, 2) and c.shape == (0,)
    with pytest.raises(ik.InvalidValueError, match="negative"):
        f(np.zeros((1, 1)), -1)


def test_size_none_takes_the_parameters_shape():
    srng = ik.RandomStream(9)
    loc = ik.dvector("loc")
    f = ik.function([loc], [srng.normal(loc=loc, scale=1e-9), srng.uniform(), srng.binomial(p=np.array([0.0, 1.0]))])
    z, u, k = f(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(z, [1.0, 2.0, 3.0], atol=1e-7)
    assert u.shape == () and 0 <= u < 1
    np.testing.assert_array_equal(k, [0, 1])


# -- gradients ------------------------------------------------------------------------------------------

def test_gradients_flow_to_loc_scale_and_bounds_not_to_the_state():
    srng = ik.RandomStream(10)
    mu = ik.shared(np.array([1.0, -2.0, 0.5]), name="mu")
    sigma, lo, hi = ik.dscalar("sigma"), ik.dscalar("lo"), ik.dscalar("hi")
    z = srng.normal((4, 3), loc=mu, scale=sigma)
    u = srng.uniform((50,), lo, hi)
    cost = ik.sum(z * z) + ik.sum(u)
    g_mu, g_sigma, g_lo, g_hi = ik.grad(cost, [mu, sigma, lo, hi])
    f = ik.function([sigma, lo, hi], [z, u, g_mu, g_sigma, g_lo, g_hi])
    zv, uv, gm, gs, gl, gh = f(0.7, 1.0, 3.0)
    std = (zv - mu.get_value()) / 0.7  # the standard normal draw behind z
    np.testing.assert_allclose(gm, (2 * zv).sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(gs, (2 * zv * std).sum(), rtol=1e-12)
    frac = (uv - 1.0) / 2.0             # the standard uniform behind u
    np.testing.assert_allclose([gl, gh], [(1 - frac).sum(), frac.sum()], rtol=1e-12)


# -- scan -------------------------------------------------------------------------------------------------

def test_a_scan_step_that_returns_the_updates_draws_anew_each_step():
    srng = ik.RandomStream(20)
    h0 = ik.dvector("h0")

    def step(h):
        return h + srng.normal((3,)), srng.updates()
    hs, updates = ik.scan(step, outputs_info=h0, n_steps=5)
    f = ik.function([h0], hs, updates=updates)
    first = f(np.zeros(3))
    steps = np.diff(np.vstack([np.zeros(3), first]), axis=0)
    assert len({tuple(s) for s in steps}) == 5           # every step drew new numbers
    assert int(srng.state_variables[0].get_value()[1]) == 5
    second = f(np.zeros(3))
    assert not np.isin(np.diff(second, axis=0), steps).any()  # and the next call continues the stream
    # a function that drops scan's updates still draws new numbers on every call (its default
    # update moves the counter past every step of the call)
    g = ik.function([h0], hs)
    third, fourth = (np.diff(np.vstack([np.zeros(3), g(np.zeros(3))]), axis=0) for _ in range(2))
    assert not np.isin(fourth, third).any()


@pytest.mark.parametrize("pass_updates", [True, False])
def test_a_scan_step_that_draws_advances_on_its_own(pass_updates):
    """As in Theano: a step that draws need not return the stream's updates; scan applies the
    state's step update (counter + 1), so every step and every call draws new numbers, whether
    or not scan's updates reach ik.function."""
    srng = ik.RandomStream(21)
    h0 = ik.dvector("h0")
    hs, updates = ik.scan(lambda h: h + srng.uniform((2,)), outputs_info=h0, n_steps=4)
    assert list(updates) == srng.state_variables  # scan says which states it moved
    f = ik.function([h0], hs, updates=updates if pass_updates else None)
    draws = [np.diff(np.vstack([np.zeros(2), f(np.zeros(2))]), axis=0) for _ in range(3)]
    flat = np.concatenate([d.ravel() for d in draws])
    assert len(np.unique(flat)) == flat.size  # 3 calls x 4 steps x 2: no number repeats


# -- bad input ------------------------------------------------------------------------------------------

def test_bad_arguments_raise_clear_errors():
    srng = ik.RandomStream(0)
    with pytest.raises(ik.ShapeError, match=r"RandomStream.normal: size\[1\] = -2 is negative"):
        srng.normal((3, -2))
    with pytest.raises(ik.InvalidValueError, match="p must lie in"):
        srng.binomial((3,), 2, 1.5)
    with pytest.raises(ik.InvalidValueError, match="p must lie in"):
        srng.bernoulli((3,), np.array([0.5, -0.1, 0.2]))
    with pytest.raises(ik.InvalidValueError, match="n=-1"):
        srng.binomial((3,), -1, 0.5)
    with pytest.raises(ik.InvalidValueError, match="low=2.0 must be less than high=1.0"):
        srng.uniform((3,), 2.0, 1.0)
    with pytest.raises(ik.InvalidValueError, match=r"low must be less than high \(low=5, high=5\)"):
        srng.integers((3,), 5, 5)
    with pytest.raises(ik.InvalidValueError, match="does not fit in int8"):
        srng.integers((3,), 0, 300, dtype="int8")
    with pytest.raises(ik.InvalidValueError, match="scale=-1.0"):
        srng.normal((3,), scale=-1.0)
    with pytest.raises(ik.ShapeError, match="a must be 1-d"):
        srng.choice(np.ones((2, 2)), (3,))
    with pytest.raises(ik.ShapeError, match=r"RandomStream.normal: a parameter of shape \(2, 3\) does not broadcast"):
        srng.normal((3,), loc=np.zeros((2, 3)))
    with pytest.raises(ik.InvalidValueError, match="p must sum to 1"):
        srng.choice(3, (3,), p=[0.5, 0.2, 0.2])
    with pytest.raises(ik.ShapeError, match="p has 2 entries, a has 3 items"):
        srng.choice(3, (3,), p=[0.5, 0.5])
    with pytest.raises(ik.InvalidValueError, match="cannot take 4 items without replacement from 3"):
        srng.choice(3, (4,), replace=False)
    with pytest.raises(ik.InvalidValueError, match="a=0 must be positive"):
        srng.choice(0, (1,))
    with pytest.raises(ik.DTypeError, match="float32 or float64"):
        srng.normal((3,), dtype="int32")
    with pytest.raises(TypeError, match="size"):
        srng.uniform("big")
    with pytest.raises(ik.InvalidValueError, match="non-negative"):
        ik.RandomStream(-1)


def test_bad_symbolic_arguments_raise_when_called():
    srng = ik.RandomStream(0)
    p, lo, hi, a = ik.dvector("p"), ik.dscalar("lo"), ik.lscalar("hi"), ik.dvector("a")
    m = ik.lscalar("m")
    f_p = ik.function([p], srng.bernoulli((4, 3), p))
    assert f_p(np.array([0.1, 0.5, 1.0])).shape == (4, 3)
    with pytest.raises(ik.InvalidValueError, match="RandomStream.binomial: p must lie in"):
        f_p(np.array([0.1, 1.5, 0.2]))
    with pytest.raises(ValueError, match="RandomStream.uniform: low must be less than high"):
        ik.function([lo], srng.uniform((2,), lo, 1.0))(1.0)
    with pytest.raises(ValueError, match="RandomStream.integers: low must be less than high"):
        ik.function([hi], srng.integers((2,), 3, hi))(2)
    f_choice = ik.function([a, p, m], srng.choice(a, (m,), replace=False, p=p))
    assert sorted(f_choice(np.arange(3.0), np.array([0.2, 0.3, 0.5]), 3)) == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="p must be non-negative, sum to 1"):
        f_choice(np.arange(3.0), np.array([0.2, 0.3, 0.3]), 2)
    with pytest.raises(ValueError, match="p must be non-negative, sum to 1 and have an entry per item"):
        f_choice(np.arange(2.0), np.array([0.2, 0.3, 0.5]), 1)
    with pytest.raises(ValueError, match="cannot take more items without replacement"):
        f_choice(np.arange(3.0), np.array([0.5, 0.5, 0.0]), 3)
    count = ik.lscalar("count")
    f_count = ik.function([count], srng.choice(count, (2,)))
    assert f_count(1).tolist() == [0, 0]
    with pytest.raises(ValueError, match="RandomStream.choice: a must be positive"):
        f_count(0)


# -- the GPU code -----------------------------------------------------------------------------------------

def _gpu_graph():
    """Every draw and helper op, with symbolic sizes, bounds and probabilities."""
    srng = ik.RandomStream(21)
    x, p, lo = ik.fmatrix("x"), ik.dvector("p"), ik.dscalar("lo")
    outs = [x * srng.bernoulli(x.shape, 0.8, dtype="float32"), srng.normal((x.shape[0],), dtype="float32"),
            srng.normal((7,)), srng.integers((9,), -(2 ** 40), 2 ** 40), srng.binomial((5,), 6, 0.25),
            srng.uniform((4,), lo, lo + 1.0), srng.choice(4, (6,), p=p), srng.choice(5, (3,), replace=False)]
    return [x, p, lo], outs


@need_ptxas
def test_draws_compile_for_the_gpu(tmp_path):
    inputs, outs = _gpu_graph()
    text = ik.function(inputs, outs).ir("ptx")
    assert "mul.wide.u32" in text or "mul.hi.u32" in text  # Philox's 32x32 -> 64-bit products
    assemble(text, tmp_path)


@need_device
def test_the_gpu_draws_the_same_numbers_as_the_cpu():
    inputs, outs = _gpu_graph()
    args = (np.ones((33, 5), np.float32), np.array([0.1, 0.2, 0.3, 0.4]), -2.5)
    cpu = ik.function(inputs, outs, no_default_updates=True)(*args)
    gpu = ik.function(inputs, outs, no_default_updates=True, target="cuda")(*args)
    for c, g in zip(cpu, gpu):
        np.testing.assert_allclose(g, c, rtol=1e-6 if c.dtype == np.float32 else 1e-13)
