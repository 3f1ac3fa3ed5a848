"""Reductions of `ik`: sum, prod, max, min, argmax, argmin, any, all.

`axes` are normalised (sorted, non-negative) and `keepdims` keeps them as
size 1. Dtypes are numpy's: sums and products of small integers and bools
give int64; argmax gives int64. float32 sums and products accumulate in
float64, so a sum of 10**7 float32 values stays within 1e-6 relative error.
max/min/argmax/argmin of nothing is an error (checked statically when the
size is known, at run time otherwise); the sum of nothing is 0.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import numpy as np
from xdsl.dialects import arith
from xdsl.dialects.arith import FastMathFlagsAttr
from xdsl.dialects.builtin import TensorType
from xdsl.irdl import irdl_op_definition, operand_def, result_def

from irkit import ops as K
from irkit.dialects.ik import scalar as S
from irkit.dialects.ik.base import IkOp
from irkit.dialects.ik.calculus import as_dtype_of, batch_dims, expand_reduced, float_dtype
from irkit.dtypes import ufunc_result
from irkit.errors import ShapeError
from irkit.types import dtype_of

_REASSOC = FastMathFlagsAttr(["reassoc"])


class AxesReduction(IkOp):
    """An op that reduces x over `axes`: the shape rule and, from the partial derivative
    each states, the derivative rules. ik.logsumexp is one too."""

    x = operand_def(TensorType)
    result = result_def(TensorType)
    PARAMS: ClassVar = {"axes": (), "keepdims": False}
    NEEDS_ELEMENTS: ClassVar = False  # max of nothing is an error

    @classmethod
    def check_operands(cls, operands, p):
        rank = len(operands[0].type.get_shape())
        if any(not 0 <= a < rank for a in p.axes) or list(p.axes) != sorted(set(p.axes)):
            raise ShapeError(f"axes {p.axes} must be sorted, distinct and within rank {rank}")

    @classmethod
    def shape_rule(cls, d, operands, p):
        xs = d.shape_of(operands[0])
        if cls.NEEDS_ELEMENTS:
            d.check(d.lt(0, d.product([xs[a] for a in p.axes])),
                    f"zero-size array to reduction operation {cls.NUMPY_NAME} which has no identity")
        if p.keepdims:
            return [[1 if k in p.axes else s for k, s in enumerate(xs)]]
        return [[s for k, s in enumerate(xs) if k not in p.axes]]

    # the derivative rules, from the partial derivative each differentiable reduction states
    def partial(self, x, out):
        """d out / d x, broadcasting against x with the reduced axes kept: 1 for a sum;
        None where there is no derivative."""
        return None

    def vjp(self, g, ins, out):
        x = ins[0]
        d = self.partial(x, out) if float_dtype(x) else None
        if d is None:
            return [None]
        p = self.params
        gx = expand_reduced(g, x, p.axes, p.keepdims, batch_dims(g, out))
        return [as_dtype_of(gx if isinstance(d, int) else gx * d, x)]

    def jvp(self, ts, ins, out):
        d = None if ts[0] is None else self.partial(ins[0], out)
        if d is None:
            return None
        p = self.params
        return as_dtype_of(K.sum(ts[0] if isinstance(d, int) else ts[0] * d, p.axes, p.keepdims), out)


class ReduceOp(AxesReduction):
    """A reduction over `axes` of x, lowered to an accumulating loop."""

    FUSIBLE: ClassVar = True

    def evaluate(self, p, x):
        fn = getattr(np, self.NUMPY_NAME)
        out = fn(x, axis=p.axes, keepdims=p.keepdims)
        return [np.asarray(out).astype(dtype_of(self.result.type), copy=False)]

    def source_index(self, idx):
        """Map an output index to x's index with None at the reduced axes."""
        p = self.params
        rank = len(self.x.type.get_shape())
        it = iter(idx)
        src = []
        for k in range(rank):
            if k in p.axes:
                if p.keepdims:
                    next(it)
                src.append(None)
            else:
                src.append(next(it))
        return src

    def emit_element(self, em, idx):
        p = self.params
        src = self.source_index(idx)
        xdims = em.dims(self.x)
        extents = [xdims[a] for a in p.axes]
        xdt = dtype_of(self.x.type)
        acc_dt = self.accumulator_dtype(xdt)
        inits = self.initial(em, acc_dt)

        def body(ivs, accs):
            full = list(src)
            for a, iv in zip(p.axes, ivs):
                full[a] = iv
            x = S.convert(em, em.at(self.x, full), xdt, acc_dt)
            return self.combine(em, accs, x, ivs, extents, acc_dt)

        finals = em.reduce_loop(extents, inits, body, depends_on=idx)
        return S.convert(em, finals[0], self.final_dtype(acc_dt), dtype_of(self.result.type))

    # what each reduction states
    def accumulator_dtype(self, xdt: np.dtype) -> np.dtype:
        return dtype_of(self.result.type)

    def final_dtype(self, acc_dt: np.dtype) -> np.dtype:
        return acc_dt

    @abc.abstractmethod
    def initial(self, em, dt: np.dtype) -> list:
        """The accumulators' starting values."""

    @abc.abstractmethod
    def combine(self, em, accs, x, ivs, extents, dt) -> list:
        """The accumulators after taking element x (at reduction index ivs within extents)."""


