"""Shared helpers for the numpy-oracle tests: numpy is the reference for every value,
dtype and shape irkit computes."""

from __future__ import annotations

import numpy as np
import pytest

ALL_DTYPES = ["float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"]
FLOAT_DTYPES = ["float32", "float64"]
INT_DTYPES = ["int8", "int16", "int32", "int64", "uint8"]

# (rtol, atol) by result dtype; integers and bools compare exactly.
TOLERANCES = {
    np.dtype("float32"): (2e-5, 1e-6),
    np.dtype("float64"): (1e-12, 1e-14),
}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def irkit_dtype(dt) -> np.dtype:
    """numpy's result dtype as irkit states it: float16 widened to float32."""
    dt = np.dtype(dt)
    return np.dtype("float32") if dt == np.float16 else dt


def assert_matches(got, want, rtol: float | None = None, atol: float | None = None,
                   dtype=None, what: str = "") -> None:
    """`got` (irkit) equals `want` (numpy): same type (ndarray), dtype, shape and values.

    Floats compare with a tolerance chosen by dtype (NaN equal to NaN, infinities exactly,
    by sign); integers and bools compare exactly. `dtype` overrides the expected dtype
    (otherwise want's dtype, with float16 widened to float32)."""
    label = f"{what}: " if what else ""
    want = np.asarray(want)
    expected_dtype = np.dtype(dtype) if dtype is not None else irkit_dtype(want.dtype)
    assert isinstance(got, np.ndarray), f"{label}expected a numpy array, got {type(got).__name__}"
    assert got.dtype == expected_dtype, f"{label}dtype {got.dtype}, expected {expected_dtype}"
    assert got.shape == want.shape, f"{label}shape {got.shape}, expected {want.shape}"
    if expected_dtype.kind == "f":
        r0, a0 = TOLERANCES[expected_dtype]
        rtol = r0 if rtol is None else rtol
        atol = a0 if atol is None else atol
        w = want.astype(np.float64)
        g = got.astype(np.float64)
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=f"{label}NaN positions differ")
        inf = np.isinf(w) | np.isinf(g)
        np.testing.assert_array_equal(g[inf], w[inf], err_msg=f"{label}infinities differ")
        ok = ~np.isnan(w) & ~inf
        np.testing.assert_allclose(g[ok], w[ok], rtol=rtol, atol=atol, err_msg=f"{label}values differ")
    else:
        np.testing.assert_array_equal(got, want.astype(expected_dtype), err_msg=f"{label}values differ")


def assert_exact(got, want, what: str = "") -> None:
    """Bit-for-bit equality, including the sign of zeros and NaN positions."""
    label = f"{what}: " if what else ""
    want = np.asarray(want)
    assert isinstance(got, np.ndarray), f"{label}expected a numpy array, got {type(got).__name__}"
    assert got.dtype == want.dtype, f"{label}dtype {got.dtype}, expected {want.dtype}"
    assert got.shape == want.shape, f"{label}shape {got.shape}, expected {want.shape}"
    np.testing.assert_array_equal(got, want, err_msg=f"{label}values differ")
    if want.dtype.kind == "f":
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want), err_msg=f"{label}signs differ")


def sample(rng: np.random.Generator, dtype, shape, low: float = -3.0, high: float = 3.0) -> np.ndarray:
    """Test data of `dtype`: floats uniform in [low, high]; int8/uint8 over their whole range
    (overflow wraps as in numpy); wider ints in [-100, 100]; bools at random."""
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.uniform(low, high, size=shape).astype(dt)
    if dt.kind == "b":
        return rng.random(size=shape) < 0.5
    if dt.itemsize == 1:
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dt)
    return rng.integers(-100, 100, size=shape, endpoint=True).astype(dt)


class Failures:
    """Collects several comparisons so that one compiled function can check many things and
    the report names every one that disagrees."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self, label: str, fn, *args, **kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except AssertionError as e:
            self.items.append(f"--- {label}\n{e}")

    def raise_if_any(self) -> None:
        if self.items:
            raise AssertionError(f"{len(self.items)} mismatch(es):\n" + "\n".join(self.items))


@pytest.fixture
def failures() -> Failures:
    return Failures()


def run_isolated(code: str, timeout: float = 120.0):
    """Run `code` in a fresh Python process: a check that irkit raises instead of crashing must
    not take the whole test session down when it does crash. Returns the CompletedProcess."""
    import os
    import subprocess
    import sys
    import textwrap
    env = dict(os.environ)
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = here + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=here)


def assert_isolated_ok(code: str) -> str:
    """`code` ran to its end in a subprocess (no crash, no uncaught exception); its stdout."""
    proc = run_isolated(code)
    assert proc.returncode == 0, (f"the subprocess ended with status {proc.returncode} "
                                  f"(negative: killed by signal {-proc.returncode})\n"
                                  f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}")
    return proc.stdout


class quiet:
    """numpy's own warnings while computing a reference (mean of nothing, 1/0, overflow in
    a cast) are expected: silence them, and nothing else."""

    def __enter__(self):
        import warnings
        self._err = np.errstate(all="ignore")
        self._err.__enter__()
        self._warn = warnings.catch_warnings()
        self._warn.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)
        return self

    def __exit__(self, *exc):
        self._warn.__exit__(*exc)
        return self._err.__exit__(*exc)
