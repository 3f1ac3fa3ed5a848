"""Indexing ops of `ik`: basic slicing, advanced (integer array) indexing, their
set/inc forms, and `nonzero` (how boolean masks index).

Basic indexing keeps numpy's text in the IR: `spec = "1:$:2, ::-1, $"`, one
entry per axis of x, where `$` takes the next operand (a 0-d integer) and an
entry without colons is an integer index (the axis is dropped). Bounds follow
Python's slice rules; an integer index out of range is an `IndexError`.

Advanced indexing (`ik.gather`) takes one integer array per indexed axis;
the arrays broadcast together. Their broadcast dims go where numpy puts them:
in place of the indexed axes when those are adjacent, else first (`front`).
`ik.scatter` is its set/inc form: with mode "inc", repeated indices all add
(like `np.add.at`); with mode "set", the last one wins.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from xdsl.dialects import arith, memref, scf
from xdsl.dialects.builtin import TensorType, i64
from xdsl.ir import Block, Region
from xdsl.irdl import irdl_op_definition, operand_def, result_def, var_operand_def, var_result_def
from xdsl.rewriter import InsertPoint

from irkit import ops as K
from irkit.dialects.ik import scalar as S
from irkit.dialects.ik.calculus import as_dtype_of, batch_dims, float_dtype, unbroadcast, zeros_for
from irkit.dialects.ik.base import IkOp, SameDtype, broadcast_rule
from irkit.errors import ShapeError
from irkit.loops import INDEX, Cursor, broadcast_index
from irkit.types import dtype_of

DYN = "$"


# ---------------------------------------------------------------------------
# the slice spec: numpy's text
# ---------------------------------------------------------------------------

def format_spec(entries) -> str:
    def one(v):
        return "" if v is None else (DYN if v is DYN else str(v))
    parts = []
    for e in entries:
        if e[0] == "index":
            parts.append(one(e[1]))
        else:
            _, start, stop, step = e
            parts.append(f"{one(start)}:{one(stop)}" + ("" if step == 1 else f":{step}"))
    return ", ".join(parts)


def parse_spec(spec: str):
    def one(t: str):
        t = t.strip()
        if t == "":
            return None
        if t == DYN:
            return DYN
        return int(t)
    entries = []
    if not spec.strip():
        return entries
    for part in spec.split(","):
        fields = part.split(":")
        if len(fields) == 1:
            entries.append(("index", one(fields[0])))
        elif len(fields) in (2, 3):
            step = one(fields[2]) if len(fields) == 3 else 1
            step = 1 if step is None else step
            if step is DYN:
                raise ShapeError("a slice step must be a static integer")
            if step == 0:
                raise ShapeError("slice step cannot be zero")
            entries.append(("slice", one(fields[0]), one(fields[1]), step))
        else:
            raise ShapeError(f"bad slice entry {part!r}")
    return entries


def _batched_spec(spec: str, nb: int) -> str:
    """The same window with nb leading batch axes taken whole."""
    return ", ".join([":"] * nb + ([spec] if spec.strip() else []))


def numpy_key(spec: str, bounds) -> tuple:
    """The numpy index a spec means, with `$` taken from `bounds` in order."""
    it = iter(int(b) for b in bounds)

    def val(v):
        return next(it) if v is DYN else v
    key = []
    for e in parse_spec(spec):
        if e[0] == "index":
            key.append(val(e[1]))
        else:
            _, a, b, c = e
            key.append(slice(val(a), val(b), c))
    return tuple(key)


def window(d, dims, entries, operands):
    """Per axis: (start, size, step, dropped), with Python's slice and index rules."""
    values = iter(operands)

    def val(v):
        return d.value(next(values)) if v is DYN else v

    out = []
    for axis, (n, e) in enumerate(zip(dims, entries)):
        if e[0] == "index":
            i = val(e[1])
            neg = d.lt(i, 0)
            i = d.select(neg, d.add(i, n), i)
            d.check(d.logical_and(d.le(0, i), d.lt(i, n)),
                    f"IndexError: index {e[1] if e[1] is not DYN else '?'} is out of bounds for axis {axis}")
            out.append((i, 1, 1, True))
            continue
        # A bound absent from the spec takes its default; a '$' bound whose value
        # is unknown (None from a static algebra) stays unknown.
        _, start_spec, stop_spec, step = e
        start, stop = val(start_spec), val(stop_spec)
        if step > 0:
            start = 0 if start_spec is None else _clamp(d, start, n, 0, n)
            stop = n if stop_spec is None else _clamp(d, stop, n, 0, n)
            size = d.maximum(0, d.ceildiv(d.sub(stop, start), step))
        else:
            last = d.sub(n, 1)
            start = last if start_spec is None else _clamp(d, start, n, -1, last)
            stop = -1 if stop_spec is None else _clamp(d, stop, n, -1, last)
            size = d.maximum(0, d.ceildiv(d.sub(start, stop), -step))
        out.append((start, size, step, False))
    if next(values, None) is not None:
        raise ShapeError("more bound operands than '$' entries in the slice")
    return out


