"""Ops of `ik` that draw random numbers, natively and in parallel.

Every draw is counter-based: element `i` of a draw is a pure function of the
draw's state and of `i`, computed by Philox4x32-10 (Salmon et al., "Parallel
random numbers: as easy as 1, 2, 3", SC'11; the generator of Random123, cuRAND
and PyTorch). So a draw is an elementwise op: it fuses into the kernel that
uses it, runs in any order on any number of threads or GPU lanes, and gives the
same numbers everywhere.

The state operand is a 2-vector of int64, `[key, counter]` (both read as 64
unsigned bits). Element `i` (its C-order position in the result) gets the
128-bit Philox block

    philox4x32_10(counter = (lo32(i), hi32(i), lo32(counter), hi32(counter)),
                  key     = (lo32(key), hi32(key)))

`irkit.random.RandomStream` gives each draw its own key and a new counter on every call
of the compiled function (and every scan step), so no two elements of any two draws,
calls or steps share a block.

The ops here are the primitives; distributions with parameters are built from
them at the tensor level (so that gradients through `loc + scale * z` need no
rule of their own):

- `ik.random_uniform`: floats in [0, 1) (53 random bits for float64, 24 for float32);
- `ik.random_normal`: standard normal floats (Box-Muller on two 53-bit uniforms);
- `ik.random_integers`: integers in [low, high) (a 128-bit fixed-point product);
- `ik.require`: passes its operand through once a run-time condition holds (the
  value checks of the distributions: p in [0, 1], low < high, ...);
- `ik.next_below`: the largest float below x (keeps `low + (high - low) * u` below high).
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np
from xdsl.dialects import arith, math
from xdsl.dialects.builtin import FloatAttr, IntegerAttr, TensorType, f64, i32, i64
from xdsl.ir import SSAValue
from xdsl.irdl import irdl_op_definition, operand_def, result_def, var_operand_def

from irkit.dialects.ik import scalar as S
from irkit.dialects.ik.base import IkOp
from irkit.dialects.ik.elementwise import ElementwiseOp, UnaryOp
from irkit.dialects.ik.shape import target_dims
from irkit.errors import DTypeError, ShapeError, split_kind
from irkit.types import dtype_of, static_shape

# Philox4x32's round multipliers and Weyl key increments (Random123, philox.h)
PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85
PHILOX_ROUNDS = 10
MASK32 = 0xFFFFFFFF

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ---------------------------------------------------------------------------
# the numpy reference of the generator
# ---------------------------------------------------------------------------

def philox4x32_10(counter: Sequence[np.ndarray], key: Sequence[int]) -> list[np.ndarray]:
    """Philox4x32-10 on arrays: four 32-bit counter words (uint64 arrays holding values
    below 2**32) and two 32-bit key words; returns the four 32-bit output words."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) & np.uint64(MASK32) for c in counter)
    k0, k1 = int(key[0]) & MASK32, int(key[1]) & MASK32
    mask, shift = np.uint64(MASK32), np.uint64(32)
    for r in range(PHILOX_ROUNDS):
        if r:
            k0, k1 = (k0 + PHILOX_W0) & MASK32, (k1 + PHILOX_W1) & MASK32
        p0 = np.uint64(PHILOX_M0) * c0  # a 32x32 -> 64-bit product never wraps in uint64
        p1 = np.uint64(PHILOX_M1) * c2
        c0, c1, c2, c3 = ((p1 >> shift) ^ c1 ^ np.uint64(k0), p1 & mask,
                          (p0 >> shift) ^ c3 ^ np.uint64(k1), p0 & mask)
    return [c0, c1, c2, c3]


def philox_blocks(state: np.ndarray, size: int) -> list[np.ndarray]:
    """The output words of elements 0..size-1 of a draw with `state` = [key, counter]."""
    key, counter = (int(v) & ((1 << 64) - 1) for v in np.asarray(state, dtype=np.int64))
    i = np.arange(size, dtype=np.uint64)
    ctr = [i & np.uint64(MASK32), i >> np.uint64(32),
           np.full(size, counter & MASK32, np.uint64), np.full(size, counter >> 32, np.uint64)]
    return philox4x32_10(ctr, (key & MASK32, key >> 32))


