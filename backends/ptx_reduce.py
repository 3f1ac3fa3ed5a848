"""Reductions on NVIDIA GPUs: the pieces `backends/ptx.py` builds its reduction kernels from.

An `scf.parallel` with `scf.reduce` (made by passes/parallel_reductions.py) runs as:

- **a full reduction** (`<f>_r<n>`): each thread accumulates its grid-stride share of the
  iteration space from the identity; a butterfly of `shfl.sync` combines a warp; lane 0 of
  each warp leaves its partial in shared memory; after `bar.sync` warp 0 combines the
  partials and one thread a block folds the block's value into a device cell that the host
  set to the loop's init value. The fold is `atomicrmw` where PTX has the operation
  (`atom.add.f32/f64`, integer add/min/max/and/or/xor) and otherwise a compare-and-swap loop
  on the value's bits (float max/min, products). The CAS loop is chosen over a second-pass
  kernel because there is one CAS per block (little contention, no extra launch or partials
  buffer), and because it computes exactly `arith.maximumf` (NaN propagates), which
  `atomicrmw fmax` (maxnum: NaN is dropped) would not.
- **a row reduction**, nested in a parallel loop over rows: one warp a row; the lanes stride
  over the row, and the same butterfly leaves the row's value in every lane, so the rest of
  the row body runs in all lanes without a broadcast.

Iteration spaces of several dimensions are walked with a mixed-radix counter: the start and
the stride are split into digits once, and each step adds the digits with one carry each, so
no division runs per element.
"""

from __future__ import annotations

import llvmlite.ir as ir
from xdsl.dialects import arith, scf
from xdsl.ir import Operation

from irkit.backends.llvm import F32, F64, I32, I64

WARP = 32
FULL_MASK = I32(-1)


def combiner(region) -> Operation:
    """The one op of an `scf.reduce` region (what passes/parallel_reductions.py makes)."""
    ops = list(region.block.ops)
    if len(ops) != 2 or not isinstance(ops[1], scf.ReduceReturnOp):
        raise ValueError("ptx: an scf.reduce region must hold one combining op")
    return ops[0]


def identity(op: Operation, ty: ir.Type) -> ir.Constant:
    """The neutral element of `op`: what idle lanes and threads contribute."""
    from irkit.passes.parallel_reductions import identity_value
    width = ty.width if isinstance(ty, ir.IntType) else (32 if ty == F32 else 64)
    try:
        return ir.Constant(ty, identity_value(op, width))
    except ValueError as e:
        raise ValueError(f"ptx: {e}") from None


# the folds PTX has as one atomic instruction (with `combiner`'s semantics exactly)
_ATOMIC = {arith.AddfOp: "fadd", arith.AddiOp: "add", arith.MaxSIOp: "max", arith.MinSIOp: "min",
           arith.MaxUIOp: "umax", arith.MinUIOp: "umin", arith.AndIOp: "and", arith.OrIOp: "or",
           arith.XOrIOp: "xor"}