class _AddLike(ReduceOp):
    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        return [ufunc_result(getattr(np, cls.NUMPY_NAME), (dtypes[0],))]

    def accumulator_dtype(self, xdt):
        out = dtype_of(self.result.type)
        return np.dtype(np.float64) if out == np.float32 else out


@irdl_op_definition
class SumOp(_AddLike):
    """Sum over axes; 0 for no elements."""

    name = "ik.sum"
    NUMPY_NAME: ClassVar = "sum"

    def initial(self, em, dt):
        return [S.constant(em, 0, dt)]

    def combine(self, em, accs, x, ivs, extents, dt):
        return [S.add(em, accs[0], x, dt, _REASSOC)]

    def partial(self, x, out):
        return 1


@irdl_op_definition
class ProdOp(_AddLike):
    """Product over axes; 1 for no elements."""

    name = "ik.prod"
    NUMPY_NAME: ClassVar = "prod"

    def initial(self, em, dt):
        return [S.constant(em, 1, dt)]

    def combine(self, em, accs, x, ivs, extents, dt):
        return [S.mul(em, accs[0], x, dt, _REASSOC)]

    def partial(self, x, out):
        """d prod / d x_i: the product of the others, exact with zeros (no division by 0):
        y / x_i without zeros; with one zero, the others' product at the zero, 0 elsewhere."""
        p = self.params
        zero = x == 0
        zeros = K.sum(K.cast(zero, "int64"), p.axes, keepdims=True)
        nonzero_prod = K.prod(K.where(zero, K.ones((), x.dtype), x), p.axes, keepdims=True)
        y = out if p.keepdims else K.expand_dims(out, p.axes) if p.axes else out
        safe = K.where(zero, K.ones((), x.dtype), x)
        return K.where(zeros == 0, y / safe, K.where((zeros == 1) & zero, nonzero_prod, K.zeros((), x.dtype)))



class _MaxLike(ReduceOp):
    NEEDS_ELEMENTS: ClassVar = True

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        return [dtypes[0]]

    def initial(self, em, dt):
        if dt.kind == "f":
            return [S.constant(em, -np.inf if self.IS_MAX else np.inf, dt)]
        if dt.kind == "b":
            return [S.constant(em, not self.IS_MAX, dt)]
        info = np.iinfo(dt)
        return [S.constant(em, info.min if self.IS_MAX else info.max, dt)]

    def combine(self, em, accs, x, ivs, extents, dt):
        if dt.kind == "f":
            op = arith.MaximumfOp if self.IS_MAX else arith.MinimumfOp
            return [em.emit(op(accs[0], x))]
        if S.is_unsigned(dt):
            op = arith.MaxUIOp if self.IS_MAX else arith.MinUIOp
        else:
            op = arith.MaxSIOp if self.IS_MAX else arith.MinSIOp
        return [em.emit(op(accs[0], x))]

    def partial(self, x, out):
        """The gradient goes to the extreme elements, split equally among ties."""
        p = self.params
        y = out if p.keepdims else K.expand_dims(out, p.axes) if p.axes else out
        hit = K.cast(x == y, x.dtype)
        return hit / K.sum(hit, p.axes, keepdims=True)


