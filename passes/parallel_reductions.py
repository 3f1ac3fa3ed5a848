"""`parallel-reductions` (GPU pipeline only): reduction loop nests of the loops level become
MLIR's canonical parallel reductions, `scf.parallel` with init values and an `scf.reduce`
region, which the PTX backend maps to warp shuffles, shared memory and atomics.

A *reduction nest* is a perfect nest of `scf.for` loops carrying one accumulator, whose
innermost body computes an element `x` without touching the accumulator and yields
`acc ⊕ x` for an associative, commutative `⊕` (`arith.addf`/`mulf` with `reassoc`,
`maximumf`, `minimumf`, `addi`, `muli`, `max/minsi`, `max/minui`, `andi`, `ori`, `xori`)
on a 32- or 64-bit type, and which stores nothing:

    %r = scf.for %i = ... iter_args(%a = %init) -> (f64) {      %r = scf.parallel (%i, %j) = ...
      %s = scf.for %j = ... iter_args(%b = %a) -> (f64) {          init (%init) -> f64 {
        %x = <element at %i, %j>                          ->       %x = <element at %i, %j>
        %n = arith.addf %b, %x fastmath<reassoc> : f64            scf.reduce(%x : f64) {
        scf.yield %n : f64                                         ^bb0(%l: f64, %r: f64):
      }                                                              %c = arith.addf %l, %r ...
      scf.yield %s : f64                                             scf.reduce.return %c : f64
    }                                                              } }

Two places are rewritten:

- **full reductions** at the host level (outside every `scf.parallel`, and inside no loop
  that would otherwise run as one device segment, so a scan's step keeps its serial kernel);
- **row reductions**: in the body of a host-level 1-d `scf.parallel` (one iteration a row),
  each reduction nest becomes a nested reducing `scf.parallel`, and each `scf.for` whose
  iterations touch disjoint elements (every access to a buffer it stores to is at one index
  list that holds the loop's induction variable, as lower-to-loops writes an output row)
  becomes a nested `scf.parallel`; the backend spreads both over the threads of a row. The
  row body is rewritten only when that leaves nothing that threads sharing a row could race
  on: every other op that touches memory is a load, a check, or a store to a buffer the body
  never reads (redundant stores of one value are harmless).

- **column reductions** and other host-level loops over independent elements: a host-level
  `scf.for` whose iterations touch disjoint elements (as above) becomes an `scf.parallel`
  (an init loop `acc[j] = 0`), and a host-level `scf.for %i` whose body is such a loop
  `scf.for %j` (with only pure index math beside it) is interchanged into
  `scf.parallel %j { scf.for %i }`: `acc[j] += x[i, j]` becomes a thread per column that
  walks the rows in their order, its loads coalesced across a warp (the loops level
  writes a column sum row by row, which one GPU thread would run alone).

Accumulation semantics are unchanged: the accumulator's type (float64 for float32 sums) and
the init value are the loops level's; only the order of the combination changes, which
`reassoc` (floats) or exactness (integers, max/min) allows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, builtin, cf, func, memref, scf
from xdsl.dialects.builtin import IndexType, IntegerType
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

# associative and commutative combinations; float add/mul only with `reassoc`, which is the
# loops level's promise that the order of a sum may change
_EXACT = (arith.MaximumfOp, arith.MinimumfOp, arith.AddiOp, arith.MuliOp, arith.MaxSIOp, arith.MinSIOp,
          arith.MaxUIOp, arith.MinUIOp, arith.AndIOp, arith.OrIOp, arith.XOrIOp)
_REASSOCIABLE = (arith.AddfOp, arith.MulfOp)

# ops that change memory or the allocator: never inside a reduction nest
# what only the host does (backends/ptx.py): a loop holding one of these already runs on the host
_HOST_ONLY = (memref.AllocOp, memref.DeallocOp, memref.CopyOp, func.CallOp, scf.ParallelOp)
_EFFECTS = (memref.StoreOp, memref.AllocOp, memref.DeallocOp, memref.CopyOp, func.CallOp, scf.ParallelOp)


def combiner_kind(op: Operation) -> bool:
    """Whether `op` combines two accumulators associatively and commutatively."""
    if isinstance(op, _EXACT):
        return True
    if isinstance(op, _REASSOCIABLE):
        fm = op.properties.get("fastmath")
        return fm is not None and "reassoc" in {str(f).split(".")[-1].lower() for f in fm.data}
    return False


def identity_value(op: Operation, width: int) -> float | int:
    """The neutral element of the combining `op` on `width`-bit values, as a Python number
    (-0.0 for a float sum: x + -0.0 is x, also for x = -0.0). Integers are two's complement
    bit patterns read as signed (all ones is -1)."""
    floats = {arith.AddfOp: -0.0, arith.MulfOp: 1.0, arith.MaximumfOp: -math.inf, arith.MinimumfOp: math.inf}
    if type(op) in floats:
        return floats[type(op)]
    top, bottom = (1 << (width - 1)) - 1, -(1 << (width - 1))
    value = {arith.AddiOp: 0, arith.OrIOp: 0, arith.XOrIOp: 0, arith.MaxUIOp: 0, arith.MuliOp: 1,
             arith.MaxSIOp: bottom, arith.MinSIOp: top, arith.MinUIOp: -1, arith.AndIOp: -1}.get(type(op))
    if value is None:
        raise ValueError(f"no identity for the reduction {op.name}")
    return value


def _word_sized(t) -> bool:
    """32- and 64-bit accumulators: what shuffles and atomics (or a CAS loop) handle whole."""
    if isinstance(t, IndexType):
        return True
    if isinstance(t, IntegerType):
        return t.width.data in (32, 64)
    return isinstance(t, (builtin.Float32Type, builtin.Float64Type))


def _defined_in(v: SSAValue, op: Operation) -> bool:
    owner = v.owner
    where = owner.parent_op() if isinstance(owner, Block) else owner
    return where is not None and (where is op or op.is_ancestor(where))


@dataclass
class _Nest:
    loops: list[scf.ForOp]         # outermost first
    hoisted: list[Operation]       # ops of the outer levels, in order (pure of the accumulator)
    body: list[Operation]          # the innermost level's ops, minus the combination and yield
    combine: Operation             # acc ⊕ x
    element: SSAValue              # x


def reduction_nest(loop: scf.ForOp) -> _Nest | None:
    """`loop` as a reduction nest, or None when it is not one."""
    if len(loop.iter_args) != 1 or not _word_sized(loop.iter_args[0].type):
        return None
    loops, hoisted = [loop], []
    while True:
        block = loops[-1].body.block
        ops = list(block.ops)
        acc = block.args[1]
        inner = ops[-2] if len(ops) >= 2 else None
        if (isinstance(inner, scf.ForOp) and len(inner.iter_args) == 1 and inner.iter_args[0] is acc
                and list(ops[-1].operands) == [inner.results[0]] and acc.has_one_use()
                and not any(op.regions for op in ops[:-2])):
            hoisted.extend(ops[:-2])
            loops.append(inner)
            continue
        break
    yield_ = ops[-1]
    if len(yield_.operands) != 1 or not acc.has_one_use():
        return None
    combine = yield_.operands[0].owner
    if not isinstance(combine, Operation) or combine.parent_block() is not block or not combiner_kind(combine):
        return None
    if acc not in combine.operands or len(combine.operands) != 2:
        return None
    element = combine.operands[1] if combine.operands[0] is acc else combine.operands[0]
    if element is acc:
        return None
    for op in loop.walk():
        if isinstance(op, _EFFECTS):
            return None
    # the iteration space must be a box: bounds known before the nest
    for inner in loops[1:]:
        if any(_defined_in(v, loop) for v in (inner.lb, inner.ub, inner.step)):
            return None
    body = [op for op in ops[:-1] if op is not combine]
    return _Nest(loops, hoisted, body, combine, element)


def _reduce_region(combine: Operation) -> Region:
    """The scf.reduce region `^bb(%l, %r): %c = <combine> %l, %r; scf.reduce.return %c`."""
    t = combine.results[0].type
    block = Block(arg_types=[t, t])
    clone = combine.clone()
    clone.operands = list(block.args)
    block.add_op(clone)
    block.add_op(scf.ReduceReturnOp(clone.results[0]))
    return Region(block)


def to_parallel(nest: _Nest) -> scf.ParallelOp:
    """Replace the nest by one reducing scf.parallel over its whole iteration space."""
    outer = nest.loops[0]
    block = Block(arg_types=[IndexType()] * len(nest.loops))
    for loop, iv in zip(nest.loops, block.args):
        loop.body.block.args[0].replace_all_uses_with(iv)
    for op in [*nest.hoisted, *nest.body]:
        op.detach()
        block.add_op(op)
    block.add_op(scf.ReduceOp([nest.element], [_reduce_region(nest.combine)]))
    par = scf.ParallelOp([lp.lb for lp in nest.loops], [lp.ub for lp in nest.loops],
                         [lp.step for lp in nest.loops], Region(block), [outer.iter_args[0]])
    Rewriter.replace_op(outer, par)
    return par


def _independent_iterations(loop: scf.ForOp) -> bool:
    """Whether the iterations of a loop without accumulators touch disjoint elements: each
    buffer it stores to is only accessed in it at one index list holding its induction var."""
    if loop.iter_args:
        return False
    iv = loop.body.block.args[0]
    stored: dict[SSAValue, tuple] = {}
    for op in loop.walk():
        if isinstance(op, (memref.AllocOp, memref.DeallocOp, memref.CopyOp, func.CallOp, scf.ParallelOp)):
            return False
        if isinstance(op, memref.StoreOp):
            idx = tuple(op.indices)
            if iv not in idx or stored.setdefault(op.memref, idx) != idx:
                return False
    for op in loop.walk():
        if isinstance(op, memref.LoadOp) and op.memref in stored and tuple(op.indices) != stored[op.memref]:
            return False
    return bool(stored)


def _to_parallel_loop(loop: scf.ForOp) -> scf.ParallelOp:
    """An `scf.for` without accumulators as the 1-d `scf.parallel` of the same body."""
    body = loop.body.block
    new_block = Block(arg_types=[IndexType()])
    body.args[0].replace_all_uses_with(new_block.args[0])
    for op in list(body.ops)[:-1]:  # all but the scf.yield
        op.detach()
        new_block.add_op(op)
    new_block.add_op(scf.ReduceOp())
    par = scf.ParallelOp([loop.lb], [loop.ub], [loop.step], Region(new_block))
    Rewriter.replace_op(loop, par)
    return par


def _interchangeable(outer: scf.ForOp) -> scf.ForOp | None:
    """The inner loop of `for %i { pure index math; for %j {...} }` when `%j`'s iterations
    touch disjoint elements and its bounds are known before `%i`: then every dependence of
    the nest is between iterations of one `%j`, whose order over `%i` interchanging keeps."""
    if outer.iter_args:
        return None
    ops = list(outer.body.block.ops)
    if len(ops) < 2 or not isinstance(ops[-2], scf.ForOp):
        return None
    inner = ops[-2]
    if any(op.regions or _touches_memory(op) for op in ops[:-2]):
        return None
    if any(_defined_in(v, outer) for v in (inner.lb, inner.ub, inner.step)):
        return None
    return inner if _independent_iterations(inner) else None


def interchange_to_parallel(outer: scf.ForOp, inner: scf.ForOp) -> scf.ParallelOp:
    """`for %i { m; for %j { b } }` -> `parallel %j { for %i { m; b } }`."""
    serial = Block(arg_types=[IndexType()])
    outer.body.block.args[0].replace_all_uses_with(serial.args[0])
    par_block = Block(arg_types=[IndexType()])
    inner.body.block.args[0].replace_all_uses_with(par_block.args[0])
    for op in list(outer.body.block.ops)[:-2]:  # the index math
        op.detach()
        serial.add_op(op)
    for op in list(inner.body.block.ops)[:-1]:  # the inner body, less its scf.yield
        op.detach()
        serial.add_op(op)
    serial.add_op(scf.YieldOp())
    par_block.add_op(scf.ForOp(outer.lb, outer.ub, outer.step, [], Region(serial)))
    par_block.add_op(scf.ReduceOp())
    par = scf.ParallelOp([inner.lb], [inner.ub], [inner.step], Region(par_block))
    Rewriter.replace_op(outer, par)
    return par


def _touches_memory(op: Operation) -> bool:
    return any(isinstance(o, (memref.LoadOp, memref.StoreOp, *_EFFECTS)) for o in op.walk())


def parallelize_rows(par: scf.ParallelOp) -> bool:
    """Rewrite the row body of `par` (see the module docstring); False when it is left alone."""
    if par.initVals or len(par.lowerBound) != 1:
        return False
    block = par.body.block
    nests, spread = [], []
    read = {o.memref for o in par.walk() if isinstance(o, memref.LoadOp)}
    for op in block.ops:
        if isinstance(op, scf.ForOp):
            nest = reduction_nest(op)
            if nest is not None:
                nests.append(nest)
                continue
            if _independent_iterations(op):
                spread.append(op)
                continue
        if isinstance(op, memref.StoreOp):
            if op.memref in read:
                return False
        elif not isinstance(op, (memref.LoadOp, cf.AssertOp, scf.ReduceOp)) and _touches_memory(op):
            return False  # loads and checks are safe to share; other memory effects are not
    if not nests:  # nothing to share: one thread a row stays the better mapping
        return False
    for nest in nests:
        to_parallel(nest)
    for loop in spread:
        _to_parallel_loop(loop)
    return True


def _runs_on_host(op: Operation) -> bool:
    """Whether `op` is at the host level of the GPU program and would stay there: no
    `scf.parallel` above it, and every loop above it already launches kernels (a loop that
    does not runs as one device segment, which a reduction kernel would split into launches)."""
    parent = op.parent_op()
    while parent is not None and not isinstance(parent, func.FuncOp):
        if isinstance(parent, scf.ParallelOp):
            return False
        if isinstance(parent, (scf.ForOp, scf.WhileOp)) and not any(
                isinstance(o, _HOST_ONLY) for o in parent.walk()):
            return False
        parent = parent.parent_op()
    return True


@dataclass(frozen=True)
class ParallelReductionsPass(ModulePass):
    """Reduction loop nests to scf.parallel with scf.reduce (full, row and column reductions),
    and host loops over independent elements to scf.parallel, for GPUs."""

    name = "parallel-reductions"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        rows = [p for p in op.walk() if isinstance(p, scf.ParallelOp) and _runs_on_host(p)]
        fulls = [f for f in op.walk() if isinstance(f, scf.ForOp) and _runs_on_host(f)]
        for par in rows:
            parallelize_rows(par)
        rewritten: set[Operation] = set()
        for loop in fulls:
            if loop in rewritten:  # an inner level of a nest rewritten already
                continue
            nest = reduction_nest(loop)
            if nest is not None:
                rewritten.update(nest.loops)
                to_parallel(nest)
                continue
            # independent elements: an init loop, or a column reduction to interchange
            if loop.parent is None or not _runs_on_host(loop):
                continue  # moved under an scf.parallel by an earlier rewrite
            inner = _interchangeable(loop)
            if inner is not None:
                rewritten.add(inner)
                interchange_to_parallel(loop, inner)
            elif _independent_iterations(loop):
                _to_parallel_loop(loop)
