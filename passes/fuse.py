"""`fuse`: group tensor-level work into kernels (`ikf.kernel`), one loop nest each.

Ops are visited from the outputs back. An op joins the kernel(s) of its users
("is inlined") when every user is in a kernel and reading it there costs no
repeated work; otherwise it becomes the root of a kernel of its own, whose
result is written to memory. Reading is free of repeats when

- the user takes it element for element (elementwise, transpose, slice, ...),
- the user reduces it (each element is read once),
- or the user broadcasts it only along trailing axes: the loop nest computes
  it once per outer index and keeps it for the inner loop (this is what puts
  a row's max and its exp-sum in the same kernel as the softmax that uses them).

Cheap ops (constants, fills, index arithmetic, adds, casts, ...) may be
recomputed, so they are also copied into every kernel that reads them, and a
value needed by several kernels is inlined only when it is cheap. Ops that
are not elementwise (matmul, reshape, concatenate, scatter, nonzero) stay
outside kernels and are lowered on their own by `bufferize`. Values used only
as sizes stay outside too, computed as index arithmetic where they are needed.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import builtin, func
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.traits import IsTerminator
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from irkit.dialects import ik as I
from irkit.dialects.ik.linalg import reads_as_factor
from irkit.dialects.fused import KernelOp, YieldOp
from irkit.dialects.ik.base import IkOp
from irkit.dialects.ik.elementwise import CompareOp, ElementwiseOp
from irkit.errors import CompileError
from irkit.shapes import StaticDims, Sym, SymbolicDims

CHEAP = (I.ConstantOp, I.FillOp, I.ArangeOp, I.EyeOp, I.DimOp, I.BroadcastToOp, I.ExpandDimsOp,
         I.SqueezeOp, I.CastOp, I.NegOp, I.AbsOp, I.AddOp, I.SubOp, I.MulOp, I.MaximumOp,
         I.MinimumOp, CompareOp, I.WhereOp, I.ClipOp, I.AndOp, I.OrOp, I.XorOp, I.InvertOp,
         I.ReluOp, I.SquareOp, I.SignOp)
VIEWS = (I.ExpandDimsOp, I.SqueezeOp)


def shape_operand_indices(op: Operation) -> tuple[int, ...]:
    return tuple(getattr(op, "SHAPE_OPERANDS", ()))


def is_shape_use(user: Operation, index: int) -> bool:
    return index in shape_operand_indices(user)


def index_computable(op: Operation) -> bool:
    """Whether `op`'s value is index arithmetic that bufferize can compute without a buffer."""
    if not isinstance(op, IkOp) or op.results[0].type.get_shape():
        return False
    try:
        return op.index_value(_ProbeDims()) is not NotImplemented
    except LookupError:
        return False


class _ProbeDims(StaticDims):
    """Says whether a value is a chain of dims, constants and integer arithmetic."""

    def shape_of(self, v):
        return [None] * len(v.type.get_shape())

    def value(self, v):
        rule = getattr(v.owner, "index_value", None)
        if rule is None:
            raise LookupError
        got = rule(self)
        if got is NotImplemented:
            raise LookupError
        return got


def symbolic_shapes(block: Block) -> dict[SSAValue, list]:
    """Each value's dims as ints or symbols, with equalities the shape rules imply."""
    shapes: dict[SSAValue, list] = {}

    def static(v: SSAValue) -> list:
        return [d if d >= 0 else Sym(v) for d in v.type.get_shape()]

    algebra = SymbolicDims(lambda v: shapes[v] if v in shapes else static(v))
    for arg in block.args:
        if hasattr(arg.type, "get_shape"):
            shapes[arg] = static(arg)
            for x in shapes[arg]:
                algebra.mark_size(x)
    for op in block.ops:
        if isinstance(op, IkOp) and not isinstance(op, (I.ConstantOp, I.PlaceholderOp)):
            try:
                dims = op.shape_rule(algebra, op.operands, op.params)
            except Exception:
                dims = [static(r) for r in op.results]
            for r, d in zip(op.results, dims):
                shapes[r] = [algebra.norm(x) if x is not None else Sym(r) for x in d]
        else:
            for r in op.results:
                if hasattr(r.type, "get_shape"):
                    shapes[r] = static(r)
        for r in op.results:
            for x in shapes.get(r, ()):
                algebra.mark_size(x)
    shapes["__algebra__"] = algebra  # type: ignore[index]
    return shapes


