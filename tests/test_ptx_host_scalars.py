"""0-d buffers the GPU host program keeps (backends/ptx_scalars.py): scalars the loops level
passes through `memref<i64>`/`memref<f32>` cells stay on the host and reach kernels by value,
so no one-thread kernel `<f>_s<n>` runs just to store or reload them."""

from __future__ import annotations

import os
import re

import numpy as np

import irkit as ik
from irkit.backends import ptx

from test_ptx import _run_with, assemble, fake_libcuda, need_ptxas  # noqa: F401 (fixture)
from test_ptx_reductions import kernel


def softmax_regression_step(target: str = "cuda") -> ik.Function:
    """One SGD step of softmax regression on 784 features and 10 classes."""
    W = ik.shared(np.zeros((784, 10), np.float32), "W")
    b = ik.shared(np.zeros(10, np.float32), "b")
    x = ik.matrix("x", "float32")
    y = ik.vector("y", "int64")
    p = ik.softmax(ik.dot(x, W) + b)
    loss = -ik.mean(ik.log(p[ik.arange(x.shape[0]), y]))
    gW, gb = ik.grad(loss, [W, b])
    return ik.function([x, y], loss, updates=[(W, W - 0.1 * gW), (b, b - 0.1 * gb)], target=target)


def serial_kernels(f) -> list[str]:
    return [k.name for k in ptx.translate(f._gpu_loops()).kernels if k.kind == "serial"]


def _params(kernel_text: str) -> list[str]:
    head = kernel_text[:kernel_text.index(")")]
    return re.findall(r"\.param\s+(\.[\w.]+(?:\s+\.ptr\s+\.global)?)", head)


def test_softmax_regression_step_has_few_one_thread_kernels():
    f = softmax_regression_step()
    names = serial_kernels(f)
    # 12 before the host kept its 0-d buffers: 11 of them only stored or reloaded a scalar
    assert len(names) <= 2, names
    text = f.ir("ptx")
    for name in names:
        k = kernel(text, name)
        # real buffer work: a device buffer besides the scratch buffer (the last parameter)
        pointers = [p for p in _params(k) if ".ptr" in p]
        assert len(pointers) >= 2, (name, _params(k))


def test_kernels_read_host_scalars_as_parameters():
    x = ik.vector("x", "float32")
    f = ik.function([x], x / ik.cast(x.shape[0], "float32"), target="cuda")
    loops = str(f._gpu_loops())
    assert re.search(r"memref\.alloc\(\)[^\n]*: memref<i64>", loops)  # the size passes through a 0-d buffer
    assert not serial_kernels(f)
    k = kernel(f.ir("ptx"), "main_k1")
    assert "div.rn.f32" in k and ".param .f32" in k  # the size, converted on the host, by value


@need_ptxas
def test_softmax_regression_step_assembles(tmp_path):
    assemble(softmax_regression_step().ir("ptx"), tmp_path)


def test_host_scalars_reach_launches_without_device_round_trips(fake_libcuda, tmp_path):
    out, log = _run_with(fake_libcuda, """
        import numpy as np, irkit as ik
        x = ik.vector("x", "float32")
        f = ik.function([x], ik.arange(x.shape[0]) * 3, target="cuda")
        print(f(np.ones(7, np.float32)).shape)
    """, tmp_path)
    assert out.strip() == "(7,)"
    launches = [line.split() for line in log if line.startswith("launch")]
    assert not any(re.fullmatch(r"main_s\d+", ln[1]) for ln in launches), launches
    # the arange's start, stop and step were 0-d buffers; the host knows the trip count (7)
    assert any(ln[-3:] == ["0", "7", "1"] for ln in launches), launches


def test_softmax_regression_step_runs_against_the_fake_driver(fake_libcuda, tmp_path):
    out, log = _run_with(fake_libcuda, """
        import numpy as np, sys
        sys.path.insert(0, TESTS)
        from test_ptx_host_scalars import softmax_regression_step
        f = softmax_regression_step()
        for _ in range(2):
            loss = f(np.ones((5, 784), np.float32), np.arange(5) % 10)
        print(np.asarray(loss).shape)
    """.replace("TESTS", repr(os.path.dirname(__file__))), tmp_path)
    assert out.strip() == "()"
    serial = [line.split()[1] for line in log if line.startswith("launch main_s")]
    assert len(serial) <= 2 * 2, serial  # two calls


def test_cpu_keeps_its_0d_buffers_semantics():
    f = softmax_regression_step(target="cpu")
    v = np.random.default_rng(0).standard_normal((6, 784)).astype(np.float32)
    loss = f(v, np.arange(6) % 10)
    assert np.isclose(float(loss), np.log(10.0), rtol=1e-5)  # W = 0, b = 0: uniform predictions
