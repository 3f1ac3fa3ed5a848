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

Importing `irkit` never imports torch; importing this module does, and
registers the backend under the name "irkit".
"""

from __future__ import annotations

import collections
import logging
import math
import operator
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

__all__ = ["backend", "GraphReport", "TorchFallbackWarning", "TranslationError", "IrkitRegion", "reports",
           "SUPPORTED_DTYPES"]

logger = logging.getLogger(__name__)

aten = torch.ops.aten
prims = torch.ops.prims

# The torch dtypes irkit computes in (others stay in PyTorch).
SUPPORTED_DTYPES: dict[torch.dtype, np.dtype] = {
    torch.float32: np.dtype(np.float32),
    torch.float64: np.dtype(np.float64),
    torch.int64: np.dtype(np.int64),
    torch.int32: np.dtype(np.int32),
    torch.bool: np.dtype(np.bool_),
}


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
# translations of ATen ops
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Out:
    """What torch's own tracing says a node produces: its dtype as a numpy dtype (None for
    several results, whose dtypes the translations know)."""
    dtype: np.dtype | None


@dataclass(frozen=True)
class _Translation:
    fn: Callable[..., Any]
    check: Callable[[fx.Node], str | None] | None = None


_TRANSLATIONS: dict[Any, _Translation] = {}


def _translates(*targets: Any, check: Callable[[fx.Node], str | None] | None = None):
    """Register fn(out: _Out, *args, **kwargs) as the irkit form of these ATen op packets
    (all their overloads), single overloads (which win over their packet) or Python
    functions; `check` names why a node can't be taken."""
    def register(fn):
        for target in targets:
            _TRANSLATIONS[target] = _Translation(fn, check)
        return fn
    return register


def _is_var(x: Any) -> bool:
    return isinstance(x, ik.Variable)


def _to(x: Any, dtype: np.dtype | None) -> Any:
    """x cast to dtype when it is a tensor of another dtype (Python scalars stay weak)."""
    if dtype is not None and _is_var(x) and x.dtype != dtype:
        return ik.cast(x, dtype)
    return x


def _torch_result_dtype(a: Any, b: Any) -> np.dtype:
    """torch's type promotion of two operands, asked of torch itself with stand-ins of the
    same dtype and category (0-d tensors and Python scalars count less than tensors with
    dims, which numpy's rules don't say)."""
    def stand_in(x: Any) -> Any:
        if not _is_var(x):
            return x
        return torch.empty(() if x.ndim == 0 else (1,), dtype=_TORCH_DTYPES[x.dtype])
    return SUPPORTED_DTYPES[torch.result_type(stand_in(a), stand_in(b))]


_TORCH_DTYPES = {v: k for k, v in SUPPORTED_DTYPES.items()}


def _elementwise(fn: Callable[..., Any]) -> Callable[..., Any]:
    """An op computed in its result dtype (torch's promotion decides it; numpy's differs)."""
    def translate(out: _Out, *operands: Any) -> Any:
        return fn(*[_to(x, out.dtype) for x in operands])
    return translate


