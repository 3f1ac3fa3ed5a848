"""The host CPU as a target: llvmlite's MCJIT, tuned for this machine.

- the target machine uses the host's CPU name and features (AVX2, FMA, ...);
- the optimisation pipeline is LLVM's -O2 (jit.LEVEL) with loop and SLP vectorisation on
  (the C++ default has SLP off);
- libmvec is loaded so that vectorised transcendentals resolve, and its ISA
  picked to match the host ("d" = AVX2, 256 bits);
- the BLAS (numpy's bundled OpenBLAS, else scipy's) is reachable by name
  (`irkit_sgemm`, `irkit_dgemm`, ...), never by a baked-in address, so compiled objects
  stay cacheable across processes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import llvmlite.binding as llvm

from irkit.backends import vecmath
from irkit.config import config

_lock = threading.Lock()


@functools.lru_cache(maxsize=None)
def initialize() -> None:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    llvm.initialize_native_asmparser()
    _blas_library()


def new_target_machine(codegen_level: int = 3) -> llvm.TargetMachine:
    """A target machine for the host (its code generator at `codegen_level`). An MCJIT
    engine takes ownership of (and frees) the one it is given, so each engine gets its own."""
    initialize()
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                        features=llvm.get_host_cpu_features().flatten(),
                                        opt=codegen_level, reloc="default", codemodel="jitdefault")


@functools.lru_cache(maxsize=None)
def host_target_machine() -> llvm.TargetMachine:
    """The host target machine for optimising and printing (never given to an engine)."""
    return new_target_machine()


@functools.lru_cache(maxsize=None)
def host_vector_isa() -> tuple[str, int] | None:
    """The host's widest vector registers as the vector function ABI names them: its ISA
    letter and width in bits (x86: b SSE, c AVX, d AVX2, e AVX-512; AArch64: n Advanced
    SIMD), or None on other hosts."""
    initialize()
    triple = llvm.get_default_triple()
    if triple.startswith(("aarch64", "arm64")):
        return ("n", 128)
    if not triple.startswith("x86_64"):
        return None
    features = llvm.get_host_cpu_features()
    if features.get("avx512f"):
        return ("e", 512)
    if features.get("avx2"):
        return ("d", 256)
    if features.get("avx"):
        return ("c", 256)
    return ("b", 128)


@functools.lru_cache(maxsize=None)
def vector_isa() -> tuple[str, int] | None:
    """The glibc vector ABI to target, or None when libmvec is not available (or
    IRKIT_LIBMVEC=0: exp, log, log1p, tanh, sin and cos then use backends/vecmath.py's)."""
    import os
    if os.environ.get("IRKIT_LIBMVEC", "1") in ("0", "off", "false"):
        return None
    initialize()
    name = ctypes.util.find_library("mvec") or "libmvec.so.1"
    try:
        llvm.load_library_permanently(name)
    except Exception:
        return None
    return host_vector_isa()


def _capsule_pointer(capsule) -> int:
    api = ctypes.pythonapi
    api.PyCapsule_GetName.restype = ctypes.c_char_p
    api.PyCapsule_GetName.argtypes = [ctypes.py_object]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return api.PyCapsule_GetPointer(capsule, api.PyCapsule_GetName(capsule))


BLAS_FUNCTIONS = ("sgemm", "dgemm", "sgemv", "dgemv")


@dataclass(frozen=True)
class BlasLibrary:
    """The BLAS that compiled code calls as irkit_sgemm etc. (Fortran ABI).

    `int_bits` is the width of its integer arguments: 64 for numpy's ILP64 OpenBLAS, 32 for
    scipy's. Compiled code depends on it, so it is part of the compile cache's key."""
    name: str
    int_bits: int
    set_threads: Callable[[int], None] | None = None
    get_threads: Callable[[], int] | None = None


def _register_blas() -> BlasLibrary:
    """Pick the BLAS and make its functions reachable by name. Each is a build of the
    scipy-openblas project (scipy's BLAS), tried in order:

    1. the OpenBLAS that numpy's wheel bundles (ILP64, `scipy_sgemm_64_`): numpy's own
       products use it, so the process keeps one BLAS thread pool. Two pools, each spinning
       after its work, slowed irkit's products at 2 threads right after numpy's had run (the
       784-500-10 MLP at batch 10: about 150 against 100-120 ms per 600 examples, here).
       It is also the newer build (0.3.31 against scipy's 0.3.30; a 10x784 @ 784x500
       sgemm alone took 400 against 630 us pinned to one core, though the whole step at 1
       thread showed no difference beyond this machine's noise);
    2. the OpenBLAS that scipy's wheel bundles (LP64);
    3. scipy.linalg.cython_blas, the same functions behind Cython wrappers (LP64; importing
       scipy.linalg costs about 200 ms).
    IRKIT_BLAS=numpy or IRKIT_BLAS=scipy picks one of the bundled builds."""
    import os
    wanted = os.environ.get("IRKIT_BLAS", "")
    if wanted not in ("", "numpy", "scipy"):
        raise ValueError(f"IRKIT_BLAS must be 'numpy' or 'scipy', not {wanted!r}")
    for package, lib, suffix, bits, set_threads in _bundled_openblas():
        if wanted and package != wanted:
            continue
        if all(hasattr(lib, f"scipy_{fn}_{suffix}") for fn in BLAS_FUNCTIONS):
            for fn in BLAS_FUNCTIONS:
                llvm.add_symbol("irkit_" + fn, ctypes.cast(getattr(lib, f"scipy_{fn}_{suffix}"), ctypes.c_void_p).value)
            setter = getattr(lib, set_threads, None)
            getter = getattr(lib, set_threads.replace("set_", "get_"), None)
            return BlasLibrary(lib._name, bits, (lambda n, f=setter: f(ctypes.c_int(n))) if setter else None,
                               getter)
    if wanted:
        raise ValueError(f"IRKIT_BLAS={wanted}: {wanted}'s wheel bundles no OpenBLAS here "
                         "(unset IRKIT_BLAS to use the BLAS that scipy.linalg offers)")
    import scipy.linalg.cython_blas as blas
    for fn in BLAS_FUNCTIONS:
        llvm.add_symbol("irkit_" + fn, _capsule_pointer(blas.__pyx_capi__[fn]))
    return BlasLibrary("scipy.linalg.cython_blas", 32)


def blas() -> BlasLibrary:
    """The BLAS compiled code calls (loaded with the JIT)."""
    initialize()
    return _blas_library()


@functools.lru_cache(maxsize=None)
def _blas_library() -> BlasLibrary:
    library = _register_blas()
    if config.num_threads_explicit and library.set_threads is not None:
        library.set_threads(config.num_threads)
    return library


def set_blas_threads(n: int) -> None:
    """Let the BLAS irkit calls use `n` threads, as irkit's own kernels do. `config.num_threads`
    sets both when it is set (or IRKIT_NUM_THREADS is); otherwise the BLAS keeps its own
    count (OPENBLAS_NUM_THREADS, or every core). With numpy's OpenBLAS this is numpy's
    count too: one library, one thread pool."""
    if _blas_library.cache_info().currsize == 0:
        return  # not loaded yet: it takes config.num_threads when it loads
    library = _blas_library()
    if library.set_threads is not None:
        library.set_threads(n)


def _bundled_openblas() -> Iterator[tuple[str, ctypes.CDLL, str, int, str]]:
    """(package, library, symbol suffix, integer bits, thread-count setter) of the OpenBLAS builds
    that numpy's and scipy's wheels bundle, numpy's first; each loads only when reached."""
    import glob
    import importlib.util
    import os
    places = (("numpy", "libscipy_openblas64_*", "64_", 64, "scipy_openblas_set_num_threads64_"),
              ("scipy", "libscipy_openblas-*", "", 32, "scipy_openblas_set_num_threads"))
    for package, pattern, suffix, bits, setter in places:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            continue
        here = os.path.dirname(spec.origin)
        # Linux and Windows wheels: <site-packages>/<package>.libs; macOS: <package>/.dylibs
        for folder in (os.path.join(os.path.dirname(here), package + ".libs"), os.path.join(here, ".dylibs")):
            for path in sorted(glob.glob(os.path.join(folder, pattern))):
                try:
                    yield package, ctypes.CDLL(path), suffix, bits, setter
                except OSError:
                    continue


def register_symbol(name: str, address: int) -> None:
    initialize()
    llvm.add_symbol(name, address)


# LLVM's optimisation level for compiled code: -O2 runs every benchmark workload as fast as
# -O3 (the chains, softmax-xent, the MLP and RNN steps: within 1-5%, -O2 ahead as often) and
# compiles in 10-20% less time (-O3's extra unrolling and loop versioning; the runtime's
# small products: 80 ms instead of 210)
LEVEL = 2


def _tuning(level: int) -> llvm.PipelineTuningOptions:
    pto = llvm.create_pipeline_tuning_options(speed_level=level)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    return pto


def optimize(mod: llvm.ModuleRef, level: int = LEVEL, tm: llvm.TargetMachine | None = None) -> None:
    pb = llvm.create_pass_builder(tm or host_target_machine(), _tuning(level))
    pb.getModulePassManager().run(mod, pb)


def optimized_module(text: str, level: int = LEVEL) -> llvm.ModuleRef:
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

    def __init__(self, engine: llvm.ExecutionEngine) -> None:
        self.engine = engine

    def address(self, name: str) -> int:
        return self.engine.get_function_address(name)


def compile_ir(text: str | Sequence[str], level: int = LEVEL, key: str | None = None,
               before_load: Callable[[], object] | None = None) -> Compiled:
    """Optimise LLVM IR for the host, compile it to machine code and load that into an MCJIT
    engine. One text is split into parts (`split_module`); several texts are the parts,
    each a whole module that declares what the others define. The parts compile at once on
    the CPU's cores. The machine code is kept in the on-disk cache (`ik.config.cache_dir`):
    a later compile of the same text for the same CPU, in any process, loads it without
    parsing the IR (`key`, where given, names the object instead of the text's hash).
    `before_load` runs just before the code is loaded: it makes the symbols the code calls
    resolvable (the runtime, which may still be compiling on another thread meanwhile)."""
    initialize()
    if key is None:
        key = object_key(text if isinstance(text, str) else "\n".join(text), level)
    cached = load_object(key, before_load) if key is not None else None
    if cached is not None:
        return cached
    workers = _compile_workers()
    # twice as many parts as cores: the pool's queue balances them, and one compile's parts
    # share the cores with another's (the runtime's, on its thread, while a function compiles)
    parts = split_module(text, PARTS_PER_WORKER * workers) if isinstance(text, str) else list(text)
    if len(parts) == 1 or workers == 1:
        objects = [_compile_part(part, level) for part in parts]
    else:
        pool = _compile_pool()
        objects = [f.result() for f in [pool.submit(_compile_part, part, level) for part in parts]]
    if key is not None:
        cache_store(key, _pack(objects))
    if before_load is not None:
        before_load()
    return _load(objects)


def load_object(key: str, before_load: Callable[[], object] | None = None) -> Compiled | None:
    """Load cached machine code without its IR: the runtime's symbols resolve as for a
    fresh compile (`before_load` as for compile_ir). None when the object is not there or
    damaged."""
    data = cache_load(key)
    objects = _unpack(data) if data is not None else None
    if not objects:
        return None
    initialize()
    if before_load is not None:
        before_load()
    return _load(objects)


def _load(objects: list[bytes]) -> Compiled:
    with _lock:
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), new_target_machine())
        for obj in objects:  # one engine: the parts' symbols resolve among themselves
            engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        engine.finalize_object()
    return Compiled(engine)


