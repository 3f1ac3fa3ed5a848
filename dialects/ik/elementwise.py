"""Elementwise ops of `ik`: unary and binary math, comparisons, logic, where, clip, cast.

Shapes broadcast as numpy does (only static 1s broadcast); result dtypes are
numpy's own for the same ufunc (float16 widened to float32). Each op names its
numpy reference and how one element computes at the loops level.
"""

from __future__ import annotations

from typing import Callable, ClassVar, Sequence

import numpy as np
from xdsl.dialects import arith, math
from xdsl.dialects.builtin import TensorType
from xdsl.ir import SSAValue
from xdsl.irdl import irdl_op_definition, operand_def, result_def

from irkit.dialects.ik import scalar as S
from irkit.dialects.ik.base import IkOp, Params, broadcast_rule
from irkit.dtypes import float_result, promote, ufunc_result
from irkit import ops as K
from irkit.dialects.ik.calculus import as_dtype_of, batch_dims, float_dtype, unbroadcast, zeros_for
from irkit.errors import CompileError, DTypeError, GradientUndefinedError
from irkit.shapes import DimAlgebra
from irkit.types import dtype_of


class ElementwiseOp(IkOp):
    """An op applied element by element over broadcast operands."""

    FUSIBLE: ClassVar = True

    @classmethod
    def shape_rule(cls, d, operands, p):
        return [broadcast_rule(d, operands)]

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        return [ufunc_result(cls.NUMPY, tuple(dtypes))]

    @classmethod
    def compute_dtype(cls, dtypes: list[np.dtype], out: np.dtype) -> np.dtype:
        """The dtype operands are converted to before the scalar op runs."""
        return out

    def evaluate(self, p: Params, *args: np.ndarray) -> list[np.ndarray]:
        out_dt = dtype_of(self.results[0].type)
        with np.errstate(all="ignore"):
            out = np.asarray(type(self).NUMPY(*args))
            if out.dtype == np.float16:  # irkit has no half type: compute in float32, as the code does
                out = np.asarray(type(self).NUMPY(*[np.asarray(a).astype(out_dt) for a in args]))
        return [out.astype(out_dt, copy=False)]

    def emit_element(self, em, idx) -> SSAValue:
        out = dtype_of(self.results[0].type)
        dts = [dtype_of(v.type) for v in self.operands]
        cdt = self.compute_dtype(dts, out)
        args = [S.convert(em, em.operand(v, idx), dt, cdt)
                for v, dt in zip(self.operands, dts)]
        return self.scalar(em, *args, dt=cdt)

    def scalar(self, em, *args: SSAValue, dt: np.dtype) -> SSAValue:
        """One element of the result from one element of each operand, in dtype dt."""
        raise CompileError(f"{self.name} states no scalar rule")


# ---------------------------------------------------------------------------
# unary
# ---------------------------------------------------------------------------

class UnaryOp(ElementwiseOp):
    x = operand_def(TensorType)
    result = result_def(TensorType)

    def derivative(self, x, y):
        """dy/dx elementwise as a Variable; None for a zero derivative (piecewise constant).
        Ops without a derivative have no gradient (an error if a gradient must pass)."""
        raise GradientUndefinedError(f"{self.name} has no derivative")

    def vjp(self, g, ins, out):
        x = ins[0]
        if not float_dtype(x):
            return [None]
        d = self.derivative(x, out)
        if d is None:  # piecewise constant: a zero gradient, not a disconnected input
            return [zeros_for(x, g, batch_dims(g, out))]
        return [as_dtype_of(g * d, x)]

    def jvp(self, ts, ins, out):
        if ts[0] is None:
            return None
        d = self.derivative(ins[0], out)
        return None if d is None else as_dtype_of(ts[0] * d, out)


class UnaryMathOp(UnaryOp):
    """A float function from the `math` dialect; integer inputs convert first (numpy's rule)."""

    def scalar(self, em, x, dt):
        return em.emit(self.MATH_OP(x))

    def derivative(self, x, y):
        return type(self).DERIVATIVE(x, y)


