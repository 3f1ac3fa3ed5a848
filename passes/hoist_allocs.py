"""`hoist-allocs`: a buffer that a loop body allocates and frees in the same iteration,
with a size that does not change between iterations, is allocated once before the
loop and freed once after it; the index arithmetic its size needs moves out first.
A scan's step then runs without touching the allocator (the `scan_overhead` workload of
benchmarks/ times a step of a scalar recurrence).

    scf.for %t = ... {                       %b = memref.alloc(%n)
      %b = memref.alloc(%n)          ->      scf.for %t = ... {
      ...                                      ...
      memref.dealloc %b                      }
    }                                        memref.dealloc %b

Only `scf.for` and `scf.while` loops: an `scf.parallel` body runs on several threads
at once, each needing its own buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, builtin, memref, scf
from xdsl.ir import Block, BlockArgument, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter


def _inside(v: SSAValue, loop: Operation) -> bool:
    owner = v.owner
    op = owner.parent_op() if isinstance(v, BlockArgument) else owner
    return op is not None and (op is loop or loop.is_ancestor(op))


def _invariant_arith(op: Operation, loop: Operation) -> bool:
    pure = op.name.startswith("arith.") or isinstance(op, memref.DimOp)
    return pure and not op.regions and not any(_inside(v, loop) for v in op.operands)


def _bodies(loop: Operation) -> list[Block]:
    if isinstance(loop, scf.ForOp):
        return [loop.body.block]
    return [loop.after_region.block]


def hoist(loop: Operation) -> bool:
    """Move invariant index arithmetic, then alloc/dealloc pairs, out of `loop`."""
    moved = False
    for block in _bodies(loop):
        for op in list(block.ops):
            if _invariant_arith(op, loop):
                op.detach()
                Rewriter.insert_op(op, InsertPoint.before(loop))
                moved = True
        for op in list(block.ops):
            if not isinstance(op, memref.AllocOp) or any(_inside(v, loop) for v in op.operands):
                continue
            buf = op.memref
            frees = [u.operation for u in buf.uses if isinstance(u.operation, memref.DeallocOp)]
            escapes = any(isinstance(u.operation, (scf.YieldOp, scf.ConditionOp)) or
                          u.operation.name == "func.return" for u in buf.uses)
            if len(frees) != 1 or frees[0].parent is not block or escapes:
                continue
            op.detach()
            Rewriter.insert_op(op, InsertPoint.before(loop))
            # a size the loop would have rejected (its checks stay inside) must not fail here
            zero = None
            for k, size in enumerate(list(op.dynamic_sizes)):
                if zero is None:
                    zero = arith.ConstantOp.from_int_and_width(0, size.type)
                    Rewriter.insert_op(zero, InsertPoint.before(op))
                clamp = arith.MaxSIOp(size, zero.result)
                Rewriter.insert_op(clamp, InsertPoint.before(op))
                op.operands[k] = clamp.result
            free = frees[0]
            free.detach()
            Rewriter.insert_op(free, InsertPoint.after(loop))
            moved = True
    return moved


@dataclass(frozen=True)
class HoistAllocsPass(ModulePass):
    """Allocate loop-invariant temporaries of scf.for/scf.while bodies once, outside the loop."""

    name = "hoist-allocs"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        changed = True
        while changed:  # inner loops first; what leaves an inner loop may leave the outer one too
            changed = False
            for loop in reversed([o for o in op.walk() if isinstance(o, (scf.ForOp, scf.WhileOp))]):
                changed |= hoist(loop)
