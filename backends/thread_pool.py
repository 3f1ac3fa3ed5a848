"""`irkit_parallel_for`, the runtime's thread pool, as LLVM IR (part of backends/runtime.py).

irkit_parallel_for(body, ctx, lb, ub, nthreads) -> status runs body(ctx, lo, hi) over
[lb, ub) on up to nthreads threads, the caller's included, and returns the first nonzero
status (0 when every chunk succeeded).

- The workers are made once (detached pthreads, as many as the largest nthreads asked for,
  less one) and sleep on a condition variable between loops; after a loop they poll for
  the next one for a few microseconds first, so a run of kernels pays no wake-up. A fork
  or join per loop cost about 60 us; a loop now starts in a few.
- The range is cut into one part per thread (the same part for the same thread every
  loop, so its data is still in that core's cache) of CHUNKS_PER_THREAD chunks; a thread
  takes its own part's chunks, then what is left of the others': a thread the OS has
  descheduled (a BLAS thread spinning on its core, another process) delays its current
  chunk only, the others take the rest.
- One loop at a time uses the pool; a loop started meanwhile (another Python thread) runs
  on its caller's thread alone. A forked child makes its own workers (the parent's do not
  exist there).

Each part's counter holds the loop's generation (high 32 bits) beside its next chunk, so a
worker that wakes late for a finished loop can take nothing from the next one.
"""

from __future__ import annotations

import llvmlite.binding as llvm
import llvmlite.ir as ir

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
PTR = ir.PointerType()
MAX_THREADS = 64
CHUNKS_PER_THREAD = 4
SPIN = 4096  # polls (each a `pause` on x86) a worker makes for the next loop before it sleeps
# room for a pthread_mutex_t / pthread_cond_t on every libc (glibc 40/48 bytes, macOS 64/48)
SYNC_BYTES = 128
SEQ = "seq_cst"
LINE_I64 = 8  # one chunk counter per cache line


