"""The host CPU as a target: llvmlite's MCJIT, tuned for this machine.

- the target machine uses the host's CPU name and features (AVX2, FMA, ...);
- the optimisation pipeline is LLVM's O3 with loop and SLP vectorisation on
  (the C++ default has SLP off);
- libmvec is loaded so that vectorised transcendentals resolve, and its ISA
  picked to match the host ("d" = AVX2, 256 bits);
- scipy's BLAS is reachable by name (`irkit_sgemm`, `irkit_dgemm`), never by a
  baked-in address, so compiled objects stay cacheable across processes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading

import llvmlite.binding as llvm

_lock = threading.Lock()


@functools.lru_cache(maxsize=None)
def initialize() -> None:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    llvm.initialize_native_asmparser()
    _register_blas()


def new_target_machine() -> llvm.TargetMachine:
    """A target machine for the host. An MCJIT engine takes ownership of (and frees) the
    one it is given, so each engine gets its own."""
    initialize()
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                        features=llvm.get_host_cpu_features().flatten(),
                                        opt=3, reloc="default", codemodel="jitdefault")


@functools.lru_cache(maxsize=None)
def host_target_machine() -> llvm.TargetMachine:
    """The host target machine for optimising and printing (never given to an engine)."""
    return new_target_machine()


@functools.lru_cache(maxsize=None)
def vector_isa() -> tuple[str, int] | None:
    """The glibc vector ABI to target, or None when libmvec is not available."""
    initialize()
    name = ctypes.util.find_library("mvec") or "libmvec.so.1"
    try:
        llvm.load_library_permanently(name)
    except Exception:
        return None
    features = llvm.get_host_cpu_features()
    if features.get("avx512f"):
        return ("e", 512)
    if features.get("avx2"):
        return ("d", 256)
    if features.get("avx"):
        return ("c", 256)
    return ("b", 128)


def _capsule_pointer(capsule) -> int:
    api = ctypes.pythonapi
    api.PyCapsule_GetName.restype = ctypes.c_char_p
    api.PyCapsule_GetName.argtypes = [ctypes.py_object]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return api.PyCapsule_GetPointer(capsule, api.PyCapsule_GetName(capsule))


def _register_blas() -> None:
    import scipy.linalg.cython_blas as blas
    for fn in ("sgemm", "dgemm", "sgemv", "dgemv"):
        llvm.add_symbol("irkit_" + fn, _capsule_pointer(blas.__pyx_capi__[fn]))


def register_symbol(name: str, address: int) -> None:
    initialize()
    llvm.add_symbol(name, address)


def optimize(mod: llvm.ModuleRef, level: int = 3) -> None:
    tm = host_target_machine()
    pto = llvm.create_pipeline_tuning_options(speed_level=level)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)


class Compiled:
    """A JIT-compiled module; keep it alive while any of its functions is in use."""

    def __init__(self, engine: llvm.ExecutionEngine, module: llvm.ModuleRef) -> None:
        self.engine = engine
        self.module = module

    def address(self, name: str) -> int:
        return self.engine.get_function_address(name)


def compile_ir(text: str, level: int = 3) -> Compiled:
    """Parse LLVM IR text, optimise it for the host and load it into an MCJIT engine. The
    machine code is kept in the on-disk cache (`ik.config.cache_dir`): a later compile of the
    same text for the same CPU, in any process, skips optimisation and code generation."""
    initialize()
    tm = host_target_machine()
    key = _cache_key(text, level)
    cached = _cache_load(key)
    with _lock:
        mod = llvm.parse_assembly(text)
        mod.triple = tm.triple
        mod.data_layout = str(tm.target_data)
        mod.verify()
        if level > 0 and cached is None:
            optimize(mod, level)
        engine = llvm.create_mcjit_compiler(mod, new_target_machine())
        if key is not None:
            engine.set_object_cache(lambda _m, data: _cache_store(key, data) if cached is None else None,
                                    lambda _m: cached)
        engine.finalize_object()
    return Compiled(engine, mod)


# -- the on-disk cache of machine code -------------------------------------------------------
# One file per key (sha256 of the IR text, the optimisation level, the CPU's name and features,
# and the versions of irkit and llvmlite), written to a temporary name and renamed into place:
# processes share the cache without a lock, and a reader sees a whole object or none.

@functools.lru_cache(maxsize=None)
def _host_signature() -> bytes:
    """What the machine code depends on besides the IR (asked once per process)."""
    import llvmlite

    from irkit import __version__
    parts = (__version__, llvmlite.__version__, llvm.llvm_version_info, llvm.get_host_cpu_name(),
             llvm.get_host_cpu_features().flatten())
    return "\0".join(map(str, parts)).encode()


def _cache_key(text: str, level: int) -> str | None:
    import hashlib

    from irkit.config import config
    if config.cache_dir is None:
        return None
    return hashlib.sha256(b"%s\0%d\0%s" % (_host_signature(), level, text.encode())).hexdigest()


def _cache_path(key: str) -> str:
    import os

    from irkit.config import config
    return os.path.join(config.cache_dir, key[:2], key + ".o")


def _cache_load(key: str | None) -> bytes | None:
    if key is None:
        return None
    import hashlib
    try:
        with open(_cache_path(key), "rb") as f:
            data = f.read()
    except OSError:
        return None
    # a damaged file is a miss, never an object handed to the loader
    head, digest, obj = data[:len(_MAGIC)], data[len(_MAGIC):len(_MAGIC) + 32], data[len(_MAGIC) + 32:]
    if head != _MAGIC or not obj or hashlib.sha256(obj).digest() != digest:
        return None
    return obj


_MAGIC = b"IRKITOBJ1"


def _cache_store(key: str, data: bytes) -> None:
    import hashlib
    import os
    import tempfile
    path = _cache_path(key)
    data = _MAGIC + hashlib.sha256(data).digest() + bytes(data)
    tmp = None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:  # a read-only or full cache costs a recompile, nothing else
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
