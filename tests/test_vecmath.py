"""exp, log, log1p and tanh without libmvec (backends/vecmath.py): compiled as a host without
libmvec compiles them, they agree with numpy within 2 ulp over their whole range (float32
against numpy's float64 rounded, float64 against numpy's float64), give libm's answers at
NaN, infinities, zeros, overflow, underflow and subnormals, and the loops that call them
vectorise (no libm call is left). (log1p: within 3 ulp.)"""

from __future__ import annotations

import re

import numpy as np
import pytest

import irkit as ik
from irkit.backends import jit

FUNCTIONS = {"exp": (ik.exp, np.exp), "log": (ik.log, np.log), "log1p": (ik.log1p, np.log1p),
             "tanh": (ik.tanh, np.tanh), "sin": (ik.sin, np.sin), "cos": (ik.cos, np.cos)}


@pytest.fixture
def no_libmvec(monkeypatch, tmp_path):
    """Compile as on a host without libmvec (macOS, Windows, musl)."""
    monkeypatch.setattr(jit, "vector_isa", lambda: None)
    monkeypatch.setattr(ik.config, "cache_dir", str(tmp_path))


def _inputs(name: str, dtype) -> np.ndarray:
    rng = np.random.default_rng(11)
    info = np.finfo(dtype)
    if name == "exp":
        lo, hi = (-104.0, 89.0) if dtype == np.float32 else (-746.0, 710.0)
        grid = np.concatenate([np.linspace(lo, hi, 200_001), rng.uniform(-1, 1, 100_000),
                               rng.uniform(lo, hi, 100_000), np.linspace(-1e-6, 1e-6, 1001)])
    elif name == "log1p":
        exponents = rng.uniform(np.log2(float(info.smallest_subnormal)), np.log2(float(info.max)), 100_000)
        grid = np.concatenate([np.exp2(exponents), -np.exp2(rng.uniform(-60, 0, 50_000)) * 0.999,
                               rng.uniform(-0.5, 1.0, 100_000)])
    elif name == "log":
        exponents = rng.uniform(np.log2(float(info.smallest_subnormal)), np.log2(float(info.max)), 200_000)
        grid = np.concatenate([np.exp2(exponents), rng.uniform(0.5, 2.0, 100_000),
                               1 + np.linspace(-1e-3, 1e-3, 10_001)])
    elif name in ("sin", "cos"):
        # the reduction's hard cases: near multiples of pi/2 (as the type rounds them), both
        # sides of the limit where libm takes over, magnitudes up to the largest
        near = (np.arange(-300_000, 300_000, 7) * (np.pi / 2)).astype(dtype).astype(np.float64)
        top = np.log2(float(info.max))
        grid = np.concatenate([np.linspace(-10, 10, 200_001), rng.uniform(-1e5, 1e5, 100_000),
                               rng.uniform(8.2e5, 8.3e5, 20_000), near, np.nextafter(near, np.inf),
                               np.exp2(rng.uniform(-40, top, 50_000)) * rng.choice([-1, 1], 50_000),
                               np.linspace(-1e-4, 1e-4, 1001)])
    else:
        grid = np.concatenate([np.linspace(-25, 25, 200_001), rng.uniform(-1, 1, 100_000),
                               np.linspace(-1e-4, 1e-4, 1001), rng.uniform(0.6, 0.65, 10_000)])
    return grid.astype(dtype)


