"""`ik.config`: the few global settings, each checked when set.

Settings are read when a graph is built or compiled, never deep inside a
pass: a compiled function does not change when config changes afterwards.
"""

from __future__ import annotations

import os
import sys
from typing import Any

_FLOATS = ("float32", "float64")


def _default_cache_dir() -> str | None:
    if os.environ.get("IRKIT_CACHE", "1") in ("0", "", "off", "false"):
        return None
    if os.environ.get("IRKIT_CACHE_DIR"):
        return os.environ["IRKIT_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "irkit")


def _last_level_cache_bytes() -> int:
    """The largest CPU cache's size from sysfs (Linux); 32 MiB where it is not known."""
    best = 0
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        entries = os.listdir(base)
    except OSError:
        entries = []
    for entry in entries:
        try:
            with open(os.path.join(base, entry, "size")) as f:
                text = f.read().strip()
        except OSError:
            continue
        digits, unit = text.rstrip("KMG"), text[len(text.rstrip("KMG")):]
        if digits.isdigit():
            best = max(best, int(digits) << {"": 0, "K": 10, "M": 20, "G": 30}.get(unit, 0))
    return best or 32 << 20


class Config:
    """Global settings. `floatX` is the default float dtype of new variables and constants."""

    __slots__ = ("_floatX", "_num_threads", "_debug", "_parallel_threshold", "_verify", "_cache_dir", "_threads_explicit",
                 "_stream_threshold")

    def __init__(self) -> None:
        self._floatX = os.environ.get("IRKIT_FLOATX", "float64")
        if self._floatX not in _FLOATS:
            raise ValueError(f"IRKIT_FLOATX must be one of {_FLOATS}, not {self._floatX!r}")
        self._num_threads = int(os.environ.get("IRKIT_NUM_THREADS", str(min(os.cpu_count() or 1, 8))))
        self._threads_explicit = "IRKIT_NUM_THREADS" in os.environ
        self._debug = os.environ.get("IRKIT_DEBUG", "") not in ("", "0")
        self._verify = os.environ.get("IRKIT_VERIFY", "") not in ("", "0")
        # Work a loop must do before it is split across threads, in elements touched, a
        # transcendental counting as 9 (backends/llvm.py TRANSCENDENTAL_WEIGHT): starting a
        # loop on the runtime's pool costs a few microseconds, and on 2 cores x + 1 and a
        # copy gain from 2 threads from 100,000-150,000 elements on, the float32
        # exp/sin/tanh chain from about 5,000.
        self._parallel_threshold = int(os.environ.get("IRKIT_PARALLEL_THRESHOLD", str(1 << 17)))
        self._cache_dir = _default_cache_dir()
        stream = os.environ.get("IRKIT_STREAM_BYTES")
        if stream is not None and not stream.strip().isdigit():
            raise ValueError(f"IRKIT_STREAM_BYTES must be a number of bytes (0: never stream), not {stream!r}")
        self._stream_threshold = None if stream is None else int(stream)

    @property
    def floatX(self) -> str:
        return self._floatX

    @floatX.setter
    def floatX(self, value: Any) -> None:
        value = str(value)
        if value not in _FLOATS:
            raise ValueError(f"config.floatX must be one of {_FLOATS}, not {value!r}")
        self._floatX = value

    @property
    def num_threads(self) -> int:
        return self._num_threads

    @num_threads.setter
    def num_threads(self, value: int) -> None:
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"config.num_threads must be a positive int, not {value!r}")
        self._num_threads = value
        self._threads_explicit = True
        jit = sys.modules.get("irkit.backends.jit")  # BLAS follows, once irkit has loaded it
        if jit is not None:
            jit.set_blas_threads(value)

    @property
    def num_threads_explicit(self) -> bool:
        """Whether num_threads was chosen (set, or IRKIT_NUM_THREADS): only then does irkit
        set the BLAS's thread count, which is numpy's too when irkit calls numpy's OpenBLAS."""
        return self._threads_explicit

    @property
    def debug(self) -> bool:
        """When true, compiling prints each stage's timing and the kernels it made."""
        return self._debug

    @debug.setter
    def debug(self, value: bool) -> None:
        self._debug = bool(value)

    @property
    def verify(self) -> bool:
        """When true, ik.function verifies the IR after every pass (slower; for tests)."""
        return self._verify

    @verify.setter
    def verify(self, value: bool) -> None:
        self._verify = bool(value)

    @property
    def parallel_threshold(self) -> int:
        return self._parallel_threshold

    @parallel_threshold.setter
    def parallel_threshold(self, value: int) -> None:
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"config.parallel_threshold must be a positive int, not {value!r}")
        self._parallel_threshold = value

    @property
    def stream_threshold(self) -> int:
        """Bytes an elementwise loop must write before its stores bypass the cache
        (non-temporal stores; backends/streaming.py). Default: the last-level cache's size
        (IRKIT_STREAM_BYTES); 0 never streams."""
        if self._stream_threshold is None:
            self._stream_threshold = _last_level_cache_bytes()
        return self._stream_threshold

    @stream_threshold.setter
    def stream_threshold(self, value: int) -> None:
        self._stream_threshold = self._checked_stream_threshold(value)

    @staticmethod
    def _checked_stream_threshold(value: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"config.stream_threshold must be an int >= 0 (bytes; 0: never), not {value!r}")
        return value

    @property
    def cache_dir(self) -> str | None:
        """Where compiled machine code is kept between processes (IRKIT_CACHE_DIR; default
        $XDG_CACHE_HOME/irkit or ~/.cache/irkit); None (IRKIT_CACHE=0) turns the cache off."""
        return self._cache_dir

    @cache_dir.setter
    def cache_dir(self, value: str | None) -> None:
        self._cache_dir = None if value is None else os.fspath(value)

    def __repr__(self) -> str:
        return (f"Config(floatX={self.floatX!r}, num_threads={self.num_threads}, "
                f"debug={self.debug}, verify={self.verify}, parallel_threshold={self.parallel_threshold}, "
                f"stream_threshold={self.stream_threshold})")


config = Config()
