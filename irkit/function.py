"""`ik.function`: compile a graph into one native function, and call it.

Compiling clones what the outputs (and updates) need into a `func.func` at
the tensor level (inputs first, then the shared variables it reads, as
arguments), runs the default pipeline down to loops, translates to LLVM,
adds the native CPython entry and JIT-compiles the lot.

A call goes straight into machine code when the arguments are exactly what
the code expects; anything else (a Python number, a list, another dtype, a
non-contiguous array) takes the slow path here, which converts what converts
without loss and explains what does not. Updates to shared variables are
applied only after the whole call succeeded.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import threading
import time
from typing import Any, Sequence

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, IntegerAttr, ModuleOp
from xdsl.ir import Block, SSAValue
from xdsl.printer import Printer

from irkit.config import config
from irkit.dialects.ik.create import PlaceholderOp
from irkit.errors import (CompileError, DTypeError, IrkitError, MissingInputError,
                          ShapeError, split_kind)
from irkit.leaves import SharedVariable, collect_default_updates, leaf_of
from irkit.pipeline import GPU_FUSED, GPU_LOOPS, STAGES, make_context, run_passes
from irkit.types import dtype_of, format_shape
from irkit.variable import Variable


class _Updates:
    @staticmethod
    def normalize(updates: Any) -> list[tuple[SharedVariable, Variable]]:
        if updates is None:
            return []
        items = list(updates.items()) if isinstance(updates, dict) else list(updates)
        out, seen = [], set()
        from irkit import ops
        for item in items:
            try:
                shared, expr = item
            except (TypeError, ValueError):
                raise TypeError("updates must be (shared variable, new value) pairs or a dict") from None
            if not isinstance(shared, SharedVariable):
                raise TypeError(f"updates can only change shared variables, not {shared!r}")
            if id(shared) in seen:
                raise ValueError(f"shared variable {shared.name!r} is updated twice")
            seen.add(id(shared))
            expr = ops.as_variable(expr, shared.dtype)
            label = f"update of shared variable {shared.name!r}"
            if expr.ndim != shared.ndim:
                raise ShapeError(f"{label}: the new value has rank {expr.ndim} "
                                 f"(shape {format_shape(expr.static_shape)}), the variable {shared.ndim}")
            if expr.dtype != shared.dtype:
                if not np.can_cast(expr.dtype, shared.dtype, "safe"):
                    raise DTypeError(f"{label}: the new value has dtype {expr.dtype.name}, the variable "
                                     f"{shared.dtype.name} (cast it explicitly if the loss is intended)")
                expr = ops.cast(expr, shared.dtype)
            for k, (a, b) in enumerate(zip(shared.static_shape, expr.static_shape)):
                if a is not None and b is not None and a != b:
                    raise ShapeError(f"{label}: dim {k} of the new value is {b}, the variable's is {a}")
            out.append((shared, expr))
        return out


def _givens(givens: Any) -> dict[SSAValue, SSAValue]:
    from irkit import ops
    if givens is None:
        return {}
    items = list(givens.items()) if isinstance(givens, dict) else list(givens)
    out: dict[SSAValue, SSAValue] = {}
    for old, new in items:
        if not isinstance(old, Variable):
            raise TypeError(f"givens keys must be variables, not {type(old).__name__}")
        new = ops.as_variable(new, old.dtype)
        if new.dtype != old.dtype or new.ndim != old.ndim:
            raise DTypeError(f"givens: {old!r} cannot be replaced by {new!r} (dtype and rank must match)")
        out[old.value] = new.value
    return out


def build_module(inputs: Sequence[Variable], outputs: Sequence[Variable], givens: dict[SSAValue, SSAValue],
                 name: str = "main") -> tuple[ModuleOp, list[SharedVariable]]:
    """Clone the graph the outputs need into `func.func @name` (inputs, then shared variables)."""
    input_of = {v.value: k for k, v in enumerate(inputs)}
    shared: list[SharedVariable] = []
    shared_of: dict[SSAValue, int] = {}
    order: list = []          # ops in topological order
    visited: set = set()
    resolved: dict[SSAValue, SSAValue] = {}

    def target(v: SSAValue) -> SSAValue:
        seen = set()
        while v in givens and v not in input_of:
            if v in seen:
                raise ValueError("givens form a cycle")
            seen.add(v)
            v = givens[v]
        return v

    stack: list[tuple[SSAValue, bool]] = [(target(o.value), False) for o in reversed(outputs)]
    while stack:
        v, expanded = stack.pop()
        if v in visited and not expanded:
            continue
        op = v.owner
        if v in input_of:
            visited.add(v)
            continue
        if isinstance(op, PlaceholderOp):
            leaf = leaf_of(v)
            if isinstance(leaf, SharedVariable):
                if v not in shared_of:
                    shared_of[v] = len(shared)
                    shared.append(leaf)
                visited.add(v)
                continue
            label = f"{leaf.name!r}" if leaf is not None and leaf.name else repr(leaf)
            names = ", ".join(repr(i.name) if i.name else repr(i) for i in inputs) or "none"
            raise MissingInputError(f"an output depends on input {label}, which is not among the "
                                    f"function's inputs ({names}); add it to the inputs or use givens=")
        if expanded:
            if op not in visited:
                visited.add(op)
                order.append(op)
            visited.add(v)
            continue
        if op in visited:
            visited.add(v)
            continue
        stack.append((v, True))
        for operand in reversed(op.operands):
            t = target(operand)
            resolved[operand] = t
            if t not in visited:
                stack.append((t, False))

    arg_types = [v.type for v in inputs] + [s.type for s in shared]
    out_types = [target(o.value).type for o in outputs]
    fn = func.FuncOp(name, (arg_types, out_types))
    block: Block = fn.body.block
    mapping: dict[SSAValue, SSAValue] = {}
    for k, v in enumerate(inputs):
        mapping[v.value] = block.args[k]
        if v.value.name_hint:
            block.args[k].name_hint = v.value.name_hint
    for s, k in shared_of.items():
        arg = block.args[len(inputs) + k]
        mapping[s] = arg
        if s.name_hint:
            arg.name_hint = s.name_hint
    for op in order:
        operand_map = {o: mapping[resolved.get(o, o)] for o in op.operands}
        clone = op.clone(value_mapper=operand_map)
        block.add_op(clone)
        for old, new in zip(op.results, clone.results):
            mapping[old] = new
    block.add_op(func.ReturnOp(*[mapping[target(o.value)] for o in outputs]))
    return ModuleOp([fn]), shared


class Function:
    """A compiled function: call it with numpy arrays (or numbers), get numpy arrays back."""

    def __init__(self, inputs: Sequence[Variable], outputs: Any, updates: Any = None, givens: Any = None,
                 target: str = "cpu", allow_input_downcast: bool = False, name: str | None = None,
                 no_default_updates: bool | Sequence[SharedVariable] = False) -> None:
        from irkit import ops
        t0 = time.perf_counter()
        if target not in ("cpu", "cuda"):
            raise ValueError(f"unknown target {target!r}; irkit compiles for 'cpu' or 'cuda'")
        self.target = target
        if isinstance(inputs, Variable):
            raise TypeError("ik.function's inputs must be a list of variables")
        self.inputs = list(inputs)
        self._check_inputs()
        self.single = not isinstance(outputs, (list, tuple))
        outs = [outputs] if self.single else list(outputs)
        self.outputs = [ops.as_variable(o) for o in outs]
        self.updates = _Updates.normalize(updates)
        self.givens = _givens(givens)
        if no_default_updates is not True:  # shared variables that say how they advance (random streams)
            skip = [] if no_default_updates is False else list(no_default_updates)
            self.updates += _Updates.normalize(collect_default_updates(
                self.outputs + [e for _, e in self.updates], [s for s, _ in self.updates], self.givens, skip))
        self.allow_input_downcast = allow_input_downcast
        self.name = name or "main"
        self.timings: dict[str, float] = {}
        graph_outputs = self.outputs + [e for _, e in self.updates]
        module, self.shared = build_module(self.inputs, graph_outputs, self.givens, _symbol(self.name))
        self._graph_outputs = graph_outputs
        self._source: ModuleOp | None = None
        self._graph_text: str | None = None  # the graph as text, made when pickled (irkit/serialize.py)
        self._finish(module, t0)

    @classmethod
    def _from_tensor_module(cls, module: ModuleOp, text: str, inputs: Sequence[Variable],
                            shared: Sequence[SharedVariable], updated: Sequence[SharedVariable], single: bool,
                            target: str, allow_input_downcast: bool, name: str, t0: float) -> "Function":
        """A function made again from its graph as built (`func.func` at the tensor level: inputs,
        then the shared variables it reads, as arguments; the outputs, then the new values of
        `updated`, returned), with no Variables of the original graph: what unpickling builds.
        `text` is the module as compile_cache.graph_text prints it; `inputs` are fresh
        placeholders of the original names, dtypes and shapes. `module` is not modified."""
        self = cls.__new__(cls)
        self.target, self.single, self.allow_input_downcast, self.name = target, single, allow_input_downcast, name
        self.timings = {}
        self.inputs = list(inputs)
        self._check_inputs()
        self.shared = list(shared)
        self.givens = {}
        returned = [Variable(v) for v in module.body.block.first_op.body.block.last_op.operands]
        n_out = len(returned) - len(updated)
        self.outputs = returned[:n_out]
        self.updates = list(zip(updated, returned[n_out:]))
        self._graph_outputs = returned
        self._source = module  # kept as built: ir() and pickling start from a copy of it
        self._graph_text = text
        self._finish(module.clone(), t0)
        return self

    def _finish(self, module: ModuleOp, t0: float) -> None:
        """Compile the graph as built, and get ready to be called (both constructors end here)."""
        target = self.target
        self.timings["build"] = time.perf_counter() - t0
        self._cuda = None
        with fewer_collections():
            if target == "cuda":
                self._compile_cuda(module)
            else:
                self._compile(module)
        self._containers = [s.container for s in self.shared]
        self._update_containers = [s.container for s, _ in self.updates]
        if target == "cpu" and not self.shared and not self.updates:
            self._call_natively()
        self._n_out = len(self.outputs)
        self._local = threading.local()
        self._texts: dict[str, str] | None = None
        self.timings["total"] = time.perf_counter() - t0
        if config.debug:
            print(f"[irkit] compiled {self.name}: " +
                  ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in self.timings.items()))

    def _check_inputs(self) -> None:
        seen_names: dict[str, Variable] = {}
        seen: set[int] = set()
        for k, v in enumerate(self.inputs):
            if not isinstance(v, Variable):
                raise TypeError(f"input {k} of ik.function is {type(v).__name__}, not a variable")
            if isinstance(v, SharedVariable):
                raise TypeError(f"input {k} ({v.name!r}) is a shared variable: functions read shared "
                                "variables implicitly; pass only the other inputs")
            if not isinstance(v.value.owner, PlaceholderOp):
                raise TypeError(f"input {k} ({v!r}) is computed from other variables; inputs must be "
                                "made with ik.scalar/vector/matrix/tensor (use givens= to substitute)")
            if id(v) in seen or any(v.value is u.value for u in self.inputs[:k]):
                raise ValueError(f"input {v.name or k!r} is given twice")
            seen.add(id(v))
            if v.name:
                if v.name in seen_names:
                    raise ValueError(f"name clash: two inputs are called {v.name!r}; give them distinct "
                                     "names (keyword calls look inputs up by name)")
                seen_names[v.name] = v
        self._input_names = seen_names

    def _compile(self, module: ModuleOp) -> None:
        from irkit import compile_cache
        from irkit.backends import entry as E
        from irkit.backends import jit
        t = self.timings
        args = self._arg_specs()
        single = self.single and not self.updates
        # what the translation reads of the settings, kept: ir("llvm") of a function loaded
        # from the cache translates again, and must show the code that runs
        self._codegen = {"threads": config.num_threads, "parallel_threshold": config.parallel_threshold,
                         "stream_threshold": config.stream_threshold}
        settings = {"isa": jit.vector_isa(), "blas_int": jit.blas().int_bits,
                    "donate": sorted(self._donated.items()), **self._codegen, "single": single}
        t0 = time.perf_counter()
        key = compile_cache.graph_key(module, settings, self._graph_text)
        hit = compile_cache.lookup(key)
        if hit:
            E.prepare(hit["runtime"])  # the runtime's symbols, which the object refers to
        compiled = jit.load_object(hit["object"]) if hit else None
        t["cache"] = time.perf_counter() - t0
        if compiled is not None:  # compiled before, by this or another process: no pass runs
            self.messages, entry = hit["messages"], hit["entry"]
            self._llvm_text = None
        else:
            E.prepare_soon()  # the runtime, compiled (the first time on a machine) while the passes run
            self._donate(module)  # after the key: the graph as built (and pickled) keys the cache
            entry, products = self._translate(module, args, single)
            E.prepare_soon(products)  # compiled beside the function's own parts
            t0 = time.perf_counter()
            # the runtime and the products the code calls: needed to load it
            compiled = jit.compile_ir(self._llvm_text, before_load=lambda: E.prepare(products))
            t["llvm-jit"] = time.perf_counter() - t0
            compile_cache.record(key, {"object": jit.object_key(self._llvm_text), "entry": entry,
                                       "messages": self.messages, "runtime": products})
        self._compiled = compiled
        self._native = E.NativeFunction(compiled, entry, self._slow_call, self._raise)

    def _translate(self, module: ModuleOp, args: list, single: bool) -> tuple[str, list[str]]:
        """Run the pipeline and make the LLVM IR with its native entry (self._llvm_text);
        returns the entry's name and the runtime's products (backends/runtime.py) it calls."""
        from irkit.backends import entry as E
        from irkit.backends import jit
        from irkit.backends.llvm import RUNTIME_FUNCTIONS, Translator
        t = self.timings
        run_passes(module, STAGES["tensor"] + STAGES["fused"] + STAGES["loops"], make_context(), t)
        t0 = time.perf_counter()
        codegen = self._codegen
        tr = Translator(jit.vector_isa(), codegen["threads"], codegen["parallel_threshold"],
                        codegen["stream_threshold"] or None)
        translation = tr.translate(module)
        self.messages = translation.messages
        kernel = translation.module.globals[_symbol(self.name)]
        donated = {res: arg for arg, res in self._donated.items()}
        results = [E.ResultSpec(dtype_of(v.type), len(v.type.get_shape()), donated.get(k))
                   for k, v in enumerate(o.value for o in self._graph_outputs)]
        entry = E.EntryBuilder(translation.module).build(kernel, args, results, single=single)
        self._llvm_text = str(translation.module)
        t["llvm-ir"] = time.perf_counter() - t0
        return entry, [name for name in RUNTIME_FUNCTIONS if name in translation.module.globals]

    def _compile_cuda(self, module: ModuleOp) -> None:
        """Kernels as PTX and the host program that launches them; no device is needed until
        the first call (which raises DeviceError when there is none)."""
        from irkit import compile_cache
        from irkit.backends import cuda, libdevice, ptx
        t = self.timings
        sm = cuda.known_sm()  # the device's own SM once a call has found it
        t0 = time.perf_counter()
        settings = {"target": "cuda", "sm": sm, "libdevice": libdevice.identity()}
        key = compile_cache.graph_key(module, settings, self._graph_text)
        hit = compile_cache.lookup(key)
        t["cache"] = time.perf_counter() - t0
        if hit:  # compiled before, by this or another process: no pass runs
            program = ptx.Program(hit["host"], None, [ptx.Kernel(n, k) for n, k in hit["kernels"]], hit["globals"],
                                  hit["messages"])
            text = hit["ptx"]
        else:
            run_passes(module, STAGES["tensor"] + GPU_FUSED + GPU_LOOPS, make_context(), t)
            t0 = time.perf_counter()
            program = ptx.translate(module)
            text = ptx.emit_ptx(program.device, sm)
            t["ptx"] = time.perf_counter() - t0
            compile_cache.record(key, {"host": str(program.host), "ptx": text, "globals": program.globals,
                                       "kernels": [[k.name, k.kind] for k in program.kernels],
                                       "messages": program.messages})
        self.messages = program.messages
        results = [(dtype_of(v.type), len(v.type.get_shape())) for v in (o.value for o in self._graph_outputs)]
        shared_slot = {id(s): k for k, s in enumerate(self.shared)}
        updated = {len(self.outputs) + j: shared_slot[id(s)] for j, (s, _) in enumerate(self.updates)}
        self._cuda = cuda.CudaRunner(program, text, _symbol(self.name), results, len(self.shared), updated)

    def _call_cuda(self, args: tuple) -> list:
        n = len(self.inputs)
        if len(args) != n + len(self.shared):
            return self._slow_call(*args)  # names the arity error
        from irkit.backends import dlpack
        views = []
        device_in = False
        try:
            arrays = []
            for k, a in enumerate(args[:n]):
                v = self.inputs[k]
                if isinstance(a, dlpack.DeviceArray):  # irkit's own: used as it is, not exported
                    dlpack.check_device_array(a, f"input {self._label(k)}", v.dtype, v.static_shape)
                    arrays.append(a)
                    device_in = True
                elif dlpack.on_device(a):  # a GPU tensor (DLPack, CUDA Array Interface): used in place
                    views.append(dlpack.device_view(a, f"input {self._label(k)}", v.dtype, v.static_shape))
                    arrays.append(views[-1])
                    device_in = True
                else:
                    arrays.append(self._convert(k, a))
            # shared variables: a value a cuda function left on the device stays there
            arrays += [a if isinstance(a, dlpack.DeviceArray) else np.require(a, requirements=["C_CONTIGUOUS", "ALIGNED"])
                       for a in args[n:]]
            # device arrays in, device arrays out; numpy in, numpy out
            out = self._cuda.run(arrays, self._raise, device_out=device_in)
        finally:
            for view in views:
                view.release()
        return out[0] if self.single and not self.updates else out

    # -- calling ---------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            args = self._bind(args, kwargs)
        if self._containers:
            args = (*args, *[c[0] for c in self._containers])
        try:
            out = self._native.call(*args) if self._cuda is None else self._call_cuda(args)
        except IrkitError as e:
            self._note(e, args)
            raise
        if self._update_containers:
            for container, value in zip(self._update_containers, out[self._n_out:]):
                container[0] = value
            out = out[0] if self.single else out[:self._n_out]
        return out

    def _call_natively(self) -> None:
        """Make f(...) call the native entry with no Python frame in between: this instance's
        class becomes a subclass whose __call__ is the entry (a builtin, so it is not bound).
        Only for functions without shared variables, whose arguments are the call's own."""
        cls = type(self)
        self.__class__ = type(cls.__name__, (cls,), {"__call__": self._native.call, "__module__": cls.__module__,
                                                     "__qualname__": cls.__qualname__})

    def _note(self, e: IrkitError, args: tuple) -> None:
        """Name the call's arguments under an error, once."""
        if not getattr(e, "_irkit_noted", False):
            e._irkit_noted = True
            e.add_note(f"  in {self.name}({self._describe_args(args)})")

    def _describe_args(self, args: tuple) -> str:
        parts = []
        for k, a in enumerate(args[:len(self.inputs)]):
            label = self.inputs[k].name or f"#{k}"
            arr = a if isinstance(a, np.ndarray) else None
            parts.append(f"{label}: {arr.dtype.name}{format_shape(arr.shape)}" if arr is not None
                         else f"{label}: {type(a).__name__}")
        return ", ".join(parts)

    def _bind(self, args: tuple, kwargs: dict) -> tuple:
        values = list(args) + [None] * (len(self.inputs) - len(args))
        given = [True] * len(args) + [False] * (len(self.inputs) - len(args))
        for key, value in kwargs.items():
            for k, v in enumerate(self.inputs):
                if v.name == key:
                    if given[k]:
                        raise TypeError(f"{self.name}() got multiple values for input {key!r}")
                    values[k], given[k] = value, True
                    break
            else:
                raise TypeError(f"{self.name}() got an unexpected keyword argument {key!r}; inputs are "
                                f"{', '.join(repr(v.name) for v in self.inputs)}")
        missing = [self._label(k) for k, g in enumerate(given) if not g]
        if missing:
            raise TypeError(f"{self.name}() missing input(s): {', '.join(missing)}")
        return tuple(values)

    def _label(self, k: int) -> str:
        v = self.inputs[k]
        return repr(v.name) if v.name else f"#{k}"

    def _slow_call(self, *args: Any, **kwargs: Any) -> Any:
        """The native entry did not take these arguments: convert them, or say why not.
        (Keywords come only from a direct call of a function without shared variables.)"""
        if kwargs:
            args = self._bind(args, kwargs)
        try:
            return self._convert_and_call(args)
        except IrkitError as e:
            self._note(e, args)
            raise

    def _convert_and_call(self, args: tuple) -> Any:
        n = len(self.inputs)
        if len(args) != n + len(self.shared):
            given = len(args) - len(self.shared)
            names = ", ".join(self._label(k) for k in range(n))
            raise TypeError(f"{self.name}() takes {n} input(s) ({names}), got {given}")
        if getattr(self._local, "busy", False):
            raise CompileError(f"{self.name}: the native entry rejected arguments the slow path prepared")
        converted = [self._convert(k, a) for k, a in enumerate(args[:n])]
        converted += [np.require(a, requirements=["C_CONTIGUOUS", "ALIGNED"]) for a in args[n:]]
        for k in self._donated:  # written in place: a private, writable array
            a = converted[k]
            if not a.flags.writeable or any(np.may_share_memory(a, o) for j, o in enumerate(converted) if j != k):
                converted[k] = a.copy()
        self._local.busy = True
        try:
            return self._native.call(*converted)
        finally:
            self._local.busy = False

    def _convert(self, k: int, value: Any) -> np.ndarray:
        v = self.inputs[k]
        dt, shape = v.dtype, v.static_shape
        label = f"input {self._label(k)}"
        if isinstance(value, Variable):
            raise TypeError(f"{label}: got a symbolic variable; call the function with values")
        if isinstance(value, (bool, int, float)) and not isinstance(value, np.generic):
            arr = self._convert_python(label, value, dt)
        else:
            arr = np.asarray(value)
            if arr.dtype == object:
                raise TypeError(f"{label}: cannot convert {type(value).__name__} to an array of {dt.name}")
            from_python = isinstance(value, (list, tuple)) and (
                np.can_cast(arr.dtype, dt, "same_kind") or (arr.dtype.kind in "biu" and dt.kind == "f"))
            if arr.dtype != dt:
                if from_python and dt.kind in "iu" and arr.size and \
                        not (np.iinfo(dt).min <= arr.min() and arr.max() <= np.iinfo(dt).max):
                    raise DTypeError(f"{label} expects {dt.name}; some values are out of its range")
                if np.can_cast(arr.dtype, dt, "safe") or from_python or self.allow_input_downcast:
                    with np.errstate(all="ignore"):
                        arr = arr.astype(dt)
                else:
                    raise DTypeError(f"{label} expects {dt.name}, got {arr.dtype.name}: converting would "
                                     f"lose precision (cast it, or compile with allow_input_downcast=True)")
        if arr.ndim != len(shape):
            raise ShapeError(f"{label} expects rank {len(shape)} (shape {format_shape(shape)}), "
                             f"got an array of shape {arr.shape}")
        for j, (s, got) in enumerate(zip(shape, arr.shape)):
            if s is not None and s != got:
                raise ShapeError(f"{label} expects shape {format_shape(shape)}, got {arr.shape} "
                                 f"(dim {j} is {got}, not {s})")
        # what the native entry takes: C-contiguous, aligned, native byte order
        return np.require(arr, dtype=dt.newbyteorder("="), requirements=["C_CONTIGUOUS", "ALIGNED"])

    def _convert_python(self, label: str, value, dt: np.dtype) -> np.ndarray:
        if dt.kind == "b" and not isinstance(value, bool):
            raise DTypeError(f"{label} expects bool, got {type(value).__name__} {value!r}")
        if dt.kind in "iu":
            if isinstance(value, float):
                if not self.allow_input_downcast:
                    raise DTypeError(f"{label} expects {dt.name}, got float {value!r}")
                value = int(value)
            info = np.iinfo(dt)
            if not info.min <= int(value) <= info.max:
                raise DTypeError(f"{label} expects {dt.name}; {value!r} is out of its range")
        return np.asarray(value, dtype=dt)

    def _raise(self, code: int, *args: Any) -> None:
        """A run-time check failed in the kernel (the native entry passes the arguments)."""
        message = self.messages[code - 1] if 0 < code <= len(self.messages) else f"error {code}"
        kind, text = split_kind(message)
        if message.startswith("MemoryError: "):
            raise MemoryError(text)
        error = kind(text)
        if args and isinstance(error, IrkitError):
            self._note(error, args)
        raise error

    # -- looking inside -------------------------------------------------------------
    def ir(self, stage: str = "loops") -> str:
        """The text of one level: "autodiff" (the graph as built), "tensor" (after autodiff and
        rewrites), "fused", "loops", "llvm" or "ptx" (the kernels for an NVIDIA GPU: for sm_80, or
        for the device's own SM once a call has found the device)."""
        if stage not in ("autodiff", "tensor", "fused", "loops", "llvm", "llvm-unoptimized", "ptx"):
            raise ValueError(f"unknown stage {stage!r}; stages are autodiff (as built, derivatives not yet "
                             "taken), tensor, fused, loops, llvm, ptx")
        if stage == "ptx" and self._cuda is not None:
            return self._cuda.ptx
        if stage == "ptx":  # the same graph compiled for an NVIDIA GPU; no device needed
            from irkit.backends import ptx
            return ptx.emit_ptx(ptx.translate(self._gpu_loops()).device)
        if stage in ("llvm", "llvm-unoptimized") and self._cuda is not None:
            return str(self._cuda.program.host)
        if stage in ("llvm", "llvm-unoptimized") and self._llvm_text is None:
            self._retranslate()  # the code came from the cache as an object
        if stage == "llvm":
            from irkit.backends import jit
            return str(jit.optimized_module(self._llvm_text))
        if stage == "llvm-unoptimized":
            return self._llvm_text
        if self._texts is None:
            self._texts = self._render()
        return self._texts[stage]

    def _retranslate(self) -> None:
        """The LLVM IR of a function whose code was loaded from the cache, made again."""
        module = self._tensor_module()
        self._donate(module)
        self._translate(module, self._arg_specs(), self.single and not self.updates)

    # -- shared variables updated in place ----------------------------------------------
    @functools.cached_property
    def _donated(self) -> dict[int, int]:
        """argument -> result: each shared variable this function updates (on the CPU) may be
        overwritten with its new value in place (bufferize decides where it is safe). Computed
        once: the slow call path reads it on every call."""
        if self.target != "cpu":
            return {}
        slot = {id(s): k for k, s in enumerate(self.shared)}
        n_in, n_out = len(self.inputs), len(self.outputs)
        return {n_in + slot[id(s)]: n_out + j for j, (s, _) in enumerate(self.updates) if id(s) in slot}

    def _donate(self, module: ModuleOp) -> None:
        """Mark the donated arguments of the module's function (`irkit.donate` = the result)."""
        from irkit.passes.bufferize import DONATE
        donations = self._donated
        if not donations:
            return
        fn = module.body.block.first_op
        attrs = [dict(a.data) for a in fn.arg_attrs.data] if fn.arg_attrs is not None else \
            [{} for _ in fn.body.block.args]
        for arg, res in donations.items():
            attrs[arg][DONATE] = IntegerAttr(res, 64)
        fn.arg_attrs = ArrayAttr([DictionaryAttr(a) for a in attrs])

    def _arg_specs(self) -> list:
        from irkit.backends import entry as E
        donated = self._donated
        n_in = len(self.inputs)
        return [E.ArgSpec(v.dtype, v.static_shape) for v in self.inputs] + \
            [E.ArgSpec(s.dtype, s.static_shape, n_in + k in donated) for k, s in enumerate(self.shared)]

    def _render(self) -> dict[str, str]:
        module = self._tensor_module()
        self._donate(module)
        ctx = make_context()
        texts = {"autodiff": _print(module)}
        for stage, passes in STAGES.items():
            run_passes(module, passes, ctx)
            texts[stage] = _print(module)
        return texts

    def _gpu_loops(self) -> ModuleOp:
        """The loops level as the GPU backend takes it (every product a library call)."""
        module = self._tensor_module()
        return run_passes(module, STAGES["tensor"] + GPU_FUSED + GPU_LOOPS, make_context())

    def _tensor_module(self) -> ModuleOp:
        """A fresh copy of the graph as built (tensor level, before any pass)."""
        if self._source is not None:  # unpickled: there is no graph of Variables to build it from
            return self._source.clone()
        module, _ = build_module(self.inputs, self._graph_outputs, self.givens, _symbol(self.name))
        return module

    def __reduce__(self) -> tuple:
        """Pickled as its graph's text at the tensor level with its inputs, shared variables and
        settings (irkit/serialize.py); unpickling compiles it again or loads it from the cache."""
        from irkit import serialize
        return serialize.load_function, (serialize.function_state(self),)

    def __repr__(self) -> str:
        names = ", ".join(self._label(k) for k in range(len(self.inputs)))
        return f"<irkit.Function {self.name}({names})>"