def _unary_math(opname: str, fn: Callable, math_op: type, doc: str, derivative: Callable) -> type:
    """A unary math op: its numpy reference, its math-dialect op and dy/dx = derivative(x, y)."""
    cls = type(f"{opname.title().replace('_', '')}Op", (UnaryMathOp,),
               {"name": f"ik.{opname}", "NUMPY": staticmethod(fn), "MATH_OP": math_op, "__doc__": doc,
                "DERIVATIVE": staticmethod(derivative), "__module__": __name__,
                "__annotations__": {"NUMPY": "ClassVar", "MATH_OP": "ClassVar", "DERIVATIVE": "ClassVar"}})
    return irdl_op_definition(cls)


_LN2, _LN10 = float(np.log(2.0)), float(np.log(10.0))
ExpOp = _unary_math("exp", np.exp, math.ExpOp, "e**x", lambda x, y: y)
Exp2Op = _unary_math("exp2", np.exp2, math.Exp2Op, "2**x", lambda x, y: y * _LN2)
Expm1Op = _unary_math("expm1", np.expm1, math.ExpM1Op, "e**x - 1, accurate near 0", lambda x, y: y + 1)
LogOp = _unary_math("log", np.log, math.LogOp, "natural logarithm", lambda x, y: 1 / x)
Log2Op = _unary_math("log2", np.log2, math.Log2Op, "base-2 logarithm", lambda x, y: 1 / (x * _LN2))
Log10Op = _unary_math("log10", np.log10, math.Log10Op, "base-10 logarithm", lambda x, y: 1 / (x * _LN10))
Log1pOp = _unary_math("log1p", np.log1p, math.Log1pOp, "log(1 + x), accurate near 0", lambda x, y: 1 / (x + 1))
SqrtOp = _unary_math("sqrt", np.sqrt, math.SqrtOp, "square root", lambda x, y: 0.5 / y)
SinOp = _unary_math("sin", np.sin, math.SinOp, "sine", lambda x, y: K.cos(x))
CosOp = _unary_math("cos", np.cos, math.CosOp, "cosine", lambda x, y: -K.sin(x))
TanOp = _unary_math("tan", np.tan, math.TanOp, "tangent", lambda x, y: 1 + y * y)
SinhOp = _unary_math("sinh", np.sinh, math.SinhOp, "hyperbolic sine", lambda x, y: K.cosh(x))
CoshOp = _unary_math("cosh", np.cosh, math.CoshOp, "hyperbolic cosine", lambda x, y: K.sinh(x))
TanhOp = _unary_math("tanh", np.tanh, math.TanhOp, "hyperbolic tangent", lambda x, y: 1 - y * y)
ArcsinOp = _unary_math("arcsin", np.arcsin, math.AsinOp, "inverse sine", lambda x, y: 1 / K.sqrt(1 - x * x))
ArccosOp = _unary_math("arccos", np.arccos, math.AcosOp, "inverse cosine", lambda x, y: -1 / K.sqrt(1 - x * x))
ArctanOp = _unary_math("arctan", np.arctan, math.AtanOp, "inverse tangent", lambda x, y: 1 / (1 + x * x))
ArcsinhOp = _unary_math("arcsinh", np.arcsinh, math.AsinhOp, "inverse hyperbolic sine",
                        lambda x, y: 1 / K.sqrt(x * x + 1))
ArccoshOp = _unary_math("arccosh", np.arccosh, math.AcoshOp, "inverse hyperbolic cosine",
                        lambda x, y: 1 / K.sqrt(x * x - 1))
ArctanhOp = _unary_math("arctanh", np.arctanh, math.AtanhOp, "inverse hyperbolic tangent",
                        lambda x, y: 1 / (1 - x * x))
def _erf(x: np.ndarray) -> np.ndarray:
    import scipy.special  # on first use: it costs a second at import
    return scipy.special.erf(x)


