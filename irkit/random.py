"""`ik.RandomStream`: random draws in compiled functions, as Theano's RandomStreams.

    srng = ik.RandomStream(seed=42)
    x = ik.matrix("x")
    mask = srng.binomial(x.shape, n=1, p=0.8, dtype=x.dtype)     # sizes may be symbolic
    f = ik.function([x], x * mask / 0.8)                          # new numbers on every call

Each draw owns a state, a shared int64 vector `[key, counter]` whose
`default_update` moves the counter on: `ik.function` applies it after every call
(see `SharedVariable.default_update`), so each call draws new numbers. The
numbers themselves are made inside the compiled kernels by Philox4x32-10, a
counter-based generator (`irkit.dialects.ik.random`): element i of a draw is a
function of (key, counter, i) alone, so draws fuse with the arithmetic that
uses them and run in parallel on CPU threads and GPU lanes alike.

Reproducibility: the k-th draw a stream makes gets the key
SeedSequence(seed, spawn_key=(k,)) (numpy's seed hashing), so a program that
makes its draws in the same order gets the same numbers in every run and
process; `srng.seed(s)` gives every draw of the stream the key it would have in
a new `RandomStream(s)`, and sets its counter back to zero.

Methods (the distribution, and how it is drawn):

- `uniform`: low + (high - low) * u, u with 53 random bits (24 for float32),
  kept below high even where the product rounds up;
- `normal`: loc + scale * z, z by Box-Muller in float64 on two 53-bit uniforms;
- `integers`: a 128-bit fixed-point product of a random word and the range
  (unbiased to within 2**-64, no rejection loop);
- `binomial` / `bernoulli`: the sum of n Bernoulli trials u < p, each u with 53
  random bits (24 when p is float32), so each trial's probability is p rounded up to
  a multiple of 2**-53 (2**-24): exactly binomial otherwise, O(n) work per element;
- `choice`: with p, the inverse of the cumulative distribution (a count of
  cdf <= u); without replacement, the order of random keys: Efraimidis-Spirakis
  keys E / p_i (E exponential), equal in law to drawing one item after another
  in proportion to p, as numpy does (O(len(a)**2) work per call);
- `permutation`: choice without replacement of every item.

Inside `ik.scan`: a draw in the step advances every step (scan applies the state's
`step_update`, the counter plus one, and carries each state from step to step), so
every step draws new numbers, and calls never meet even when the scan's updates are
not passed on to `ik.function`. A draw made outside the scan and passed in is one draw
for all steps.
"""

from __future__ import annotations

import builtins
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from irkit import ops as K
from irkit.dialects.ik.random import NextBelowOp, RandomIntegersOp, RandomNormalOp, RandomUniformOp, RequireOp
from irkit.dtypes import as_dtype
from irkit.errors import DTypeError, InvalidValueError, ShapeError
from irkit.leaves import SharedVariable, shared
from irkit.types import format_shape
from irkit.variable import Variable

Size = Any  # None, an int, a 0-d integer Variable, or a sequence of those
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_INT64 = np.iinfo(np.int64)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _draw_key(seed: int, draw: int) -> int:
    """The Philox key (64 bits, as int64) of the stream's `draw`-th draw."""
    word = np.random.SeedSequence(seed, spawn_key=(draw,)).generate_state(1, np.uint64)[0]
    return int(np.asarray(word, np.uint64).view(np.int64))


def _check_seed(seed: Any) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"RandomStream: the seed must be an int, not {type(seed).__name__}")
    if seed < 0:
        raise InvalidValueError(f"RandomStream: the seed must be a non-negative int, not {seed}")
    return int(seed)


def require(x: Variable, ok: Variable, message: str) -> Variable:
    """x, after checking at run time that the 0-d bool `ok` holds (else the call raises
    `message`, "ValueError: ..." naming the kind)."""
    if ok.ndim:
        ok = K.all(ok)
    return K._emit(RequireOp, [x, K.cast(ok, "bool")], message=message)


