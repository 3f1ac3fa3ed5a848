"""`block-reductions` (CPU pipeline): a reduction loop nest (`sum(x)`, `max(exp(x) * y)`,
any nest `parallel-reductions` recognises) whose accumulator one thread would carry
alone becomes a parallel loop over blocks of a fixed size, each block reduced on its own
into a buffer of partial results, which one loop then combines in block order:

    %r = scf.for %i = %lb to %ub step %c1           %nb = (%ub - %lb) / %bsz        (full blocks)
           iter_args(%a = %init) -> (f64) {          %p = memref.alloc(%nb) : memref<?xf64>
      %x = <element at %i>                           scf.parallel (%b) = (%c0) to (%nb) step (%c1) {
      %s = arith.addf %a, %x fastmath<reassoc>   ->    %start = %lb + %b * %bsz
      scf.yield %s                                     %q = scf.for %j = %c0 to %bsz iter_args(%a = -0.0) {
    }                                                    <the body at %i = %start + %j>
                                                       }
                                                       memref.store %q, %p[%b]
                                                     }
                                                     %t = scf.for %b = %c0 to %nb iter_args(%a = %init)
                                                            { %a ⊕ %p[%b] }
                                                     memref.dealloc %p
                                                     %r = scf.for %i = %lb + %nb * %bsz to %ub
                                                            iter_args(%a = %t) { <the body> }  (the rest)

The backend runs the block loop on the thread pool when its work is large enough (the
block size is defined outside it, so its estimate counts every element) and serially
otherwise. A block covers BLOCK elements of the nest's iteration space (at least one of
the outermost loop's iterations), whatever the number of threads: the blocks and the
order their results combine in depend on the sizes only, so a sum is the same number on
one thread and on two. Only the order of the combination changes, which `reassoc`
(floats) or exactness (integers, max, min) allows; each block starts from the
combination's identity, and the nest's own initial value is combined in first.

Nests inside a parallel loop's body (a row of a row reduction) stay as they are, and so
do nests whose sizes are known and too small to give two blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, builtin, memref, scf
from xdsl.dialects.builtin import DYNAMIC_INDEX, FloatAttr, IndexType, IntegerAttr, MemRefType
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from irkit.loops import Cursor, in_parallel_loop
from irkit.passes.parallel_reductions import identity_value, reduction_nest

# elements of a nest's iteration space per block: a few microseconds of work, so that the
# thread pool balances hundreds of them, and few enough blocks that combining is nothing
BLOCK = 1 << 14


def _identity(op: Operation, t) -> arith.ConstantOp:
    """The combination's identity element as a constant of type t."""
    if isinstance(t, (builtin.Float32Type, builtin.Float64Type)):
        return arith.ConstantOp(FloatAttr(identity_value(op, t.bitwidth), t))
    return arith.ConstantOp(IntegerAttr(identity_value(op, t.width.data), t))


def _combined(c: Cursor, combine: Operation, a: SSAValue, b: SSAValue) -> SSAValue:
    clone = combine.clone()
    clone.operands = [a, b]
    return c.emit(clone)


def _static(v: SSAValue) -> int | None:
    owner = v.owner
    if isinstance(owner, arith.ConstantOp) and isinstance(owner.value, IntegerAttr):
        return owner.value.value.data
    return None


def _too_small(loops: list[scf.ForOp]) -> bool:
    """Whether the nest's sizes are known and give fewer than two blocks."""
    total = 1
    for loop in loops:
        lb, ub = _static(loop.lb), _static(loop.ub)
        if lb is None or ub is None:
            return False
        total *= max(ub - lb, 0)
    return total < 2 * BLOCK


def blockable(loop: scf.ForOp):
    """The reduction nest of `loop` when this pass rewrites it, else None."""
    if in_parallel_loop(loop):
        return None
    nest = reduction_nest(loop)
    if nest is None or isinstance(loop.iter_args[0].type, IndexType):
        return None
    if any(_static(lp.step) != 1 for lp in nest.loops) or _too_small(nest.loops):
        return None
    return nest


