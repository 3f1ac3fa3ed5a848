"""Derivatives in the Python API: `ik.grad`, `ik.Lop`/`ik.vjp`, `ik.Rop`/`ik.jvp`,
`ik.jacobian`, `ik.hessian`, `ik.stop_gradient`, and `ik.verify_grad`.

Each builds an op of the autodiff level (`ikad.grad`, `ikad.vjp`, `ikad.jvp`) that
stands for the derivative; the `autodiff` pass expands it when the function is
compiled (see passes/autodiff.py), using the rules each op states. What can be
checked while building is checked here: a non-scalar or integer cost, an integer
variable, a variable the cost does not depend on.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
from xdsl.dialects.builtin import StringAttr, TensorType
from xdsl.ir import Operation

from irkit import graph
from irkit import ops as K
from irkit.dialects.autodiff import DISCONNECTED, GradOp, JvpOp, StopGradientOp, VjpOp, depends_on
from irkit.errors import DisconnectedInputError, DTypeError, GradientError, ShapeError, with_location
from irkit.types import format_shape
from irkit.variable import Variable


def _as_list(x: Any) -> tuple[list, bool]:
    if isinstance(x, (list, tuple)):
        return list(x), True
    return [x], False


def _label(v: Variable) -> str:
    return repr(v.name) if v.name else repr(v)


def _check_float(vs: Sequence[Variable], what: str) -> None:
    for v in vs:
        if not isinstance(v, Variable):
            raise TypeError(f"{what} must be variables, not {type(v).__name__}")
        if v.dtype.kind != "f":
            raise DTypeError(with_location(f"the gradient with respect to {what} {_label(v)} of dtype "
                                           f"{v.dtype.name} is undefined: derivatives exist for float variables "
                                           "only", graph.current_location()))


def _reached(targets: Sequence[Variable], roots: Sequence[Variable], consts: Sequence[Variable]) -> set:
    return depends_on([r.value for r in roots], [t.value for t in targets], [c.value for c in consts])


def _disconnected(mode: str, wrt: Sequence[Variable], reached: set, what: str) -> None:
    if mode not in DISCONNECTED:
        raise ValueError(f"disconnected_inputs must be one of {DISCONNECTED}, not {mode!r}")
    for w in wrt:
        if w.value not in reached:
            message = f"{what} does not depend on {_label(w)}"
            if mode == "raise":
                raise DisconnectedInputError(with_location(
                    message + " (pass disconnected_inputs='ignore' for a zero gradient)", graph.current_location()))
            if mode == "warn":
                warnings.warn(message + "; its gradient is zero", stacklevel=3)


def _emit(op: Operation) -> Operation:
    return graph.place_located(op)


def grad(cost: Variable | None, wrt: Any, consider_constant: Sequence[Variable] | None = None,
         disconnected_inputs: str = "raise", known_grads: dict | None = None) -> Any:
    """The gradient of a 0-d float cost with respect to each variable of `wrt` (a list in,
    a list out). `known_grads` maps intermediate variables to gradients given from outside
    (then `cost` may be None); `consider_constant` variables pass no gradient."""
    wrt_list, as_list = _as_list(wrt)
    from irkit import sparse
    if any(sparse.is_sparse(w) for w in wrt_list):  # a sparse gradient, with the variable's pattern
        return sparse.grad(cost, wrt, consider_constant=consider_constant,
                           disconnected_inputs=disconnected_inputs, known_grads=known_grads)
    _check_float(wrt_list, "variable")
    consts = list(consider_constant or [])
    if cost is not None:
        cost = K.as_variable(cost)
        if cost.ndim != 0:
            raise ShapeError(with_location(f"grad: the cost must be a scalar (0-d), but it has shape "
                                           f"{format_shape(cost.static_shape)}; reduce it (sum, mean) first",
                                           graph.current_location()))
        if cost.dtype.kind != "f":
            raise DTypeError(with_location(f"grad: the cost has dtype {cost.dtype.name}; only a float cost has "
                                           "a gradient", graph.current_location()))
    if not known_grads:
        if cost is None:
            raise ValueError("grad needs a cost, or known_grads to start from")
        _disconnected(disconnected_inputs, wrt_list, _reached(wrt_list, [cost], consts), "the cost")
        op = GradOp.build(operands=[[cost.value], [w.value for w in wrt_list], [c.value for c in consts]],
                          result_types=[[w.type for w in wrt_list]],
                          properties=_mode_props(disconnected_inputs))
        grads = [Variable(r) for r in _emit(op).results]
        return grads if as_list else grads[0]
    outs, cts = [], []
    if cost is not None:
        outs.append(cost)
        cts.append(K.ones((), cost.dtype))
    for v, g in known_grads.items():
        v = K.as_variable(v)
        outs.append(v)
        cts.append(K.as_variable(g, v.dtype))
    result = Lop(outs, wrt_list, cts, consider_constant=consts, disconnected_inputs=disconnected_inputs)
    return result if as_list else result[0]


def _mode_props(mode: str) -> dict:
    if mode not in DISCONNECTED:
        raise ValueError(f"disconnected_inputs must be one of {DISCONNECTED}, not {mode!r}")
    # The builder has already raised or warned for each disconnected variable (with the
    # user's source line); the pass must not warn a second time at compile time.
    return {} if mode == "raise" else {"disconnected": StringAttr("ignore")}


def Lop(f: Any, wrt: Any, eval_points: Any, consider_constant: Sequence[Variable] | None = None,
        disconnected_inputs: str = "raise") -> Any:
    """The vector-Jacobian product: sum over f of eval_point^T d f / d wrt (reverse mode).
    An eval point may carry extra leading dims (a batch of cotangents); so do the results."""
    outs, _ = _as_list(f)
    outs = [K.as_variable(o) for o in outs]
    points, _ = _as_list(eval_points)
    if len(points) != len(outs):
        raise ValueError(f"Lop: {len(outs)} outputs but {len(points)} eval points")
    points = [K.as_variable(p, o.dtype) for p, o in zip(points, outs)]
    nb = None
    for o, p in zip(outs, points):
        if p.ndim < o.ndim:
            raise ShapeError(with_location(f"Lop: an eval point of shape {format_shape(p.static_shape)} for an "
                                           f"output of shape {format_shape(o.static_shape)}",
                                           graph.current_location()))
        nb = p.ndim - o.ndim if nb is None else nb
        if p.ndim - o.ndim != nb:
            raise ShapeError(with_location("Lop: all eval points must carry the same number of batch dims",
                                           graph.current_location()))
    wrt_list, as_list = _as_list(wrt)
    _check_float(wrt_list, "variable")
    consts = list(consider_constant or [])
    _disconnected(disconnected_inputs, wrt_list, _reached(wrt_list, outs, consts), "the output")
    batch = list(points[0].static_shape[:nb]) if points else []
    result_types = [TensorType(w.type.get_element_type(),
                               [(-1 << 63) if d is None else d for d in batch] + list(w.type.get_shape()))
                    for w in wrt_list]
    op = VjpOp.build(operands=[[o.value for o in outs], [p.value for p in points],
                               [w.value for w in wrt_list], [c.value for c in consts]],
                     result_types=[result_types], properties=_mode_props(disconnected_inputs))
    grads = [Variable(r) for r in _emit(op).results]
    return grads if as_list else grads[0]


def Rop(f: Any, wrt: Any, eval_points: Any, consider_constant: Sequence[Variable] | None = None) -> Any:
    """The Jacobian-vector product d f / d wrt . eval_points (forward mode)."""
    outs, as_list = _as_list(f)
    outs = [K.as_variable(o) for o in outs]
    wrt_list, _ = _as_list(wrt)
    _check_float(wrt_list, "variable")
    points, _ = _as_list(eval_points)
    if len(points) != len(wrt_list):
        raise ValueError(f"Rop: {len(wrt_list)} variables but {len(points)} eval points")
    points = [K.as_variable(p, w.dtype) for p, w in zip(points, wrt_list)]
    for w, p in zip(wrt_list, points):
        if p.ndim != w.ndim:
            raise ShapeError(with_location(f"Rop: the eval point for {_label(w)} has rank {p.ndim}, the "
                                           f"variable {w.ndim}", graph.current_location()))
    consts = list(consider_constant or [])
    op = JvpOp.build(operands=[[o.value for o in outs], [w.value for w in wrt_list], [p.value for p in points],
                               [c.value for c in consts]],
                     result_types=[[o.type for o in outs]])
    results = [Variable(r) for r in _emit(op).results]
    return results if as_list else results[0]


vjp = Lop
jvp = Rop


def stop_gradient(x: Any) -> Variable:
    """x, treated as a constant by every derivative."""
    x = K.as_variable(x)
    return Variable(_emit(StopGradientOp.build(operands=[x.value], result_types=[x.type])).results[0])


def jacobian(expr: Variable, wrt: Any, consider_constant: Sequence[Variable] | None = None,
             disconnected_inputs: str = "raise") -> Any:
    """d expr / d wrt, of shape expr.shape + wrt.shape, computed as one batched vjp (the
    identity pushed through the reverse rules at once), not a loop of gradients."""
    expr = K.as_variable(expr)
    if expr.ndim == 0:
        return grad(expr, wrt, consider_constant, disconnected_inputs)
    wrt_list, as_list = _as_list(wrt)
    n = K.prod_dims(expr.shape)
    seeds = K.reshape(K.eye(n, dtype=expr.dtype), [n] + list(expr.shape))
    rows = Lop(expr, wrt_list, seeds, consider_constant, disconnected_inputs)
    out = [K.reshape(r, list(expr.shape) + list(w.shape)) for r, w in zip(rows, wrt_list)]
    return out if as_list else out[0]


def hessian(cost: Variable, wrt: Any, consider_constant: Sequence[Variable] | None = None,
            disconnected_inputs: str = "raise") -> Any:
    """The Hessian of a 0-d cost: the jacobian of its gradient (one batched vjp per variable)."""
    wrt_list, as_list = _as_list(wrt)
    grads = grad(cost, wrt_list, consider_constant, disconnected_inputs)
    out = [jacobian(g, w, consider_constant, disconnected_inputs) for g, w in zip(grads, wrt_list)]
    return out if as_list else out[0]


# ---------------------------------------------------------------------------
# verify_grad
# ---------------------------------------------------------------------------

_EPS = {"float64": 1e-7, "float32": 3e-4}
_TOL = {"float64": 1e-4, "float32": 1e-2}


def verify_grad(fn, pts: Sequence[Any], n_tests: int = 2, rng: np.random.Generator | None = None,
                eps: float | None = None, abs_tol: float | None = None, rel_tol: float | None = None) -> None:
    """Check ik.grad of fn at pts against central finite differences; raise ik.GradientError
    naming the worst element otherwise. A non-scalar fn is projected on a random direction
    (as Theano does). An element fails when both its absolute and relative errors exceed
    the tolerances (relative: |a - n| / (|a| + |n|))."""
    from irkit.function import function
    rng = rng if rng is not None else np.random.default_rng()
    pts = [np.array(p, dtype=np.float64) if np.asarray(p).dtype.kind != "f" else np.array(p) for p in pts]
    dtype = np.result_type(*[p.dtype for p in pts]).name
    eps = _EPS.get(dtype, 1e-7) if eps is None else eps
    abs_tol = _TOL.get(dtype, 1e-4) if abs_tol is None else abs_tol
    rel_tol = _TOL.get(dtype, 1e-4) if rel_tol is None else rel_tol
    inputs = [K_tensor(f"x{k}", p) for k, p in enumerate(pts)]
    out = K.as_variable(fn(*inputs))
    if out.dtype.kind != "f":
        raise DTypeError(f"verify_grad: fn returns {out.dtype.name}; it must return floats")
    # One compiled function serves every test and every finite difference: the random
    # projection is made in the graph from a seed input (out's shape may be known only
    # at run time), and depends on the inputs through their shapes alone.
    seed = K_tensor("seed", np.zeros((), dtype=out.dtype))
    if out.ndim:
        size = 1
        for d in out.shape:
            size = size * d
        phase = K.reshape(K.cast(K.arange(size), out.dtype), out.shape)
        direction = 1.0 + 0.5 * K.sin(phase * seed + seed * seed)
        cost = K.sum(out * direction)
    else:
        cost = out
    # no_default_updates: draws (random streams) must give the same noise to every finite difference
    f_all = function(inputs + [seed], [cost, *grad(cost, inputs, disconnected_inputs="ignore")],
                     no_default_updates=True)
    for _ in range(n_tests):
        s = np.asarray(rng.uniform(1.0, 10.0), dtype=out.dtype)

        def f_cost(*args):
            return f_all(*args, s)[0]
        analytic = f_all(*pts, s)[1:]
        for k, (p, a) in enumerate(zip(pts, analytic)):
            numeric = _central_difference(f_cost, pts, k, eps)
            _compare(k, p, np.asarray(a, dtype=np.float64), numeric, abs_tol, rel_tol)


def K_tensor(name: str, p: np.ndarray) -> Variable:
    from irkit.leaves import tensor
    return tensor(name, shape=(None,) * p.ndim, dtype=p.dtype)


def _central_difference(f_cost, pts, k: int, eps: float) -> np.ndarray:
    x = pts[k].copy()
    out = np.zeros(x.shape, dtype=np.float64)
    args = list(pts)
    flat = x.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        args[k] = x
        up = float(f_cost(*args))
        flat[i] = old - eps
        down = float(f_cost(*args))
        flat[i] = old
        out.reshape(-1)[i] = (up - down) / (2 * eps)
    return out


def _compare(k: int, point: np.ndarray, analytic: np.ndarray, numeric: np.ndarray, abs_tol: float,
             rel_tol: float) -> None:
    abs_err = np.abs(analytic - numeric)
    rel_err = abs_err / np.maximum(np.abs(analytic) + np.abs(numeric), 1e-300)
    bad = (abs_err > abs_tol) & (rel_err > rel_tol) | np.isnan(analytic) != np.isnan(numeric)
    if bad.any():
        worst = np.unravel_index(np.argmax(np.where(bad, rel_err, -1)), analytic.shape) if analytic.ndim else ()
        raise GradientError(
            f"verify_grad: the gradient with respect to input {k} (shape {point.shape}) disagrees with "
            f"finite differences at {tuple(int(i) for i in worst)}: symbolic {analytic[worst]!r}, numeric "
            f"{numeric[worst]!r} (abs error {abs_err[worst]:.3g} > {abs_tol:g}, rel error "
            f"{rel_err[worst]:.3g} > {rel_tol:g}); {int(bad.sum())} of {bad.size} elements disagree")

