"""`ik.scan`, `ik.until` and `ik.ifelse`: loops and lazy branches, as region ops of the
tensor dialect (`ik.scan`, `ik.if`, see `irkit.dialects.ik.control`), compiled into
native loops and branches of the same function.

    def step(x_t, h_prev, W, U):
        return ik.tanh(ik.dot(x_t, W) + ik.dot(h_prev, U))
    hs, updates = ik.scan(step, sequences=X, outputs_info=h0, non_sequences=[W, U])

Theano's semantics: the step takes the sequences' slices (one per tap, in order), then
the taps of each recurrent output, then the non-sequences; it returns the outputs, and
may add a dict of shared-variable updates and `ik.until(cond)`. What the step reads
from outside without passing it as a non-sequence is captured the same way, and work
that does not depend on the step's arguments is computed once, before the loop.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Sequence

import numpy as np
from xdsl.dialects.builtin import DYNAMIC_INDEX, DenseArrayBase, IntegerAttr, TensorType, UnitAttr, i64
from xdsl.ir import Operation, Region, SSAValue

from irkit import graph
from irkit import ops as K
from irkit.dialects.ik.control import IfOp, ScanOp, YieldOp, row_type, stacked_type, taps_attr
from irkit.dialects.ik.create import ConstantOp, PlaceholderOp
from irkit.errors import DTypeError, ShapeError
from irkit.leaves import SharedVariable, collect_default_updates
from irkit.types import format_shape
from irkit.variable import Variable


class Until:
    """What `ik.until(cond)` gives: a step returning it stops the scan after a step where
    `cond` (a 0-d value) is true."""

    def __init__(self, cond: Any) -> None:
        cond = K.as_variable(cond)
        if cond.ndim != 0:
            raise ShapeError(f"ik.until: the condition must be 0-d, not of shape {format_shape(cond.static_shape)}")
        self.cond = cond if cond.dtype == np.bool_ else K.cast(cond, "bool")


def until(cond: Any) -> Until:
    return Until(cond)


# ---------------------------------------------------------------------------
# capturing a step (or a branch) as a region
# ---------------------------------------------------------------------------

def _dependent(outputs: Sequence[SSAValue], params: set[SSAValue]) -> list[Operation]:
    """The ops between `params` and `outputs` (those whose value depends on a param), and the
    constants they read (cloned into the region rather than passed in)."""
    order: list[Operation] = []
    seen: set = set()
    stack: list[tuple[SSAValue, bool]] = [(v, False) for v in outputs]
    while stack:
        v, done = stack.pop()
        op = v.owner
        if v in params or not isinstance(op, Operation):
            continue
        if done:
            if op not in seen:
                seen.add(op)
                order.append(op)
            continue
        if op in seen:
            continue
        stack.append((v, True))
        stack.extend((u, False) for u in op.operands)
    inside: dict[Operation, None] = {}  # ordered: the same graph gives the same region in any process
    for op in order:  # producers first
        if any(u in params or u.owner in inside for u in op.operands):
            for u in op.operands:
                if isinstance(u.owner, ConstantOp):
                    inside[u.owner] = None
            inside[op] = None
    return list(inside)


def capture(params: Sequence[Variable], outputs: Sequence[Variable], givens: dict[SSAValue, SSAValue],
            what: str):
    """A block computing `outputs` from `params` and the outside values it reads (returned as
    the captured list, which the block takes after the params), ended by ik.yield."""
    from irkit.function import build_module
    pv = {p.value for p in params} | set(givens) | set(givens.values())
    inside = _dependent([givens.get(o.value, o.value) for o in outputs] +
                        [o.value for o in outputs], pv)
    inside_values = set()
    for op in inside:
        inside_values.update(op.results)
    captured: list[SSAValue] = []
    for op in inside:
        for u in op.operands:
            u = givens.get(u, u)
            if u not in pv and u not in inside_values and u not in captured:
                captured.append(u)
    for o in outputs:
        v = givens.get(o.value, o.value)
        if v not in pv and v not in inside_values and v not in captured:
            captured.append(v)
    captured.sort(key=lambda v: 0 if isinstance(v.owner, PlaceholderOp) else 1)
    cap_vars = [Variable(v) for v in captured]
    module, shared = build_module(list(params) + cap_vars, list(outputs), givens)
    assert not shared, f"{what}: shared variables {shared} were not captured"
    fn = next(iter(module.ops))
    block = fn.body.detach_block(fn.body.block)
    ret = block.last_op
    values = list(ret.operands)
    block.erase_op(ret)
    block.add_op(YieldOp(values))
    module.body.block.detach_op(fn)
    fn.erase()
    return block, cap_vars


# ---------------------------------------------------------------------------
# scan
# ---------------------------------------------------------------------------

def _as_list(x: Any) -> list:
    if x is None:
        return []
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def _taps(given: Any, default: list[int], what: str) -> tuple[int, ...]:
    taps = default if given is None else _as_list(given)
    if not taps:
        raise ValueError(f"ik.scan: {what} has no taps")
    out = []
    for k in taps:
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool):
            raise TypeError(f"ik.scan: the taps of {what} must be ints, not {k!r}")
        out.append(int(k))
    if len(set(out)) != len(out):
        raise ValueError(f"ik.scan: the taps of {what} repeat: {out}")
    return tuple(out)


def _sequences(sequences: Any) -> list[tuple[Variable, tuple[int, ...]]]:
    out = []
    for k, s in enumerate(_as_list(sequences)):
        what = f"sequence {k}"
        if isinstance(s, dict):
            unknown = set(s) - {"input", "taps"}
            if unknown or "input" not in s:
                raise TypeError(f"ik.scan: {what} as a dict takes input= and taps=, got {sorted(s)}")
            var, taps = K.as_variable(s["input"]), _taps(s.get("taps"), [0], what)
        else:
            var, taps = K.as_variable(s), (0,)
        if var.ndim == 0:
            raise ShapeError(f"ik.scan: {what} is 0-d; a sequence is iterated along its first dim")
        out.append((var, taps))
    return out


def _outputs_info(info: Any) -> list[tuple[Variable | None, tuple[int, ...]]]:
    out = []
    for j, o in enumerate(_as_list(info)):
        what = f"output {j}"
        if o is None:
            out.append((None, ()))
            continue
        if isinstance(o, dict):
            unknown = set(o) - {"initial", "taps"}
            if unknown:
                raise TypeError(f"ik.scan: {what} as a dict takes initial= and taps=, got {sorted(o)}")
            if o.get("initial") is None:
                out.append((None, ()))
                continue
            init, taps = K.as_variable(o["initial"]), _taps(o.get("taps"), [-1], what)
        else:
            init, taps = K.as_variable(o), (-1,)
        if any(k >= 0 for k in taps):
            raise ValueError(f"ik.scan: the taps of {what} must be negative (a step reads earlier steps), "
                             f"got {list(taps)}")
        if taps != (-1,):
            depth = -min(taps)
            if init.ndim == 0:
                raise ShapeError(f"ik.scan: {what} has taps {list(taps)}, so its initial value needs a leading "
                                 f"dim of at least {depth} rows; it is 0-d")
            rows = init.static_shape[0]
            if rows is not None and rows < depth:
                raise ShapeError(f"ik.scan: {what} has taps {list(taps)} reaching {depth} steps back, but its "
                                 f"initial value has only {rows} rows (shape {format_shape(init.static_shape)})")
        out.append((init, taps))
    return out


def _split_return(ret: Any) -> tuple[list, dict, Until | None]:
    """Theano's step returns: outputs; (outputs, updates); (outputs, until); (outputs, updates, until)."""
    items = list(ret) if isinstance(ret, (list, tuple)) else [ret]
    updates: dict = {}
    cond = None
    rest = []
    for item in items:
        if isinstance(item, Until):
            cond = item
        elif isinstance(item, dict):
            updates.update(item)
        else:
            rest.append(item)
    if len(rest) == 1 and isinstance(rest[0], (list, tuple)):
        rest = list(rest[0])
    if len(rest) == 1 and rest[0] is None:
        rest = []
    return rest, updates, cond


