"""Building loop-level IR (upstream `scf`, `arith`, `memref`, `cf`): a cursor that
inserts ops, index arithmetic as a dim algebra, loop nests and checks.

Both `bufferize` (sizes, checks, standalone ops) and `lower-to-loops` (kernels)
build through these helpers, so each idiom is written once.
"""

from __future__ import annotations

from typing import Callable, Sequence

from xdsl.dialects import arith, cf, memref, scf
from xdsl.dialects.builtin import IndexType, IntegerAttr, MemRefType
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.rewriter import InsertPoint, Rewriter

from irkit.shapes import DimAlgebra

INDEX = IndexType()


class Cursor:
    """An insertion point that moves along as ops are inserted."""

    def __init__(self, point: InsertPoint) -> None:
        self.point = point

    def emit(self, op: Operation) -> SSAValue | Operation:
        """Insert `op`; return its single result (or the op when it has none)."""
        Rewriter.insert_op(op, self.point)
        if len(op.results) == 1:
            return op.results[0]
        return op

    def index(self, n: int) -> SSAValue:
        return self.emit(arith.ConstantOp(IntegerAttr(int(n), INDEX)))

    def as_index(self, d: int | SSAValue) -> SSAValue:
        return self.index(d) if isinstance(d, int) else d

    def require(self, cond: SSAValue, message: str) -> None:
        """A run-time check: `message` may start with `IndexError: ` and the like."""
        self.emit(cf.AssertOp(cond, message))

    def dim(self, buf: SSAValue, axis: int) -> int | SSAValue:
        """A memref's size along `axis`: an int when static."""
        size = buf.type.get_shape()[axis]
        if size >= 0:
            return size
        return self.emit(memref.DimOp(buf, self.index(axis)))

    def dims(self, buf: SSAValue) -> list[int | SSAValue]:
        return [self.dim(buf, k) for k in range(len(buf.type.get_shape()))]

    def alloc(self, mtype: MemRefType, dims: Sequence[int | SSAValue]) -> SSAValue:
        dynamic = [self.as_index(d) for d, s in zip(dims, mtype.get_shape()) if s < 0]
        return self.emit(memref.AllocOp(dynamic, [], mtype, IntegerAttr(64, 64)))

    def for_loop(self, lb, ub, step, inits: Sequence[SSAValue],
                 body: Callable[["Cursor", SSAValue, list[SSAValue]], Sequence[SSAValue]]) -> list[SSAValue]:
        """scf.for from lb to ub; body(cursor, iv, iter_args) returns the values to yield."""
        block = Block(arg_types=[INDEX, *[v.type for v in inits]])
        yield_op = scf.YieldOp()
        block.add_op(yield_op)
        loop = scf.ForOp(self.as_index(lb), self.as_index(ub), self.as_index(step), list(inits),
                         Region(block))
        Rewriter.insert_op(loop, self.point)
        inner = Cursor(InsertPoint.before(yield_op))
        out = body(inner, block.args[0], list(block.args[1:]))
        yield_op.operands = list(out or [])
        return list(loop.results)

    def if_else(self, cond: SSAValue, then_fn: Callable[["Cursor"], None],
                else_fn: Callable[["Cursor"], None]) -> None:
        """scf.if without results; each branch built by a function of its own cursor."""
        blocks = []
        for fn in (then_fn, else_fn):
            block = Block()
            y = scf.YieldOp()
            block.add_op(y)
            fn(Cursor(InsertPoint.before(y)))
            blocks.append(block)
        self.emit(scf.IfOp(cond, [], Region(blocks[0]), Region(blocks[1])))

    def loop_nest(self, extents: Sequence[int | SSAValue], inits: Sequence[SSAValue],
                  body: Callable[["Cursor", list[SSAValue], list[SSAValue]], Sequence[SSAValue]]
                  ) -> list[SSAValue]:
        """Nested scf.for over `extents` (C order) carrying `inits`."""
        if not extents:
            return list(body(self, [], list(inits)))

        def level(cur: Cursor, k: int, ivs: list[SSAValue], accs: list[SSAValue]):
            def step(c: Cursor, iv: SSAValue, args: list[SSAValue]):
                if k + 1 == len(extents):
                    return body(c, ivs + [iv], args)
                return level(c, k + 1, ivs + [iv], args)
            return cur.for_loop(0, extents[k], 1, accs, step)
        return level(self, 0, [], list(inits))


def in_parallel_loop(op: Operation) -> bool:
    """Whether `op` sits in the body of an `scf.parallel` (a pool thread runs it already)."""
    parent = op.parent_op()
    while parent is not None:
        if isinstance(parent, scf.ParallelOp):
            return True
        parent = parent.parent_op()
    return False


def broadcast_index(cursor, ivs: Sequence[SSAValue], dims: Sequence) -> list[SSAValue]:
    """numpy broadcasting of an index into a buffer of `dims`: right-aligned, and a dim
    that is statically 1 is read at 0."""
    off = len(ivs) - len(dims)
    return [cursor.index(0) if isinstance(d, int) and d == 1 else ivs[off + k] for k, d in enumerate(dims)]


def reassociation(groups: Sequence[Sequence[int]]):
    """memref.collapse_shape/expand_shape's `reassociation`: [[0, 1], [2]] as MLIR has it."""
    from xdsl.dialects.builtin import ArrayAttr, i64
    return ArrayAttr([ArrayAttr([IntegerAttr(k, i64) for k in g]) for g in groups])


def flatten(cursor, m: SSAValue) -> SSAValue:
    """A contiguous memref seen as 1-d (no copy)."""
    t = m.type
    shape = t.get_shape()
    if len(shape) == 1:
        return m
    n = 1
    for s in shape:
        n = n * s if s >= 0 and n >= 0 else -(1 << 63)
    return cursor.emit(memref.CollapseShapeOp.build(
        operands=[m], result_types=[MemRefType(t.element_type, [n])],
        properties={"reassociation": reassociation([list(range(len(shape)))])}))


