"""The ATen ops irkit translates, for `irkit.torch_backend`: each translation turns one FX
node (an ATen op with its arguments, irkit variables in place of tensors) into irkit ops,
registered by `translates(...)` for an op packet (all its overloads), one overload or a
Python function, with an optional `check` that names why a node cannot be taken (the
node then stays in PyTorch). `Out` carries what torch's tracing says the node gives, so a
translation casts to torch's dtype where the promotion rules differ.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import fx

import irkit as ik

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

# ---------------------------------------------------------------------------
# translations of ATen ops
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Out:
    """What torch's own tracing says a node produces: its dtype as a numpy dtype (None for
    several results, whose dtypes the translations know)."""
    dtype: np.dtype | None


@dataclass(frozen=True)
class _Translation:
    fn: Callable[..., Any]
    check: Callable[[fx.Node], str | None] | None = None


_TRANSLATIONS: dict[Any, _Translation] = {}


def translates(*targets: Any, check: Callable[[fx.Node], str | None] | None = None):
    """Register fn(out: Out, *args, **kwargs) as the irkit form of these ATen op packets
    (all their overloads), single overloads (which win over their packet) or Python
    functions; `check` names why a node can't be taken."""
    def register(fn):
        for target in targets:
            _TRANSLATIONS[target] = _Translation(fn, check)
        return fn
    return register


def is_var(x: Any) -> bool:
    return isinstance(x, ik.Variable)


def _to(x: Any, dtype: np.dtype | None) -> Any:
    """x cast to dtype when it is a tensor of another dtype (Python scalars stay weak)."""
    if dtype is not None and is_var(x) and x.dtype != dtype:
        return ik.cast(x, dtype)
    return x


def _torch_result_dtype(a: Any, b: Any) -> np.dtype:
    """torch's type promotion of two operands, asked of torch itself with stand-ins of the
    same dtype and category (0-d tensors and Python scalars count less than tensors with
    dims, which numpy's rules don't say)."""
    def stand_in(x: Any) -> Any:
        if not is_var(x):
            return x
        return torch.empty(() if x.ndim == 0 else (1,), dtype=_TORCH_DTYPES[x.dtype])
    return SUPPORTED_DTYPES[torch.result_type(stand_in(a), stand_in(b))]


_TORCH_DTYPES = {v: k for k, v in SUPPORTED_DTYPES.items()}


def _elementwise(fn: Callable[..., Any]) -> Callable[..., Any]:
    """An op computed in its result dtype (torch's promotion decides it; numpy's differs)."""
    def translate(out: Out, *operands: Any) -> Any:
        return fn(*[_to(x, out.dtype) for x in operands])
    return translate