def _clamp(d, v, n, low, high):
    """CPython's PySlice_AdjustIndices for one bound: wrap a negative, then clamp."""
    wrapped = d.add(v, n)
    v_neg = d.select(d.lt(wrapped, 0), low, wrapped)
    v_pos = d.select(d.le(n, v), high, v)
    return d.select(d.lt(v, 0), v_neg, v_pos)


class _SliceBase(IkOp):
    PARAMS: ClassVar = {"spec": ""}

    @classmethod
    def entries(cls, p):
        return parse_spec(p.spec)

    @classmethod
    def check_spec(cls, x, p):
        entries = cls.entries(p)
        rank = len(x.type.get_shape())
        if len(entries) != rank:
            raise ShapeError(f"slice spec {p.spec!r} has {len(entries)} entries for an array of rank {rank}")
        return entries


@irdl_op_definition
class SliceOp(SameDtype, _SliceBase):
    """x[spec]: basic indexing (ints, slices with any step) as a strided window."""

    name = "ik.slice"
    x = operand_def(TensorType)
    bounds = var_operand_def(TensorType)
    result = result_def(TensorType)
    FUSIBLE: ClassVar = True

    @property
    def SHAPE_OPERANDS(self):  # noqa: N802
        return tuple(range(1, len(self.operands)))

    @classmethod
    def shape_rule(cls, d, operands, p):
        x = operands[0]
        entries = cls.check_spec(x, p)
        win = window(d, d.shape_of(x), entries, operands[1:])
        return [[size for (_, size, _, dropped) in win if not dropped]]


    def evaluate(self, p, x, *bounds):
        return [np.asarray(x[numpy_key(p.spec, bounds)], order="C")]

    def vjp(self, g, ins, out):
        """g written into the window of zeros shaped like x."""
        x, bounds = ins[0], ins[1:]
        if not float_dtype(x):
            return [None] * len(ins)
        nb = batch_dims(g, out)
        gx = K._emit(SetSliceOp, [zeros_for(x, g, nb), as_dtype_of(g, x), *bounds],
                     spec=_batched_spec(self.params.spec, nb), mode="set")
        return [gx] + [None] * len(bounds)

    def jvp(self, ts, ins, out):
        if ts[0] is None:
            return None
        return K._emit(SliceOp, [ts[0], *ins[1:]], spec=self.params.spec)

    def emit_element(self, em, idx):
        win = window(em.d, em.dims(self.x), parse_spec(self.params.spec), self.bounds)
        it = iter(idx)
        src = []
        for start, size, step, dropped in win:
            if dropped:
                src.append(em.as_index(start))
            else:
                src.append(em.affine(next(it), step, start))
        return em.at(self.x, src)


