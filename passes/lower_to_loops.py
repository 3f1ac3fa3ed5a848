"""`lower-to-loops`: each buffer-form `ikf.kernel` becomes loops: an `scf.parallel`
over the output's first axis (its iterations write disjoint elements, so the
backend may split it across threads) with `scf.for` loops inside.

The kernel's output is computed one element at a time: a loop nest over the
output's shape, and in its body the yielded value "at" the loop's index. Each
op says how its value at an index is computed (`emit_element`), asking for its
operands at derived indices; inputs are loads, reductions open inner loops
with accumulators.

Two things keep the work linear:
- every value is computed at the shallowest loop level where its index is
  known (a row's max, whose index does not depend on the inner loop, is
  computed once per row, before the inner loop);
- within a level, a value at the same index is computed once (memoised).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from xdsl.context import Context
from xdsl.dialects import arith, builtin, cf, memref, scf
from xdsl.dialects.builtin import BytesAttr, DenseIntOrFPElementsAttr, IntegerAttr, StringAttr, TensorType, i64
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from irkit.dialects import ik as I
from irkit.dialects.fused import KernelOp
from irkit.dialects.ik import scalar as S
from irkit.dialects.ik.base import IkOp, describe
from irkit.errors import CompileError, split_kind
from irkit.loops import INDEX, EqualDims, IRDims
from irkit.passes.bufferize import memref_of
from irkit.types import dtype_of


class _Scope:
    """One loop level: where its ops go, and what it has computed."""

    __slots__ = ("tail", "child", "memo")

    def __init__(self, tail: Operation) -> None:
        self.tail = tail          # insert before this (the kernel, or the loop's yield)
        self.child: Operation | None = None  # an open inner loop: hoisted ops go before it
        self.memo: dict = {}

    def point(self) -> InsertPoint:
        return InsertPoint.before(self.child if self.child is not None else self.tail)


class _AtDepth:
    """A cursor that inserts at a fixed loop level (for IRDims)."""

    def __init__(self, em: "KernelEmitter", depth: int) -> None:
        self.em, self.depth = em, depth

    def emit(self, op: Operation):
        return self.em.emit_at(self.depth, op)

    @property
    def point(self) -> InsertPoint:
        return self.em.scopes[self.depth].point()

    def index(self, n: int) -> SSAValue:
        return self.em.index(n)

    def as_index(self, d):
        return self.em.as_index(d)

    def require(self, cond, message):
        self.emit(cf.AssertOp(cond, message))


class KernelEmitter:
    """Emits one kernel as loops; the interface ops use in `emit_element`."""

    index_type = INDEX

    def __init__(self, kernel: KernelOp, module: builtin.ModuleOp) -> None:
        self.kernel = kernel
        self.module = module
        self.linear = False
        self.current_op: Operation | None = None
        self.scopes: list[_Scope] = [_Scope(kernel)]
        self.depth_of: dict[SSAValue, int] = {}
        self.cursor = 0
        self._indices: dict[int, SSAValue] = {}
        self._globals: dict[Operation, SSAValue] = {}
        body = kernel.body.block
        self.inputs = dict(zip(body.args, kernel.inputs))
        self._dims: dict[SSAValue, list] = {}
        self._flat: dict[SSAValue, SSAValue] = {}
        # bufferize checked the equalities the shape rules require before the kernel runs:
        # none is checked again, each is remembered, and equal dims are one loop bound (x + y
        # and y * x over two dynamic vectors are sized by x and by y; one loop computes both)
        self.d = IRDims(_AtDepth(self, 0), self.dims, self._input_index, checks=False, equal=EqualDims())
        for a, m in self.inputs.items():
            self._dims[a] = [self.dim_of(m, k) for k in range(len(m.type.get_shape()))]
        for op in body.ops:
            if isinstance(op, I.ConstantOp):
                self._dims[op.result] = list(op.result.type.get_shape())
            elif isinstance(op, IkOp):
                self.d.context = describe(op)
                for r, dims in zip(op.results, op.shape_rule(self.d, op.operands, op.params)):
                    self._dims[r] = dims

    # -- emission -------------------------------------------------------------
    def emit_at(self, depth: int, op: Operation):
        Rewriter.insert_op(op, self.scopes[depth].point())
        for r in op.results:
            self.depth_of[r] = depth
        return op.results[0] if len(op.results) == 1 else op

    def emit(self, op: Operation):
        return self.emit_at(self.cursor, op)

    def index(self, n: int) -> SSAValue:
        if n not in self._indices:
            self._indices[n] = self.emit_at(0, arith.ConstantOp(IntegerAttr(int(n), INDEX)))
        return self._indices[n]

    def as_index(self, d) -> SSAValue:
        return self.index(d) if isinstance(d, int) else d

    def require(self, cond: SSAValue, message: str) -> None:
        """A run-time check inside the kernel; the message gets the op's source location."""
        op = self.current_op
        if op is not None:
            kind = message[:message.index(": ") + 2] if split_kind(message)[1] != message else ""
            text = message[len(kind):]
            if text.startswith(op.name + ": "):
                text = text[len(op.name) + 2:]
            message = f"{kind}{describe(op)}: {text}"
        self.emit(cf.AssertOp(cond, message))

    def depth(self, v: SSAValue) -> int:
        return self.depth_of.get(v, 0)

    # -- sizes ------------------------------------------------------------------
    def _same_dims(self, a: list, b: list) -> bool:
        return len(a) == len(b) and all(self.d.known_equal(x, y) for x, y in zip(a, b))

    def dims(self, v: SSAValue) -> list:
        return self._dims[v]

    def dim_of(self, m: SSAValue, k: int):
        size = m.type.get_shape()[k]
        if size >= 0:
            return size
        return self.emit_at(0, memref.DimOp(m, self.index(k)))

    def _input_index(self, v: SSAValue):
        m = self.inputs.get(v)
        if m is None:
            raise CompileError(f"lower-to-loops: the size {v} is not an input of the kernel")
        x = self.emit_at(0, memref.LoadOp.get(m, []))
        x = S.convert(_AtDepth(self, 0), x, dtype_of(v.type), np.dtype(np.int64))
        return self.emit_at(0, arith.IndexCastOp(x, INDEX))

    # -- values at indices --------------------------------------------------------
    def at(self, v: SSAValue, idx: Sequence[SSAValue]) -> SSAValue:
        """The element of kernel value `v` at `idx`."""
        idx = [self.as_index(i) for i in idx]
        depth = max((self.depth(i) for i in idx), default=0)
        key = (v, tuple(idx))
        memo = self.scopes[depth].memo
        if key in memo:
            return memo[key]
        # Compute at `depth`: loops deeper than that are set aside meanwhile (the value
        # does not depend on them), so loops it opens nest right under `depth`.
        saved, self.cursor = self.cursor, depth
        suspended = self.scopes[depth + 1:]
        del self.scopes[depth + 1:]
        try:
            if v in self.inputs:
                out = self.emit(memref.LoadOp.get(self.inputs[v], idx))
            elif (acc := self._accumulated(v, idx)) is not None:
                out = acc
            else:
                op = v.owner
                if not hasattr(op, "emit_element"):
                    raise CompileError(f"lower-to-loops: {op.name} cannot be computed element by element")
                outer_op, self.current_op = self.current_op, op
                try:
                    out = op.emit_element(self, idx)
                finally:
                    self.current_op = outer_op
        finally:
            self.scopes.extend(suspended)
            self.cursor = saved
        memo[key] = out
        return out

    def operand(self, v: SSAValue, idx: Sequence[SSAValue]) -> SSAValue:
        """v at idx under numpy's broadcasting (right-aligned; static 1s read index 0)."""
        shape = v.type.get_shape()
        if self.linear:  # a flat elementwise kernel: every value is 0-d or of the output's shape
            return self.at(v, list(idx) if shape else [])
        off = len(idx) - len(shape)
        return self.at(v, [self.index(0) if s == 1 else idx[off + k] for k, s in enumerate(shape)])

    def affine(self, iv: SSAValue, step: int, start) -> SSAValue:
        x = iv if step == 1 else self.emit(arith.MuliOp(iv, self.index(step)))
        if isinstance(start, int) and start == 0:
            return x
        return self.emit(arith.AddiOp(x, self.as_index(start)))

    def linear_index(self, ivs: Sequence[SSAValue], extents: Sequence) -> SSAValue:
        """The C-order position of ivs within extents, as i64."""
        lin = self.index(0)
        for iv, e in zip(ivs, extents):
            lin = self.emit(arith.AddiOp(self.emit(arith.MuliOp(lin, self.as_index(e))), iv))
        return self.emit(arith.IndexCastOp(lin, i64))

    def constant_element(self, op: I.ConstantOp, idx: Sequence[SSAValue]) -> SSAValue:
        """An element of a constant array, read from a global."""
        if op not in self._globals:
            mtype = memref_of(op.result.type)
            name = f"__kconst_{id(op):x}"
            init = DenseIntOrFPElementsAttr(TensorType(mtype.element_type, mtype.get_shape()),
                                            BytesAttr(op.value.data.data))
            glob = memref.GlobalOp.get(StringAttr(name), mtype, init, constant=builtin.UnitAttr(), alignment=64)
            self.module.body.block.insert_op_before(glob, self.module.body.block.first_op)
            self._globals[op] = self.emit_at(0, memref.GetGlobalOp(name, mtype))
        return self.emit(memref.LoadOp.get(self._globals[op], list(idx)))

    # -- loops ------------------------------------------------------------------------
    def reduce_loop(self, extents: Sequence, inits: Sequence[SSAValue],
                    body: Callable[[list[SSAValue], list[SSAValue]], Sequence[SSAValue]],
                    depends_on: Sequence[SSAValue] = ()) -> list[SSAValue]:
        """Loops over `extents` at the current level carrying `inits`; body(ivs, accs) -> accs."""
        return self.loop_nest(extents, inits, body)

    def loop_nest(self, extents: Sequence, inits: Sequence[SSAValue],
                  body: Callable[[list[SSAValue], list[SSAValue]], Sequence[SSAValue]],
                  parallel: bool = False) -> list[SSAValue]:
        if not extents:
            return list(body([], list(inits)))
        return self._level(list(extents), 0, [], list(inits), body, parallel)

    def _level(self, extents, k, ivs, accs, body, parallel=False):
        if isinstance(extents[k], int) and extents[k] == 1:  # no loop for a dim of size 1
            if k + 1 == len(extents):
                return list(body(ivs + [self.index(0)], accs))
            return self._level(extents, k + 1, ivs + [self.index(0)], accs, body, parallel)
        depth = self.cursor
        block = Block(arg_types=[INDEX, *[a.type for a in accs]])
        if parallel and k == 0 and not accs:
            # the outermost loop of an output nest: its iterations write disjoint elements
            terminator = scf.ReduceOp()
            block.add_op(terminator)
            loop = scf.ParallelOp([self.index(0)], [self.as_index(extents[k])], [self.index(1)],
                                  Region(block))
        else:
            terminator = scf.YieldOp()
            block.add_op(terminator)
            loop = scf.ForOp(self.index(0), self.as_index(extents[k]), self.index(1), accs, Region(block))
        self.emit_at(depth, loop)
        parent = self.scopes[depth]
        saved_child, parent.child = parent.child, loop
        self.scopes.append(_Scope(terminator))
        self.cursor = depth + 1
        for a in block.args:
            self.depth_of[a] = depth + 1
        try:
            iv, args = block.args[0], list(block.args[1:])
            if k + 1 == len(extents):
                out = body(ivs + [iv], args)
            else:
                out = self._level(extents, k + 1, ivs + [iv], args, body)
            if isinstance(terminator, scf.YieldOp):
                terminator.operands = list(out)
        finally:
            self.scopes.pop()
            self.cursor = depth
            parent.child = saved_child
        return list(loop.results)

    # -- the kernel ----------------------------------------------------------------------
    def _linear(self) -> bool:
        """Whether the kernel is elementwise over one shape with no broadcasting, so that it
        can run as a single flat loop over contiguous buffers."""
        from irkit.dialects.ik.elementwise import ElementwiseOp
        outs = list(self.kernel.yield_op.values)
        dims = self._dims[outs[0]]
        if len(dims) < 2 or any(not self._same_dims(self._dims[v], dims) for v in outs):
            return False
        shape = outs[0].type.get_shape()
        for op in self.kernel.body.block.ops:
            if isinstance(op, I.ConstantOp):
                if op.splat_value() is None and op.result.type.get_shape():
                    return False
            elif not isinstance(op, ElementwiseOp) and op is not self.kernel.yield_op:
                return False
            for r in op.results:
                if r.type.get_shape() and r.type.get_shape() != shape:
                    return False
        for a in self.inputs:
            if a.type.get_shape() and (a.type.get_shape() != shape or not self._same_dims(self._dims[a], dims)):
                return False
        return True

    def _in_order(self, ivs: list, dims: list, roots: list[SSAValue]) -> None:
        """Make the elementwise values the roots need at exactly `ivs`, in program order:
        `at` then finds each such operand already made, so its recursion stays one op deep
        however long the chain (a graph of thousands of ops would otherwise exhaust
        Python's stack). Values needed elsewhere (under a reduction) are left to `at`."""
        def read_at_ivs(r: SSAValue) -> bool:
            if self.linear:
                return True
            return len(r.type.get_shape()) == len(ivs) and self._same_dims(self._dims.get(r, []), dims)
        needed: set[SSAValue] = set()
        stack = list(roots)
        while stack:
            r = stack.pop()
            if r in needed or not isinstance(r.owner, I.ElementwiseOp) or not read_at_ivs(r):
                continue
            needed.add(r)
            stack.extend(r.owner.operands)
        for op in self.kernel.body.block.ops:
            for r in op.results:
                if r in needed:
                    self.at(r, ivs if r.type.get_shape() else [])

    def _flatten(self, m: SSAValue) -> SSAValue:
        """`m` as one flat memref, made once per buffer: a kernel that writes its result
        into its input's buffer (bufferize's in place reuse) then reads and writes through
        one pointer, which LLVM sees is the same; through two views it must check at run
        time whether they overlap, and they always do (the loop ran without its vector
        form: an RNN step's tanh in place, 3x slower than numpy)."""
        from irkit.loops import flatten
        if m not in self._flat:
            self._flat[m] = flatten(_AtDepth(self, 0), m)
        return self._flat[m]

    def run(self) -> None:
        yielded = list(self.kernel.yield_op.values)
        outputs = list(self.kernel.outputs)
        if self._linear():
            self.linear = True
            total = self.d.product(self._dims[yielded[0]])
            for a, m in list(self.inputs.items()):
                if m.type.get_shape():
                    self.inputs[a] = self._flatten(m)
            outputs = [self._flatten(m) for m in outputs]
            groups = [([total], list(zip(yielded, outputs)))]
        else:
            groups = []  # outputs of the same dims share one loop nest
            for v, out in zip(yielded, outputs):
                for dims, members in groups:
                    if self._same_dims(dims, self._dims[v]):
                        members.append((v, out))
                        break
                else:
                    groups.append((self._dims[v], [(v, out)]))
        column = self._column_reduction()
        for dims, members in groups:
            if column is not None and members[0][0] is yielded[0]:
                self._accumulate(column)

            def body(ivs, _accs, dims=dims, members=members):
                self._in_order(ivs, dims, [v for v, _ in members])
                for v, out in members:
                    x = self.at(v, ivs)
                    self.emit(memref.StoreOp.get(x, out, ivs))
                return []
            self.loop_nest(dims, [], body, parallel=True)
        if column is not None:
            for buf in self._acc_buffers:
                self.emit_at(0, memref.DeallocOp.get(buf))
        Rewriter.erase_op(self.kernel)

    # -- reductions over leading axes -------------------------------------------------------
    def _column_reduction(self) -> I.ReduceOp | None:
        """The kernel's reduction when it reduces leading axes only (a column sum, the bias
        gradient of a layer): computing it an output element at a time would read the input
        with a stride, so it is accumulated in row order into a buffer instead."""
        yielded = list(self.kernel.yield_op.values)
        reductions = [op for op in self.kernel.body.block.ops if isinstance(op, I.ReduceOp)]
        if len(yielded) != 1 or len(reductions) != 1 or self.linear:
            return None
        red = reductions[0]
        rank = len(red.x.type.get_shape())
        axes = red.params.axes
        if rank < 2 or not axes or rank - 1 in axes:
            return None
        if red.result.type.get_shape() != yielded[0].type.get_shape():
            return None
        return red

    def _accumulate(self, red: I.ReduceOp) -> None:
        """acc = init; for each input element in row order: acc[out index] = combine(...);
        then the reduction's value at an output index is its accumulator, finalised."""
        from xdsl.dialects.builtin import MemRefType
        p = red.params
        xdt = dtype_of(red.x.type)
        acc_dt = red.accumulator_dtype(xdt)
        out_dims = self._dims[red.result]
        saved, self.cursor = self.cursor, 0
        inits = red.initial(self, acc_dt)
        self.cursor = saved
        bufs = []
        for v in inits:
            mtype = MemRefType(v.type, [d if isinstance(d, int) else -(1 << 63) for d in out_dims])
            dyn = [self.as_index(d) for d in out_dims if not isinstance(d, int)]
            bufs.append(self.emit_at(0, memref.AllocOp(dyn, [], mtype, IntegerAttr(64, 64))))
        self._acc_buffers = bufs

        def init(ivs, _):
            for buf, v in zip(bufs, inits):
                self.emit(memref.StoreOp.get(v, buf, ivs))
            return []
        self.loop_nest(out_dims, [], init)
        xdims = self._dims[red.x]
        extents = [xdims[a] for a in p.axes]

        def acc_index(ivs):
            out = []
            for k, iv in enumerate(ivs):
                if k in p.axes:
                    if p.keepdims:
                        out.append(self.index(0))
                else:
                    out.append(iv)
            return out

        def step(ivs, _):
            aidx = acc_index(ivs)
            accs = [self.emit(memref.LoadOp.get(b, aidx)) for b in bufs]
            x = S.convert(self, self.at(red.x, ivs), xdt, acc_dt)
            new = red.combine(self, accs, x, [ivs[a] for a in p.axes], extents, acc_dt)
            for b, v in zip(bufs, new):
                self.emit(memref.StoreOp.get(v, b, aidx))
            return []
        self.loop_nest(xdims, [], step)
        self._column = (red, bufs[0], acc_dt)

    def _accumulated(self, v: SSAValue, idx) -> SSAValue | None:
        column = getattr(self, "_column", None)
        if column is None or v is not column[0].result:
            return None
        red, buf, acc_dt = column
        x = self.emit(memref.LoadOp.get(buf, list(idx)))
        return S.convert(self, x, red.final_dtype(acc_dt), dtype_of(red.result.type))


@dataclass(frozen=True)
class LowerToLoopsPass(ModulePass):
    """Kernels to scf loops over memrefs, one element at a time."""

    name = "lower-to-loops"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        import sys
        kernels = [k for k in op.walk() if isinstance(k, KernelOp)]
        limit = sys.getrecursionlimit()
        try:
            for k in kernels:
                if not k.outputs:
                    raise CompileError("lower-to-loops needs buffer-form kernels: run bufferize first")
                # `at` recurses once per op of a chain that _in_order could not make first
                # (values of other symbolic sizes); Python-to-Python calls use no C stack
                ops = sum(1 for _ in k.body.walk())
                sys.setrecursionlimit(max(limit, 200 + 8 * ops))
                KernelEmitter(k, op).run()
        finally:
            sys.setrecursionlimit(limit)