def _compared(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A comparison: operands meet in torch's promoted dtype, the result is bool."""
    def translate(out: Out, a: Any, b: Any) -> Any:
        common = _torch_result_dtype(a, b)
        return fn(_to(a, common), _to(b, common))
    return translate


def _logical(fn: Callable[..., Any]) -> Callable[..., Any]:
    def translate(out: Out, *operands: Any) -> Any:
        return fn(*[_to(x, np.dtype(np.bool_)) if is_var(x) else bool(x) for x in operands])
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
    translates(_op)(_elementwise(_fn))

_BINARY = {
    aten.mul: ik.multiply, aten.maximum: ik.maximum, aten.minimum: ik.minimum, aten.atan2: ik.arctan2,
    aten.remainder: ik.mod, aten.floor_divide: ik.floor_divide, aten.pow: ik.power,
    aten.bitwise_and: ik.bitwise_and, aten.bitwise_or: ik.bitwise_or, aten.bitwise_xor: ik.bitwise_xor,
}
for _op, _fn in _BINARY.items():
    translates(_op)(_elementwise(_fn))

for _op, _fn in {aten.eq: ik.equal, aten.ne: ik.not_equal, aten.lt: ik.less, aten.le: ik.less_equal,
                 aten.gt: ik.greater, aten.ge: ik.greater_equal}.items():
    translates(_op)(_compared(_fn))

for _op, _fn in {aten.logical_and: ik.logical_and, aten.logical_or: ik.logical_or,
                 aten.logical_xor: ik.logical_xor, aten.logical_not: ik.logical_not}.items():
    translates(_op)(_logical(_fn))


def _classify(fn: Callable[..., Any]) -> Callable[..., Any]:
    """isnan and kin: any dtype in, bool out."""
    def translate(out: Out, x: Any) -> Any:
        return fn(x)
    return translate


for _op, _fn in {aten.isnan: ik.isnan, aten.isinf: ik.isinf, aten.isfinite: ik.isfinite}.items():
    translates(_op)(_classify(_fn))


@translates(aten.add)
def _add(out: Out, a: Any, b: Any, alpha: Any = 1) -> Any:
    a, b = _to(a, out.dtype), _to(b, out.dtype)
    return a + (b if alpha == 1 else b * alpha)


@translates(aten.sub)
def _sub(out: Out, a: Any, b: Any, alpha: Any = 1) -> Any:
    a, b = _to(a, out.dtype), _to(b, out.dtype)
    return a - (b if alpha == 1 else b * alpha)


@translates(aten.rsub)
def _rsub(out: Out, a: Any, b: Any, alpha: Any = 1) -> Any:
    return _sub(out, b, a, alpha)


def _check_rounding(node: fx.Node) -> str | None:
    mode = node.kwargs.get("rounding_mode")
    return None if mode in (None, "floor", "trunc") else f"rounding_mode={mode!r}"


@translates(aten.div, check=_check_rounding)
def _div(out: Out, a: Any, b: Any, rounding_mode: str | None = None) -> Any:
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


@translates(aten.where)
def _where(out: Out, cond: Any, a: Any, b: Any) -> Any:
    return ik.where(_to(cond, np.dtype(np.bool_)), _to(a, out.dtype), _to(b, out.dtype))


def _clamped(x: Any, lo: Any, hi: Any) -> Any:
    # maximum/minimum propagate NaN as torch.clamp does; hi wins when lo > hi, as in torch
    if lo is not None:
        x = ik.maximum(x, lo)
    if hi is not None:
        x = ik.minimum(x, hi)
    return x


@translates(aten.clamp)
def _clamp(out: Out, x: Any, min: Any = None, max: Any = None) -> Any:  # noqa: A002
    return _clamped(_to(x, out.dtype), _to(min, out.dtype), _to(max, out.dtype))


@translates(aten.clamp_min)
def _clamp_min(out: Out, x: Any, lo: Any) -> Any:
    return _clamped(_to(x, out.dtype), _to(lo, out.dtype), None)


@translates(aten.clamp_max)
def _clamp_max(out: Out, x: Any, hi: Any) -> Any:
    return _clamped(_to(x, out.dtype), None, _to(hi, out.dtype))


@translates(aten.hardtanh)
def _hardtanh(out: Out, x: Any, min_val: float = -1.0, max_val: float = 1.0) -> Any:
    return _clamped(x, min_val, max_val)


@translates(aten.leaky_relu)
def _leaky_relu(out: Out, x: Any, negative_slope: float = 0.01) -> Any:
    return ik.where(x > 0, x, x * negative_slope)


def _check_gelu(node: fx.Node) -> str | None:
    approximate = node.kwargs.get("approximate", "none")
    return None if approximate in ("none", "tanh") else f"approximate={approximate!r}"


@translates(aten.gelu, check=_check_gelu)
def _gelu(out: Out, x: Any, approximate: str = "none") -> Any:
    if approximate == "tanh":
        inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)
        return 0.5 * x * (1 + ik.tanh(inner))
    return 0.5 * x * (1 + ik.erf(x * (1 / math.sqrt(2))))


@translates(aten.softplus)
def _softplus(out: Out, x: Any, beta: float = 1, threshold: float = 20) -> Any:
    scaled = x * beta if beta != 1 else x
    smooth = ik.softplus(scaled) / beta if beta != 1 else ik.softplus(scaled)
    return ik.where(scaled > threshold, x, smooth)  # torch's threshold: linear above it


@translates(aten.elu)
def _elu(out: Out, x: Any, alpha: float = 1, scale: float = 1, input_scale: float = 1) -> Any:
    return ik.where(x > 0, x * scale, ik.expm1(x * input_scale) * (alpha * scale))


@translates(aten.silu)
def _silu(out: Out, x: Any) -> Any:
    return x * ik.sigmoid(x)


@translates(aten._softmax, aten.softmax)
def _softmax(out: Out, x: Any, dim: int, half_to_float_or_dtype: Any = None) -> Any:
    return ik.softmax(_to(x, out.dtype), axis=dim)