def declare(m: ir.Module, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
    """A C function of the runtime module, declared once."""
    return m.globals.get(name) or ir.Function(m, ir.FunctionType(ret, args), name)


def internal_global(m: ir.Module, name: str, ty: ir.Type, align: int | None = None) -> ir.GlobalVariable:
    """A zeroed internal global of the runtime module (its mutable state)."""
    g = ir.GlobalVariable(m, ty, name)
    g.initializer = ir.Constant(ty, None)
    g.linkage = "internal"
    if align:
        g.align = align
    return g


class _Callable(ir.instructions.LoadInstr):
    """A loaded function pointer llvmlite can call (it needs the function type)."""

    @property
    def function_type(self) -> ir.FunctionType:
        return self._function_type


class _CallableArg(ir.values.Argument):
    @property
    def function_type(self) -> ir.FunctionType:
        return self._function_type


def _callable(value, fnty: ir.FunctionType):
    value.__class__ = _Callable if isinstance(value, ir.instructions.LoadInstr) else _CallableArg
    value._function_type = fnty
    return value


def build(m: ir.Module) -> None:
    """Add irkit_parallel_for and its workers to the runtime module `m`."""
    body_t = ir.FunctionType(I32, [PTR, I64, I64])
    lib = {name: declare(m, name, ret, args) for name, ret, args in (
        ("pthread_mutex_init", I32, [PTR, PTR]), ("pthread_mutex_lock", I32, [PTR]),
        ("pthread_mutex_unlock", I32, [PTR]), ("pthread_cond_init", I32, [PTR, PTR]),
        ("pthread_cond_wait", I32, [PTR, PTR]), ("pthread_cond_broadcast", I32, [PTR]),
        ("pthread_create", I32, [PTR, PTR, PTR, PTR]), ("pthread_detach", I32, [I64]),
        ("getpid", I32, []))}
    sync = ir.ArrayType(I8, SYNC_BYTES)
    g = {name: internal_global(m, f"irkit_pool_{name}", ty, align) for name, ty, align in (
        ("mutex", sync, 64), ("wake", sync, 64), ("finished", sync, 64),
        ("busy", I32, None), ("pid", I32, None), ("workers", I64, None), ("generation", I64, None),
        ("body", PTR, None), ("ctx", PTR, None), ("lb", I64, None), ("ub", I64, None),
        ("chunk", I64, None), ("chunks", I64, None), ("helpers", I64, None),
        ("next", ir.ArrayType(I64, MAX_THREADS * LINE_I64), 64), ("done", I64, 64), ("failure", I64, None))}
    x86 = llvm.get_default_triple().startswith(("x86_64", "i686", "i386"))
    pause = ir.Function(m, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause") if x86 else None

    def call(b, name, *args):
        return b.call(lib[name], list(args))

    # -- run(generation, self, threads, body, ctx, lb, ub, chunk, chunks): this thread's own
    # chunks first (the same part of the range every loop: its data is in this core's cache
    # from the last call), then what is left of the others'
    run = ir.Function(m, ir.FunctionType(ir.VoidType(), [I64, I64, I64, PTR, PTR, I64, I64, I64, I64]),
                      "irkit_pool_run")
    run.linkage = "internal"
    gen, me, threads, body, ctx, lb, ub, chunk, chunks = run.args
    b = ir.IRBuilder(run.append_basic_block("entry"))
    entry = b.block
    per = b.udiv(b.add(chunks, b.sub(threads, I64(1))), threads)
    tag = b.and_(gen, I64(0xFFFFFFFF))
    part, take, ours, check, work, following, out = (run.append_basic_block(n) for n in (
        "part", "take", "ours", "check", "work", "following", "out"))
    b.branch(part)
    b.position_at_end(part)
    j = b.phi(I64)
    j.add_incoming(I64(0), entry)
    owner = b.urem(b.add(me, j), threads)
    first = b.mul(owner, per)
    end = b.add(first, per)
    end = b.select(b.icmp_unsigned(">", end, chunks), chunks, end)
    counter = b.gep(g["next"], [I64(0), b.mul(owner, I64(LINE_I64))], inbounds=True)
    b.cbranch(b.icmp_unsigned("<", j, threads), take, out)
    b.position_at_end(take)
    seen = b.load_atomic(counter, SEQ, 8, typ=I64)
    k = b.add(first, b.and_(seen, I64(0xFFFFFFFF)))
    # a counter of another loop: this one is over
    b.cbranch(b.icmp_unsigned("==", b.lshr(seen, I64(32)), tag), ours, out)
    b.position_at_end(ours)
    b.cbranch(b.icmp_unsigned("<", k, end), check, following)
    b.position_at_end(check)
    got = b.extract_value(b.cmpxchg(counter, seen, b.add(seen, I64(1)), SEQ, SEQ), 1)
    b.cbranch(got, work, take)
    b.position_at_end(work)
    lo = b.add(lb, b.mul(k, chunk))
    hi = b.add(lo, chunk)
    hi = b.select(b.icmp_signed(">", hi, ub), ub, hi)
    status = b.call(_callable(body, body_t), [ctx, lo, hi])
    with b.if_then(b.icmp_signed("!=", status, I32(0))):
        # the failure of the lowest chunk wins, as if the chunks had run in order
        b.atomic_rmw("umin", g["failure"], b.or_(b.shl(k, I64(32)), b.zext(status, I64)), SEQ)
    finished = b.add(b.atomic_rmw("add", g["done"], I64(1), SEQ), I64(1))
    with b.if_then(b.icmp_unsigned("==", finished, chunks)):
        # the caller may be asleep waiting for the last chunk: it checks under the mutex
        call(b, "pthread_mutex_lock", g["mutex"])
        call(b, "pthread_cond_broadcast", g["finished"])
        call(b, "pthread_mutex_unlock", g["mutex"])
    b.branch(take)
    b.position_at_end(following)
    j.add_incoming(b.add(j, I64(1)), following)
    b.branch(part)
    b.position_at_end(out)
    b.ret_void()

    def load_job(b):
        return [b.load(g[n], typ=t) for n, t in (("body", PTR), ("ctx", PTR), ("lb", I64), ("ub", I64),
                                                   ("chunk", I64), ("chunks", I64))]

    # -- the worker: wait for a loop of a newer generation, help with it, again -----------
    worker = ir.Function(m, ir.FunctionType(PTR, [PTR]), "irkit_pool_worker")
    worker.linkage = "internal"
    b = ir.IRBuilder(worker.append_basic_block("entry"))
    me = b.ptrtoint(worker.args[0], I64)  # 1, 2, ...: which part of each loop is this worker's
    last, spins = b.alloca(I64), b.alloca(I64)
    b.store(b.load_atomic(g["generation"], SEQ, 8, typ=I64), last)
    loop, poll, polled, sleep, wait, asleep, awake, join = (worker.append_basic_block(n) for n in (
        "loop", "poll", "polled", "sleep", "wait", "asleep", "awake", "join"))
    b.branch(loop)
    b.position_at_end(loop)
    b.store(I64(0), spins)
    b.branch(poll)
    # poll a while without the mutex (a run of kernels), then sleep on the condition
    b.position_at_end(poll)
    newer = b.icmp_unsigned("!=", b.load_atomic(g["generation"], SEQ, 8, typ=I64), b.load(last, typ=I64))
    b.cbranch(newer, sleep, polled)
    b.position_at_end(polled)
    n = b.add(b.load(spins, typ=I64), I64(1))
    b.store(n, spins)
    if pause is not None:
        b.call(pause, [])
    b.cbranch(b.icmp_unsigned("<", n, I64(SPIN)), poll, sleep)
    b.position_at_end(sleep)
    call(b, "pthread_mutex_lock", g["mutex"])
    b.branch(wait)
    b.position_at_end(wait)
    current = b.load(g["generation"], typ=I64)
    b.cbranch(b.icmp_unsigned("==", current, b.load(last, typ=I64)), asleep, awake)
    b.position_at_end(asleep)
    call(b, "pthread_cond_wait", g["wake"], g["mutex"])
    b.branch(wait)
    b.position_at_end(awake)
    b.store(current, last)
    job = load_job(b)
    helpers = b.load(g["helpers"], typ=I64)
    call(b, "pthread_mutex_unlock", g["mutex"])
    # no more helpers than the loop asked for (the pool may hold more from a larger request)
    b.cbranch(b.icmp_unsigned("<=", me, helpers), join, loop)
    b.position_at_end(join)
    b.call(run, [current, me, b.add(helpers, I64(1)), *job])
    b.branch(loop)

    # -- irkit_parallel_for ------------------------------------------------------------------
    fn = ir.Function(m, ir.FunctionType(I32, [PTR, PTR, I64, I64, I64]), "irkit_parallel_for")
    body, ctx, lb, ub, nthreads = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    serial, pooled, ready, start = (fn.append_basic_block(n) for n in ("serial", "pooled", "ready", "start"))
    trip = b.sub(ub, lb)
    t = b.select(b.icmp_signed(">", nthreads, I64(MAX_THREADS)), I64(MAX_THREADS), nthreads)
    t = b.select(b.icmp_signed(">", t, trip), trip, t)
    want_pool = b.icmp_signed(">", t, I64(1))
    b.cbranch(want_pool, pooled, serial)
    b.position_at_end(serial)
    b.ret(b.call(_callable(body, body_t), [ctx, lb, ub]))

    b.position_at_end(pooled)
    taken = b.extract_value(b.cmpxchg(g["busy"], I32(0), I32(1), "acquire", "monotonic"), 1)
    own = fn.append_basic_block("own")
    b.cbranch(taken, own, serial)
    b.position_at_end(own)
    # a forked child: the workers and the mutex's state are the parent's
    pid = call(b, "getpid")
    with b.if_then(b.icmp_signed("!=", pid, b.load(g["pid"], typ=I32))):
        b.store(pid, g["pid"])
        b.store(I64(0), g["workers"])
        for name, init in (("mutex", "pthread_mutex_init"), ("wake", "pthread_cond_init"),
                           ("finished", "pthread_cond_init")):
            call(b, init, g[name], ir.Constant(PTR, None))
    # workers up to t - 1 (made once, detached; one that cannot be made is done without)
    grow, make, made = (fn.append_basic_block(n) for n in ("grow", "make", "made"))
    tid = b.alloca(I64)
    b.branch(grow)
    b.position_at_end(grow)
    have = b.load(g["workers"], typ=I64)
    b.cbranch(b.icmp_signed("<", have, b.sub(t, I64(1))), make, made)
    b.position_at_end(make)
    rc = call(b, "pthread_create", tid, ir.Constant(PTR, None), worker, b.inttoptr(b.add(have, I64(1)), PTR))
    with b.if_then(b.icmp_signed("==", rc, I32(0))):
        call(b, "pthread_detach", b.load(tid, typ=I64))
        b.store(b.add(have, I64(1)), g["workers"])
    b.cbranch(b.icmp_signed("==", rc, I32(0)), grow, made)
    b.position_at_end(made)
    helpers = b.load(g["workers"], typ=I64)
    helpers = b.select(b.icmp_signed(">", helpers, b.sub(t, I64(1))), b.sub(t, I64(1)), helpers)
    none = b.icmp_signed("==", helpers, I64(0))
    release_serial = fn.append_basic_block("release_serial")
    b.cbranch(none, release_serial, ready)
    b.position_at_end(release_serial)
    b.store_atomic(I32(0), g["busy"], "release", 4)
    b.branch(serial)

    b.position_at_end(ready)
    parts = b.mul(b.add(helpers, I64(1)), I64(CHUNKS_PER_THREAD))
    parts = b.select(b.icmp_signed(">", parts, trip), trip, parts)
    chunk = b.sdiv(b.add(trip, b.sub(parts, I64(1))), parts)
    chunks = b.sdiv(b.add(trip, b.sub(chunk, I64(1))), chunk)
    call(b, "pthread_mutex_lock", g["mutex"])
    generation = b.add(b.load(g["generation"], typ=I64), I64(1))
    for name, value in (("body", body), ("ctx", ctx), ("lb", lb), ("ub", ub), ("chunk", chunk),
                        ("chunks", chunks), ("helpers", helpers)):
        b.store(value, g[name])
    b.store_atomic(I64(0), g["done"], SEQ, 8)
    b.store_atomic(I64(-1), g["failure"], SEQ, 8)
    fresh = b.shl(b.and_(generation, I64(0xFFFFFFFF)), I64(32))
    threads = b.add(helpers, I64(1))
    before, reset, after = (fn.append_basic_block(n) for n in ("reset.head", "reset", "reset.done"))
    pre = b.block
    b.branch(before)
    b.position_at_end(before)
    r = b.phi(I64)
    r.add_incoming(I64(0), pre)
    b.cbranch(b.icmp_unsigned("<", r, threads), reset, after)
    b.position_at_end(reset)
    b.store_atomic(fresh, b.gep(g["next"], [I64(0), b.mul(r, I64(LINE_I64))], inbounds=True), SEQ, 8)
    r.add_incoming(b.add(r, I64(1)), reset)
    b.branch(before)
    b.position_at_end(after)
    b.store_atomic(generation, g["generation"], SEQ, 8)
    call(b, "pthread_cond_broadcast", g["wake"])
    call(b, "pthread_mutex_unlock", g["mutex"])
    b.branch(start)

    b.position_at_end(start)
    b.call(run, [generation, I64(0), threads, body, ctx, lb, ub, chunk, chunks])
    # the chunks others took: wait for them under the mutex (the last one signals)
    check, sleep, finish = (fn.append_basic_block(n) for n in ("wait.check", "wait.sleep", "wait.done"))
    call(b, "pthread_mutex_lock", g["mutex"])
    b.branch(check)
    b.position_at_end(check)
    all_done = b.icmp_unsigned("==", b.load_atomic(g["done"], SEQ, 8, typ=I64), chunks)
    b.cbranch(all_done, finish, sleep)
    b.position_at_end(sleep)
    call(b, "pthread_cond_wait", g["finished"], g["mutex"])
    b.branch(check)
    b.position_at_end(finish)
    call(b, "pthread_mutex_unlock", g["mutex"])
    failure = b.load_atomic(g["failure"], SEQ, 8, typ=I64)
    b.store_atomic(I32(0), g["busy"], "release", 4)
    b.ret(b.select(b.icmp_unsigned("==", failure, I64(-1)), I32(0), b.trunc(failure, I32)))