def block_reduction(nest) -> None:
    """Rewrite the nest as its blocks, their combination and the rest (above)."""
    outer = nest.loops[0]
    acc_type = outer.iter_args[0].type
    c = Cursor(InsertPoint.before(outer))
    zero, one = c.index(0), c.index(1)

    def extent(loop: scf.ForOp) -> SSAValue:
        return c.emit(arith.MaxSIOp(c.emit(arith.SubiOp(loop.ub, loop.lb)), zero))
    trip = extent(outer)
    if len(nest.loops) == 1:
        per_block = c.index(BLOCK)  # outer iterations per block
    else:
        inner = extent(nest.loops[1])
        for loop in nest.loops[2:]:
            inner = c.emit(arith.MuliOp(inner, extent(loop)))
        per_block = c.emit(arith.CeilDivSIOp(c.index(BLOCK), c.emit(arith.MaxSIOp(inner, one))))
    blocks = c.emit(arith.DivSIOp(trip, per_block))
    # fewer than two blocks (a size known only at run time): no buffer, the loop as it was
    enough = c.emit(arith.CmpiOp(blocks, c.index(2), "sge"))
    then, otherwise = Block(), Block()
    ct = Cursor(InsertPoint.at_end(then))
    partials = ct.alloc(MemRefType(acc_type, [DYNAMIC_INDEX]), [blocks])
    ct.emit(scf.ParallelOp([zero], [blocks], [one], Region(_block_body(nest, per_block, partials, zero, one))))

    def combine_partial(cl: Cursor, k: SSAValue, accs: list[SSAValue]) -> list[SSAValue]:
        return [_combined(cl, nest.combine, accs[0], cl.emit(memref.LoadOp.get(partials, [k])))]
    (total,) = ct.for_loop(zero, blocks, one, [outer.iter_args[0]], combine_partial)
    ct.emit(memref.DeallocOp.get(partials))
    ct.emit(scf.YieldOp(total))
    otherwise.add_op(scf.YieldOp(outer.iter_args[0]))
    branch = c.emit(scf.IfOp(enough, [acc_type], Region(then), Region(otherwise)))
    # the rest: the original loop from the first element past the blocks, carrying the total
    past = c.emit(arith.AddiOp(outer.lb, c.emit(arith.MuliOp(blocks, per_block))))
    rest_start = c.emit(arith.SelectOp(enough, past, outer.lb))
    outer.operands = [rest_start, outer.ub, outer.step, branch]


def _block_body(nest, per_block: SSAValue, partials: SSAValue, zero: SSAValue, one: SSAValue) -> Block:
    """partials[b] = the nest's reduction over block b, from the combination's identity."""
    outer = nest.loops[0]
    body = Block(arg_types=[IndexType()])
    cb = Cursor(InsertPoint.at_end(body))
    b = body.args[0]
    start = cb.emit(arith.AddiOp(outer.lb, cb.emit(arith.MuliOp(b, per_block))))
    identity = cb.emit(_identity(nest.combine, outer.iter_args[0].type))
    block_loop = outer.clone()
    block_loop.operands = [zero, per_block, one, identity]
    cb.emit(block_loop)
    iv = block_loop.body.block.args[0]
    at = arith.AddiOp(start, iv)  # the original induction variable
    Rewriter.insert_op(at, InsertPoint.at_start(block_loop.body.block))
    iv.replace_uses_with_if(at.result, lambda use: use.operation is not at)
    cb.emit(memref.StoreOp.get(block_loop.results[0], partials, [b]))
    cb.emit(scf.ReduceOp())
    return body


@dataclass(frozen=True)
class BlockReductionsPass(ModulePass):
    name = "block-reductions"

    def apply(self, ctx: Context, module: builtin.ModuleOp) -> None:
        nests = []
        for op in module.walk():
            if isinstance(op, scf.ForOp) and not any(op in n.loops for n in nests):
                nest = blockable(op)
                if nest is not None:
                    nests.append(nest)
        for nest in nests:
            block_reduction(nest)