@irdl_op_definition
class SetSliceOp(SameDtype, _SliceBase):
    """x with x[spec] replaced by y (mode "set") or incremented by y (mode "inc")."""

    name = "ik.set_slice"
    x = operand_def(TensorType)
    y = operand_def(TensorType)
    bounds = var_operand_def(TensorType)
    result = result_def(TensorType)
    PARAMS: ClassVar = {"spec": "", "mode": "set"}

    @property
    def SHAPE_OPERANDS(self):  # noqa: N802
        return tuple(range(2, len(self.operands)))

    @classmethod
    def shape_rule(cls, d, operands, p):
        x, y = operands[0], operands[1]
        if p.mode not in ("set", "inc"):
            raise ShapeError(f"mode must be 'set' or 'inc', not {p.mode!r}")
        entries = cls.check_spec(x, p)
        win = window(d, d.shape_of(x), entries, operands[2:])
        target = [size for (_, size, _, dropped) in win if not dropped]
        _check_broadcastable(d, d.shape_of(y), target)
        return [d.shape_of(x)]


    def evaluate(self, p, x, y, *bounds):
        out = np.array(x, copy=True)
        key = numpy_key(p.spec, bounds)
        if p.mode == "set":
            out[key] = y
        else:
            out[key] += y
        return [out]

    def vjp(self, g, ins, out):
        """x: g, with the window zeroed when it was overwritten; y: g's window."""
        x, y, bounds = ins[0], ins[1], ins[2:]
        nb = batch_dims(g, out)
        spec = _batched_spec(self.params.spec, nb)
        gx = None
        if float_dtype(x):
            gx = g
            if self.params.mode == "set":
                window = K._emit(SliceOp, [g, *bounds], spec=spec)
                gx = K._emit(SetSliceOp, [g, K.zeros_like(window), *bounds], spec=spec, mode="set")
        gy = None
        if float_dtype(y):
            gy = unbroadcast(K._emit(SliceOp, [g, *bounds], spec=spec), y, nb)
        return [gx, gy] + [None] * len(bounds)

    def jvp(self, ts, ins, out):
        if ts[0] is None and ts[1] is None:
            return None
        x, y, bounds = ins[0], ins[1], ins[2:]
        tx = ts[0] if ts[0] is not None else K.zeros_like(x)
        ty = ts[1] if ts[1] is not None else K.zeros_like(y, x.dtype)
        return K._emit(SetSliceOp, [tx, as_dtype_of(ty, x), *bounds], spec=self.params.spec,
                       mode=self.params.mode)

    def lower(self, bz):
        """x copied (or overwritten in place when x dies here), then the window written."""
        bz.result_dims(self)  # checks that the value fits the selection
        out = bz.writable_copy_of(self.x)
        y = bz.buffer_of(self.y)
        win = window(bz.d, out.dims, parse_spec(self.params.spec), self.bounds)
        sizes = [size for (_, size, _, dropped) in win if not dropped]
        dt = dtype_of(self.x.type)
        inc = self.params.mode == "inc"

        def body(c, ivs, _):
            it = iter(ivs)
            target = []
            for start, size, step, dropped in win:
                if dropped:
                    target.append(c.as_index(start))
                else:
                    iv = next(it)
                    scaled = c.emit(arith.MuliOp(iv, c.index(step))) if step != 1 else iv
                    target.append(c.emit(arith.AddiOp(scaled, c.as_index(start))))
            _write(c, out.memref, target, c.emit(memref.LoadOp.get(y.memref, broadcast_index(c, ivs, y.dims))),
                   dt, inc)
            return []
        bz.cur.loop_nest(sizes, [], body)
        bz.set_result(self.result, out)


def _write(c, buf, target, value, dt, inc: bool) -> None:
    """buf[target] = value, or += value."""
    if inc:
        value = S.add(c, c.emit(memref.LoadOp.get(buf, target)), value, dt)
    c.emit(memref.StoreOp.get(value, buf, target))


def _check_broadcastable(d, ys, target) -> None:
    if len(ys) > len(target):
        raise ShapeError(f"cannot broadcast a value of rank {len(ys)} into a selection of rank {len(target)}")
    off = len(target) - len(ys)
    for k, s in enumerate(ys):
        if not (isinstance(s, int) and s == 1):
            d.check_eq(target[off + k], s, f"value dim {k} does not match the selection's dim {off + k}")


# ---------------------------------------------------------------------------
# advanced indexing
# ---------------------------------------------------------------------------

def gather_shape(d, xdims, operands, axes, front):
    """numpy's advanced-indexing result shape."""
    bshape = broadcast_rule(d, operands, [f"index array {k}" for k in range(len(operands))])
    rest = [s for k, s in enumerate(xdims) if k not in axes]
    if front:
        return bshape, rest, bshape + rest
    first = axes[0]
    return bshape, rest, rest[:first] + bshape + rest[first:]


def broadcast_rule_static(indices) -> list:
    from irkit.shapes import StaticDims
    return broadcast_rule(StaticDims(), [v.value if hasattr(v, "value") else v for v in indices])


def _batch_after_front(g, nb: int, brank: int, front: bool):
    """With `front`, a batched gather puts the index dims before the batch dims: move g's
    batch dims (first) behind them, the layout a batched scatter reads."""
    if not (front and nb):
        return g
    return K.transpose(g, list(range(nb, nb + brank)) + list(range(nb)) + list(range(nb + brank, g.ndim)))


