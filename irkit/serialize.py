"""Pickling compiled functions, so they travel to other processes (multiprocessing pools,
Dask or Ray workers) and to later runs.

A function is pickled as its graph as built, before any pass: the tensor-level module
printed with its source locations (the text the compile cache hashes, so a process
that unpickles it finds the machine code compiled before, by any process, and runs no
pass), plus what the module does not say: the inputs' names, the shared variables
(pickled as objects, so pickle's memo keeps two functions that share a variable sharing
it), which outputs are new values of which shared variables, and the call settings.

A graph that would not mean the same thing when read back in another process is refused
when pickling, not when unpickling: an `ik.OpFromGraph` whose derivatives are Python
functions (they are not part of the IR), or an op that irkit's dialects do not define.
A pickle made by another irkit version (or another state format) is refused with both
versions named: the IR it holds may not mean the same to this compiler.
"""

from __future__ import annotations

import functools
import pickle
import time
from typing import TYPE_CHECKING, Any

from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.parser import Parser
from xdsl.utils.exceptions import ParseError as XParseError

from irkit.errors import IrkitError

if TYPE_CHECKING:
    from irkit.function import Function

# Raise it whenever the state below changes shape; an older pickle then names both formats.
FORMAT = 1

# CustomOp rule names that no OpFromGraph is ever registered under (those end in "#<number>"):
# a custom op unpickled in another process must be differentiated through its body, never by a
# rule that happens to be registered there under the same name.
_BODY_ONLY = ".body"


class NotPicklableError(IrkitError, pickle.PicklingError):
    """A function whose graph cannot be written as IR text that means the same when read back."""


class IncompatiblePickleError(IrkitError, pickle.UnpicklingError):
    """A pickled function made by another irkit version or state format, or damaged."""


def _version() -> str:
    from irkit import __version__
    return __version__


def function_state(f: Function) -> dict[str, Any]:
    """What `Function.__reduce__` pickles (see the module docstring)."""
    text = f._graph_text
    if text is None:  # made once per function: a pool pickles it again for every task
        text = graph_text_for_pickling(f._tensor_module(), f"function {f.name!r}")
        f._graph_text = text
    return {
        "irkit": _version(),
        "format": FORMAT,
        "module": text,
        "name": f.name,
        "inputs": [(v.name, v.dtype.name, v.static_shape) for v in f.inputs],
        "shared": list(f.shared),
        "updated": [s for s, _ in f.updates],
        "single": f.single,
        "target": f.target,
        "allow_input_downcast": f.allow_input_downcast,
    }


def graph_text_for_pickling(module: ModuleOp, what: str) -> str:
    """The module's text as the compile cache prints it, once it is known to read back as the
    same module; custom ops without Python rules get names no rule is registered under.
    `what` names the pickled thing in errors ("function 'train'")."""
    from irkit.compile_cache import graph_text
    from irkit.custom import rule_for
    from irkit.dialects.autodiff import CustomOp
    from irkit.pipeline import make_context
    ctx = make_context()
    for op in module.walk():
        if isinstance(op, CustomOp):
            rule = rule_for(op)
            if rule is not None and (rule.vjp is not None or rule.jvp is not None):
                raise NotPicklableError(
                    f"cannot pickle {what}: its graph holds the custom op {rule.name!r} "
                    f"(ik.OpFromGraph) whose {'vjp' if rule.vjp is not None else 'jvp'} is a Python function, "
                    "which IR text cannot carry; compile the function in the process that uses it, or "
                    "define the op without custom derivatives")
            if not op.rule.data.endswith(_BODY_ONLY):
                op.rule = StringAttr(op.rule.data + _BODY_ONLY)
        elif ctx.get_optional_op(op.name) is not type(op):
            raise NotPicklableError(
                f"cannot pickle {what}: its graph holds the op {op.name!r} (class "
                f"{type(op).__module__}.{type(op).__qualname__}), which irkit's dialects do not define, so "
                "another process could not read it back")
    text = graph_text(module)
    # what the checks above cannot see (an attribute or type that prints but does not parse,
    # or parses as something else) shows here, in this process, rather than in the one unpickling
    try:
        again = graph_text(Parser(ctx, text).parse_module())
    except XParseError as e:
        raise NotPicklableError(f"cannot pickle {what}: its graph's text does not read back "
                                f"({e.msg.strip()} at {e.span.get_location()})") from None
    if again != text:
        written, read = text.splitlines() + [""], again.splitlines() + [""]
        k = next(k for k, (a, b) in enumerate(zip(written, read)) if a != b)
        raise NotPicklableError(f"cannot pickle {what}: line {k + 1} of its graph's text reads back as "
                                f"something else:\n  {written[k].strip()}\n  {read[k].strip()}")
    return text


