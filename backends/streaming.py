"""Streaming stores: the elementwise loops that write more than the last-level cache holds
store with non-temporal instructions (`vmovntps`), which write whole cache lines straight
to memory instead of first reading each line of the output in (x + 1 on 10M float32 moves
80 MB instead of 120 MB: 1.55-1.75 ms -> 1.22-1.31 ms on one core here).

LLVM's loop vectorizer will not vectorise a loop whose stores are marked `!nontemporal`
unless the target can store a vector non-temporally at the scalar's alignment (no x86
can), and a vector `movnt` needs an aligned address. So the loop is written for it: the
iterations up to the first 64-byte boundary of the outputs (and the tail) run the ordinary
loop, and the aligned middle runs `64 / element size` iterations per step, op by op
(every load of the block, then every add, ...), which the SLP vectorizer joins into full
vectors; the first store of a block is 64-byte aligned and says so. Which loop runs is
decided per call: streaming only when the loop writes at least the threshold's bytes
(`ik.config.stream_threshold`, by default the size of the last-level cache) and every
output sits at the same offset from a 64-byte boundary (fresh outputs always do). A fence
follows the streamed blocks: non-temporal stores are not ordered with other stores, and
another thread of the pool may read the output as soon as the chunk counts itself done.

Only small bodies of arithmetic qualify: they are the loops bound by memory, and the
unrolled copy of a transcendental or a gather would be slower than the vectorised loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import llvmlite.ir as ir
from xdsl.dialects import arith, math, memref, scf
from xdsl.dialects.builtin import MemRefType
from xdsl.ir import SSAValue

LINE = 64  # bytes of a cache line, and of the widest (AVX-512) vector store
MAX_UNROLLED = 512  # ops in the unrolled block: bounds the compile time a kernel adds

# the ops of a streamable body besides its loads and stores: arithmetic that LLVM's SLP
# vectorizer turns into vector instructions (no calls, no divisions)
_ARITH = (
    arith.AddfOp, arith.SubfOp, arith.MulfOp, arith.DivfOp, arith.AddiOp, arith.SubiOp, arith.MuliOp,
    arith.AndIOp, arith.OrIOp, arith.XOrIOp, arith.ShLIOp, arith.ShRSIOp, arith.ShRUIOp, arith.ConstantOp,
    arith.CmpiOp, arith.CmpfOp, arith.SelectOp, arith.NegfOp, arith.MaximumfOp, arith.MinimumfOp,
    arith.MaxnumfOp, arith.MinnumfOp, arith.MaxSIOp, arith.MinSIOp, arith.MaxUIOp, arith.MinUIOp,
    arith.IndexCastOp, arith.ExtSIOp, arith.ExtUIOp, arith.TruncIOp, arith.SIToFPOp, arith.UIToFPOp,
    arith.FPToSIOp, arith.FPToUIOp, arith.ExtFOp, arith.TruncFOp, arith.BitcastOp, math.AbsFOp,
    math.AbsIOp, math.SqrtOp, math.FmaOp, math.CopySignOp, math.FloorOp, math.CeilOp, math.TruncOp,
    math.RoundEvenOp, math.RoundOp,
)


@dataclass(frozen=True)
class Streamable:
    """A parallel loop whose stores may stream: its stores (each `buffer[iv]` of one
    element size) and how many iterations fill one 64-byte line."""

    stores: tuple[memref.StoreOp, ...]
    element_bytes: int

    @property
    def unroll(self) -> int:
        return LINE // self.element_bytes


def streamable(op: scf.ParallelOp, inside: set, element_bytes) -> Streamable | None:
    """Whether `op` (a 1-d, unit-step parallel loop; `inside`: the values its body defines)
    is an elementwise loop whose stores can stream; `element_bytes(memref type)` gives a
    buffer's element size in memory."""
    block = op.body.block
    iv = block.args[0]
    stores: list[memref.StoreOp] = []
    invariant_reads: set[SSAValue] = set()
    ops = list(block.ops)
    for o in ops:
        if isinstance(o, memref.StoreOp):
            if not _flat_at(o.memref, o.indices, iv, inside):
                return None
            stores.append(o)
        elif isinstance(o, memref.LoadOp):
            if _flat_at(o.memref, o.indices, iv, inside):
                continue
            if o.memref not in inside and not any(i in inside for i in o.indices):
                invariant_reads.add(o.memref)
                continue
            return None
        elif isinstance(o, scf.ReduceOp):
            if o.args:
                return None
        elif not isinstance(o, _ARITH):
            return None
    if not stores or any(s.memref in invariant_reads for s in stores):
        return None
    sizes = {element_bytes(s.memref.type) for s in stores}
    if len(sizes) != 1:
        return None
    size = sizes.pop()
    if size not in (1, 2, 4, 8) or len(ops) * (LINE // size) > MAX_UNROLLED:
        return None
    return Streamable(tuple(stores), size)


def _flat_at(buffer: SSAValue, indices, iv: SSAValue, inside: set) -> bool:
    """`buffer[iv]` on a 1-d buffer made outside the loop."""
    return (isinstance(buffer.type, MemRefType) and len(buffer.type.get_shape()) == 1
            and len(indices) == 1 and indices[0] == iv and buffer not in inside)


def store_alignment(k: int, element_bytes: int) -> int:
    """The alignment of `base + k` elements when base is 64-byte aligned."""
    offset = k * element_bytes
    return LINE if offset % LINE == 0 else offset & -offset


def store_fence(b: ir.IRBuilder, module: ir.Module) -> None:
    """A fence after non-temporal stores: `sfence` on x86, a sequentially consistent fence
    elsewhere."""
    import llvmlite.binding as llvm
    if llvm.get_default_triple().startswith(("x86_64", "i686", "i386")):
        fn = module.globals.get("llvm.x86.sse.sfence") or \
            ir.Function(module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse.sfence")
        b.call(fn, [])
    else:
        b.fence("seq_cst")


def nontemporal(module: ir.Module) -> ir.MDValue:
    return module.add_metadata([ir.IntType(32)(1)])