def _bits53(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The top 53 bits of the 64-bit word hi:lo."""
    return (hi << np.uint64(21)) | (lo >> np.uint64(11))


def _mulhi64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The high 64 bits of the 128-bit product of uint64 arrays, from 32-bit limbs (the same
    steps as the generated code)."""
    mask, shift = np.uint64(MASK32), np.uint64(32)
    a0, a1, b0, b1 = a & mask, a >> shift, b & mask, b >> shift
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> shift) + (p01 & mask) + (p10 & mask)
    return p11 + (p01 >> shift) + (p10 >> shift) + (mid >> shift)


def integers_from_words(words: Sequence[np.ndarray], low: int, high: int) -> np.ndarray:
    """low + floor(R * (high - low) / 2**128) for the 128-bit word R = w3:w2:w1:w0: the
    offset's bias is at most (high - low) / 2**128, below 2**-64 for any int64 range."""
    w0, w1, w2, w3 = words
    shift = np.uint64(32)
    r_lo, r_hi = (w1 << shift) | w0, (w3 << shift) | w2
    m = np.uint64((int(high) - int(low)) & ((1 << 64) - 1))
    with np.errstate(over="ignore"):
        h1, l1 = _mulhi64(r_hi, np.full_like(r_hi, m)), r_hi * m
        h2 = _mulhi64(r_lo, np.full_like(r_lo, m))
        total = l1 + h2
        carry = (total < l1).astype(np.uint64)
        offset = h1 + carry
        return (np.uint64(int(low) & ((1 << 64) - 1)) + offset).view(np.int64)


# ---------------------------------------------------------------------------
# the same generator at the loops level (32-bit words as signless i32)
# ---------------------------------------------------------------------------

def _const(em, value: int, width) -> SSAValue:
    bits = width.width.data
    value &= (1 << bits) - 1
    if value >= 1 << (bits - 1):  # signless constants are stored as signed
        value -= 1 << bits
    return em.emit(arith.ConstantOp(IntegerAttr(value, width)))


def _lo32(em, x: SSAValue) -> SSAValue:
    return em.emit(arith.TruncIOp(x, i32))


def _hi32(em, x: SSAValue) -> SSAValue:
    return em.emit(arith.TruncIOp(em.emit(arith.ShRUIOp(x, _const(em, 32, i64))), i32))


def _join(em, lo: SSAValue, hi: SSAValue) -> SSAValue:
    """The 64-bit word hi:lo from two 32-bit words."""
    wide_hi = em.emit(arith.ShLIOp(em.emit(arith.ExtUIOp(hi, i64)), _const(em, 32, i64)))
    return em.emit(arith.OrIOp(wide_hi, em.emit(arith.ExtUIOp(lo, i64))))