def _batch_first(g, nb: int, brank: int, front: bool):
    """The inverse of _batch_after_front."""
    if not (front and nb):
        return g
    return K.transpose(g, list(range(brank, brank + nb)) + list(range(brank)) + list(range(brank + nb, g.ndim)))


def _check_gather(x, indices, p):
    rank = len(x.type.get_shape())
    if len(indices) != len(p.axes) or not indices:
        raise ShapeError(f"{len(indices)} index arrays for axes {p.axes}")
    if any(not 0 <= a < rank for a in p.axes) or len(set(p.axes)) != len(p.axes):
        raise ShapeError(f"axes {p.axes} are not distinct axes of an array of rank {rank}")
    if not p.front and list(p.axes) != list(range(p.axes[0], p.axes[0] + len(p.axes))):
        raise ShapeError(f"axes {p.axes} are not adjacent; their dims must go first (front)")
    for k, v in enumerate(indices):
        if dtype_of(v.type).kind not in "iu":
            raise ShapeError(f"index array {k} has dtype {dtype_of(v.type).name}; "
                             "arrays used as indices must be of integer (or boolean) type")


def split_index(idx, xrank, axes, brank, front):
    """Split a result index into the broadcast part and x's remaining axes."""
    nrest = xrank - len(axes)
    if front:
        return list(idx[:brank]), list(idx[brank:brank + nrest])
    first = axes[0]
    return list(idx[first:first + brank]), list(idx[:first]) + list(idx[first + brank:])


def checked_index(em, raw, dt: np.dtype, n, axis: int, what: str):
    """An index read from an index array: negative ones wrap (numpy), out of bounds raises."""
    raw = S.convert(em, raw, dt, np.dtype(np.int64))
    n64 = em.emit(arith.IndexCastOp(em.as_index(n), i64))
    zero = S.constant(em, 0, np.dtype(np.int64))
    wrapped = em.emit(arith.SelectOp(em.emit(arith.CmpiOp(raw, zero, "slt")),
                                     em.emit(arith.AddiOp(raw, n64)), raw))
    ok = em.emit(arith.AndIOp(em.emit(arith.CmpiOp(wrapped, zero, "sge")),
                              em.emit(arith.CmpiOp(wrapped, n64, "slt"))))
    em.require(ok, f"IndexError: {what}: an index is out of bounds for axis {axis}")
    return em.emit(arith.IndexCastOp(wrapped, INDEX))


def source_index(em, xdims, indices, axes, bidx, rest_idx, read_index, what: str):
    """x's index for one element of a gather (or scatter): the remaining axes from
    rest_idx, the indexed ones read from each index array by read_index(k, v, bidx)."""
    rank = len(xdims)
    src = [None] * rank
    it = iter(rest_idx)
    for k in range(rank):
        if k not in axes:
            src[k] = next(it)
    for k, (v, a) in enumerate(zip(indices, axes)):
        src[a] = checked_index(em, read_index(k, v, bidx), dtype_of(v.type), xdims[a], a, what)
    return src


@irdl_op_definition
class GatherOp(SameDtype, IkOp):
    """x[..., i, j, ...] with integer arrays at `axes` (numpy's advanced indexing)."""

    name = "ik.gather"
    x = operand_def(TensorType)
    indices = var_operand_def(TensorType)
    result = result_def(TensorType)
    PARAMS: ClassVar = {"axes": (), "front": False}
    FUSIBLE: ClassVar = True

    @classmethod
    def check_operands(cls, operands, p):
        _check_gather(operands[0], operands[1:], p)

    @classmethod
    def shape_rule(cls, d, operands, p):
        return [gather_shape(d, d.shape_of(operands[0]), operands[1:], p.axes, p.front)[2]]


    def evaluate(self, p, x, *indices):
        return [np.asarray(_np_take(x, indices, p.axes, p.front), order="C")]

    def vjp(self, g, ins, out):
        """g added into zeros shaped like x at the gathered places (repeats add up)."""
        x, indices = ins[0], ins[1:]
        if not float_dtype(x):
            return [None] * len(ins)
        nb = batch_dims(g, out)
        p = self.params
        zeros = zeros_for(x, g, nb)  # the batch dims of g as given, before they move
        g = _batch_after_front(g, nb, len(broadcast_rule_static(indices)), p.front)
        gx = K._emit(ScatterOp, [zeros, as_dtype_of(g, x), *indices],
                     axes=tuple(nb + a for a in p.axes), front=p.front, mode="inc")
        return [gx] + [None] * len(indices)

    def jvp(self, ts, ins, out):
        if ts[0] is None:
            return None
        p = self.params
        return K._emit(GatherOp, [ts[0], *ins[1:]], axes=p.axes, front=p.front)

    def emit_element(self, em, idx):
        p = self.params
        brank = len(broadcast_rule(em.d, self.indices))
        bidx, rest = split_index(idx, len(self.x.type.get_shape()), p.axes, brank, p.front)
        src = source_index(em, em.dims(self.x), self.indices, p.axes, bidx, rest,
                           lambda k, v, b: em.operand(v, b), "ik.gather")
        return em.at(self.x, src)


