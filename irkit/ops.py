"""The operations of the Python API (`ik.exp`, `ik.sum`, `x[i]`, ...).

Each function checks and normalises its arguments the way numpy does, then
makes one tensor-level op (or a few), which infers its own type. Python
scalars are weak (NEP 50): they take the dtype of the tensor they meet.
"""

from __future__ import annotations

import builtins
from typing import Any, Sequence

import numpy as np

from irkit import graph
from irkit.dialects import ik as I
from irkit.dialects.ik.base import normalize_axes, normalize_axis
from irkit.dialects.ik.index import DYN as SPEC_DYN
from irkit.dialects.ik.index import format_spec
from irkit.dialects.ik.shape import DYN, INFER
from irkit.dtypes import as_dtype, weak_scalar_dtype
from irkit.errors import DTypeError, IndexOutOfBoundsError, ShapeError
from irkit.shapes import StaticDims
from irkit.variable import Variable

_PY_SCALARS = (bool, int, float)


# ---------------------------------------------------------------------------
# making ops
# ---------------------------------------------------------------------------

def _make(cls, operands: Sequence[Variable], dtype=None, **params):
    op = cls.make([v.value for v in operands], dtype=dtype, loc=graph.current_location(), **params)
    graph.place(op)
    return op


def _emit(cls, operands: Sequence[Variable], dtype=None, **params) -> Variable:
    return Variable(_make(cls, operands, dtype=dtype, **params).results[0])


def _is_py_scalar(x: Any) -> bool:
    return isinstance(x, _PY_SCALARS) and not isinstance(x, np.generic)


def constant(value: Any, dtype: Any = None, name: str | None = None) -> Variable:
    """A constant tensor. A Python float becomes `config.floatX`, an int int64;
    arrays keep their dtype unless `dtype` is given."""
    if isinstance(value, Variable):
        return value if dtype is None else cast(value, dtype)
    if getattr(value, "__irkit_defer__", False):  # a sparse matrix where a dense tensor is needed
        raise TypeError(f"a sparse matrix ({value!r}) cannot be used as a dense tensor here: ik.sparse "
                        "has dot, multiply (S * D), sum and the pattern-keeping ops; ik.sparse.dense(S) "
                        "makes it dense")
    if dtype is not None:
        dt = as_dtype(dtype)
    elif _is_py_scalar(value):
        dt = weak_scalar_dtype(value, None)
    else:
        arr = np.asarray(value)
        if arr.dtype == object:
            raise DTypeError(f"cannot make a constant from {type(value).__name__}")
        dt = as_dtype(arr.dtype, "dtype of constant")
    arr = np.asarray(value).astype(dt, copy=False) if not _is_py_scalar(value) else np.asarray(value, dtype=dt)
    op = I.ConstantOp.from_array(arr)
    graph.place_located(op)
    return Variable(op.result, name)


def as_variable(x: Any, partner: np.dtype | None = None) -> Variable:
    """A Variable for x; a Python scalar takes `partner`'s dtype where numpy 2 would."""
    if isinstance(x, Variable):
        return x
    if _is_py_scalar(x):
        return constant(x, weak_scalar_dtype(x, partner))
    return constant(x)


def _lift_pair(a: Any, b: Any) -> tuple[Variable, Variable]:
    da = a.dtype if isinstance(a, Variable) else (None if _is_py_scalar(a) else np.asarray(a).dtype)
    db = b.dtype if isinstance(b, Variable) else (None if _is_py_scalar(b) else np.asarray(b).dtype)
    return as_variable(a, db), as_variable(b, da)


def _lift_all(*xs: Any) -> list[Variable]:
    strong = [x.dtype if isinstance(x, Variable) else np.asarray(x).dtype
              for x in xs if not _is_py_scalar(x)]
    partner = np.result_type(*strong) if strong else None
    return [as_variable(x, partner) for x in xs]


def _static_int(v: Variable) -> int | None:
    got = StaticDims().value(v.value)
    return got if isinstance(got, int) else None


def _index_scalar(x: Any, what: str) -> Variable | int:
    """A size or bound: a Python int, or a 0-d integer Variable."""
    if isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)):
        return int(x)
    if isinstance(x, Variable):
        if x.ndim != 0 or x.dtype.kind not in "iu":
            raise TypeError(f"{what} must be an integer scalar, got a {x.dtype.name} variable of rank {x.ndim}")
        known = _static_int(x)
        return known if known is not None else (x if x.dtype == np.int64 else cast(x, "int64"))
    raise TypeError(f"{what} must be an int or an integer scalar variable, not {type(x).__name__}")