ErfOp = _unary_math("erf", _erf, math.ErfOp, "the error function",
                    lambda x, y: float(2 / np.sqrt(np.pi)) * K.exp(-x * x))


def _same_dtype(dtypes: Sequence[np.dtype]) -> np.dtype:
    return dtypes[0]


@irdl_op_definition
class NegOp(UnaryOp):
    """-x (not defined for bool, as in numpy)."""

    name = "ik.neg"
    NUMPY: ClassVar = staticmethod(np.negative)

    def scalar(self, em, x, dt):
        if dt.kind == "f":
            return em.emit(arith.NegfOp(x))
        return em.emit(arith.SubiOp(S.constant(em, 0, dt), x))

    def derivative(self, x, y):
        return -1.0


@irdl_op_definition
class AbsOp(UnaryOp):
    """|x|."""

    name = "ik.abs"
    NUMPY: ClassVar = staticmethod(np.abs)

    def scalar(self, em, x, dt):
        if dt.kind == "f":
            return em.emit(math.AbsFOp(x))
        if S.is_unsigned(dt):
            return x
        return em.emit(math.AbsIOp(x))

    def derivative(self, x, y):
        return K.sign(x)  # 0 at 0 (the subgradient numpy's sign gives)


@irdl_op_definition
class SignOp(UnaryOp):
    """-1, 0 or 1 by the sign of x; NaN stays NaN (numpy's sign)."""

    name = "ik.sign"
    NUMPY: ClassVar = staticmethod(np.sign)

    def scalar(self, em, x, dt):
        zero, one, minus = S.constant(em, 0, dt), S.constant(em, 1, dt), S.constant(em, -1, dt)
        if dt.kind == "f":
            pos = em.emit(arith.CmpfOp(x, zero, "ogt"))
            neg = em.emit(arith.CmpfOp(x, zero, "olt"))
            zero_or_nan = em.emit(arith.SelectOp(em.emit(arith.CmpfOp(x, x, "uno")), x, zero))
            return em.emit(arith.SelectOp(pos, one, em.emit(arith.SelectOp(neg, minus, zero_or_nan))))
        pos = em.emit(arith.CmpiOp(x, zero, "ugt" if S.is_unsigned(dt) else "sgt"))
        if S.is_unsigned(dt):
            return em.emit(arith.SelectOp(pos, one, zero))
        neg = em.emit(arith.CmpiOp(x, zero, "slt"))
        return em.emit(arith.SelectOp(pos, one, em.emit(arith.SelectOp(neg, minus, zero))))

    def derivative(self, x, y):
        return None  # piecewise constant: zero gradient


class _RoundingOp(UnaryOp):
    """Rounding to an integral value; the identity on integer dtypes."""


    def scalar(self, em, x, dt):
        return em.emit(self.MATH_OP(x)) if dt.kind == "f" else x

    def derivative(self, x, y):
        return None  # piecewise constant: zero gradient


@irdl_op_definition
class FloorOp(_RoundingOp):
    """Largest integer <= x."""

    name = "ik.floor"
    NUMPY: ClassVar = staticmethod(np.floor)
    MATH_OP: ClassVar = math.FloorOp


@irdl_op_definition
class CeilOp(_RoundingOp):
    """Smallest integer >= x."""

    name = "ik.ceil"
    NUMPY: ClassVar = staticmethod(np.ceil)
    MATH_OP: ClassVar = math.CeilOp


@irdl_op_definition
class RoundOp(_RoundingOp):
    """Round to nearest, ties to even (numpy's round)."""

    name = "ik.round"
    NUMPY: ClassVar = staticmethod(np.round)
    MATH_OP: ClassVar = math.RoundEvenOp


@irdl_op_definition
class TruncOp(_RoundingOp):
    """Round toward zero."""

    name = "ik.trunc"
    NUMPY: ClassVar = staticmethod(np.trunc)
    MATH_OP: ClassVar = math.TruncOp


def _np_sigmoid(x):
    x = np.asarray(x)
    x = x.astype(float_result(x.dtype), copy=False)  # the dtype of np.exp(x), before negating
    return 1.0 / (1.0 + np.exp(-x))