@translates(aten._log_softmax, aten.log_softmax)
def _log_softmax(out: Out, x: Any, dim: int, half_to_float_or_dtype: Any = None) -> Any:
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
    def translate(out: Out, x: Any, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Any:
        x = _to(x, out.dtype) if cast_input else x
        axes = _axes(dim, x.ndim)
        if axes == ():
            return x
        return fn(x, axis=axes, keepdims=bool(keepdim))
    return translate


translates(aten.sum)(_reduction(ik.sum))
translates(aten.mean)(_reduction(ik.mean))
translates(aten.amax)(_reduction(ik.max, cast_input=False))
translates(aten.amin)(_reduction(ik.min, cast_input=False))
translates(aten.any)(_reduction(ik.any, cast_input=False))
translates(aten.all)(_reduction(ik.all, cast_input=False))


@translates(aten.prod)
def _prod(out: Out, x: Any, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Any:
    x = _to(x, out.dtype)
    axes = _axes(dim, x.ndim)
    return x if axes == () else ik.prod(x, axis=axes, keepdims=bool(keepdim))


def _with_indices(values_fn: Callable[..., Any], index_fn: Callable[..., Any]) -> Callable[..., Any]:
    """max/min: over everything (one value), or along dim (values, indices)."""
    def translate(out: Out, x: Any, dim: Any = None, keepdim: bool = False) -> Any:
        if dim is None:
            return values_fn(x)
        if x.ndim == 0:
            return x, ik.constant(0, "int64")
        return values_fn(x, axis=dim, keepdims=keepdim), index_fn(x, axis=dim, keepdims=keepdim)
    return translate


translates(aten.max)(_with_indices(ik.max, ik.argmax))
translates(aten.min)(_with_indices(ik.min, ik.argmin))
translates(aten.max.other)(_elementwise(ik.maximum))
translates(aten.min.other)(_elementwise(ik.minimum))


def _arg_reduction(fn: Callable[..., Any]) -> Callable[..., Any]:
    def translate(out: Out, x: Any, dim: int | None = None, keepdim: bool = False) -> Any:
        if x.ndim == 0:
            return ik.constant(0, "int64")
        if dim is None and keepdim:  # torch keeps every axis at size 1
            return ik.reshape(fn(x), (1,) * x.ndim)
        return fn(x, axis=dim, keepdims=keepdim)
    return translate


translates(aten.argmax)(_arg_reduction(ik.argmax))
translates(aten.argmin)(_arg_reduction(ik.argmin))


def _correction(correction: Any, unbiased: Any) -> int:
    if correction is not None:
        return int(correction)
    return 1 if unbiased is None or unbiased else 0


@translates(aten.var)
def _var(out: Out, x: Any, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
         correction: Any = None) -> Any:
    return ik.var(x, axis=_axes(dim, x.ndim), keepdims=keepdim, ddof=_correction(correction, unbiased))


@translates(aten.std)
def _std(out: Out, x: Any, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
         correction: Any = None) -> Any:
    return ik.std(x, axis=_axes(dim, x.ndim), keepdims=keepdim, ddof=_correction(correction, unbiased))


@translates(aten.var_mean)
def _var_mean(out: Out, x: Any, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
              correction: Any = None) -> Any:
    axes = _axes(dim, x.ndim)
    return (ik.var(x, axis=axes, keepdims=keepdim, ddof=_correction(correction, unbiased)),
            ik.mean(x, axis=axes, keepdims=keepdim))


@translates(aten.logsumexp)
def _logsumexp(out: Out, x: Any, dim: Any = None, keepdim: bool = False) -> Any:
    return ik.logsumexp(_to(x, out.dtype), axis=_axes(dim, x.ndim), keepdims=keepdim)


@translates(aten.native_layer_norm)
def _layer_norm(out: Out, x: Any, normalized_shape: Sequence[int], weight: Any, bias: Any, eps: float) -> Any:
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

@translates(aten.mm, aten.bmm, aten.matmul)
def _matmul(out: Out, a: Any, b: Any) -> Any:
    return ik.matmul(_to(a, out.dtype), _to(b, out.dtype))


@translates(aten.addmm, aten.baddbmm)
def _addmm(out: Out, bias: Any, a: Any, b: Any, *, beta: Any = 1, alpha: Any = 1) -> Any:
    product = ik.matmul(_to(a, out.dtype), _to(b, out.dtype))
    if alpha != 1:
        product = product * alpha
    if beta == 0:  # torch ignores bias (even NaN in it) when beta is 0
        return product
    return product + (_to(bias, out.dtype) if beta == 1 else _to(bias, out.dtype) * beta)


@translates(aten.mv, aten.dot)
def _dot(out: Out, a: Any, b: Any) -> Any:
    return ik.dot(_to(a, out.dtype), _to(b, out.dtype))


@translates(aten.linear)
def _linear(out: Out, x: Any, weight: Any, bias: Any = None) -> Any:
    y = ik.matmul(x, ik.transpose(weight))
    return y if bias is None else y + bias


# -- shapes ----------------------------------------------------------------

def _identity(out: Out, x: Any, *args: Any, **kwargs: Any) -> Any:
    return x


translates(aten.alias, aten.detach, aten.clone, aten.lift_fresh_copy, aten.contiguous)(_identity)


@translates(aten.view, aten._unsafe_view, aten.reshape)
def _view(out: Out, x: Any, shape: Sequence[int]) -> Any:
    return ik.reshape(x, tuple(shape))


@translates(aten.expand)
def _expand(out: Out, x: Any, sizes: Sequence[int], *, implicit: bool = False) -> Any:
    lead = len(sizes) - x.ndim
    target = [x.static_shape[k - lead] if s == -1 else s for k, s in enumerate(sizes)]
    return ik.broadcast_to(x, tuple(target))


@translates(aten.permute)
def _permute(out: Out, x: Any, dims: Sequence[int]) -> Any:
    return ik.transpose(x, tuple(dims))


@translates(aten.t)
def _t(out: Out, x: Any) -> Any:
    return ik.transpose(x) if x.ndim == 2 else x


@translates(aten.transpose)
def _transpose(out: Out, x: Any, dim0: int, dim1: int) -> Any:
    if x.ndim < 2:
        return x
    axes = list(range(x.ndim))
    axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
    return ik.transpose(x, axes)


@translates(aten.unsqueeze)
def _unsqueeze(out: Out, x: Any, dim: int) -> Any:
    return ik.expand_dims(x, dim)


@translates(aten.squeeze)
def _squeeze(out: Out, x: Any, dim: Any = None) -> Any:
    if x.ndim == 0:
        return x
    dims = range(x.ndim) if dim is None else ((dim,) if isinstance(dim, int) else dim)
    # torch leaves a named axis alone when its size is not 1 (numpy would raise)
    axes = tuple(sorted({d % x.ndim for d in dims if x.static_shape[d % x.ndim] == 1}))
    return ik.squeeze(x, axes) if axes else x


@translates(aten.cat)
def _cat(out: Out, tensors: Sequence[Any], dim: int = 0) -> Any:
    return ik.concatenate([_to(t, out.dtype) for t in tensors], axis=dim)


@translates(aten.split_with_sizes, aten.split)
def _split(out: Out, x: Any, sizes: Any, dim: int = 0) -> list:
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


@translates(aten.slice)
def _slice(out: Out, x: Any, dim: int = 0, start: Any = None, end: Any = None, step: int = 1) -> Any:
    return x[_along(dim, x.ndim, slice(start, end, step))]


@translates(aten.select)
def _select(out: Out, x: Any, dim: int, index: int) -> Any:
    return x[_along(dim, x.ndim, index)]


@translates(aten.slice_scatter)
def _slice_scatter(out: Out, x: Any, src: Any, dim: int = 0, start: Any = None, end: Any = None,
                   step: int = 1) -> Any:
    return ik.set_subtensor(x[_along(dim, x.ndim, slice(start, end, step))], src)


@translates(aten.select_scatter)
def _select_scatter(out: Out, x: Any, src: Any, dim: int, index: int) -> Any:
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


@translates(aten.index, check=_check_integer_indices)
def _index(out: Out, x: Any, indices: Sequence[Any]) -> Any:
    return x[_index_key(indices)]


@translates(aten.index_put, check=_check_integer_indices)
def _index_put(out: Out, x: Any, indices: Sequence[Any], values: Any, accumulate: bool = False) -> Any:
    window = x[_index_key(indices)]
    return ik.inc_subtensor(window, values) if accumulate else ik.set_subtensor(window, values)


@translates(aten.index_select)
def _index_select(out: Out, x: Any, dim: int, index: Any) -> Any:
    if x.ndim == 0:
        return x
    return x[_along(dim, x.ndim, index)]


@translates(aten.embedding)
def _embedding(out: Out, weight: Any, indices: Any, *args: Any) -> Any:
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


@translates(aten.gather)
def _gather(out: Out, x: Any, dim: int, index: Any, *, sparse_grad: bool = False) -> Any:
    if x.ndim == 0:
        return x
    return x[_gather_key(x, dim, index)]


def _scatter_source(src: Any, index: Any) -> Any:
    """torch scatters only src's leading block of index's shape."""
    if not is_var(src) or src.ndim == 0:
        return src
    if tuple(src.static_shape) == tuple(index.static_shape):
        return src
    return src[tuple(slice(0, n) for n in index.static_shape)]


@translates(aten.scatter_add)
def _scatter_add(out: Out, x: Any, dim: int, index: Any, src: Any) -> Any:
    return ik.inc_subtensor(x[_gather_key(x, dim, index)], _scatter_source(src, index))


@translates(aten.scatter, check=_check_scatter)
def _scatter(out: Out, x: Any, dim: int, index: Any, src: Any) -> Any:
    return ik.set_subtensor(x[_gather_key(x, dim, index)], _scatter_source(src, index))


@translates(operator.getitem)
def _getitem(out: Out, sequence: Any, index: int) -> Any:
    return sequence[index]


# -- creation and casts ----------------------------------------------------------------

def _check_cpu(node: fx.Node) -> str | None:
    device = node.kwargs.get("device")
    if device is not None and torch.device(device).type != "cpu":
        return f"creates a tensor on {device}"
    return None


@translates(aten.full, check=_check_cpu)
def _full(out: Out, size: Sequence[int], fill_value: Any, **kwargs: Any) -> Any:
    return ik.full(tuple(size), fill_value, out.dtype)


@translates(aten.scalar_tensor, check=_check_cpu)
def _scalar_tensor(out: Out, value: Any, **kwargs: Any) -> Any:
    return ik.constant(value, out.dtype)


@translates(aten.full_like, check=_check_cpu)
def _full_like(out: Out, x: Any, fill_value: Any, **kwargs: Any) -> Any:
    return ik.full(tuple(x.static_shape), fill_value, out.dtype)


@translates(aten.zeros_like, aten.empty_like, check=_check_cpu)
def _zeros_like(out: Out, x: Any, **kwargs: Any) -> Any:
    # empty_like's values are unspecified; zeros are one valid choice
    return ik.full(tuple(x.static_shape), 0, out.dtype)


@translates(aten.ones_like, check=_check_cpu)
def _ones_like(out: Out, x: Any, **kwargs: Any) -> Any:
    return ik.full(tuple(x.static_shape), 1, out.dtype)


@translates(aten.zeros, aten.empty, check=_check_cpu)
def _zeros(out: Out, size: Sequence[int], **kwargs: Any) -> Any:
    return ik.full(tuple(size), 0, out.dtype)


@translates(aten.ones, check=_check_cpu)
def _ones(out: Out, size: Sequence[int], **kwargs: Any) -> Any:
    return ik.full(tuple(size), 1, out.dtype)


@translates(aten.arange, check=_check_cpu)
def _arange(out: Out, *bounds: Any, **kwargs: Any) -> Any:
    return ik.arange(*bounds, dtype=out.dtype)


@translates(prims.iota, check=_check_cpu)
def _iota(out: Out, length: int, *, start: int, step: int, **kwargs: Any) -> Any:
    return ik.arange(start, start + length * step, step, dtype=out.dtype)


@translates(aten._to_copy, aten.to, check=_check_cpu)
def _to_copy(out: Out, x: Any, *args: Any, **kwargs: Any) -> Any:
    return _to(x, out.dtype)


@translates(prims.convert_element_type)
def _convert(out: Out, x: Any, dtype: Any) -> Any:
    return _to(x, out.dtype)


@translates(aten.copy)
def _copy(out: Out, destination: Any, source: Any, non_blocking: bool = False) -> Any:
    return ik.broadcast_to(_to(source, out.dtype), tuple(destination.static_shape))


@translates(aten.fill)
def _fill(out: Out, x: Any, value: Any) -> Any:
    return ik.full(tuple(x.static_shape), value if not is_var(value) else _to(value, out.dtype), out.dtype)


# Ops that only rearrange or relabel: a region made of nothing else gains nothing from irkit.
LAYOUT_OPS = {aten.alias, aten.detach, aten.clone, aten.lift_fresh_copy, aten.contiguous, aten.view,
               aten._unsafe_view, aten.reshape, aten.expand, aten.permute, aten.t, aten.transpose,
               aten.unsqueeze, aten.squeeze, aten.slice, aten.select, aten._to_copy, aten.to,
               prims.convert_element_type, operator.getitem}


def packet(target: Any) -> Any:
    return getattr(target, "overloadpacket", target)


def translation_of(node: fx.Node) -> _Translation | None:
    return _TRANSLATIONS.get(node.target) or _TRANSLATIONS.get(packet(node.target))


def op_name(node: fx.Node) -> str:
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        return f"{target.namespace}.{target._schema.name.split('::')[-1]}" + \
            (f".{target._overloadname}" if target._overloadname != "default" else "")
    return getattr(target, "__name__", str(target))