def _shape_args(shape: Any, what: str = "shape") -> tuple[tuple[int, ...], list[Variable]]:
    """(static sizes with DYN for symbolic ones, the symbolic ones) from a user's shape."""
    if isinstance(shape, (int, np.integer, Variable)):
        shape = (shape,)
    static, dyn = [], []
    for k, s in enumerate(shape):
        s = _index_scalar(s, f"{what}[{k}]")
        if isinstance(s, int):
            static.append(s)
        else:
            static.append(DYN)
            dyn.append(s)
    return tuple(static), dyn


# ---------------------------------------------------------------------------
# elementwise
# ---------------------------------------------------------------------------

def _unary(cls):
    def fn(x: Any) -> Variable:
        return _emit(cls, [as_variable(x)])
    fn.__name__ = cls.name.split(".")[1]
    fn.__doc__ = cls.__doc__
    return fn


def _binary(cls):
    def fn(a: Any, b: Any) -> Variable:
        return _emit(cls, _lift_pair(a, b))
    fn.__name__ = cls.name.split(".")[1]
    fn.__doc__ = cls.__doc__
    return fn


exp = _unary(I.ExpOp)
exp2 = _unary(I.Exp2Op)
expm1 = _unary(I.Expm1Op)
log = _unary(I.LogOp)
log2 = _unary(I.Log2Op)
log10 = _unary(I.Log10Op)
log1p = _unary(I.Log1pOp)
sqrt = _unary(I.SqrtOp)
sin = _unary(I.SinOp)
cos = _unary(I.CosOp)
tan = _unary(I.TanOp)
sinh = _unary(I.SinhOp)
cosh = _unary(I.CoshOp)
tanh = _unary(I.TanhOp)
arcsin = _unary(I.ArcsinOp)
arccos = _unary(I.ArccosOp)
arctan = _unary(I.ArctanOp)
arcsinh = _unary(I.ArcsinhOp)
arccosh = _unary(I.ArccoshOp)
arctanh = _unary(I.ArctanhOp)
erf = _unary(I.ErfOp)
neg = negative = _unary(I.NegOp)
abs = absolute = _unary(I.AbsOp)
sign = _unary(I.SignOp)
floor = _unary(I.FloorOp)
ceil = _unary(I.CeilOp)
round = _unary(I.RoundOp)
trunc = _unary(I.TruncOp)
sigmoid = _unary(I.SigmoidOp)
softplus = _unary(I.SoftplusOp)
relu = _unary(I.ReluOp)
square = _unary(I.SquareOp)
invert = bitwise_not = logical_not = _unary(I.InvertOp)
isnan = _unary(I.IsnanOp)
isinf = _unary(I.IsinfOp)
isfinite = _unary(I.IsfiniteOp)

add = _binary(I.AddOp)
sub = subtract = _binary(I.SubOp)
mul = multiply = _binary(I.MulOp)
true_divide = divide = _binary(I.TrueDivOp)
floor_divide = _binary(I.FloorDivOp)
mod = remainder = _binary(I.ModOp)
pow = power = _binary(I.PowOp)
maximum = _binary(I.MaximumOp)
minimum = _binary(I.MinimumOp)
arctan2 = _binary(I.Arctan2Op)
bitwise_and = logical_and = _binary(I.AndOp)
bitwise_or = logical_or = _binary(I.OrOp)
bitwise_xor = logical_xor = _binary(I.XorOp)

# x OP v for a Python int v outside the range of x's integer dtype: numpy 2 compares exactly
# instead of raising, so the answer is known: (answer when v > max, answer when v < min).
_OUT_OF_RANGE = {"eq": (False, False), "ne": (True, True), "lt": (True, False), "le": (True, False),
                 "gt": (False, True), "ge": (False, True)}
_MIRROR = {"eq": "eq", "ne": "ne", "lt": "gt", "le": "ge", "gt": "lt", "ge": "le"}