def load_function(state: dict[str, Any]) -> Function:
    """A pickled function, compiled again (or loaded from the compile cache)."""
    from irkit.function import Function
    from irkit.leaves import tensor
    t0 = time.perf_counter()
    module = _module_of(state, "function")
    inputs = [tensor(name, shape, dtype) for name, dtype, shape in state["inputs"]]
    _check_signature(module, inputs, state)
    return Function._from_tensor_module(module, state["module"], inputs, state["shared"], state["updated"],
                                        state["single"], state["target"], state["allow_input_downcast"],
                                        state["name"], t0)


def expression_state(expr: Any, what: str) -> dict[str, Any]:
    """A symbolic expression over shared variables only (a shared variable's default update) as
    pickled state: its graph's text and the shared variables it reads."""
    from irkit.function import build_module
    module, shared = build_module([], [expr], {})
    return {"irkit": _version(), "format": FORMAT, "module": graph_text_for_pickling(module, what),
            "shared": shared}


def expression_from_state(state: dict[str, Any]) -> Any:
    """The expression of `expression_state`, built again over the unpickled shared variables."""
    from irkit.variable import Variable
    block = _module_of(state, "expression").body.block.first_op.body.block
    mapping = {arg: s.value for arg, s in zip(block.args, state["shared"])}
    for op in block.ops:
        if op is block.last_op:  # func.return: its operand is the expression
            return Variable(mapping[op.operands[0]])
        clone = op.clone(value_mapper=mapping)  # detached, as the ops a user builds are
        mapping.update(zip(op.results, clone.results))
    raise IncompatiblePickleError("a pickled expression without a result")


@functools.lru_cache(maxsize=32)
def _parsed(text: str) -> ModuleOp:
    """The module of a pickled graph. A worker of a pool unpickles the same function for every
    task it is sent, and parsing is most of the cost of a warm unpickle (xDSL takes ~5 ms for
    each dense constant alone): each text is parsed once per process. The module is shared by
    the functions made from it, which only ever clone it."""
    from irkit.pipeline import make_context
    return Parser(make_context(), text).parse_module()


def _module_of(state: Any, what: str) -> ModuleOp:
    """The module a pickled state holds, once its version is known to be this one."""
    _check_version(state, what)
    try:
        return _parsed(state["module"])
    except XParseError as e:
        raise IncompatiblePickleError(f"a pickled {what} holds IR that does not parse: "
                                      f"{e.msg.strip()} at {e.span.get_location()}") from None


def _check_version(state: Any, what: str) -> None:
    if not isinstance(state, dict) or "irkit" not in state or "format" not in state:
        raise IncompatiblePickleError(f"this is not the state of a pickled irkit {what}")
    if state["irkit"] != _version() or state["format"] != FORMAT:
        raise IncompatiblePickleError(
            f"this {what} was pickled by irkit {state['irkit']} (pickle format {state['format']}); this is "
            f"irkit {_version()} (pickle format {FORMAT}). Its IR may not mean the same to this version: "
            f"build the {what} again (or unpickle it with the irkit version that pickled it)")


def _check_signature(module: ModuleOp, inputs: list, state: dict[str, Any]) -> None:
    """The module's arguments are the inputs then the shared variables, its results the outputs
    then the updates' new values, of the same types: a state that says otherwise is damaged."""
    fn = module.body.block.first_op
    params = list(fn.function_type.inputs)
    expected = [v.type for v in inputs] + [s.type for s in state["shared"]]
    updated = state["updated"]
    results = list(fn.function_type.outputs)
    if params != expected or len(results) < len(updated) or \
            results[len(results) - len(updated):] != [s.type for s in updated]:
        raise IncompatiblePickleError(f"the pickled function {state['name']!r} is damaged: its graph's arguments "
                                      "or results do not match its inputs and shared variables")
