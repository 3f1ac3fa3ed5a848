"""irkit as a `torch.compile` backend.

    import irkit.torch_backend
    fast = torch.compile(model, backend=irkit.torch_backend)   # or backend="irkit"

Dynamo captures the model's forward as an FX graph; this backend hands it to
AOTAutograd, which traces it down to ATen ops (functional, with the core ATen
decompositions) and, when inputs need gradients, splits it into a forward and a
backward graph. Each of those graphs is partitioned (torch's
`CapabilityBasedPartitioner`) into regions of ops that irkit translates; every
region becomes one compiled `ik.function`, and what irkit cannot run (an op
without a translation, an unsupported dtype, a CUDA tensor) stays in PyTorch.
Which ops stayed in PyTorch, and why, is logged on the `irkit.torch_backend`
logger, warned once per op (`TorchFallbackWarning`) and kept in `reports`.

Tensors cross the boundary through DLPack, without copies for contiguous CPU
tensors. A region is compiled for the concrete shapes it is called with; when
dynamo hands a graph with symbolic sizes (after a shape change), each new set of
sizes compiles one more specialization (and dynamo's guards stay in charge of
when the graph itself is retraced).

The translations of ATen ops live in `irkit.torch_backend.translations`; this module
partitions graphs, runs regions and registers the backend. Importing `irkit` never
imports torch; importing this package does, and registers the backend under the name
"irkit".
"""

from __future__ import annotations

import collections
import logging
import sys
import types
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

try:
    import torch
except ImportError as e:  # name the extra that brings it
    raise ImportError("irkit.torch_backend needs PyTorch: pip install 'irkit[torch]'") from e
from torch import fx
from torch._dynamo.backends.common import aot_autograd
from torch._functorch.aot_autograd import make_boxed_func
from torch.fx.passes.infra.partitioner import CapabilityBasedPartitioner
from torch.fx.passes.operator_support import OperatorSupportBase

import irkit as ik
from irkit.torch_backend.translations import (LAYOUT_OPS, SUPPORTED_DTYPES, Out, is_var, op_name, packet,
                                              translation_of)

__all__ = ["backend", "GraphReport", "TorchFallbackWarning", "TranslationError", "IrkitRegion", "reports",
           "SUPPORTED_DTYPES"]

logger = logging.getLogger(__name__)

aten = torch.ops.aten


class TorchFallbackWarning(UserWarning):
    """Part of a compiled graph runs in PyTorch instead of irkit (given once per op)."""


class TranslationError(Exception):
    """An FX node that passed the support check could not be expressed in irkit."""


@dataclass
class GraphReport:
    """What the backend did with one graph: `kind` is "forward", "backward", "inference"
    or "eager" (the whole graph left to PyTorch); `fallbacks` maps each op that stayed in
    PyTorch to the reason."""
    kind: str
    regions: list["IrkitRegion"] = field(default_factory=list)
    fallbacks: dict[str, str] = field(default_factory=dict)

    @property
    def irkit_ops(self) -> list[str]:
        return [op for region in self.regions for op in region.op_names]


# The latest graphs this process compiled, newest last (bounded: a long-running program
# that recompiles often must not grow it forever).
reports: collections.deque[GraphReport] = collections.deque(maxlen=256)
_warned_ops: set[str] = set()
# ---------------------------------------------------------------------------
# which nodes irkit takes
# ---------------------------------------------------------------------------

def _tensor_metas(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _tensor_metas(item)]
    return []


def _meta_problem(value: Any, what: str) -> str | None:
    for meta in _tensor_metas(value):
        if meta.device.type != "cpu":
            return f"{what} is on {meta.device.type} (irkit's torch backend runs CPU tensors)"
        if meta.dtype not in SUPPORTED_DTYPES:
            return f"{what} has dtype {str(meta.dtype).removeprefix('torch.')}"
    return None


