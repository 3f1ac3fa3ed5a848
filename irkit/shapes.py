"""Dim algebras: each op writes its shape rule once, over an abstract `DimAlgebra`.

The same rule runs three ways:
- `StaticDims`: dims are `int` or `None` (dynamic). Gives result types while
  building and verifying, and raises `ShapeError` for a static mismatch.
- `SymbolicDims`: dims are `int` or `Sym`, with a union-find that records
  which dynamic dims a rule proved equal. Fusion uses it to group work over
  the same iteration space.
- `IRDims` (in `irkit.passes.dims`): dims are `int` or index-typed SSA values;
  arithmetic becomes `arith` ops and checks become `cf.assert`. Bufferization
  uses it to size buffers and guard the generated code.

A dynamic dim never broadcasts: only a dim that is statically 1 does (as in
Theano). Two dynamic dims that meet in an elementwise op must be equal at run
time, which the generated code checks.
"""

from __future__ import annotations

import abc
from typing import Callable, Sequence

from xdsl.ir import SSAValue

from irkit.errors import ShapeError, split_kind

Dim = object  # int | None | Sym | SSAValue, depending on the algebra


class DimAlgebra(abc.ABC):
    """Arithmetic and checks over dims; subclasses decide what a dynamic dim is."""

    def __init__(self, context: str = "") -> None:
        self.context = context  # e.g. "ik.add at train.py:12", prefixed to messages

    # -- hooks -------------------------------------------------------------
    @abc.abstractmethod
    def shape_of(self, v: SSAValue) -> list[Dim]:
        """The dims of tensor `v`."""

    @abc.abstractmethod
    def unknown_value(self, v: SSAValue) -> Dim:
        """The value of a 0-d integer tensor that is not a shape computation."""

    @abc.abstractmethod
    def data_dependent(self, key: object) -> Dim:
        """A size known only by running the program (the count of a mask)."""

    # -- ints fold; the rest is the subclass's ---------------------------------
    @abc.abstractmethod
    def _dyn(self, kind: str, a: Dim, b: Dim) -> Dim:
        """`kind` (add, mul, lt, ...) of a and b when one is not a known int."""

    def add(self, a: Dim, b: Dim) -> Dim:
        if isinstance(a, int) and isinstance(b, int):
            return a + b
        if b == 0:
            return a
        if a == 0:
            return b
        return self._dyn("add", a, b)

    def sub(self, a: Dim, b: Dim) -> Dim:
        if isinstance(a, int) and isinstance(b, int):
            return a - b
        if b == 0:
            return a
        return self._dyn("sub", a, b)

    def mul(self, a: Dim, b: Dim) -> Dim:
        if isinstance(a, int) and isinstance(b, int):
            return a * b
        if b == 1:
            return a
        if a == 1:
            return b
        if a == 0 or b == 0:
            return 0
        return self._dyn("mul", a, b)

    def floordiv(self, a: Dim, b: Dim) -> Dim:
        if isinstance(a, int) and isinstance(b, int):
            return a // b if b != 0 else 0
        if b == 1:
            return a
        return self._dyn("floordiv", a, b)

    def ceildiv(self, a: Dim, b: Dim) -> Dim:
        if isinstance(a, int) and isinstance(b, int):
            return -((-a) // b) if b != 0 else 0
        if b == 1:
            return a
        return self._dyn("ceildiv", a, b)

    def maximum(self, a: Dim, b: Dim) -> Dim:
        if isinstance(a, int) and isinstance(b, int):
            return max(a, b)
        return self._dyn("max", a, b)

    def minimum(self, a: Dim, b: Dim) -> Dim:
        if isinstance(a, int) and isinstance(b, int):
            return min(a, b)
        return self._dyn("min", a, b)

    def product(self, dims: Sequence[Dim]) -> Dim:
        out: Dim = 1
        for d in dims:
            out = self.mul(out, d)
        return out

    # Comparisons give a Python bool when both sides are known.
    def lt(self, a: Dim, b: Dim) -> object:
        if isinstance(a, int) and isinstance(b, int):
            return a < b
        return self._dyn("lt", a, b)

    def le(self, a: Dim, b: Dim) -> object:
        if isinstance(a, int) and isinstance(b, int):
            return a <= b
        return self._dyn("le", a, b)

    def eq(self, a: Dim, b: Dim) -> object:
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        if a is b:
            return True
        return self._dyn("eq", a, b)

    def logical_and(self, a: object, b: object) -> object:
        if a is False or b is False:
            return False
        if a is True:
            return b
        if b is True:
            return a
        return self._dyn("and", a, b)

    def logical_or(self, a: object, b: object) -> object:
        if a is True or b is True:
            return True
        if a is False:
            return b
        if b is False:
            return a
        return self._dyn("or", a, b)

    def select(self, cond: object, a: Dim, b: Dim) -> Dim:
        if cond is True:
            return a
        if cond is False:
            return b
        if isinstance(a, int) and isinstance(b, int) and a == b:
            return a
        return self._select(cond, a, b)

    @abc.abstractmethod
    def _select(self, cond: object, a: Dim, b: Dim) -> Dim:
        """cond ? a : b when cond is not a known bool."""

    def check(self, cond: object, message: str) -> None:
        """Require `cond`; a known False raises now (ShapeError unless the message names
        another kind, as in "IndexError: ..."), an unknown one is checked at run time."""
        if cond is False:
            kind, text = split_kind(message)
            raise kind(self._message(text))
        if cond is not True:
            self._runtime_check(cond, self._message(message))

    @abc.abstractmethod
    def _runtime_check(self, cond: object, message: str) -> None:
        """Require cond when it is known only at run time."""

    def _message(self, message: str) -> str:
        """Put the op's context after the kind prefix: "IndexError: ik.slice at ...: text"."""
        kind, text = split_kind(message)
        prefix = "" if kind is ShapeError and not message.startswith("ShapeError: ") else \
            message[:message.index(": ") + 2]
        return f"{prefix}{self.context}: {text}" if self.context else message

    # -- the checks shape rules use ---------------------------------------
    def check_eq(self, a: Dim, b: Dim, message: str) -> Dim:
        """Require a == b and return the better known of the two."""
        self.check(self.eq(a, b), message)
        return a if isinstance(a, int) else b

    def broadcast(self, a: Dim, b: Dim, message: str) -> Dim:
        """numpy broadcasting of one dim, where only a static 1 broadcasts."""
        if b == 1 and isinstance(b, int):
            return a
        if a == 1 and isinstance(a, int):
            return b
        return self.check_eq(a, b, message)

    def value(self, v: SSAValue) -> Dim:
        """The value of `v`, a 0-d integer tensor used as a size or bound."""
        owner = v.owner
        rule = getattr(owner, "index_value", None)
        if rule is not None:
            got = rule(self)
            if got is not NotImplemented:
                return got
        return self.unknown_value(v)


class StaticDims(DimAlgebra):
    """Dims known while building: `int`, or `None` for dynamic."""

    def shape_of(self, v: SSAValue) -> list[Dim]:
        from irkit.types import static_shape
        return list(static_shape(v.type))

    def unknown_value(self, v: SSAValue) -> Dim:
        return None

    def data_dependent(self, key: object) -> Dim:
        return None

    def _dyn(self, kind: str, a: Dim, b: Dim) -> Dim:
        return None

    def _select(self, cond: object, a: Dim, b: Dim) -> Dim:
        return None

    def _runtime_check(self, cond: object, message: str) -> None:
        pass


class Sym:
    """A dynamic dim in `SymbolicDims`: a union-find node, possibly bound to an int."""

    __slots__ = ("parent", "bound", "key")

    def __init__(self, key: object = None) -> None:
        self.parent: Sym = self
        self.bound: int | None = None
        self.key = key

    def find(self) -> "Sym":
        root = self
        while root.parent is not root:
            root = root.parent
        node = self
        while node.parent is not root:
            node.parent, node = root, node.parent
        return root

    def __repr__(self) -> str:
        root = self.find()
        return f"Sym#{id(root) % 10000}" if root.bound is None else str(root.bound)


class SymbolicDims(DimAlgebra):
    """Dims as symbols with a union-find; `check_eq` merges what a rule proves equal."""

    def __init__(self, shape_of: Callable[[SSAValue], list[Dim]]) -> None:
        super().__init__()
        self._shape_of = shape_of
        self._cons: dict[tuple, Sym] = {}
        self._values: dict[SSAValue, Sym] = {}
        self._sizes: set[int] = set()  # ids of the symbols known to be sizes (never negative)

    def mark_size(self, d: Dim) -> None:
        """`d` is the size of an axis: at least 0 (max(0, d) is d)."""
        d = self.norm(d)
        if isinstance(d, Sym):
            self._sizes.add(id(d))

    def _is_size(self, d: Dim) -> bool:
        d = self.norm(d)
        return (isinstance(d, int) and d >= 0) or id(d) in self._sizes

    def shape_of(self, v: SSAValue) -> list[Dim]:
        return self._shape_of(v)

    def norm(self, d: Dim) -> Dim:
        if isinstance(d, Sym):
            root = d.find()
            return root.bound if root.bound is not None else root
        return d

    def data_dependent(self, key: object) -> Dim:
        if key not in self._cons:
            self._cons[key] = Sym(key)
        return self.norm(self._cons[key])

    def unknown_value(self, v: SSAValue) -> Dim:
        if v not in self._values:
            self._values[v] = Sym(v)
        return self.norm(self._values[v])

    def _dyn(self, kind: str, a: Dim, b: Dim) -> Dim:
        a, b = self.norm(a), self.norm(b)
        if kind in ("add", "sub", "mul", "floordiv", "ceildiv", "max", "min") and \
                isinstance(a, int) and isinstance(b, int):
            return {"add": a + b, "sub": a - b, "mul": a * b, "max": max(a, b), "min": min(a, b),
                    "floordiv": a // b if b else 0, "ceildiv": -((-a) // b) if b else 0}[kind]
        if kind == "eq":
            return True if a is b else (False if isinstance(a, int) and isinstance(b, int) else None)
        # a size is at least 0: arange(0, n, 1)'s length is n itself
        if kind == "max" and isinstance(a, int) and a == 0 and self._is_size(b):
            return b
        if kind == "max" and isinstance(b, int) and b == 0 and self._is_size(a):
            return a
        if kind in ("lt", "le", "and", "or"):
            return None
        key = (kind, a, b)
        if key not in self._cons:
            self._cons[key] = Sym(key)
        return self.norm(self._cons[key])

    def _select(self, cond: object, a: Dim, b: Dim) -> Dim:
        key = ("select", id(cond), self.norm(a), self.norm(b))
        if key not in self._cons:
            self._cons[key] = Sym(key)
        return self._cons[key]

    def check(self, cond: object, message: str) -> None:
        if cond is False:
            kind, text = split_kind(message)
            raise kind(self._message(text))

    def _runtime_check(self, cond: object, message: str) -> None:
        """Fusion only learns from checks (check_eq merges symbols); it enforces none."""

    def check_eq(self, a: Dim, b: Dim, message: str) -> Dim:
        a, b = self.norm(a), self.norm(b)
        if isinstance(a, Sym) and isinstance(b, Sym):
            if a is not b:
                b.parent = a
            return a
        if isinstance(a, Sym) and isinstance(b, int):
            a.bound = b
            return b
        if isinstance(b, Sym) and isinstance(a, int):
            b.bound = a
            return a
        if a is None or b is None:
            return a if a is not None else b
        self.check(a == b, message)
        return a

    def same(self, a: Dim, b: Dim) -> bool:
        return self.norm(a) is self.norm(b) or (
            isinstance(self.norm(a), int) and self.norm(a) == self.norm(b))