def _compared(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A comparison: operands meet in torch's promoted dtype, the result is bool."""
    def translate(out: _Out, a: Any, b: Any) -> Any:
        common = _torch_result_dtype(a, b)
        return fn(_to(a, common), _to(b, common))
    return translate


def _logical(fn: Callable[..., Any]) -> Callable[..., Any]:
    def translate(out: _Out, *operands: Any) -> Any:
        return fn(*[_to(x, np.dtype(np.bool_)) if _is_var(x) else bool(x) for x in operands])
    return translate


_UNARY = {
    aten.exp: ik.exp, aten.exp2: ik.exp2, aten.expm1: ik.expm1, aten.log: ik.log, aten.log2: ik.log2,
    aten.log10: ik.log10, aten.log1p: ik.log1p, aten.sqrt: ik.sqrt, aten.sin: ik.sin, aten.cos: ik.cos,
    aten.tan: ik.tan, aten.sinh: ik.sinh, aten.cosh: ik.cosh, aten.asin: ik.arcsin, aten.acos: ik.arccos,
    aten.atan: ik.arctan, aten.asinh: ik.arcsinh, aten.acosh: ik.arccosh, aten.atanh: ik.arctanh,
    aten.tanh: ik.tanh, aten.sigmoid: ik.sigmoid, aten.erf: ik.erf, aten.relu: ik.relu, aten.abs: ik.abs,
    aten.neg: ik.neg, aten.sign: ik.sign, aten.floor: ik.floor, aten.ceil: ik.ceil,
    aten.trunc: ik.trunc, aten.bitwise_not: ik.invert, aten.round.default: ik.round,
    aten.rsqrt: lambda x: 1 / ik.sqrt(x), aten.reciprocal: lambda x: 1 / x,
}
for _op, _fn in _UNARY.items():
    _translates(_op)(_elementwise(_fn))

_BINARY = {
    aten.mul: ik.multiply, aten.maximum: ik.maximum, aten.minimum: ik.minimum, aten.atan2: ik.arctan2,
    aten.remainder: ik.mod, aten.floor_divide: ik.floor_divide, aten.pow: ik.power,
    aten.bitwise_and: ik.bitwise_and, aten.bitwise_or: ik.bitwise_or, aten.bitwise_xor: ik.bitwise_xor,
}
for _op, _fn in _BINARY.items():
    _translates(_op)(_elementwise(_fn))

for _op, _fn in {aten.eq: ik.equal, aten.ne: ik.not_equal, aten.lt: ik.less, aten.le: ik.less_equal,
                 aten.gt: ik.greater, aten.ge: ik.greater_equal}.items():
    _translates(_op)(_compared(_fn))

for _op, _fn in {aten.logical_and: ik.logical_and, aten.logical_or: ik.logical_or,
                 aten.logical_xor: ik.logical_xor, aten.logical_not: ik.logical_not}.items():
    _translates(_op)(_logical(_fn))


def _classify(fn: Callable[..., Any]) -> Callable[..., Any]:
    """isnan and kin: any dtype in, bool out."""
    def translate(out: _Out, x: Any) -> Any:
        return fn(x)
    return translate


for _op, _fn in {aten.isnan: ik.isnan, aten.isinf: ik.isinf, aten.isfinite: ik.isfinite}.items():
    _translates(_op)(_classify(_fn))


@_translates(aten.add)
def _add(out: _Out, a: Any, b: Any, alpha: Any = 1) -> Any:
    a, b = _to(a, out.dtype), _to(b, out.dtype)
    return a + (b if alpha == 1 else b * alpha)


@_translates(aten.sub)
def _sub(out: _Out, a: Any, b: Any, alpha: Any = 1) -> Any:
    a, b = _to(a, out.dtype), _to(b, out.dtype)
    return a - (b if alpha == 1 else b * alpha)


@_translates(aten.rsub)
def _rsub(out: _Out, a: Any, b: Any, alpha: Any = 1) -> Any:
    return _sub(out, b, a, alpha)


def _check_rounding(node: fx.Node) -> str | None:
    mode = node.kwargs.get("rounding_mode")
    return None if mode in (None, "floor", "trunc") else f"rounding_mode={mode!r}"


@_translates(aten.div, check=_check_rounding)
def _div(out: _Out, a: Any, b: Any, rounding_mode: str | None = None) -> Any:
    a, b = _to(a, out.dtype), _to(b, out.dtype)
    if rounding_mode is None:
        return a / b
    if rounding_mode == "floor":
        return a // b
    if out.dtype.kind == "f":
        return ik.trunc(a / b)
    # integer division rounding toward zero: floor division, one up where the signs differ
    # and the division is not exact
    quotient = a // b
    inexact = (a - quotient * b) != 0
    signs_differ = (ik.as_variable(a) < 0) != (ik.as_variable(b) < 0)
    return quotient + ik.cast(inexact & signs_differ, out.dtype)


@_translates(aten.where)
def _where(out: _Out, cond: Any, a: Any, b: Any) -> Any:
    return ik.where(_to(cond, np.dtype(np.bool_)), _to(a, out.dtype), _to(b, out.dtype))


def _clamped(x: Any, lo: Any, hi: Any) -> Any:
    # maximum/minimum propagate NaN as torch.clamp does; hi wins when lo > hi, as in torch
    if lo is not None:
        x = ik.maximum(x, lo)
    if hi is not None:
        x = ik.minimum(x, hi)
    return x


@_translates(aten.clamp)
def _clamp(out: _Out, x: Any, min: Any = None, max: Any = None) -> Any:  # noqa: A002
    return _clamped(_to(x, out.dtype), _to(min, out.dtype), _to(max, out.dtype))


@_translates(aten.clamp_min)
def _clamp_min(out: _Out, x: Any, lo: Any) -> Any:
    return _clamped(_to(x, out.dtype), _to(lo, out.dtype), None)


@_translates(aten.clamp_max)
def _clamp_max(out: _Out, x: Any, hi: Any) -> Any:
    return _clamped(_to(x, out.dtype), None, _to(hi, out.dtype))


@_translates(aten.hardtanh)
def _hardtanh(out: _Out, x: Any, min_val: float = -1.0, max_val: float = 1.0) -> Any:
    return _clamped(x, min_val, max_val)


@_translates(aten.leaky_relu)
def _leaky_relu(out: _Out, x: Any, negative_slope: float = 0.01) -> Any:
    return ik.where(x > 0, x, x * negative_slope)


def _check_gelu(node: fx.Node) -> str | None:
    approximate = node.kwargs.get("approximate", "none")
    return None if approximate in ("none", "tanh") else f"approximate={approximate!r}"


@_translates(aten.gelu, check=_check_gelu)
def _gelu(out: _Out, x: Any, approximate: str = "none") -> Any:
    if approximate == "tanh":
        inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)
        return 0.5 * x * (1 + ik.tanh(inner))
    return 0.5 * x * (1 + ik.erf(x * (1 / math.sqrt(2))))