def _np_key(rank, indices, axes, front):
    key = [slice(None)] * rank
    for v, a in zip(indices, axes):
        key[a] = np.asarray(v)
    return tuple(key)


def _np_take(x, indices, axes, front):
    """numpy's advanced indexing, with the broadcast dims placed as `front` says."""
    out = x[_np_key(x.ndim, indices, axes, front)]
    adjacent = list(axes) == list(range(axes[0], axes[0] + len(axes)))
    if front and adjacent and axes[0] != 0:
        brank = np.broadcast_shapes(*[np.shape(v) for v in indices]).__len__()
        first = axes[0]
        perm = list(range(first, first + brank)) + [k for k in range(out.ndim) if not first <= k < first + brank]
        out = np.transpose(out, perm)
    return out


@irdl_op_definition
class ScatterOp(SameDtype, IkOp):
    """x with x[indices] set to y (mode "set", last wins) or incremented (mode "inc", all add)."""

    name = "ik.scatter"
    x = operand_def(TensorType)
    y = operand_def(TensorType)
    indices = var_operand_def(TensorType)
    result = result_def(TensorType)
    PARAMS: ClassVar = {"axes": (), "front": False, "mode": "set"}

    @classmethod
    def check_operands(cls, operands, p):
        _check_gather(operands[0], operands[2:], p)
        if p.mode not in ("set", "inc"):
            raise ShapeError(f"mode must be 'set' or 'inc', not {p.mode!r}")

    @classmethod
    def shape_rule(cls, d, operands, p):
        x, y = operands[0], operands[1]
        target = gather_shape(d, d.shape_of(x), operands[2:], p.axes, p.front)[2]
        _check_broadcastable(d, d.shape_of(y), target)
        return [d.shape_of(x)]


    def evaluate(self, p, x, y, *indices):
        out = np.array(x, copy=True)
        selected = _np_take(out, indices, p.axes, p.front)
        y = np.broadcast_to(np.asarray(y, dtype=out.dtype), selected.shape)
        if p.front and list(p.axes) == list(range(p.axes[0], p.axes[0] + len(p.axes))) and p.axes[0] != 0:
            brank = len(np.broadcast_shapes(*[np.shape(v) for v in indices]))
            first = p.axes[0]
            inv = list(range(brank, brank + first)) + list(range(brank)) + \
                list(range(brank + first, y.ndim))
            y = np.transpose(y, inv)
        key = _np_key(x.ndim, indices, p.axes, p.front)
        if p.mode == "set":
            out[key] = y
        else:
            np.add.at(out, key, y)
        return [out]

    def vjp(self, g, ins, out):
        """x: g, zeroed at the selection when it was overwritten; y: g gathered at the selection
        (with "set" and repeated indices every repeat gets it, as in Theano)."""
        x, y, indices = ins[0], ins[1], ins[2:]
        nb = batch_dims(g, out)
        p = self.params
        axes = tuple(nb + a for a in p.axes)
        brank = len(broadcast_rule_static(indices))
        gx = None
        if float_dtype(x):
            gx = g
            if p.mode == "set":
                picked = K._emit(GatherOp, [g, *indices], axes=axes, front=p.front)
                gx = K._emit(ScatterOp, [g, K.zeros_like(picked), *indices], axes=axes, front=p.front, mode="set")
        gy = None
        if float_dtype(y):
            picked = K._emit(GatherOp, [g, *indices], axes=axes, front=p.front)
            gy = unbroadcast(_batch_first(picked, nb, brank, p.front), y, nb)
        return [gx, gy] + [None] * len(indices)

    def jvp(self, ts, ins, out):
        if ts[0] is None and ts[1] is None:
            return None
        x, y, indices = ins[0], ins[1], ins[2:]
        p = self.params
        tx = ts[0] if ts[0] is not None else K.zeros_like(x)
        ty = ts[1] if ts[1] is not None else K.zeros_like(y, x.dtype)
        return K._emit(ScatterOp, [tx, as_dtype_of(ty, x), *indices], axes=p.axes, front=p.front, mode=p.mode)

    def lower(self, bz):
        """x copied (or overwritten in place), then a sequential loop over the selection:
        repeated indices all add (inc) or the last one wins (set)."""
        p = self.params
        out = bz.writable_copy_of(self.x)
        y = bz.buffer_of(self.y)
        idx_bufs = [bz.buffer_of(v) for v in self.indices]
        bshape, rest, full = gather_shape(bz.d, out.dims, self.indices, p.axes, p.front)
        _check_broadcastable(bz.d, y.dims, full)
        dt = dtype_of(self.x.type)
        rank = len(out.dims)

        def body(c, ivs, _):
            bidx, rest_idx = split_index(ivs, rank, p.axes, len(bshape), p.front)

            def read(k, v, b):
                return c.emit(memref.LoadOp.get(idx_bufs[k].memref, broadcast_index(c, b, idx_bufs[k].dims)))
            target = source_index(c, out.dims, self.indices, p.axes, bidx, rest_idx, read, "ik.scatter")
            yv = c.emit(memref.LoadOp.get(y.memref, broadcast_index(c, ivs, y.dims)))
            _write(c, out.memref, target, yv, dt, p.mode == "inc")
            return []
        bz.cur.loop_nest(full, [], body)
        bz.set_result(self.result, out)


