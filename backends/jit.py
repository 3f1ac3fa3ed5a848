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

from irkit.config import config

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


BLAS_FUNCTIONS = ("sgemm", "dgemm", "sgemv", "dgemv")


def _register_blas() -> None:
    """scipy's BLAS (Fortran ABI) as irkit_sgemm etc. From the OpenBLAS that scipy's wheel
    bundles when it is there (35 ms), else through scipy.linalg.cython_blas, the same
    functions behind Cython wrappers (importing scipy.linalg costs about 200 ms)."""
    global _blas_threads_setter
    bundled = _scipy_bundled_blas()
    if bundled is not None:
        for fn in BLAS_FUNCTIONS:
            llvm.add_symbol("irkit_" + fn, ctypes.cast(getattr(bundled, f"scipy_{fn}_"), ctypes.c_void_p).value)
        _blas_threads_setter = getattr(bundled, "scipy_openblas_set_num_threads", None)
        set_blas_threads(config.num_threads)
        return
    import scipy.linalg.cython_blas as blas
    for fn in BLAS_FUNCTIONS:
        llvm.add_symbol("irkit_" + fn, _capsule_pointer(blas.__pyx_capi__[fn]))


_blas_threads_setter = None


def set_blas_threads(n: int) -> None:
    """Let the BLAS irkit calls use `n` threads, as irkit's own kernels do (config.num_threads
    sets both; OpenBLAS otherwise takes every core, or OPENBLAS_NUM_THREADS). It is scipy's
    OpenBLAS, not numpy's: numpy's own products are not affected."""
    if _blas_threads_setter is not None:
        _blas_threads_setter(ctypes.c_int(n))


def _scipy_bundled_blas() -> ctypes.CDLL | None:
    import glob
    import importlib.util
    import os
    spec = importlib.util.find_spec("scipy")
    if spec is None or spec.origin is None:
        return None
    libs = glob.glob(os.path.join(os.path.dirname(os.path.dirname(spec.origin)), "scipy.libs",
                                  "libscipy_openblas*.so*"))
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
            if all(hasattr(lib, f"scipy_{fn}_") for fn in BLAS_FUNCTIONS):
                return lib
        except OSError:
            continue
    return None


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


def optimized_module(text: str, level: int = 3) -> llvm.ModuleRef:
    """The module as compile_ir optimises it (for reading: f.ir("llvm"))."""
    initialize()
    tm = host_target_machine()
    with _lock:
        mod = llvm.parse_assembly(text)
        mod.triple = tm.triple
        mod.data_layout = str(tm.target_data)
        optimize(mod, level)
    return mod


class Compiled:
    """JIT-compiled machine code; keep it alive while any of its functions is in use."""

    def __init__(self, engine: llvm.ExecutionEngine, module: llvm.ModuleRef | None = None) -> None:
        self.engine = engine
        self.module = module  # the IR it came from; None when loaded from the cache as an object

    def address(self, name: str) -> int:
        return self.engine.get_function_address(name)


def compile_ir(text: str, level: int = 3) -> Compiled:
    """Parse LLVM IR text, optimise it for the host and load it into an MCJIT engine. The
    machine code is kept in the on-disk cache (`ik.config.cache_dir`): a later compile of the
    same text for the same CPU, in any process, loads that object without parsing the IR."""
    initialize()
    key = object_key(text, level)
    cached = load_object(key) if key is not None else None
    if cached is not None:
        return cached
    tm = host_target_machine()
    with _lock:
        mod = llvm.parse_assembly(text)
        mod.triple = tm.triple
        mod.data_layout = str(tm.target_data)
        mod.verify()
        if level > 0:
            optimize(mod, level)
        engine = llvm.create_mcjit_compiler(mod, new_target_machine())
        if key is not None:
            engine.set_object_cache(lambda _m, data: cache_store(key, data), lambda _m: None)
        engine.finalize_object()
    return Compiled(engine, mod)


def load_object(key: str) -> Compiled | None:
    """Load cached machine code without its IR: the runtime's symbols resolve as for a
    fresh compile. None when the object is not there or damaged."""
    data = cache_load(key)
    if data is None:
        return None
    initialize()
    with _lock:
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), new_target_machine())
        engine.add_object_file(llvm.ObjectFileRef.from_data(data))
        engine.finalize_object()
    return Compiled(engine)


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


def config_cache_dir() -> str | None:
    from irkit.config import config
    return config.cache_dir


def object_key(text: str, level: int = 3) -> str | None:
    """The cache key of the machine code for this LLVM IR text (None: the cache is off)."""
    import hashlib
    if config_cache_dir() is None:
        return None
    return hashlib.sha256(b"%s\0%d\0%s" % (_host_signature(), level, text.encode())).hexdigest()


def _cache_path(key: str, suffix: str) -> str:
    import os
    return os.path.join(config_cache_dir(), key[:2], key + suffix)


def cache_has(key: str | None, suffix: str = ".o") -> bool:
    import os
    return key is not None and config_cache_dir() is not None and os.path.exists(_cache_path(key, suffix))


def cache_load(key: str | None, suffix: str = ".o") -> bytes | None:
    """The bytes stored under key (machine code by default), or None."""
    if key is None or config_cache_dir() is None:
        return None
    import hashlib
    try:
        with open(_cache_path(key, suffix), "rb") as f:
            data = f.read()
    except OSError:
        return None
    # a damaged file is a miss, never an object handed to the loader
    head, digest, obj = data[:len(_MAGIC)], data[len(_MAGIC):len(_MAGIC) + 32], data[len(_MAGIC) + 32:]
    if head != _MAGIC or not obj or hashlib.sha256(obj).digest() != digest:
        return None
    return obj


_MAGIC = b"IRKITOBJ1"


def cache_store(key: str, data: bytes, suffix: str = ".o") -> None:
    """Store bytes under key, atomically: a reader sees all of them or nothing."""
    import hashlib
    import os
    import tempfile
    if config_cache_dir() is None:
        return
    path = _cache_path(key, suffix)
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