@_translates(aten.softplus)
def _softplus(out: _Out, x: Any, beta: float = 1, threshold: float = 20) -> Any:
    scaled = x * beta if beta != 1 else x
    smooth = ik.softplus(scaled) / beta if beta != 1 else ik.softplus(scaled)
    return ik.where(scaled > threshold, x, smooth)  # torch's threshold: linear above it


@_translates(aten.elu)
def _elu(out: _Out, x: Any, alpha: float = 1, scale: float = 1, input_scale: float = 1) -> Any:
    return ik.where(x > 0, x * scale, ik.expm1(x * input_scale) * (alpha * scale))


@_translates(aten.silu)
def _silu(out: _Out, x: Any) -> Any:
    return x * ik.sigmoid(x)


@_translates(aten._softmax, aten.softmax)
def _softmax(out: _Out, x: Any, dim: int, half_to_float_or_dtype: Any = None) -> Any:
    return ik.softmax(_to(x, out.dtype), axis=dim)


@_translates(aten._log_softmax, aten.log_softmax)
def _log_softmax(out: _Out, x: Any, dim: int, half_to_float_or_dtype: Any = None) -> Any:
    return ik.log_softmax(_to(x, out.dtype), axis=dim)


# -- reductions ----------------------------------------------------------------

def _axes(dim: Any, ndim: int) -> tuple[int, ...] | None:
    """torch's dim argument as irkit axes: None and [] reduce every axis."""
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    if not dims:
        return None
    if ndim == 0:  # torch accepts dim 0 / -1 on a 0-d tensor and reduces nothing
        return ()
    return dims