def _np_softplus(x):
    x = np.asarray(x)
    x = x.astype(float_result(x.dtype), copy=False)
    return np.logaddexp(np.zeros((), x.dtype), x)


def _np_relu(x):
    x = np.asarray(x)
    return np.maximum(x, np.zeros((), x.dtype))


@irdl_op_definition
class SigmoidOp(UnaryOp):
    """1 / (1 + e**-x)."""

    name = "ik.sigmoid"
    NUMPY: ClassVar = staticmethod(_np_sigmoid)

    def scalar(self, em, x, dt):
        one = S.constant(em, 1.0, dt)
        e = em.emit(math.ExpOp(em.emit(arith.NegfOp(x))))
        return em.emit(arith.DivfOp(one, em.emit(arith.AddfOp(one, e))))

    def derivative(self, x, y):
        return y * (1 - y)


@irdl_op_definition
class SoftplusOp(UnaryOp):
    """log(1 + e**x), computed as max(x, 0) + log1p(e**-|x|) so it never overflows."""

    name = "ik.softplus"
    NUMPY: ClassVar = staticmethod(_np_softplus)

    def scalar(self, em, x, dt):
        zero = S.constant(em, 0.0, dt)
        pos = em.emit(arith.MaximumfOp(x, zero))
        tail = em.emit(math.Log1pOp(em.emit(math.ExpOp(em.emit(arith.NegfOp(em.emit(math.AbsFOp(x))))))))
        return em.emit(arith.AddfOp(pos, tail))

    def derivative(self, x, y):
        return K.sigmoid(x)


@irdl_op_definition
class ReluOp(UnaryOp):
    """max(x, 0); NaN stays NaN."""

    name = "ik.relu"
    NUMPY: ClassVar = staticmethod(_np_relu)

    def scalar(self, em, x, dt):
        zero = S.constant(em, 0, dt)
        if dt.kind == "f":
            return em.emit(arith.MaximumfOp(x, zero))
        if S.is_unsigned(dt):
            return x
        return em.emit(arith.MaxSIOp(x, zero))

    def derivative(self, x, y):
        return K.cast(x > 0, y.dtype)  # 0 at 0


@irdl_op_definition
class SquareOp(UnaryOp):
    """x * x."""

    name = "ik.square"
    NUMPY: ClassVar = staticmethod(np.square)

    def scalar(self, em, x, dt):
        if dt.kind == "f":
            return em.emit(arith.MulfOp(x, x))
        if dt.kind == "b":
            return x
        return em.emit(arith.MuliOp(x, x))

    def derivative(self, x, y):
        return 2 * x


@irdl_op_definition
class InvertOp(UnaryOp):
    """~x: logical not on bool, bitwise not on integers."""

    name = "ik.invert"
    NUMPY: ClassVar = staticmethod(np.invert)

    def scalar(self, em, x, dt):
        ones = S.constant(em, True if dt.kind == "b" else -1, dt)
        return em.emit(arith.XOrIOp(x, ones))


class _FloatClassOp(UnaryOp):
    """A bool-valued test of a float; fixed for integer inputs."""


    def emit_element(self, em, idx):
        dt = dtype_of(self.x.type)
        x = em.operand(self.x, idx)
        if dt.kind != "f":
            return S.constant(em, self.INT_ANSWER, np.dtype(bool))
        return self.test(em, x, dt)


@irdl_op_definition
class IsnanOp(_FloatClassOp):
    """x is NaN."""

    name = "ik.isnan"
    NUMPY: ClassVar = staticmethod(np.isnan)
    INT_ANSWER: ClassVar = False

    def test(self, em, x, dt):
        return em.emit(arith.CmpfOp(x, x, "uno"))


