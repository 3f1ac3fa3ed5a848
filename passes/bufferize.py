"""`bufferize`: from values to buffers. Tensor arguments and results become
memrefs, each kernel gets an output buffer sized by its ops' shape rules (run
as index arithmetic, with `cf.assert` guarding what the types could not
prove), and the ops that stand outside kernels lower here to loops, library
calls or views:

- reshape / expand_dims / squeeze: a view of the same buffer (collapse + expand);
- transpose feeding a matmul: no copy, BLAS reads it transposed;
- a constant array: a `memref.global`;
- every other op outside a kernel (matmul, concatenate, set_slice, scatter,
  nonzero) by its own `lower(bz)`, beside its definition, through the API of
  `Bufferizer` below (buffer_of, alloc, writable_copy_of, result_dims, set_result,
  declare, flat, and the cursor `cur` and dim algebra `d`).

Buffers are freed after their last use, a kernel writes in place over an input
it reads element for element when nothing else needs that input, and no result
aliases an argument, a constant or another result (a copy is made).

Donated arguments: an argument marked `{irkit.donate = k}` (a shared variable that
the function updates, its new value being result k) may be overwritten once it is
dead, like a temporary, and returned as result k without a copy; the caller then
finds its array updated in place. Only where nothing can fail after the first write
into it (no `cf.assert` from there on): a call that raises leaves the variable as it
was. An argument that does not meet this is bufferized again as not donated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from xdsl.context import Context
from xdsl.dialects import arith, builtin, cf, func, memref
from xdsl.dialects.builtin import (
    BytesAttr,
    DenseIntOrFPElementsAttr,
    MemRefType,
    StringAttr,
    TensorType,
    i64,
)
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from irkit.dialects import ik as I
from irkit.dialects.fused import KernelOp
from irkit.dialects.ik import scalar as S
from irkit.dialects.ik.base import IkOp, describe
from irkit.dialects.ik.elementwise import ElementwiseOp
from irkit.dialects.ik.linalg import reads_as_factor
from irkit.errors import CompileError
from irkit.loops import INDEX, Cursor, EqualDims, IRDims, flatten, unflatten
from irkit.types import dtype_of

def memref_of(t: TensorType) -> MemRefType:
    """The buffer type of a tensor type: same shape, signless element type."""
    return MemRefType(S.scalar_type(dtype_of(t)), t.get_shape())


def _is_lazy(op: Operation) -> bool:
    """A size computation outside kernels (an integer constant, a dim, arithmetic on them):
    bufferize computes it as index values where it is used. A 0-d constant of any dtype is
    a value where it is used too (`scalar`), and stored only where it is read from memory."""
    if isinstance(op, I.ConstantOp):
        return not op.result.type.get_shape()
    return isinstance(op, IkOp) and op.FUSIBLE and not hasattr(op, "lower")


DONATE = "irkit.donate"  # the argument attribute: the result this argument's buffer may become


@dataclass(eq=False)
class Alloc:
    """One allocation (or argument, or global) that buffers may alias."""

    kind: str  # "arg" | "alloc" | "global" | "donated" (an argument this function may overwrite)
    memref: SSAValue | None = None
    returned: bool = False
    freed: bool = False
    result: int = -1              # donated: the result it may be returned as
    argument: int = -1            # donated: its argument's position
    written_after: Operation | None = None  # donated: the last op before its first write

    @property
    def reusable(self) -> bool:
        return self.kind in ("alloc", "donated")


@dataclass(eq=False)
class Buf:
    memref: SSAValue
    dims: list
    root: Alloc
    transposed_from: "Buf | None" = None  # a lazy transpose of the last two axes
    extra: dict = field(default_factory=dict)


class _Buffers(dict):
    """value -> Buf, with the values of each allocation indexed: whether any view of an
    allocation is read later is asked at every candidate for an in-place write, and a scan
    of every value made that quadratic (0.6 of bufferize's 0.8 s on a 10,000-op graph)."""

    def __init__(self) -> None:
        super().__init__()
        self.of_root: dict[int, set[SSAValue]] = {}  # id(Alloc) -> the values whose buffer it is

    def __setitem__(self, v: SSAValue, b: Buf) -> None:
        old = self.get(v)
        if old is not None:
            self.of_root[id(old.root)].discard(v)
        super().__setitem__(v, b)
        self.of_root.setdefault(id(b.root), set()).add(v)

    def update(self, other: dict) -> None:  # type: ignore[override]
        for v, b in other.items():
            self[v] = b

    def values_of(self, root: Alloc) -> set[SSAValue]:
        return self.of_root.get(id(root), set())


class Bufferizer:
    """Rewrites one tensor-level function into a loops-level one."""

    def __init__(self, module: builtin.ModuleOp, cursor: Cursor, small_gemm: int | None = None) -> None:
        from irkit.dialects.ik.linalg import SMALL_GEMM
        self.module = module
        self.cur = cursor
        # products of at most this many multiply-adds become inlined loops instead of a BLAS call
        self.small_gemm = SMALL_GEMM if small_gemm is None or small_gemm < 0 else small_gemm
        self.buf = _Buffers()
        self.index_cache: dict[SSAValue, object] = {}
        self.equal = EqualDims()  # dims that checks already required equal (one set per function)
        self.d = IRDims(self.cur, self.dims_of, self.load_index, equal=self.equal)
        self.last_use: dict[SSAValue, int] = {}
        self.step = 0
        self.yielded: list[Buf] = []
        self.returned_as: dict[SSAValue, set[int]] = {}  # a function's values -> the results they are

    @classmethod
    def for_function(cls, old: func.FuncOp, module: builtin.ModuleOp, small_gemm: int | None = None,
                     not_donated: frozenset[int] = frozenset()) -> "Bufferizer":
        ftype = old.function_type
        arg_types = [memref_of(t) if isinstance(t, TensorType) else t for t in ftype.inputs]
        res_types = [memref_of(t) if isinstance(t, TensorType) else t for t in ftype.outputs]
        new = func.FuncOp(old.sym_name.data, (arg_types, res_types), arg_attrs=old.arg_attrs,
                          res_attrs=old.res_attrs)
        new.attributes.update(old.attributes)
        terminator = func.ReturnOp()
        new.body.block.add_op(terminator)
        self = cls(module, Cursor(InsertPoint.before(terminator)), small_gemm)
        self.old, self.new, self._terminator = old, new, terminator
        if isinstance(old.body.block.last_op, func.ReturnOp):
            for k, v in enumerate(old.body.block.last_op.arguments):
                self.returned_as.setdefault(v, set()).add(k)
        for k, (a_old, a_new) in enumerate(zip(old.body.block.args, new.body.block.args)):
            a_new.name_hint = a_old.name_hint
            if isinstance(a_new.type, MemRefType):
                donate = _donated_result(old, k)
                root = Alloc("arg", a_new) if donate is None or k in not_donated else \
                    Alloc("donated", a_new, result=donate, argument=k)
                self.buf[a_old] = Buf(a_new, self.cur.dims(a_new), root)
        return self

    def unsafe_donations(self) -> set[int]:
        """Donated arguments written before something that may fail (a cf.assert)."""
        unsafe = set()
        for b in self.buf.values():
            root = b.root
            if root.kind != "donated" or root.written_after is None or root.argument in unsafe:
                continue
            op = root.written_after.next_op
            while op is not None:
                if any(isinstance(o, cf.AssertOp) for o in op.walk()):
                    unsafe.add(root.argument)
                    break
                op = op.next_op
        return unsafe

    def _writing(self, b: Buf) -> Buf:
        """b is about to be overwritten: note where, when it is a donated argument."""
        if b.root.kind == "donated" and b.root.written_after is None:
            b.root.written_after = self._terminator.prev_op or _Start(self.new)
        return b

    def nested(self, cursor: Cursor, borrowed: dict[SSAValue, Buf], owned: dict[SSAValue, Buf]) -> "Bufferizer":
        """A bufferizer for the block of a region op, building at `cursor`: its arguments are
        `borrowed` buffers (never freed or overwritten here) and `owned` ones (temporaries it
        frees after their last use)."""
        sub = Bufferizer(self.module, cursor, self.small_gemm)
        for v, b in borrowed.items():
            sub.buf[v] = Buf(b.memref, b.dims, Alloc("arg", b.memref), b.transposed_from, b.extra)
        sub.buf.update(owned)
        return sub

    def run_block(self, block) -> list[Buf]:
        """Bufferize a region's block; the buffers of what its terminator yields."""
        self.run_ops(list(block.ops))
        return self.yielded

    def free_all(self, keep: Sequence[Buf] = ()) -> None:
        """Free what this bufferizer allocated and still holds, except `keep`."""
        kept = {id(b.root) for b in keep}
        for b in list(self.buf.values()):
            for root in (b.root, b.transposed_from.root if b.transposed_from else None):
                if root is not None and root.kind == "alloc" and not root.freed and not root.returned \
                        and id(root) not in kept:
                    self.cur.emit(memref.DeallocOp.get(root.memref))
                    root.freed = True

    def free(self, b: Buf) -> None:
        if b.root.kind == "alloc" and not b.root.freed:
            self.cur.emit(memref.DeallocOp.get(b.root.memref))
            b.root.freed = True

    def owned_copy(self, b: Buf, t: TensorType, taken: set) -> Buf:
        """b itself if this bufferizer owns its whole allocation and nothing else takes it, else a copy."""
        if b.root.kind != "alloc" or b.root.freed or b.memref is not b.root.memref or id(b.root) in taken:
            b = self.copy(b, t)
        taken.add(id(b.root))
        return b

    def adopt(self, v: SSAValue, m: SSAValue) -> None:
        """v's buffer is `m`, a fresh allocation handed over by a region (this one frees it)."""
        self.buf[v] = Buf(m, self.cur.dims(m), Alloc("alloc", m))

    def block_dims(self, block, arg_dims: dict[SSAValue, list], wanted: Sequence[SSAValue], where: str) -> list:
        """The dims of values of a region's block, by its ops' shape rules, computed here from
        the dims of its arguments (before the region runs)."""
        dims = dict(arg_dims)
        alias: dict[SSAValue, SSAValue] = {}  # a kernel's argument -> the value it reads

        def unknown(v):
            if v in alias:
                return algebra.value(alias[v])
            raise CompileError(f"{where}: the shape of a per-step output depends on data computed in the step "
                               "(keep such values as recurrent states, whose shape is fixed)")
        algebra = IRDims(self.cur, lambda v: dims[v], unknown)
        for op in block.ops:
            if isinstance(op, KernelOp):
                alias.update(zip(op.body.block.args, op.inputs))
                for a, v in zip(op.body.block.args, op.inputs):
                    dims[a] = dims[v]
                for o in op.body.block.ops:
                    self._rule_dims(algebra, o, dims)
                for r, v in zip(op.res, op.yield_op.values):
                    dims[r] = dims[v]
            else:
                self._rule_dims(algebra, op, dims)
        return [dims[v] for v in wanted]

    def _rule_dims(self, algebra: IRDims, op: Operation, dims: dict) -> None:
        if isinstance(op, I.ConstantOp):
            dims[op.result] = list(op.result.type.get_shape())
        elif isinstance(op, IkOp):
            algebra.context = describe(op)
            for r, d in zip(op.results, op.shape_rule(algebra, op.operands, op.params)):
                dims[r] = d
        elif hasattr(op, "result_dims"):  # a nested region op
            for r, d in zip(op.results, op.result_dims(algebra, self)):
                dims[r] = d
        else:
            for r in op.results:
                shape = list(r.type.get_shape())
                if any(x < 0 for x in shape):
                    raise CompileError(f"{describe(op)}: the size of its result is known only once it runs")
                dims[r] = shape

    # -- what ops ask of the bufferizer -----------------------------------------
    def dims_of(self, v: SSAValue) -> list:
        if v in self.buf:
            return self.buf[v].dims
        if not v.type.get_shape():
            return []
        return self.buffer_of(v).dims

    def load_index(self, v: SSAValue) -> object:
        """The value of a 0-d integer tensor as an index."""
        if v in self.index_cache:
            return self.index_cache[v]
        b = self.buffer_of(v)
        x = self.cur.emit(memref.LoadOp.get(b.memref, []))
        x = S.convert(self.cur, x, dtype_of(v.type), np.dtype(np.int64))
        out = self.cur.emit(arith.IndexCastOp(x, INDEX))
        self.index_cache[v] = out
        return out

    def index(self, v: SSAValue) -> object:
        if v not in self.index_cache:
            self.index_cache[v] = self.d.value(v)
        return self.index_cache[v]

    def buffer_of(self, v: SSAValue) -> Buf:
        """v's buffer, made now if v was only a size so far (or a lazy view)."""
        b = self.buf.get(v)
        if b is not None and b.transposed_from is None:
            return b
        if b is not None:
            return self.materialize_transpose(v, b)
        if not v.type.get_shape() and isinstance(v.owner, IkOp):
            out = self.alloc(v.type, [])
            self.cur.emit(memref.StoreOp.get(self.scalar(v), out.memref, []))
            self.buf[v] = out
            return out
        raise CompileError(f"bufferize: no buffer for {v} (made by {getattr(v.owner, 'name', v.owner)})")

    def scalar(self, v: SSAValue) -> SSAValue:
        """The element of 0-d v, as a value: a constant's own value, a size computed as an
        index, anything else loaded from its buffer."""
        if v not in self.buf and isinstance(v.owner, I.ConstantOp):
            return S.constant(self.cur, v.owner.array()[()], dtype_of(v.type))
        if v not in self.buf and isinstance(v.owner, IkOp):
            return S.convert(self.cur, self.cur.emit(arith.IndexCastOp(self.cur.as_index(self.index(v)), i64)),
                             np.dtype(np.int64), dtype_of(v.type))
        return self.cur.emit(memref.LoadOp.get(self.buffer_of(v).memref, []))

    def alloc(self, t: TensorType, dims: list, cursor: Cursor | None = None) -> Buf:
        """A new buffer of type t's memref, at this bufferizer's cursor (or `cursor`)."""
        m = (cursor or self.cur).alloc(memref_of(t), dims)
        return Buf(m, list(dims), Alloc("alloc", m))

    def result_dims(self, op: IkOp) -> list[list]:
        self.d.context = describe(op)
        return op.shape_rule(self.d, op.operands, op.params)

    def set_result(self, v: SSAValue, b: Buf) -> None:
        self.buf[v] = b

    # -- the walk ------------------------------------------------------------------
    def run(self) -> func.FuncOp:
        self.run_ops(list(self.old.body.block.ops))
        return self.new

    def run_ops(self, ops: list[Operation]) -> None:
        from irkit.dialects.ik.control import YieldOp
        self.last_use = self._last_uses(ops)
        for k, op in enumerate(ops):
            self.step = k
            if isinstance(op, KernelOp):
                self.kernel(op)
            elif isinstance(op, func.ReturnOp):
                self.ret(op)
            elif isinstance(op, YieldOp):
                self.yielded = [self.buffer_of(v) for v in op.values]
                continue  # what is yielded stays alive for the region op to take
            elif _is_lazy(op):
                pass  # a size computation: evaluated where it is used, stored if read as data
            elif isinstance(op, I.ConstantOp):
                self.constant(op)
            elif hasattr(op, "lower"):
                self.d.context = describe(op)
                op.lower(self)
            elif isinstance(op, IkOp):
                raise CompileError(f"bufferize: {op.name} has no lowering")
            else:
                raise CompileError(f"bufferize: unexpected op {op.name} at the tensor level")
            self.free_dead(k)

    def _last_uses(self, ops: list[Operation]) -> dict[SSAValue, int]:
        last: dict[SSAValue, int] = {}
        for k, op in enumerate(ops):
            for v in op.operands:
                last[v] = k
        # A size computation runs where its value is first needed, so what it reads
        # (a constant's or a dim's buffer) lives as long as its own result is used.
        for op in reversed(ops):
            if _is_lazy(op):
                used_until = max((last.get(r, -1) for r in op.results), default=-1)
                for v in op.operands:
                    last[v] = max(last.get(v, -1), used_until)
        return last

    def free_dead(self, k: int) -> None:
        """Free allocations none of whose buffers is used after op k."""
        live: set[int] = set()
        for v, b in self.buf.items():
            if self.last_use.get(v, -1) > k:
                live.add(id(b.root))
                if b.transposed_from is not None:
                    live.add(id(b.transposed_from.root))
        for v, b in list(self.buf.items()):
            for root in (b.root, b.transposed_from.root if b.transposed_from else None):
                if root is None or root.kind != "alloc" or root.returned or root.freed:
                    continue
                if id(root) not in live:
                    self.cur.emit(memref.DeallocOp.get(root.memref))
                    root.freed = True

    # -- kernels -----------------------------------------------------------------
    def kernel(self, op: KernelOp) -> None:
        ins = [self.buffer_of(v) for v in op.inputs]
        body = op.body.block
        dims: dict[SSAValue, list] = {}
        outer = dict(zip(body.args, op.inputs))
        for a, b in zip(body.args, ins):
            dims[a] = b.dims
        algebra = IRDims(self.cur, lambda v: dims[v], lambda v: self.index(outer[v]) if v in outer
                         else _no_index(v), equal=self.equal)
        for inner in body.ops:
            if isinstance(inner, I.ConstantOp):
                dims[inner.result] = list(inner.result.type.get_shape())
            elif isinstance(inner, IkOp):
                algebra.context = describe(inner)
                for r, d in zip(inner.results, inner.shape_rule(algebra, inner.operands, inner.params)):
                    dims[r] = [x if x is not None else _no_index(r) for x in d]
        out_dims = [dims[v] for v in op.yield_op.values]
        outs: list[Buf] = []
        reads = _args_read(op)
        read_later = [0] * len(reads)  # per result, the arguments of the results stored after it
        for k in range(len(reads) - 2, -1, -1):
            read_later[k] = read_later[k + 1] | reads[k + 1]
        reusable = self._reusable_inputs(op, ins)
        for k, (t, d) in enumerate(zip(op.res.types, out_dims)):
            # One input buffer can take only one of a multi-output kernel's results, and not one
            # that a result stored after it still reads (each is stored before the next is computed).
            taken = {b.root for b in outs} | {b.root for j, b in enumerate(ins) if read_later[k] >> j & 1}
            reuse = self._in_place_candidate(reusable, t, d, taken, self.returned_as.get(op.res[k], set()))
            outs.append(reuse if reuse is not None else self.alloc(t, d))
        region = op.body.clone()
        kernel = KernelOp([b.memref for b in ins], [b.memref for b in outs], [], region)
        kernel.location = op.location
        self.cur.emit(kernel)
        for r, b in zip(op.res, outs):
            self.buf[r] = Buf(b.memref, b.dims, b.root)

    def _reusable_inputs(self, op: KernelOp, ins: list[Buf]) -> tuple[set, list[tuple[SSAValue, Buf]]]:
        """The input buffers a kernel may overwrite with one of its results: temporaries,
        dead after this kernel, read only element for element (every op elementwise), and
        through no other view; with the shapes of the kernel's values, which must all be the
        output's. Found once per kernel: a kernel of hundreds of results would otherwise
        look again for each (cubic in its size)."""
        body = op.body.block
        shapes = {tuple(r.type.get_shape()) for o in body.ops for r in o.results if r.type.get_shape()}
        if len(shapes) > 1 or \
                not all(isinstance(o, (ElementwiseOp, I.ConstantOp)) or o is body.last_op for o in body.ops):
            return shapes, []
        views: dict[int, set[int]] = {}
        for b in ins:
            views.setdefault(id(b.root), set()).add(id(b.memref))
        found = []
        for v, b in zip(op.inputs, ins):
            if not b.root.reusable or b.root.freed or b.transposed_from is not None:
                continue
            if b.root.kind == "donated" and b.memref is not b.root.memref:
                continue  # a view of a donated argument: it is returned whole or not at all
            if len(views[id(b.root)]) > 1:
                continue  # another view of the same buffer is read too (a row broadcast, ...)
            if self.last_use.get(v, -1) > self.step or self._root_used_later(b.root):
                continue
            found.append((v, b))
        return shapes, found

    def _in_place_candidate(self, reusable: tuple[set, list[tuple[SSAValue, Buf]]], t: TensorType,
                            dims: list, taken: set, returned: set[int]) -> Buf | None:
        """Of the kernel's reusable inputs, one of the output's type and dims not taken yet;
        a donated argument only for its own result or a temporary (a value returned as
        another result would be copied out of it again)."""
        shapes, inputs = reusable
        if not shapes <= {tuple(t.get_shape())}:
            return None
        for v, b in inputs:
            if b.root.kind == "donated" and returned and b.root.result not in returned:
                continue
            if b.root not in taken and v.type == t and len(b.dims) == len(dims) and \
                    all(self.d.known_equal(x, y) for x, y in zip(b.dims, dims)):
                return self._writing(b)
        return None

    def _root_used_later(self, root: Alloc) -> bool:
        return any(self.last_use.get(v, -1) > self.step for v in self.buf.values_of(root))

    # -- standalone ops ------------------------------------------------------------
    def constant(self, op: I.ConstantOp) -> None:
        value = op.value
        if op.splat_value() is not None or not op.result.type.get_shape():
            dims = list(op.result.type.get_shape())
            out = self.alloc(op.result.type, dims)
            v = op.splat_value() if op.result.type.get_shape() else op.array()[()]
            x = S.constant(self.cur, v, dtype_of(op.result.type))

            def fill(c: Cursor, ivs, _):
                c.emit(memref.StoreOp.get(x, out.memref, ivs))
                return []
            self.cur.loop_nest(dims, [], fill)
            self.buf[op.result] = out
            return
        mtype = memref_of(op.result.type)
        name = f"__constant_{len([o for o in self.module.ops if isinstance(o, memref.GlobalOp)])}"
        init = DenseIntOrFPElementsAttr(TensorType(mtype.element_type, mtype.get_shape()),
                                        BytesAttr(value.data.data))
        glob = memref.GlobalOp.get(StringAttr(name), mtype, init, constant=builtin.UnitAttr(), alignment=64)
        self.module.body.block.insert_op_before(glob, self.module.body.block.first_op)
        m = self.cur.emit(memref.GetGlobalOp(name, mtype))
        self.buf[op.result] = Buf(m, list(mtype.get_shape()), Alloc("global", m))

    def reshape_view(self, x: SSAValue, result: SSAValue) -> None:
        """result is x's buffer seen with another shape (no copy)."""
        src = self.buffer_of(x)
        op = result.owner
        dims = self.result_dims(op)[0]
        rt = memref_of(result.type)
        sr, rr = len(src.dims), len(dims)
        if sr == 0 or rr == 0:
            out = self.alloc(result.type, dims)
            zeros_s = [self.cur.index(0)] * sr
            zeros_r = [self.cur.index(0)] * rr
            v = self.cur.emit(memref.LoadOp.get(src.memref, zeros_s))
            self.cur.emit(memref.StoreOp.get(v, out.memref, zeros_r))
            self.buf[result] = out
            return
        view = unflatten(self.cur, flatten(self.cur, src.memref), rt, dims)
        self.buf[result] = Buf(view, list(dims), src.root)

    def transpose_view(self, op: I.TransposeOp) -> None:
        """A transpose of the last two axes read by matmuls only: BLAS reads it transposed."""
        src = self.buffer_of(op.x)
        dims = self.result_dims(op)[0]
        if _swaps_last_two(op.params.perm) and all(reads_as_factor(u) for u in op.result.uses):
            self.buf[op.result] = Buf(src.memref, list(dims), src.root, transposed_from=src)
            return
        self.buf[op.result] = self.copy_transposed(src, op.params.perm, op.result.type, dims)

    def materialize_transpose(self, v: SSAValue, b: Buf) -> Buf:
        rank = len(b.dims)
        perm = list(range(rank - 2)) + [rank - 1, rank - 2]
        out = self.copy_transposed(b.transposed_from, perm, v.type, b.dims)
        self.buf[v] = out
        return out

    def copy_transposed(self, src: Buf, perm, t: TensorType, dims: list) -> Buf:
        out = self.alloc(t, dims)

        def body(c: Cursor, ivs, _):
            srci = [None] * len(perm)
            for k, a in enumerate(perm):
                srci[a] = ivs[k]
            c.emit(memref.StoreOp.get(c.emit(memref.LoadOp.get(src.memref, srci)), out.memref, ivs))
            return []
        self.cur.loop_nest(dims, [], body)
        return out

    def copy(self, src: Buf, t: TensorType) -> Buf:
        out = self.alloc(t, src.dims)
        self.cur.emit(memref.CopyOp(src.memref, out.memref))
        return out

    def writable_copy_of(self, v: SSAValue) -> Buf:
        """A buffer holding v that this op may overwrite: v's own when v dies here."""
        b = self.buffer_of(v)
        if b.root.reusable and self.last_use.get(v, -1) <= self.step and \
                not self._root_used_later(b.root) and b.transposed_from is None and \
                (b.root.kind == "alloc" or b.memref is b.root.memref):
            return self._writing(b)
        return self.copy(b, v.type)

    def flat(self, b: Buf, cursor: Cursor | None = None) -> SSAValue:
        """The buffer as memref<?xT> (how library calls take it), built at `cursor` (or here)."""
        c = cursor or self.cur
        flat = flatten(c, b.memref)
        flat_t = MemRefType(flat.type.element_type, [-(1 << 63)])
        return flat if flat.type == flat_t else c.emit(memref.CastOp.get(flat, flat_t))

    def declare(self, name: str, arg_types: list) -> None:
        """A private external function (a library routine) in the module, once."""
        for o in self.module.ops:
            if isinstance(o, func.FuncOp) and o.sym_name.data == name:
                return
        self.module.body.block.insert_op_before(func.FuncOp.external(name, arg_types, []),
                                                self.module.body.block.first_op)

    # -- results ---------------------------------------------------------------------
    def ret(self, op: func.ReturnOp) -> None:
        values = []
        seen: set[int] = set()
        for k, v in enumerate(op.arguments):
            b = self.buffer_of(v)
            in_place = b.root.kind == "donated" and b.root.result == k and b.memref is b.root.memref
            if (b.root.kind != "alloc" and not in_place) or id(b.root) in seen or b.root.freed:
                b = self.copy(b, v.type)
            seen.add(id(b.root))
            b.root.returned = True
            values.append(b.memref)
        self._terminator.operands = values


class _Start:
    """A marker for 'the function's first op' (when a write comes before any other op)."""

    def __init__(self, fn: func.FuncOp) -> None:
        self.next_op = fn.body.block.first_op


def _donated_result(fn: func.FuncOp, k: int) -> int | None:
    """The result argument k of `fn` may be returned as, by its `irkit.donate` attribute."""
    if fn.arg_attrs is None:
        return None
    attr = fn.arg_attrs.data[k].data.get(DONATE)
    return None if attr is None else int(attr.value.data)


def _args_read(op: KernelOp) -> list[int]:
    """Per result of a kernel, the kernel arguments it is computed from (bit j: argument j)."""
    deps: dict = {a: 1 << j for j, a in enumerate(op.body.block.args)}
    for inner in op.body.block.ops:
        got = 0
        for v in inner.operands:
            got |= deps.get(v, 0)
        for r in inner.results:
            deps[r] = got
    return [deps.get(v, 0) for v in op.yield_op.values]


def _no_index(v):
    raise CompileError(f"bufferize: the size of {v} is not computable here")


def _swaps_last_two(perm) -> bool:
    r = len(perm)
    return r >= 2 and list(perm) == list(range(r - 2)) + [r - 1, r - 2]


@dataclass(frozen=True)
class BufferizePass(ModulePass):
    """Tensors to memrefs: buffers for kernels, lowerings for the ops outside kernels."""

    name = "bufferize"
    # products of static shape and at most this many multiply-adds are inlined loops, the
    # others library calls (on the CPU the runtime's irkit_gemm, which runs small ones as
    # loops itself); -1 is irkit's default (linalg.SMALL_GEMM), the GPU pipeline sets 0: a
    # product's loops in one thread are slower than any launch
    small_gemm: int = -1

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        for f in [o for o in op.ops if isinstance(o, func.FuncOp) and o.body.blocks]:
            if not any(isinstance(t, TensorType) for t in [*f.function_type.inputs, *f.function_type.outputs]) \
                    and not any(isinstance(o, (IkOp, KernelOp)) for o in f.body.block.ops):
                continue
            new = _bufferize_function(f, op, self.small_gemm)
            Rewriter.replace_op(f, new)


def _bufferize_function(f: func.FuncOp, module: builtin.ModuleOp, small_gemm: int) -> func.FuncOp:
    """Bufferize f; again without the donated arguments that would be written before a check
    that may fail (the first try's globals and declarations are removed)."""
    not_donated: frozenset[int] = frozenset()
    while True:
        before = set(module.ops)
        bz = Bufferizer.for_function(f, module, small_gemm, not_donated)
        new = bz.run()
        unsafe = bz.unsafe_donations()
        if not unsafe:
            return new
        for extra in [o for o in module.ops if o not in before]:
            extra.detach()
            extra.erase()
        not_donated = not_donated | unsafe