def _ulp_error(got: np.ndarray, x: np.ndarray, ref, dtype) -> np.ndarray:
    """|got - exact| in ulp of the result type; exact is numpy's float64 value (for float32
    a far better answer than the result type holds)."""
    want = ref(x.astype(np.float64))
    spacing = np.spacing(np.abs(want).astype(dtype)).astype(np.float64)
    spacing = np.maximum(spacing, float(np.finfo(dtype).smallest_subnormal))
    return np.abs(got.astype(np.float64) - want) / spacing


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_within_2_ulp_of_numpy_over_the_whole_range(no_libmvec, name, dtype):
    bound = 3.0 if name == "log1p" else 2.0  # log1p: log's error, then a quotient's
    op, ref = FUNCTIONS[name]
    v = ik.vector("x", dtype=np.dtype(dtype).name)
    f = ik.function([v], op(v))
    x = _inputs(name, dtype)
    got = f(x)
    assert got.dtype == dtype
    with np.errstate(over="ignore"):
        finite = np.isfinite(ref(x.astype(np.float64)).astype(dtype))
    error = _ulp_error(got[finite], x[finite], ref, dtype)
    worst = int(np.argmax(error))
    assert error.max() <= bound, (f"{name} {np.dtype(dtype).name}: {error.max():.2f} ulp at "
                                f"x = {x[finite][worst]!r} (got {got[finite][worst]!r})")
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(got[~finite], ref(x[~finite]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_special_values_are_libms(no_libmvec, name, dtype):
    op, ref = FUNCTIONS[name]
    v = ik.vector("x", dtype=np.dtype(dtype).name)
    f = ik.function([v], op(v))
    info = np.finfo(dtype)
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, float(info.max), -float(info.max),
                  float(info.smallest_subnormal), float(info.smallest_normal), 1e-30, -1e-30], dtype)
    with np.errstate(all="ignore"):
        want = ref(x)
    got = f(x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    number = ~np.isnan(want)  # (a NaN's sign is not libm's contract)
    np.testing.assert_array_equal(np.signbit(got[number]), np.signbit(want[number]))
    exact = ~np.isfinite(want) | (want == 0) | (np.abs(x) == 1) & (name == "log")
    np.testing.assert_array_equal(got[exact & ~np.isnan(want)], want[exact & ~np.isnan(want)])
    rest = ~exact & ~np.isnan(want)
    np.testing.assert_allclose(got[rest], want[rest], rtol=4 * float(info.eps), atol=0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sin_and_cos_call_their_vector_variant(no_libmvec, dtype):
    """The loop vectorises through irkit's own vector variant of sin and cos, which calls
    libm only for the elements past the reduction's limit: a block with one such element
    among ordinary ones gives libm's answer there and the fast path's elsewhere."""
    if jit.host_vector_isa() is None:
        pytest.skip("no vector ISA known for this host")
    v = ik.vector("x", dtype=dtype)
    f = ik.function([v], ik.sin(v) * 2 + ik.cos(v))
    assert re.search(r"call (fast )?<\d+ x (float|double)> @irkit_vm_sinf?_v\d+\(", f.ir("llvm"))
    x = np.linspace(-20, 20, 4099).astype(dtype)
    x[5], x[700], x[-1] = 1e7, -3e30, np.inf
    with np.errstate(invalid="ignore"):
        want = np.sin(x) * 2 + np.cos(x)
    tol = 4 * float(np.finfo(dtype).eps)
    np.testing.assert_allclose(f(x), want, rtol=tol, atol=tol)


def test_the_loops_vectorise_and_call_no_libm(no_libmvec):
    v = ik.vector("x", dtype="float32")
    f = ik.function([v], ik.exp(-v * v) * ik.tanh(v) + ik.log(v * v + 1) + ik.log(v * v + 0.5))
    llvm_ir = f.ir("llvm")
    assert not re.search(r"call .*@(expf|logf|log1pf|tanhf|exp|log|log1p|tanh)\(", llvm_ir)
    assert re.search(r"fmul (fast |contract |reassoc )*<(4|8|16) x float>", llvm_ir), "no vector arithmetic"
    x = np.linspace(-3, 3, 1001, dtype=np.float32)
    want = np.exp(-x * x) * np.tanh(x) + np.log(x * x + 1) + np.log(x * x + 0.5)
    np.testing.assert_allclose(f(x), want, rtol=2e-6, atol=2e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_tanh_with_libmvec_runs_its_remainder_through_irkits_form(dtype, monkeypatch, tmp_path):
    """With libmvec, a tanh loop's vector body calls libmvec and its scalar remainder
    irkit's form (glibc's scalar tanhf goes through expm1f, 3x slower): every length from 1
    to 40, so that each element is once in a remainder, agrees with numpy within 2 ulp."""
    if jit.vector_isa() is None:
        pytest.skip("this host has no libmvec")
    monkeypatch.setattr(ik.config, "cache_dir", str(tmp_path))
    v = ik.vector("x", dtype=np.dtype(dtype).name)
    f = ik.function([v], ik.tanh(v))
    llvm_ir = f.ir("llvm")
    suffix = "f" if dtype == np.float32 else ""
    assert re.search(rf"call (fast )?<\d+ x (float|double)> @_ZGV\w+_tanh{suffix}\(", llvm_ir)
    assert re.search(rf"call (fastcc )?(float|double) @irkit_vm_tanh{suffix}_scalar\(", llvm_ir)
    assert not re.search(rf"call .*@tanh{suffix}\(", llvm_ir)
    if jit.vector_isa() == ("e", 512):  # the remainder's first part at half the width
        assert re.search(rf"call (fast )?<{8 if dtype == np.float32 else 4} x \w+> @_ZGVdN\d+v_tanh{suffix}\(",
                         llvm_ir)
    x = _inputs("tanh", dtype)[::997]
    for n in range(1, 41):
        chunk = np.resize(x, n) * (1 + n / 40)
        assert _ulp_error(f(chunk), chunk, np.tanh, dtype).max() <= 2, n
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -20.0, 0.625], dtype)
    got = f(special)
    np.testing.assert_array_equal(np.signbit(got[:4]), np.signbit(np.tanh(special[:4])))
    np.testing.assert_array_equal(got[[0, 1, 2, 3, 6]], np.tanh(special[[0, 1, 2, 3, 6]]))
    assert np.isnan(got[4])
