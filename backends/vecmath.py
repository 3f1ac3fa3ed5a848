"""exp, log, log1p and tanh as straight-line LLVM IR, for hosts without glibc's libmvec (macOS,
Windows, musl, or IRKIT_LIBMVEC=0).

With libmvec, a loop calling `expf` vectorises because the call carries its vector variant
(`backends/llvm.py`, `Translator.libm`). Without it, a libm call keeps the loop scalar. These
forms are made of arithmetic, bit operations, `llvm.fma` and `llvm.rint` only, inlined where
they are called, so the loop vectoriser widens them like any other arithmetic.

Each is the classic construction (Cody and Waite's range reduction, then a polynomial):

- exp: x = n ln2 + r with |r| <= ln2/2 (ln2 in two parts, so n ln2 is exact); e^r by a
  polynomial (Cephes' minimax for float32, Taylor to degree 13 for float64); 2^n built in
  the exponent bits, in two halves so that subnormal results round once.
- log: x = 2^e m with m in [sqrt(1/2), sqrt(2)) (subnormals scaled first); log(m) =
  f - (f^2/2 - s (f^2/2 + R(s^2))) with f = m - 1, s = f / (2 + f), R the series of
  2 atanh(s) / s - 2 (fdlibm's arrangement, with the series' own coefficients).
- log1p: log(u) x / (u - 1) with u = 1 + x (Goldberg's correction of u's rounding).
- tanh: below 0.625, x + x^3 P(x^2) (Cephes; a rational P/Q for float64); above, 1 - 2 /
  (e^(2|x|) + 1) with the sign of x.

NaN, infinities, zeros, overflow and underflow give what libm gives. Their error against
numpy over the whole range, measured in ulp by tests/test_vecmath.py: at most 2 ulp (log1p 3).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import llvmlite.ir as ir

F32, F64 = ir.FloatType(), ir.DoubleType()
FUNCTIONS = ("exp", "log", "log1p", "tanh")


class _Precision:
    """The constants of one float type."""

    def __init__(self, ty: ir.Type) -> None:
        single = ty == F32
        self.ty = ty
        self.int = ir.IntType(32 if single else 64)
        self.mantissa_bits = 23 if single else 52
        self.bias = 127 if single else 1023
        self.exponent_mask = 0xFF if single else 0x7FF
        self.one_bits = 0x3F800000 if single else 0x3FF0000000000000
        self.smallest_normal = 2.0 ** (1 - self.bias)
        if single:  # Cephes: ln2 = C1 + C2, C1 with few bits (n C1 exact for |n| < 2^8)
            self.ln2_hi, self.ln2_lo = 0.693359375, -2.12194440e-4
            self.exp_max, self.exp_min = 88.72283935546875, -103.97208404541016
        else:  # fdlibm: ln2_hi's low 32 bits are zero
            self.ln2_hi, self.ln2_lo = 6.93147180369123816490e-01, 1.90821492927058770002e-10
            self.exp_max, self.exp_min = 709.782712893384, -745.1332191019412


class _Emitter:
    """Helpers over an IRBuilder for one float type."""

    def __init__(self, b: ir.IRBuilder, module: ir.Module, p: _Precision) -> None:
        self.b, self.m, self.p, self.ty = b, module, p, p.ty

    def c(self, v: float) -> ir.Constant:
        return ir.Constant(self.ty, v)

    def i(self, v: int) -> ir.Constant:
        return ir.Constant(self.p.int, v)

    def intrinsic(self, name: str, args: list) -> ir.Value:
        fn = self.m.declare_intrinsic(name, [self.ty], ir.FunctionType(self.ty, [self.ty] * len(args)))
        return self.b.call(fn, args)

    def fma(self, a, x, y):
        return self.intrinsic("llvm.fma", [a, x, y])

    def horner(self, x, coefficients: list[float]):
        """c0 x^k + ... + ck, highest degree first."""
        acc = self.c(coefficients[0])
        for coefficient in coefficients[1:]:
            acc = self.fma(acc, x, self.c(coefficient))
        return acc

    def pow2(self, n):
        """2^n for an integer n of the normal range, built in the exponent bits."""
        p = self.p
        return self.b.bitcast(self.b.shl(self.b.add(n, self.i(p.bias)), self.i(p.mantissa_bits)), self.ty)

    def select(self, cond, a, b):
        return self.b.select(cond, a, b)

    def fcmp(self, op: str, a, b):
        return self.b.fcmp_unordered(op, a, b) if op == "uno" else self.b.fcmp_ordered(op, a, b)


def _exp(e: _Emitter, x):
    p, b = e.p, e.b
    clamped = e.intrinsic("llvm.minnum", [e.intrinsic("llvm.maxnum", [x, e.c(p.exp_min)]), e.c(p.exp_max)])
    n = e.intrinsic("llvm.rint", [b.fmul(clamped, e.c(1 / math.log(2)))])
    r = e.fma(b.fneg(n), e.c(p.ln2_hi), clamped)
    r = e.fma(b.fneg(n), e.c(p.ln2_lo), r)
    if p.ty == F32:  # Cephes expf: 1 + r + r^2 P(r)
        poly = e.horner(r, [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                            1.6666665459e-1, 5.0000001201e-1])
        er = b.fadd(e.fma(poly, b.fmul(r, r), r), e.c(1.0))
    else:
        er = e.horner(r, [1 / math.factorial(k) for k in range(13, -1, -1)])
    k = b.fptosi(n, p.int)
    half = b.ashr(k, e.i(1))
    y = b.fmul(b.fmul(er, e.pow2(half)), e.pow2(b.sub(k, half)))
    y = e.select(e.fcmp(">", x, e.c(p.exp_max)), e.c(math.inf), y)
    y = e.select(e.fcmp("<", x, e.c(p.exp_min)), e.c(0.0), y)
    return e.select(e.fcmp("uno", x, x), x, y)


def _log(e: _Emitter, x):
    p, b = e.p, e.b
    subnormal = e.fcmp("<", x, e.c(p.smallest_normal))
    scaled = e.select(subnormal, b.fmul(x, e.c(2.0 ** p.mantissa_bits)), x)
    bits = b.bitcast(scaled, p.int)
    exponent = b.sub(b.and_(b.lshr(bits, e.i(p.mantissa_bits)), e.i(p.exponent_mask)), e.i(p.bias))
    exponent = b.sub(exponent, e.select(subnormal, e.i(p.mantissa_bits), e.i(0)))
    m = b.bitcast(b.or_(b.and_(bits, e.i((1 << p.mantissa_bits) - 1)), e.i(p.one_bits)), p.ty)  # [1, 2)
    big = e.fcmp(">", m, e.c(math.sqrt(2.0)))
    m = e.select(big, b.fmul(m, e.c(0.5)), m)
    k = b.sitofp(b.add(exponent, b.zext(big, p.int)), p.ty)
    f = b.fsub(m, e.c(1.0))
    s = b.fdiv(f, b.fadd(f, e.c(2.0)))
    z = b.fmul(s, s)
    terms = 4 if p.ty == F32 else 11  # 2 atanh(s)/s - 2 = sum 2 z^j / (2j + 1), to z^terms
    r = b.fmul(z, e.horner(z, [2.0 / (2 * j + 1) for j in range(terms, 0, -1)]))
    hfsq = b.fmul(e.c(0.5), b.fmul(f, f))
    # k ln2_hi - ((hfsq - (s (hfsq + R) + k ln2_lo)) - f)
    inner = b.fadd(b.fmul(s, b.fadd(hfsq, r)), b.fmul(k, e.c(p.ln2_lo)))
    y = b.fsub(b.fmul(k, e.c(p.ln2_hi)), b.fsub(b.fsub(hfsq, inner), f))
    y = e.select(e.fcmp("==", x, e.c(math.inf)), x, y)
    y = e.select(e.fcmp("==", x, e.c(0.0)), e.c(-math.inf), y)
    y = e.select(e.fcmp("<", x, e.c(0.0)), e.c(math.nan), y)
    return e.select(e.fcmp("uno", x, x), x, y)


def _log1p(e: _Emitter, x):
    """log(u) x / (u - 1) with u = 1 + x (Goldberg): the quotient undoes u's rounding."""
    b = e.b
    u = b.fadd(x, e.c(1.0))
    y = b.fmul(_log(e, u), b.fdiv(x, b.fsub(u, e.c(1.0))))
    y = e.select(e.fcmp("==", u, e.c(1.0)), x, y)  # x below half an ulp of 1 (and -0, +0)
    y = e.select(e.fcmp("==", x, e.c(math.inf)), x, y)
    return e.select(e.fcmp("==", x, e.c(-1.0)), e.c(-math.inf), y)


