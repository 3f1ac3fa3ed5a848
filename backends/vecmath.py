"""exp, log, log1p, tanh, sin and cos as LLVM IR, for hosts without glibc's libmvec (macOS,
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
- sin, cos: fdlibm's (below): for |x| < 2^19 pi/2 straight-line code, beyond it libm's own
  (whose reduction needs hundreds of bits of pi). A loop cannot widen a branch to a call,
  so these carry a vector variant of irkit's own, as libmvec's functions carry theirs: the
  straight-line code on every lane, and libm's answer in the lanes past the limit when a
  vector holds any (libm then runs on each of its lanes, a rare and correct slow path).

NaN, infinities, zeros, overflow and underflow give what libm gives. Their error against
numpy over the whole range, measured in ulp by tests/test_vecmath.py: at most 2 ulp (log1p 3;
sin and cos 0.56 float32, 1.0 float64).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import llvmlite.ir as ir

F32, F64 = ir.FloatType(), ir.DoubleType()
FUNCTIONS = ("exp", "log", "log1p", "tanh")  # straight-line forms, inlined where called
# with libmvec, the scalar remainder of a loop whose vector body calls libmvec: glibc's
# tanh goes through expm1 (about 4 ns an element as float32); its exp, log and log1p are
# table-driven and faster as scalars than these forms, and stay libm's
SCALAR_TAILS = ("tanh",)
PREFIX = "irkit_vm_"  # every function this module makes (backends/jit.py split_module copies them)


class _Precision:
    """The constants of one float type, scalar or (lanes > 0) a vector of it."""

    def __init__(self, ty: ir.Type, lanes: int = 0) -> None:
        single = ty == F32
        self.scalar = ty
        self.lanes = lanes
        self.ty = ir.VectorType(ty, lanes) if lanes else ty
        scalar_int = ir.IntType(32 if single else 64)
        self.int = ir.VectorType(scalar_int, lanes) if lanes else scalar_int
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

    def splat(self, ty: ir.Type, value) -> ir.Constant:
        return ir.Constant(ty, [value] * self.lanes) if self.lanes else ir.Constant(ty, value)


class _Emitter:
    """Helpers over an IRBuilder for one float type."""

    def __init__(self, b: ir.IRBuilder, module: ir.Module, p: _Precision) -> None:
        self.b, self.m, self.p, self.ty = b, module, p, p.ty

    def c(self, v: float) -> ir.Constant:
        return self.p.splat(self.ty, v)

    def i(self, v: int) -> ir.Constant:
        return self.p.splat(self.p.int, v)

    def intrinsic(self, name: str, args: list) -> ir.Value:
        """An LLVM intrinsic of this type (llvmlite names scalar overloads only)."""
        p = self.p
        suffix = ("f32" if p.scalar == F32 else "f64") if not p.lanes else \
            f"v{p.lanes}{'f32' if p.scalar == F32 else 'f64'}"
        full = f"{name}.{suffix}"
        fn = self.m.globals.get(full) or ir.Function(self.m, ir.FunctionType(self.ty, [self.ty] * len(args)), full)
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


def _exponent(e: _Emitter, x):
    """The biased exponent field of x."""
    p = e.p
    return e.b.and_(e.b.lshr(e.b.bitcast(x, p.int), e.i(p.mantissa_bits)), e.i(p.exponent_mask))


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
    exponent = b.sub(_exponent(e, scaled), e.i(p.bias))
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


# -- sin and cos ------------------------------------------------------------------------------
# fdlibm's: x = n pi/2 + y with pi/2 in parts of 33 bits (n times a part is exact for
# |n| < 2^20), y kept as a head and a tail; its medium-size rule for how many parts
# (1, 2 or 3) is a select per element here. Then sin and cos of y by fdlibm's kernels and
# the quadrant n mod 4. float32 runs a shorter float64 path and rounds once. Beyond REDUCED_LIMIT
# (and for NaN and infinities) libm's sin/cos itself: the reduction there needs more bits
# of pi than a few parts hold (Payne and Hanek's), which the vector variant below calls
# for only the elements that need it.

REDUCED_LIMIT = 823549.0  # fdlibm's medium case: |x| < 2^19 pi/2
_INVPIO2 = 6.36619772367581382433e-01
_PIO2 = [(1.57079632673412561417e+00, 6.07710050650619224932e-11),  # part, and what is left after it
         (6.07710050630396597660e-11, 2.02226624879595063154e-21),
         (2.02226624871116645580e-21, 8.47842766036889956997e-32)]
_SIN = [-1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04,
        2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10]
_COS = [4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05,
        -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11]


def _reduce_pio2(e: _Emitter, x):
    """(n, head, tail) with x = n pi/2 + head + tail, |head| <= pi/4 about (float64)."""
    b = e.b
    n = e.intrinsic("llvm.rint", [b.fmul(x, e.c(_INVPIO2))])
    rounds = []
    r = b.fsub(x, b.fmul(n, e.c(_PIO2[0][0])))
    w = b.fmul(n, e.c(_PIO2[0][1]))
    rounds.append((r, w))
    for part, rest in _PIO2[1:]:
        t = r
        w = b.fmul(n, e.c(part))
        r = b.fsub(t, w)
        w = b.fsub(b.fmul(n, e.c(rest)), b.fsub(b.fsub(t, r), w))
        rounds.append((r, w))
    # fdlibm goes on to the next part when the head lost more than 16 (then 49) bits
    exponent = _exponent(e, x)
    lost1 = b.sub(exponent, _exponent(e, b.fsub(*rounds[0])))
    lost2 = b.sub(exponent, _exponent(e, b.fsub(*rounds[1])))
    second = b.icmp_signed(">", lost1, e.i(16))
    third = b.and_(second, b.icmp_signed(">", lost2, e.i(49)))
    r = e.select(third, rounds[2][0], e.select(second, rounds[1][0], rounds[0][0]))
    w = e.select(third, rounds[2][1], e.select(second, rounds[1][1], rounds[0][1]))
    head = b.fsub(r, w)
    tail = b.fsub(b.fsub(r, head), w)
    return b.fptosi(n, e.p.int), head, tail


def _kernel_sin(e: _Emitter, x, y):
    b = e.b
    z = b.fmul(x, x)
    v = b.fmul(z, x)
    r = e.horner(z, _SIN[:0:-1])  # S2 + z (S3 + ...)
    # x - ((z (y/2 - v r) - y) - v S1)
    inner = b.fsub(b.fmul(z, b.fsub(b.fmul(e.c(0.5), y), b.fmul(v, r))), y)
    return b.fsub(x, b.fsub(inner, b.fmul(v, e.c(_SIN[0]))))


def _kernel_cos(e: _Emitter, x, y):
    b = e.b
    z = b.fmul(x, x)
    r = b.fmul(z, e.horner(z, _COS[::-1]))
    hz = b.fmul(e.c(0.5), z)
    w = b.fsub(e.c(1.0), hz)
    # w + (((1 - w) - hz) + (z r - x y))
    return b.fadd(w, b.fadd(b.fsub(b.fsub(e.c(1.0), w), hz), b.fsub(b.fmul(z, r), b.fmul(x, y))))


def _sin_cos_reduced(e: _Emitter, x, cosine: bool, for_float32: bool = False):
    """sin or cos of x (float64, |x| < REDUCED_LIMIT). `for_float32`: x is a float32's value
    and the result will be rounded to float32: fdlibm's first round of reduction (good to 85
    bits) and the kernels without their last terms are enough (below 2^-29 relative)."""
    b = e.b
    if for_float32:
        n = e.intrinsic("llvm.rint", [b.fmul(x, e.c(_INVPIO2))])
        head = b.fsub(b.fsub(x, b.fmul(n, e.c(_PIO2[0][0]))), b.fmul(n, e.c(_PIO2[0][1])))
        z = b.fmul(head, head)
        s = e.fma(b.fmul(z, head), e.horner(z, _SIN[3::-1]), head)
        c = e.fma(b.fmul(z, z), e.horner(z, _COS[3::-1]), e.fma(z, e.c(-0.5), e.c(1.0)))
        n = b.fptosi(n, e.p.int)
    else:
        n, head, tail = _reduce_pio2(e, x)
        s, c = _kernel_sin(e, head, tail), _kernel_cos(e, head, tail)
    quadrant = b.and_(b.add(n, e.i(1)) if cosine else n, e.i(3))  # cos x = sin(x + pi/2)
    odd = b.icmp_unsigned("!=", b.and_(quadrant, e.i(1)), e.i(0))
    y = e.select(odd, c, s)
    y = e.select(b.icmp_unsigned(">=", quadrant, e.i(2)), b.fneg(y), y)
    if not cosine:
        y = e.select(e.fcmp("==", x, e.c(0.0)), x, y)  # -0 stays -0
    return y


def _reduced_body(name: str):
    def body(e: _Emitter, x):
        if e.p.scalar == F64:
            return _sin_cos_reduced(e, x, name == "cos")
        wide = _Emitter(e.b, e.m, _Precision(F64, e.p.lanes))
        y = _sin_cos_reduced(wide, e.b.fpext(x, wide.ty), name == "cos", for_float32=True)
        return e.b.fptrunc(y, e.ty)
    return body


REDUCED = {"sin": _reduced_body("sin"), "cos": _reduced_body("cos")}


def reduced_function(module: ir.Module, name: str, ty: ir.Type, vector: tuple[str, int] | None,
                     keep: list) -> ir.Function:
    """`irkit_vm_<name>[f]`: sin or cos by the path above, libm's beyond REDUCED_LIMIT. With
    `vector` (the host's vector ISA letter and width in bits, as the vector function ABI
    names them) it carries a vector variant of its own (`..._v<lanes>`, appended to `keep`
    so that it lives until the loop vectorizer calls it), which calls libm lane by lane only
    for a vector with a lane past the limit."""
    cname = f"irkit_vm_{name}{'f' if ty == F32 else ''}"
    fn = module.globals.get(cname)
    if fn is not None:
        return fn
    libm = module.globals.get(cname[len("irkit_vm_"):]) or ir.Function(module, ir.FunctionType(ty, [ty]),
                                                                        cname[len("irkit_vm_"):])
    fn = ir.Function(module, ir.FunctionType(ty, [ty]), cname)
    fn.linkage = "internal"
    # not inlined before the vectorizer, which would then meet a branch to a call
    for attribute in ("noinline", "nounwind", "readnone"):
        fn.attributes.add(attribute)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    e = _Emitter(b, module, _Precision(ty))
    x = fn.args[0]
    near = e.fcmp("<", e.intrinsic("llvm.fabs", [x]), e.c(REDUCED_LIMIT))
    with b.if_else(near) as (then, otherwise):
        with then:
            fast = REDUCED[name](e, x)
            fast_block = b.block
        with otherwise:
            far = b.call(libm, [x])
            far_block = b.block
    y = b.phi(ty)
    y.add_incoming(fast, fast_block)
    y.add_incoming(far, far_block)
    b.ret(y)
    if vector is not None:
        isa, bits = vector
        lanes = bits // (32 if ty == F32 else 64)
        vname = f"{cname}_v{lanes}"
        p = _Precision(ty, lanes)
        vfn = ir.Function(module, ir.FunctionType(p.ty, [p.ty]), vname)
        vfn.linkage = "internal"
        vfn.attributes.add("nounwind")
        b = ir.IRBuilder(vfn.append_basic_block("entry"))
        e = _Emitter(b, module, p)
        xs = vfn.args[0]
        fast = REDUCED[name](e, xs)
        far = b.fcmp_unordered(">=", e.intrinsic("llvm.fabs", [xs]), e.c(REDUCED_LIMIT))
        entry = b.block
        with b.if_then(b.icmp_unsigned("!=", b.bitcast(far, ir.IntType(lanes)), ir.IntType(lanes)(0))):
            ys = fast
            for k in range(lanes):
                lane = ir.IntType(32)(k)
                ys = b.select(b.extract_element(far, lane),
                              b.insert_element(ys, b.call(libm, [b.extract_element(xs, lane)]), lane), ys)
            patched = b.block
        result = b.phi(p.ty)
        result.add_incoming(fast, entry)
        result.add_incoming(ys, patched)
        b.ret(result)
        mangled = f"_ZGV{isa}N{lanes}v_{cname}"
        set.add(fn.attributes, f'"vector-function-abi-variant"="{mangled}({vname})"')
        keep.append(vfn)
    return fn


_BODIES: dict[str, Callable] = {"exp": _exp, "log": _log, "log1p": _log1p, "tanh": _tanh}


def function(module: ir.Module, name: str, ty: ir.Type, inline: bool = True) -> ir.Function:
    """`irkit_vm_<name>[f]` in `module`: an internal function of one float, always inlined;
    with `inline=False` never inlined (`..._scalar`, SCALAR_TAILS): where libmvec is, a
    loop's vector body calls libmvec's variant and only its scalar remainder this form (a
    10-element float32 tanh: 0.17 -> 0.14 us a call)."""
    cname = f"irkit_vm_{name}{'f' if ty == F32 else ''}{'' if inline else '_scalar'}"
    fn = module.globals.get(cname)
    if fn is not None:
        return fn
    fn = ir.Function(module, ir.FunctionType(ty, [ty]), cname)
    fn.linkage = "internal"
    for attribute in ("alwaysinline" if inline else "noinline", "nounwind", "readnone"):
        fn.attributes.add(attribute)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    b.ret(_BODIES[name](_Emitter(b, module, _Precision(ty)), fn.args[0]))
    return fn