def _steps(n_steps: Any, seqs) -> Variable:
    """n_steps as a 0-d int64 variable (checked against the sequences when both are known)."""
    if n_steps is not None:
        if isinstance(n_steps, (int, np.integer)) and not isinstance(n_steps, bool):
            if n_steps < 0:
                raise ValueError(f"ik.scan: n_steps={int(n_steps)} is negative")
            n_static = int(n_steps)
        elif isinstance(n_steps, Variable):
            if n_steps.ndim != 0 or n_steps.dtype.kind not in "iu":
                raise TypeError(f"ik.scan: n_steps must be an integer scalar, not a {n_steps.dtype.name} "
                                f"variable of shape {format_shape(n_steps.static_shape)}")
            n_static = K._static_int(n_steps)
            if n_static is not None and n_static < 0:
                raise ValueError(f"ik.scan: n_steps={n_static} is negative")
        else:
            raise TypeError(f"ik.scan: n_steps must be an int or an integer scalar variable, "
                            f"not {type(n_steps).__name__}")
        for k, (s, taps) in enumerate(seqs):
            span = max(max(taps), 0) - min(min(taps), 0)
            rows = s.static_shape[0]
            if n_static is not None and rows is not None and rows - span < n_static:
                raise ShapeError(f"ik.scan: n_steps={n_static}, but sequence {k} (shape "
                                 f"{format_shape(s.static_shape)}, taps {list(taps)}) gives only "
                                 f"{max(rows - span, 0)} steps")
        return K.cast(K.as_variable(n_steps, np.dtype(np.int64)), "int64")
    if not seqs:
        raise ValueError("ik.scan: n_steps is needed when there are no sequences")
    counts = []
    for s, taps in seqs:
        span = max(max(taps), 0) - min(min(taps), 0)
        counts.append(K.maximum(K.dim(s, 0) - span, 0) if span else K.dim(s, 0))
    n = counts[0]
    for c in counts[1:]:
        n = K.minimum(n, c)
    return n