def _comparison(cls):
    opname = cls.name.split(".")[1]

    def fn(a: Any, b: Any) -> Variable:
        for x, v, op in ((a, b, opname), (b, a, _MIRROR[opname])):  # x op v
            if isinstance(x, Variable) and x.dtype.kind in "iu" and _is_py_scalar(v) \
                    and isinstance(v, int) and not isinstance(v, bool):
                info = np.iinfo(x.dtype)
                if not info.min <= v <= info.max:
                    above, below = _OUT_OF_RANGE[op]
                    return full_like(x, above if v > info.max else below, "bool")
        return _emit(cls, _lift_pair(a, b))
    fn.__name__ = opname
    fn.__doc__ = cls.__doc__
    return fn


eq = equal = _comparison(I.EqOp)
ne = not_equal = _comparison(I.NeOp)
lt = less = _comparison(I.LtOp)
le = less_equal = _comparison(I.LeOp)
gt = greater = _comparison(I.GtOp)
ge = greater_equal = _comparison(I.GeOp)


def where(cond: Any, a: Any, b: Any) -> Variable:
    """cond ? a : b elementwise (both branches are computed)."""
    c = as_variable(cond)
    if c.dtype.kind != "b":
        c = cast(c, "bool")
    a, b = _lift_pair(a, b)
    return _emit(I.WhereOp, [c, a, b])


def clip(x: Any, lo: Any = None, hi: Any = None) -> Variable:
    """numpy's clip: min(max(x, lo), hi); either bound may be None."""
    x = as_variable(x)
    if lo is None and hi is None:
        raise ValueError("clip needs at least one of lo and hi")
    if lo is None:
        return minimum(x, hi)
    if hi is None:
        return maximum(x, lo)
    x, lo, hi = _lift_all(x, lo, hi)
    return _emit(I.ClipOp, [x, lo, hi])


def cast(x: Any, dtype: Any) -> Variable:
    """x.astype(dtype)."""
    x = as_variable(x)
    dt = as_dtype(dtype)
    if dt == x.dtype:
        return x
    return _emit(I.CastOp, [x], dtype=dt)


# ---------------------------------------------------------------------------
# shapes
# ---------------------------------------------------------------------------

def dim(x: Any, axis: int) -> Variable:
    """x.shape[axis] as a symbolic int64 scalar (a constant when static)."""
    x = as_variable(x)
    axis = normalize_axis(axis, x.ndim)
    s = x.static_shape[axis]
    if s is not None:
        return constant(s, "int64")
    return _emit(I.DimOp, [x], axis=axis)


def prod_dims(dims: Sequence[Any]) -> Variable:
    out = constant(1, "int64")
    for d in dims:
        out = out * d
    return out


def reshape(x: Any, shape: Any) -> Variable:
    """numpy's reshape; one size may be -1; sizes may be symbolic."""
    x = as_variable(x)
    static, dyn = _shape_args(shape)
    if static.count(INFER) > 1:
        raise ShapeError("reshape: can only specify one unknown dimension (-1)")
    if tuple(x.static_shape) == static and not dyn:
        return x
    return _emit(I.ReshapeOp, [x, *dyn], shape=static)


def flatten(x: Any, ndim: int = 1) -> Variable:
    """Keep the first ndim-1 axes and flatten the rest (ndim=1: a 1-D array)."""
    x = as_variable(x)
    if not 1 <= ndim <= builtins.max(x.ndim, 1):
        raise ShapeError(f"flatten: ndim={ndim} must be between 1 and {x.ndim}")
    shape = x.shape
    # the flattened size explicitly, not -1: inferring next to a size-0 dim is an error in numpy
    return reshape(x, list(shape[:ndim - 1]) + [prod_dims(shape[ndim - 1:])])


def transpose(x: Any, axes: Sequence[int] | None = None) -> Variable:
    """Permute the axes (reverse them when axes is None)."""
    x = as_variable(x)
    perm = tuple(range(x.ndim))[::-1] if axes is None else tuple(normalize_axis(a, x.ndim) for a in axes)
    if sorted(perm) != list(range(x.ndim)):
        raise ShapeError(f"transpose: axes {tuple(axes)} don't match an array of rank {x.ndim}")
    if perm == tuple(range(x.ndim)):
        return x
    return _emit(I.TransposeOp, [x], perm=perm)