# the cyclic collector's thresholds while a compile runs (Python's: 700, 10, 10)
COMPILE_GC_THRESHOLDS = (100_000, 20, 20)
_gc_lock = threading.Lock()
_gc_compiles = 0
_gc_saved: tuple[int, ...] = ()


@contextlib.contextmanager
def fewer_collections():
    """A compile makes millions of short-lived objects that refer to each other (IR ops and
    their operands, LLVM values); at Python's thresholds the cyclic collector walks them
    again and again: a graph of 10,000 ops spent 3 of its 13.5 s compiling there. While
    any compile runs (threads count together) collections are rarer, as mypy makes them
    for its builds; the caller's thresholds come back after the last one."""
    global _gc_compiles, _gc_saved
    with _gc_lock:
        if _gc_compiles == 0:
            _gc_saved = gc.get_threshold()
            gc.set_threshold(*COMPILE_GC_THRESHOLDS)
        _gc_compiles += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_compiles -= 1
            if _gc_compiles == 0:
                gc.set_threshold(*_gc_saved)


def _print(module: ModuleOp) -> str:
    import io
    out = io.StringIO()
    Printer(stream=out).print_op(module)
    return out.getvalue() + "\n"


def _symbol(name: str) -> str:
    import re
    s = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return s if s and not s[0].isdigit() else f"f_{s}"


def function(inputs: Sequence[Variable], outputs: Any, updates: Any = None, givens: Any = None,
             target: str = "cpu", allow_input_downcast: bool = False, name: str | None = None,
             no_default_updates: bool | Sequence[SharedVariable] = False) -> Function:
    """Compile `outputs` (one variable, or a list) as a function of `inputs`.

    updates: (shared variable, new value) pairs, applied after a successful call.
    givens:  variables replaced by other variables (or values) at compile time.
    no_default_updates: True, or a list of shared variables, whose `default_update` is not
             applied (by default every shared variable the graph reads that has one is updated
             with it after each call, unless `updates` name it)."""
    from irkit import sparse
    if sparse.involves_sparse(inputs, outputs):  # fed with scipy.sparse matrices, returns them
        return sparse.SparseFunction(inputs, outputs, updates, givens, target, allow_input_downcast, name,
                                     no_default_updates=no_default_updates)
    return Function(inputs, outputs, updates, givens, target, allow_input_downcast, name,
                    no_default_updates=no_default_updates)