class _IrkitSupport(OperatorSupportBase):
    """The partitioner's question: can irkit run this node? The reasons for "no" are kept."""

    def __init__(self) -> None:
        self.reasons: dict[fx.Node, str] = {}

    def is_node_supported(self, submodules: Any, node: fx.Node) -> bool:
        reason = self.unsupported_reason(node)
        if reason is not None:
            self.reasons[node] = reason
        return reason is None

    @staticmethod
    def unsupported_reason(node: fx.Node) -> str | None:
        if node.op != "call_function":
            return f"{node.op} nodes stay in PyTorch"
        val = node.meta.get("val")
        if not _tensor_metas(val):
            return _NOT_A_TENSOR  # SymInt math, .item() and the like: PyTorch's to do
        translation = translation_of(node)
        if translation is None:
            return "no irkit translation"
        problem = _meta_problem(val, "its result")
        for arg in node.all_input_nodes:
            problem = problem or _meta_problem(arg.meta.get("val"), f"input {arg.name}")
        if problem:
            return problem
        return translation.check(node) if translation.check else None


_NOT_A_TENSOR = "gives Python numbers, not tensors"


def _node_out(node: fx.Node) -> Out:
    val = node.meta.get("val")
    return Out(SUPPORTED_DTYPES.get(val.dtype) if isinstance(val, torch.Tensor) else None)


# ---------------------------------------------------------------------------
# a region: an FX graph module run as irkit functions
# ---------------------------------------------------------------------------

# A region's inputs as a compile key: ("tensor", shape, dtype) per tensor, ("value", v) otherwise.
_Signature = tuple


def _signature_of_args(args: Sequence[Any]) -> _Signature:
    return tuple(("tensor", tuple(a.shape), a.dtype) if isinstance(a, torch.Tensor) else ("value", a)
                 for a in args)


def _signature_of_placeholders(graph_module: fx.GraphModule) -> _Signature | None:
    """The signature the traced example values give, or None when a size is symbolic."""
    parts = []
    for node in graph_module.graph.find_nodes(op="placeholder"):
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            if not all(isinstance(s, int) for s in val.shape):
                return None
            parts.append(("tensor", tuple(val.shape), val.dtype))
        elif isinstance(val, (int, float, bool)):  # a SymInt is none of these
            parts.append(("value", val))
        else:
            return None
    return tuple(parts)


class _CompiledRegion:
    """One specialization: the irkit function and how its results map to the region's outputs."""

    def __init__(self, graph_module: fx.GraphModule, signature: _Signature, name: str) -> None:
        env: dict[fx.Node, Any] = {}
        inputs: list[ik.Variable] = []
        self.tensor_positions: list[int] = []
        placeholders = graph_module.graph.find_nodes(op="placeholder")
        for position, (node, part) in enumerate(zip(placeholders, signature)):
            if part[0] == "tensor":
                _, shape, dtype = part
                variable = ik.tensor(_input_name(node.name, position), shape=shape, dtype=SUPPORTED_DTYPES[dtype])
                env[node] = variable
                inputs.append(variable)
                self.tensor_positions.append(position)
            else:
                env[node] = part[1]  # a size or scalar: this specialization's constant
        output_node = None
        for node in graph_module.graph.nodes:
            if node.op == "call_function":
                env[node] = _translate_node(node, env)
            elif node.op == "output":
                output_node = node
            elif node.op != "placeholder":
                raise TranslationError(f"{node.op} node {node.name} in an irkit region")
        result = fx.node.map_arg(output_node.args[0], lambda n: env[n])
        self.single = not isinstance(result, (tuple, list))
        results = [result] if self.single else list(result)
        output_nodes = [output_node.args[0]] if self.single else list(output_node.args[0])
        self.strides = [_traced_layout(node) for node in output_nodes]
        # irkit returns a fresh array per output; the same variable twice would share one, so
        # such repeats are copied on the torch side
        self.layout: list[tuple[str, Any]] = []
        outputs: list[ik.Variable] = []
        for r in results:
            if is_var(r):
                slot = next((k for k, o in enumerate(outputs) if o is r), None)
                if slot is None:
                    outputs.append(r)
                    self.layout.append(("fresh", len(outputs) - 1))
                else:
                    self.layout.append(("repeat", slot))
            else:
                self.layout.append(("value", r))
        self.function = ik.function(inputs, outputs, name=name)

    def __call__(self, args: Sequence[Any]) -> Any:
        arrays = [_to_numpy(args[k]) for k in self.tensor_positions]
        produced = [_to_torch(a) for a in self.function(*arrays)]
        results = []
        for (kind, where), stride in zip(self.layout, self.strides):
            if kind == "value":
                results.append(where)
                continue
            tensor = produced[where]
            if stride is not None:
                tensor = torch.empty_strided(tensor.shape, stride, dtype=tensor.dtype).copy_(tensor)
            elif kind == "repeat":
                tensor = tensor.clone()
            results.append(tensor)
        return results[0] if self.single else tuple(results)