def _pack(objects: list[bytes]) -> bytes:
    return struct.pack("<I", len(objects)) + b"".join(struct.pack("<Q", len(o)) + o for o in objects)


def _unpack(data: bytes) -> list[bytes] | None:
    try:
        (n,), at, objects = struct.unpack_from("<I", data), 4, []
        for _ in range(n):
            (size,) = struct.unpack_from("<Q", data, at)
            objects.append(data[at + 8:at + 8 + size])
            at += 8 + size
    except struct.error:
        return None
    return objects if at == len(data) and all(objects) else None


# -- compiling on every core -----------------------------------------------------------------
# llvmlite puts every call into LLVM behind one process-wide lock. LLVM needs it only for
# what threads share: a module parsed into its own context, optimised and compiled with its
# own target machine and pass builder, shares nothing (as in LLVM's own parallel code
# generation). The three long calls on such a module (parse, optimise, emit) go straight to
# llvmlite's ctypes functions, past the lock (ctypes releases the GIL during each), so the
# parts of a module compile side by side; every other call, and whatever the garbage
# collector frees meanwhile, takes the lock as usual. (llvmlite is pinned: these are its
# 0.50 internals; without them the parts compile one after the other.)

_UNLOCKED = ("LLVMPY_ParseAssembly", "LLVMPY_RunNewModulePassManager", "LLVMPY_TargetMachineEmitToMemory")


