"""The runtime's thread pool (backends/thread_pool.py), through compiled functions whose
loops run on it: numpy as the oracle at every thread count and at sizes around the chunk
boundaries, errors raised from any chunk (and the pool usable after), loops started from
several Python threads at once, and a forked child that makes its own workers."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

import irkit as ik


@pytest.fixture
def threaded():
    """Loops split across threads from a thousand elements on; num_threads restored."""
    old = ik.config.parallel_threshold, ik.config.num_threads
    ik.config.parallel_threshold = 1000
    yield
    ik.config.parallel_threshold = old[0]
    if ik.config.num_threads != old[1]:
        ik.config.num_threads = old[1]


@pytest.mark.parametrize("threads", [2, 3, 8])
def test_loops_on_the_pool_match_numpy(rng, threaded, threads):
    """Elementwise, a row reduction and a column reduction, on more threads than cores
    too; sizes that split into chunks unevenly, one chunk, fewer iterations than threads."""
    ik.config.num_threads = threads
    x = ik.matrix("x", dtype="float64")
    f = ik.function([x], [ik.exp(x) * 2 - x, x.sum(axis=1), x.max(axis=0)])
    for shape in [(1000, 3), (1001, 7), (4097, 5), (3, 2000), (1, 5000), (2, 1), (0, 4)]:
        xv = rng.standard_normal(shape)
        if not xv.size:  # max of nothing: numpy's ValueError, whatever ran before it
            with pytest.raises(ValueError):
                f(xv)
            continue
        got = f(xv)
        np.testing.assert_allclose(got[0], np.exp(xv) * 2 - xv, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(got[1], xv.sum(axis=1), rtol=1e-12)
        np.testing.assert_array_equal(got[2], xv.max(axis=0))


def test_thread_count_can_shrink_and_grow(rng, threaded):
    x = ik.vector("x")
    xv = rng.standard_normal(100_000)
    for threads in (8, 2, 1, 4, 2):
        ik.config.num_threads = threads
        f = ik.function([x], ik.tanh(x) + 1)
        for _ in range(3):
            np.testing.assert_allclose(f(xv), np.tanh(xv) + 1, rtol=1e-13)


def test_a_failing_chunk_raises_and_the_pool_goes_on(rng, threaded):
    """An index out of bounds in the last chunk of a threaded gather: the call raises
    IndexError; the next calls (threaded) run."""
    ik.config.num_threads = 2
    x, i = ik.vector("x"), ik.vector("i", dtype="int64")
    f = ik.function([x, i], x[i] * 2)
    xv = rng.standard_normal(50)
    iv = rng.integers(0, 50, 100_000)
    for _ in range(3):
        bad = iv.copy()
        bad[-1] = 50
        with pytest.raises(IndexError):
            f(xv, bad)
        np.testing.assert_array_equal(f(xv, iv), xv[iv] * 2)


def test_loops_from_several_python_threads(rng, threaded):
    """Calls in four Python threads at once: one loop at a time has the pool, the others
    run on their caller's thread; every result is right."""
    ik.config.num_threads = 2
    x = ik.vector("x")
    f = ik.function([x], ik.sqrt(ik.abs(x)) + x * x)
    inputs = [rng.standard_normal(200_000 + k) for k in range(4)]
    errors: list[BaseException] = []

    def work(v):
        try:
            for _ in range(20):
                np.testing.assert_allclose(f(v), np.sqrt(np.abs(v)) + v * v, rtol=1e-15)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(v,)) for v in inputs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[0]
    assert not any(t.is_alive() for t in threads)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_makes_its_own_workers(rng, threaded):
    """The parent's workers do not exist in a child: its first threaded loop makes new
    ones instead of waiting for the parent's forever."""
    ik.config.num_threads = 2
    x = ik.vector("x")
    f = ik.function([x], x * 3 + 1)
    xv = rng.standard_normal(100_000)
    np.testing.assert_array_equal(f(xv), xv * 3 + 1)  # the parent's pool exists
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if right
        try:
            ok = all(np.array_equal(f(xv), xv * 3 + 1) for _ in range(3))
        finally:
            os._exit(0 if ok else 1)
    for _ in range(600):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        threading.Event().wait(0.1)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung in its threaded loop")
    assert os.waitstatus_to_exitcode(status) == 0