def emit_philox(em, counter: Sequence[SSAValue], key: Sequence[SSAValue]) -> list[SSAValue]:
    """Philox4x32-10 on four i32 counter words and two i32 key words. The 32x32 -> 64-bit
    products are i64 multiplies of zero-extended words (LLVM makes them mul.hi/mul.lo)."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    m0, m1 = _const(em, PHILOX_M0, i64), _const(em, PHILOX_M1, i64)
    w0, w1 = _const(em, PHILOX_W0, i32), _const(em, PHILOX_W1, i32)
    for r in range(PHILOX_ROUNDS):
        if r:
            k0, k1 = em.emit(arith.AddiOp(k0, w0)), em.emit(arith.AddiOp(k1, w1))
        p0 = em.emit(arith.MuliOp(m0, em.emit(arith.ExtUIOp(c0, i64))))
        p1 = em.emit(arith.MuliOp(m1, em.emit(arith.ExtUIOp(c2, i64))))
        c0, c1, c2, c3 = (em.emit(arith.XOrIOp(em.emit(arith.XOrIOp(_hi32(em, p1), c1)), k0)), _lo32(em, p1),
                          em.emit(arith.XOrIOp(em.emit(arith.XOrIOp(_hi32(em, p0), c3)), k1)), _lo32(em, p0))
    return [c0, c1, c2, c3]


def _emit_bits53(em, lo: SSAValue, hi: SSAValue) -> SSAValue:
    return em.emit(arith.ShRUIOp(_join(em, lo, hi), _const(em, 11, i64)))


def _emit_mulhi64(em, a: SSAValue, b: SSAValue) -> SSAValue:
    """The high 64 bits of the unsigned 128-bit product a * b, from 32-bit limbs."""
    mask, sh = _const(em, MASK32, i64), _const(em, 32, i64)
    a0, a1 = em.emit(arith.AndIOp(a, mask)), em.emit(arith.ShRUIOp(a, sh))
    b0, b1 = em.emit(arith.AndIOp(b, mask)), em.emit(arith.ShRUIOp(b, sh))
    p00, p01 = em.emit(arith.MuliOp(a0, b0)), em.emit(arith.MuliOp(a0, b1))
    p10, p11 = em.emit(arith.MuliOp(a1, b0)), em.emit(arith.MuliOp(a1, b1))
    mid = em.emit(arith.AddiOp(em.emit(arith.ShRUIOp(p00, sh)),
                               em.emit(arith.AddiOp(em.emit(arith.AndIOp(p01, mask)),
                                                    em.emit(arith.AndIOp(p10, mask))))))
    hi = em.emit(arith.AddiOp(p11, em.emit(arith.ShRUIOp(p01, sh))))
    hi = em.emit(arith.AddiOp(hi, em.emit(arith.ShRUIOp(p10, sh))))
    return em.emit(arith.AddiOp(hi, em.emit(arith.ShRUIOp(mid, sh))))


def _f64(em, value: float) -> SSAValue:
    return em.emit(arith.ConstantOp(FloatAttr(float(value), f64)))


# ---------------------------------------------------------------------------
# the draw ops
# ---------------------------------------------------------------------------

class RandomOp(IkOp):
    """A draw: operands `state` (int64[2]: key, counter), then the op's parameters
    (`N_PARAMS` 0-d operands), then one 0-d int64 operand per symbolic size in `shape`.
    Subclasses declare all their operands, `state` first (IRDL orders a subclass's own
    fields before inherited ones)."""

    PARAMS: ClassVar = {"shape": ()}
    FUSIBLE: ClassVar = True
    N_PARAMS: ClassVar[int] = 0
    DEFAULT_DTYPE: ClassVar[np.dtype] = np.dtype(np.float64)
    DTYPES: ClassVar[tuple[np.dtype, ...]] = FLOAT_DTYPES

    @property
    def SHAPE_OPERANDS(self):  # noqa: N802
        return tuple(range(1 + self.N_PARAMS, len(self.operands)))

    @classmethod
    def check_operands(cls, operands, p):
        state = operands[0].type
        if dtype_of(state) != np.int64 or static_shape(state) != (2,):
            raise ShapeError(f"the state must be int64 of shape (2,) (key, counter), "
                             f"not {dtype_of(state).name}{static_shape(state)}")
        for k, v in enumerate(operands[1:1 + cls.N_PARAMS]):
            if v.type.get_shape() or dtype_of(v.type) != np.int64:
                raise ShapeError(f"parameter {k} must be a 0-d int64, not {dtype_of(v.type).name}"
                                 f"{static_shape(v.type)}")

    @classmethod
    def shape_rule(cls, d, operands, p):
        dims = target_dims(d, p.shape, operands[1 + cls.N_PARAMS:])
        for k, s in enumerate(dims):
            d.check(d.le(0, s), f"ValueError: size[{k}] of the draw is negative")
        return [dims]

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        dt = np.dtype(dtype) if dtype is not None else cls.DEFAULT_DTYPE
        if dt not in cls.DTYPES:
            raise DTypeError(f"draws {', '.join(d.name for d in cls.DTYPES)}, not {dt.name}")
        return [dt]

    # -- the generator, shared by the subclasses -----------------------------------
    def words(self, em, idx) -> list[SSAValue]:
        """The Philox block of the element at idx (four i32 words)."""
        key = em.at(self.state, [em.index(0)])
        counter = em.at(self.state, [em.index(1)])
        position = em.linear_index(idx, em.dims(self.results[0]))  # i64, C order
        return emit_philox(em, [_lo32(em, position), _hi32(em, position), _lo32(em, counter), _hi32(em, counter)],
                           [_lo32(em, key), _hi32(em, key)])

    def reference_words(self, state: np.ndarray, sizes: Sequence[np.ndarray]) -> tuple[tuple, list[np.ndarray]]:
        it = iter(sizes)
        shape = tuple(int(next(it)) if s < 0 else s for s in self.params.shape)
        return shape, philox_blocks(state, int(np.prod(shape, dtype=np.int64)))


@irdl_op_definition
class RandomUniformOp(RandomOp):
    """Uniform floats in [0, 1): k * 2**-53 for a random 53-bit k (float64), k * 2**-24 for
    a random 24-bit k (float32); never 1."""

    name = "ik.random_uniform"
    state = operand_def(TensorType)
    sizes = var_operand_def(TensorType)
    result = result_def(TensorType)

    def evaluate(self, p, state, *sizes):
        shape, (w0, w1, _, _) = self.reference_words(state, sizes)
        if dtype_of(self.result.type) == np.float32:
            u = (w0 >> np.uint64(8)).astype(np.float32) * np.float32(2.0 ** -24)
        else:
            u = _bits53(w0, w1).astype(np.float64) * 2.0 ** -53
        return [u.reshape(shape)]

    def emit_element(self, em, idx):
        w = self.words(em, idx)
        if dtype_of(self.result.type) == np.float32:
            k = em.emit(arith.ShRUIOp(w[0], _const(em, 8, i32)))  # below 2**24: exact in float32
            return em.emit(arith.MulfOp(S.convert(em, k, np.dtype(np.int32), np.dtype(np.float32)),
                                        S.constant(em, 2.0 ** -24, np.float32)))
        k = _emit_bits53(em, w[0], w[1])  # below 2**53: exact in float64
        return em.emit(arith.MulfOp(S.convert(em, k, np.dtype(np.int64), np.dtype(np.float64)),
                                    _f64(em, 2.0 ** -53)))


@irdl_op_definition
class RandomNormalOp(RandomOp):
    """Standard normal floats by Box-Muller: sqrt(-2 log u1) cos(2 pi u2), with u1 in (0, 1]
    and u2 in [0, 1) of 53 random bits each, computed in float64 (so float32 draws have
    the same tails, up to 8.6 sigma) and rounded to the result's dtype."""

    name = "ik.random_normal"
    state = operand_def(TensorType)
    sizes = var_operand_def(TensorType)
    result = result_def(TensorType)

    def evaluate(self, p, state, *sizes):
        shape, (w0, w1, w2, w3) = self.reference_words(state, sizes)
        u1 = (_bits53(w0, w1) + np.uint64(1)).astype(np.float64) * 2.0 ** -53
        u2 = _bits53(w2, w3).astype(np.float64) * 2.0 ** -53
        z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
        return [z.astype(dtype_of(self.result.type)).reshape(shape)]

    def emit_element(self, em, idx):
        w = self.words(em, idx)
        f64_dt, i64_dt = np.dtype(np.float64), np.dtype(np.int64)
        k1 = em.emit(arith.AddiOp(_emit_bits53(em, w[0], w[1]), _const(em, 1, i64)))
        k2 = _emit_bits53(em, w[2], w[3])
        scale = _f64(em, 2.0 ** -53)
        u1 = em.emit(arith.MulfOp(S.convert(em, k1, i64_dt, f64_dt), scale))
        u2 = em.emit(arith.MulfOp(S.convert(em, k2, i64_dt, f64_dt), scale))
        radius = em.emit(math.SqrtOp(em.emit(arith.MulfOp(_f64(em, -2.0), em.emit(math.LogOp(u1))))))
        angle = em.emit(arith.MulfOp(_f64(em, 2.0 * np.pi), u2))
        z = em.emit(arith.MulfOp(radius, em.emit(math.CosOp(angle))))
        return S.convert(em, z, f64_dt, dtype_of(self.result.type))