@functools.lru_cache(maxsize=None)
def _unlocked() -> dict | None:
    """llvmlite's ctypes functions for the long calls, without its lock (None: not found)."""
    from llvmlite.binding import ffi
    found = {name: getattr(getattr(ffi.lib, name, None), "_cfn", None) for name in _UNLOCKED}
    return found if all(found.values()) else None


def _compile_workers() -> int:
    """Parts to compile at once: the cores this process may use (at most 4)."""
    import os
    if _unlocked() is None:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, cores))


_pool: tuple[int, object] | None = None  # (the process id it was made in, the executor)


def _compile_pool():
    """The threads that compile the parts, one per core, shared by every compile; made again
    in a forked child, which has none of its parent's threads (the parent's executor would
    queue work no thread takes)."""
    import os
    from concurrent.futures import ThreadPoolExecutor
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(max_workers=_compile_workers(), thread_name_prefix="irkit-llvm"))
    return _pool[1]


def _codegen_level(text: str) -> int:
    """The code generator's level for a module: 0 (fast instruction selection and register
    allocation) when every function it defines, the math helpers aside, is `optnone` (a
    huge host function, backends/llvm.py), else 3. LLVM's greedy register allocator spent
    57% of the 5 s that a 10,000-op graph's host function took at level 3."""
    own = [line for line in text.split("\n") if line.startswith("define ") and not _is_helper(line)]
    return 0 if own and all(" optnone" in line for line in own) else 3