def expand_dims(x: Any, axis: int | Sequence[int]) -> Variable:
    """Insert axes of size 1 (positions in the result, as numpy)."""
    x = as_variable(x)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    rank = x.ndim + len(axes)
    norm = sorted(normalize_axis(a, rank) for a in axes)
    if len(set(norm)) != len(norm):
        raise ShapeError(f"expand_dims: repeated axis in {axes}")
    return _emit(I.ExpandDimsOp, [x], axes=tuple(norm))


def squeeze(x: Any, axis: int | Sequence[int] | None = None) -> Variable:
    """Remove axes of size 1; with axis=None, those statically known to be 1."""
    x = as_variable(x)
    if axis is None:
        axes = tuple(k for k, s in enumerate(x.static_shape) if s == 1)
    else:
        axes = normalize_axes(axis, x.ndim)
        for a in axes:
            s = x.static_shape[a]
            if s is not None and s != 1:
                raise ShapeError(f"squeeze: cannot select an axis to squeeze out which has size "
                                 f"not equal to one (axis {a} has size {s})")
    if not axes:
        return x
    return _emit(I.SqueezeOp, [x], axes=axes)


def broadcast_to(x: Any, shape: Any) -> Variable:
    """numpy's broadcast_to (a view in numpy, a fused read in irkit)."""
    x = as_variable(x)
    static, dyn = _shape_args(shape)
    return _emit(I.BroadcastToOp, [x, *dyn], shape=static)


def concatenate(xs: Sequence[Any], axis: int = 0) -> Variable:
    """Join arrays along an existing axis."""
    xs = _lift_all(*xs) if xs else []
    if not xs:
        raise ValueError("need at least one array to concatenate")
    if len(xs) == 1:
        return xs[0]
    axis = normalize_axis(axis, xs[0].ndim)
    return _emit(I.ConcatenateOp, xs, axis=axis)


def stack(xs: Sequence[Any], axis: int = 0) -> Variable:
    """Join arrays along a new axis."""
    xs = _lift_all(*xs) if xs else []
    if not xs:
        raise ValueError("need at least one array to stack")
    axis = normalize_axis(axis, xs[0].ndim + 1)
    return concatenate([expand_dims(x, axis) for x in xs], axis)


# ---------------------------------------------------------------------------
# reductions
# ---------------------------------------------------------------------------

def _reduce(cls, x: Any, axis, keepdims: bool) -> Variable:
    x = as_variable(x)
    axes = normalize_axes(axis, x.ndim)
    return _emit(cls, [x], axes=axes, keepdims=bool(keepdims))


def sum(x: Any, axis=None, keepdims: bool = False) -> Variable:  # noqa: A001
    """Sum over axes (all when None)."""
    return _reduce(I.SumOp, x, axis, keepdims)


def prod(x: Any, axis=None, keepdims: bool = False) -> Variable:
    """Product over axes."""
    return _reduce(I.ProdOp, x, axis, keepdims)


def max(x: Any, axis=None, keepdims: bool = False) -> Variable:  # noqa: A001
    """Largest element over axes; NaN propagates; an error for no elements."""
    return _reduce(I.MaxOp, x, axis, keepdims)


def min(x: Any, axis=None, keepdims: bool = False) -> Variable:  # noqa: A001
    """Smallest element over axes."""
    return _reduce(I.MinOp, x, axis, keepdims)


def any(x: Any, axis=None, keepdims: bool = False) -> Variable:  # noqa: A001
    """Whether any element is nonzero."""
    return _reduce(I.AnyOp, x, axis, keepdims)


def all(x: Any, axis=None, keepdims: bool = False) -> Variable:  # noqa: A001
    """Whether every element is nonzero."""
    return _reduce(I.AllOp, x, axis, keepdims)


def _arg(cls, x: Any, axis, keepdims: bool) -> Variable:
    x = as_variable(x)
    if axis is not None and not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{cls.name}: axis must be an int or None, not {type(axis).__name__}")
    return _reduce(cls, x, axis, keepdims)


def argmax(x: Any, axis: int | None = None, keepdims: bool = False) -> Variable:
    """Index of the first largest element (over the flattened array when axis is None)."""
    return _arg(I.ArgmaxOp, x, axis, keepdims)


def argmin(x: Any, axis: int | None = None, keepdims: bool = False) -> Variable:
    """Index of the first smallest element."""
    return _arg(I.ArgminOp, x, axis, keepdims)