def scan(fn: Callable, sequences: Any = None, outputs_info: Any = None, non_sequences: Any = None,
         n_steps: Any = None, go_backwards: bool = False, truncate_gradient: int = -1,
         name: str | None = None) -> tuple[Any, OrderedDict]:
    """Theano's scan: `fn` once per step, as one native loop. Returns (outputs, updates):
    one variable for one output, else a list; updates maps shared variables to new values."""
    label = f"ik.scan{f' {name!r}' if name else ''}"
    seqs = _sequences(sequences)
    info = _outputs_info(outputs_info)
    nonseqs = [K.as_variable(v) for v in _as_list(non_sequences)]
    if not isinstance(truncate_gradient, (int, np.integer)) or truncate_gradient == 0 or truncate_gradient < -1:
        raise ValueError(f"{label}: truncate_gradient must be -1 (full) or a positive number of steps, "
                         f"not {truncate_gradient!r}")
    n = _steps(n_steps, seqs)

    # the step's arguments, as placeholders: each sequence's slices, then each state's taps
    args: list[Variable] = []
    for k, (s, taps) in enumerate(seqs):
        label_k = s.name or f"seq{k}"
        args += [_step_arg(f"{label_k}[t{tap:+d}]" if tap else f"{label_k}[t]", s.static_shape[1:], s.dtype)
                 for tap in taps]
    states = [(j, init, taps) for j, (init, taps) in enumerate(info) if init is not None]
    for j, init, taps in states:
        shape = init.static_shape if taps == (-1,) else init.static_shape[1:]
        args += [_step_arg(f"out{j}[t{tap:+d}]", shape, init.dtype) for tap in taps]
    ret = fn(*args, *nonseqs)
    outs, updates, cond = _split_return(ret)
    outs = [K.as_variable(o) for o in outs]
    # shared variables the step reads that say how they advance (random streams) advance every
    # step, as in Theano's scan, unless the step's own updates name them
    reads = outs + [K.as_variable(e) for e in updates.values()] + ([cond.cond] if cond is not None else [])
    for s, expr in collect_default_updates(reads, list(updates), stop_at=nonseqs, per_step=True):
        updates[s] = expr
    if outputs_info is not None and len(outs) != len(info):
        raise ValueError(f"{label}: the step returned {len(outs)} outputs, but outputs_info has {len(info)} "
                         "entries (one per output, None for one that is not fed back)")
    if outputs_info is None:
        info = [(None, ())] * len(outs)
    for j, init, taps in states:
        o = outs[j]
        state_shape = init.static_shape if taps == (-1,) else init.static_shape[1:]
        if o.dtype != init.dtype:
            raise DTypeError(f"{label}: the step gives output {j} as {o.dtype.name}, but its initial value is "
                             f"{init.dtype.name}; the dtype of a recurrent output cannot change between steps "
                             "(cast one of them)")
        if o.ndim != len(state_shape) or any(a is not None and b is not None and a != b
                                             for a, b in zip(o.static_shape, state_shape)):
            raise ShapeError(f"{label}: the step gives output {j} of shape {format_shape(o.static_shape)}, but "
                             f"its initial value gives steps of shape {format_shape(state_shape)}; the shape of "
                             "a recurrent output cannot change between steps")

    # shared variables the step updates are carried as states too: each step sees the last value
    upd = []
    for s, expr in updates.items():
        if not isinstance(s, SharedVariable):
            raise TypeError(f"{label}: the step's updates can change shared variables only, not {s!r}")
        expr = K.as_variable(expr, s.dtype)
        if expr.dtype != s.dtype:
            if not np.can_cast(expr.dtype, s.dtype, "same_kind"):
                raise DTypeError(f"{label}: the update of shared variable {s.name!r} is {expr.dtype.name}, "
                                 f"the variable {s.dtype.name}")
            expr = K.cast(expr, s.dtype)
        if expr.ndim != s.ndim:
            raise ShapeError(f"{label}: the update of shared variable {s.name!r} has rank {expr.ndim}, the "
                             f"variable {s.ndim}")
        upd.append((s, expr, _step_arg(f"{s.name}[t-1]", s.static_shape, s.dtype)))
    givens = {s.value: p.value for s, _, p in upd}

    state_idx = [j for j, _, _ in states]
    nitsot_idx = [j for j in range(len(outs)) if j not in state_idx]
    yielded = [outs[j] for j in state_idx] + [e for _, e, _ in upd] + [outs[j] for j in nitsot_idx]
    if cond is not None:
        yielded.append(cond.cond)
    params = args + [p for _, _, p in upd]
    block, captured = capture(params, yielded, givens, label)
    # the body takes: sequence slices, state taps (user states, then updated shared variables), the rest
    inits = [init for _, init, _ in states] + [s for s, _, _ in upd]
    state_taps = [taps for _, _, taps in states] + [(-1,)] * len(upd)
    kept = list(range(len(states), len(states) + len(upd)))
    results = _make_scan(n, seqs, list(zip(inits, state_taps)), captured, block, backwards=go_backwards,
                         last_only=kept, until=cond is not None, truncate=int(truncate_gradient))
    by_user = {}
    for k, j in enumerate(state_idx):
        by_user[j] = results[k]
    for k, j in enumerate(nitsot_idx):
        by_user[j] = results[len(state_idx) + len(upd) + k]
    outputs = [by_user[j] for j in range(len(outs))]
    new_values = OrderedDict((s, results[len(state_idx) + k]) for k, (s, _, _) in enumerate(upd))
    if len(outputs) == 1:
        return outputs[0], new_values
    return outputs, new_values