@irdl_op_definition
class RandomIntegersOp(RandomOp):
    """Integers in [low, high) (0-d int64 operands; low < high is the caller's to check):
    low + floor(R * (high - low) / 2**128) for the element's 128-bit Philox block R. Each
    value's probability is within (high - low) / 2**128 < 2**-64 of uniform: unbiased for
    any use, with no rejection loop (so one block per element, as every other draw)."""

    name = "ik.random_integers"
    state = operand_def(TensorType)
    low = operand_def(TensorType)
    high = operand_def(TensorType)
    sizes = var_operand_def(TensorType)
    result = result_def(TensorType)
    N_PARAMS: ClassVar = 2
    DEFAULT_DTYPE: ClassVar = np.dtype(np.int64)
    DTYPES: ClassVar = (np.dtype(np.int64),)

    def evaluate(self, p, state, low, high, *sizes):
        shape, words = self.reference_words(state, sizes)
        return [integers_from_words(words, int(low), int(high)).reshape(shape)]

    def emit_element(self, em, idx):
        w0, w1, w2, w3 = self.words(em, idx)
        low, high = em.at(self.low, []), em.at(self.high, [])
        span = em.emit(arith.SubiOp(high, low))  # high - low as 64 unsigned bits
        r_lo, r_hi = _join(em, w0, w1), _join(em, w2, w3)
        h1, l1 = _emit_mulhi64(em, r_hi, span), em.emit(arith.MuliOp(r_hi, span))
        total = em.emit(arith.AddiOp(l1, _emit_mulhi64(em, r_lo, span)))
        carry = em.emit(arith.ExtUIOp(em.emit(arith.CmpiOp(total, l1, "ult")), i64))
        return em.emit(arith.AddiOp(low, em.emit(arith.AddiOp(h1, carry))))


