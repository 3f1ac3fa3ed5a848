"""Sparse matrices (`ik.sparse`): CSR and CSC variables fed with `scipy.sparse` matrices.

    S = ik.sparse.csr_matrix("S")                 # or csc_matrix; dtype defaults to floatX
    M = ik.matrix("M")
    y = ik.sparse.dot(S, M)                       # dense; also ik.sparse.dot(M, S), S @ M
    cost = (y ** 2).sum()
    gS, gM = ik.grad(cost, [S, M])                # gS: sparse, with S's pattern
    f = ik.function([S, M], [y, gS])
    f(scipy.sparse.random(5, 4, density=0.3, format="csr"), np.ones((4, 2)))

A sparse variable is a composite of dense variables (see dialects/ik/sparse.py): its
stored values `data`, its structure `indices`/`indptr` (int64) and the size of its
minor axis; CSC is the CSR of the transpose, so `S.T` costs nothing. Its operations:

- products: `dot(S, M)`, `dot(M, S)` (also `S @ M`, `array @ S`), with M a dense matrix or
  vector: native loop kernels over the stored values, never a densified product;
- zero-preserving elementwise functions, exact (f(0) = 0, so the pattern is the result's):
  neg, abs, sqrt, sin, tan, tanh, arcsin, arctan, sinh, arcsinh, arctanh, expm1, log1p,
  sign, floor, ceil, trunc, round, relu, square; and `S * c`, `S / c` for a scalar c;
- structured functions, which apply to the stored values only (Theano's `structured_*`;
  they differ from the dense function where f(0) != 0): structured_exp, structured_log,
  structured_sigmoid, structured_pow(S, p), structured_map(fn, S) for any elementwise fn;
- `multiply(S, D)` (and `S * D`): S times a dense matrix elementwise, which keeps S's
  pattern (D is read at the stored entries only; it broadcasts as in numpy);
- `csr_from_dense(x)` / `csc_from_dense(x)`: the pattern is the nonzero elements of x
  (NaN counts as nonzero), as `scipy.sparse.csr_matrix(x)` has it; `dense(S)` / `S.toarray()`;
- `coords(S)`: the row and column of each stored value;
- `sum(S, axis=None|0|1)`: a scalar or a 1-d vector (numpy's shape, not scipy's np.matrix);
- gradients: `ik.grad(cost, S)` is sparse with S's pattern (the derivative with respect to
  the stored values: structured, as Theano's); the dense operands get dense gradients.

At the boundary of `ik.function`, a sparse input takes a scipy.sparse matrix or array of the
declared format, in canonical form (sorted indices, no duplicates: scipy's
`has_canonical_format`); int32 indices are converted to int64, data converts when the
conversion loses nothing. A sparse output comes back as a `scipy.sparse.csr_matrix` or
`csc_matrix`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from irkit import ops as K
from irkit.dialects.ik.sparse import (SparseIndptrOp, SparseMatmulOp, SparseMatmulTOp, SparseRowsOp,
                                      SparseValidateOp)
from irkit.dtypes import as_dtype
from irkit.errors import DTypeError, InvalidValueError, ShapeError
from irkit.leaves import lscalar, vector
from irkit.variable import Variable

FORMATS = ("csr", "csc")


class SparseVariable:
    """A symbolic sparse matrix in CSR or CSC format: its components are dense variables."""

    __array_ufunc__ = None  # numpy defers to us: np_array @ S calls S.__rmatmul__
    ndim = 2

    def __init__(self, data: Variable, indices: Variable, indptr: Variable, minor: Variable, format: str,
                 name: str | None = None, placeholders: tuple[Variable, ...] | None = None,
                 unchecked_indices: Variable | None = None) -> None:
        if format not in FORMATS:
            raise ValueError(f"sparse format must be one of {FORMATS}, not {format!r}")
        # `indices` are validated (ik.sparse_validate: canonical, in range) for the ops that rely
        # on the structure; the products check what they read themselves and take the indices
        # before validation, so a product pays for no second pass over the structure
        self.data, self.indices, self.indptr, self.minor = data, indices, indptr, minor
        self.unchecked_indices = indices if unchecked_indices is None else unchecked_indices
        self.format = format
        self.name = name
        # the input variables a function call feeds (data, indices, indptr, minor), for inputs
        self.placeholders = placeholders

    # -- plain attributes -----------------------------------------------------------
    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def n_major(self) -> Variable:
        """The number of compressed slices: rows for CSR, columns for CSC."""
        return K.dim(self.indptr, 0) - 1

    @property
    def shape(self) -> tuple[Variable, Variable]:
        """(rows, columns) as int64 scalars."""
        return (self.n_major, self.minor) if self.format == "csr" else (self.minor, self.n_major)

    @property
    def nnz(self) -> Variable:
        return K.dim(self.data, 0)

    @property
    def T(self) -> "SparseVariable":  # noqa: N802
        """The transpose: the same components, read in the other format (no work)."""
        other = "csc" if self.format == "csr" else "csr"
        return SparseVariable(self.data, self.indices, self.indptr, self.minor, other,
                              f"{self.name}.T" if self.name else None, unchecked_indices=self.unchecked_indices)

    def with_data(self, data: Variable) -> "SparseVariable":
        """A sparse variable of this pattern holding other values (one per stored entry)."""
        data = K.as_variable(data)
        if data.ndim != 1:
            raise ShapeError(f"the values of a sparse matrix are 1-d, got shape {data.static_shape}")
        return SparseVariable(data, self.indices, self.indptr, self.minor, self.format,
                              unchecked_indices=self.unchecked_indices)

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return f"SparseVariable({label}{self.format}, {self.dtype.name})"

    def __bool__(self) -> bool:
        raise TypeError("a symbolic sparse matrix has no truth value")

    __hash__ = object.__hash__

    # -- operators ------------------------------------------------------------------
    __irkit_defer__ = True  # a dense Variable on the left hands `@` and `*` to these (variable.py)

    def __matmul__(self, other: Any) -> Variable:
        return dot(self, other)

    def __rmatmul__(self, other: Any) -> Variable:
        return dot(other, self)

    def __mul__(self, other: Any) -> "SparseVariable":
        return multiply(self, other)

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> "SparseVariable":
        if isinstance(other, SparseVariable) or _rank_of(other) != 0:
            raise TypeError("a sparse matrix can be divided by a scalar only (dividing by a matrix "
                            "would divide by its zeros)")
        return self.with_data(self.data / other)

    def __neg__(self) -> "SparseVariable":
        return self.with_data(-self.data)

    def __abs__(self) -> "SparseVariable":
        return self.with_data(K.abs(self.data))

    def __pos__(self) -> "SparseVariable":
        return self

    def toarray(self) -> Variable:
        return dense(self)

    def sum(self, axis: int | None = None) -> Variable:
        return sum(self, axis)

    def astype(self, dtype: Any) -> "SparseVariable":
        return self.with_data(K.cast(self.data, dtype))

    def multiply(self, other: Any) -> "SparseVariable":
        return multiply(self, other)


def _rank_of(x: Any) -> int:
    if isinstance(x, Variable):
        return x.ndim
    return np.ndim(x)


def is_sparse(x: Any) -> bool:
    return isinstance(x, SparseVariable)


# ---------------------------------------------------------------------------
# making sparse variables
# ---------------------------------------------------------------------------

def _value_dtype(dtype: Any, what: str) -> np.dtype:
    dt = as_dtype(dtype, what)
    if dt.kind not in "iuf":
        raise DTypeError(f"{what}: a sparse matrix holds integers or floats, not {dt.name}")
    return dt


def _validated(indices: Variable, indptr: Variable, minor: Variable, what: str) -> Variable:
    return K._emit(SparseValidateOp, [indices, indptr, minor], what=what)


INDEX_DTYPES = ("int32", "int64")


def _input(name: str | None, dtype: Any, format: str, index_dtype: str) -> SparseVariable:
    if name is not None and not isinstance(name, str):
        raise TypeError(f"an input's name must be a string, not {type(name).__name__}")
    dt = _value_dtype(dtype, f"sparse input {name!r}" if name else "sparse input")
    if str(np.dtype(index_dtype)) not in INDEX_DTYPES:
        raise DTypeError(f"index_dtype must be one of {INDEX_DTYPES} (as scipy's), not {index_dtype!r}")
    idx = np.dtype(index_dtype)
    prefix = f"{name}." if name else ""
    data = vector(f"{prefix}data" if name else None, dt)
    indices = vector(f"{prefix}indices" if name else None, idx)
    indptr = vector(f"{prefix}indptr" if name else None, idx)
    minor = lscalar((f"{prefix}ncols" if format == "csr" else f"{prefix}nrows") if name else None)
    label = f"input {name!r}" if name else "a sparse input"
    return SparseVariable(data, _validated(indices, indptr, minor, label), indptr, minor, format, name,
                          placeholders=(data, indices, indptr, minor), unchecked_indices=indices)


def csr_matrix(name: str | None = None, dtype: Any = None, index_dtype: str = "int32") -> SparseVariable:
    """A sparse input in CSR format (rows compressed), fed with a scipy.sparse CSR matrix.
    `index_dtype` is the dtype of its indices and indptr (scipy's default is int32; a matrix
    with the other one is converted when its sizes fit)."""
    return _input(name, dtype, "csr", index_dtype)


def csc_matrix(name: str | None = None, dtype: Any = None, index_dtype: str = "int32") -> SparseVariable:
    """A sparse input in CSC format (columns compressed), fed with a scipy.sparse CSC matrix."""
    return _input(name, dtype, "csc", index_dtype)


def _from_components(data: Any, indices: Any, indptr: Any, shape: Sequence[Any], format: str) -> SparseVariable:
    data, indices, indptr = K.as_variable(data), K.as_variable(indices), K.as_variable(indptr)
    for what, v in (("data", data), ("indices", indices), ("indptr", indptr)):
        if v.ndim != 1:
            raise ShapeError(f"ik.sparse.{format}: {what} must be 1-d, got shape {v.static_shape}")
    for what, v in (("indices", indices), ("indptr", indptr)):
        if v.dtype.kind not in "iu":
            raise DTypeError(f"ik.sparse.{format}: {what} must be integers, got {v.dtype.name}")
    _value_dtype(data.dtype, f"ik.sparse.{format}: data")
    if len(shape) != 2:
        raise ShapeError(f"ik.sparse.{format}: shape must be (rows, columns), got {tuple(shape)}")
    major, minor = (shape[0], shape[1]) if format == "csr" else (shape[1], shape[0])
    minor = K.as_variable(minor, np.dtype(np.int64))
    if minor.ndim != 0 or minor.dtype.kind not in "iu":
        raise TypeError(f"ik.sparse.{format}: the sizes in shape must be integer scalars")
    minor = K.cast(minor, "int64")
    # the major size is len(indptr) - 1; a shape that says otherwise is an error, checked when it runs
    indptr = K.broadcast_to(indptr, (K.as_variable(major, np.dtype(np.int64)) + 1,))
    return SparseVariable(data, _validated(indices, indptr, minor, f"ik.sparse.{format}"), indptr, minor, format)


def csr(data: Any, indices: Any, indptr: Any, shape: Sequence[Any]) -> SparseVariable:
    """A CSR matrix from its components (scipy's `csr_matrix((data, indices, indptr), shape)`);
    the structure must be canonical (checked when the function runs)."""
    return _from_components(data, indices, indptr, shape, "csr")


def csc(data: Any, indices: Any, indptr: Any, shape: Sequence[Any]) -> SparseVariable:
    """A CSC matrix from its components (scipy's `csc_matrix((data, indices, indptr), shape)`)."""
    return _from_components(data, indices, indptr, shape, "csc")


def constant(value: Any, name: str | None = None) -> SparseVariable:
    """A constant sparse matrix from a scipy.sparse CSR or CSC matrix (copied)."""
    import scipy.sparse as sp
    if not sp.issparse(value) or value.format not in FORMATS:
        raise TypeError(f"ik.sparse.constant takes a scipy.sparse CSR or CSC matrix, not {type(value).__name__}"
                        + (f" in {value.format} format" if sp.issparse(value) else ""))
    shape = value.shape
    out = _from_components(K.constant(np.array(value.data)), K.constant(value.indices.astype(np.int64)),
                           K.constant(value.indptr.astype(np.int64)), shape, value.format)
    out.name = name
    return out


def _from_dense(x: Any, format: str) -> SparseVariable:
    x = K.as_variable(x)
    if x.ndim != 2:
        raise ShapeError(f"ik.sparse.{format}_from_dense: x must be a matrix, got shape {x.static_shape}")
    _value_dtype(x.dtype, f"ik.sparse.{format}_from_dense")
    major_first = x if format == "csr" else x.T
    rows, cols = K.nonzero(major_first)
    data = major_first[rows, cols]
    indptr = K._emit(SparseIndptrOp, [rows, K.dim(major_first, 0)])
    return SparseVariable(data, cols, indptr, K.dim(major_first, 1), format)


def csr_from_dense(x: Any) -> SparseVariable:
    """x as a CSR matrix whose pattern is the nonzero elements of x (NaN included), in row order.
    Its gradient is x's at those elements and zero elsewhere."""
    return _from_dense(x, "csr")


def csc_from_dense(x: Any) -> SparseVariable:
    """x as a CSC matrix whose pattern is the nonzero elements of x (NaN included)."""
    return _from_dense(x, "csc")


def _major_index(s: SparseVariable) -> Variable:
    """The row (CSR) or column (CSC) of each stored value."""
    return K._emit(SparseRowsOp, [s.indptr, s.indices])


def coords(s: SparseVariable) -> tuple[Variable, Variable]:
    """The row and the column of each stored value, in storage order (scipy's
    `S.tocoo()` row and col, explicit zeros included): int64 and S's index dtype."""
    _require_sparse(s, "ik.sparse.coords")
    major = _major_index(s)
    return (major, s.indices) if s.format == "csr" else (s.indices, major)


def dense(s: SparseVariable) -> Variable:
    """The dense matrix (scipy's toarray())."""
    _require_sparse(s, "ik.sparse.dense")
    rows, cols = coords(s)
    zeros = K.zeros(s.shape, s.dtype)
    return K.inc_subtensor(zeros[rows, cols], s.data)


# ---------------------------------------------------------------------------
# products
# ---------------------------------------------------------------------------

def _require_sparse(s: Any, fn: str) -> None:
    if not isinstance(s, SparseVariable):
        raise TypeError(f"{fn} takes a sparse matrix, not {type(s).__name__}")


def _sparse_times_dense(s: SparseVariable, m: Variable) -> Variable:
    """S @ M for a 2-d dense M: CSR with the row kernel, CSC as the transposed product of
    the CSR matrix it is the transpose of."""
    op = SparseMatmulOp if s.format == "csr" else SparseMatmulTOp
    return K._emit(op, [s.data, s.unchecked_indices, s.indptr, s.minor, m])


def dot(a: Any, b: Any) -> Variable:
    """The product of a sparse and a dense operand (either order), a dense result. A 1-d dense
    operand is a vector, as in numpy (the result is then 1-d)."""
    if isinstance(a, SparseVariable) and isinstance(b, SparseVariable):
        raise TypeError("ik.sparse.dot: the product of two sparse matrices is not supported; "
                        "make one of them dense (ik.sparse.dense)")
    if isinstance(a, SparseVariable):
        m = K.as_variable(b)
        if m.ndim not in (1, 2):
            raise ShapeError(f"ik.sparse.dot: the dense operand must be 1-d or 2-d, got shape {m.static_shape}")
        out = _sparse_times_dense(a, K.expand_dims(m, 1) if m.ndim == 1 else m)
        return K.squeeze(out, 1) if m.ndim == 1 else out
    if isinstance(b, SparseVariable):
        m = K.as_variable(a)
        if m.ndim not in (1, 2):
            raise ShapeError(f"ik.sparse.dot: the dense operand must be 1-d or 2-d, got shape {m.static_shape}")
        if m.ndim == 1:  # v @ S = S^T v
            return K.squeeze(_sparse_times_dense(b.T, K.expand_dims(m, 1)), 1)
        return K.transpose(_sparse_times_dense(b.T, K.transpose(m)))  # M @ S = (S^T M^T)^T
    raise TypeError("ik.sparse.dot needs a sparse operand; use ik.dot for dense ones")


# ---------------------------------------------------------------------------
# elementwise
# ---------------------------------------------------------------------------

def multiply(s: SparseVariable, other: Any) -> SparseVariable:
    """S times a scalar, or times a dense array elementwise (broadcast as in numpy), sampled at
    S's pattern: the result keeps S's pattern."""
    _require_sparse(s, "ik.sparse.multiply")
    if isinstance(other, SparseVariable):
        raise TypeError("ik.sparse.multiply: the elementwise product of two sparse matrices is not supported")
    other = K.as_variable(other, s.dtype)
    if other.ndim == 0:
        return s.with_data(s.data * other)
    if other.ndim > 2:
        raise ShapeError(f"ik.sparse.multiply: cannot broadcast an operand of shape {other.static_shape} "
                         "against a matrix")
    rows, cols = coords(s)
    full = K.broadcast_to(other, s.shape)  # checks the shapes; a static 1 broadcasts
    return s.with_data(s.data * full[rows, cols])


def _exact(fn: Callable[[Variable], Variable], name: str) -> Callable[[SparseVariable], SparseVariable]:
    def apply(s: SparseVariable) -> SparseVariable:
        _require_sparse(s, f"ik.sparse.{name}")
        return s.with_data(fn(s.data))
    apply.__name__ = name
    apply.__doc__ = (f"{name} of the stored values; {name}(0) = 0, so this is the dense {name} "
                     "with the same pattern.")
    return apply


neg = _exact(K.neg, "neg")
abs = _exact(K.abs, "abs")  # noqa: A001  (numpy's name)
sqrt = _exact(K.sqrt, "sqrt")
sin = _exact(K.sin, "sin")
tan = _exact(K.tan, "tan")
tanh = _exact(K.tanh, "tanh")
arcsin = _exact(K.arcsin, "arcsin")
arctan = _exact(K.arctan, "arctan")
sinh = _exact(K.sinh, "sinh")
arcsinh = _exact(K.arcsinh, "arcsinh")
arctanh = _exact(K.arctanh, "arctanh")
expm1 = _exact(K.expm1, "expm1")
log1p = _exact(K.log1p, "log1p")
sign = _exact(K.sign, "sign")
floor = _exact(K.floor, "floor")
ceil = _exact(K.ceil, "ceil")
trunc = _exact(K.trunc, "trunc")
round = _exact(K.round, "round")  # noqa: A001
relu = _exact(K.relu, "relu")
square = _exact(K.square, "square")


def structured_map(fn: Callable[[Variable], Variable], s: SparseVariable) -> SparseVariable:
    """fn applied to the stored values only; the result keeps S's pattern (the implicit
    zeros stay zeros even where fn(0) != 0). fn maps a 1-d variable elementwise."""
    _require_sparse(s, "ik.sparse.structured_map")
    out = K.as_variable(fn(s.data))
    if out.ndim != 1:
        raise ShapeError(f"ik.sparse.structured_map: fn must map the values elementwise, got shape {out.static_shape}")
    return s.with_data(out)


def structured_exp(s: SparseVariable) -> SparseVariable:
    """exp of the stored values (the implicit zeros stay zeros)."""
    return structured_map(K.exp, s)


def structured_log(s: SparseVariable) -> SparseVariable:
    """log of the stored values (the implicit zeros stay zeros)."""
    return structured_map(K.log, s)


def structured_sigmoid(s: SparseVariable) -> SparseVariable:
    """sigmoid of the stored values (the implicit zeros stay zeros)."""
    return structured_map(K.sigmoid, s)


def structured_pow(s: SparseVariable, p: Any) -> SparseVariable:
    """The stored values to the power p (the implicit zeros stay zeros, even for p <= 0)."""
    return structured_map(lambda d: d ** p, s)


# ---------------------------------------------------------------------------
# reductions
# ---------------------------------------------------------------------------

def sum(s: SparseVariable, axis: int | None = None) -> Variable:  # noqa: A001
    """The sum of all elements (axis=None, a scalar), of each column (axis=0) or of each row
    (axis=1): a 1-d vector, with numpy's dtype for the sum."""
    _require_sparse(s, "ik.sparse.sum")
    if axis is None:
        return K.sum(s.data)
    if not isinstance(axis, (int, np.integer)) or not -2 <= axis < 2:
        raise ShapeError(f"ik.sparse.sum: axis {axis!r} is out of bounds for a matrix")
    axis = int(axis) % 2
    values = K.cast(s.data, K.sum(s.data).dtype)  # numpy's sum dtype: int32 sums as int64
    rows, cols = coords(s)
    target, size = (cols, s.shape[1]) if axis == 0 else (rows, s.shape[0])
    return K.inc_subtensor(K.zeros((size,), values.dtype)[target], values)


# ---------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------

def grad(cost: Variable | None, wrt: Any, **kwargs: Any) -> Any:
    """ik.grad where some of `wrt` are sparse: their gradients are sparse with their pattern
    (the derivative with respect to each stored value), the others as ik.grad gives them."""
    from irkit.gradients import grad as dense_grad
    listed = isinstance(wrt, (list, tuple))
    items = list(wrt) if listed else [wrt]
    flat = [w.data if isinstance(w, SparseVariable) else w for w in items]
    got = dense_grad(cost, flat, **kwargs)
    out = [w.with_data(g) if isinstance(w, SparseVariable) else g for w, g in zip(items, got)]
    return out if listed else out[0]


# ---------------------------------------------------------------------------
# compiled functions with sparse inputs or outputs
# ---------------------------------------------------------------------------

def involves_sparse(inputs: Any, outputs: Any) -> bool:
    """Whether ik.function must go through SparseFunction."""
    ins = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    outs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    return any(isinstance(v, SparseVariable) for v in ins + outs)


def _components(s: SparseVariable) -> list[Variable]:
    return [s.data, s.indices, s.indptr, s.minor]


class SparseFunction:
    """A compiled function with sparse inputs or outputs: sparse inputs are fed as their
    components (checked here and converted), sparse outputs are rebuilt as scipy matrices.
    Everything else is the dense `ik.Function` it wraps (`.ir()`, `.timings`, ...)."""

    def __init__(self, inputs: Sequence[Any], outputs: Any, updates: Any = None, givens: Any = None,
                 target: str = "cpu", allow_input_downcast: bool = False, name: str | None = None,
                 no_default_updates: bool | Sequence[Any] = False) -> None:
        from irkit.function import Function
        if isinstance(inputs, (Variable, SparseVariable)):
            raise TypeError("ik.function's inputs must be a list of variables")
        self.inputs = list(inputs)
        flat_inputs: list[Variable] = []
        for k, v in enumerate(self.inputs):
            if isinstance(v, SparseVariable):
                if v.placeholders is None:
                    raise TypeError(f"input {k} ({v!r}) is computed from other variables; sparse inputs must be "
                                    "made with ik.sparse.csr_matrix or csc_matrix")
                flat_inputs += v.placeholders
            else:
                flat_inputs.append(v)
        self.single = not isinstance(outputs, (list, tuple))
        self.outputs = [outputs] if self.single else list(outputs)
        flat_outputs: list[Any] = []
        for o in self.outputs:
            flat_outputs += _components(o) if isinstance(o, SparseVariable) else [o]
        if givens:
            items = givens.items() if isinstance(givens, dict) else givens
            if any(isinstance(a, SparseVariable) or isinstance(b, SparseVariable) for a, b in items):
                raise TypeError("givens cannot replace sparse variables; substitute their components")
        self.allow_input_downcast = allow_input_downcast
        # per sparse input: (values dtype, index dtype), read once (a dtype off an xDSL type is not free)
        self._dtypes = {k: (v.dtype, v.placeholders[1].dtype) for k, v in enumerate(self.inputs)
                        if isinstance(v, SparseVariable)}
        self.function = Function(flat_inputs, flat_outputs, updates, givens, target, allow_input_downcast, name,
                                 no_default_updates=no_default_updates)
        self.name = self.function.name

    def __getattr__(self, attr: str) -> Any:
        if attr == "function":  # not made yet (a failed __init__)
            raise AttributeError(attr)
        return getattr(self.function, attr)

    def ir(self, stage: str = "loops") -> str:
        return self.function.ir(stage)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            args = self._bind(args, kwargs)
        if len(args) != len(self.inputs):
            names = ", ".join(self._label(k) for k in range(len(self.inputs)))
            raise TypeError(f"{self.name}() takes {len(self.inputs)} input(s) ({names}), got {len(args)}")
        flat: list[Any] = []
        for k, (v, a) in enumerate(zip(self.inputs, args)):
            flat += self._feed(k, v, a) if isinstance(v, SparseVariable) else [a]
        got = iter(self.function(*flat))
        out = []
        for o in self.outputs:
            if isinstance(o, SparseVariable):
                out.append(_to_scipy(o.format, next(got), next(got), next(got), next(got)))
            else:
                out.append(next(got))
        return out[0] if self.single else out

    def _label(self, k: int) -> str:
        v = self.inputs[k]
        return repr(v.name) if v.name else f"#{k}"

    def _bind(self, args: tuple, kwargs: dict) -> tuple:
        values: list[Any] = list(args) + [None] * (len(self.inputs) - len(args))
        given = [True] * len(args) + [False] * (len(self.inputs) - len(args))
        for key, value in kwargs.items():
            k = next((k for k, v in enumerate(self.inputs) if v.name == key), None)
            if k is None:
                raise TypeError(f"{self.name}() got an unexpected keyword argument {key!r}")
            if given[k]:
                raise TypeError(f"{self.name}() got multiple values for input {key!r}")
            values[k], given[k] = value, True
        missing = [self._label(k) for k, g in enumerate(given) if not g]
        if missing:
            raise TypeError(f"{self.name}() missing input(s): {', '.join(missing)}")
        return tuple(values)

    def _feed(self, k: int, v: SparseVariable, value: Any) -> list[np.ndarray]:
        """The components of a scipy.sparse matrix for sparse input k, checked and converted."""
        import scipy.sparse as sp
        label = f"input {self._label(k)}"
        want = v.format.upper()
        if not sp.issparse(value):
            raise DTypeError(f"{label} is a sparse {want} matrix: pass a scipy.sparse {v.format}_matrix "
                             f"(or {v.format}_array), not {type(value).__name__}"
                             + (f" of shape {np.shape(value)}" if hasattr(value, "shape") else ""))
        if value.format != v.format:
            raise DTypeError(f"{label} expects a sparse matrix in {want} format, got {value.format.upper()} "
                             f"(convert it with .to{v.format}())")
        if value.ndim != 2:
            raise ShapeError(f"{label} expects a sparse matrix (2-d), got {value.ndim}-d")
        dt, idx = self._dtypes[k]
        data = value.data
        if data.dtype != dt:
            if not (np.can_cast(data.dtype, dt, "safe") or self.allow_input_downcast):
                raise DTypeError(f"{label} expects values of dtype {dt.name}, got {data.dtype.name}: converting "
                                 "would lose precision (cast it, or compile with allow_input_downcast=True)")
            data = data.astype(dt)
        if not value.has_canonical_format:
            raise InvalidValueError(f"{label}: the {want} matrix is not in canonical format (its indices are "
                                    "unsorted or repeated within a row/column); call sum_duplicates() first")
        indices, indptr = value.indices, value.indptr
        if indices.dtype != idx or indptr.dtype != idx:
            if np.iinfo(idx).max < max(*value.shape, indptr[-1] if indptr.size else 0):
                raise DTypeError(f"{label} was declared with {idx.name} indices, too small for a matrix of "
                                 f"shape {value.shape} with {value.nnz} stored values (declare "
                                 "index_dtype='int64')")
            indices, indptr = indices.astype(idx), indptr.astype(idx)
        minor = np.array(value.shape[1] if v.format == "csr" else value.shape[0], dtype=np.int64)
        return [data, indices, indptr, minor]  # exactly what the native entry takes: no slow path


def _to_scipy(format: str, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, minor: Any):
    import scipy.sparse as sp
    major = indptr.shape[0] - 1
    shape = (major, int(minor)) if format == "csr" else (int(minor), major)
    cls = sp.csr_matrix if format == "csr" else sp.csc_matrix
    return cls((data, indices, indptr), shape=shape, copy=False)