def _step_arg(name: str, shape, dtype) -> Variable:
    """A placeholder standing for a step's argument."""
    from irkit.leaves import tensor
    return tensor(name, shape=tuple(shape), dtype=dtype)


# ---------------------------------------------------------------------------
# ifelse
# ---------------------------------------------------------------------------

def ifelse(cond: Any, then_value: Any, else_value: Any, name: str | None = None) -> Any:
    """`then_value` if `cond` (a 0-d value) else `else_value`, evaluating only the branch
    taken: the work that only one branch needs runs inside that branch. Either may be a
    tuple or list of values (then so is the result)."""
    label = f"ik.ifelse{f' {name!r}' if name else ''}"
    cond = K.as_variable(cond)
    if cond.ndim != 0:
        raise ShapeError(f"{label}: the condition must be 0-d, not of shape {format_shape(cond.static_shape)}")
    multi = isinstance(then_value, (list, tuple))
    if multi != isinstance(else_value, (list, tuple)):
        raise TypeError(f"{label}: both branches must be single values or both sequences of values")
    a = [then_value] if not multi else list(then_value)
    b = [else_value] if not multi else list(else_value)
    if len(a) != len(b):
        raise ValueError(f"{label}: the then branch gives {len(a)} values, the else branch {len(b)}")
    pairs = [K._lift_pair(x, y) for x, y in zip(a, b)]
    a, b = [x for x, _ in pairs], [y for _, y in pairs]
    types = []
    for k, (x, y) in enumerate(zip(a, b)):
        if x.dtype != y.dtype:
            raise DTypeError(f"{label}: output {k} is {x.dtype.name} in the then branch and {y.dtype.name} in "
                             "the else branch; both branches must give the same types")
        if x.ndim != y.ndim:
            raise ShapeError(f"{label}: output {k} has shape {format_shape(x.static_shape)} in the then branch "
                             f"and {format_shape(y.static_shape)} in the else branch")
        shape = [s if s == t else None for s, t in zip(x.static_shape, y.static_shape)]
        from irkit.types import tensor_type
        types.append(tensor_type(x.dtype, shape))
    blocks = []
    for values in (a, b):
        from xdsl.ir import Block
        block = Block(arg_types=[v.value.type for v in values])
        block.add_op(YieldOp(list(block.args)))
        blocks.append(block)
    op = IfOp.build(operands=[cond.value, [x.value for x in a], [y.value for y in b]], result_types=[types],
                    regions=[Region(blocks[0]), Region(blocks[1])])
    graph.place_located(op)
    out = [Variable(r) for r in op.results]
    return out if multi else out[0]


# ---------------------------------------------------------------------------
# derivatives of scan and ifelse (called by the autodiff pass, see ScanOp.vjp_multi)
# ---------------------------------------------------------------------------

def _body_clone(body, block, mapping: dict, anchor) -> None:
    """Clone `body`'s ops (not its yield) into `block` before `anchor`, extending `mapping`."""
    for inner in body.ops:
        if isinstance(inner, YieldOp):
            continue
        clone = inner.clone(value_mapper=mapping)
        block.insert_op_before(clone, anchor)
        for old, new in zip(inner.results, clone.results):
            mapping[old] = new


def _is_float(v) -> bool:
    return v.dtype.kind == "f"


def _make_scan(n: Variable, seqs: list, inits: list, consts: list, block, backwards: bool = False,
               last_only: Sequence[int] = (), until: bool = False, truncate: int = -1,
               like: ScanOp | None = None) -> list[Variable]:
    """Place an ik.scan built from parts: seqs and inits as [(Variable, taps)], the body block
    (which yields new states, then per-step outputs, then the until condition); the states
    in `last_only` keep their last value only. It has the location of `like`, else the user's."""
    steps = None if until else K._static_int(n)
    result_types = []
    values = list(block.last_op.values)
    for j, (init, taps) in enumerate(inits):
        st = init.value.type if taps == (-1,) else row_type(init.value.type)
        result_types.append(st if j in last_only else stacked_type(st, steps))
    for v in values[len(inits):len(values) - (1 if until else 0)]:
        result_types.append(stacked_type(v.type, steps))
    props = {"seq_taps": taps_attr([t for _, t in seqs]), "state_taps": taps_attr([t for _, t in inits])}
    if last_only:
        props["last_only"] = DenseArrayBase.from_list(i64, list(last_only))
    if backwards:
        props["go_backwards"] = UnitAttr()
    if until:
        props["until"] = UnitAttr()
    if truncate != -1:
        props["truncate_gradient"] = IntegerAttr(truncate, i64)
    op = ScanOp.build(operands=[n.value, [s.value for s, _ in seqs], [v.value for v, _ in inits],
                                [c.value for c in consts]],
                      result_types=[result_types], properties=props, regions=[Region()])
    op.body.add_block(block)
    if like is None:
        graph.place_located(op)
    else:
        op.location = like.location
        graph.place(op)
    return [Variable(r) for r in op.results]


