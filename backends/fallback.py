"""Float32 transcendentals for the GPU when libdevice is absent, as `__nv_*` definitions.

- exp: `n = rint(x log2 e)` (clamped), `r = x - n ln2` in two fma steps (Cody-Waite),
  `ex2.approx(r log2 e)` scaled by `2^n` in two halves (so 2^n never overflows on the way);
  the reduction adds under 1 ulp, `ex2.approx` about 2 (notes/ptx-gpu.md, section 2.3).
- log: `x = m 2^e` with m in [sqrt(1/2), sqrt(2)), `log m = 2 atanh(s)`, `s = (m-1)/(m+1)`,
  as an odd polynomial (fdlibm's way): plain arithmetic, accurate near 1 where `lg2.approx`
  is not.
- expm1 (a Taylor polynomial below 1/2), log1p (`log(u) x/(u-1)`), tanh (`e/(e+2)` with
  `e = expm1(2|x|)`), sinh, cosh, exp2, log2, log10 are built from those.

`bitcode(names)` returns one module defining the names asked for (`linkonce_odr`); any
other function is a CompileError that says how to get libdevice.
"""

from __future__ import annotations

import math as pymath

import llvmlite.binding as llvm
import llvmlite.ir as ir

from irkit.errors import CompileError

F32, I32, I1 = ir.FloatType(), ir.IntType(32), ir.IntType(1)
LN2_HI, LN2_LO = 0.693145751953125, 1.428606765330187e-06
LOG2E = 1.4426950408889634


