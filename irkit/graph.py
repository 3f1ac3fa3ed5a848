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
from typing import Iterator

from xdsl.ir import Operation
from xdsl.rewriter import InsertPoint, Rewriter

from irkit.errors import SourceLoc, user_location

_stack: list[tuple[InsertPoint, SourceLoc | None, object]] = []


@contextlib.contextmanager
def inserting_before(op: Operation, loc: SourceLoc | None = None, rewriter=None) -> Iterator[None]:
    """Ops built by `irkit.ops` inside this block are inserted before `op` (through
    `rewriter` when given, so a pattern walker sees them)."""
    _stack.append((InsertPoint.before(op), loc, rewriter))
    try:
        yield
    finally:
        _stack.pop()


def building_detached() -> bool:
    return not _stack


def current_location() -> SourceLoc | None:
    if _stack:
        return _stack[-1][1]
    return user_location()


def place(op: Operation) -> Operation:
    """Insert a freshly made op where the current context says (or leave it detached)."""
    if _stack:
        point, _, rewriter = _stack[-1]
        if rewriter is not None:
            rewriter.insert(op, point)
        else:
            Rewriter.insert_op(op, point)
    return op