class RandomStream:
    """A source of random draws for compiled functions (Theano's RandomStreams): each method
    returns a symbolic draw whose numbers change on every call of a function that uses it.
    Sizes are tuples of ints and symbolic int64 scalars (`x.shape[0]`), as for ik.zeros."""

    def __init__(self, seed: int | None = None) -> None:
        self._seed = _check_seed(seed) if seed is not None else int(np.random.SeedSequence().entropy)
        self._states: list[SharedVariable] = []

    # -- the states -------------------------------------------------------------------
    @property
    def state_variables(self) -> list[SharedVariable]:
        """The shared variables holding each draw's [key, counter], in the order made."""
        return list(self._states)

    def seed(self, seed: int) -> None:
        """Reseed every draw made so far (and those made later): the numbers are then those
        of a new RandomStream(seed) that makes the same draws."""
        self._seed = _check_seed(seed)
        for k, state in enumerate(self._states):
            state.set_value(np.array([_draw_key(self._seed, k), 0], dtype=np.int64))

    def updates(self) -> "OrderedDict[SharedVariable, Variable]":
        """Each state's counter plus one: what a scan step that draws returns with its
        outputs, so that every step draws new numbers (and scan's updates carry the states
        on to the next call)."""
        step = K.constant(np.array([0, 1], dtype=np.int64))
        return OrderedDict((s, s + step) for s in self._states)

    def _new_state(self, kind: str) -> SharedVariable:
        """A draw's state, [key, counter]. Each call of a function moves the counter to the
        next multiple of 2**32 (its default update), and each scan step adds one to it
        (`updates()`): so the counters of different calls never meet, even when a scan's
        updates are not passed on to the function."""
        k = len(self._states)
        state = shared(np.array([_draw_key(self._seed, k), 0], dtype=np.int64), name=f"rng_{kind}_{k}",
                       shape=(2,))
        word = K.constant(np.array([1, 2 ** 32], dtype=np.int64))
        state.default_update = (state // word + K.constant(np.array([0, 1], dtype=np.int64))) * word
        state.step_update = state + K.constant(np.array([0, 1], dtype=np.int64))
        self._states.append(state)
        return state

    def _draw(self, cls, kind: str, dims: tuple, dtype: np.dtype, params: Sequence[Variable] = ()) -> Variable:
        static, dyn = K._shape_args(dims, f"RandomStream.{kind}: size")
        return K._emit(cls, [self._new_state(kind), *params, *dyn], dtype=dtype, shape=static)

    # -- distributions ------------------------------------------------------------------
    def uniform(self, size: Size = None, low: Any = 0.0, high: Any = 1.0, dtype: Any = None) -> Variable:
        """Floats in [low, high) (never high), uniformly; low and high may be symbolic and
        broadcast against size. dtype: float32 or float64 (default: the parameters' float
        dtype, else config.floatX)."""
        what = "RandomStream.uniform"
        dt = _float_dtype(dtype, (low, high), what)
        lo, hi = _float_param(low, dt, what, "low"), _float_param(high, dt, what, "high")
        dims = _dims(size, [lo, hi], what)
        if not isinstance(low, Variable) and not isinstance(high, Variable):
            with np.errstate(all="ignore"):
                ok = np.all((np.asarray(low) < np.asarray(high)) & np.isfinite(np.subtract(high, low, dtype=dt)))
            if not ok:
                raise InvalidValueError(f"{what}: low={low!r} must be less than high={high!r}, with a finite range")
        else:
            hi = require(hi, (lo < hi) & K.isfinite(hi - lo),
                         f"ValueError: {what}: low must be less than high, with a finite range")
        u = self._draw(RandomUniformOp, "uniform", dims, dt)
        if _is_number(low) and _is_number(high) and low == 0 and high == 1:
            return u  # u is already in [0, 1)
        lo, hi = _broadcast_param(lo, dims, what), _broadcast_param(hi, dims, what)
        # low + (high - low) * u can round up to high: clamp to the float just below it
        return K.minimum(lo + (hi - lo) * u, K._emit(NextBelowOp, [hi]))

    def normal(self, size: Size = None, loc: Any = 0.0, scale: Any = 1.0, dtype: Any = None) -> Variable:
        """Normally distributed floats, loc + scale * z (z standard normal, drawn by Box-Muller);
        loc and scale may be symbolic (gradients flow to them) and broadcast against size."""
        what = "RandomStream.normal"
        dt = _float_dtype(dtype, (loc, scale), what)
        mean, spread = _float_param(loc, dt, what, "loc"), _float_param(scale, dt, what, "scale")
        dims = _dims(size, [mean, spread], what)
        if not isinstance(scale, Variable):
            if not np.all(np.asarray(scale) >= 0):
                raise InvalidValueError(f"{what}: scale={scale!r} must be non-negative")
        else:
            spread = require(spread, spread >= 0, f"ValueError: {what}: scale must be non-negative")
        z = self._draw(RandomNormalOp, "normal", dims, dt)
        if _is_number(loc) and _is_number(scale) and loc == 0 and scale == 1:
            return z
        return K.cast(_broadcast_param(mean, dims, what) + _broadcast_param(spread, dims, what) * z, dt)

    def integers(self, size: Size = None, low: Any = 0, high: Any = None, dtype: Any = "int64") -> Variable:
        """Integers in [low, high), uniformly (numpy's Generator.integers; high=None draws
        from [0, low)). low and high are ints or symbolic integer scalars."""
        if high is None:
            low, high = 0, low
        return self._integers(size, low, high, dtype, "RandomStream.integers")

    def _integers(self, size: Size, low: Any, high: Any, dtype: Any, what: str,
                  empty_range: str = "low must be less than high") -> Variable:
        dt = as_dtype(dtype)
        if dt.kind not in "iu":
            raise DTypeError(f"{what}: dtype must be an integer type, not {dt.name}")
        lo, hi = _int_param(low, what, "low"), _int_param(high, what, "high")
        dims = _dims(size, [], what)
        info = np.iinfo(dt)
        if isinstance(lo, int) and isinstance(hi, int):
            if not lo < hi:
                raise InvalidValueError(f"{what}: {empty_range} (low={lo}, high={hi})")
            if lo < info.min or hi - 1 > info.max:
                raise InvalidValueError(f"{what}: [{lo}, {hi}) does not fit in {dt.name}")
            lo_v, hi_v = K.constant(lo, "int64"), K.constant(hi, "int64")
        else:
            lo_v, hi_v = K.as_variable(lo, np.dtype(np.int64)), K.as_variable(hi, np.dtype(np.int64))
            ok = lo_v < hi_v
            if dt != np.int64:
                ok = ok & (lo_v >= int(info.min)) & (hi_v - 1 <= int(info.max))
            within = f" (and both within {dt.name})" if dt != np.int64 else ""
            hi_v = require(hi_v, ok, f"ValueError: {what}: {empty_range}{within}")
        return K.cast(self._draw(RandomIntegersOp, "integers", dims, np.dtype(np.int64), [lo_v, hi_v]), dt)

    def binomial(self, size: Size = None, n: Any = 1, p: Any = 0.5, dtype: Any = "int64") -> Variable:
        """The number of successes in n independent trials of probability p: the sum of n
        Bernoulli draws u < p (exactly binomial, with p taken to 53 bits, 24 for a float32 p;
        O(n) work per element). n is an int or a symbolic integer scalar; p a probability or
        a float array broadcasting against size."""
        what = "RandomStream.binomial"
        dt = as_dtype(dtype)
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer, Variable)):
            raise TypeError(f"{what}: n must be an int or an integer scalar variable, not {type(n).__name__}")
        if isinstance(n, Variable):
            if n.ndim != 0 or n.dtype.kind not in "iu":
                raise TypeError(f"{what}: n must be an integer scalar, not a {n.dtype.name} variable of shape "
                                f"{format_shape(n.static_shape)}")
        elif n < 0:
            raise InvalidValueError(f"{what}: n={int(n)} must be non-negative")
        prob = _probability(p, what)
        dims = _dims(size, [prob], what)
        u = self._draw(RandomUniformOp, "binomial", (*dims, n), prob.dtype)
        trials = u < K.expand_dims(_broadcast_param(prob, dims, what), -1)
        return K.cast(K.sum(K.cast(trials, "int64"), axis=-1), dt)

    def bernoulli(self, size: Size = None, p: Any = 0.5, dtype: Any = "int64") -> Variable:
        """1 with probability p, else 0 (binomial with n=1)."""
        return self.binomial(size, 1, p, dtype)

    def choice(self, a: Any, size: Size = None, replace: bool = True, p: Any = None) -> Variable:
        """numpy's Generator.choice: items of the 1-d `a` (or of arange(a) for an int a), with
        probabilities p (uniform if None), with or without replacement. size=None draws one
        item (a 0-d result)."""
        what = "RandomStream.choice"
        checks: list[tuple[Variable, str]] = []  # run-time conditions, checked on the result
        items, count = _population(a, what, checks)
        dims = _dims(size, [], what)
        weights = None if p is None else _weights(p, count, what)
        if replace:
            if weights is None:
                index = self._integers(dims, 0, count, "int64", what, "a must be positive (the number of items)")
            else:
                index = self._inverse_cdf(weights, count, dims)
        else:
            index = self._without_replacement(weights, count, dims, what, checks)
        for ok, message in checks:
            index = require(index, ok, message)
        return index if items is None else items[index]

    def permutation(self, x: Any) -> Variable:
        """A random permutation of arange(x) for an int x, else of x's items (its first axis)."""
        if isinstance(x, (int, np.integer, Variable)) and (not isinstance(x, Variable) or x.ndim == 0):
            return self.choice(x, (x,), replace=False)
        x = K.as_variable(x)
        if x.ndim == 0:
            raise ShapeError("RandomStream.permutation: x must be an int or have at least one axis")
        n = x.shape[0]
        return x[self.choice(n, (n,), replace=False)]

    # -- choice's two methods -------------------------------------------------------------
    def _inverse_cdf(self, weights: Variable, count: Any, dims: tuple) -> Variable:
        """The first k with cdf[k] > u: the count of cdf entries <= u (each sample reads the
        whole cdf, made once per call). The cdf is divided by its own last entry, as numpy
        does, so that entry is exactly 1 > u and every count is a valid index."""
        cdf = _stored(_cumulative(weights), count)
        cdf = cdf / cdf[-1]
        u = self._draw(RandomUniformOp, "choice", dims, weights.dtype)
        return K.sum(K.cast(cdf <= K.expand_dims(u, -1), "int64"), axis=-1)

    def _without_replacement(self, weights: Variable | None, count: Any, dims: tuple, what: str,
                             checks: list) -> Variable:
        """The items of smallest key, in key order: key_i = E_i / p_i with E_i exponential
        (Efraimidis and Spirakis), or a uniform key without p. An item's rank is the number
        of keys before it (ties go by position), and sample r is the item of rank r."""
        m = K.prod_dims(dims) if dims else K.constant(1, "int64")
        available = count if weights is None else K.sum(K.cast(weights > 0, "int64"))
        static_m, static_available = K._static_int(m), (count if isinstance(count, int) and weights is None else None)
        if static_m is not None and static_available is not None and static_m > static_available:
            raise InvalidValueError(f"{what}: cannot take {static_m} items without replacement from {count}")
        checks.append((m <= available, f"ValueError: {what}: cannot take more items without replacement than "
                                       "there are (with p: items of nonzero probability)"))
        u = self._draw(RandomUniformOp, "choice", (count,), np.dtype(np.float64))
        if weights is None:
            keys = u
        else:
            w = K.cast(weights, "float64")
            keys = K.where(w > 0, -K.log1p(-u) / w, np.inf)
        keys = _stored(keys, count)
        position = K.arange(count)
        key_j, key_i = K.expand_dims(keys, 0), K.expand_dims(keys, 1)
        pos_j, pos_i = K.expand_dims(position, 0), K.expand_dims(position, 1)
        earlier = ((key_j < key_i) | ((key_j == key_i) & (pos_j < pos_i))) & (pos_j != pos_i)
        rank = K.sum(K.cast(earlier, "int64"), axis=1)                      # rank[i]: keys before item i
        is_r = K.expand_dims(rank, 0) == K.expand_dims(K.arange(m), 1)      # [r, i]: item i has rank r
        index = K.sum(K.where(is_r, K.expand_dims(position, 0), 0), axis=1)
        return K.reshape(index, dims)


