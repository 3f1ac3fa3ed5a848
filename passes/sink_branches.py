"""`sink-branches`: an op whose results only one branch of an `ik.if` reads moves into
that branch, with what only it reads in turn, so that the work runs only when the
branch is taken. This is what makes `ik.ifelse` lazy: a branch that would fail (an
index out of range) is never evaluated when the other is taken.

    %a = ik.exp %x                      "ik.if"(%c, %x, %y) ({
    %r = "ik.if"(%c, %a, %y) ({    ->     ^bb0(%x1): %a1 = ik.exp %x1
      ^bb0(%a1): ik.yield %a1              ik.yield %a1 }, ...)
    }, ...)
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import builtin
from xdsl.dialects.builtin import DenseArrayBase, i32
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.traits import Pure

from irkit.dialects.ik.control import IfOp
from irkit.dialects.ik.create import PlaceholderOp


def _group_range(op: IfOp, branch: int) -> range:
    start = 1 if branch == 0 else 1 + len(op.then_args)
    return range(start, start + (len(op.then_args) if branch == 0 else len(op.else_args)))


def _only_read_by(producer: Operation, op: IfOp, branch: int) -> bool:
    positions = _group_range(op, branch)
    for r in producer.results:
        for use in r.uses:
            if use.operation is not op or use.index not in positions:
                return False
    return True


def _movable(producer: Operation, op: IfOp) -> bool:
    """A pure tensor-level op beside the ik.if (not an input)."""
    return producer.parent is op.parent and producer.name.startswith("ik.") and \
        not isinstance(producer, PlaceholderOp) and producer.has_trait(Pure)


def sink_once(op: IfOp) -> bool:
    """Move one producer into a branch; whether one moved."""
    for branch in (0, 1):
        group = list(op.then_args if branch == 0 else op.else_args)
        for v in group:
            producer = v.owner
            if not isinstance(producer, Operation) or not _movable(producer, op) or \
                    not _only_read_by(producer, op, branch):
                continue
            _sink(op, branch, producer)
            return True
    return False


def _sink(op: IfOp, branch: int, producer: Operation) -> None:
    block = op.regions[branch].block
    group = list(op.then_args if branch == 0 else op.else_args)
    arg_of: dict[SSAValue, SSAValue] = {}
    for v, a in zip(group, block.args):
        arg_of.setdefault(v, a)
    # what the producer reads comes in as new operands (or ones the branch already has)
    for u in producer.operands:
        if u not in arg_of:
            arg_of[u] = block.insert_arg(u.type, len(block.args))
            group.append(u)
    clone = producer.clone(value_mapper=dict(arg_of))
    block.insert_op_before(clone, block.first_op)
    # the branch's arguments that stood for the producer's results now read the clone
    keep_values, keep_args = [], []
    for v, a in zip(group, list(block.args)):
        if v.owner is producer:
            a.replace_all_uses_with(clone.results[list(producer.results).index(v)])
            block.erase_arg(a)
        else:
            keep_values.append(v)
            keep_args.append(a)
    then_args = keep_values if branch == 0 else list(op.then_args)
    else_args = keep_values if branch == 1 else list(op.else_args)
    op.operands = [op.cond, *then_args, *else_args]
    op.properties["operandSegmentSizes"] = DenseArrayBase.from_list(i32, [1, len(then_args), len(else_args)])
    producer.detach()
    producer.erase()


@dataclass(frozen=True)
class SinkBranchesPass(ModulePass):
    """Move work that only one branch of an ik.if reads into that branch (lazy ifelse)."""

    name = "sink-branches"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        moved = True
        while moved:  # an op moved into a branch may be an ik.if whose own branches take more
            moved = False
            for inner in list(op.walk()):
                if isinstance(inner, IfOp) and inner.parent is not None:
                    while sink_once(inner):
                        moved = True
