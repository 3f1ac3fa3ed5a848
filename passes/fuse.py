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

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import builtin, func
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from irkit.dialects import ik as I
from irkit.dialects.fused import KernelOp, YieldOp
from irkit.dialects.ik.base import IkOp
from irkit.dialects.ik.elementwise import CompareOp, ElementwiseOp
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


def plan(block: Block, max_ops: int) -> tuple[list[Operation], dict[Operation, set], set]:
    """Decide roots and inlined ops. Returns (roots in order, op -> roots, standalone)."""
    ops = list(block.ops)
    shapes = symbolic_shapes(block)
    kernels_of: dict[Operation, set] = {}
    roots: set[Operation] = set()
    standalone: set[Operation] = set()
    size: dict[Operation, int] = {}

    def kernels_of_user(u: Operation) -> set | None:
        if u in roots:
            return {u}
        return kernels_of.get(u)

    for op in reversed(ops):
        if not isinstance(op, IkOp):
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
                roots.add(op)
                size[op] = 1
            continue
        target: set = set()
        ok = True
        cheap = is_cheap(op)
        for u, i in data:
            ks = kernels_of_user(u)
            if ks is None or not edge_legal(op, u, i, shapes, cheap):
                ok = False
                break
            target |= ks
        if ok and len(target) > 1 and not cheap:
            ok = False
        if ok and any(size[k] >= max_ops for k in target):
            ok = False
        if ok and shape_only and not index_computable(op):
            ok = False
        if ok:
            kernels_of[op] = target
            for k in target:
                size[k] += 1
            if shape_only:
                standalone.add(op)
            continue
        if isinstance(op, VIEWS):
            standalone.add(op)
        elif isinstance(op, I.TransposeOp) and _feeds_only_matmul(op):
            standalone.add(op)
        else:
            roots.add(op)
            size[op] = 1
    return [op for op in ops if op in roots], kernels_of, standalone


def _feeds_only_matmul(op: I.TransposeOp) -> bool:
    rank = len(op.params.perm)
    swap_last = rank >= 2 and list(op.params.perm) == list(range(rank - 2)) + [rank - 1, rank - 2]
    return swap_last and all(isinstance(u.operation, I.MatmulOp) for u in op.result.uses)


def build_kernel(root: Operation, members: list[Operation]) -> KernelOp:
    """Clone `members` (topologically ordered, ending with root) into a kernel before root."""
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
    block.add_op(YieldOp([mapping[root.results[0]]]))
    kernel = KernelOp(inputs, [], [root.results[0].type], Region(block))
    kernel.location = root.location
    if root.results[0].name_hint:
        kernel.res[0].name_hint = root.results[0].name_hint
    Rewriter.insert_op(kernel, InsertPoint.before(root))
    root.results[0].replace_all_uses_with(kernel.res[0])
    return kernel


def fuse_block(block: Block, max_ops: int) -> None:
    roots, kernels_of, standalone = plan(block, max_ops)
    order = {op: k for k, op in enumerate(block.ops)}
    members_of: dict[Operation, list[Operation]] = {r: [] for r in roots}
    for op, ks in kernels_of.items():
        for k in ks:
            members_of[k].append(op)
    for root in roots:
        members = sorted(members_of[root], key=order.__getitem__) + [root]
        build_kernel(root, members)
    for op in reversed(list(block.ops)):
        if isinstance(op, IkOp) and all(not r.uses for r in op.results):
            Rewriter.erase_op(op)


@dataclass(frozen=True)
class FusePass(ModulePass):
    """Group elementwise, broadcast and reduction work into kernels (one loop nest each)."""

    name = "fuse"
    max_ops: int = 256

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        for f in op.walk():
            if isinstance(f, func.FuncOp) and f.body.blocks:
                fuse_block(f.body.block, self.max_ops)