def _count(x: Variable, axes: tuple[int, ...]) -> Variable:
    return prod_dims([x.shape[a] for a in axes])


def _mean_dtype(x: Variable) -> np.dtype:
    return x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)


def mean(x: Any, axis=None, keepdims: bool = False) -> Variable:
    """Arithmetic mean over axes (integers sum in float64, as numpy: no overflow)."""
    x = as_variable(x)
    axes = normalize_axes(axis, x.ndim)
    dt = _mean_dtype(x)
    total = sum(cast(x, dt), axes, keepdims)
    return total / cast(_count(x, axes), dt)


def var(x: Any, axis=None, keepdims: bool = False, ddof: int = 0) -> Variable:
    """Variance over axes: mean((x - mean(x))**2) with max(n - ddof, 0) in the denominator."""
    x = as_variable(x)
    axes = normalize_axes(axis, x.ndim)
    dt = _mean_dtype(x)
    xc = cast(x, dt)
    d = xc - mean(xc, axes, keepdims=True)
    n = maximum(_count(x, axes) - ddof, 0)  # numpy: ddof >= n divides by 0
    return sum(d * d, axes, keepdims) / cast(n, dt)


def std(x: Any, axis=None, keepdims: bool = False, ddof: int = 0) -> Variable:
    """Standard deviation: sqrt(var)."""
    return sqrt(var(x, axis, keepdims, ddof))


# ---------------------------------------------------------------------------
# contractions
# ---------------------------------------------------------------------------

def gemm(c: Any, a: Any, b: Any, alpha: Any = 1.0, beta: Any = 1.0) -> Variable:
    """BLAS's gemm: beta * c + alpha * (a @ b) for matrices of one float dtype (c of the
    product's shape; alpha, beta scalars). beta = 0 means c is not read. irkit forms it by
    itself from `c + a @ b`, `c - lr * (a @ b)` and the like (the gemm-epilogue pass)."""
    c, a, b = _lift_all(c, a, b)
    alpha, beta = (x if isinstance(x, Variable) else constant(x, c.dtype) for x in (alpha, beta))
    return _emit(I.GemmOp, [c, a, b, alpha, beta])


def matmul(a: Any, b: Any) -> Variable:
    """numpy's matmul: 1-D operands get a unit axis added and removed; batch dims broadcast."""
    a, b = _lift_pair(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: input operand {0 if a.ndim == 0 else 1} does not have enough "
                         "dimensions (a scalar is not allowed; use *)")
    a2 = expand_dims(a, 0) if a.ndim == 1 else a
    b2 = expand_dims(b, -1) if b.ndim == 1 else b
    out = _emit(I.MatmulOp, [a2, b2])
    drop = []
    if a.ndim == 1:
        drop.append(out.ndim - 2)
    if b.ndim == 1:
        drop.append(out.ndim - 1)
    return _emit(I.SqueezeOp, [out], axes=tuple(drop)) if drop else out


def dot(a: Any, b: Any) -> Variable:
    """numpy's dot: a product for scalars, matmul for 1-D/2-D, sum over a's last and b's
    second-to-last axis for N-D."""
    a, b = _lift_pair(a, b)
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    if b.ndim <= 2:
        return matmul(a, b)
    # N-D: (..., K) . (..., K, N) -> a.shape[:-1] + b.shape[:-2] + b.shape[-1:]
    bt = transpose(b, [b.ndim - 2] + [k for k in range(b.ndim) if k != b.ndim - 2])
    k = a.shape[-1]
    out = matmul(reshape(a, (-1, k)), reshape(bt, (k, -1)))
    return reshape(out, list(a.shape[:-1]) + list(b.shape[:-2]) + [b.shape[-1]])


def outer(a: Any, b: Any) -> Variable:
    """numpy's outer: both inputs flattened."""
    a, b = _lift_pair(a, b)
    return expand_dims(flatten(a), 1) * expand_dims(flatten(b), 0)


# ---------------------------------------------------------------------------
# creation
# ---------------------------------------------------------------------------