@irdl_op_definition
class NonzeroOp(IkOp):
    """The indices of the nonzero elements, one int64 array per axis (C order)."""

    name = "ik.nonzero"
    x = operand_def(TensorType)
    results_ = var_result_def(TensorType)

    @classmethod
    def check_operands(cls, operands, p):
        if not operands[0].type.get_shape():
            raise ShapeError("nonzero of a 0-d array is not supported; use an array of rank >= 1")

    @classmethod
    def shape_rule(cls, d, operands, p):
        count = d.data_dependent(("nonzero", operands[0]))
        return [[count] for _ in operands[0].type.get_shape()]

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        return [np.dtype(np.int64)]

    def evaluate(self, p, x):
        return [np.asarray(i, dtype=np.int64) for i in np.nonzero(x)]

    def lower(self, bz):
        """Two passes: count the nonzero elements, then write their coordinates."""
        x = bz.buffer_of(self.x)
        xdt = dtype_of(self.x.type)

        def is_nonzero(c, ivs):
            v = c.emit(memref.LoadOp.get(x.memref, ivs))
            return S.convert(c, v, xdt, np.dtype(bool))

        def count(c, ivs, accs):
            one = c.emit(arith.SelectOp(is_nonzero(c, ivs), c.index(1), c.index(0)))
            return [c.emit(arith.AddiOp(accs[0], one))]
        n = bz.cur.loop_nest(x.dims, [bz.cur.index(0)], count)[0]
        outs = [bz.alloc(r.type, [n]) for r in self.results]

        def fill(c, ivs, accs):
            nz = is_nonzero(c, ivs)
            then = Block()
            tc = Cursor(InsertPoint.at_end(then))
            for out, iv in zip(outs, ivs):
                tc.emit(memref.StoreOp.get(tc.emit(arith.IndexCastOp(iv, i64)), out.memref, [accs[0]]))
            tc.emit(scf.YieldOp())
            c.emit(scf.IfOp(nz, [], Region(then), None))
            one = c.emit(arith.SelectOp(nz, c.index(1), c.index(0)))
            return [c.emit(arith.AddiOp(accs[0], one))]
        bz.cur.loop_nest(x.dims, [bz.cur.index(0)], fill)
        for r, out in zip(self.results, outs):
            bz.set_result(r, out)


OPS = [SliceOp, SetSliceOp, GatherOp, ScatterOp, NonzeroOp]