def _compile_part(text: str, level: int) -> bytes:
    """One module's machine code (an object file), made in an LLVM context of its own."""
    raw = _unlocked()
    codegen_level = _codegen_level(text)
    if raw is None:
        with _lock:
            tm = new_target_machine(codegen_level)
            mod = llvm.parse_assembly(text)
            _prepare_module(mod, tm)
            if level > 0:
                optimize(mod, level, tm)
            return tm.emit_object(mod)
    from llvmlite.binding import ffi
    from llvmlite.binding.module import ModuleRef
    context = llvm.create_context()
    try:
        tm = new_target_machine(codegen_level)
        with ffi.OutputString() as message:
            mod = ModuleRef(raw["LLVMPY_ParseAssembly"](context, ctypes.c_char_p(text.encode()), message), context)
            if message:
                mod.close()
                raise RuntimeError(f"LLVM IR parsing error\n{message}")
        try:
            _prepare_module(mod, tm)
            if level > 0:
                pb = llvm.create_pass_builder(tm, _tuning(level))
                mpm = pb.getModulePassManager()
                raw["LLVMPY_RunNewModulePassManager"](mpm, mod, pb)
            with ffi.OutputString() as message:
                buffer = raw["LLVMPY_TargetMachineEmitToMemory"](tm, mod, 1, message)
                if not buffer:
                    raise RuntimeError(str(message))
            try:
                return ctypes.string_at(ffi.lib.LLVMPY_GetBufferStart(buffer), ffi.lib.LLVMPY_GetBufferSize(buffer))
            finally:
                ffi.lib.LLVMPY_DisposeMemoryBuffer(buffer)
        finally:
            mod.close()
    finally:
        context.close()


def _prepare_module(mod: llvm.ModuleRef, tm: llvm.TargetMachine) -> None:
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    mod.verify()