def _reduction(fn: Callable[..., Any], cast_input: bool = True) -> Callable[..., Any]:
    def translate(out: _Out, x: Any, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Any:
        x = _to(x, out.dtype) if cast_input else x
        axes = _axes(dim, x.ndim)
        if axes == ():
            return x
        return fn(x, axis=axes, keepdims=bool(keepdim))
    return translate


_translates(aten.sum)(_reduction(ik.sum))
_translates(aten.mean)(_reduction(ik.mean))
_translates(aten.amax)(_reduction(ik.max, cast_input=False))
_translates(aten.amin)(_reduction(ik.min, cast_input=False))
_translates(aten.any)(_reduction(ik.any, cast_input=False))
_translates(aten.all)(_reduction(ik.all, cast_input=False))


@_translates(aten.prod)
def _prod(out: _Out, x: Any, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Any:
    x = _to(x, out.dtype)
    axes = _axes(dim, x.ndim)
    return x if axes == () else ik.prod(x, axis=axes, keepdims=bool(keepdim))


def _with_indices(values_fn: Callable[..., Any], index_fn: Callable[..., Any]) -> Callable[..., Any]:
    """max/min: over everything (one value), or along dim (values, indices)."""
    def translate(out: _Out, x: Any, dim: Any = None, keepdim: bool = False) -> Any:
        if dim is None:
            return values_fn(x)
        if x.ndim == 0:
            return x, ik.constant(0, "int64")
        return values_fn(x, axis=dim, keepdims=keepdim), index_fn(x, axis=dim, keepdims=keepdim)
    return translate


_translates(aten.max)(_with_indices(ik.max, ik.argmax))
_translates(aten.min)(_with_indices(ik.min, ik.argmin))
_translates(aten.max.other)(_elementwise(ik.maximum))
_translates(aten.min.other)(_elementwise(ik.minimum))


def _arg_reduction(fn: Callable[..., Any]) -> Callable[..., Any]:
    def translate(out: _Out, x: Any, dim: int | None = None, keepdim: bool = False) -> Any:
        if x.ndim == 0:
            return ik.constant(0, "int64")
        if dim is None and keepdim:  # torch keeps every axis at size 1
            return ik.reshape(fn(x), (1,) * x.ndim)
        return fn(x, axis=dim, keepdims=keepdim)
    return translate


_translates(aten.argmax)(_arg_reduction(ik.argmax))
_translates(aten.argmin)(_arg_reduction(ik.argmin))


def _correction(correction: Any, unbiased: Any) -> int:
    if correction is not None:
        return int(correction)
    return 1 if unbiased is None or unbiased else 0


@_translates(aten.var)
def _var(out: _Out, x: Any, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
         correction: Any = None) -> Any:
    return ik.var(x, axis=_axes(dim, x.ndim), keepdims=keepdim, ddof=_correction(correction, unbiased))


@_translates(aten.std)
def _std(out: _Out, x: Any, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
         correction: Any = None) -> Any:
    return ik.std(x, axis=_axes(dim, x.ndim), keepdims=keepdim, ddof=_correction(correction, unbiased))


@_translates(aten.var_mean)
def _var_mean(out: _Out, x: Any, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
              correction: Any = None) -> Any:
    axes = _axes(dim, x.ndim)
    return (ik.var(x, axis=axes, keepdims=keepdim, ddof=_correction(correction, unbiased)),
            ik.mean(x, axis=axes, keepdims=keepdim))


@_translates(aten.logsumexp)
def _logsumexp(out: _Out, x: Any, dim: Any = None, keepdim: bool = False) -> Any:
    return ik.logsumexp(_to(x, out.dtype), axis=_axes(dim, x.ndim), keepdims=keepdim)


@_translates(aten.native_layer_norm)
def _layer_norm(out: _Out, x: Any, normalized_shape: Sequence[int], weight: Any, bias: Any, eps: float) -> Any:
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    mean = ik.mean(x, axis=axes, keepdims=True)
    centered = x - mean
    rstd = 1 / ik.sqrt(ik.mean(centered * centered, axis=axes, keepdims=True) + eps)
    y = centered * rstd
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y, mean, rstd


# -- contractions ----------------------------------------------------------------

@_translates(aten.mm, aten.bmm, aten.matmul)
def _matmul(out: _Out, a: Any, b: Any) -> Any:
    return ik.matmul(_to(a, out.dtype), _to(b, out.dtype))


@_translates(aten.addmm, aten.baddbmm)
def _addmm(out: _Out, bias: Any, a: Any, b: Any, *, beta: Any = 1, alpha: Any = 1) -> Any:
    product = ik.matmul(_to(a, out.dtype), _to(b, out.dtype))
    if alpha != 1:
        product = product * alpha
    if beta == 0:  # torch ignores bias (even NaN in it) when beta is 0
        return product
    return product + (_to(bias, out.dtype) if beta == 1 else _to(bias, out.dtype) * beta)


@_translates(aten.mv, aten.dot)
def _dot(out: _Out, a: Any, b: Any) -> Any:
    return ik.dot(_to(a, out.dtype), _to(b, out.dtype))


@_translates(aten.linear)
def _linear(out: _Out, x: Any, weight: Any, bias: Any = None) -> Any:
    y = ik.matmul(x, ik.transpose(weight))
    return y if bias is None else y + bias


# -- shapes ----------------------------------------------------------------

def _identity(out: _Out, x: Any, *args: Any, **kwargs: Any) -> Any:
    return x


_translates(aten.alias, aten.detach, aten.clone, aten.lift_fresh_copy, aten.contiguous)(_identity)


@_translates(aten.view, aten._unsafe_view, aten.reshape)
def _view(out: _Out, x: Any, shape: Sequence[int]) -> Any:
    return ik.reshape(x, tuple(shape))


@_translates(aten.expand)
def _expand(out: _Out, x: Any, sizes: Sequence[int], *, implicit: bool = False) -> Any:
    lead = len(sizes) - x.ndim
    target = [x.static_shape[k - lead] if s == -1 else s for k, s in enumerate(sizes)]
    return ik.broadcast_to(x, tuple(target))


@_translates(aten.permute)
def _permute(out: _Out, x: Any, dims: Sequence[int]) -> Any:
    return ik.transpose(x, tuple(dims))


@_translates(aten.t)
def _t(out: _Out, x: Any) -> Any:
    return ik.transpose(x) if x.ndim == 2 else x


@_translates(aten.transpose)
def _transpose(out: _Out, x: Any, dim0: int, dim1: int) -> Any:
    if x.ndim < 2:
        return x
    axes = list(range(x.ndim))
    axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
    return ik.transpose(x, axes)


@_translates(aten.unsqueeze)
def _unsqueeze(out: _Out, x: Any, dim: int) -> Any:
    return ik.expand_dims(x, dim)


@_translates(aten.squeeze)
def _squeeze(out: _Out, x: Any, dim: Any = None) -> Any:
    if x.ndim == 0:
        return x
    dims = range(x.ndim) if dim is None else ((dim,) if isinstance(dim, int) else dim)
    # torch leaves a named axis alone when its size is not 1 (numpy would raise)
    axes = tuple(sorted({d % x.ndim for d in dims if x.static_shape[d % x.ndim] == 1}))
    return ik.squeeze(x, axes) if axes else x


@_translates(aten.cat)
def _cat(out: _Out, tensors: Sequence[Any], dim: int = 0) -> Any:
    return ik.concatenate([_to(t, out.dtype) for t in tensors], axis=dim)


@_translates(aten.split_with_sizes, aten.split)
def _split(out: _Out, x: Any, sizes: Any, dim: int = 0) -> list:
    n = x.static_shape[dim]
    if isinstance(sizes, int):  # split.Tensor: chunks of this size, the last one shorter
        sizes = [min(sizes, n - start) for start in range(0, n, sizes)] if sizes else [n]
    pieces, start = [], 0
    for size in sizes:
        pieces.append(_slice(out, x, dim, start, start + size))
        start += size
    return pieces


# -- indexing ----------------------------------------------------------------

def _along(dim: int, ndim: int, index: Any) -> tuple:
    dim %= ndim
    return (slice(None),) * dim + (index,)


@_translates(aten.slice)
def _slice(out: _Out, x: Any, dim: int = 0, start: Any = None, end: Any = None, step: int = 1) -> Any:
    return x[_along(dim, x.ndim, slice(start, end, step))]


@_translates(aten.select)
def _select(out: _Out, x: Any, dim: int, index: int) -> Any:
    return x[_along(dim, x.ndim, index)]


@_translates(aten.slice_scatter)
def _slice_scatter(out: _Out, x: Any, src: Any, dim: int = 0, start: Any = None, end: Any = None,
                   step: int = 1) -> Any:
    return ik.set_subtensor(x[_along(dim, x.ndim, slice(start, end, step))], src)


@_translates(aten.select_scatter)
def _select_scatter(out: _Out, x: Any, src: Any, dim: int, index: int) -> Any:
    return ik.set_subtensor(x[_along(dim, x.ndim, index)], src)


def _check_integer_indices(node: fx.Node) -> str | None:
    indices = node.args[1] if len(node.args) > 1 else node.kwargs.get("indices")
    for index in indices if isinstance(indices, (list, tuple)) else [indices]:
        if isinstance(index, fx.Node):
            val = index.meta.get("val")
            if isinstance(val, torch.Tensor) and val.dtype == torch.bool:
                return "a boolean mask index (its result size depends on the data)"
    return None


def _index_key(indices: Sequence[Any]) -> tuple:
    return tuple(slice(None) if i is None else i for i in indices)


@_translates(aten.index, check=_check_integer_indices)
def _index(out: _Out, x: Any, indices: Sequence[Any]) -> Any:
    return x[_index_key(indices)]


@_translates(aten.index_put, check=_check_integer_indices)
def _index_put(out: _Out, x: Any, indices: Sequence[Any], values: Any, accumulate: bool = False) -> Any:
    window = x[_index_key(indices)]
    return ik.inc_subtensor(window, values) if accumulate else ik.set_subtensor(window, values)


@_translates(aten.index_select)
def _index_select(out: _Out, x: Any, dim: int, index: Any) -> Any:
    if x.ndim == 0:
        return x
    return x[_along(dim, x.ndim, index)]


@_translates(aten.embedding)
def _embedding(out: _Out, weight: Any, indices: Any, *args: Any) -> Any:
    return weight[indices]


def _gather_key(x: Any, dim: int, index: Any) -> tuple:
    """The advanced index that picks x[..., index[i, j, ...], ...] along dim: an index array
    for dim and a broadcasting arange for every other axis (index may be smaller than x)."""
    dim %= index.ndim
    key = []
    for axis, size in enumerate(index.static_shape):
        if axis == dim:
            key.append(index)
        else:
            shape = [1] * index.ndim
            shape[axis] = size
            key.append(ik.reshape(ik.arange(size), tuple(shape)))
    return tuple(key)


def _check_scatter(node: fx.Node) -> str | None:
    reduce = node.kwargs.get("reduce", node.args[4] if len(node.args) > 4 else None)
    return None if reduce is None else f"scatter with reduce={reduce!r}"


@_translates(aten.gather)
def _gather(out: _Out, x: Any, dim: int, index: Any, *, sparse_grad: bool = False) -> Any:
    if x.ndim == 0:
        return x
    return x[_gather_key(x, dim, index)]


def _scatter_source(src: Any, index: Any) -> Any:
    """torch scatters only src's leading block of index's shape."""
    if not _is_var(src) or src.ndim == 0:
        return src
    if tuple(src.static_shape) == tuple(index.static_shape):
        return src
    return src[tuple(slice(0, n) for n in index.static_shape)]


@_translates(aten.scatter_add)
def _scatter_add(out: _Out, x: Any, dim: int, index: Any, src: Any) -> Any:
    return ik.inc_subtensor(x[_gather_key(x, dim, index)], _scatter_source(src, index))


@_translates(aten.scatter, check=_check_scatter)
def _scatter(out: _Out, x: Any, dim: int, index: Any, src: Any) -> Any:
    return ik.set_subtensor(x[_gather_key(x, dim, index)], _scatter_source(src, index))


@_translates(operator.getitem)
def _getitem(out: _Out, sequence: Any, index: int) -> Any:
    return sequence[index]


# -- creation and casts ----------------------------------------------------------------

def _check_cpu(node: fx.Node) -> str | None:
    device = node.kwargs.get("device")
    if device is not None and torch.device(device).type != "cpu":
        return f"creates a tensor on {device}"
    return None


@_translates(aten.full, check=_check_cpu)
def _full(out: _Out, size: Sequence[int], fill_value: Any, **kwargs: Any) -> Any:
    return ik.full(tuple(size), fill_value, out.dtype)


@_translates(aten.scalar_tensor, check=_check_cpu)
def _scalar_tensor(out: _Out, value: Any, **kwargs: Any) -> Any:
    return ik.constant(value, out.dtype)


@_translates(aten.full_like, check=_check_cpu)
def _full_like(out: _Out, x: Any, fill_value: Any, **kwargs: Any) -> Any:
    return ik.full(tuple(x.static_shape), fill_value, out.dtype)


@_translates(aten.zeros_like, aten.empty_like, check=_check_cpu)
def _zeros_like(out: _Out, x: Any, **kwargs: Any) -> Any:
    # empty_like's values are unspecified; zeros are one valid choice
    return ik.full(tuple(x.static_shape), 0, out.dtype)


@_translates(aten.ones_like, check=_check_cpu)
def _ones_like(out: _Out, x: Any, **kwargs: Any) -> Any:
    return ik.full(tuple(x.static_shape), 1, out.dtype)


@_translates(aten.zeros, aten.empty, check=_check_cpu)
def _zeros(out: _Out, size: Sequence[int], **kwargs: Any) -> Any:
    return ik.full(tuple(size), 0, out.dtype)


@_translates(aten.ones, check=_check_cpu)
def _ones(out: _Out, size: Sequence[int], **kwargs: Any) -> Any:
    return ik.full(tuple(size), 1, out.dtype)


@_translates(aten.arange, check=_check_cpu)
def _arange(out: _Out, *bounds: Any, **kwargs: Any) -> Any:
    return ik.arange(*bounds, dtype=out.dtype)


@_translates(prims.iota, check=_check_cpu)
def _iota(out: _Out, length: int, *, start: int, step: int, **kwargs: Any) -> Any:
    return ik.arange(start, start + length * step, step, dtype=out.dtype)


@_translates(aten._to_copy, aten.to, check=_check_cpu)
def _to_copy(out: _Out, x: Any, *args: Any, **kwargs: Any) -> Any:
    return _to(x, out.dtype)


@_translates(prims.convert_element_type)
def _convert(out: _Out, x: Any, dtype: Any) -> Any:
    return _to(x, out.dtype)


@_translates(aten.copy)
def _copy(out: _Out, destination: Any, source: Any, non_blocking: bool = False) -> Any:
    return ik.broadcast_to(_to(source, out.dtype), tuple(destination.static_shape))


@_translates(aten.fill)
def _fill(out: _Out, x: Any, value: Any) -> Any:
    return ik.full(tuple(x.static_shape), value if not _is_var(value) else _to(value, out.dtype), out.dtype)


# Ops that only rearrange or relabel: a region made of nothing else gains nothing from irkit.
_LAYOUT_OPS = {aten.alias, aten.detach, aten.clone, aten.lift_fresh_copy, aten.contiguous, aten.view,
               aten._unsafe_view, aten.reshape, aten.expand, aten.permute, aten.t, aten.transpose,
               aten.unsqueeze, aten.squeeze, aten.slice, aten.select, aten._to_copy, aten.to,
               prims.convert_element_type, operator.getitem}


def _packet(target: Any) -> Any:
    return getattr(target, "overloadpacket", target)


def _translation_of(node: fx.Node) -> _Translation | None:
    return _TRANSLATIONS.get(node.target) or _TRANSLATIONS.get(_packet(node.target))


def _op_name(node: fx.Node) -> str:
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        return f"{target.namespace}.{target._schema.name.split('::')[-1]}" + \
            (f".{target._overloadname}" if target._overloadname != "default" else "")
    return getattr(target, "__name__", str(target))


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
        translation = _translation_of(node)
        if translation is None:
            return "no irkit translation"
        problem = _meta_problem(val, "its result")
        for arg in node.all_input_nodes:
            problem = problem or _meta_problem(arg.meta.get("val"), f"input {arg.name}")
        if problem:
            return problem
        return translation.check(node) if translation.check else None


_NOT_A_TENSOR = "gives Python numbers, not tensors"


def _node_out(node: fx.Node) -> _Out:
    val = node.meta.get("val")
    return _Out(SUPPORTED_DTYPES.get(val.dtype) if isinstance(val, torch.Tensor) else None)


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
            if _is_var(r):
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
    translation = _translation_of(node)
    if translation is None:
        raise TranslationError(f"no irkit translation for {_op_name(node)}")
    args = fx.node.map_arg(node.args, lambda n: env[n])
    kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
    out = _node_out(node)
    try:
        result = translation.fn(out, *args, **kwargs)
    except TranslationError:
        raise
    except Exception as e:  # irkit refused (a shape, a dtype, an op it lacks): name the node
        raise TranslationError(f"{_op_name(node)} ({node.name}): {type(e).__name__}: {e}") from e
    return _match_meta(node, result)


def _match_meta(node: fx.Node, result: Any) -> Any:
    """Cast to the dtype torch's tracing recorded and check the static sizes agree: a
    difference in promotion rules must not become a wrong answer."""
    val = node.meta.get("val")
    if isinstance(val, torch.Tensor) and _is_var(result):
        dtype = SUPPORTED_DTYPES[val.dtype]
        if result.dtype != dtype:
            result = ik.cast(result, dtype)
        expected = [s if isinstance(s, int) else None for s in val.shape]
        if len(expected) != result.ndim or any(
                e is not None and g is not None and e != g for e, g in zip(expected, result.static_shape)):
            raise TranslationError(f"{_op_name(node)} ({node.name}): irkit gives shape "
                                   f"{tuple(result.static_shape)}, torch {tuple(val.shape)}")
    elif isinstance(val, (tuple, list)) and isinstance(result, (tuple, list)):
        result = type(result)(_match_item(v, r) for v, r in zip(val, result))
    return result


def _match_item(val: Any, result: Any) -> Any:
    if isinstance(val, torch.Tensor) and _is_var(result) and result.dtype != SUPPORTED_DTYPES[val.dtype]:
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


class IrkitRegion(torch.nn.Module):
    """A partition of an FX graph run by irkit: compiled once per input signature; a
    signature irkit cannot translate runs the region's ATen ops in PyTorch instead."""

    def __init__(self, graph_module: fx.GraphModule, name: str) -> None:
        super().__init__()
        self.graph_module = graph_module
        self.name = name
        self.op_names = [_op_name(n) for n in graph_module.graph.nodes if n.op == "call_function"]
        self.specializations: dict[_Signature, _CompiledRegion | None] = {}

    def forward(self, *args: Any) -> Any:
        signature = _signature_of_args(args)
        compiled = self.specializations.get(signature, _MISSING)
        if compiled is _MISSING:
            compiled = self.specialize(signature)
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
    partitions = [p for p in proposed if any(_packet(n.target) not in _LAYOUT_OPS for n in p.nodes)]
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
            report.fallbacks.setdefault(_op_name(node), reason)
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
