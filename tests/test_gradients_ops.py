"""The derivative rules of every op, against central finite differences.

`GRAD_CASES` is a table keyed by op name ("ik.exp", ...): each op that can carry a
gradient has one or more cases, each checked with `ik.verify_grad` in float64 at a
small random point inside the op's domain (away from kinks, ties and poles); its
forward rule (`ik.Rop`) against the finite-difference directional derivative; and (for
most cases) its reverse rule with a batch of cotangents, as `ik.jacobian` uses it,
against the finite-difference Jacobian.
`ZERO_GRAD` lists the ops whose gradient is zero by convention (rounding, sign,
comparisons, floor division, float tests): their gradient must be exactly zero, and
asking for it is not an error. `NO_GRADIENT` lists, with a reason, the ops that never
carry one. `test_every_op_has_a_gradient_test` fails when an op of the registry
(`irkit.dialects.ik.OPS`) is in none of them, so a new op needs a gradient test.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

import irkit as ik
from irkit.dialects.ik import OPS
from irkit.dialects.ik.random import NextBelowOp
from irkit.dialects.ik.sparse import SparseSampledDotOp
from irkit.random import require

# ---------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------


@dataclass
class Case:
    op: str                      # the op name the case is for ("ik.exp")
    label: str
    fn: Callable                 # Variables -> Variable
    points: list                 # arrays, or functions rng -> array
    valid: Callable | None = None  # predicate on the points (resampled until it holds)
    kw: dict = field(default_factory=dict)  # extra verify_grad arguments
    jac: bool = True             # also check ik.jacobian (the rules with batched cotangents)

    @property
    def id(self) -> str:
        return f"{self.op}-{self.label}"


GRAD_CASES: dict[str, list[Case]] = {}


def case(op: str, label: str, fn: Callable, *points, valid=None, jac=True, **kw) -> None:
    GRAD_CASES.setdefault(op, []).append(Case(op, label, fn, list(points), valid, kw, jac))


def U(lo: float, hi: float, *shape: int):
    """Uniform floats in [lo, hi]."""
    return lambda rng: rng.uniform(lo, hi, shape)


def AWAY(*shape: int, lo: float = 0.4, hi: float = 2.0):
    """Floats with |x| in [lo, hi] and a random sign: away from 0."""
    return lambda rng: rng.uniform(lo, hi, shape) * rng.choice([-1.0, 1.0], shape)


def C(value):
    """A fixed point."""
    return np.asarray(value, dtype=np.float64)


# -- unary elementwise ------------------------------------------------------

UNARY_DOMAINS = {
    "exp": (-2, 2), "exp2": (-2, 2), "expm1": (-2, 2), "log": (0.3, 3), "log2": (0.3, 3),
    "log10": (0.3, 3), "log1p": (-0.6, 2), "sqrt": (0.3, 3), "sin": (-3, 3), "cos": (-3, 3),
    "tan": (-1.2, 1.2), "sinh": (-2, 2), "cosh": (-2, 2), "tanh": (-2, 2), "arcsin": (-0.9, 0.9),
    "arccos": (-0.9, 0.9), "arctan": (-3, 3), "arcsinh": (-3, 3), "arccosh": (1.2, 3),
    "arctanh": (-0.9, 0.9), "erf": (-2, 2), "neg": (-3, 3), "sigmoid": (-4, 4), "softplus": (-4, 4),
    "square": (-3, 3),
}
# (every unary rule is `g * derivative`: the batched form is checked on a few of them)
for _name, (_lo, _hi) in UNARY_DOMAINS.items():
    case(f"ik.{_name}", "matrix", getattr(ik, _name), U(_lo, _hi, 2, 3), jac=_name in ("exp", "sqrt", "tanh"))
for _name in ("exp", "log", "sqrt", "tanh", "sigmoid"):
    case(f"ik.{_name}", "0d", getattr(ik, _name), U(*UNARY_DOMAINS[_name]))
case("ik.softplus", "large", ik.softplus, C([-40.0, -12.0, 12.0, 40.0]))
case("ik.sigmoid", "large", ik.sigmoid, C([-30.0, -8.0, 8.0, 30.0]))
case("ik.abs", "matrix", ik.abs, AWAY(2, 3), jac=False)
case("ik.abs", "chain", lambda x: ik.abs(ik.sin(x)) * x, AWAY(4, lo=0.3, hi=1.4))
case("ik.relu", "matrix", ik.relu, AWAY(2, 3), jac=False)
case("ik.relu", "chain", lambda x: ik.relu(x) * ik.exp(x), AWAY(5))
case("ik.exp", "3d", lambda x: ik.exp(x) * x, U(-1, 1, 2, 2, 2))

# -- binary elementwise: every layout of broadcasting -----------------------
# A layout is (shape of a, shape of b, how a and b are reshaped in the graph): inputs of
# verify_grad have dynamic dims, so static 1s come from expand_dims.

def _e0(v):
    return ik.expand_dims(v, 0)


def _e1(v):
    return ik.expand_dims(v, 1)


def _id(v):
    return v


LAYOUTS = {
    "same": ((2, 3), (2, 3), _id, _id),
    "rank_b": ((2, 3), (3,), _id, _id),
    "rank_a": ((3,), (2, 2, 3), _id, _id),
    "static1_both": ((3,), (2,), _e0, _e1),          # (1, ?) with (?, 1)
    "scalar_a": ((), (2, 3), _id, _id),
    "static1_rank": ((2, 4), (2,), _id, lambda v: ik.expand_dims(v, (0, 2))),  # (1, ?, 1) with (?, ?)
}


def _pos(shape, rng):
    return rng.uniform(0.5, 2.0, shape)


def _sym(shape, rng):
    return rng.uniform(-2.0, 2.0, shape)


def _away(shape, rng):
    return rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


def _mod_a(shape, rng):
    """An integer plus (0.3, 0.7): with b in {±1, ±2}, a / b is at least 0.15 from an integer,
    where a % b jumps."""
    return rng.integers(-3, 4, shape) + rng.uniform(0.3, 0.7, shape)


def _mod_b(shape, rng):
    return rng.choice([-2.0, -1.0, 1.0, 2.0], shape)


def _apart(a, b):
    return bool(np.all(np.abs(np.subtract(a, b)) > 0.2))


# op: (function, sampler of a, sampler of b, validity)
BINARY = {
    "add": (lambda a, b: a + b, _sym, _sym, None),
    "sub": (lambda a, b: a - b, _sym, _sym, None),
    "mul": (lambda a, b: a * b, _sym, _sym, None),
    "truediv": (lambda a, b: a / b, _sym, _away, None),
    "mod": (lambda a, b: a % b, _mod_a, _mod_b, None),
    "pow": (lambda a, b: a ** b, _pos, _sym, None),
    "maximum": (ik.maximum, _sym, _sym, _apart),
    "minimum": (ik.minimum, _sym, _sym, _apart),
    "arctan2": (ik.arctan2, _away, _away, None),
}


def _binary_case(opname, layout):
    fn, sa, sb, valid = BINARY[opname]
    shape_a, shape_b, ta, tb = LAYOUTS[layout]
    case(f"ik.{opname}", layout, lambda a, b: fn(ta(a), tb(b)),
         lambda rng: sa(shape_a, rng), lambda rng: sb(shape_b, rng),
         valid=None if valid is None else (lambda a, b: valid(_bshape(ta, a), _bshape(tb, b))),
         jac=layout in ("rank_a", "static1_rank"))  # (the batched unbroadcast, on the hardest layouts)


def _bshape(t, v):
    """The numpy view of v that t makes in the graph."""
    if t is _e0:
        return v[None]
    if t is _e1:
        return v[:, None]
    if t is _id:
        return v
    return v[None, :, None]


for _op in BINARY:
    for _layout in LAYOUTS:
        _binary_case(_op, _layout)
case("ik.mul", "python_scalar", lambda a: 2.5 * a * 3, U(-2, 2, 3))
case("ik.sub", "python_scalar", lambda a: 1.0 - a, U(-2, 2, 3))
case("ik.truediv", "python_scalar", lambda a: 1.0 / a, AWAY(3))
case("ik.pow", "integer_exponent_negative_base", lambda a: a ** 3 + a ** 2, U(-2, -0.5, 4))
case("ik.pow", "python_base", lambda b: 2.0 ** b, U(-2, 2, 4))
case("ik.add", "same_operand", lambda a: a + a * a, U(-2, 2, 4))
case("ik.mul", "outer", lambda a, b: ik.outer(a, b), U(-2, 2, 3), U(-2, 2, 2))

# -- where, clip, cast -------------------------------------------------------

case("ik.where", "cond_from_input", lambda x, a, b: ik.where(x > 0, a * x, b),
     AWAY(2, 3), U(-2, 2, 2, 3), U(-2, 2, 2, 3))
case("ik.where", "broadcast", lambda a, b: ik.where(ik.constant(np.array([[True], [False]])), _e0(a), b),
     U(-2, 2, 3), U(-2, 2, 2, 3))
case("ik.where", "scalar_branch", lambda a, b: ik.where(ik.constant(np.array([True, False, True])), a, b),
     U(-2, 2), U(-2, 2, 3))
case("ik.where", "same_input", lambda x: ik.where(x > 0, ik.exp(x), x * x), AWAY(5))


def _clip_ok(x, lo, hi):
    lo_, hi_ = np.broadcast_arrays(lo, hi)
    return bool(np.all(hi_ - lo_ > 0.5) and np.all(np.abs(x - np.asarray(lo)) > 0.15)
                and np.all(np.abs(x - np.asarray(hi)) > 0.15))


case("ik.clip", "tensor_bounds", lambda x, lo, hi: ik.clip(x, lo, hi),
     U(-2, 2, 2, 4), U(-1.2, -0.2, 2, 4), U(0.2, 1.2, 2, 4), valid=_clip_ok)
case("ik.clip", "broadcast_bounds", lambda x, lo, hi: ik.clip(x, lo, hi),
     U(-2, 2, 2, 4), U(-1.2, -0.2, 4), U(0.2, 1.2), valid=_clip_ok)
case("ik.clip", "python_bounds", lambda x: ik.clip(x, -0.5, 0.7), U(-2, 2, 8),
     valid=lambda x: bool(np.all(np.abs(x + 0.5) > 0.1) and np.all(np.abs(x - 0.7) > 0.1)))
# float32 in, float64 out (CastOp's vjp casts g back): float32 tolerances
case("ik.cast", "f32_to_f64", lambda x: ik.cast(x, "float64") ** 2,
     lambda rng: rng.uniform(-2, 2, (2, 3)).astype(np.float32))
# float64 -> float32 -> float64 rounds at 1e-8 relative: a wider step and tolerance
case("ik.cast", "f64_to_f32", lambda x: ik.exp(ik.cast(ik.cast(x, "float32"), "float64")),
     U(-1, 1, 5), eps=1e-3, rel_tol=1e-3, abs_tol=1e-3)

# -- shape ops ---------------------------------------------------------------

case("ik.reshape", "2x3_to_3x2", lambda x: ik.reshape(x, (3, 2)) * ik.constant(np.arange(6.0).reshape(3, 2)),
     U(-2, 2, 2, 3))
case("ik.reshape", "infer", lambda x: ik.reshape(x, (-1,)) ** 2, U(-2, 2, 2, 3))
case("ik.reshape", "symbolic", lambda x: ik.sin(ik.reshape(x, (x.shape[1], x.shape[0], 1))), U(-2, 2, 2, 3))
case("ik.reshape", "flatten", lambda x: ik.exp(ik.flatten(x, 2)), U(-1, 1, 2, 2, 3))
case("ik.transpose", "perm", lambda x: ik.transpose(x, (2, 0, 1)) * ik.constant(np.arange(24.0).reshape(4, 2, 3)),
     U(-2, 2, 2, 3, 4))
case("ik.transpose", "T", lambda x: x.T @ ik.constant(np.arange(6.0).reshape(2, 3)), U(-2, 2, 2, 3))
case("ik.expand_dims", "axes", lambda x: ik.expand_dims(x, (0, 2)) * ik.constant(np.ones((2, 2, 1, 3))),
     U(-2, 2, 2, 3))
case("ik.squeeze", "static_ones", lambda x: ik.squeeze(ik.reshape(x, (1, 2, 1, 3)), (0, 2)) ** 3, U(-2, 2, 2, 3))
case("ik.squeeze", "all", lambda x: ik.sin(ik.squeeze(ik.reshape(x, (1, 6, 1)))), U(-2, 2, 6))
case("ik.broadcast_to", "rank", lambda x: ik.broadcast_to(x, (2, 3)) * ik.constant(np.arange(6.0).reshape(2, 3)),
     U(-2, 2, 3))
case("ik.broadcast_to", "static1", lambda x: ik.broadcast_to(_e1(x), (2, 3, 4)) ** 2, U(-2, 2, 3))
case("ik.broadcast_to", "symbolic", lambda x, y: ik.broadcast_to(x, y.shape) * y, U(-2, 2, 3), U(-2, 2, 2, 3))
case("ik.concatenate", "axis0", lambda a, b: ik.concatenate([a, b], 0) ** 2, U(-2, 2, 2, 3), U(-2, 2, 1, 3))
case("ik.concatenate", "axis1_three", lambda a, b, c: ik.sin(ik.concatenate([a, b, c], 1)),
     U(-2, 2, 2, 1), U(-2, 2, 2, 3), U(-2, 2, 2, 2))
case("ik.concatenate", "with_constant", lambda a: ik.concatenate([ik.constant(np.ones((2, 2))), a, a], -1) ** 2,
     U(-2, 2, 2, 3))
case("ik.concatenate", "stack", lambda a, b: ik.exp(ik.stack([a, b], 1)), U(-1, 1, 3), U(-1, 1, 3))

# -- reductions --------------------------------------------------------------

for _axis, _keep in [(None, False), (None, True), (0, False), (-1, True), ((0, 2), False), ((0, 2), True),
                     ((0, 1, 2), False)]:
    _lab = f"axis{_axis}{'_keepdims' if _keep else ''}"
    _jac = (_axis, _keep) in ((None, False), (-1, True), ((0, 2), False))
    case("ik.sum", _lab, lambda x, a=_axis, k=_keep: ik.sin(ik.sum(x, a, k)), U(-1, 1, 2, 3, 2), jac=_jac)
    case("ik.prod", _lab, lambda x, a=_axis, k=_keep: ik.prod(x, a, k), AWAY(2, 3, 2, lo=0.5, hi=1.5), jac=_jac)
    case("ik.max", _lab, lambda x, a=_axis, k=_keep: ik.sin(ik.max(x, a, k)), U(-2, 2, 2, 3, 2), jac=_jac)
    case("ik.min", _lab, lambda x, a=_axis, k=_keep: ik.sin(ik.min(x, a, k)), U(-2, 2, 2, 3, 2), jac=_jac)
case("ik.sum", "mean_var_std", lambda x: ik.mean(x, 0) + ik.var(x, 1, keepdims=True) + ik.std(x, ddof=1),
     U(-2, 2, 3, 4))
# prod is exact with zeros: one zero gives the product of the others there, two give 0
case("ik.prod", "one_zero", lambda x: ik.prod(x), C([1.5, 0.0, -2.0, 0.5]))
case("ik.prod", "one_zero_axis", lambda x: ik.prod(x, 1), C([[1.5, 0.0, -2.0], [0.5, 2.0, 3.0]]))
case("ik.prod", "two_zeros", lambda x: ik.prod(x, 0, keepdims=True), C([[0.0, 2.0], [0.0, 3.0], [1.5, 0.0]]))

# -- indexing ----------------------------------------------------------------

def _weights(shape):
    return ik.constant(np.arange(1.0, 1.0 + np.prod(shape)).reshape(shape))


case("ik.slice", "start", lambda x: x[1:] ** 2, U(-2, 2, 4, 3))
case("ik.slice", "negative_step", lambda x: x[::-2, 1:-1] * _weights((2, 2)), U(-2, 2, 4, 4))
case("ik.slice", "reverse_all", lambda x: x[::-1, ::-1] * _weights((3, 2)), U(-2, 2, 3, 2))
case("ik.slice", "int_and_reverse", lambda x: x[-1, ::-1] * _weights((3,)), U(-2, 2, 2, 3))
case("ik.slice", "ellipsis_newaxis", lambda x: ik.sin(x[..., None, 0]), U(-2, 2, 2, 3))
case("ik.slice", "symbolic_bound", lambda x: x[1:x.shape[0] - 1] ** 3, U(-2, 2, 5))
case("ik.set_slice", "set_rows", lambda x, y: ik.set_subtensor(x[1:3], y) * _weights((4, 3)),
     U(-2, 2, 4, 3), U(-2, 2, 2, 3))
case("ik.set_slice", "set_broadcast", lambda x, y: ik.set_subtensor(x[::-2, 1:], y) ** 2,
     U(-2, 2, 4, 3), U(-2, 2, 2))
case("ik.set_slice", "inc_column", lambda x, y: ik.inc_subtensor(x[:, 1], y) * _weights((3, 4)),
     U(-2, 2, 3, 4), U(-2, 2, 3))
case("ik.set_slice", "inc_scalar", lambda x, y: ik.sin(ik.inc_subtensor(x[-1:0:-1], y)),
     U(-2, 2, 4), U(-2, 2))
case("ik.gather", "repeats", lambda x: x[[0, 2, 0, 0]] * _weights((4, 3)), U(-2, 2, 3, 3))
case("ik.gather", "column_repeats", lambda x: x[:, [1, 1, 0]] ** 2, U(-2, 2, 2, 3))
case("ik.gather", "paired", lambda x: x[[0, 1, 1], [2, 2, 2]] * _weights((3,)), U(-2, 2, 2, 3))
case("ik.gather", "front", lambda x: x[[0, 0, 1], :, [1, 2, 1]] * _weights((3, 2)), U(-2, 2, 2, 2, 3))
case("ik.gather", "2d_index", lambda x: ik.sin(x[np.array([[0, 1], [1, 1]])]), U(-2, 2, 2, 3))
case("ik.gather", "mask", lambda x: x[np.array([True, False, True, True])] ** 2, U(-2, 2, 4, 2))
case("ik.gather", "after_slice", lambda x: x[1:, [0, 0, 2]] * _weights((2, 3)), U(-2, 2, 3, 3))
case("ik.gather", "arange_targets", lambda x: x[ik.arange(3), ik.constant(np.array([1, 0, 1]))] ** 2,
     U(-2, 2, 3, 2))
case("ik.scatter", "set_rows", lambda x, y: ik.set_subtensor(x[[0, 2]], y) * _weights((3, 2)),
     U(-2, 2, 3, 2), U(-2, 2, 2, 2))
case("ik.scatter", "inc_repeats", lambda x, y: ik.inc_subtensor(x[[0, 2, 0]], y) ** 2,
     U(-2, 2, 3, 2), U(-2, 2, 3, 2))
case("ik.scatter", "inc_columns_broadcast", lambda x, y: ik.sin(ik.inc_subtensor(x[:, [1, 1]], y)),
     U(-2, 2, 2, 3), U(-2, 2, 2))
case("ik.scatter", "inc_after_slice", lambda x, y: ik.inc_subtensor(x[1:, [0, 0]], y) * _weights((3, 2)),
     U(-2, 2, 3, 2), U(-2, 2, 2, 2))
case("ik.scatter", "inc_front", lambda x, y: ik.inc_subtensor(x[[0, 0, 1], :, [1, 2, 1]], y) * _weights((2, 2, 3)),
     U(-2, 2, 2, 2, 3), U(-2, 2, 3, 2))
case("ik.scatter", "set_front", lambda x, y: ik.sin(ik.set_subtensor(x[[1, 0], :, [2, 2]], y)),
     U(-2, 2, 2, 2, 3), U(-2, 2, 2))
case("ik.scatter", "set_paired", lambda x, y: ik.set_subtensor(x[[0, 1], [2, 0]], y) ** 2,
     U(-2, 2, 2, 3), U(-2, 2, 2))

# -- sparse products (dialects/ik/sparse.py), over a fixed 4 x 3 pattern with an empty row;
#    their rules take no batched cotangents (jac=False: ik.jacobian raises a clear error)
_PATTERN = (np.array([0, 2, 1, 0, 1]), np.array([0, 2, 2, 3, 5]), (4, 3))
case("ik.sparse_matmul", "values_and_dense", lambda d, m: ik.sparse.dot(ik.sparse.csr(d, *_PATTERN), m),
     U(-2, 2, 5), U(-2, 2, 3, 2), jac=False)
case("ik.sparse_matmul_t", "values_and_dense", lambda d, m: ik.sparse.dot(m, ik.sparse.csr(d, *_PATTERN)),
     U(-2, 2, 5), U(-2, 2, 2, 4), jac=False)
case("ik.sparse_sampled_dot", "a_and_b",  # the values' gradient of a product: A @ B^T at the pattern
     lambda a, b: ik.sin(ik.ops._emit(SparseSampledDotOp, [ik.constant(_PATTERN[0]), ik.constant(_PATTERN[1]), a, b])),
     U(-2, 2, 4, 2), U(-2, 2, 3, 2), jac=False)

# -- the helpers of random draws (dialects/ik/random.py): the float below a bound (the
#    derivative of nextafter is 1), and a run-time check that passes its value through
case("ik.next_below", "x", lambda x: ik.ops._emit(NextBelowOp, [x]), AWAY(3))
case("ik.require", "x", lambda x: require(x * x, ik.all(x > -10), "ValueError: x must exceed -10"), U(-1, 1, 3))

# -- matmul / dot in every rank combination ------------------------------------

MATMUL_SHAPES = {
    "1d_1d": ((3,), (3,), _id, _id),
    "1d_2d": ((3,), (3, 2), _id, _id),
    "2d_1d": ((2, 3), (3,), _id, _id),
    "2d_2d": ((2, 3), (3, 4), _id, _id),
    "3d_2d": ((2, 2, 3), (3, 2), _id, _id),
    "1d_3d": ((3,), (2, 3, 2), _id, _id),
    "3d_1d": ((2, 2, 3), (3,), _id, _id),
    "3d_3d": ((2, 2, 3), (2, 3, 2), _id, _id),
    "batch_broadcast": ((2, 2, 3), (2, 3, 2), lambda a: ik.reshape(a, (2, 1, 2, 3)),
                        lambda b: ik.reshape(b, (1, 2, 3, 2))),   # (2,1) and (1,2) batch dims
    "batch_rank": ((2, 2, 2, 3), (3, 2), _id, _id),
}
for _lab, (_sa, _sb, _ta, _tb) in MATMUL_SHAPES.items():
    case("ik.matmul", _lab, lambda a, b, ta=_ta, tb=_tb: ik.matmul(ta(a), tb(b)), U(-2, 2, *_sa), U(-2, 2, *_sb),
         jac=_lab not in ("2d_2d", "3d_2d", "3d_3d"))
case("ik.matmul", "same_operand", lambda a: a @ a.T, U(-2, 2, 2, 3), jac=False)
case("ik.matmul", "dot_1d", lambda a, b: ik.dot(a, b), U(-2, 2, 3), U(-2, 2, 3), jac=False)
case("ik.matmul", "dot_nd", lambda a, b: ik.dot(a, b), U(-2, 2, 2, 3), U(-2, 2, 2, 3, 2))
# -- gemm: beta c + alpha a @ b, every operand differentiated ----------------------------
case("ik.gemm", "all_operands", lambda c, a, b, al, be: ik.gemm(c, a, b, al, be), U(-2, 2, 2, 4), U(-2, 2, 2, 3),
     U(-2, 2, 3, 4), U(-2, 2), U(-2, 2))
case("ik.gemm", "transposed", lambda c, a, b: ik.gemm(c, a.T, b.T, -0.5, 2.0), U(-2, 2, 2, 4), U(-2, 2, 3, 2),
     U(-2, 2, 4, 3))

# -- creation ----------------------------------------------------------------

case("ik.fill", "full", lambda a: ik.full((2, 3), a) * _weights((2, 3)), U(-2, 2))
case("ik.fill", "symbolic_shape", lambda a, x: ik.full(x.shape, a) * x, U(-2, 2), U(-2, 2, 2, 3))

# -- softmax family ------------------------------------------------------------

for _axis in (-1, 0):
    case("ik.softmax", f"axis{_axis}", lambda x, a=_axis: ik.softmax(x, a), U(-3, 3, 3, 4))
    case("ik.log_softmax", f"axis{_axis}", lambda x, a=_axis: ik.log_softmax(x, a), U(-3, 3, 3, 4))
case("ik.softmax", "3d_axis1", lambda x: ik.softmax(x, 1), U(-3, 3, 2, 3, 2))
case("ik.softmax", "1d_large", lambda x: ik.softmax(x), C([300.0, 301.5, 299.0, 0.0]))
case("ik.log_softmax", "3d_axis1", lambda x: ik.log_softmax(x, 1), U(-3, 3, 2, 3, 2))
case("ik.log_softmax", "1d_large", lambda x: ik.log_softmax(x), C([800.0, 801.5, 799.0, -5.0]))
for _axis, _keep in [(None, False), (1, False), (1, True), ((0, 2), False), ((0, 2), True)]:
    case("ik.logsumexp", f"axis{_axis}{'_keepdims' if _keep else ''}",
         lambda x, a=_axis, k=_keep: ik.logsumexp(x, a, k), U(-3, 3, 2, 3, 2))
case("ik.logsumexp", "large", lambda x: ik.logsumexp(x, 0), C([[700.0, -700.0], [701.0, -699.0]]))


# ---------------------------------------------------------------------------
# ops whose gradient is zero (conventions), and ops with no gradient
# ---------------------------------------------------------------------------

# op -> a function of float inputs whose value goes through the op (first argument a float
# array away from the op's discontinuities, second a second operand where the op has one)
# -- control flow: the body's own rules, through the loop and the branch ------------

def _rnn(x, h0, w):
    hs, _ = ik.scan(lambda xt, h, w: ik.tanh(xt + ik.dot(h, w)), sequences=x, outputs_info=h0, non_sequences=w)
    return hs


def _taps(x, h0):
    hs, _ = ik.scan(lambda xm1, xp1, hm2, hm1: ik.sin(hm1) * hm2 + xm1 * xp1, sequences=dict(input=x, taps=[-1, 1]),
                    outputs_info=dict(initial=h0, taps=[-2, -1]))
    return hs


case("ik.scan", "elman", _rnn, U(-1, 1, 4, 3), U(-1, 1, 3), U(-0.6, 0.6, 3, 3), jac=False)
case("ik.scan", "taps", _taps, U(-1, 1, 6, 2), U(-1, 1, 3, 2), jac=False)
case("ik.if", "then", lambda x, y: ik.ifelse(ik.sum(x) > -100, ik.exp(x) * y, ik.sin(y)), U(-1, 1, 3), U(-1, 1, 3),
     jac=False)
case("ik.if", "else", lambda x, y: ik.ifelse(ik.sum(x) > 100, ik.exp(x) * y, ik.sin(y) * x), U(-1, 1, 3),
     U(-1, 1, 3), jac=False)

ZERO_GRAD = {
    "ik.floor": lambda x, y: ik.floor(x),
    "ik.ceil": lambda x, y: ik.ceil(x),
    "ik.round": lambda x, y: ik.round(x),
    "ik.trunc": lambda x, y: ik.trunc(x),
    "ik.sign": lambda x, y: ik.sign(x),
    "ik.floordiv": lambda x, y: x // y,
    # bool results, cast back to float: no path a gradient can take
    "ik.eq": lambda x, y: ik.cast(ik.eq(x, y), "float64"),
    "ik.ne": lambda x, y: ik.cast(ik.ne(x, y), "float64"),
    "ik.lt": lambda x, y: ik.cast(x < y, "float64"),
    "ik.le": lambda x, y: ik.cast(x <= y, "float64"),
    "ik.gt": lambda x, y: ik.cast(x > y, "float64"),
    "ik.ge": lambda x, y: ik.cast(x >= y, "float64"),
    "ik.isnan": lambda x, y: ik.cast(ik.isnan(x / y), "float64"),
    "ik.isinf": lambda x, y: ik.cast(ik.isinf(x / y), "float64"),
    "ik.isfinite": lambda x, y: ik.cast(ik.isfinite(x / y), "float64"),
}
# ops whose results are float (a gradient path exists): asking for the gradient with the
# default disconnected_inputs="raise" must give zeros, not an error (value: the operands used)
FLOAT_ZERO_GRAD = {"ik.floor": 1, "ik.ceil": 1, "ik.round": 1, "ik.trunc": 1, "ik.sign": 1, "ik.floordiv": 2}

NO_GRADIENT = {
    # integer or bool results: nothing differentiable flows out of them
    "ik.dim": "the size of an axis (int64)",
    "ik.argmax": "an int64 index",
    "ik.argmin": "an int64 index",
    "ik.any": "a bool",
    "ik.all": "a bool",
    "ik.nonzero": "int64 indices",
    "ik.sparse_rows": "int64 indices (the row of each stored value)",
    "ik.sparse_indptr": "int64 offsets",
    "ik.sparse_validate": "integer indices, passed through once checked",
    # draws: their operands are the int64 state and sizes (and int64 bounds)
    "ik.random_uniform": "a draw from the int64 state and sizes",
    "ik.random_normal": "a draw from the int64 state and sizes",
    "ik.random_integers": "a draw from the int64 state and int64 bounds",
    # defined on integers and bools only
    "ik.invert": "bitwise/logical not",
    "ik.and": "bitwise/logical and",
    "ik.or": "bitwise/logical or",
    "ik.xor": "bitwise/logical xor",
    # leaves and constants: no float operand
    "ik.placeholder": "an input (a leaf)",
    "ik.constant": "a constant",
    "ik.arange": "integer (or static) bounds",
    "ik.eye": "static or integer sizes",
    # structure: the ops of the body carry the derivatives
    "ik.yield": "the terminator of scan and if bodies",
}

ALL_CASES = [c for cases in GRAD_CASES.values() for c in cases]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def _rng_for(label: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(label.encode()))


def _points(c: Case, rng: np.random.Generator) -> list[np.ndarray]:
    for _ in range(200):
        pts = [np.asarray(p(rng) if callable(p) else p) for p in c.points]
        if c.valid is None or c.valid(*pts):
            return pts
    raise AssertionError(f"{c.id}: no valid point found (the case's domain is wrong)")


def _inputs(pts) -> list:
    return [ik.tensor(f"x{k}", shape=(None,) * p.ndim, dtype=p.dtype) for k, p in enumerate(pts)]


def _op_names(out) -> set[str]:
    """The names of the ops the graph of `out` is made of."""
    names, seen = set(), set()
    stack = [out.value]
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        owner = v.owner
        if hasattr(owner, "operands"):
            names.add(owner.name)
            stack.extend(owner.operands)
    return names


OP_NAMES = {op.name for op in OPS}


# ---------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------

def test_every_op_has_a_gradient_test():
    covered = set(GRAD_CASES) | set(ZERO_GRAD) | set(NO_GRADIENT)
    missing = sorted(OP_NAMES - covered)
    assert not missing, (f"ops of irkit.dialects.ik.OPS with no gradient test: {missing}; add cases to "
                         "GRAD_CASES (or to ZERO_GRAD / NO_GRADIENT with the reason)")
    stale = sorted(covered - OP_NAMES)
    assert not stale, f"names in the gradient tables that are not ops: {stale}"
    both = sorted((set(GRAD_CASES) | set(ZERO_GRAD)) & set(NO_GRADIENT))
    assert not both, f"ops both tested for a gradient and listed as having none: {both}"


def test_ops_without_gradient_have_no_float_result_from_floats():
    """What NO_GRADIENT claims: each op there gives integer/bool results for float inputs
    (or takes none): a float operand would need a rule."""
    x = ik.matrix("x", dtype="float64")
    i = ik.matrix("i", dtype="int64")
    outs = {
        "ik.dim": ik.dim(x, 0), "ik.argmax": ik.argmax(x), "ik.argmin": ik.argmin(x, 1),
        "ik.any": ik.any(x), "ik.all": ik.all(x, 0), "ik.nonzero": ik.nonzero(x)[0],
        "ik.invert": ~i, "ik.and": i & i, "ik.or": i | i, "ik.xor": i ^ i,
        "ik.sparse_rows": ik.sparse.coords(ik.sparse.csr_from_dense(x))[0],
        "ik.sparse_indptr": ik.sparse.csr_from_dense(x).indptr,
        "ik.sparse_validate": ik.sparse.csr_matrix("s").indices,
    }
    for name, v in outs.items():
        assert name in _op_names(v), f"{name}: the graph does not contain the op"
        assert v.dtype.kind in "iub", f"{name} gives {v.dtype} for float64 input"
    with pytest.raises(Exception):
        ~x  # invert of a float is undefined, as in numpy


# ---------------------------------------------------------------------------
# verify_grad and Rop for every case
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("c", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_verify_grad(c: Case):
    rng = _rng_for(c.id)
    pts = _points(c, rng)
    used = _op_names(ik.as_variable(c.fn(*_inputs(pts))))
    assert c.op in used, f"{c.id}: the graph does not contain {c.op} (it has {sorted(used)})"
    ik.verify_grad(c.fn, pts, n_tests=1, rng=rng, **c.kw)


def _directional_fd(f, pts, ts, eps):
    up = f(*[p + eps * t for p, t in zip(pts, ts)])
    down = f(*[p - eps * t for p, t in zip(pts, ts)])
    return (np.asarray(up, np.float64) - np.asarray(down, np.float64)) / (2 * eps)


def _jacobian_fd(f, pts, k, eps):
    """d f / d pts[k] by central differences: f's shape + pts[k]'s shape."""
    x = pts[k]
    cols = []
    for i in range(x.size):
        e = np.zeros(x.size, x.dtype)
        e[i] = 1
        e = e.reshape(x.shape)
        ts = [e if j == k else np.zeros_like(p) for j, p in enumerate(pts)]
        cols.append(_directional_fd(f, pts, ts, eps))
    out = np.stack(cols, axis=-1) if cols else np.zeros(np.shape(f(*pts)) + (0,))
    return out.reshape(out.shape[:-1] + x.shape)


@pytest.mark.parametrize("c", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_rop_and_jacobian(c: Case):
    """The forward rule: Rop(out, inputs, t) against (f(x + eps t) - f(x - eps t)) / 2 eps; and
    the reverse rule with a batch of cotangents (ik.jacobian pushes the identity through it at
    once) against the finite-difference Jacobian."""
    rng = _rng_for("rop" + c.id)
    pts = _points(c, rng)
    xs = _inputs(pts)
    tvars = [ik.tensor(f"t{k}", shape=(None,) * p.ndim, dtype=p.dtype) for k, p in enumerate(pts)]
    out = ik.as_variable(c.fn(*xs))
    jac = ik.jacobian(out, xs, disconnected_inputs="ignore") if c.jac else []
    f = ik.function(xs + tvars, [out, ik.Rop(out, xs, tvars), *jac])
    ts = [rng.uniform(-1, 1, p.shape).astype(p.dtype) for p in pts]
    value, rop, *jacs = f(*pts, *ts)
    assert rop.shape == value.shape and rop.dtype == value.dtype
    f64 = all(p.dtype == np.float64 for p in pts)
    eps = c.kw.get("eps", 1e-6 if f64 else 1e-3)
    tol = max(c.kw.get("rel_tol", 1e-5), 1e-5) if f64 else 1e-2

    def fout(*a):
        return f(*a, *ts)[0]
    np.testing.assert_allclose(rop, _directional_fd(fout, pts, ts, eps), rtol=tol, atol=tol,
                               err_msg=f"{c.id}: Rop")
    for k, (j, p) in enumerate(zip(jacs, pts)):
        assert j.shape == value.shape + p.shape, f"{c.id}: jacobian {k} has shape {j.shape}"
        np.testing.assert_allclose(j, _jacobian_fd(fout, pts, k, eps), rtol=tol, atol=tol,
                                   err_msg=f"{c.id}: jacobian with respect to input {k}")


# ---------------------------------------------------------------------------
# zero gradients
# ---------------------------------------------------------------------------

def _zero_grad_points(rng):
    x = rng.uniform(-3, 3, (2, 3))
    x = np.where(np.abs(x - np.round(x)) < 0.2, x + 0.4, x)  # away from integers and halves
    x = np.where(np.abs(x - np.floor(x) - 0.5) < 0.1, x + 0.25, x)
    y = rng.uniform(0.5, 2.0, (3,)) * np.array([1.0, -1.0, 1.0])
    return x, y


@pytest.mark.parametrize("name", sorted(ZERO_GRAD))
def test_zero_gradient_ops(name):
    """The op's own gradient is exactly zero: alone (with disconnected_inputs='ignore', and for
    float results with the default 'raise', which must not raise), next to another path
    (the gradient is exactly that path's), and in forward mode."""
    fn = ZERO_GRAD[name]
    rng = _rng_for(name)
    xv, yv = _zero_grad_points(rng)
    x, y = ik.matrix("x", dtype="float64"), ik.vector("y", dtype="float64")
    w = ik.constant(rng.uniform(0.5, 1.5, (2, 3)))
    z = fn(x, y)
    assert name in _op_names(z)
    cost = ik.sum(w * z)
    alone = ik.grad(cost, [x, y], disconnected_inputs="ignore")
    mixed = ik.grad(cost + ik.sum(x * x) + ik.sum(y * 3.0), [x, y])
    tx, ty = ik.matrix("tx", dtype="float64"), ik.vector("ty", dtype="float64")
    rop = ik.Rop(z, [x, y], [tx, ty])
    outs = alone + mixed + [rop]
    if name in FLOAT_ZERO_GRAD:  # default disconnected_inputs: a zero, not an error
        outs += ik.grad(cost, [x, y][:FLOAT_ZERO_GRAD[name]])
    f = ik.function([x, y, tx, ty], outs)
    got = f(xv, yv, np.ones((2, 3)), np.ones(3))
    zx, zy = np.zeros((2, 3)), np.zeros(3)
    np.testing.assert_array_equal(got[0], zx)
    np.testing.assert_array_equal(got[1], zy)
    np.testing.assert_array_equal(got[2], 2 * xv)
    np.testing.assert_array_equal(got[3], np.full(3, 3.0))
    np.testing.assert_array_equal(got[4], zx)
    if name in FLOAT_ZERO_GRAD:
        for g, z in zip(got[5:], [zx, zy]):
            np.testing.assert_array_equal(g, z)
        assert len(got) == 5 + FLOAT_ZERO_GRAD[name]
    # and finite differences agree: the op is locally constant at these points
    if name in FLOAT_ZERO_GRAD:
        ik.verify_grad(lambda a, b: fn(a, b) * a, [xv, yv], n_tests=1, rng=rng)


def test_integer_results_carry_no_gradient():
    """argmax/argmin/any/all/integer casts: their values reach the cost, their inputs get
    nothing from them (the other path's gradient, exactly)."""
    x = ik.vector("x", dtype="float64")
    side = (ik.cast(ik.argmax(x), "float64") + ik.cast(ik.argmin(x), "float64")
            + ik.cast(ik.any(x > 1), "float64") + ik.cast(ik.all(x > -5), "float64")
            + ik.sum(ik.cast(ik.cast(x * 10, "int32"), "float64")))
    g = ik.grad(ik.sum(x * x) + side * 7.0, x)
    alone = ik.grad(side, x, disconnected_inputs="ignore")
    f = ik.function([x], [g, alone])
    xv = np.array([0.3, -1.2, 2.5, 0.8])
    got = f(xv)
    np.testing.assert_array_equal(got[0], 2 * xv)
    np.testing.assert_array_equal(got[1], np.zeros(4))


# ---------------------------------------------------------------------------
# the conventions at kinks and ties (exact values)
# ---------------------------------------------------------------------------

def test_conventions_at_kinks_and_ties():
    x = ik.vector("x", dtype="float64")
    y = ik.vector("y", dtype="float64")
    lo = ik.vector("lo", dtype="float64")
    hi = ik.vector("hi", dtype="float64")
    outs = [
        ik.grad(ik.sum(ik.abs(x)), x),                       # 0 at 0
        ik.grad(ik.sum(ik.relu(x)), x),                      # 0 at 0
        *ik.grad(ik.sum(ik.maximum(x, y)), [x, y]),          # a tie goes to x
        *ik.grad(ik.sum(ik.minimum(x, y)), [x, y]),
        *ik.grad(ik.sum(ik.clip(x, lo, hi)), [x, lo, hi]),   # bounds included for x
        *ik.grad(ik.sum(ik.where(x > 0, x * 2.0, y * 3.0)), [x, y]),
        *ik.grad(ik.sum(x ** y), [x, y]),                    # d/dy is 0 where x <= 0
    ]
    f = ik.function([x, y, lo, hi], outs)
    xv = np.array([0.0, -1.0, 2.0, 0.0, 1.0])
    yv = np.array([0.0, -1.0, 1.0, 2.0, 3.0])  # ties at 0 and 1
    lov = np.array([0.0, -1.0, -1.0, 0.5, -2.0])
    hiv = np.array([1.0, 1.0, 2.0, 0.8, -1.0])
    got = f(xv, yv, lov, hiv)
    expect = [
        np.array([0, -1, 1, 0, 1.0]),
        np.array([0, 0, 1, 0, 1.0]),
        np.array([1, 1, 1, 0, 0.0]), np.array([0, 0, 0, 1, 1.0]),   # maximum
        np.array([1, 1, 0, 1, 1.0]), np.array([0, 0, 1, 0, 0.0]),   # minimum
        np.array([1, 1, 1, 0, 0.0]), np.array([0, 0, 0, 1, 0.0]), np.array([0, 0, 0, 0, 1.0]),  # clip
        np.array([0, 0, 2, 0, 2.0]), np.array([3, 3, 0, 3, 0.0]),   # where
    ]
    for k, e in enumerate(expect):
        np.testing.assert_array_equal(got[k], e, err_msg=f"output {k}")
    gx, gy = got[-2], got[-1]
    k = [1, 2, 3, 4]  # (at 0 ** 0 the derivative in x is 0 * inf)
    np.testing.assert_allclose(gx[k], yv[k] * xv[k] ** (yv[k] - 1), rtol=1e-12)
    np.testing.assert_array_equal(gy[[0, 1, 3]], [0.0, 0.0, 0.0])  # base <= 0
    np.testing.assert_allclose(gy[[2, 4]], np.log(xv[[2, 4]]) * xv[[2, 4]] ** yv[[2, 4]], rtol=1e-12)
    assert np.all(np.isfinite(gy))


def test_max_min_split_ties_equally():
    x = ik.matrix("x", dtype="float64")
    outs = [ik.grad(ik.max(x), x), ik.grad(ik.sum(ik.max(x, 1)), x), ik.grad(ik.sum(ik.min(x, 0)), x),
            ik.grad(ik.sum(ik.max(x, 1, keepdims=True) * 2.0), x)]
    xv = np.array([[3.0, 1.0, 3.0], [0.0, 0.0, -1.0], [2.0, 5.0, 5.0]])
    got = ik.function([x], outs)(xv)
    e0 = np.zeros((3, 3))
    e0[2, 1] = e0[2, 2] = 0.5
    np.testing.assert_array_equal(got[0], e0)
    e1 = np.array([[0.5, 0, 0.5], [0.5, 0.5, 0], [0, 0.5, 0.5]])
    np.testing.assert_array_equal(got[1], e1)
    e2 = np.array([[0, 0, 0], [1.0, 1, 1], [0, 0, 0]])
    np.testing.assert_array_equal(got[2], e2)
    np.testing.assert_array_equal(got[3], 2 * e1)


def test_prod_gradient_exact_with_zeros():
    x = ik.matrix("x", dtype="float64")
    outs = [ik.grad(ik.sum(ik.prod(x, 1)), x), ik.grad(ik.prod(x), x)]
    xv = np.array([[2.0, 0.0, 3.0], [0.0, 0.0, 4.0], [1.5, -2.0, 2.0]])
    got = ik.function([x], outs)(xv)
    want = np.array([[0.0, 6.0, 0.0], [0.0, 0.0, 0.0], [-4.0, 3.0, -3.0]])
    np.testing.assert_array_equal(got[0], want)
    np.testing.assert_array_equal(got[1], np.zeros((3, 3)))  # three zeros in all
    one = np.array([[2.0, 0.5, 3.0], [1.0, 0.0, 4.0]])
    g = ik.function([x], ik.grad(ik.prod(x), x))(one)
    want = np.zeros((2, 3))
    want[1, 1] = 2.0 * 0.5 * 3.0 * 1.0 * 4.0
    np.testing.assert_array_equal(g, want)