def _new_block(types: list):
    from xdsl.ir import Block
    block = Block(arg_types=types)
    anchor = YieldOp([])
    block.add_op(anchor)
    return block, anchor


def _full_history(op: ScanOp) -> ScanOp:
    """The same scan with every state stacked (a derivative needs each step's state)."""
    if op.last_only is None:
        return op
    kept = op.kept_last()
    steps = None if op.has_until else K._static_int(Variable(op.n_steps))
    types = [stacked_type(r.type, steps) if k in kept else r.type for k, r in enumerate(op.results)]
    props = {k: v for k, v in op.properties.items() if k not in ("last_only", "operandSegmentSizes")}
    clone = ScanOp.build(operands=[op.n_steps, list(op.sequences), list(op.inits), list(op.consts)],
                         result_types=[types], properties=props, regions=[op.body.clone()])
    clone.location = op.location
    graph.place(clone)
    return clone


def scan_vjp(op: ScanOp, cts, ins, outs) -> list:
    """Back-propagation through time: a reverse ik.scan whose step recomputes the forward
    step from the stored states and takes its vjp. It carries, per state, the cotangents
    of the states its taps reach back to, and per non-sequence the sum of its cotangents;
    it stacks the cotangents of the sequences' slices, which are added into place after."""
    from irkit.dialects.ik.base import describe
    from irkit.errors import GradientUndefinedError
    from irkit.passes.autodiff import Differentiator
    where = describe(op)
    ns, nst = len(op.sequences), len(op.inits)
    seqs, inits, consts = ins[1:1 + ns], ins[1 + ns:1 + ns + nst], ins[1 + ns + nst:]
    if any(c is not None and c.ndim != o.ndim for c, o in zip(cts, outs)):
        raise GradientUndefinedError(f"{where}: a batch of cotangents (ik.jacobian, ik.hessian) cannot go "
                                     "through a scan; take ik.grad per output, or ik.Rop")
    seq_taps, state_taps, kept = op.seq_tap_lists(), op.state_tap_lists(), op.kept_last()
    full = _full_history(op)
    hist = [Variable(r) for r in full.results]
    if op.has_until:
        n = K.dim(hist[0], 0) if hist else None
        if n is None:
            raise GradientUndefinedError(f"{where}: a scan with until and no stacked output has no gradient")
    else:
        n = Variable(op.n_steps)
    n_rev = n if op.truncate < 0 else K.minimum(n, op.truncate)
    fwd_seqs, fwd_states, fwd_consts = op.arg_groups()

    # the reverse loop's sequences: the forward slices, the states' taps, the cotangents
    rev_seqs = []
    for s, taps in zip(seqs, seq_taps):
        lo, hi = min(min(taps), 0), max(max(taps), 0)
        eff = s[::-1] if op.backwards else s
        eff = eff[:n + (hi - lo)]
        rev_seqs.append((eff, tuple(hi - k for k in taps)))
    for j, (init, taps) in enumerate(zip(inits, state_taps)):
        m = -min(taps)
        rows = K.expand_dims(init, 0) if taps == (-1,) else init[K.dim(init, 0) - m:]
        # the taps the step read, and (last) the state it wrote, which the derivative reads
        # instead of recomputing it
        rev_seqs.append((K.concatenate([rows, hist[j]], 0), tuple(-k for k in taps) + (0,)))
    ct_stacked = {}
    for k, (c, o) in enumerate(zip(cts, outs)):
        if c is not None and k not in kept and _is_float(o):
            ct_stacked[k] = len(rev_seqs)
            rev_seqs.append((c, (0,)))
    # carried: per float state its pending cotangents, per float non-sequence the sum
    float_states = [j for j in range(nst) if _is_float(inits[j])]
    rev_inits = []
    for j in float_states:
        m = -min(state_taps[j])
        zero = K.zeros_like(inits[j] if state_taps[j] == (-1,) else inits[j][0])
        for i in range(m):
            seed = cts[j] if i == 0 and j in kept and cts[j] is not None else zero
            rev_inits.append((seed, (-1,)))
    float_consts = [k for k, c in enumerate(consts) if _is_float(c)]
    for k in float_consts:
        rev_inits.append((K.zeros_like(consts[k]), (-1,)))

    types = [a for (s, taps) in rev_seqs for a in [row_type(s.value.type)] * len(taps)]
    types += [v.value.type if taps == (-1,) else row_type(v.value.type) for v, taps in rev_inits]
    types += [c.value.type for c in consts]
    block, anchor = _new_block(types)
    args = list(block.args)
    mapping: dict = {}
    pos = 0
    seq_args = []
    for group in fwd_seqs:
        seq_args.append(args[pos:pos + len(group)])
        mapping.update(zip(group, args[pos:pos + len(group)]))
        pos += len(group)
    written = []
    for group in fwd_states:
        mapping.update(zip(group, args[pos:pos + len(group)]))
        written.append(args[pos + len(group)])
        pos += len(group) + 1
    ct_args = {k: args[pos + i] for i, k in enumerate(ct_stacked)}
    pos += len(ct_stacked)
    pending = {}
    for j in float_states:
        m = -min(state_taps[j])
        pending[j] = args[pos:pos + m]
        pos += m
    acc_args = args[pos:pos + len(float_consts)]
    pos += len(float_consts)
    mapping.update(zip(fwd_consts, args[pos:]))
    _body_clone(op.body.block, block, mapping, anchor)
    values = [mapping.get(v, v) for v in op.yield_op.values]
    with graph.inserting_before(anchor, graph.current_location()):
        seeds = []
        for j in float_states:
            seed = Variable(pending[j][0])
            if j in ct_args:
                seed = seed + Variable(ct_args[j])
            seeds.append((values[j], seed))
        for k in ct_stacked:
            if k >= nst:
                seeds.append((values[k], Variable(ct_args[k])))
        wrt = [mapping[a] for g in fwd_seqs for a in g] + [mapping[a] for g in fwd_states for a in g] + \
            [mapping[a] for a in fwd_consts]
        grads = dict(zip(wrt, Differentiator(block).backward(anchor, seeds, wrt, set())))

        def g(a, like):
            got = grads.get(mapping[a])
            return got if got is not None else K.zeros_like(like)
        new_vals = []
        for j in float_states:
            taps = state_taps[j]
            m = -min(taps)
            tap_arg = dict(zip(taps, fwd_states[j]))
            for i in range(m):
                nxt = Variable(pending[j][i + 1]) if i + 1 < m else None
                contrib = g(tap_arg[-(i + 1)], Variable(pending[j][0])) if -(i + 1) in tap_arg else None
                if nxt is None and contrib is None:
                    new_vals.append(K.zeros_like(Variable(pending[j][0])))
                else:
                    new_vals.append(contrib if nxt is None else nxt if contrib is None else nxt + contrib)
        # a non-sequence's cotangent: its outer-product terms (x_t^T q_t) are stacked and contracted
        # once after the loop; the rest is summed step by step
        outer: dict[int, list] = {}
        summed = []
        for k, a in zip(float_consts, acc_args):
            got = grads.get(mapping[fwd_consts[k]])
            terms = _add_terms(got) if got is not None else []
            outer[k] = [f for f in map(_outer_factors, terms) if f is not None]
            rest = [t for t in terms if _outer_factors(t) is None]
            if rest:
                total = rest[0]
                for t in rest[1:]:
                    total = total + t
                new_vals.append(Variable(a) + total)
                summed.append(k)
        slice_grads = []
        for i, group in enumerate(fwd_seqs):
            if _is_float(seqs[i]):
                for a in group:
                    slice_grads.append(g(a, Variable(mapping[a])))
        factors = [v for k in float_consts for pair in outer[k] for v in pair]
    anchor.operands = [v.value for v in new_vals + slice_grads + factors]
    for j, stored in enumerate(written):
        if values[j].owner.parent is block:  # what the forward loop computed, not recomputed
            values[j].replace_all_uses_with(stored)
    n_pending = len(rev_inits) - len(float_consts)
    for k, a in zip(float_consts, acc_args):
        if k not in summed:
            block.erase_arg(a)
    rev_inits = rev_inits[:n_pending] + [rev_inits[n_pending + i] for i, k in enumerate(float_consts) if k in summed]
    n_carried = len(rev_inits)
    res = _make_scan(n_rev, rev_seqs, rev_inits, list(consts), block, backwards=True, like=op,
                     last_only=list(range(n_carried)))
    carried, stacked = res[:n_carried], res[n_carried:]

    # put the pieces in place
    full_steps = None
    if op.truncate >= 0:
        full_steps = K.eq(n_rev, n)
    out: list = [None]
    k = 0
    for i, (s, taps) in enumerate(zip(seqs, seq_taps)):
        if not _is_float(s):
            out.append(None)
            continue
        lo = min(min(taps), 0)
        total = K.zeros_like(s)
        for tap in taps:
            piece = stacked[k][::-1]
            k += 1
            start = n - n_rev + (tap - lo)
            total = K.inc_subtensor(total[start:start + n_rev], piece)
        out.append(total[::-1] if op.backwards else total)
    c = 0
    for j in range(nst):
        if j not in float_states:
            out.append(None)
            continue
        taps = state_taps[j]
        m = -min(taps)
        finals = carried[c:c + m]
        c += m
        if taps == (-1,):
            gi = finals[0]
        else:
            rows = K.dim(inits[j], 0)
            tail = K.stack(finals[::-1], 0)
            gi = K.concatenate([K.zeros_like(inits[j][:rows - m]), tail], 0)
        if full_steps is not None:
            gi = K.where(full_steps, gi, K.zeros_like(gi))
        out.append(gi)
    stacked_factors = iter(stacked[k:])
    for k2, cst in enumerate(consts):
        if k2 not in float_consts:
            out.append(None)
            continue
        total = None
        if k2 in summed:
            total = carried[c]
            c += 1
        for _ in outer[k2]:
            xs, qs = next(stacked_factors), next(stacked_factors)
            xs = K.reshape(xs, (-1, K.dim(xs, 2)))
            qs = K.reshape(qs, (-1, K.dim(qs, 2)))
            term = K.matmul(K.transpose(xs), qs)
            total = term if total is None else total + term
        out.append(total)
    return out