def trailing_broadcast_only(algebra: SymbolicDims, sp: list, sc: list, trailing_ok: bool) -> bool:
    """Whether reading a value of shape sp for each element of sc repeats no work (or only
    along trailing axes, when `trailing_ok`)."""
    off = len(sc) - len(sp)
    expanded = []
    for k in range(len(sc)):
        j = k - off
        if j < 0:
            expanded.append(k)
            continue
        p, c = algebra.norm(sp[j]), algebra.norm(sc[k])
        if isinstance(p, int) and p == 1 and not (isinstance(c, int) and c == 1):
            expanded.append(k)
    if not expanded:
        return True
    if not trailing_ok:
        return False
    return expanded == list(range(expanded[0], len(sc)))


def edge_legal(producer: Operation, user: Operation, index: int, shapes, cheap: bool) -> bool:
    algebra = shapes["__algebra__"]
    sp = shapes.get(producer.results[0])
    if isinstance(user, I.ReduceOp):
        return True
    if isinstance(user, (ElementwiseOp, I.BroadcastToOp)):
        sc = shapes.get(user.results[0])
        if sp is None or sc is None:
            return cheap
        return trailing_broadcast_only(algebra, sp, sc, True) or cheap
    if isinstance(user, (I.TransposeOp, I.SliceOp, I.ExpandDimsOp, I.SqueezeOp, I.DimOp)):
        return True
    if isinstance(user, (I.GatherOp, I.FillOp)):
        return cheap
    return False


def is_cheap(op: Operation) -> bool:
    if isinstance(op, I.ConstantOp):
        return True
    return isinstance(op, CHEAP)


class Group:
    """A kernel being planned: its roots (outputs), its members, the shape of its roots, and
    its inputs (the ops outside it whose values its members read), kept as members join so
    that the cycle check of a merge starts from them without walking every member."""

    __slots__ = ("roots", "members", "inputs", "shape", "parent")

    def __init__(self, root: Operation, shape: list) -> None:
        self.roots = [root]
        self.members = {root}
        self.inputs = _producers(root) - self.members
        self.shape = shape
        self.parent: Group = self

    def add(self, op: Operation) -> None:
        self.members.add(op)
        self.inputs.discard(op)
        self.inputs |= _producers(op) - self.members

    def absorb(self, other: "Group") -> None:
        other.parent = self
        self.roots += other.roots
        self.members |= other.members
        self.inputs = (self.inputs | other.inputs) - self.members

    def find(self) -> "Group":
        g = self
        while g.parent is not g:
            g.parent = g.parent.parent
            g = g.parent
        return g