def split_module(text: str, parts: int) -> list[str]:
    """LLVM IR text as printed by llvmlite.ir, as up to `parts` modules that compile apart:
    each defines some of the functions (the costliest, by size and loops, spread first over
    the emptiest part) and declares the others, with every declaration and constant
    repeated, and every always-inlined helper defined whole in each. Internal functions
    become external, so that the parts link. A module with mutable internal globals (the
    runtime's state) or too little code stays whole."""
    lines = text.split("\n")
    header: list[str] = []
    functions: list[list[str]] = []
    body: list[str] | None = None
    for line in lines:
        if body is not None:
            body.append(line)
            if line == "}":
                functions.append(body)
                body = None
        elif line.startswith("define "):
            body = [line]
        else:
            header.append(line)
    if body is not None or any(" internal global " in h for h in header):
        return [text]
    inlined = [f for f in functions if _is_helper(f[0])]
    functions = [f for f in functions if not _is_helper(f[0])]
    weights = [len(f) + 100 * sum(" phi " in x for x in f) for f in functions]
    if parts < 2 or len(functions) < 2 or sum(weights) < SPLIT_ABOVE:
        return [text]
    header = header + [line for f in inlined for line in f]
    # an optnone function (a huge host function) gets a part of its own, whose code
    # generator then runs at level 0 (_codegen_level)
    bins: list[list[int]] = [[k] for k, f in enumerate(functions) if " optnone" in f[0]]
    bins += [[] for _ in range(max(1, min(parts, len(functions)) - len(bins)))]
    load = [(1 << 62) if members else 0 for members in bins]
    for k in sorted(range(len(functions)), key=lambda k: -weights[k]):
        if " optnone" in functions[k][0]:
            continue
        j = load.index(min(load))
        bins[j].append(k)
        load[j] += weights[k]
    bins = [members for members in bins if members]
    exposed = [[f[0].replace("define internal ", "define ", 1).replace("define private ", "define ", 1)] + f[1:]
               for f in functions]
    declarations = [_declaration(f[0]) for f in exposed]
    out = []
    for members in bins:
        chosen = set(members)
        text_lines = header + [declarations[k] for k in range(len(functions)) if k not in chosen]
        for k in sorted(members):
            text_lines += exposed[k]
        out.append("\n".join(text_lines))
    return out


def _is_helper(define: str) -> bool:
    """Whether a function (its `define` line) is a math helper (backends/vecmath.py), which
    goes whole into every part: a call across parts would not be inlined, or would lose its
    vector variant, and the loop that makes it would not vectorise."""
    return " alwaysinline" in define or f'@"{vecmath.PREFIX}' in define or f" @{vecmath.PREFIX}" in define


# below this much code (lines, plus 100 per phi: loops cost more), a module compiles whole
SPLIT_ABOVE = 1500
# parts per core: a part more costs a few ms of parsing what the others declare (the MLP
# step: 247 ms in 2 parts, 260 in 4, 285 in 12, one after the other)
PARTS_PER_WORKER = 2


def _declaration(define: str) -> str:
    """`declare ...` for a `define ...(params) attrs` line: up to the parameter list's end."""
    start = define.index("(", define.index("@"))
    depth = 0
    for at in range(start, len(define)):
        depth += {"(": 1, ")": -1}.get(define[at], 0)
        if depth == 0:
            return "declare" + define[len("define"):at + 1]
    raise ValueError(f"cannot read the signature of {define!r}")


# -- the on-disk cache of machine code -------------------------------------------------------
# One file per key (sha256 of the IR text, the optimisation level, the CPU's name and features,
# irkit's version and source, and llvmlite's version), written to a temporary name and renamed into place:
# processes share the cache without a lock, and a reader sees a whole object or none.

@functools.lru_cache(maxsize=None)
def _host_signature() -> bytes:
    """What the machine code depends on besides the IR (asked once per process): irkit's
    source too, since this module's splitting and pass settings shape the code of an
    unchanged text."""
    import llvmlite

    from irkit import __version__
    from irkit.compile_cache import compiler_fingerprint
    parts = (__version__, compiler_fingerprint(), llvmlite.__version__, llvm.llvm_version_info,
             llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten())
    return "\0".join(map(str, parts)).encode()


def config_cache_dir() -> str | None:
    from irkit.config import config
    return config.cache_dir


def object_key(text: str, level: int = LEVEL) -> str | None:
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


_MAGIC = b"IRKITOBJ2"  # 2: machine code is a list of objects (compile_ir's parts)


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
