"""One element of a numpy dtype at the loops level: types, constants, casts, and the
numpy semantics that plain `arith` lacks (floor division, remainder, integer power).

Everything here emits upstream `arith`/`math` ops through an emitter `em` that
has `em.emit(op) -> SSAValue`. Integers are signless at this level; the
tensor dtype says whether uint8 and bool use the unsigned forms.
"""

from __future__ import annotations

import numpy as np
from xdsl.dialects import arith, math
from xdsl.dialects.builtin import FloatAttr, IndexType, IntegerAttr, f32, f64, i1, i8, i16, i32, i64
from xdsl.ir import Attribute, SSAValue

from irkit.dialects.arith_ext import RemFOp

_SCALAR = {"float32": f32, "float64": f64, "int8": i8, "int16": i16, "int32": i32,
           "int64": i64, "uint8": i8, "bool": i1}


def scalar_type(dt: np.dtype) -> Attribute:
    """The signless element type a dtype has at the loops level."""
    return _SCALAR[np.dtype(dt).name]


def is_unsigned(dt: np.dtype) -> bool:
    return np.dtype(dt).kind in "ub"


def constant(em, value, dt: np.dtype) -> SSAValue:
    dt = np.dtype(dt)
    t = scalar_type(dt)
    if dt.kind == "f":
        return em.emit(arith.ConstantOp(FloatAttr(float(value), t)))
    if dt.kind == "b":
        return em.emit(arith.ConstantOp(IntegerAttr(-1 if value else 0, i1)))
    v = int(value)
    if dt.kind == "u":  # signless i8 holds 128..255 as negative numbers
        v = v - 256 if v > 127 else v
    return em.emit(arith.ConstantOp(IntegerAttr(v, t)))


def index_constant(em, n: int) -> SSAValue:
    return em.emit(arith.ConstantOp(IntegerAttr(int(n), IndexType())))


def convert(em, x: SSAValue, src: np.dtype, dst: np.dtype) -> SSAValue:
    """numpy's astype for one element (float to int truncates toward zero)."""
    src, dst = np.dtype(src), np.dtype(dst)
    if src == dst:
        return x
    st, dt_ = scalar_type(src), scalar_type(dst)
    if dst.kind == "b":
        zero = constant(em, 0, src)
        if src.kind == "f":
            return em.emit(arith.CmpfOp(x, zero, "une"))
        return em.emit(arith.CmpiOp(x, zero, "ne"))
    if src.kind == "f" and dst.kind == "f":
        if src.itemsize < dst.itemsize:
            return em.emit(arith.ExtFOp(x, dt_))
        return em.emit(arith.TruncFOp(x, dt_))
    if src.kind == "f":
        if dst.kind == "u":  # C semantics through a wide signed int, as numpy does on x86
            wide = em.emit(arith.FPToSIOp(x, i64))
            return em.emit(arith.TruncIOp(wide, dt_))
        return em.emit(arith.FPToSIOp(x, dt_))
    if dst.kind == "f":
        if is_unsigned(src):
            return em.emit(arith.UIToFPOp(x, dt_))
        return em.emit(arith.SIToFPOp(x, dt_))
    # integer to integer
    sw, dw = st.width.data, dt_.width.data
    if sw == dw:
        return x
    if sw > dw:
        return em.emit(arith.TruncIOp(x, dt_))
    if is_unsigned(src):
        return em.emit(arith.ExtUIOp(x, dt_))
    return em.emit(arith.ExtSIOp(x, dt_))


def add(em, a: SSAValue, b: SSAValue, dt: np.dtype, fastmath=None) -> SSAValue:
    """a + b in dt (logical or on bool, as numpy)."""
    kind = np.dtype(dt).kind
    if kind == "f":
        return em.emit(arith.AddfOp(a, b, fastmath))
    return em.emit(arith.OrIOp(a, b) if kind == "b" else arith.AddiOp(a, b))


def mul(em, a: SSAValue, b: SSAValue, dt: np.dtype, fastmath=None) -> SSAValue:
    """a * b in dt (logical and on bool, as numpy)."""
    kind = np.dtype(dt).kind
    if kind == "f":
        return em.emit(arith.MulfOp(a, b, fastmath))
    return em.emit(arith.AndIOp(a, b) if kind == "b" else arith.MuliOp(a, b))


def floor_divide(em, a: SSAValue, b: SSAValue, dt: np.dtype) -> SSAValue:
    """numpy's floor_divide: Python's // on ints (x // 0 is 0), npy_divmod on floats."""
    dt = np.dtype(dt)
    if dt.kind == "f":
        return _float_divmod(em, a, b, dt)[0]
    zero, one = constant(em, 0, dt), constant(em, 1, dt)
    bzero = em.emit(arith.CmpiOp(b, zero, "eq"))
    safe_b = em.emit(arith.SelectOp(bzero, one, b))
    if is_unsigned(dt):
        q = em.emit(arith.DivUIOp(a, safe_b))
        return em.emit(arith.SelectOp(bzero, zero, q))
    # a == MIN and b == -1 overflows (and traps on x86): divide by 1 instead, as numpy wraps to MIN.
    info = np.iinfo(dt)
    is_min = em.emit(arith.CmpiOp(a, constant(em, info.min, dt), "eq"))
    is_m1 = em.emit(arith.CmpiOp(b, constant(em, -1, dt), "eq"))
    ovf = em.emit(arith.AndIOp(is_min, is_m1))
    safe_b = em.emit(arith.SelectOp(ovf, one, safe_b))
    q = em.emit(arith.FloorDivSIOp(a, safe_b))
    return em.emit(arith.SelectOp(bzero, zero, q))