@irdl_op_definition
class IsinfOp(_FloatClassOp):
    """x is +inf or -inf."""

    name = "ik.isinf"
    NUMPY: ClassVar = staticmethod(np.isinf)
    INT_ANSWER: ClassVar = False

    def test(self, em, x, dt):
        return em.emit(arith.CmpfOp(em.emit(math.AbsFOp(x)), S.constant(em, np.inf, dt), "oeq"))


@irdl_op_definition
class IsfiniteOp(_FloatClassOp):
    """x is neither NaN nor infinite."""

    name = "ik.isfinite"
    NUMPY: ClassVar = staticmethod(np.isfinite)
    INT_ANSWER: ClassVar = True

    def test(self, em, x, dt):
        return em.emit(arith.CmpfOp(em.emit(math.AbsFOp(x)), S.constant(em, np.inf, dt), "olt"))


# ---------------------------------------------------------------------------
# binary
# ---------------------------------------------------------------------------

class BinaryOp(ElementwiseOp):
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    result = result_def(TensorType)

    def partials(self, a, b, out):
        """(d out/d a, d out/d b) elementwise: Variables or numbers, None for zero."""
        raise GradientUndefinedError(f"{self.name} has no derivative")

    def vjp(self, g, ins, out):
        a, b = ins
        nb = batch_dims(g, out)
        return [_cotangent(g, d, x, nb) for d, x in zip(self.partials(a, b, out), ins)]

    def jvp(self, ts, ins, out):
        return _tangent(ts, self.partials(*ins, out), out)

    INDEX_RULE: ClassVar[str | None] = None  # the DimAlgebra method a 0-d integer result is

    def index_value(self, d: DimAlgebra):
        """A 0-d integer add/sub/mul/... of sizes is itself a size (n * 2, n // 3)."""
        if self.INDEX_RULE is None or self.result.type.get_shape() or \
                dtype_of(self.result.type).kind not in "iu":
            return NotImplemented
        return getattr(d, self.INDEX_RULE)(d.value(self.lhs), d.value(self.rhs))


def _cotangent(g, d, x, nb: int):
    """The cotangent of operand x from the result's g and the partial d (None: zero)."""
    if not float_dtype(x):
        return None
    if d is None:  # piecewise constant: a zero gradient, not a disconnected input
        return zeros_for(x, g, nb)
    return unbroadcast(g if isinstance(d, (int, float)) and d == 1 else g * d, x, nb)


def _tangent(ts, partials, out):
    """The result's tangent: the sum of each operand's tangent times its partial."""
    total = None
    for t, d in zip(ts, partials):
        if t is None or d is None:
            continue
        term = t if isinstance(d, (int, float)) and d == 1 else t * d
        total = term if total is None else total + term
    if total is None:
        return None
    total = as_dtype_of(total, out)
    if total.static_shape != out.static_shape:
        total = K.broadcast_to(total, out.shape)
    return total


def _by_kind(dt: np.dtype, f, i, u=None, b=None):
    kind = np.dtype(dt).kind
    chosen = {"f": f, "i": i, "u": u if u is not None else i, "b": b if b is not None else (u or i)}[kind]
    if chosen is None:
        raise DTypeError(f"no scalar form for {np.dtype(dt).name}")
    return chosen


@irdl_op_definition
class AddOp(BinaryOp):
    """a + b (logical or on bool, as numpy)."""

    name = "ik.add"
    NUMPY: ClassVar = staticmethod(np.add)
    INDEX_RULE: ClassVar = "add"

    def scalar(self, em, a, b, dt):
        return em.emit(_by_kind(dt, arith.AddfOp, arith.AddiOp, b=arith.OrIOp)(a, b))

    def partials(self, a, b, out):
        return 1, 1


@irdl_op_definition
class SubOp(BinaryOp):
    """a - b."""

    name = "ik.sub"
    NUMPY: ClassVar = staticmethod(np.subtract)
    INDEX_RULE: ClassVar = "sub"

    def scalar(self, em, a, b, dt):
        return em.emit(_by_kind(dt, arith.SubfOp, arith.SubiOp)(a, b))

    def partials(self, a, b, out):
        return 1, -1


