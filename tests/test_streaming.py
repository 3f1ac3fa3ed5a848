"""Streaming (non-temporal) stores for elementwise loops that write more than the cache
holds (backends/streaming.py): which loops get them, the vector store they become, and
numpy as the oracle for every split of a call into head, aligned blocks and tail, on one
thread and on several, with outputs at equal and at different offsets from a cache line."""

from __future__ import annotations

import re

import numpy as np
import pytest

import irkit as ik


@pytest.fixture
def stream_everything():
    """Every eligible loop streams, whatever it writes; loops split across threads from a
    thousand elements on."""
    old = ik.config.stream_threshold, ik.config.parallel_threshold, ik.config.num_threads
    ik.config.stream_threshold = 1
    ik.config.parallel_threshold = 1000
    yield
    ik.config.stream_threshold, ik.config.parallel_threshold = old[:2]
    if ik.config.num_threads != old[2]:
        ik.config.num_threads = old[2]


def _stream_functions(text: str) -> list[str]:
    return re.findall(r"define internal [^@]*@([\w.]+\.stream)\(", text)


def test_elementwise_loop_streams_with_aligned_vector_stores(stream_everything):
    x = ik.vector("x", dtype="float32")
    text = ik.function([x], x * 2 + 1).ir("llvm")
    assert _stream_functions(text) == ["main.par1.stream"]
    body = text[re.search(r"define internal [^@]*@main\.par1\.stream\(", text).start():]
    body = body[:body.index("\n}\n")]
    # the SLP vectorizer joined a line's worth of scalar stores into one aligned vector store
    assert re.search(r"store <\d+ x float> %[\w.]+, ptr %[\w.]+, align (32|64), !nontemporal", body), body
    # and fenced before the chunk is done (another thread may read the output next)
    assert re.search(r"call void @llvm\.x86\.sse\.sfence\(\)|fence seq_cst", body), body


def test_streaming_off_and_ineligible_loops(stream_everything):
    x = ik.vector("x", dtype="float32")
    ik.config.stream_threshold = 0
    assert _stream_functions(ik.function([x], x + 1).ir("llvm")) == []
    ik.config.stream_threshold = 1
    # a transcendental (a libm call: the vectorised loop is faster), a gather
    i = ik.vector("i", dtype="int64")
    assert _stream_functions(ik.function([x], ik.exp(x)).ir("llvm")) == []
    assert _stream_functions(ik.function([x, i], x[i] + 1).ir("llvm")) == []


def test_threshold_compares_bytes_written(stream_everything):
    """The same loop streams above the threshold and not below: both give numpy's answer,
    and the threshold is part of the compiled function's identity (cache key)."""
    x = ik.vector("x", dtype="float64")
    ik.config.stream_threshold = 8 * 1000
    f = ik.function([x], x - 3)
    ik.config.stream_threshold = 0
    g = ik.function([x], x - 3)
    assert _stream_functions(f.ir("llvm")) and not _stream_functions(g.ir("llvm"))
    for n in (999, 1000, 1001, 5000):
        v = np.arange(n, dtype=np.float64)
        np.testing.assert_array_equal(f(v), v - 3)
    # a static size: the streaming loop is made only where that size writes enough
    ik.config.stream_threshold = 8 * 1000
    assert _stream_functions(ik.function([s := ik.tensor("s", shape=(1000,))], s - 3).ir("llvm"))
    ik.config.stream_threshold = 8 * 1000 + 1
    assert not _stream_functions(ik.function([s], s - 3).ir("llvm"))


SIZES = [0, 1, 15, 16, 17, 63, 64, 65, 1000, 4099, 100_003]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int8"])
def test_streamed_results_match_numpy(rng, stream_everything, dtype, threads):
    """Two outputs and a comparison (bytes), inputs at every offset from a line: the head
    before the first aligned element, the blocks and the tail all written, nothing more."""
    ik.config.num_threads = threads
    x, y = ik.vector("x", dtype=dtype), ik.vector("y", dtype=dtype)
    f = ik.function([x, y], [x + y, x * 3, x > y])
    g = ik.function([x, y], ik.maximum(x, y) - ik.minimum(x, 1))
    assert _stream_functions(f.ir("llvm")) and _stream_functions(g.ir("llvm"))
    for n in SIZES:
        for offset in (0, 1, 3):
            base = rng.integers(-50, 50, n + offset + 8).astype(dtype)
            xv, yv = base[offset:offset + n], base[::-1][offset:offset + n]
            got = f(xv, yv)
            np.testing.assert_array_equal(got[0], xv + yv)
            np.testing.assert_array_equal(got[1], xv * dtype_cast(3, dtype))
            np.testing.assert_array_equal(got[2], xv > yv)
            np.testing.assert_array_equal(g(xv, yv), np.maximum(xv, yv) - np.minimum(xv, dtype_cast(1, dtype)))


def dtype_cast(value, dtype):
    return np.dtype(dtype).type(value)


def test_outputs_at_different_offsets_from_a_line(stream_everything):
    """One loop writes a fresh (aligned) output and a shared variable in its own buffer, one
    element off a line: it cannot align both, so it runs unstreamed, and right."""
    backing = np.zeros(10_001, dtype=np.float32)
    w = ik.shared(backing[1:], name="w", borrow=True)
    x = ik.vector("x", dtype="float32")
    f = ik.function([x], x * 2, updates={w: w + x * 2})
    loops = f.ir("loops")
    assert loops.count("scf.parallel") == 1 and re.search(r"memref.store %\w+, %w\[", loops)  # one loop, w in place
    expect = np.zeros(10_000, dtype=np.float32)
    for k in range(3):
        xv = np.arange(10_000, dtype=np.float32) + k
        np.testing.assert_array_equal(f(xv), xv * 2)
        expect += xv * 2
        assert np.shares_memory(w.get_value(borrow=True), backing)
        np.testing.assert_array_equal(w.get_value(), expect)


def test_config_stream_threshold_is_checked():
    old = ik.config.stream_threshold
    assert old > 0  # the last-level cache's size by default
    for bad in (-1, 1.5, "big", True):
        with pytest.raises(ValueError, match="stream_threshold"):
            ik.config.stream_threshold = bad
    assert ik.config.stream_threshold == old


def test_llvm_text_of_a_cached_function_is_the_code_that_runs(stream_everything, tmp_path):
    """A function loaded from the cache makes its LLVM IR again when asked: with the settings
    it was compiled with, not the ones in force when asked."""
    old = ik.config.cache_dir
    ik.config.cache_dir = str(tmp_path)
    try:
        x = ik.vector("x", dtype="float32")
        ik.config.stream_threshold = 1
        loaded = [ik.function([x], x * 5) for _ in range(2)][1]  # one source line: one key
        assert "llvm-jit" not in loaded.timings  # no LLVM ran: the object came from the cache
        ik.config.stream_threshold = 0
        assert _stream_functions(loaded.ir("llvm"))
    finally:
        ik.config.cache_dir = old
