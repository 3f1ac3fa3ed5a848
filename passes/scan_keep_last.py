"""`scan-keep-last`: a stacked output of an `ik.scan` read only at its last step
(`hs[-1]`, `hs[-1, 2:]`) is kept only at its last step: a state in a ring of its taps,
a per-step output in one slot. Memory falls from O(steps) to O(taps).

    %hs = "ik.scan"(...)                              %h = "ik.scan"(...) <{last_only = array<i64: 0>,
    %h = ik.slice %hs {spec = "-1, :"}    ->                                nonempty = array<i64: 0>}>

numpy's `hs[-1]` of an empty `hs` is an IndexError; `nonempty` keeps that error.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import builtin
from xdsl.dialects.builtin import DenseArrayBase, i64
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from irkit.dialects.ik.control import ScanOp, row_type
from irkit.dialects.ik.index import SliceOp, format_spec, parse_spec


def _reads_last_row(use) -> bool:
    op = use.operation
    if not isinstance(op, SliceOp) or use.index != 0:
        return False
    entries = parse_spec(op.params.spec)
    return bool(entries) and entries[0] == ("index", -1)


def keep_last(op: ScanOp) -> ScanOp | None:
    """A copy of `op` that keeps the results read only at their last step; None if none."""
    kept = op.kept_last()
    newly = [k for k, r in enumerate(op.results)
             if k not in kept and r.uses and all(_reads_last_row(u) for u in r.uses)]
    if not newly:
        return None
    types = [row_type(r.type) if k in newly else r.type for k, r in enumerate(op.results)]
    props = dict(op.properties)
    props["last_only"] = DenseArrayBase.from_list(i64, sorted(kept | set(newly)))
    nonempty = set() if op.nonempty is None else {int(k) for k in op.nonempty.get_values()}
    props["nonempty"] = DenseArrayBase.from_list(i64, sorted(nonempty | set(newly)))
    new = ScanOp.create(operands=list(op.operands), result_types=types, properties=props,
                        regions=[op.body.clone()])
    new.location = op.location
    Rewriter.insert_op(new, _before(op))
    for k, (old, r) in enumerate(zip(op.results, new.results)):
        if k not in newly:
            old.replace_all_uses_with(r)
            continue
        for use in list(old.uses):
            sl = use.operation
            rest = parse_spec(sl.params.spec)[1:]
            if not rest or all(e == ("slice", None, None, 1) for e in rest):
                sl.results[0].replace_all_uses_with(r)
                sl.detach()
                sl.erase()
                continue
            repl = SliceOp.make([r, *sl.bounds], loc=None, spec=format_spec(rest))
            repl.location = sl.location
            Rewriter.replace_op(sl, repl)
    op.detach()
    op.erase()
    return new


def _before(op):
    from xdsl.rewriter import InsertPoint
    return InsertPoint.before(op)


@dataclass(frozen=True)
class ScanKeepLastPass(ModulePass):
    """Keep only the last step of scan outputs read only at their last step (memory O(taps))."""

    name = "scan-keep-last"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        for scan in reversed([o for o in op.walk() if isinstance(o, ScanOp)]):  # inner scans first
            keep_last(scan)