@irdl_op_definition
class MulOp(BinaryOp):
    """a * b (logical and on bool)."""

    name = "ik.mul"
    NUMPY: ClassVar = staticmethod(np.multiply)
    INDEX_RULE: ClassVar = "mul"

    def scalar(self, em, a, b, dt):
        return em.emit(_by_kind(dt, arith.MulfOp, arith.MuliOp, b=arith.AndIOp)(a, b))

    def partials(self, a, b, out):
        return b, a


@irdl_op_definition
class TrueDivOp(BinaryOp):
    """a / b in floating point (integers convert first, as numpy)."""

    name = "ik.truediv"
    NUMPY: ClassVar = staticmethod(np.true_divide)

    def scalar(self, em, a, b, dt):
        return em.emit(arith.DivfOp(a, b))

    def partials(self, a, b, out):
        return 1 / b, -out / b


@irdl_op_definition
class FloorDivOp(BinaryOp):
    """a // b with Python's rounding (x // 0 is 0 for integers, as numpy)."""

    name = "ik.floordiv"
    NUMPY: ClassVar = staticmethod(np.floor_divide)
    INDEX_RULE: ClassVar = "floordiv"

    def scalar(self, em, a, b, dt):
        return S.floor_divide(em, a, b, dt)

    def partials(self, a, b, out):
        return None, None  # piecewise constant


@irdl_op_definition
class ModOp(BinaryOp):
    """a % b with the sign of b (numpy's remainder)."""

    name = "ik.mod"
    NUMPY: ClassVar = staticmethod(np.remainder)

    def scalar(self, em, a, b, dt):
        return S.remainder(em, a, b, dt)

    def partials(self, a, b, out):
        return 1, -K.floor(a / b)  # numpy: a % b = a - floor(a / b) * b


@irdl_op_definition
class PowOp(BinaryOp):
    """a ** b; a negative integer exponent of an integer is an error, as in numpy."""

    name = "ik.pow"
    NUMPY: ClassVar = staticmethod(np.power)

    def scalar(self, em, a, b, dt):
        return S.power(em, a, b, dt)

    def partials(self, a, b, out):
        # d/db is log(a) a**b where a > 0, 0 elsewhere (a**b is 0 or undefined there)
        return b * a ** (b - 1), K.where(a > 0, K.log(K.where(a > 0, a, 1)) * out, 0)


@irdl_op_definition
class MaximumOp(BinaryOp):
    """Elementwise max; NaN propagates."""

    name = "ik.maximum"
    NUMPY: ClassVar = staticmethod(np.maximum)
    INDEX_RULE: ClassVar = "maximum"

    def scalar(self, em, a, b, dt):
        return em.emit(_by_kind(dt, arith.MaximumfOp, arith.MaxSIOp, u=arith.MaxUIOp, b=arith.OrIOp)(a, b))

    def partials(self, a, b, out):
        return K.cast(a >= b, out.dtype), K.cast(a < b, out.dtype)  # a tie goes to a


@irdl_op_definition
class MinimumOp(BinaryOp):
    """Elementwise min; NaN propagates."""

    name = "ik.minimum"
    NUMPY: ClassVar = staticmethod(np.minimum)
    INDEX_RULE: ClassVar = "minimum"

    def scalar(self, em, a, b, dt):
        return em.emit(_by_kind(dt, arith.MinimumfOp, arith.MinSIOp, u=arith.MinUIOp, b=arith.AndIOp)(a, b))

    def partials(self, a, b, out):
        return K.cast(a <= b, out.dtype), K.cast(a > b, out.dtype)  # a tie goes to a


@irdl_op_definition
class Arctan2Op(BinaryOp):
    """The angle of the point (b, a), as numpy's arctan2."""

    name = "ik.arctan2"
    NUMPY: ClassVar = staticmethod(np.arctan2)

    def scalar(self, em, a, b, dt):
        return em.emit(math.Atan2Op(a, b))

    def partials(self, a, b, out):
        r2 = a * a + b * b
        return b / r2, -a / r2