# ---------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------

def _float_dtype(dtype: Any, params: Sequence[Any], what: str) -> np.dtype:
    if dtype is not None:
        dt = as_dtype(dtype)
        if dt not in _FLOATS:
            raise DTypeError(f"{what}: dtype must be float32 or float64, not {dt.name}")
        return dt
    floats = [v.dtype for v in params if isinstance(v, Variable) and v.dtype.kind == "f"]
    floats += [np.asarray(v).dtype for v in params if isinstance(v, np.ndarray) and v.dtype.kind == "f"]
    return np.dtype(np.result_type(*floats)) if floats else as_dtype(None)


def _float_param(x: Any, dt: np.dtype, what: str, name: str) -> Variable:
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{what}: {name} must be a number or a float array, not a bool")
    v = K.as_variable(x, dt)
    if v.dtype.kind not in "fiu":
        raise DTypeError(f"{what}: {name} must be numeric, not {v.dtype.name}")
    return K.cast(v, dt)


def _int_param(x: Any, what: str, name: str) -> int | Variable:
    if isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)):
        if not _INT64.min <= int(x) <= _INT64.max:
            raise InvalidValueError(f"{what}: {name}={int(x)} is outside int64")
        return int(x)
    if isinstance(x, Variable):
        if x.ndim != 0 or x.dtype.kind not in "iu":
            raise TypeError(f"{what}: {name} must be an integer scalar, not a {x.dtype.name} variable of shape "
                            f"{format_shape(x.static_shape)}")
        known = K._static_int(x)
        return known if known is not None else K.cast(x, "int64")
    raise TypeError(f"{what}: {name} must be an int or an integer scalar variable, not {type(x).__name__}")