def _tanh(e: _Emitter, x):
    b = e.b
    a = e.intrinsic("llvm.fabs", [x])
    z = b.fmul(x, x)
    if e.ty == F32:  # Cephes tanhf below 0.625
        small = e.fma(b.fmul(e.horner(z, [-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2,
                                           1.33314422036e-1, -3.33332819422e-1]), z), x, x)
    else:  # Cephes tanh below 0.625: x + x z P(z) / Q(z)
        num = e.horner(z, [-9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3])
        den = e.horner(z, [1.0, 1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3])
        small = e.fma(b.fmul(x, z), b.fdiv(num, den), x)
    big = b.fsub(e.c(1.0), b.fdiv(e.c(2.0), b.fadd(_exp(e, b.fmul(a, e.c(2.0))), e.c(1.0))))
    big = e.intrinsic("llvm.copysign", [big, x])
    y = e.select(e.fcmp("<", a, e.c(0.625)), small, big)
    return e.select(e.fcmp("==", x, e.c(0.0)), x, y)  # -0 stays -0


_BODIES: dict[str, Callable] = {"exp": _exp, "log": _log, "log1p": _log1p, "tanh": _tanh}


def function(module: ir.Module, name: str, ty: ir.Type) -> ir.Function:
    """`irkit_vm_<name>[f]` in `module`: an internal, always-inlined function of one float."""
    cname = f"irkit_vm_{name}{'f' if ty == F32 else ''}"
    fn = module.globals.get(cname)
    if fn is not None:
        return fn
    fn = ir.Function(module, ir.FunctionType(ty, [ty]), cname)
    fn.linkage = "internal"
    for attribute in ("alwaysinline", "nounwind", "readnone"):
        fn.attributes.add(attribute)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    b.ret(_BODIES[name](_Emitter(b, module, _Precision(ty)), fn.args[0]))
    return fn