@irdl_op_definition
class MaxOp(_MaxLike):
    """Largest element over axes; NaN propagates."""

    name = "ik.max"
    NUMPY_NAME: ClassVar = "max"
    IS_MAX: ClassVar = True


@irdl_op_definition
class MinOp(_MaxLike):
    """Smallest element over axes; NaN propagates."""

    name = "ik.min"
    NUMPY_NAME: ClassVar = "min"
    IS_MAX: ClassVar = False


class _ArgLike(ReduceOp):
    """Index of the first extreme element (the first NaN wins), flattened over `axes`."""

    NEEDS_ELEMENTS: ClassVar = True

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        return [np.dtype(np.int64)]

    def evaluate(self, p, x):
        fn = np.argmax if self.IS_MAX else np.argmin
        rank = x.ndim
        rest = [k for k in range(rank) if k not in p.axes]
        moved = np.transpose(x, rest + list(p.axes))
        flat = moved.reshape(moved.shape[:len(rest)] + (-1,))
        out = fn(flat, axis=-1)
        if p.keepdims:
            out = np.expand_dims(out, p.axes)
        return [np.asarray(out, dtype=np.int64)]

    def accumulator_dtype(self, xdt):
        return xdt

    def final_dtype(self, acc_dt):
        return np.dtype(np.int64)

    def initial(self, em, dt):
        if dt.kind == "f":
            best = S.constant(em, -np.inf if self.IS_MAX else np.inf, dt)
        elif dt.kind == "b":
            best = S.constant(em, not self.IS_MAX, dt)
        else:
            info = np.iinfo(dt)
            best = S.constant(em, info.min if self.IS_MAX else info.max, dt)
        return [S.constant(em, 0, np.dtype(np.int64)), best]

    def combine(self, em, accs, x, ivs, extents, dt):
        index, best = accs
        if dt.kind == "f":
            better = em.emit(arith.CmpfOp(x, best, "ogt" if self.IS_MAX else "olt"))
            x_nan = em.emit(arith.CmpfOp(x, x, "uno"))
            best_ok = em.emit(arith.CmpfOp(best, best, "ord"))
            better = em.emit(arith.OrIOp(better, em.emit(arith.AndIOp(x_nan, best_ok))))
        else:
            pred = ("ugt" if self.IS_MAX else "ult") if S.is_unsigned(dt) else ("sgt" if self.IS_MAX else "slt")
            better = em.emit(arith.CmpiOp(x, best, pred))
        linear = em.linear_index(ivs, extents)
        return [em.emit(arith.SelectOp(better, linear, index)), em.emit(arith.SelectOp(better, x, best))]


@irdl_op_definition
class ArgmaxOp(_ArgLike):
    """Index of the largest element."""

    name = "ik.argmax"
    NUMPY_NAME: ClassVar = "argmax"
    IS_MAX: ClassVar = True


@irdl_op_definition
class ArgminOp(_ArgLike):
    """Index of the smallest element."""

    name = "ik.argmin"
    NUMPY_NAME: ClassVar = "argmin"
    IS_MAX: ClassVar = False


class _BoolReduce(ReduceOp):

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        return [np.dtype(bool)]

    def accumulator_dtype(self, xdt):
        return np.dtype(bool)

    def initial(self, em, dt):
        return [S.constant(em, not self.IS_ANY, dt)]

    def combine(self, em, accs, x, ivs, extents, dt):
        return [em.emit((arith.OrIOp if self.IS_ANY else arith.AndIOp)(accs[0], x))]


@irdl_op_definition
class AnyOp(_BoolReduce):
    """Whether any element is nonzero."""

    name = "ik.any"
    NUMPY_NAME: ClassVar = "any"
    IS_ANY: ClassVar = True


@irdl_op_definition
class AllOp(_BoolReduce):
    """Whether every element is nonzero."""

    name = "ik.all"
    NUMPY_NAME: ClassVar = "all"
    IS_ANY: ClassVar = False


OPS = [SumOp, ProdOp, MaxOp, MinOp, ArgmaxOp, ArgminOp, AnyOp, AllOp]