def _traced_layout(node: Any) -> tuple[int, ...] | None:
    """The strides torch traced for a region output when they are static and not C order
    (a transposed weight saved for the backward, say). irkit returns C-ordered arrays; the
    values are the same, but ops left in PyTorch may depend on the layout (as_strided does),
    so such outputs are laid out as traced."""
    val = node.meta.get("val") if isinstance(node, fx.Node) else None
    if not isinstance(val, torch.Tensor):
        return None
    shape, stride = tuple(val.shape), tuple(val.stride())
    if not all(isinstance(n, int) for n in shape + stride):
        return None
    laid_out = [(n, s) for n, s in zip(shape, stride) if n != 1]  # size-1 dims have no layout
    # only a permuted dense layout: each stride is the product of the sizes laid out inside it
    # (stride-0 broadcasts and gaps keep C order, which has the same values)
    inner = 1
    for size, step in sorted(laid_out, key=lambda pair: pair[1]):
        if step != inner:
            return None
        inner *= size
    in_c_order = all(a[1] > b[1] for a, b in zip(laid_out, laid_out[1:]))
    return None if in_c_order else stride


def _input_name(node_name: str, position: int) -> str:
    return node_name if node_name.isidentifier() else f"arg{position}"


def _translate_node(node: fx.Node, env: dict[fx.Node, Any]) -> Any:
    translation = translation_of(node)
    if translation is None:
        raise TranslationError(f"no irkit translation for {op_name(node)}")
    args = fx.node.map_arg(node.args, lambda n: env[n])
    kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
    out = _node_out(node)
    try:
        result = translation.fn(out, *args, **kwargs)
    except TranslationError:
        raise
    except Exception as e:  # irkit refused (a shape, a dtype, an op it lacks): name the node
        raise TranslationError(f"{op_name(node)} ({node.name}): {type(e).__name__}: {e}") from e
    return _match_meta(node, result)


def _match_meta(node: fx.Node, result: Any) -> Any:
    """Cast to the dtype torch's tracing recorded and check the static sizes agree: a
    difference in promotion rules must not become a wrong answer."""
    val = node.meta.get("val")
    if isinstance(val, torch.Tensor) and is_var(result):
        dtype = SUPPORTED_DTYPES[val.dtype]
        if result.dtype != dtype:
            result = ik.cast(result, dtype)
        expected = [s if isinstance(s, int) else None for s in val.shape]
        if len(expected) != result.ndim or any(
                e is not None and g is not None and e != g for e, g in zip(expected, result.static_shape)):
            raise TranslationError(f"{op_name(node)} ({node.name}): irkit gives shape "
                                   f"{tuple(result.static_shape)}, torch {tuple(val.shape)}")
    elif isinstance(val, (tuple, list)) and isinstance(result, (tuple, list)):
        result = type(result)(_match_item(v, r) for v, r in zip(val, result))
    return result