def plan(block: Block, max_ops: int) -> tuple[list[Group], set]:
    """Decide the kernels (groups of ops) and the ops that stay outside them."""
    ops = list(block.ops)
    index = {op: k for k, op in enumerate(ops)}
    shapes = symbolic_shapes(block)
    algebra = shapes["__algebra__"]
    groups_of: dict[Operation, set[Group]] = {}
    standalone: set[Operation] = set()

    def groups_of_user(u: Operation) -> set[Group] | None:
        gs = groups_of.get(u)
        return None if gs is None else {g.find() for g in gs}

    root_group: dict[Operation, Group] = {}

    def new_root(op: Operation) -> None:
        group = Group(op, shapes.get(op.results[0], []))
        groups_of[op] = {group}
        root_group[op] = group

    def same_shape(a: list, b: list) -> bool:
        return len(a) == len(b) and all(algebra.same(x, y) for x, y in zip(a, b))

    def creates_cycle(target: set[Group], at: int, extra: Operation | None = None) -> bool:
        """Whether merging `target` (and `extra`) into one kernel makes a cycle: an input of
        the merged kernel computed, through other kernels or ops, from one of its own values.
        (Ops not yet visited come before `at` and cannot depend on any kernel.)"""
        groups = list(target)
        if len(groups) == 1:
            members = groups[0].members

            def inside(op: Operation) -> bool:
                return op is extra or op in members
        else:
            def inside(op: Operation) -> bool:
                return op is extra or any(op in g.members for g in groups)
        stack = [op for g in target for op in g.inputs if not inside(op)]
        if extra is not None:
            stack += [op for op in _producers(extra) if not inside(op)]
        seen: set = set()
        while stack:
            op = stack.pop()
            if inside(op):
                return True
            if op in seen or index.get(op, -1) <= at:
                continue
            seen.add(op)
            group = root_group.get(op)
            if group is not None:  # another kernel: it depends on its own inputs
                group = group.find()
                if group not in seen:
                    seen.add(group)
                    stack.extend(group.inputs)
            else:
                stack.extend(_producers(op))
        return False

    def try_merge(target: set[Group], at: int, extra: Operation | None = None) -> Group | None:
        gs = list(target)
        if any(not same_shape(gs[0].shape, g.shape) for g in gs[1:]):
            return None
        if sum(len(g.members) for g in gs) + 1 > max_ops:  # with the op that joins
            return None
        if creates_cycle(target, at, extra):
            return None
        main = gs[0]
        for g in gs[1:]:
            main.absorb(g)
        return main

    def join_as_output(op: Operation, data: list, cheap: bool) -> bool:
        """When `op` cannot be inlined into every kernel that reads it (a reader outside any
        kernel, a full kernel, kernels that cannot merge), make it an output of the kernel
        its other readers' kernels merge into (or of the fullest one of them that takes
        it), rather than of a kernel of its own: those readers read it in registers, the
        rest from memory either way. Without this, a large graph whose first kernel is
        full fell apart into a kernel for almost every op (2,000 random elementwise ops:
        316 kernels)."""
        shape = shapes.get(op.results[0]) if len(op.results) == 1 else None
        if shape is None or isinstance(op, I.RequireOp):
            # a require read outside kernels stays a kernel of its own, which runs (and
            # raises its own message) before the size checks of the kernels that read it:
            # their sizes may mismatch exactly as its condition says (RandomStream.choice)
            return False
        candidates: set[Group] = set()
        for u, i in data:
            gs = groups_of_user(u)
            if gs is not None and edge_legal(op, u, i, shapes, cheap):
                candidates |= {g for g in gs if len(g.members) < max_ops and same_shape(g.shape, shape)}
        tries = ([candidates] if len(candidates) > 1 else []) + \
            [{g} for g in sorted(candidates, key=lambda g: (-len(g.members), index[g.roots[0]]))]
        for target in tries:
            group = try_merge(target, index[op], extra=op)
            if group is not None:
                group.roots.append(op)
                group.add(op)
                groups_of[op] = {group}
                root_group[op] = group
                return True
        return False

    for op in reversed(ops):
        if not isinstance(op, IkOp):
            continue
        if index_computable(op) and not isinstance(op, I.ConstantOp):
            # size arithmetic (dims, integer constants): bufferize computes it as index
            # values, and stores it for a kernel that reads it as data
            standalone.add(op)
            continue
        if not op.FUSIBLE or (isinstance(op, I.ConstantOp) and op.splat_value() is None
                              and op.result.type.get_shape()):
            standalone.add(op)
            continue
        uses = [(u.operation, u.index) for r in op.results for u in r.uses]
        data = [(u, i) for u, i in uses if not is_shape_use(u, i)]
        shape_only = len(data) < len(uses)
        if not data:
            if uses and index_computable(op):
                standalone.add(op)
            elif uses:
                new_root(op)
            continue
        if _compared_with_its_extremum(op):
            new_root(op)
            continue
        target: set[Group] = set()
        ok = True
        cheap = is_cheap(op)
        for u, i in data:
            gs = groups_of_user(u)
            if gs is None or not edge_legal(op, u, i, shapes, cheap):
                ok = False
                break
            target |= gs
        if ok and shape_only and not index_computable(op):
            ok = False
        if ok and len(target) > 1 and not cheap:
            merged = try_merge(target, index[op])
            ok = merged is not None
            target = {merged} if ok else target
        if ok and any(len(g.members) >= max_ops for g in target):
            ok = False
        if ok:
            groups_of[op] = set(target)
            for g in target:
                g.add(op)
            if shape_only:
                standalone.add(op)
            continue
        if isinstance(op, VIEWS) or index_computable(op):  # an integer constant read by sizes
            standalone.add(op)
        elif isinstance(op, I.ConstantOp) and not op.result.type.get_shape():
            # a number an op outside kernels reads (gemm's alpha and beta): bufferize hands it
            # the value, and stores it only where something reads it from memory
            standalone.add(op)
        elif isinstance(op, I.TransposeOp) and _feeds_only_products(op):
            standalone.add(op)
        elif shape_only or not join_as_output(op, data, cheap):
            new_root(op)
    final = {g.find() for gs in groups_of.values() for g in gs}
    for g in final:
        g.roots.sort(key=index.__getitem__)
    return sorted(final, key=lambda g: index[g.roots[-1]]), standalone


def _compared_with_its_extremum(op: Operation) -> bool:
    """Whether op's value is both reduced by max or min and compared elementwise (max's
    derivative: x == max(x)). Such a value is stored once and read by both: computed in the
    reduction's loop and again in the comparison's, a transcendental in it may differ in its
    last bit (libmvec's vector forms of different widths and libm's scalar one, in loops
    that split a row differently), and then no element equals the maximum."""
    users = [u.operation for r in op.results for u in r.uses]
    return any(isinstance(u, (I.MaxOp, I.MinOp)) for u in users) and any(isinstance(u, CompareOp) for u in users)