def _intrinsic(mod: ir.Module, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
    fn = mod.globals.get(name)
    return fn if fn is not None else ir.Function(mod, ir.FunctionType(ret, args), name)


def barrier(mod: ir.Module, b: ir.IRBuilder) -> None:
    """`bar.sync 0`: every thread of the block."""
    b.call(_intrinsic(mod, "llvm.nvvm.barrier0", ir.VoidType(), []), [])


def warp_sync(mod: ir.Module, b: ir.IRBuilder) -> None:
    """`bar.warp.sync -1`: the lanes of a warp meet, and see each other's stores."""
    b.call(_intrinsic(mod, "llvm.nvvm.bar.warp.sync", ir.VoidType(), [I32]), [FULL_MASK])


def shuffle_xor(mod: ir.Module, b: ir.IRBuilder, v: ir.Value, lane_mask: int) -> ir.Value:
    """The value of lane `lane ^ lane_mask` (`shfl.sync.bfly`); 64-bit values in two halves."""
    if v.type == F32 or v.type == I32:
        suffix = "f32" if v.type == F32 else "i32"
        fn = _intrinsic(mod, f"llvm.nvvm.shfl.sync.bfly.{suffix}", v.type, [I32, v.type, I32, I32])
        return b.call(fn, [FULL_MASK, v, I32(lane_mask), I32(WARP - 1)])
    bits = b.bitcast(v, I64) if v.type == F64 else v
    lo = shuffle_xor(mod, b, b.trunc(bits, I32), lane_mask)
    hi = shuffle_xor(mod, b, b.trunc(b.lshr(bits, I64(32)), I32), lane_mask)
    out = b.or_(b.zext(lo, I64), b.shl(b.zext(hi, I64), I64(32)))
    return b.bitcast(out, F64) if v.type == F64 else out


def warp_allreduce(mod: ir.Module, b: ir.IRBuilder, v: ir.Value, combine) -> ir.Value:
    """The combination of `v` over the warp, in every lane (a butterfly of 5 shuffles)."""
    off = WARP // 2
    while off:
        v = combine(v, shuffle_xor(mod, b, v, off))
        off //= 2
    return v


def block_reduce(mod: ir.Module, b: ir.IRBuilder, name: str, v: ir.Value, ident: ir.Value, combine,
                 tid: ir.Value, ntid: ir.Value, emit_lane0) -> None:
    """Combine `v` over the block (warps, then their partials in shared memory) and call
    `emit_lane0(total)` in thread 0. `tid`, `ntid` are i64; the block is whole warps."""
    partials = ir.GlobalVariable(mod, ir.ArrayType(v.type, WARP), f"{name}.partials", addrspace=3)
    partials.linkage = "internal"
    partials.initializer = ir.Constant(ir.ArrayType(v.type, WARP), ir.Undefined)  # shared: no initialiser
    lane = b.and_(tid, I64(WARP - 1))
    warp = b.lshr(tid, I64(5))
    v = warp_allreduce(mod, b, v, combine)
    with b.if_then(b.icmp_unsigned("==", lane, I64(0))):
        b.store(v, b.gep(partials, [I64(0), warp], inbounds=True))
    barrier(mod, b)
    with b.if_then(b.icmp_unsigned("==", warp, I64(0))):
        nwarps = b.lshr(b.add(ntid, I64(WARP - 1)), I64(5))
        p = b.load(b.gep(partials, [I64(0), lane], inbounds=True), typ=v.type)
        p = b.select(b.icmp_unsigned("<", lane, nwarps), p, ident)
        total = warp_allreduce(mod, b, p, combine)
        with b.if_then(b.icmp_unsigned("==", lane, I64(0))):
            emit_lane0(total)


def atomic_fold(b: ir.IRBuilder, op: Operation, cell: ir.Value, v: ir.Value, combine) -> None:
    """cell = combine(cell, v), atomically: one atomic instruction where PTX has one, else a
    compare-and-swap loop on the bits (see the module docstring for why not a second pass)."""
    kind = _ATOMIC.get(type(op))
    if kind is not None:
        b.atomic_rmw(kind, cell, v, "monotonic")
        return
    bits_ty = ir.IntType(64 if v.type in (F64, I64) else 32)
    as_bits = (lambda x: b.bitcast(x, bits_ty)) if v.type in (F32, F64) else (lambda x: x)
    from_bits = (lambda x: b.bitcast(x, v.type)) if v.type != bits_ty else (lambda x: x)
    first = b.load_atomic(cell, "monotonic", 8 if bits_ty.width == 64 else 4, typ=bits_ty)
    pre = b.block
    fn = pre.function
    loop, done = fn.append_basic_block("cas.loop"), fn.append_basic_block("cas.done")
    b.branch(loop)
    b.position_at_end(loop)
    old = b.phi(bits_ty)
    old.add_incoming(first, pre)
    new = as_bits(combine(from_bits(old), v))
    pair = b.cmpxchg(cell, old, new, "monotonic", "monotonic")
    old.add_incoming(b.extract_value(pair, 0), b.block)
    b.cbranch(b.extract_value(pair, 1), done, loop)
    b.position_at_end(done)


def strided_nd(fn: ir.Function, b: ir.IRBuilder, trips: list[ir.Value], start: ir.Value, stride: ir.Value,
               emit) -> None:
    """`emit(digits)` for the linear positions start, start+stride, ... of the row-major box
    `trips` (i64 values, each > 0), walked with a mixed-radix counter."""
    def digits(v):
        out = []
        for t in reversed(trips[1:]):
            out.append(b.urem(v, t))
            v = b.udiv(v, t)
        return [v, *reversed(out)]
    d0, s0 = digits(start), digits(stride)
    pre = b.block
    head, body, exit_ = (fn.append_basic_block(n) for n in ("nd.head", "nd.body", "nd.exit"))
    b.branch(head)
    b.position_at_end(head)
    phis = []
    for d in d0:
        p = b.phi(I64)
        p.add_incoming(d, pre)
        phis.append(p)
    b.cbranch(b.icmp_unsigned("<", phis[0], trips[0]), body, exit_)
    b.position_at_end(body)
    emit(list(phis))
    carry = I64(0)
    nxt = [None] * len(phis)
    for k in range(len(phis) - 1, 0, -1):  # each digit and its stride digit are < trip: one carry
        s = b.add(b.add(phis[k], s0[k]), carry)
        wrap = b.icmp_unsigned(">=", s, trips[k])
        nxt[k] = b.select(wrap, b.sub(s, trips[k]), s)
        carry = b.zext(wrap, I64)
    nxt[0] = b.add(b.add(phis[0], s0[0]), carry)
    for p, n in zip(phis, nxt):
        p.add_incoming(n, b.block)
    b.branch(head)
    b.position_at_end(exit_)