class _BitwiseOp(BinaryOp):
    """Logical on bool, bitwise on integers; undefined on floats (as numpy)."""


    def scalar(self, em, a, b, dt):
        return em.emit(self.ARITH_OP(a, b))


@irdl_op_definition
class AndOp(_BitwiseOp):
    """a & b."""

    name = "ik.and"
    NUMPY: ClassVar = staticmethod(np.bitwise_and)
    ARITH_OP: ClassVar = arith.AndIOp


@irdl_op_definition
class OrOp(_BitwiseOp):
    """a | b."""

    name = "ik.or"
    NUMPY: ClassVar = staticmethod(np.bitwise_or)
    ARITH_OP: ClassVar = arith.OrIOp


@irdl_op_definition
class XorOp(_BitwiseOp):
    """a ^ b."""

    name = "ik.xor"
    NUMPY: ClassVar = staticmethod(np.bitwise_xor)
    ARITH_OP: ClassVar = arith.XOrIOp


class CompareOp(BinaryOp):
    """A comparison; both sides convert to their common dtype first."""

    INT_PRED: ClassVar[str]  # the signed form; "s" becomes "u" for uint8 and bool

    @classmethod
    def compute_dtype(cls, dtypes, out):
        return promote(*dtypes)

    def scalar(self, em, a, b, dt):
        if dt.kind == "f":
            return em.emit(arith.CmpfOp(a, b, self.FLOAT_PRED))
        pred = self.INT_PRED
        if S.is_unsigned(dt) and pred[0] == "s":
            pred = "u" + pred[1:]
        return em.emit(arith.CmpiOp(a, b, pred))


def _compare(opname: str, fn: Callable, fpred: str, ipred: str, doc: str) -> type:
    cls = type(f"{opname.title()}Op", (CompareOp,),
               {"name": f"ik.{opname}", "NUMPY": staticmethod(fn), "FLOAT_PRED": fpred,
                "INT_PRED": ipred, "__doc__": doc, "__module__": __name__,
                "__annotations__": {"NUMPY": "ClassVar", "FLOAT_PRED": "ClassVar", "INT_PRED": "ClassVar"}})
    return irdl_op_definition(cls)


EqOp = _compare("eq", np.equal, "oeq", "eq", "a == b")
NeOp = _compare("ne", np.not_equal, "une", "ne", "a != b (true when either is NaN)")
LtOp = _compare("lt", np.less, "olt", "slt", "a < b")
LeOp = _compare("le", np.less_equal, "ole", "sle", "a <= b")
GtOp = _compare("gt", np.greater, "ogt", "sgt", "a > b")
GeOp = _compare("ge", np.greater_equal, "oge", "sge", "a >= b")


# ---------------------------------------------------------------------------
# where, clip, cast
# ---------------------------------------------------------------------------

@irdl_op_definition
class WhereOp(ElementwiseOp):
    """cond ? a : b, elementwise and eager (both sides are computed)."""

    name = "ik.where"
    cond = operand_def(TensorType)
    a = operand_def(TensorType)
    b = operand_def(TensorType)
    result = result_def(TensorType)
    NUMPY: ClassVar = staticmethod(np.where)

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        return [promote(dtypes[1], dtypes[2])]

    def vjp(self, g, ins, out):
        c, a, b = ins
        nb = batch_dims(g, out)
        zero = K.zeros((), g.dtype)
        return [None, _cotangent(K.where(c, g, zero), 1, a, nb), _cotangent(K.where(c, zero, g), 1, b, nb)]

    def jvp(self, ts, ins, out):
        if ts[1] is None and ts[2] is None:
            return None
        zero = K.zeros((), out.dtype)
        ta = ts[1] if ts[1] is not None else zero
        tb = ts[2] if ts[2] is not None else zero
        return _tangent([K.where(ins[0], ta, tb)], [1], out)

    def emit_element(self, em, idx):
        out = dtype_of(self.result.type)
        c = S.convert(em, em.operand(self.cond, idx), dtype_of(self.cond.type), np.dtype(bool))
        a = S.convert(em, em.operand(self.a, idx), dtype_of(self.a.type), out)
        b = S.convert(em, em.operand(self.b, idx), dtype_of(self.b.type), out)
        return em.emit(arith.SelectOp(c, a, b))