def _add_terms(v: Variable) -> list[Variable]:
    """v as a sum of terms, through the additions of the same shape that built it."""
    from irkit.dialects.ik.elementwise import AddOp
    op = v.value.owner
    if isinstance(op, AddOp) and all(o.type == v.value.type for o in op.operands):
        return _add_terms(Variable(op.operands[0])) + _add_terms(Variable(op.operands[1]))
    return [v]


def _outer_factors(t: Variable) -> tuple[Variable, Variable] | None:
    """(x, q) when t is x^T q of two matrices (the vjp of a product with a weight)."""
    from irkit.dialects.ik.linalg import MatmulOp
    from irkit.dialects.ik.shape import TransposeOp
    op = t.value.owner
    if not isinstance(op, MatmulOp) or t.ndim != 2:
        return None
    a, q = op.operands
    tr = a.owner
    if isinstance(tr, TransposeOp) and tuple(tr.params.perm) == (1, 0) and len(q.type.get_shape()) == 2:
        return Variable(tr.operands[0]), Variable(q)
    return None


def scan_jvp(op: ScanOp, ts, ins, outs) -> list:
    """Forward mode through a scan: a scan that carries each state's tangent beside it."""
    from irkit.passes.autodiff import Differentiator
    ns, nst = len(op.sequences), len(op.inits)
    seqs, inits, consts = ins[1:1 + ns], ins[1 + ns:1 + ns + nst], ins[1 + ns + nst:]
    seq_t, init_t, const_t = ts[1:1 + ns], ts[1 + ns:1 + ns + nst], ts[1 + ns + nst:]
    seq_taps, state_taps, kept = op.seq_tap_lists(), op.state_tap_lists(), op.kept_last()
    fwd_seqs, fwd_states, fwd_consts = op.arg_groups()
    t_seqs = [i for i in range(ns) if seq_t[i] is not None and _is_float(seqs[i])]
    t_states = [j for j in range(nst) if _is_float(inits[j])]
    t_consts = [k for k in range(len(consts)) if const_t[k] is not None and _is_float(consts[k])]
    new_seqs = list(zip(seqs, seq_taps)) + [(seq_t[i], seq_taps[i]) for i in t_seqs]
    new_inits = list(zip(inits, state_taps)) + \
        [(init_t[j] if init_t[j] is not None else K.zeros_like(inits[j]), state_taps[j]) for j in t_states]
    new_consts = list(consts) + [const_t[k] for k in t_consts]
    # the new step's arguments: the forward ones, each group followed by the tangents it has
    mapping: dict = {}
    tangent: dict = {}
    slots = [(mapping, a) for g in fwd_seqs for a in g]
    slots += [(tangent, a) for i in t_seqs for a in fwd_seqs[i]]
    slots += [(mapping, a) for g in fwd_states for a in g]
    slots += [(tangent, a) for j in t_states for a in fwd_states[j]]
    slots += [(mapping, a) for a in fwd_consts]
    slots += [(tangent, fwd_consts[k]) for k in t_consts]
    block, anchor = _new_block([a.type for _, a in slots])
    for (table, a), arg in zip(slots, block.args):
        table[a] = arg
    _body_clone(op.body.block, block, mapping, anchor)
    values = [mapping.get(v, v) for v in op.yield_op.values]
    with graph.inserting_before(anchor, graph.current_location()):
        wrt = [mapping[a] for a in tangent]
        tan = Differentiator(block).forward(anchor, wrt, [Variable(t) for t in tangent.values()], set())
        n_out = len(op.outs)
        t_outs = [k for k in range(n_out) if _is_float(outs[k]) and (k >= nst or k in t_states)]
        tangents = [tan[values[k]] if tan.get(values[k]) is not None else K.zeros_like(Variable(values[k]))
                    for k in t_outs]
    state_t = [t for k, t in zip(t_outs, tangents) if k < nst]
    nitsot_t = [t for k, t in zip(t_outs, tangents) if k >= nst]
    yielded = values[:nst] + [t.value for t in state_t] + values[nst:n_out] + [t.value for t in nitsot_t]
    if op.has_until:
        yielded.append(values[-1])
    anchor.operands = yielded
    last = [j for j in range(nst) if j in kept] + [nst + x for x, j in enumerate(t_states) if j in kept]
    res = _make_scan(Variable(op.n_steps), new_seqs, new_inits, new_consts, block, backwards=op.backwards,
                     like=op, last_only=last, until=op.has_until)
    n_states = nst + len(t_states)
    out_t = res[nst:n_states] + res[n_states + (n_out - nst):]
    got: list = [None] * n_out
    for k, t in zip(t_outs, out_t):
        got[k] = t
    return got