def full(shape: Any, fill_value: Any, dtype: Any = None) -> Variable:
    """An array of `shape` filled with `fill_value` (a scalar, maybe symbolic)."""
    if isinstance(fill_value, Variable):
        v = fill_value
    else:
        v = constant(fill_value) if dtype is None else constant(fill_value, dtype)
    if v.ndim != 0:
        raise ShapeError(f"full: fill_value must be a scalar, got rank {v.ndim}")
    dt = as_dtype(dtype) if dtype is not None else v.dtype
    static, dyn = _shape_args(shape)
    for k, s in enumerate(static):
        if s < 0 and s != DYN:
            raise ValueError(f"negative dimensions are not allowed (dim {k} is {s})")
    return _emit(I.FillOp, [v, *dyn], dtype=dt, shape=static)


def zeros(shape: Any, dtype: Any = None) -> Variable:
    """An array of zeros (dtype defaults to config.floatX)."""
    return full(shape, 0, as_dtype(dtype))


def ones(shape: Any, dtype: Any = None) -> Variable:
    """An array of ones (dtype defaults to config.floatX)."""
    return full(shape, 1, as_dtype(dtype))


def full_like(x: Any, fill_value: Any, dtype: Any = None) -> Variable:
    x = as_variable(x)
    return full(x.shape, fill_value, x.dtype if dtype is None else dtype)


def zeros_like(x: Any, dtype: Any = None) -> Variable:
    return full_like(x, 0, dtype)


def ones_like(x: Any, dtype: Any = None) -> Variable:
    return full_like(x, 1, dtype)


def arange(start: Any, stop: Any = None, step: Any = 1, dtype: Any = None) -> Variable:
    """numpy's arange; symbolic bounds must be integers."""
    if stop is None:
        start, stop = 0, start
    args = [start, stop, step]
    symbolic = [a for a in args if isinstance(a, Variable)]
    if dtype is None:
        kinds = [np.asarray(a).dtype if not isinstance(a, Variable) else a.dtype for a in args]
        dt = np.result_type(*kinds)
        dt = as_dtype(np.float64 if dt.kind == "f" else (np.int64 if dt.kind in "iub" else dt))
    else:
        dt = as_dtype(dtype)
    if not symbolic:
        length = len(np.arange(start, stop, step))
        vals = [constant(a, dt if isinstance(a, float) or dt.kind == "f" else "int64") for a in args]
        return _emit(I.ArangeOp, vals, dtype=dt, length=length)
    if builtins.any(isinstance(a, Variable) and a.dtype.kind not in "iu" for a in args) or \
            builtins.any(isinstance(a, float) for a in args):
        raise TypeError("arange with symbolic bounds needs integer start, stop and step")
    vals = [cast(a, "int64") if isinstance(a, Variable) else constant(int(a), "int64") for a in args]
    if builtins.any(v.ndim != 0 for v in vals):
        raise ShapeError("arange's start, stop and step must be scalars")
    return _emit(I.ArangeOp, vals, dtype=dt, length=-1)


def eye(n: Any, m: Any = None, k: int = 0, dtype: Any = None) -> Variable:
    """An n x m array with ones on the k-th diagonal."""
    static, dyn = _shape_args((n, n if m is None else m))
    return _emit(I.EyeOp, dyn, dtype=as_dtype(dtype), shape=static, k=int(k))


identity = eye


# ---------------------------------------------------------------------------
# softmax family
# ---------------------------------------------------------------------------

def softmax(x: Any, axis: int = -1) -> Variable:
    """exp(x) / sum(exp(x)) along axis, computed without overflow."""
    x = as_variable(x)
    return _emit(I.SoftmaxOp, [x], axis=normalize_axis(axis, x.ndim))


def log_softmax(x: Any, axis: int = -1) -> Variable:
    """log(softmax(x)) along axis, computed stably."""
    x = as_variable(x)
    return _emit(I.LogSoftmaxOp, [x], axis=normalize_axis(axis, x.ndim))


def logsumexp(x: Any, axis=None, keepdims: bool = False) -> Variable:
    """log(sum(exp(x))) over axes, computed without overflow."""
    x = as_variable(x)
    return _emit(I.LogSumExpOp, [x], axes=normalize_axes(axis, x.ndim), keepdims=bool(keepdims))


# ---------------------------------------------------------------------------
# indexing
# ---------------------------------------------------------------------------

def _is_index_array(k: Any) -> bool:
    if isinstance(k, Variable):
        return k.ndim > 0 or k.dtype.kind == "b"
    if isinstance(k, (list, np.ndarray)):
        return True
    return False