def _probability(p: Any, what: str) -> Variable:
    """p as a float Variable, checked to lie in [0, 1] (now when it is a number or an array,
    at run time when symbolic)."""
    if isinstance(p, Variable):
        prob = p if p.dtype.kind == "f" else K.cast(p, "float64")
        return require(prob, (prob >= 0) & (prob <= 1), f"ValueError: {what}: p must lie in [0, 1]")
    arr = np.asarray(p)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{what}: p must be a probability or an array of them, not {type(p).__name__}")
    if not ((arr >= 0) & (arr <= 1)).all():
        bad = arr[~((arr >= 0) & (arr <= 1))].flat[0]
        raise InvalidValueError(f"{what}: p must lie in [0, 1], got {bad!r}")
    # a float array keeps its dtype (float32 p draws float32 trials); numbers and lists are float64
    keep = isinstance(p, np.ndarray) and arr.dtype.kind == "f"
    return K.constant(arr if keep else arr.astype(np.float64))


def _population(a: Any, what: str, checks: list) -> tuple[Variable | None, int | Variable]:
    """(the items, or None for arange(a); how many there are); conditions known only at run
    time go to `checks`."""
    if isinstance(a, (int, np.integer)) and not isinstance(a, (bool, np.bool_)):
        if a <= 0:
            raise InvalidValueError(f"{what}: a={int(a)} must be positive (the number of items)")
        return None, int(a)
    if isinstance(a, Variable) and a.ndim == 0:
        count = _int_param(a, what, "a")
        if isinstance(count, int):
            return _population(count, what, checks)
        checks.append((count > 0, f"ValueError: {what}: a must be positive (the number of items)"))
        return None, count
    items = K.as_variable(a)
    if items.ndim != 1:
        raise ShapeError(f"{what}: a must be 1-d or an int, not of shape {format_shape(items.static_shape)}")
    count = items.static_shape[0]
    if count == 0:
        raise InvalidValueError(f"{what}: a is empty")
    if count is None:
        count = items.shape[0]
        checks.append((count > 0, f"ValueError: {what}: a is empty"))
    return items, count