def remainder(em, a: SSAValue, b: SSAValue, dt: np.dtype) -> SSAValue:
    """numpy's remainder: the result has the sign of the divisor; x % 0 is 0 for ints."""
    dt = np.dtype(dt)
    if dt.kind == "f":
        return _float_divmod(em, a, b, dt)[1]
    zero, one = constant(em, 0, dt), constant(em, 1, dt)
    bzero = em.emit(arith.CmpiOp(b, zero, "eq"))
    safe_b = em.emit(arith.SelectOp(bzero, one, b))
    if is_unsigned(dt):
        r = em.emit(arith.RemUIOp(a, safe_b))
        return em.emit(arith.SelectOp(bzero, zero, r))
    is_m1 = em.emit(arith.CmpiOp(b, constant(em, -1, dt), "eq"))
    safe_b = em.emit(arith.SelectOp(is_m1, one, safe_b))  # x % -1 == 0, and MIN % -1 traps
    r = em.emit(arith.RemSIOp(a, safe_b))
    rnz = em.emit(arith.CmpiOp(r, zero, "ne"))
    rneg = em.emit(arith.CmpiOp(r, zero, "slt"))
    bneg = em.emit(arith.CmpiOp(b, zero, "slt"))
    differ = em.emit(arith.XOrIOp(rneg, bneg))
    fix = em.emit(arith.AndIOp(rnz, differ))
    r = em.emit(arith.SelectOp(fix, em.emit(arith.AddiOp(r, b)), r))
    return em.emit(arith.SelectOp(em.emit(arith.OrIOp(bzero, is_m1)), zero, r))


def _float_divmod(em, a: SSAValue, b: SSAValue, dt: np.dtype) -> tuple[SSAValue, SSAValue]:
    """numpy's npy_divmod, branch-free: (floor quotient, remainder with the divisor's sign)."""
    zero, one, half = constant(em, 0.0, dt), constant(em, 1.0, dt), constant(em, 0.5, dt)
    mod = em.emit(RemFOp(a, b))
    div = em.emit(arith.DivfOp(em.emit(arith.SubfOp(a, mod)), b))
    mod_nz = em.emit(arith.CmpfOp(mod, zero, "une"))
    b_neg = em.emit(arith.CmpfOp(b, zero, "olt"))
    mod_neg = em.emit(arith.CmpfOp(mod, zero, "olt"))
    fix = em.emit(arith.AndIOp(mod_nz, em.emit(arith.XOrIOp(b_neg, mod_neg))))
    mod = em.emit(arith.SelectOp(fix, em.emit(arith.AddfOp(mod, b)), mod))
    div = em.emit(arith.SelectOp(fix, em.emit(arith.SubfOp(div, one)), div))
    mod = em.emit(arith.SelectOp(mod_nz, mod, em.emit(math.CopySignOp(zero, b))))
    floordiv = em.emit(math.FloorOp(div))
    round_up = em.emit(arith.CmpfOp(em.emit(arith.SubfOp(div, floordiv)), half, "ogt"))
    floordiv = em.emit(arith.SelectOp(round_up, em.emit(arith.AddfOp(floordiv, one)), floordiv))
    div_nz = em.emit(arith.CmpfOp(div, zero, "une"))
    quotient = em.emit(arith.DivfOp(a, b))
    floordiv = em.emit(arith.SelectOp(div_nz, floordiv, em.emit(math.CopySignOp(zero, quotient))))
    b_zero = em.emit(arith.CmpfOp(b, zero, "oeq"))
    floordiv = em.emit(arith.SelectOp(b_zero, quotient, floordiv))
    return floordiv, mod


def power(em, a: SSAValue, b: SSAValue, dt: np.dtype) -> SSAValue:
    """numpy's power: powf on floats; exact repeated squaring on ints (exponent >= 0)."""
    dt = np.dtype(dt)
    if dt.kind == "f":
        return em.emit(math.PowFOp(a, b))
    if dt.kind == "b":  # numpy: True**x is True, False**0 is True
        return em.emit(arith.OrIOp(a, em.emit(arith.XOrIOp(b, constant(em, True, dt)))))
    if not is_unsigned(dt):
        ok = em.emit(arith.CmpiOp(b, constant(em, 0, dt), "sge"))
        em.require(ok, "ValueError: integers to negative integer powers are not allowed")
    return em.emit(math.IPowIOp(a, b))
