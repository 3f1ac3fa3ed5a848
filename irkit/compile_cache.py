"""The compile cache keyed by the tensor graph: a function compiled before, in any process,
is loaded without running a pass.

The machine code itself is cached by backends/jit.py under the hash of its LLVM IR; that
still costs every pass and the translation to LLVM (most of a warm compile). This layer
adds an index from the graph as built (the tensor-level IR printed with its source
locations, which appear in error messages) plus everything else the code depends on
(irkit's compiler source, the settings the backend reads, the entry's form) to that
object and to what the Python side needs (the entry's name, the error messages).

What the key cannot see is left out rather than guessed: a graph with an op whose
derivative is Python code (OpFromGraph's vjp/jvp) is cached at the LLVM level only.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import sys
from typing import Any

from xdsl.dialects.builtin import ModuleOp
from xdsl.printer import Printer

from irkit.config import config

_PACKAGES = ("irkit", "irkit.dialects", "irkit.dialects.ik", "irkit.passes", "irkit.backends")


@functools.lru_cache(maxsize=None)
def compiler_fingerprint() -> str:
    """The compiler's own source as it is on disk now (path, size and mtime of each module),
    so an edited pass never meets code compiled by the old one."""
    import importlib.util
    h = hashlib.sha256()
    for name in _PACKAGES:  # found, not imported: a cache hit never needs the passes
        folder = os.path.dirname(importlib.util.find_spec(name).origin)
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name.endswith(".py"):
                st = entry.stat()
                h.update(f"{entry.path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()


def _foreign_sources(module: ModuleOp) -> list[str]:
    """Files outside irkit that define ops of this graph (plugins): they lower themselves."""
    files = set()
    for op in module.walk():
        mod = type(op).__module__
        if not mod.startswith(("irkit.", "xdsl.")):
            path = getattr(sys.modules.get(mod), "__file__", None)
            if path:
                st = os.stat(path)
                files.add(f"{path}\0{st.st_size}\0{st.st_mtime_ns}")
    return sorted(files)


def _has_python_rules(module: ModuleOp) -> bool:
    from irkit.custom import rule_for
    from irkit.dialects.autodiff import CustomOp
    return any(isinstance(op, CustomOp) and rule_for(op) is not None for op in module.walk())


def graph_text(module: ModuleOp) -> str:
    """The graph as text with its source locations: what the key hashes, and what a pickled
    function carries (irkit/serialize.py), so that unpickling finds the same entry."""
    text = io.StringIO()
    Printer(stream=text, print_debuginfo=True).print_op(module)
    return text.getvalue()


def graph_key(module: ModuleOp, settings: dict[str, Any], text: str | None = None) -> str | None:
    """The key of a graph as built (before any pass), or None when it cannot be cached.
    `text` is graph_text(module) when the caller has it already (an unpickled function)."""
    if config.cache_dir is None or _has_python_rules(module):
        return None
    h = hashlib.sha256()
    for part in (compiler_fingerprint(), *_foreign_sources(module), json.dumps(settings, sort_keys=True),
                 graph_text(module) if text is None else text):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def lookup(key: str | None) -> dict | None:
    """The index entry of a graph compiled before, when its object is still there."""
    from irkit.backends import jit
    if key is None:
        return None
    data = jit.cache_load(key, ".json")
    if data is None:
        return None
    try:
        entry = json.loads(data)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) and _complete(entry) else None


def _complete(entry: dict) -> bool:
    """An entry that names machine code (the CPU's) holds only while that code is cached; a GPU
    function's entry holds its PTX and host IR itself."""
    from irkit.backends import jit
    return "object" not in entry or jit.cache_has(entry["object"])


def record(key: str | None, entry: dict) -> None:
    from irkit.backends import jit
    if key is not None and _complete(entry):
        jit.cache_store(key, json.dumps(entry).encode(), ".json")