def _weights(p: Any, count: int | Variable, what: str) -> Variable:
    """p as a 1-d float Variable of length `count`, non-negative and summing to 1 within
    numpy's tolerance (sqrt of the float's epsilon): checked now for arrays, at run time for
    symbolic p."""
    if isinstance(p, Variable):
        if p.ndim != 1 or p.dtype.kind != "f":
            raise ShapeError(f"{what}: p must be a 1-d float array, not {p.dtype.name}"
                             f"{format_shape(p.static_shape)}")
        n = p.static_shape[0]
        if isinstance(count, int) and n is not None and n != count:
            raise ShapeError(f"{what}: p has {n} entries, a has {count} items")
        tol = float(np.sqrt(np.finfo(p.dtype).eps))
        ok = K.all(p >= 0) & (K.abs(K.sum(K.cast(p, "float64")) - 1) <= tol) & \
            K.eq(p.shape[0], K.as_variable(count, np.dtype(np.int64)))
        return require(p, ok, f"ValueError: {what}: p must be non-negative, sum to 1 and have an entry per item")
    arr = np.asarray(p)
    if arr.ndim != 1 or arr.dtype.kind not in "fiu":
        raise ShapeError(f"{what}: p must be a 1-d array of probabilities, not {arr.dtype.name}{arr.shape}")
    arr = arr.astype(np.float64) if arr.dtype.kind != "f" else arr
    if isinstance(count, int) and len(arr) != count:
        raise ShapeError(f"{what}: p has {len(arr)} entries, a has {count} items")
    bad = (arr < 0) | ~np.isfinite(arr)
    if bad.any():
        raise InvalidValueError(f"{what}: p must be non-negative and finite, got {arr[bad][0]!r}")
    tol = float(np.sqrt(np.finfo(arr.dtype).eps))
    if abs(arr.astype(np.float64).sum() - 1) > tol:
        raise InvalidValueError(f"{what}: p must sum to 1, its sum is {arr.sum()!r}")
    weights = K.constant(arr)
    if not isinstance(count, int):
        weights = require(weights, K.eq(K.as_variable(count, np.dtype(np.int64)), len(arr)),
                          f"ValueError: {what}: p must have an entry per item of a")
    return weights


