"""irkit's exceptions, and where in the user's program a graph node was built.

Every error names the op or input, the shapes or dtypes involved, and (for
errors raised while building a graph) the user's source line.
"""

from __future__ import annotations

import linecache
import os
import sys
from dataclasses import dataclass


class IrkitError(Exception):
    """Base class of every exception irkit raises on purpose."""


class ShapeError(IrkitError, ValueError):
    """Ranks or sizes that do not agree."""


class DTypeError(IrkitError, TypeError):
    """A dtype that is unknown, or that cannot be used where it was given."""


class ParseError(IrkitError, ValueError):
    """Text that does not parse; carries `.line` and `.column` (1-based)."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None,
                 filename: str | None = None):
        super().__init__(message)
        self.line = line
        self.column = column
        self.filename = filename


class GradientError(IrkitError, AssertionError):
    """A symbolic gradient that disagrees with finite differences."""


class GradientUndefinedError(IrkitError, ValueError):
    """A derivative asked of an op that has none (or through a path that has none)."""


class DisconnectedInputError(IrkitError, ValueError):
    """A gradient with respect to a variable the cost does not depend on."""


class DeviceError(IrkitError, RuntimeError):
    """No usable GPU or driver."""


class MissingInputError(IrkitError, ValueError):
    """An output depends on a variable that is neither an input nor shared."""


class IndexOutOfBoundsError(IrkitError, IndexError):
    """An index outside the axis it indexes."""


class InvalidValueError(IrkitError, ValueError):
    """A value an op cannot take (a negative integer power, a bad size)."""


class CompileError(IrkitError, RuntimeError):
    """irkit failed to compile a graph it accepted: a bug in irkit, reported with the stage."""


_KINDS = {"IndexError": "IndexOutOfBoundsError", "ValueError": "InvalidValueError",
          "ShapeError": "ShapeError", "DTypeError": "DTypeError", "DeviceError": "DeviceError"}


def split_kind(message: str) -> tuple[type[IrkitError], str]:
    """Messages of checks may start with `IndexError: ` (or ValueError, ...): the class to raise."""
    head, sep, rest = message.partition(": ")
    if sep and head in _KINDS:
        return globals()[_KINDS[head]], rest
    return ShapeError, message


_PACKAGE_DIRS: tuple[str, ...] = ()


def _package_dirs() -> tuple[str, ...]:
    """Directories of irkit's packages (they are siblings in an editable install) and xDSL's."""
    global _PACKAGE_DIRS
    if not _PACKAGE_DIRS:
        import importlib.util
        dirs = set()
        for name in ("irkit", "irkit.dialects", "irkit.passes", "irkit.backends", "irkit.tools", "xdsl"):
            spec = importlib.util.find_spec(name)
            if spec is not None and spec.submodule_search_locations:
                dirs.update(os.path.abspath(d) for d in spec.submodule_search_locations)
        _PACKAGE_DIRS = tuple(d + os.sep for d in dirs)
    return _PACKAGE_DIRS


@dataclass(frozen=True)
class SourceLoc:
    """A place in the user's program."""

    filename: str
    line: int
    column: int = 0

    def source_line(self) -> str:
        return linecache.getline(self.filename, self.line).strip()

    def attr(self):
        """The place as an MLIR location attribute (what ops carry)."""
        from xdsl.dialects.builtin import FileLineColLoc, IntAttr, StringAttr
        return FileLineColLoc(StringAttr(self.filename), IntAttr(self.line), IntAttr(self.column))

    def __str__(self) -> str:
        text = self.source_line()
        where = f"{self.filename}:{self.line}"
        return f"{where}:  {text}" if text else where


def user_location() -> SourceLoc | None:
    """The innermost stack frame outside irkit (and xDSL): where the user built the node."""
    dirs = _package_dirs()
    frame = sys._getframe(1)
    while frame is not None:
        fname = os.path.abspath(frame.f_code.co_filename)
        if not fname.startswith(dirs) and not fname.startswith("<frozen"):
            return SourceLoc(frame.f_code.co_filename, frame.f_lineno)
        frame = frame.f_back
    return None


def with_location(message: str, loc: SourceLoc | None) -> str:
    return f"{message}\n  at {loc}" if loc is not None else message