def unflatten(cursor, flat: SSAValue, mtype: MemRefType, dims: Sequence) -> SSAValue:
    """A 1-d contiguous memref seen with the shape `dims` of type `mtype` (no copy)."""
    from xdsl.dialects.builtin import DenseArrayBase, i64
    if len(mtype.get_shape()) == 1:
        return flat if flat.type == mtype else cursor.emit(memref.CastOp.get(flat, mtype))
    static = [d if isinstance(d, int) else -(1 << 63) for d in dims]
    dynamic = [d for d in dims if not isinstance(d, int)]
    return cursor.emit(memref.ExpandShapeOp.build(
        operands=[flat, dynamic], result_types=[mtype],
        properties={"reassociation": reassociation([list(range(len(dims)))]),
                    "static_output_shape": DenseArrayBase.from_list(i64, static)}))


def _key(d: object) -> object:
    """A dim as a union-find key: ints by value, SSA values by identity."""
    return ("int", d) if isinstance(d, int) else d


class EqualDims:
    """Dims known equal because a run-time check required it: in the block of the check
    (code emitted after it in that block runs only if it passed), per block a union-find.
    A later check of the same equality there is known true and emits nothing."""

    def __init__(self) -> None:
        self._parent: dict[Block, dict[object, object]] = {}

    def _find(self, parent: dict, x: object) -> object:
        # path halving: chains of unions stay short (a graph of 10,000 ops makes thousands)
        while x in parent:
            up = parent[x]
            if up not in parent:
                return up
            parent[x] = parent[up]
            x = parent[up]
        return x

    def union(self, a: object, b: object, block: Block) -> None:
        parent = self._parent.setdefault(block, {})
        ra, rb = self._find(parent, a), self._find(parent, b)
        if ra != rb:
            parent[ra] = rb

    def same(self, a: object, b: object, block: Block) -> bool:
        parent = self._parent.get(block)
        return parent is not None and self._find(parent, a) == self._find(parent, b)


class IRDims(DimAlgebra):
    """Dims as `int` or index SSA values; arithmetic becomes arith ops at a cursor. With
    `equal` (shared by the algebras of one function), the equalities that run-time checks
    required are remembered, so the same check is not emitted twice. With `checks=False`
    the checks were made before (bufferize's, for the loops of a kernel): no check is
    emitted, and the equalities are remembered all the same."""

    def __init__(self, cursor: Cursor, shape_of: Callable[[SSAValue], list],
                 unknown_value: Callable[[SSAValue], object], context: str = "",
                 checks: bool = True, equal: EqualDims | None = None) -> None:
        super().__init__(context)
        self.cursor = cursor
        self._shape_of = shape_of
        self._unknown = unknown_value
        self.checks = checks
        self.equal = equal

    def known_equal(self, a: object, b: object) -> bool:
        """Whether a == b is known here (the same value, equal ints, or checked), emitting nothing."""
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        return a is b or (self.equal is not None and self.equal.same(_key(a), _key(b), self.cursor.point.block))

    def eq(self, a: object, b: object) -> object:
        if not (isinstance(a, int) and isinstance(b, int)) and self.known_equal(a, b):
            return True
        return super().eq(a, b)

    def check_eq(self, a: object, b: object, message: str) -> object:
        if isinstance(a, int) and isinstance(b, int):
            return super().check_eq(a, b, message)
        if self.checks and not self.known_equal(a, b):
            super().check_eq(a, b, message)
        if self.equal is not None:
            self.equal.union(_key(a), _key(b), self.cursor.point.block)
        return a if isinstance(a, int) else b

    def shape_of(self, v: SSAValue) -> list:
        return self._shape_of(v)

    def unknown_value(self, v: SSAValue) -> object:
        return self._unknown(v)

    def data_dependent(self, key: object) -> object:
        from irkit.errors import CompileError
        raise CompileError("a data-dependent size is known only where the op computes it (its lower)")

    def _as(self, x: object) -> SSAValue:
        if isinstance(x, bool):
            return self.cursor.emit(arith.ConstantOp(IntegerAttr(-1 if x else 0, 1)))
        return self.cursor.as_index(x)

    _ARITH = {"add": arith.AddiOp, "sub": arith.SubiOp, "mul": arith.MuliOp,
              "floordiv": arith.FloorDivSIOp, "ceildiv": arith.CeilDivSIOp,
              "max": arith.MaxSIOp, "min": arith.MinSIOp, "and": arith.AndIOp, "or": arith.OrIOp}
    _CMP = {"lt": "slt", "le": "sle", "eq": "eq"}

    def _dyn(self, kind: str, a: object, b: object) -> object:
        if kind in self._CMP:
            return self.cursor.emit(arith.CmpiOp(self._as(a), self._as(b), self._CMP[kind]))
        if kind in ("floordiv", "ceildiv") and not (isinstance(b, int) and b != 0):
            # a size divided by a size that may be 0 (reshape's -1 next to a 0): the division
            # must not trap; the rule's own check reports the bad shape
            zero = self.cursor.emit(arith.CmpiOp(self._as(b), self._as(0), "eq"))
            b = self.cursor.emit(arith.SelectOp(zero, self._as(1), self._as(b)))
        return self.cursor.emit(self._ARITH[kind](self._as(a), self._as(b)))

    def _select(self, cond: object, a: object, b: object) -> object:
        return self.cursor.emit(arith.SelectOp(cond, self._as(a), self._as(b)))

    def _runtime_check(self, cond: object, message: str) -> None:
        if self.checks:
            self.cursor.require(cond, message)