def _stored(v: Variable, count: Any) -> Variable:
    """The 1-d v, computed once into memory for every reader. A value that a kernel would
    recompute where it reads it can differ in its last bits between loop levels (libm in
    scalar code, libmvec in vectorised code), and a comparison of an item's key with
    itself, or a cdf's last entry with itself, must tie. A reshape is never fused into a
    kernel (its operand is a buffer, of which it is a view), so its operand is stored."""
    return K.reshape(v, (1, count))[0]


def _cumulative(w: Variable) -> Variable:
    """The running sum of a 1-d w: cdf[k] = sum of w[j] for j <= k (a triangular sum, made
    once per call; the items are few enough that this beats a sequential scan)."""
    position = K.arange(w.shape[0])
    lower = K.expand_dims(position, 0) <= K.expand_dims(position, 1)   # [k, j]: j <= k
    return K.sum(K.where(lower, K.expand_dims(w, 0), K.zeros((), w.dtype)), axis=1)


def _dims(size: Size, params: Sequence[Variable], what: str) -> tuple:
    """The draw's shape as a tuple of ints and int64 scalars: `size`, or (size=None) the
    broadcast shape of the parameters."""
    if size is None:
        rank = builtins.max((v.ndim for v in params), default=0)
        dims: list = []
        for k in range(rank):
            dim: Any = 1
            for v in params:
                j = k - (rank - v.ndim)
                if j >= 0 and v.static_shape[j] != 1:
                    dim = v.static_shape[j] if v.static_shape[j] is not None else v.shape[j]
                    break
            dims.append(dim)
        return tuple(dims)
    if isinstance(size, (int, np.integer, Variable)):
        size = (size,)
    if not isinstance(size, (tuple, list)):
        raise TypeError(f"{what}: size must be an int, a symbolic int scalar or a tuple of them, "
                        f"not {type(size).__name__}")
    for k, s in enumerate(size):
        if isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_)) and s < 0:
            raise ShapeError(f"{what}: size[{k}] = {int(s)} is negative")
    K._shape_args(size, f"{what}: size")  # the other checks: ints or integer scalar variables
    return tuple(int(s) if isinstance(s, (int, np.integer)) else s for s in size)


def _broadcast_param(v: Variable, dims: tuple, what: str) -> Variable:
    """A parameter broadcast to the draw's shape (so that it cannot enlarge the result)."""
    if v.ndim == 0:
        return v
    if v.ndim > len(dims):
        raise ShapeError(f"{what}: a parameter of shape {format_shape(v.static_shape)} does not broadcast to "
                         f"the size {tuple(d if isinstance(d, int) else '?' for d in dims)}")
    return K.broadcast_to(v, dims)