def _producers(op: Operation) -> set[Operation]:
    return {v.owner for v in op.operands if isinstance(v.owner, Operation)}


def _feeds_only_products(op: I.TransposeOp) -> bool:
    rank = len(op.params.perm)
    swap_last = rank >= 2 and list(op.params.perm) == list(range(rank - 2)) + [rank - 1, rank - 2]
    return swap_last and all(reads_as_factor(u) for u in op.result.uses)


def build_kernel(roots: list[Operation], members: list[Operation], host: Block) -> KernelOp:
    """Clone `members` (topologically ordered) into a kernel yielding the roots' values,
    placed as early as its inputs allow (so every use of a root comes after it)."""
    inside = set(members)
    inputs: list[SSAValue] = []
    for m in members:
        for v in m.operands:
            if (not isinstance(v.owner, Operation) or v.owner not in inside) and v not in inputs:
                inputs.append(v)
    block = Block(arg_types=[v.type for v in inputs])
    mapping: dict[SSAValue, SSAValue] = {}
    for v, a in zip(inputs, block.args):
        mapping[v] = a
        if v.name_hint:
            a.name_hint = v.name_hint
    for m in members:
        clone = m.clone(value_mapper=mapping)
        block.add_op(clone)
        for old, new in zip(m.results, clone.results):
            mapping[old] = new
    outs = [r.results[0] for r in roots]
    block.add_op(YieldOp([mapping[v] for v in outs]))
    kernel = KernelOp(inputs, [], [v.type for v in outs], Region(block))
    kernel.location = roots[-1].location
    producers = [v.owner for v in inputs if isinstance(v.owner, Operation) and v.owner.parent_block() is host]
    if producers:
        order = {op: k for k, op in enumerate(host.ops)}
        Rewriter.insert_op(kernel, InsertPoint.after(max(producers, key=order.__getitem__)))
    else:
        Rewriter.insert_op(kernel, InsertPoint.at_start(host))
    for v, r in zip(outs, kernel.res):
        if v.name_hint:
            r.name_hint = v.name_hint
        v.replace_all_uses_with(r)
    return kernel


def fuse_block(block: Block, max_ops: int) -> None:
    groups, standalone = plan(block, max_ops)
    order = {op: k for k, op in enumerate(block.ops)}
    for g in groups:
        build_kernel(g.roots, sorted(g.members, key=order.__getitem__), block)
    for op in reversed(list(block.ops)):
        if isinstance(op, IkOp) and all(not r.uses for r in op.results):
            Rewriter.erase_op(op)
    sort_block(block)


def sort_block(block: Block) -> None:
    """Reorder `block` so every op follows the ops it reads, keeping the current order
    where it is already legal. A kernel goes right after its last producer, but a
    producer may itself be a kernel built later and placed further down."""
    ops = list(block.ops)
    position = {op: k for k, op in enumerate(ops)}

    def producers(op: Operation) -> set[Operation]:
        found = set()
        for inner in op.walk():
            for v in inner.operands:
                owner = v.owner
                while isinstance(owner, Operation) and owner not in position:
                    owner = owner.parent_op()
                if isinstance(owner, Operation) and owner is not op:
                    found.add(owner)
        return found

    waiting = {op: producers(op) for op in ops}
    if all(position[p] < position[op] for op, ps in waiting.items() for p in ps):
        return
    users: dict[Operation, list[Operation]] = {op: [] for op in ops}
    for op, ps in waiting.items():
        for p in ps:
            users[p].append(op)
    ready = [position[op] for op, ps in waiting.items() if not ps]
    heapq.heapify(ready)
    order = []
    while ready:
        op = ops[heapq.heappop(ready)]
        order.append(op)
        for u in users[op]:
            waiting[u].discard(op)
            if not waiting[u]:
                heapq.heappush(ready, position[u])
    if len(order) != len(ops):
        raise CompileError("fuse: the fused block has a dependence cycle")
    terminator = block.last_op if block.last_op is not None and block.last_op.has_trait(IsTerminator) else None
    for op in order:
        if op is not terminator:
            op.detach()
            block.insert_op_before(op, terminator) if terminator is not None else block.add_op(op)


@dataclass(frozen=True)
class FusePass(ModulePass):
    """Group elementwise, broadcast and reduction work into kernels (one loop nest each)."""

    name = "fuse"
    max_ops: int = 1024

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        from irkit.dialects.ik.control import IfOp, ScanOp
        for f in list(op.walk()):
            if isinstance(f, func.FuncOp) and f.body.blocks:
                fuse_block(f.body.block, self.max_ops)
            elif isinstance(f, (ScanOp, IfOp)):  # loop bodies and branches fuse on their own
                for region in f.regions:
                    fuse_block(region.block, self.max_ops)