def _match_item(val: Any, result: Any) -> Any:
    if isinstance(val, torch.Tensor) and is_var(result) and result.dtype != SUPPORTED_DTYPES[val.dtype]:
        return ik.cast(result, SUPPORTED_DTYPES[val.dtype])
    return result


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    # detach: DLPack refuses tensors that require grad (AOTAutograd calls us under no_grad
    # with the originals); contiguous: irkit takes C-ordered arrays
    return np.from_dlpack(tensor.detach().contiguous())


def _to_torch(array: np.ndarray) -> torch.Tensor:
    array = np.asarray(array)
    if not array.flags.writeable:  # DLPack exports only writeable arrays
        array = array.copy()
    return torch.from_dlpack(array)


# Input signatures (shape sets) a region keeps compiled; beyond that the least recently used
# is dropped, so a model fed ever new batch sizes does not grow without bound.
MAX_SPECIALIZATIONS = 16


class IrkitRegion(torch.nn.Module):
    """A partition of an FX graph run by irkit: compiled once per input signature (the most
    recent MAX_SPECIALIZATIONS kept); a signature irkit cannot translate runs the region's
    ATen ops in PyTorch instead."""

    def __init__(self, graph_module: fx.GraphModule, name: str) -> None:
        super().__init__()
        self.graph_module = graph_module
        self.name = name
        self.op_names = [op_name(n) for n in graph_module.graph.nodes if n.op == "call_function"]
        self.specializations: collections.OrderedDict[_Signature, _CompiledRegion | None] = \
            collections.OrderedDict()
        self.evicted = 0

    def forward(self, *args: Any) -> Any:
        signature = _signature_of_args(args)
        compiled = self.specializations.get(signature, _MISSING)
        if compiled is _MISSING:
            compiled = self.specialize(signature)
        else:
            self.specializations.move_to_end(signature)
        if compiled is None:
            return self.graph_module(*args)
        return compiled(args)

    def specialize(self, signature: _Signature) -> _CompiledRegion | None:
        try:
            compiled = _CompiledRegion(self.graph_module, signature, self.name)
        except Exception as e:  # noqa: BLE001  (whatever irkit can't do, PyTorch still can)
            message = f"irkit could not compile region {self.name} ({len(self.op_names)} ops), " \
                      f"which runs in PyTorch instead: {e}"
            logger.warning(message)
            warnings.warn(message, TorchFallbackWarning, stacklevel=2)
            compiled = None
        else:
            logger.debug("compiled region %s for %s: %s", self.name, signature, ", ".join(self.op_names))
        self.specializations[signature] = compiled
        if len(self.specializations) > MAX_SPECIALIZATIONS:
            self.specializations.popitem(last=False)
            if not self.evicted:
                logger.warning("region %s has seen more than %d input shapes; it keeps the %d most recent "
                               "compiled (each new shape compiles again)", self.name, MAX_SPECIALIZATIONS,
                               MAX_SPECIALIZATIONS)
            self.evicted += 1
        return compiled

    @property
    def functions(self) -> list[ik.Function]:
        """The irkit functions compiled so far (one per input signature)."""
        return [c.function for c in self.specializations.values() if c is not None]


_MISSING = object()


# ---------------------------------------------------------------------------
# the backend
# ---------------------------------------------------------------------------

def _partition(graph_module: fx.GraphModule, kind: str) -> fx.GraphModule:
    """graph_module with its irkit-supported regions replaced by IrkitRegion modules."""
    report = GraphReport(kind)
    support = _IrkitSupport()
    partitioner = CapabilityBasedPartitioner(graph_module, support, allows_single_node_partition=True)
    proposed = partitioner.propose_partitions()
    # a region has to compute something: alone, views and casts are cheaper in PyTorch than a
    # compiled function and two boundary crossings
    partitions = [p for p in proposed if any(packet(n.target) not in LAYOUT_OPS for n in p.nodes)]
    fused = partitioner.fuse_partitions(partitions) if partitions else graph_module
    # the partitioner names its submodules fused_0, fused_1, ... (ATen graphs have no others)
    for name, submodule in list(fused.named_children()):
        if name.startswith("fused_") and isinstance(submodule, fx.GraphModule):
            region = IrkitRegion(submodule, f"{kind}_region_{name.removeprefix('fused_')}")
            setattr(fused, name, region)
            report.regions.append(region)
            signature = _signature_of_placeholders(submodule)
            if signature is not None:  # static sizes: compile now rather than at the first call
                region.specialize(signature)
    for node, reason in support.reasons.items():
        if reason != _NOT_A_TENSOR and node.op == "call_function":
            report.fallbacks.setdefault(op_name(node), reason)
    _announce(report)
    return fused


