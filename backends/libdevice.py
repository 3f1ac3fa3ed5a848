"""libdevice, NVIDIA's math library in LLVM bitcode (`__nv_expf`, ...), for the PTX backend.

`bitcode(names)` gives, for each function, a small bitcode module holding it and its
callees, all `linkonce_odr` (link them into a kernel module; the linker copies each
helper once). Extracting one costs a parse of the whole library (~35 ms), so blobs are
kept in memory and on disk (`ik.config.cache_dir`, keyed by the library's sha256).

Where libdevice is searched: `$IRKIT_LIBDEVICE` (a file; `none` to do without), the
`nvidia-nvvm` (CUDA 13) and `nvidia-cuda-nvcc-cu12` wheels on `sys.path`,
`$CONDA_PREFIX`, `$CUDA_HOME`/`$CUDA_PATH`, `/usr/local/cuda*`, `/opt/cuda`.
Without it, float32 exp/log/tanh and their family come from `fallback.py`'s forms on
`ex2.approx`/`lg2.approx`, announced once by a warning; other functions cannot compile.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import os
import sys
import threading
import warnings

import llvmlite.binding as llvm

from irkit.errors import CompileError

_lock = threading.Lock()
_blobs: dict[tuple[str, str], bytes] = {}
INSTALL = ("install libdevice with `pip install nvidia-cuda-nvcc-cu12` (or `nvidia-nvvm` for CUDA 13), "
           "or point IRKIT_LIBDEVICE at nvvm/libdevice/libdevice.10.bc of a CUDA toolkit")


def _candidates() -> list[str]:
    out = []
    for base in sys.path:
        out += [os.path.join(base, "nvidia", "cu13", "nvvm", "libdevice"),
                os.path.join(base, "nvidia", "cuda_nvcc", "nvvm", "libdevice")]
    for var in ("CONDA_PREFIX", "CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            out.append(os.path.join(os.environ[var], "nvvm", "libdevice"))
    out += ["/usr/local/cuda/nvvm/libdevice", *sorted(glob.glob("/usr/local/cuda-*/nvvm/libdevice"), reverse=True),
            "/opt/cuda/nvvm/libdevice"]
    return out


@functools.lru_cache(maxsize=None)
def find() -> str | None:
    """The path of libdevice.10.bc, or None."""
    env = os.environ.get("IRKIT_LIBDEVICE")
    if env:
        if env.lower() == "none":
            return None
        if not os.path.isfile(env):
            raise CompileError(f"IRKIT_LIBDEVICE={env!r} is not a file; {INSTALL}")
        return env
    for d in _candidates():
        hits = sorted(glob.glob(os.path.join(d, "libdevice*.bc")))
        if hits:
            return hits[0]
    return None


@functools.lru_cache(maxsize=None)
def _library() -> tuple[bytes, str]:
    path = find()
    with open(path, "rb") as f:
        data = f.read()
    return data, hashlib.sha256(data).hexdigest()[:24]


def identity() -> str:
    """What PTX built with libdevice depends on: the library's sha256 (or the fallback forms)."""
    return _library()[1] if find() is not None else "fallback"


def _prepared(data: bytes) -> llvm.ModuleRef:
    from irkit.backends.ptx import DATA_LAYOUT, TRIPLE
    lib = llvm.parse_bitcode(data)
    lib.triple, lib.data_layout = TRIPLE, DATA_LAYOUT
    for f in lib.functions:
        if not f.is_declaration:
            f.linkage = llvm.Linkage.linkonce_odr
    return lib


def _extract(data: bytes, name: str) -> bytes:
    from irkit.backends.ptx import DATA_LAYOUT, TRIPLE
    lib = _prepared(data)
    try:
        lib.get_function(name).linkage = llvm.Linkage.external
    except NameError:
        raise CompileError(f"ptx: libdevice has no function {name}") from None
    dst = llvm.parse_assembly("")
    dst.triple, dst.data_layout = TRIPLE, DATA_LAYOUT
    dst.link_in(lib)
    dst.get_function(name).linkage = llvm.Linkage.linkonce_odr
    return dst.as_bitcode()


def _disk_path(digest: str, name: str) -> str | None:
    from irkit.config import config
    if config.cache_dir is None:
        return None
    return os.path.join(config.cache_dir, "libdevice", digest, name + ".bc")


def bitcode(names: list[str]) -> list[bytes]:
    """One bitcode blob per libdevice function in `names` (or its fallback definition)."""
    if find() is None:
        from irkit.backends import fallback
        return [fallback.bitcode(names)]
    data, digest = _library()
    out = []
    with _lock:
        for name in names:
            key = (digest, name)
            blob = _blobs.get(key)
            path = _disk_path(digest, name)
            if blob is None and path and os.path.exists(path):
                with open(path, "rb") as f:
                    blob = f.read()
            if blob is None:
                blob = _extract(data, name)
                if path:
                    _store(path, blob)
            _blobs[key] = blob
            out.append(blob)
    return out


def _store(path: str, blob: bytes) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written is only slower


@functools.lru_cache(maxsize=None)
def warn_fallback() -> None:
    warnings.warn("irkit: libdevice not found; float32 exp/log/tanh on the GPU use ex2.approx/lg2.approx "
                  f"forms (a few ulp), other transcendentals cannot compile; {INSTALL}", stacklevel=3)
