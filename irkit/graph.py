"""Where ops made by the Python API go.

While a user builds a graph, ops are created detached: a `Variable` is the
result of an op that lives in no block, and the graph is the web of operand
links between such ops (xDSL's own use-def chains; no second IR). `ik.function`
later clones what an output needs into a `func.func`.

Inside a rewrite (a decomposition, later an autodiff rule) the same API
builds into a module instead: `inserting_before(op)` makes every new op go
right before `op`, with `op`'s source location, so rules are written with
the user-facing operations.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

from xdsl.ir import Operation
from xdsl.rewriter import InsertPoint, Rewriter

from irkit.errors import SourceLoc, user_location

class _Contexts(threading.local):
    """Each thread's own stack of insertion contexts: graphs are built, and rules rewrite
    modules, in several threads at once (one thread's rule must never insert into another
    thread's module)."""

    def __init__(self) -> None:
        self.stack: list[tuple[InsertPoint | None, SourceLoc | None, object]] = []


_contexts = _Contexts()


@contextlib.contextmanager
def inserting_before(op: Operation, loc: SourceLoc | None = None, rewriter=None) -> Iterator[None]:
    """Ops built by `irkit.ops` inside this block are inserted before `op` (through
    `rewriter` when given, so a pattern walker sees them)."""
    _contexts.stack.append((InsertPoint.before(op), loc, rewriter))
    try:
        yield
    finally:
        _contexts.stack.pop()


@contextlib.contextmanager
def detached(loc: SourceLoc | None = None) -> Iterator[list[Operation]]:
    """Ops built inside this block stay detached (with `loc`), even within inserting_before;
    the list it yields collects them, so that the caller can insert or erase them (a detached
    op still counts as a use of its operands)."""
    created: list[Operation] = []
    _contexts.stack.append((None, loc, created))
    try:
        yield created
    finally:
        _contexts.stack.pop()


def discard(created: list[Operation]) -> None:
    """Erase detached ops that were not inserted, users first, so no stray uses remain."""
    for op in reversed(created):
        if op.parent is None:
            op.erase(safe_erase=False)


def attach_before(value, anchor: Operation, rewriter=None) -> None:
    """Insert before `anchor` the detached ops `value` is computed from, producers first."""
    order, seen = [], set()
    stack = [(value.owner, False)]
    while stack:
        op, done = stack.pop()
        if not isinstance(op, Operation) or op.parent is not None or (op in seen and not done):
            continue
        if done:
            order.append(op)
            continue
        seen.add(op)
        stack.append((op, True))
        stack.extend((v.owner, False) for v in op.operands)
    point = InsertPoint.before(anchor)
    for op in order:
        if rewriter is not None:
            rewriter.insert(op, point)
        else:
            Rewriter.insert_op(op, point)


def building_detached() -> bool:
    stack = _contexts.stack
    return not stack or stack[-1][0] is None


def current_location() -> SourceLoc | None:
    stack = _contexts.stack
    if stack:
        return stack[-1][1]
    return user_location()


def place_located(op: Operation) -> Operation:
    """place(op), with the location of the current context (the user's line) when known."""
    loc = current_location()
    if loc is not None:
        op.location = loc.attr()
    return place(op)


def place(op: Operation) -> Operation:
    """Insert a freshly made op where the current context says (or leave it detached)."""
    stack = _contexts.stack
    if stack:
        point, _, rewriter = stack[-1]
        if point is None:
            rewriter.append(op)  # detached(): the list that collects what was built
        elif rewriter is not None:
            rewriter.insert(op, point)
        else:
            Rewriter.insert_op(op, point)
    return op