def _branch_derivative(op: IfOp, make_block) -> list[Variable]:
    """An ik.if whose branches are built by make_block(branch) -> (block, operands)."""
    blocks, groups = [], []
    for branch in (0, 1):
        block, operands = make_block(branch)
        blocks.append(block)
        groups.append(operands)
    types = []  # a dim the two branches disagree on is dynamic
    for a, b in zip(blocks[0].last_op.values, blocks[1].last_op.values):
        types.append(TensorType(a.type.get_element_type(), [x if x == y else DYNAMIC_INDEX
                                                            for x, y in zip(a.type.get_shape(), b.type.get_shape())]))
    new = IfOp.build(operands=[op.cond, [v.value for v in groups[0]], [v.value for v in groups[1]]],
                     result_types=[types], regions=[Region(blocks[0]), Region(blocks[1])])
    new.location = op.location
    graph.place(new)
    return [Variable(r) for r in new.results]


def if_vjp(op: IfOp, cts, ins, outs) -> list:
    """The cotangents go through the branch that ran: an ik.if whose branches take the vjp of
    their own region (the other branch's operands get zeros), so the derivative is lazy too."""
    from irkit.dialects.ik.base import describe
    from irkit.errors import GradientUndefinedError
    from irkit.passes.autodiff import Differentiator
    if any(c is not None and c.ndim != o.ndim for c, o in zip(cts, outs)):
        raise GradientUndefinedError(f"{describe(op)}: a batch of cotangents (ik.jacobian, ik.hessian) cannot go "
                                     "through an ifelse; take ik.grad per output, or ik.Rop")
    nt = len(op.then_args)
    args_of = [ins[1:1 + nt], ins[1 + nt:]]
    float_args = [[k for k, a in enumerate(group) if _is_float(a)] for group in args_of]
    present = [k for k, c in enumerate(cts) if c is not None]

    def make_block(branch):
        region_block = op.regions[branch].block
        group = args_of[branch]
        operands = list(group) + [cts[k] for k in present] + [a for b in (0, 1) if b != branch
                                                             for a in (args_of[b][k] for k in float_args[b])]
        block, anchor = _new_block([v.value.type for v in operands])
        args = list(block.args)
        mapping = dict(zip(region_block.args, args[:len(group)]))
        ct_args = args[len(group):len(group) + len(present)]
        other_args = args[len(group) + len(present):]
        _body_clone(region_block, block, mapping, anchor)
        values = [mapping.get(v, v) for v in region_block.last_op.values]
        with graph.inserting_before(anchor, graph.current_location()):
            seeds = [(values[k], Variable(a)) for k, a in zip(present, ct_args)]
            wrt = [mapping[region_block.args[k]] for k in float_args[branch]]
            got = Differentiator(block).backward(anchor, seeds, wrt, set())
            mine = [gv if gv is not None else K.zeros_like(Variable(w)) for gv, w in zip(got, wrt)]
            others = [K.zeros_like(Variable(a)) for a in other_args]
        grads = {0: mine if branch == 0 else others, 1: others if branch == 0 else mine}
        anchor.operands = [v.value for v in grads[0] + grads[1]]
        return block, operands

    res = _branch_derivative(op, make_block)
    out: list = [None]
    it = iter(res)
    for b in (0, 1):
        fl = set(float_args[b])
        for k in range(len(args_of[b])):
            out.append(next(it) if k in fl else None)
    return out