# ---------------------------------------------------------------------------
# helpers of the distributions
# ---------------------------------------------------------------------------

@irdl_op_definition
class RequireOp(ElementwiseOp):
    """x itself, once the 0-d bool `ok` holds; otherwise the call raises `message` (whose
    "ValueError: " prefix names the kind). The check runs in the kernel that reads x."""

    name = "ik.require"
    x = operand_def(TensorType)
    ok = operand_def(TensorType)
    result = result_def(TensorType)
    PARAMS: ClassVar = {"message": "ValueError: a required condition does not hold"}

    @classmethod
    def check_operands(cls, operands, p):
        if operands[1].type.get_shape() or dtype_of(operands[1].type) != np.bool_:
            raise ShapeError(f"the condition must be a 0-d bool, not {dtype_of(operands[1].type).name}"
                             f"{static_shape(operands[1].type)}")

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        return [dtypes[0]]

    def evaluate(self, p, x, ok):
        if not bool(ok):
            kind, text = split_kind(p.message)
            raise kind(text)
        return [np.asarray(x)]

    def emit_element(self, em, idx):
        em.require(em.at(self.ok, []), self.params.message)
        return em.operand(self.x, idx)

    def vjp(self, g, ins, out):
        return [g if ins[0].dtype.kind == "f" else None, None]

    def jvp(self, ts, ins, out):
        return ts[0]


def _next_below(x: np.ndarray) -> np.ndarray:
    return np.nextafter(x, np.asarray(-np.inf, dtype=np.asarray(x).dtype))


@irdl_op_definition
class NextBelowOp(UnaryOp):
    """The largest float below x (numpy's nextafter(x, -inf)); -inf and NaN stay."""

    name = "ik.next_below"
    NUMPY: ClassVar = staticmethod(_next_below)

    @classmethod
    def dtype_rule(cls, dtypes, p, dtype):
        if dtypes[0] not in FLOAT_DTYPES:
            raise DTypeError(f"ik.next_below takes a float, not {dtypes[0].name}")
        return [dtypes[0]]

    def scalar(self, em, x, dt):
        # IEEE floats of one sign are ordered like their bit patterns: step the pattern by one
        bits_type = i32 if dt == np.float32 else i64
        bits = em.emit(arith.BitcastOp(x, bits_type))
        one = _const(em, 1, bits_type)
        zero = S.constant(em, 0.0, dt)
        up = em.emit(arith.SubiOp(bits, one))     # x > 0: toward zero
        down = em.emit(arith.AddiOp(bits, one))   # x < 0: away from zero
        smallest_negative = _const(em, (1 << (bits_type.width.data - 1)) | 1, bits_type)
        stepped = em.emit(arith.SelectOp(em.emit(arith.CmpfOp(x, zero, "ogt")), up,
                                         em.emit(arith.SelectOp(em.emit(arith.CmpfOp(x, zero, "oeq")),
                                                                smallest_negative, down))))
        result = em.emit(arith.BitcastOp(stepped, S.scalar_type(dt)))
        keep = em.emit(arith.OrIOp(em.emit(arith.CmpfOp(x, x, "uno")),
                                   em.emit(arith.CmpfOp(x, S.constant(em, -np.inf, dt), "oeq"))))
        return em.emit(arith.SelectOp(keep, x, result))

    def derivative(self, x, y):
        return 1.0


OPS = [RandomUniformOp, RandomNormalOp, RandomIntegersOp, RequireOp, NextBelowOp]