@irdl_op_definition
class ClipOp(ElementwiseOp):
    """min(max(x, lo), hi), as numpy's clip; NaN propagates."""

    name = "ik.clip"
    x = operand_def(TensorType)
    lo = operand_def(TensorType)
    hi = operand_def(TensorType)
    result = result_def(TensorType)
    NUMPY: ClassVar = staticmethod(np.clip)

    def vjp(self, g, ins, out):
        x, lo, hi = ins
        nb = batch_dims(g, out)
        return [_cotangent(g, d, v, nb) for d, v in zip(self._partials(x, lo, hi, out), ins)]

    def jvp(self, ts, ins, out):
        return _tangent(ts, self._partials(*ins, out), out)

    @staticmethod
    def _partials(x, lo, hi, out):
        """x passes through between the bounds, bounds included; a bound below or above."""
        dt = out.dtype
        return (K.cast((x >= lo) & (x <= hi), dt), K.cast(x < lo, dt), K.cast(x > hi, dt))

    def scalar(self, em, x, lo, hi, dt):
        mx = _by_kind(dt, arith.MaximumfOp, arith.MaxSIOp, u=arith.MaxUIOp, b=arith.OrIOp)
        mn = _by_kind(dt, arith.MinimumfOp, arith.MinSIOp, u=arith.MinUIOp, b=arith.AndIOp)
        return em.emit(mn(em.emit(mx(x, lo)), hi))


@irdl_op_definition
class CastOp(ElementwiseOp):
    """x.astype(dtype): floats to integers truncate toward zero; nonzero is True."""

    name = "ik.cast"
    x = operand_def(TensorType)
    result = result_def(TensorType)

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        if dtype is None:
            raise DTypeError("ik.cast needs a target dtype")
        return [np.dtype(dtype)]

    def evaluate(self, p, x):
        with np.errstate(all="ignore"):
            return [np.asarray(x).astype(dtype_of(self.result.type))]

    def vjp(self, g, ins, out):
        return [as_dtype_of(g, ins[0]) if float_dtype(ins[0]) else None]

    def jvp(self, ts, ins, out):
        return as_dtype_of(ts[0], out) if ts[0] is not None and float_dtype(out) else None

    def emit_element(self, em, idx):
        x = em.operand(self.x, idx)
        return S.convert(em, x, dtype_of(self.x.type), dtype_of(self.result.type))

    def index_value(self, d):
        src, dst = dtype_of(self.x.type), dtype_of(self.result.type)
        if self.result.type.get_shape() or src.kind not in "iu" or dst.kind not in "iu":
            return NotImplemented
        return d.value(self.x)


UNARY_MATH = [ExpOp, Exp2Op, Expm1Op, LogOp, Log2Op, Log10Op, Log1pOp, SqrtOp, SinOp, CosOp, TanOp,
              SinhOp, CoshOp, TanhOp, ArcsinOp, ArccosOp, ArctanOp, ArcsinhOp, ArccoshOp, ArctanhOp, ErfOp]
UNARY = UNARY_MATH + [NegOp, AbsOp, SignOp, FloorOp, CeilOp, RoundOp, TruncOp, SigmoidOp, SoftplusOp,
                      ReluOp, SquareOp, InvertOp, IsnanOp, IsinfOp, IsfiniteOp]
BINARY = [AddOp, SubOp, MulOp, TrueDivOp, FloorDivOp, ModOp, PowOp, MaximumOp, MinimumOp, Arctan2Op,
          AndOp, OrOp, XorOp, EqOp, NeOp, LtOp, LeOp, GtOp, GeOp]
OPS = UNARY + BINARY + [WhereOp, ClipOp, CastOp]