class _Maths:
    """Builds each function once, on demand, in module `m`."""

    def __init__(self, m: ir.Module) -> None:
        self.m = m
        self.defs = {"__nv_expf": self._exp, "__nv_exp2f": self._exp2, "__nv_expm1f": self._expm1,
                     "__nv_logf": self._log, "__nv_log2f": self._log2, "__nv_log10f": self._log10,
                     "__nv_log1pf": self._log1p, "__nv_tanhf": self._tanh, "__nv_sinhf": self._sinh,
                     "__nv_coshf": self._cosh}

    def get(self, name: str) -> ir.Function:
        fn = self.m.globals.get(name)
        if fn is not None and not fn.is_declaration:
            return fn
        if name not in self.defs:
            from irkit.backends.libdevice import INSTALL
            raise CompileError(f"ptx: {name.replace('__nv_', '')} on the GPU needs libdevice, which was not "
                               f"found; {INSTALL}")
        fn = fn or ir.Function(self.m, ir.FunctionType(F32, [F32]), name)
        fn.linkage = "linkonce_odr"
        b = ir.IRBuilder(fn.append_basic_block())
        b.ret(self.defs[name](b, fn.args[0]))
        return fn

    def call(self, b: ir.IRBuilder, name: str, x):
        return b.call(self.get(name), [x])

    def intr(self, b, name, *args):
        return b.call(self.m.declare_intrinsic(name, [F32], ir.FunctionType(F32, [F32] * len(args))), list(args))

    @staticmethod
    def poly(b, x, coeffs):
        """Horner: coeffs[0] + x (coeffs[1] + x (...))."""
        acc = F32(coeffs[-1])
        for c in reversed(coeffs[:-1]):
            acc = b.fadd(F32(c), b.fmul(x, acc))
        return acc

    def _exp2(self, b, x):
        return self.intr(b, "llvm.exp2", x)  # ex2.approx.f32

    def _exp(self, b, x):
        n = self.intr(b, "llvm.roundeven", b.fmul(x, F32(LOG2E)))
        n = self.intr(b, "llvm.minnum", self.intr(b, "llvm.maxnum", n, F32(-252.0)), F32(254.0))
        r = self.intr(b, "llvm.fma", n, F32(-LN2_HI), x)
        r = self.intr(b, "llvm.fma", n, F32(-LN2_LO), r)
        p = self._exp2(b, b.fmul(r, F32(LOG2E)))
        ni = b.fptosi(n, I32)
        half = b.ashr(ni, I32(1))
        s1 = b.bitcast(b.shl(b.add(half, I32(127)), I32(23)), F32)
        s2 = b.bitcast(b.shl(b.add(b.sub(ni, half), I32(127)), I32(23)), F32)
        return b.fmul(b.fmul(p, s1), s2)

    def _expm1(self, b, x):
        taylor = b.fmul(x, self.poly(b, x, [1.0 / pymath.factorial(k) for k in range(1, 10)]))
        big = b.fsub(self.call(b, "__nv_expf", x), F32(1.0))
        small = b.fcmp_ordered("<", self.intr(b, "llvm.fabs", x), F32(0.5))
        return b.select(small, taylor, big)

    def _log(self, b, x):
        # subnormals: scale into the normal range first
        sub = b.fcmp_ordered("<", x, F32(1.1754943508222875e-38))
        xs = b.select(sub, b.fmul(x, F32(8388608.0)), x)
        bits = b.bitcast(xs, I32)
        # m in [sqrt(1/2), sqrt(2)): shift the exponent so that the mantissa lands there
        adj = b.add(bits, I32(0x3F800000 - 0x3F3504F3))
        e = b.sub(b.ashr(adj, I32(23)), I32(127))
        m = b.bitcast(b.add(b.and_(adj, I32(0x007FFFFF)), I32(0x3F3504F3)), F32)
        f = b.fsub(m, F32(1.0))
        s = b.fdiv(f, b.fadd(m, F32(1.0)))
        s2 = b.fmul(s, s)
        logm = b.fmul(b.fmul(F32(2.0), s), self.poly(b, s2, [1.0, 1 / 3, 1 / 5, 1 / 7, 1 / 9, 1 / 11]))
        ef = b.sitofp(b.sub(e, b.select(sub, I32(23), I32(0))), F32)
        y = b.fadd(b.fmul(ef, F32(LN2_HI)), b.fadd(b.fmul(ef, F32(LN2_LO)), logm))
        # special values: log(0) = -inf, log(x < 0) = nan, log(inf) = inf, nan stays
        y = b.select(b.fcmp_ordered("==", x, F32(0.0)), F32(float("-inf")), y)
        y = b.select(b.fcmp_ordered("<", x, F32(0.0)), F32(float("nan")), y)
        y = b.select(b.fcmp_ordered("==", x, F32(float("inf"))), x, y)
        return b.select(b.fcmp_unordered("uno", x, x), x, y)

    def _log2(self, b, x):
        return b.fmul(self.call(b, "__nv_logf", x), F32(LOG2E))

    def _log10(self, b, x):
        return b.fmul(self.call(b, "__nv_logf", x), F32(1 / pymath.log(10)))

    def _log1p(self, b, x):
        u = b.fadd(F32(1.0), x)
        d = b.fsub(u, F32(1.0))
        scaled = b.fdiv(b.fmul(self.call(b, "__nv_logf", u), x), d)
        exact = b.fcmp_ordered("==", d, F32(0.0))
        inf = b.fcmp_ordered("==", x, F32(float("inf")))
        return b.select(b.or_(exact, inf), x, scaled)

    def _tanh(self, b, x):
        a = self.intr(b, "llvm.fabs", x)
        e = self.call(b, "__nv_expm1f", b.fmul(F32(2.0), a))
        t = b.fdiv(e, b.fadd(e, F32(2.0)))
        t = b.select(b.fcmp_ordered(">", a, F32(9.0)), F32(1.0), t)
        return self.intr(b, "llvm.copysign", t, x)

    def _big(self, b, a):
        """e^a / 2 without overflowing early."""
        return self.call(b, "__nv_expf", b.fsub(a, F32(pymath.log(2))))

    def _sinh(self, b, x):
        a = self.intr(b, "llvm.fabs", x)
        e = self.call(b, "__nv_expm1f", a)
        s = b.fmul(F32(0.5), b.fadd(e, b.fdiv(e, b.fadd(e, F32(1.0)))))
        s = b.select(b.fcmp_ordered(">", a, F32(88.0)), self._big(b, a), s)
        return self.intr(b, "llvm.copysign", s, x)

    def _cosh(self, b, x):
        a = self.intr(b, "llvm.fabs", x)
        e = self.call(b, "__nv_expf", a)
        c = b.fmul(F32(0.5), b.fadd(e, b.fdiv(F32(1.0), e)))
        return b.select(b.fcmp_ordered(">", a, F32(88.0)), self._big(b, a), c)


def module(names: list[str], triple: str, data_layout: str) -> ir.Module:
    m = ir.Module(name="irkit_fallback_math")
    m.triple, m.data_layout = triple, data_layout
    maths = _Maths(m)
    for name in names:
        maths.get(name)
    return m


def bitcode(names: list[str]) -> bytes:
    from irkit.backends.libdevice import warn_fallback
    from irkit.backends.ptx import DATA_LAYOUT, TRIPLE
    m = module(names, TRIPLE, DATA_LAYOUT)
    warn_fallback()
    return llvm.parse_assembly(str(m)).as_bitcode()