def _announce(report: GraphReport) -> None:
    reports.append(report)
    logger.info("%s graph: %d irkit region(s) with %d ops; in PyTorch: %s", report.kind, len(report.regions),
                len(report.irkit_ops), ", ".join(f"{op} ({why})" for op, why in report.fallbacks.items()) or "nothing")
    for op, why in report.fallbacks.items():
        if op not in _warned_ops:
            _warned_ops.add(op)
            warnings.warn(f"irkit.torch_backend: {op} runs in PyTorch: {why}", TorchFallbackWarning, stacklevel=2)


def _graph_compiler(kind: str) -> Callable[[fx.GraphModule, list], Callable]:
    def compile_graph(graph_module: fx.GraphModule, example_inputs: list) -> Callable:
        return make_boxed_func(_partition(graph_module, kind).forward)
    compile_graph.__name__ = f"irkit_{kind}_compiler"
    return compile_graph


def _decompositions() -> dict:
    from torch._decomp import core_aten_decompositions
    table = dict(core_aten_decompositions().items())
    # irkit has these as stable fused ops; decomposed, they would lose that
    for op in (aten.softplus.default, aten.logsumexp.default):
        table.pop(op, None)
    # This one is for export only (inductor excludes it too): its second result is the
    # attention matrix where the flash backward expects the logsumexp, so training through
    # it gives wrong gradients. Undecomposed, the attention stays in PyTorch.
    table.pop(aten._scaled_dot_product_flash_attention_for_cpu.default, None)
    return table


_aot_backend = aot_autograd(fw_compiler=_graph_compiler("forward"), bw_compiler=_graph_compiler("backward"),
                            inference_compiler=_graph_compiler("inference"), decompositions=_decompositions())


def backend(graph_module: fx.GraphModule, example_inputs: list) -> Callable:
    """The torch.compile backend: `torch.compile(model, backend=irkit.torch_backend)`.

    AOTAutograd traces the dynamo graph to ATen forward and backward graphs and irkit
    compiles the parts of each it can run; gradients flow through the compiled backward.
    A graph on a GPU stays in PyTorch as it is (irkit's CUDA path is its own target)."""
    devices = {t.device.type for t in example_inputs if isinstance(t, torch.Tensor)}
    devices |= {t.device.type for t in list(graph_module.parameters()) + list(graph_module.buffers())}
    elsewhere = ", ".join(sorted(devices - {"cpu"}))
    if elsewhere:
        why = f"tensors on {elsewhere}; irkit's torch backend runs CPU tensors"
        _announce(GraphReport("eager", fallbacks={"the whole graph": why}))
        return graph_module.forward
    return _aot_backend(graph_module, example_inputs)


def _register() -> None:
    # With the `torch_dynamo_backends` entry point installed, dynamo registers "irkit" itself
    # when it first looks the name up; registering here too would be a duplicate.
    if "irkit" not in torch._dynamo.list_backends(exclude_tags=()):
        torch._dynamo.register_backend(backend, name="irkit")


_register()


class _CallableModule(types.ModuleType):
    """`torch.compile(model, backend=irkit.torch_backend)`: the module itself is the backend."""

    def __call__(self, graph_module: fx.GraphModule, example_inputs: list) -> Callable:
        return backend(graph_module, example_inputs)


sys.modules[__name__].__class__ = _CallableModule
