"""`copies-to-loops` (CPU pipeline): a `memref.copy` of an array becomes a flat `scf.parallel`
of loads and stores, so that a copy runs as the elementwise loops do: split across the
runtime's thread pool when large, with non-temporal stores past the cache's size
(backends/streaming.py), vectorised (and LLVM makes a small one a `memcpy` again). One
`memcpy` call is one thread, and its stores read each output line in first below glibc's
own (per-call) threshold.

    memref.copy(%a, %b) : memref<?x?xf32>        %fa = memref.collapse_shape %a [[0, 1]]
                                                  %fb = memref.collapse_shape %b [[0, 1]]
                                          ->      scf.parallel (%i) = (%c0) to (%n) step (%c1) {
                                                    %x = memref.load %fa[%i]
                                                    memref.store %x, %fb[%i]
                                                  }

Copies of a scalar (rank 0) stay as they are, and so do copies inside a parallel loop's
body (it runs on a pool thread already).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import builtin, memref, scf
from xdsl.dialects.builtin import IndexType
from xdsl.ir import Block, Region
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from irkit.loops import Cursor, flatten, in_parallel_loop


def copy_as_loop(op: memref.CopyOp) -> None:
    """Replace `op` by its flat parallel loop."""
    c = Cursor(InsertPoint.before(op))
    src, dst = flatten(c, op.source), flatten(c, op.destination)
    n = c.as_index(c.dim(dst, 0))
    block = Block(arg_types=[IndexType()])
    i = block.args[0]
    value = memref.LoadOp.get(src, [i])
    block.add_ops([value, memref.StoreOp.get(value.res, dst, [i]), scf.ReduceOp()])
    c.emit(scf.ParallelOp([c.index(0)], [n], [c.index(1)], Region(block)))
    Rewriter.erase_op(op)


@dataclass(frozen=True)
class CopiesToLoopsPass(ModulePass):
    name = "copies-to-loops"

    def apply(self, ctx: Context, module: builtin.ModuleOp) -> None:
        for op in list(module.walk()):
            if isinstance(op, memref.CopyOp) and op.source.type.get_shape() and not in_parallel_loop(op):
                copy_as_loop(op)
