"""The native runtime every compiled function shares, compiled once per process and
never freed (arrays it allocated may outlive any one compiled function):

- `irkit_alloc(nbytes)` / `irkit_free(ptr)`: 64-byte aligned buffers. Blocks of
  1 MiB or more are advised into transparent huge pages (as numpy does) and,
  when freed, kept in a small cache and handed out again for the next request
  of the same size class (1 MiB steps), so a function called in a loop writes
  into memory that is already mapped instead of faulting in fresh pages every
  call. The cache holds at most `IRKIT_POOL_BYTES` (default 1 GiB) and 32 blocks.
- `irkit_capsule_free(capsule)`: the destructor of the capsule that owns a
  result array's buffer.
- `irkit_parallel_for(body, ctx, lb, ub, nthreads)`: a loop split across a pool of
  threads made once (backends/thread_pool.py), for the `scf.parallel` loops of kernels
  large enough to pay for starting one.
- `irkit_gemm_f32/f64`: every product of a compiled function whose sizes are not all
  known (`dialects/ik/linalg.py` gemm_runtime: small ones as loops, else BLAS), written at
  the loops level and translated like any function. Each is compiled (`products`) when a
  function that calls it is first compiled or loaded; the rest (`runtime`) for any function.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence

import llvmlite.ir as ir
import numpy as np

from irkit.backends import jit, thread_pool
from irkit.backends.thread_pool import declare, internal_global

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
PTR = ir.PointerType()
HEADER = 64
LARGE = 1 << 20
SLOTS = 32
MADV_HUGEPAGE = 14


def _lock(b: ir.IRBuilder, fn: ir.Function, lock: ir.GlobalVariable) -> None:
    spin = fn.append_basic_block("lock.spin")
    got = fn.append_basic_block("lock.got")
    b.branch(spin)
    b.position_at_end(spin)
    pair = b.cmpxchg(lock, I32(0), I32(1), "acquire", "monotonic")
    b.cbranch(b.extract_value(pair, 1), got, spin)
    b.position_at_end(got)


def _unlock(b: ir.IRBuilder, lock: ir.GlobalVariable) -> None:
    b.store_atomic(I32(0), lock, "release", 4)


def build_module(limit: int) -> ir.Module:
    m = ir.Module(name="irkit_runtime")
    aligned_alloc = declare(m, "aligned_alloc", PTR, [I64, I64])
    malloc = declare(m, "malloc", PTR, [I64])
    free = declare(m, "free", ir.VoidType(), [PTR])
    madvise = declare(m, "madvise", I32, [PTR, I64, I32])
    lock = internal_global(m, "irkit_pool_lock", I32)
    caps = internal_global(m, "irkit_pool_caps", ir.ArrayType(I64, SLOTS))
    ptrs = internal_global(m, "irkit_pool_ptrs", ir.ArrayType(PTR, SLOTS))
    cached = internal_global(m, "irkit_pool_bytes", I64)

    # -- irkit_alloc ----------------------------------------------------------------
    fn = ir.Function(m, ir.FunctionType(PTR, [I64]), "irkit_alloc")
    n = fn.args[0]
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    small, large = fn.append_basic_block("small"), fn.append_basic_block("large")
    b.cbranch(b.icmp_unsigned(">=", n, I64(LARGE)), large, small)

    # Small blocks come from malloc (its per-thread cache: ~20 ns) and are aligned by hand;
    # glibc's aligned_alloc splits chunks on every call (~150 ns, a third of a scalar call).
    # The header holds 0 (not pooled) and malloc's own pointer, which free needs.
    b.position_at_end(small)
    base = b.call(malloc, [b.add(n, I64(HEADER + 64))])
    null, ok = fn.append_basic_block("null"), fn.append_basic_block("small.ok")
    b.cbranch(b.icmp_unsigned("==", base, ir.Constant(PTR, None)), null, ok)
    b.position_at_end(null)
    b.ret(ir.Constant(PTR, None))
    b.position_at_end(ok)
    addr = b.and_(b.add(b.ptrtoint(base, I64), I64(HEADER + 63)), I64(~63))
    data = b.inttoptr(addr, PTR)
    b.store(I64(0), b.gep(data, [I64(-HEADER)], inbounds=True, source_etype=I8))
    b.store(base, b.gep(data, [I64(8 - HEADER)], inbounds=True, source_etype=I8))
    b.ret(data)

    b.position_at_end(large)
    cap = b.and_(b.add(n, I64(LARGE - 1)), I64(~(LARGE - 1)))
    _lock(b, fn, lock)
    loop, hit, miss = (fn.append_basic_block(s) for s in ("find", "hit", "miss"))
    pre = b.block
    b.branch(loop)
    b.position_at_end(loop)
    i = b.phi(I64)
    i.add_incoming(I64(0), pre)
    slot_cap = b.gep(caps, [I32(0), i], inbounds=True)
    nxt = fn.append_basic_block("find.next")
    b.cbranch(b.icmp_unsigned("==", b.load(slot_cap, typ=I64), cap), hit, nxt)
    b.position_at_end(nxt)
    i2 = b.add(i, I64(1))
    i.add_incoming(i2, nxt)
    b.cbranch(b.icmp_unsigned("<", i2, I64(SLOTS)), loop, miss)
    b.position_at_end(hit)
    p = b.load(b.gep(ptrs, [I32(0), i], inbounds=True), typ=PTR)
    b.store(I64(0), slot_cap)
    b.store(b.sub(b.load(cached, typ=I64), cap), cached)
    _unlock(b, lock)
    b.ret(p)
    b.position_at_end(miss)
    _unlock(b, lock)
    size = b.add(cap, I64(4096))
    base = b.call(aligned_alloc, [I64(4096), size])
    null2, ok2 = fn.append_basic_block("null2"), fn.append_basic_block("large.ok")
    b.cbranch(b.icmp_unsigned("==", base, ir.Constant(PTR, None)), null2, ok2)
    b.position_at_end(null2)
    b.ret(ir.Constant(PTR, None))
    b.position_at_end(ok2)
    b.call(madvise, [base, size, I32(MADV_HUGEPAGE)])
    b.store(cap, base)
    b.ret(b.gep(base, [I64(HEADER)], inbounds=True, source_etype=I8))

    # -- irkit_free -------------------------------------------------------------------
    fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [PTR]), "irkit_free")
    p = fn.args[0]
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    done, body = fn.append_basic_block("done"), fn.append_basic_block("body")
    b.cbranch(b.icmp_unsigned("==", p, ir.Constant(PTR, None)), done, body)
    b.position_at_end(done)
    b.ret_void()
    b.position_at_end(body)
    base = b.gep(p, [I64(-HEADER)], inbounds=True, source_etype=I8)
    cap = b.load(base, typ=I64)
    release, pooled = fn.append_basic_block("release"), fn.append_basic_block("pooled")
    b.cbranch(b.icmp_unsigned("==", cap, I64(0)), release, pooled)
    b.position_at_end(release)
    b.call(free, [b.load(b.gep(base, [I64(8)], inbounds=True, source_etype=I8), typ=PTR)])
    b.ret_void()
    b.position_at_end(pooled)
    _lock(b, fn, lock)
    room, full = fn.append_basic_block("room"), fn.append_basic_block("full")
    total = b.add(b.load(cached, typ=I64), cap)
    b.cbranch(b.icmp_unsigned("<=", total, I64(limit)), room, full)
    b.position_at_end(room)
    loop, store, nxt_blk = (fn.append_basic_block(s) for s in ("slot", "store", "slot.next"))
    pre = b.block
    b.branch(loop)
    b.position_at_end(loop)
    i = b.phi(I64)
    i.add_incoming(I64(0), pre)
    slot_cap = b.gep(caps, [I32(0), i], inbounds=True)
    b.cbranch(b.icmp_unsigned("==", b.load(slot_cap, typ=I64), I64(0)), store, nxt_blk)
    b.position_at_end(nxt_blk)
    i2 = b.add(i, I64(1))
    i.add_incoming(i2, nxt_blk)
    b.cbranch(b.icmp_unsigned("<", i2, I64(SLOTS)), loop, full)
    b.position_at_end(store)
    b.store(cap, slot_cap)
    b.store(p, b.gep(ptrs, [I32(0), i], inbounds=True))
    b.store(total, cached)
    _unlock(b, lock)
    b.ret_void()
    b.position_at_end(full)
    _unlock(b, lock)
    b.call(free, [base])
    b.ret_void()

    thread_pool.build(m)

    # -- irkit_capsule_free -------------------------------------------------------------
    get_ptr = declare(m, "PyCapsule_GetPointer", PTR, [PTR, PTR])
    irkit_free = m.globals["irkit_free"]
    fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [PTR]), "irkit_capsule_free")
    b = ir.IRBuilder(fn.append_basic_block())
    b.call(irkit_free, [b.call(get_ptr, [fn.args[0], ir.Constant(PTR, None)])])
    b.ret_void()
    return m


def _pool_limit() -> int:
    return int(os.environ.get("IRKIT_POOL_BYTES", str(1 << 30)))


def _runtime_key(part: str, *settings: object) -> str | None:
    """The machine code cache's key of a part of the runtime: keyed by what its text is made
    of, not by the text, so a process that finds it cached neither builds nor translates it."""
    from irkit.compile_cache import compiler_fingerprint
    return jit.object_key("\0".join(map(str, ("irkit runtime", part, compiler_fingerprint(), jit.vector_isa(),
                                               jit.blas().int_bits, *settings))))


def _load_or_compile(key: str | None, text: Callable[[], str], names: Sequence[str]) -> None:
    """Compile a part of the runtime (or load it from the cache) and make `names` callable by
    name from every module. Its machine code stays mapped until the process ends: the last
    arrays it allocated may be freed (through irkit_capsule_free) after every module, this
    one included, is gone."""
    compiled = jit.load_object(key) if key is not None else None
    if compiled is None:
        compiled = jit.compile_ir([text()], key=key)
    for name in names:
        jit.register_symbol(name, compiled.address(name))
    compiled.engine.detach()  # never disposed, so never unmapped


# Each part is compiled once per process, by the first thread that needs it; a thread that
# needs it meanwhile waits for that one. The products are parts of their own, compiled only
# for a function that calls them (a float32 model never compiles the float64 loops).
_ready: set[str] = set()
_part_locks: dict[str, threading.Lock] = {}
_locks_lock = threading.Lock()


def _once(part: str, make: Callable[[], None]) -> None:
    if part in _ready:
        return
    with _locks_lock:
        lock = _part_locks.setdefault(part, threading.Lock())
    with lock:
        if part not in _ready:
            make()
            _ready.add(part)


def _after_fork_in_child() -> None:
    """A fork while a part was compiling leaves the child with that part's lock held by a
    thread it does not have: the child compiles what it needs for itself."""
    global _part_locks, _locks_lock
    _part_locks, _locks_lock = {}, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def runtime() -> None:
    """The allocator, the thread pool and the capsule destructor, callable by name."""
    limit = _pool_limit()
    _once("core", lambda: _load_or_compile(
        _runtime_key("core", limit), lambda: str(build_module(limit)),
        ("irkit_alloc", "irkit_free", "irkit_capsule_free", "irkit_parallel_for")))


def products(names: Iterable[str]) -> None:
    """The runtime's products among `names` (backends/llvm.py RUNTIME_FUNCTIONS), callable
    by name."""
    from irkit.backends.llvm import RUNTIME_FUNCTIONS
    for name in names:
        if name not in RUNTIME_FUNCTIONS:
            raise ValueError(f"{name!r} is not a function of irkit's runtime (those are {RUNTIME_FUNCTIONS})")
        _once(name, lambda name=name: _load_or_compile(_runtime_key(name), lambda: _product_text(name), (name,)))


def _product_text(name: str) -> str:
    from irkit.backends.llvm import Translator
    from irkit.dialects.ik.linalg import gemm_runtime, gemm_symbol
    dtype = next(dt for dt in map(np.dtype, (np.float32, np.float64)) if gemm_symbol(dt) == name)
    return str(Translator(jit.vector_isa()).translate(gemm_runtime([dtype])).module)


def ready(names: Iterable[str] = ()) -> bool:
    """Whether the core and the products `names` are callable already."""
    return "core" in _ready and all(n in _ready for n in names)