def _expand_key(x: Variable, key: Any) -> list:
    """The key as a list with Ellipsis expanded (None entries kept)."""
    if not isinstance(key, tuple):
        key = (key,)
    consumed = 0
    for k in key:
        if k is None or k is Ellipsis:
            continue
        if _is_index_array(k):
            arr = k if isinstance(k, Variable) else np.asarray(k)
            consumed += arr.ndim if (arr.dtype.kind == "b") else 1
        else:
            consumed += 1
    if builtins.sum(1 for k in key if k is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if consumed > x.ndim:
        raise IndexError(f"too many indices for array: array is {x.ndim}-dimensional, "
                         f"but {consumed} were indexed")
    out = []
    for k in key:
        if k is Ellipsis:
            out.extend([slice(None)] * (x.ndim - consumed))
        else:
            out.append(k)
    if not builtins.any(k is Ellipsis for k in key):
        out.extend([slice(None)] * (x.ndim - consumed))
    return out


def _check_static_index(i: int, n: int | None, axis: int) -> None:
    if n is not None and not -n <= i < n:
        raise IndexOutOfBoundsError(f"index {i} is out of bounds for axis {axis} with size {n}")


def _fit_mask(x: Variable, mask: Variable, axis: int) -> Variable:
    """A boolean index whose shape must equal the dims of x it covers (numpy's IndexError):
    checked now where both sizes are static, at the call where one is dynamic. (A mask dim of
    static size 1 over a dynamic dim is not checked.)"""
    covered = x.static_shape[axis:axis + mask.ndim]
    for j, (n, m) in enumerate(zip(covered, mask.static_shape)):
        if n is not None and m is not None and n != m:
            raise IndexOutOfBoundsError(f"boolean index did not match indexed array along axis {axis + j}; "
                                        f"size of axis is {n} but size of corresponding boolean axis is {m}")
    if builtins.all(n is not None for n in covered) and covered == mask.static_shape:
        return mask
    return broadcast_to(mask, x.shape[axis:axis + mask.ndim])


def _spec_value(v: Any, dyn: list, what: str):
    if v is None:
        return None
    s = _index_scalar(v, what)
    if isinstance(s, int):
        return s
    dyn.append(s)
    return SPEC_DYN


def _plan(x: Variable, key: Any):
    """Split numpy indexing into: axes to insert (None), a basic slice, advanced arrays."""
    entries = _expand_key(x, key)
    new_axes = [p for p, k in enumerate(entries) if k is None]
    if new_axes:
        x = expand_dims(x, new_axes)
        entries = [slice(None) if k is None else k for k in entries]
    items = []  # per axis of x: ("slice", slice) | ("int", v) | ("array", Variable)
    for k in entries:
        if _is_index_array(k):
            axis = len(items)
            arr = k if isinstance(k, Variable) else constant(np.asarray(k) if np.asarray(k).size
                                                             else np.asarray(k, dtype=np.int64))
            if arr.dtype.kind == "b":
                if arr.ndim == 0:
                    raise IndexError("a 0-d boolean index is not supported")
                items.extend(("array", v) for v in nonzero(_fit_mask(x, arr, axis)))
            elif arr.dtype.kind in "iu":
                if not isinstance(k, Variable) and np.asarray(k).size:
                    values = np.asarray(k)
                    _check_static_index(int(values.min()), x.static_shape[axis], axis)
                    _check_static_index(int(values.max()), x.static_shape[axis], axis)
                items.append(("array", arr))
            else:
                raise IndexError(f"arrays used as indices must be of integer (or boolean) type, "
                                 f"not {arr.dtype.name}")
        elif isinstance(k, slice):
            items.append(("slice", k))
        elif isinstance(k, (int, np.integer, Variable)) and not isinstance(k, (bool, np.bool_)):
            items.append(("int", k))
        else:
            raise IndexError(f"only integers, slices (`:`), ellipsis (`...`), None and integer or "
                             f"boolean arrays are valid indices, not {type(k).__name__}")
    return x, new_axes, items


def _basic_spec(x: Variable, items, advanced: bool):
    """The slice spec for x; with advanced indexing, ints stay for the gather."""
    spec, dyn = [], []
    for axis, (kind, k) in enumerate(items):
        n = x.static_shape[axis]
        if kind == "slice":
            step = 1 if k.step is None else k.step
            if isinstance(step, Variable):
                raise TypeError("a slice step must be a Python int, not a symbolic value")
            step = int(step)
            if step == 0:
                raise ValueError("slice step cannot be zero")
            start = _spec_value(k.start, dyn, "slice start")
            stop = _spec_value(k.stop, dyn, "slice stop")
            spec.append(("slice", start, stop, step))
        elif kind == "int" and not advanced:
            v = _spec_value(k, dyn, "index")
            if isinstance(v, int):
                _check_static_index(v, n, axis)
            spec.append(("index", v))
        else:
            spec.append(("slice", None, None, 1))
    return spec, dyn


def _is_trivial(spec) -> bool:
    return builtins.all(e == ("slice", None, None, 1) for e in spec)


def _advanced(items) -> tuple[list[Variable], dict]:
    """The index arrays of advanced indexing (ints among them count as 0-d arrays, as in
    numpy) and where their broadcast dims go: in place when adjacent, else first."""
    positions = [a for a, (kind, _) in enumerate(items) if kind in ("array", "int")]
    arrays = []
    for kind, k in (items[a] for a in positions):
        if kind == "int":
            k = _index_scalar(k, "index")
            k = constant(k, "int64") if isinstance(k, int) else k
        arrays.append(k)
    adjacent = positions == list(range(positions[0], positions[0] + len(positions)))
    return arrays, {"axes": tuple(positions), "front": not adjacent}


def getitem(x: Any, key: Any) -> Variable:
    """numpy indexing: ints, slices (any step), None, ..., integer and boolean arrays."""
    x = as_variable(x)
    base = x
    x, new_axes, items = _plan(x, key)
    advanced = builtins.any(kind == "array" for kind, _ in items)
    spec, dyn = _basic_spec(x, items, advanced)
    out = x if _is_trivial(spec) else _emit(I.SliceOp, [x, *dyn], spec=format_spec(spec))
    if advanced:
        arrays, params = _advanced(items)
        out = _emit(I.GatherOp, [out, *arrays], **params)
    out._index_of = (base, key)
    return out


def nonzero(x: Any) -> tuple[Variable, ...]:
    """The indices of the nonzero elements, one int64 array per axis."""
    x = as_variable(x)
    op = _make(I.NonzeroOp, [x])
    return tuple(Variable(r) for r in op.results)


def _set_or_inc(sub: Variable, y: Any, mode: str, fname: str) -> Variable:
    origin = getattr(sub, "_index_of", None)
    if origin is None:
        raise TypeError(f"{fname}'s first argument must be an indexing of a variable "
                        f"(like x[i] or x[1:3, idx]), not {sub!r}")
    base, key = origin
    x, new_axes, items = _plan(base, key)
    advanced = builtins.any(kind == "array" for kind, _ in items)
    spec, dyn = _basic_spec(x, items, advanced)
    y = as_variable(y, x.dtype)
    if y.dtype != x.dtype:
        y = cast(y, x.dtype)
    if not advanced:
        out = _emit(I.SetSliceOp, [x, y, *dyn], spec=format_spec(spec), mode=mode)
    else:
        arrays, params = _advanced(items)
        params["mode"] = mode
        if _is_trivial(spec):
            out = _emit(I.ScatterOp, [x, y, *arrays], **params)
        else:  # x[basic][advanced] op= y: scatter into the slice, then put the slice back
            window = _emit(I.SliceOp, [x, *dyn], spec=format_spec(spec))
            window = _emit(I.ScatterOp, [window, y, *arrays], **params)
            out = _emit(I.SetSliceOp, [x, window, *dyn], spec=format_spec(spec), mode="set")
    if new_axes:
        out = _emit(I.SqueezeOp, [out], axes=tuple(new_axes))
    return out


def set_subtensor(sub: Variable, y: Any) -> Variable:
    """x with x[key] replaced by y, for sub = x[key] (repeated indices: the last wins)."""
    return _set_or_inc(sub, y, "set", "set_subtensor")


def inc_subtensor(sub: Variable, y: Any) -> Variable:
    """x with y added to x[key], for sub = x[key] (repeated indices all add, as np.add.at)."""
    return _set_or_inc(sub, y, "inc", "inc_subtensor")