def if_jvp(op: IfOp, ts, ins, outs) -> list:
    """The tangent of the branch that ran, computed inside that branch."""
    from irkit.passes.autodiff import Differentiator
    nt = len(op.then_args)
    args_of = [ins[1:1 + nt], ins[1 + nt:]]
    ts_of = [ts[1:1 + nt], ts[1 + nt:]]

    def make_block(branch):
        region_block = op.regions[branch].block
        group = args_of[branch]
        with_t = [k for k, t in enumerate(ts_of[branch]) if t is not None and _is_float(group[k])]
        operands = list(group) + [ts_of[branch][k] for k in with_t]
        block, anchor = _new_block([v.value.type for v in operands])
        args = list(block.args)
        mapping = dict(zip(region_block.args, args[:len(group)]))
        _body_clone(region_block, block, mapping, anchor)
        values = [mapping.get(v, v) for v in region_block.last_op.values]
        with graph.inserting_before(anchor, graph.current_location()):
            wrt = [mapping[region_block.args[k]] for k in with_t]
            tan = Differentiator(block).forward(anchor, wrt, [Variable(a) for a in args[len(group):]], set())
            got = [tan[v] if tan.get(v) is not None else K.zeros_like(Variable(v)) for v in values]
        anchor.operands = [t.value for t in got]
        return block, operands

    return _branch_derivative(op, make_block)
