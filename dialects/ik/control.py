"""Control flow of the tensor dialect: `ik.scan` (a loop) and `ik.if` (a lazy branch),
region ops whose bodies are tensor-level blocks ended by `ik.yield`.

Both bodies are isolated from above: whatever a body reads from outside comes in as an
operand (a scan's non-sequences, a branch's captured values), so every pass may treat
the body as a small function, and derivatives see each input.

`ik.scan` runs its body `n_steps` times:

    %ys, %hs = "ik.scan"(%n, %x, %h0, %W) <{seq_taps = [array<i64: 0>], state_taps = [array<i64: -1>], ...}> ({
    ^bb0(%x_t, %h_prev, %W_):   // sequence slices (one per tap), state taps, non-sequences
      ...
      ik.yield %h_t, %y_t        // new states, then per-step outputs, then the `until` condition
    })

- a sequence with taps K is read at row `t + k - min(K, 0)` at step t (reversed first when
  `go_backwards`), as Theano slices them;
- a state with taps K (all negative) starts from its initial value: that value itself when
  K is [-1], else a tensor whose last rows are the steps before the first;
- each state and each per-step output is stacked over the steps (leading dim T), unless it
  is listed in `last_only`: then only its value after the last step is kept (memory O(taps));
- with `until`, the body's last yielded value is a 0-d condition: the loop stops after a step
  where it holds, and the outputs have as many rows as steps ran.

It lowers (in `bufferize`) to one `scf.for` (`scf.while` with `until`) in the same function:
the body is bufferized in the loop, reads its slices by index, and writes each step's values
into the stacked results.

`ik.if` evaluates one of its two regions: `then` reads `then_args`, `else` reads `else_args`,
each yields the results. The `sink-branches` pass moves ops used only by one branch into it,
which is what makes `ik.ifelse` lazy.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from xdsl.dialects import arith, memref, scf
from xdsl.dialects.builtin import DYNAMIC_INDEX, ArrayAttr, DenseArrayBase, IntegerAttr, TensorType, UnitAttr, i64
from xdsl.ir import Block, Region, SSAValue
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    irdl_op_definition,
    lazy_traits_def,
    operand_def,
    opt_prop_def,
    prop_def,
    region_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.traits import HasParent, IsolatedFromAbove, IsTerminator, Pure, ReturnLike
from xdsl.utils.exceptions import VerifyException

from irkit.dialects.ik import scalar as S
from irkit.dialects.ik.base import describe
from irkit.loops import INDEX
from irkit.types import dtype_of, format_type


def taps_attr(taps: Sequence[Sequence[int]]) -> ArrayAttr:
    return ArrayAttr([DenseArrayBase.from_list(i64, [int(k) for k in ks]) for ks in taps])


def row_type(t: TensorType) -> TensorType:
    """The type of one row (the leading dim dropped)."""
    return TensorType(t.get_element_type(), list(t.get_shape())[1:])


def stacked_type(t: TensorType, steps: int | None) -> TensorType:
    return TensorType(t.get_element_type(), [DYNAMIC_INDEX if steps is None else steps, *t.get_shape()])


def compatible(a: TensorType, b: TensorType) -> bool:
    """Same dtype and rank, and no static dims that disagree."""
    sa, sb = a.get_shape(), b.get_shape()
    return a.get_element_type() == b.get_element_type() and len(sa) == len(sb) and \
        all(x < 0 or y < 0 or x == y for x, y in zip(sa, sb))


@irdl_op_definition
class YieldOp(IRDLOperation):
    """The values a scan step or a branch gives."""

    name = "ik.yield"
    values = var_operand_def()
    traits = lazy_traits_def(lambda: (IsTerminator(), ReturnLike(), HasParent(ScanOp, IfOp), Pure()))
    assembly_format = "($values^ `:` type($values))? attr-dict"

    def __init__(self, values: Sequence[SSAValue]) -> None:
        super().__init__(operands=[list(values)])


@irdl_op_definition
class ScanOp(IRDLOperation):
    """A loop over steps with sequences, recurrent states and per-step outputs (Theano's scan)."""

    name = "ik.scan"
    n_steps = operand_def(TensorType)
    sequences = var_operand_def(TensorType)
    inits = var_operand_def(TensorType)
    consts = var_operand_def(TensorType)
    outs = var_result_def(TensorType)
    body = region_def("single_block")
    seq_taps = prop_def(ArrayAttr)
    state_taps = prop_def(ArrayAttr)
    last_only = opt_prop_def(DenseArrayBase)
    nonempty = opt_prop_def(DenseArrayBase)
    go_backwards = opt_prop_def(UnitAttr)
    until = opt_prop_def(UnitAttr)
    truncate_gradient = opt_prop_def(IntegerAttr)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    traits = traits_def(IsolatedFromAbove(), Pure())

    # -- what the properties say, as Python values -----------------------------------
    def seq_tap_lists(self) -> list[tuple[int, ...]]:
        return [tuple(int(k) for k in a.get_values()) for a in self.seq_taps.data]

    def state_tap_lists(self) -> list[tuple[int, ...]]:
        return [tuple(int(k) for k in a.get_values()) for a in self.state_taps.data]

    def kept_last(self) -> set[int]:
        return set() if self.last_only is None else {int(k) for k in self.last_only.get_values()}

    @property
    def has_until(self) -> bool:
        return self.until is not None

    @property
    def backwards(self) -> bool:
        return self.go_backwards is not None

    @property
    def truncate(self) -> int:
        return -1 if self.truncate_gradient is None else int(self.truncate_gradient.value.data)

    @property
    def n_nitsot(self) -> int:
        return len(self.outs) - len(self.inits)

    def state_type(self, j: int) -> TensorType:
        init = self.inits[j].type
        return init if self.state_tap_lists()[j] == (-1,) else row_type(init)

    def arg_groups(self) -> tuple[list[list[SSAValue]], list[list[SSAValue]], list[SSAValue]]:
        """The body's arguments: per sequence its tap slices, per state its taps, the non-sequences."""
        args = list(self.body.block.args)
        seqs, states = [], []
        for taps in self.seq_tap_lists():
            seqs.append(args[:len(taps)])
            args = args[len(taps):]
        for taps in self.state_tap_lists():
            states.append(args[:len(taps)])
            args = args[len(taps):]
        return seqs, states, args

    @property
    def yield_op(self) -> YieldOp:
        return self.body.block.last_op  # type: ignore[return-value]

    # -- verification ------------------------------------------------------------------
    def verify_(self) -> None:
        where = describe(self)
        seq_taps, state_taps = self.seq_tap_lists(), self.state_tap_lists()
        if len(seq_taps) != len(self.sequences) or len(state_taps) != len(self.inits):
            raise VerifyException(f"{where}: one tap list per sequence and per state")
        if any(not t for t in seq_taps + state_taps):
            raise VerifyException(f"{where}: a tap list is empty")
        for j, taps in enumerate(state_taps):
            if any(k >= 0 for k in taps) or len(set(taps)) != len(taps):
                raise VerifyException(f"{where}: the taps of state {j} must be distinct and negative, not {taps}")
        if self.n_steps.type.get_shape() or dtype_of(self.n_steps.type) != np.int64:
            raise VerifyException(f"{where}: n_steps must be a 0-d int64 tensor")
        block = self.body.block
        n_args = sum(map(len, seq_taps)) + sum(map(len, state_taps)) + len(self.consts)
        if len(block.args) != n_args:
            raise VerifyException(f"{where}: the body takes {len(block.args)} arguments, the taps and "
                                  f"non-sequences give {n_args}")
        seqs, states, consts = self.arg_groups()
        for k, (seq, args) in enumerate(zip(self.sequences, seqs)):
            if not seq.type.get_shape():
                raise VerifyException(f"{where}: sequence {k} is 0-d")
            for a in args:
                if not compatible(a.type, row_type(seq.type)):
                    raise VerifyException(f"{where}: a slice of sequence {k} has type {format_type(a.type)}, "
                                          f"the sequence {format_type(seq.type)}")
        for j, args in enumerate(states):
            for a in args:
                if not compatible(a.type, self.state_type(j)):
                    raise VerifyException(f"{where}: a tap of state {j} has type {format_type(a.type)}, "
                                          f"the state {format_type(self.state_type(j))}")
        for a, c in zip(consts, self.consts):
            if not compatible(a.type, c.type):
                raise VerifyException(f"{where}: a non-sequence argument has type {format_type(a.type)}, "
                                      f"its operand {format_type(c.type)}")
        last = block.last_op
        if not isinstance(last, YieldOp):
            raise VerifyException(f"{where}: the body must end with ik.yield")
        values = list(last.values)
        if self.has_until:
            if not values or values[-1].type.get_shape():
                raise VerifyException(f"{where}: with until, the body yields a 0-d condition last")
            values = values[:-1]
        if len(values) != len(self.outs):
            raise VerifyException(f"{where}: the body yields {len(values)} values for {len(self.outs)} results")
        kept = self.kept_last()
        for k, (v, r) in enumerate(zip(values, self.outs)):
            if k < len(self.inits) and not compatible(v.type, self.state_type(k)):
                raise VerifyException(f"{where}: step output {k} has type {format_type(v.type)}, its state "
                                      f"{format_type(self.state_type(k))}")
            rank = len(v.type.get_shape()) + (0 if k in kept else 1)
            if dtype_of(r.type) != dtype_of(v.type) or len(r.type.get_shape()) != rank:
                raise VerifyException(f"{where}: result {k} has type {format_type(r.type)} for step values "
                                      f"of type {format_type(v.type)}")

    def result_dims(self, d, bz) -> list[list]:
        """The results' dims from the operands' (for a scan nested in another's step)."""
        from irkit.errors import CompileError
        if self.has_until:
            raise CompileError(f"{describe(self)}: with until, its number of steps is known only once it runs")
        n = d.value(self.n_steps)
        seqs, states, consts = self.arg_groups()
        arg_dims: dict = {}
        for s, args in zip(self.sequences, seqs):
            for a in args:
                arg_dims[a] = d.shape_of(s)[1:]
        state_dims = []
        for j, (init, args) in enumerate(zip(self.inits, states)):
            sd = d.shape_of(init) if self.state_tap_lists()[j] == (-1,) else d.shape_of(init)[1:]
            state_dims.append(sd)
            for a in args:
                arg_dims[a] = sd
        for c, a in zip(self.consts, consts):
            arg_dims[a] = d.shape_of(c)
        wanted = list(self.yield_op.values)[len(self.inits):len(self.outs)]
        step_dims = state_dims + (bz.block_dims(self.body.block, arg_dims, wanted, describe(self)) if wanted else [])
        kept = self.kept_last()
        return [dims if k in kept else [n, *dims] for k, dims in enumerate(step_dims)]

    # -- derivatives (irkit.control states them) ---------------------------------------------
    def vjp_multi(self, cts, ins, outs):
        from irkit.control import scan_vjp
        return scan_vjp(self, cts, ins, outs)

    def jvp_multi(self, ts, ins, outs):
        from irkit.control import scan_jvp
        return scan_jvp(self, ts, ins, outs)

    # -- lowering ----------------------------------------------------------------------------
    def lower(self, bz) -> None:
        ScanLowering(self, bz).run()


class ScanLowering:
    """`ik.scan` at the buffer level: the stacked results are allocated, then one loop
    runs the bufferized body, copying each step's slices in and its values out."""

    def __init__(self, op: ScanOp, bz) -> None:
        self.op, self.bz, self.cur = op, bz, bz.cur
        self.where = describe(op)

    def run(self) -> None:
        op, bz, cur = self.op, self.bz, self.cur
        d = bz.d
        n = cur.as_index(bz.index(op.n_steps))
        cur.require(cur.emit(arith.CmpiOp(n, cur.index(0), "sge")),
                    f"ValueError: {self.where}: n_steps is negative")
        self.seqs = [bz.buffer_of(s) for s in op.sequences]
        for k, (b, taps) in enumerate(zip(self.seqs, op.seq_tap_lists())):
            span = max(max(taps), 0) - min(min(taps), 0)
            need = d.add(n, span)
            cur.require(cur.emit(arith.CmpiOp(cur.as_index(need), cur.as_index(b.dims[0]), "sle")),
                        f"ValueError: {self.where}: sequence {k} is too short for n_steps (it needs n_steps + "
                        f"{span} rows for taps {list(taps)})")
        self.inits = [bz.buffer_of(v) for v in op.inits]
        self.consts = [bz.buffer_of(v) for v in op.consts]
        kept = op.kept_last()
        state_taps = op.state_tap_lists()
        # each state's dims (checked against what the body yields) and its initial rows
        self.state_dims, self.depth = [], []
        for j, (b, taps) in enumerate(zip(self.inits, state_taps)):
            m = -min(taps)
            self.depth.append(m)
            if taps == (-1,):
                self.state_dims.append(b.dims)
            else:
                self.state_dims.append(b.dims[1:])
                cur.require(cur.emit(arith.CmpiOp(cur.as_index(b.dims[0]), cur.index(m), "sge")),
                            f"ValueError: {self.where}: the initial value of output {j} has too few rows; its "
                            f"taps {list(taps)} reach {m} steps back")
        out_dims = self.output_dims()
        self.results = []
        for k, r in enumerate(op.outs):
            if k < len(op.inits) and k in kept:
                rows = self.depth[k] + 1  # a ring of the taps and the value being written
            elif k in kept:
                rows = None
            else:
                rows = n
            dims = out_dims[k] if rows is None else [rows, *out_dims[k]]
            ty = TensorType(r.type.get_element_type(), [x if isinstance(x, int) else DYNAMIC_INDEX for x in dims])
            self.results.append(bz.alloc(ty, dims))
        for j in range(len(op.inits)):
            if j in kept:
                self.fill_ring(j)
        if op.has_until:
            steps = self.while_loop(n)
        else:
            def body(c, t, _):
                self.step(c, t)
                return []
            cur.for_loop(0, n, 1, [], body)
            steps = n
        self.finish(steps)

    def output_dims(self) -> list[list]:
        """Per result, the dims of one step's value: a state's own, a per-step output's by the
        body's shape rules applied to the slices' dims."""
        op, bz = self.op, self.bz
        seqs, states, consts = op.arg_groups()
        dims: dict[SSAValue, list] = {}
        for b, args in zip(self.seqs, seqs):
            for a in args:
                dims[a] = b.dims[1:]
        for j, args in enumerate(states):
            for a in args:
                dims[a] = self.state_dims[j]
        for b, a in zip(self.consts, consts):
            dims[a] = b.dims
        values = list(op.yield_op.values)
        out = [self.state_dims[j] for j in range(len(op.inits))]
        wanted = values[len(op.inits):len(op.outs)]
        if wanted:
            got = bz.block_dims(op.body.block, dims, wanted, self.where)
            out.extend(got)
        return out

    def fill_ring(self, j: int) -> None:
        """A state kept only at its last step lives in a ring of depth+1 rows: the initial
        rows go first."""
        taps, init, ring = self.op.state_tap_lists()[j], self.inits[j], self.results[j]
        m = self.depth[j]
        cur = self.cur
        if taps == (-1,):
            copy_rows(cur, init.memref, [], ring.memref, [cur.index(0)], self.state_dims[j])
            return
        first = cur.emit(arith.SubiOp(cur.as_index(init.dims[0]), cur.index(m)))

        def row(c, i, _):
            src = c.emit(arith.AddiOp(first, i))
            copy_rows(c, init.memref, [src], ring.memref, [i], self.state_dims[j])
            return []
        cur.for_loop(0, m, 1, [], row)

    # -- one step --------------------------------------------------------------------------------
    def step(self, c, t) -> SSAValue | None:
        """The body at step t (an index), its values written into the results; returns the
        `until` condition (an i1) when the scan has one."""
        op, bz = self.op, self.bz
        seqs, states, consts = op.arg_groups()
        bindings = {}
        owned = {}
        for k, (b, args, taps) in enumerate(zip(self.seqs, seqs, op.seq_tap_lists())):
            lo = min(min(taps), 0)
            for a, tap in zip(args, taps):
                row = c.emit(arith.AddiOp(t, c.index(tap - lo)))
                if op.backwards:
                    last = c.emit(arith.SubiOp(c.as_index(b.dims[0]), c.index(1)))
                    row = c.emit(arith.SubiOp(last, row))
                tmp = bz.alloc(a.type, b.dims[1:], c)
                copy_rows(c, b.memref, [row], tmp.memref, [], b.dims[1:])
                owned[a] = tmp
        kept = op.kept_last()
        for j, (args, taps) in enumerate(zip(states, op.state_tap_lists())):
            for a, tap in zip(args, taps):
                tmp = bz.alloc(a.type, self.state_dims[j], c)
                self.read_tap(c, j, tap, t, tmp, j in kept)
                owned[a] = tmp
        for a, b in zip(consts, self.consts):
            bindings[a] = b
        sub = bz.nested(c, bindings, owned)
        yielded = sub.run_block(op.body.block)
        values = list(op.yield_op.values)
        for k, (v, yb) in enumerate(zip(values, yielded)):
            if k >= len(op.outs):
                break
            self.check_dims(c, k, yb.dims)
            self.write(c, k, t, yb)
        cond = None
        if op.has_until:
            cb = yielded[-1]
            x = c.emit(memref.LoadOp.get(cb.memref, []))
            cond = S.convert(c, x, dtype_of(values[-1].type), np.dtype(bool))
        sub.free_all()
        return cond

    def read_tap(self, c, j: int, tap: int, t, into, ring: bool) -> None:
        res = self.results[j]
        dims = self.state_dims[j]
        if ring:
            m = self.depth[j]
            pos = c.emit(arith.AddiOp(t, c.index(m + tap)))
            pos = c.emit(arith.RemUIOp(pos, c.index(m + 1)))
            copy_rows(c, res.memref, [pos], into.memref, [], dims)
            return
        # a step before the first reads the initial value's rows
        back = c.emit(arith.AddiOp(t, c.index(tap)))
        before = c.emit(arith.CmpiOp(back, c.index(0), "slt"))
        init = self.inits[j]
        taps = self.op.state_tap_lists()[j]

        def from_init(ci):
            if taps == (-1,):
                copy_rows(ci, init.memref, [], into.memref, [], dims)
            else:
                src = ci.emit(arith.AddiOp(ci.as_index(init.dims[0]), back))
                copy_rows(ci, init.memref, [src], into.memref, [], dims)

        def from_results(ci):
            copy_rows(ci, res.memref, [back], into.memref, [], dims)
        c.if_else(before, from_init, from_results)

    def check_dims(self, c, k: int, got: list) -> None:
        want = self.state_dims[k] if k < len(self.op.inits) else None
        if want is None:
            return
        for axis, (a, b) in enumerate(zip(got, want)):
            if isinstance(a, int) and isinstance(b, int):
                if a != b:
                    from irkit.errors import ShapeError
                    raise ShapeError(f"{self.where}: the step gives output {k} with dim {axis} = {a}, "
                                     f"its state has {b}")
                continue
            ok = c.emit(arith.CmpiOp(c.as_index(a), c.as_index(b), "eq"))
            c.require(ok, f"ShapeError: {self.where}: the shape of output {k} changes between steps "
                          f"(dim {axis}); a recurrent output keeps its initial shape")

    def write(self, c, k: int, t, yb) -> None:
        op = self.op
        res = self.results[k]
        kept = op.kept_last()
        dims = yb.dims
        if k < len(op.inits) and k in kept:
            m = self.depth[k]
            pos = c.emit(arith.RemUIOp(c.emit(arith.AddiOp(t, c.index(m))), c.index(m + 1)))
            copy_rows(c, yb.memref, [], res.memref, [pos], dims)
        elif k in kept:
            copy_rows(c, yb.memref, [], res.memref, [], dims)
        else:
            copy_rows(c, yb.memref, [], res.memref, [t], dims)

    # -- the loop with a stopping condition ---------------------------------------------------
    def while_loop(self, n):
        """scf.while over (t, stop): run while t < n and no step said stop; returns the count."""
        cur = self.cur
        false = cur.emit(arith.ConstantOp(IntegerAttr(0, 1)))
        before = Block(arg_types=[INDEX, false.type])
        t, stop = before.args
        from irkit.loops import Cursor
        from xdsl.rewriter import InsertPoint
        cb = Cursor(InsertPoint.at_end(before))
        more = cb.emit(arith.CmpiOp(t, n, "slt"))
        go = cb.emit(arith.AndIOp(more, cb.emit(arith.XOrIOp(stop, cb.emit(arith.ConstantOp(IntegerAttr(-1, 1)))))))
        before.add_op(scf.ConditionOp(go, t, stop))
        after = Block(arg_types=[INDEX, false.type])
        yield_op = scf.YieldOp()
        after.add_op(yield_op)
        loop = scf.WhileOp([cur.index(0), false], [INDEX, false.type], Region(before), Region(after))
        cur.emit(loop)
        ca = Cursor(InsertPoint.before(yield_op))
        ta = after.args[0]
        cond = self.step(ca, ta)
        nxt = ca.emit(arith.AddiOp(ta, ca.index(1)))
        yield_op.operands = [nxt, cond]
        return loop.results[0]

    def finish(self, steps) -> None:
        """Each result: the stacked rows that ran, or the last value of a kept-last one."""
        op, bz, cur = self.op, self.bz, self.cur
        kept = op.kept_last()
        nonempty = set() if op.nonempty is None else {int(k) for k in op.nonempty.get_values()}
        for k, (r, b) in enumerate(zip(op.outs, self.results)):
            if k in nonempty:  # hs[-1] of no step is numpy's IndexError
                cur.require(cur.emit(arith.CmpiOp(steps, cur.index(0), "sgt")),
                            f"IndexError: {self.where}: index -1 is out of bounds for output {k}: the scan "
                            "ran no step")
            if k < len(op.inits) and k in kept:
                # the state after the last step: the last initial row when no step ran
                m = self.depth[k]
                last = cur.emit(arith.RemUIOp(cur.emit(arith.AddiOp(steps, cur.index(m - 1))),
                                              cur.index(m + 1)))
                out = bz.alloc(r.type, self.state_dims[k])
                copy_rows(cur, b.memref, [last], out.memref, [], self.state_dims[k])
                bz.free(b)
                bz.set_result(r, out)
            elif k in kept:
                cur.require(cur.emit(arith.CmpiOp(steps, cur.index(0), "sgt")),
                            f"IndexError: {self.where}: the last step of output {k} is wanted, but the scan "
                            "ran no step")
                bz.set_result(r, b)
            elif op.has_until:
                rows = b.dims[1:]
                out = bz.alloc(r.type, [steps, *rows])

                def row(c, i, _, b=b, out=out, rows=rows):
                    copy_rows(c, b.memref, [i], out.memref, [i], rows)
                    return []
                cur.for_loop(0, steps, 1, [], row)
                bz.free(b)
                bz.set_result(r, out)
            else:
                bz.set_result(r, b)


def copy_rows(c, src: SSAValue, src_prefix: list, dst: SSAValue, dst_prefix: list, dims: list) -> None:
    """dst[dst_prefix..., :] = src[src_prefix..., :] over `dims`."""
    def body(ci, ivs, _):
        x = ci.emit(memref.LoadOp.get(src, [*src_prefix, *ivs]))
        ci.emit(memref.StoreOp.get(x, dst, [*dst_prefix, *ivs]))
        return []
    c.loop_nest(dims, [], body)


@irdl_op_definition
class IfOp(IRDLOperation):
    """One of two regions, chosen by a 0-d condition; only that one runs."""

    name = "ik.if"
    cond = operand_def(TensorType)
    then_args = var_operand_def(TensorType)
    else_args = var_operand_def(TensorType)
    res = var_result_def(TensorType)
    then_region = region_def("single_block")
    else_region = region_def("single_block")
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    traits = traits_def(IsolatedFromAbove(), Pure())

    def branches(self):
        return [(self.then_region.block, list(self.then_args)), (self.else_region.block, list(self.else_args))]

    def verify_(self) -> None:
        where = describe(self)
        if self.cond.type.get_shape():
            raise VerifyException(f"{where}: the condition must be 0-d, not {format_type(self.cond.type)}")
        for label, (block, args) in zip(("then", "else"), self.branches()):
            if len(block.args) != len(args):
                raise VerifyException(f"{where}: the {label} region takes {len(block.args)} arguments for "
                                      f"{len(args)} operands")
            for a, v in zip(block.args, args):
                if not compatible(a.type, v.type):
                    raise VerifyException(f"{where}: a {label} argument has type {format_type(a.type)}, its "
                                          f"operand {format_type(v.type)}")
            last = block.last_op
            if not isinstance(last, YieldOp) or len(last.values) != len(self.res):
                raise VerifyException(f"{where}: the {label} region must yield {len(self.res)} values")
            for k, (v, r) in enumerate(zip(last.values, self.res)):
                if not compatible(v.type, r.type):
                    raise VerifyException(f"{where}: the {label} region yields {format_type(v.type)} for "
                                          f"result {k} of type {format_type(r.type)}")

    def vjp_multi(self, cts, ins, outs):
        from irkit.control import if_vjp
        return if_vjp(self, cts, ins, outs)

    def jvp_multi(self, ts, ins, outs):
        from irkit.control import if_jvp
        return if_jvp(self, ts, ins, outs)

    def lower(self, bz) -> None:
        """scf.if whose branches bufferize their region and yield fresh buffers."""
        cur = bz.cur
        cb = bz.buffer_of(self.cond)
        x = cur.emit(memref.LoadOp.get(cb.memref, []))
        cond = S.convert(cur, x, dtype_of(self.cond.type), np.dtype(bool))
        from irkit.loops import Cursor
        from irkit.passes.bufferize import memref_of
        from xdsl.rewriter import InsertPoint
        blocks = []
        for block, args in self.branches():
            inner = Block()
            y = scf.YieldOp()
            inner.add_op(y)
            c = Cursor(InsertPoint.before(y))
            sub = bz.nested(c, {a: bz.buffer_of(v) for a, v in zip(block.args, args)}, {})
            got = sub.run_block(block)
            taken: set = set()
            fresh = [sub.owned_copy(b, v.type, taken) for b, v in zip(got, block.last_op.values)]
            sub.free_all(keep=fresh)
            y.operands = [_cast_to(c, b.memref, memref_of(r.type)) for b, r in zip(fresh, self.res)]
            blocks.append(inner)
        op = scf.IfOp(cond, [memref_of(r.type) for r in self.res], Region(blocks[0]), Region(blocks[1]))
        cur.emit(op)
        for r, m in zip(self.res, op.results):
            bz.adopt(r, m)


def _cast_to(c, m: SSAValue, t) -> SSAValue:
    return m if m.type == t else c.emit(memref.CastOp.get(m, t))


OPS = [ScanOp, IfOp, YieldOp]
