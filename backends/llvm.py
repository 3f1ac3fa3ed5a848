"""The loops level (func, scf, arith, math, memref, cf) translated straight to
`llvmlite.ir`, with no text in between.

Conventions of the generated code:
- A function `@f(memref..., ) -> (memref...)` becomes
  `i32 @f(ptr noalias %data0, i64 %dim0_0, ..., ptr %results)`: each memref
  argument is its data pointer and its sizes (buffers are contiguous, row
  major); `%results` points to i64 slots where each result's pointer and
  sizes are stored. The i32 is 0, or the 1-based number of the `cf.assert`
  that failed (its message is in `Translation.messages`); on failure every
  buffer the function allocated is freed first.
- `memref.alloc` is the runtime's `irkit_alloc` (64-byte aligned, large blocks
  pooled; see runtime.py), freed by `memref.dealloc`; bool elements are bytes.
- Transcendentals call libm with their libmvec vector variants attached, so the
  loop vectorizer calls `_ZGVeN16v_expf` and friends (notes/llvmlite-cpu.md), and the
  narrower ones (`_ZGVdN8v_expf`) in a loop's vectorised remainder; tanh's scalar
  remainder is irkit's own (backends/vecmath.py, SCALAR_TAILS).
- `func.call @irkit_gemm_f32/f64` calls the runtime's function of that name (small products
  as loops, larger ones BLAS); `@irkit_blas_gemm_*` and `@irkit_gemv_*` call the BLAS's
  sgemm/dgemm and sgemv/dgemv (Fortran ABI).
"""

from __future__ import annotations

import numpy as np
import llvmlite.ir as ir
from xdsl.dialects import arith, builtin, cf, func, math, memref, scf
from xdsl.dialects.builtin import (
    DenseIntOrFPElementsAttr,
    Float32Type,
    Float64Type,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    MemRefType,
)
from xdsl.ir import Attribute, Block, Operation, SSAValue

from irkit.backends import streaming, vecmath
from irkit.dialects.arith_ext import RemFOp
from irkit.errors import CompileError

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
F32, F64 = ir.FloatType(), ir.DoubleType()
PTR = ir.PointerType()

CMPI = ["eq", "ne", "slt", "sle", "sgt", "sge", "ult", "ule", "ugt", "uge"]
CMPF = ["false", "oeq", "ogt", "oge", "olt", "ole", "one", "ord", "ueq", "ugt", "uge", "ult", "ule",
        "une", "uno", "true"]
_ICMP = {"eq": ("s", "=="), "ne": ("s", "!="), "slt": ("s", "<"), "sle": ("s", "<="), "sgt": ("s", ">"),
         "sge": ("s", ">="), "ult": ("u", "<"), "ule": ("u", "<="), "ugt": ("u", ">"), "uge": ("u", ">=")}
_FCMP_OP = {"eq": "==", "gt": ">", "ge": ">=", "lt": "<", "le": "<=", "ne": "!="}

# math ops that call libm (and vectorise through libmvec): op class -> C name of the double version
LIBM = {math.ExpOp: "exp", math.Exp2Op: "exp2", math.ExpM1Op: "expm1", math.LogOp: "log",
        math.Log2Op: "log2", math.Log10Op: "log10", math.Log1pOp: "log1p", math.SinOp: "sin",
        math.CosOp: "cos", math.TanOp: "tan", math.SinhOp: "sinh", math.CoshOp: "cosh",
        math.TanhOp: "tanh", math.AsinOp: "asin", math.AcosOp: "acos", math.AtanOp: "atan",
        math.AsinhOp: "asinh", math.AcoshOp: "acosh", math.AtanhOp: "atanh", math.ErfOp: "erf",
        math.CbrtOp: "cbrt"}
LIBM2 = {math.PowFOp: "pow", math.Atan2Op: "atan2"}
INTRINSIC = {math.SqrtOp: "llvm.sqrt", math.AbsFOp: "llvm.fabs", math.FloorOp: "llvm.floor",
             math.CeilOp: "llvm.ceil", math.TruncOp: "llvm.trunc", math.RoundEvenOp: "llvm.roundeven",
             math.RoundOp: "llvm.round"}
INTRINSIC2 = {arith.MaximumfOp: "llvm.maximum", arith.MinimumfOp: "llvm.minimum",
              arith.MaxnumfOp: "llvm.maxnum", arith.MinnumfOp: "llvm.minnum",
              math.CopySignOp: "llvm.copysign", arith.MaxSIOp: "llvm.smax", arith.MinSIOp: "llvm.smin",
              arith.MaxUIOp: "llvm.umax", arith.MinUIOp: "llvm.umin"}
FBIN = {arith.AddfOp: "fadd", arith.SubfOp: "fsub", arith.MulfOp: "fmul", arith.DivfOp: "fdiv",
        RemFOp: "frem"}
IBIN = {arith.AddiOp: "add", arith.SubiOp: "sub", arith.MuliOp: "mul", arith.DivSIOp: "sdiv",
        arith.DivUIOp: "udiv", arith.RemSIOp: "srem", arith.RemUIOp: "urem", arith.AndIOp: "and_",
        arith.OrIOp: "or_", arith.XOrIOp: "xor", arith.ShLIOp: "shl", arith.ShRSIOp: "ashr",
        arith.ShRUIOp: "lshr"}
GEMM = {"irkit_blas_gemm_f32": ("irkit_sgemm", F32), "irkit_blas_gemm_f64": ("irkit_dgemm", F64)}
# products the runtime runs (dialects/ik/linalg.py gemm_runtime: small ones as loops, else BLAS),
# called with this translator's own convention
RUNTIME_FUNCTIONS = ("irkit_gemm_f32", "irkit_gemm_f64")
GEMV = {"irkit_gemv_f32": ("irkit_sgemv", F32), "irkit_gemv_f64": ("irkit_dgemv", F64)}


# The iterations a loop with data-dependent bounds is taken to run, when a parallel loop's
# work is weighed against the parallel threshold: a sparse product over 1e5 rows of 10
# stored values each is then split (2 threads: 3.2 -> 2.0 ms at k = 1, 196 -> 96 ms at 64).
DATA_DEPENDENT_TRIP = 16


def ll_type(t: Attribute) -> ir.Type:
    if isinstance(t, IndexType):
        return I64
    if isinstance(t, IntegerType):
        return ir.IntType(t.width.data)
    if isinstance(t, Float32Type):
        return F32
    if isinstance(t, Float64Type):
        return F64
    raise CompileError(f"llvm: no LLVM type for {t}")


def storage_type(t: Attribute) -> ir.Type:
    """How an element is stored: bools are bytes."""
    lt = ll_type(t)
    return I8 if lt == I1 else lt


class Desc:
    """A memref as LLVM values: its data pointer and sizes (row-major, contiguous)."""

    __slots__ = ("ptr", "dims", "elt")

    def __init__(self, ptr: ir.Value, dims: list[ir.Value], elt: Attribute) -> None:
        self.ptr, self.dims, self.elt = ptr, dims, elt


class Translation:
    """The result: the LLVM module, the assert messages, the functions' result ranks."""

    def __init__(self, module: ir.Module) -> None:
        self.module = module
        self.messages: list[str] = []
        self.vector_decls: list[ir.Function] = []


def global_bytes(op: memref.GlobalOp) -> ir.Constant:
    """A memref.global's contents as an i8 array (a splat written out in full)."""
    init = op.initial_value
    mtype = op.type
    n = int(np.prod(mtype.get_shape()))
    elt = storage_type(mtype.element_type)
    if not isinstance(init, DenseIntOrFPElementsAttr):
        raise CompileError(f"llvm: memref.global {op.sym_name.data} needs a dense initial value")
    raw = init.data.data
    width = elt.width // 8 if isinstance(elt, ir.IntType) else (4 if elt == F32 else 8)
    if len(raw) == width and n != 1:
        raw = raw * n
    return ir.Constant(ir.ArrayType(I8, len(raw)), bytearray(raw))


def passed_fields(x) -> list[ir.Value]:
    """How a captured value travels to an outlined body (a thread's or a GPU kernel's): a buffer
    as its pointer and its sizes that are not constants, a scalar as itself, a constant not at
    all (the body uses the constant)."""
    if isinstance(x, Desc):
        return [x.ptr, *[d for d in x.dims if not isinstance(d, ir.Constant)]]
    return [] if isinstance(x, ir.Constant) else [x]


def _defined_inside(op: Operation) -> set:
    """The results and block arguments of everything inside `op`'s regions."""
    inside: set = set()
    for region in op.regions:
        for inner in region.walk():
            inside.update(inner.results)
        for blk in _blocks(region):
            inside.update(blk.args)
    return inside


def _blocks(region):
    for op in region.walk():
        for r in op.regions:
            yield from r.blocks
    yield from region.blocks


def captured_values(op: Operation) -> list[SSAValue]:
    """The values `op`'s regions read that are defined outside it, in first-use order."""
    inside = _defined_inside(op)
    captured: list[SSAValue] = []
    for region in op.regions:
        for inner in region.walk():
            for v in inner.operands:
                if v not in inside and v not in captured:
                    captured.append(v)
    return captured


class Translator:
    # the runtime's allocator; the CUDA host program swaps in the device's
    alloc_fn, free_fn = "irkit_alloc", "irkit_free"

    def __init__(self, vector_isa: tuple[str, int] | None, num_threads: int = 1,
                 parallel_threshold: int = 1 << 62, stream_threshold: int | None = None) -> None:
        self.num_threads = num_threads
        self.parallel_threshold = parallel_threshold
        # bytes a loop writes before its stores stream past the cache (backends/streaming.py);
        # None: never
        self.stream_threshold = stream_threshold
        # a context of its own: the parallel loops' argument structs are named types, and
        # llvmlite's global context would keep every name of every module
        self.llmod = ir.Module(name="irkit", context=ir.Context())
        self.out = Translation(self.llmod)
        self.vector_isa = vector_isa  # ("d", 256) for AVX2 libmvec, None without libmvec
        self.globals: dict[str, ir.GlobalVariable] = {}

    # -- module ---------------------------------------------------------------
    def translate(self, module: builtin.ModuleOp) -> Translation:
        for op in module.ops:
            if isinstance(op, memref.GlobalOp):
                self.global_(op)
        for op in module.ops:
            if isinstance(op, func.FuncOp) and op.body.blocks:
                FunctionTranslator(self, op).run()
                self._bound_compile_time(self.llmod.globals[op.sym_name.data])
        self._keep_vector_decls()
        return self.out

    #: instructions above which a function's host code is left unoptimised (see below)
    HUGE_FUNCTION = 8000

    def _bound_compile_time(self, fn: ir.Function) -> None:
        """A graph of thousands of ops makes hundreds of kernels, and the function that runs
        them one after the other (allocations, checks, launches) grows to tens of thousands
        of instructions, where LLVM's optimiser and code generator take minutes (2,000 ops:
        91 s). Its kernels are outlined and still optimised; the sequence itself is left as
        written (10 s), at the cost of the serial loops it holds, and compiled by the fast
        code generator in a part of its own (backends/jit.py `_codegen_level`)."""
        size = sum(len(block.instructions) for block in fn.blocks)
        if size > self.HUGE_FUNCTION:
            fn.attributes.add("noinline")
            fn.attributes.add("optnone")

    def global_(self, op: memref.GlobalOp) -> None:
        init = global_bytes(op)
        g = ir.GlobalVariable(self.llmod, init.type, op.sym_name.data)
        g.initializer = init
        g.global_constant = True
        g.linkage = "internal"
        g.align = 64
        self.globals[op.sym_name.data] = g

    def _keep_vector_decls(self) -> None:
        decls = self.out.vector_decls
        if decls:
            g = ir.GlobalVariable(self.llmod, ir.ArrayType(PTR, len(decls)), "llvm.compiler.used")
            g.linkage = "appending"
            g.section = "llvm.metadata"
            g.initializer = ir.Constant(ir.ArrayType(PTR, len(decls)), list(decls))

    # -- declarations ---------------------------------------------------------------
    def declare(self, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
        fn = self.llmod.globals.get(name)
        if fn is None:
            fn = ir.Function(self.llmod, ir.FunctionType(ret, args), name)
        return fn

    def intrinsic(self, name: str, types: list[ir.Type], nargs: int | None = None,
                  ret: ir.Type | None = None) -> ir.Function:
        """An LLVM intrinsic overloaded on `types`; `nargs` operands of types[0] unless known."""
        if nargs is None:
            return self.llmod.declare_intrinsic(name, types)
        ty = types[-1]
        fnty = ir.FunctionType(ret or ty, [ty] * nargs)
        return self.llmod.declare_intrinsic(name, types, fnty)

    def libm(self, name: str, ty: ir.Type, nargs: int) -> ir.Function:
        """A libm function, tagged with its libmvec variant so that loops vectorise; without
        libmvec, exp, log and tanh as arithmetic that vectorises, sin and cos with a vector
        variant of irkit's own (`backends/vecmath.py`)."""
        if self.vector_isa is None and ty in (F32, F64):
            if name in vecmath.FUNCTIONS:
                return vecmath.function(self.llmod, name, ty)
            if name in vecmath.REDUCED:
                from irkit.backends import jit
                return vecmath.reduced_function(self.llmod, name, ty, jit.host_vector_isa(), self.out.vector_decls)
        cname = name + ("f" if ty == F32 else "")
        own = self.vector_isa is not None and name in vecmath.SCALAR_TAILS and ty in (F32, F64)
        fn = self.llmod.globals.get(f"{vecmath.PREFIX}{cname}_scalar" if own else cname)
        if fn is not None:
            return fn
        if own:  # libmvec for a loop's vector body, irkit's form for its scalar remainder
            fn = vecmath.function(self.llmod, name, ty, inline=False)
        else:
            fn = ir.Function(self.llmod, ir.FunctionType(ty, [ty] * nargs), cname)
            fn.attributes.add("nounwind")
            fn.attributes.add("readnone")
        if self.vector_isa is not None:
            variants = []
            for isa, bits in _narrower(self.vector_isa):
                lanes = bits // (32 if ty == F32 else 64)
                vname = f"_ZGV{isa}N{lanes}{'v' * nargs}_{cname}"
                vty = ir.VectorType(ty, lanes)
                vfn = ir.Function(self.llmod, ir.FunctionType(vty, [vty] * nargs), vname)
                # the mangled name repeats the scalar function's, which LLVM checks
                variants.append(f"_ZGV{isa}N{lanes}{'v' * nargs}_{fn.name}({vname})")
                self.out.vector_decls.append(vfn)
            set.add(fn.attributes, f'"vector-function-abi-variant"="{",".join(variants)}"')
        return fn


def _narrower(isa: tuple[str, int]) -> list[tuple[str, int]]:
    """The host's libmvec ISA and the narrower x86 ones it also runs: a loop vectorised at
    the widest vector finishes its remainder with a narrower one (AVX-512: 16 floats, then 8
    and 4), each calling libmvec's variant of that width."""
    order = [("e", 512), ("d", 256), ("b", 128)]
    if isa not in order:
        return [isa]
    return order[order.index(isa):]


class FunctionTranslator:
    def __init__(self, tr: Translator, op: func.FuncOp) -> None:
        ftype = op.function_type
        params: list[ir.Type] = []
        for t in ftype.inputs:
            if isinstance(t, MemRefType):
                params.append(PTR)
                params.extend([I64] * len(t.get_shape()))
            else:
                params.append(ll_type(t))
        params.append(PTR)  # result slots
        self._setup(tr, ir.Function(tr.llmod, ir.FunctionType(I32, params), op.sym_name.data))
        self.op = op
        it = iter(self.fn.args)
        for arg, t in zip(op.body.block.args, ftype.inputs):
            if isinstance(t, MemRefType):
                ptr = next(it)
                ptr.add_attribute("noalias")
                dims = [next(it) for _ in t.get_shape()]
                self.env[arg] = Desc(ptr, self._static_dims(t, dims), t.element_type)
            else:
                self.env[arg] = next(it)
        self.results_ptr = next(it)

    def _setup(self, tr: Translator, fn: ir.Function) -> None:
        self.tr = tr
        self.fn = fn
        self.env: dict[SSAValue, object] = {}
        # allocas go to the entry block, before its branch to the body (whatever the body's
        # first op makes of its own block: a parallel loop ends it at once)
        entry = fn.append_basic_block("entry")
        body = fn.append_basic_block("body")
        self.b = ir.IRBuilder(body)
        self.entry_builder = ir.IRBuilder(entry)
        self.entry_builder.position_before(self.entry_builder.branch(body))
        self.error_block = fn.append_basic_block("error")
        self.error_phi = None
        self.alloc_slots: list[ir.Value] = []
        self.slot_of: dict[SSAValue, ir.Value] = {}
        self.outlined = 0

    def _static_dims(self, t: MemRefType, dims: list[ir.Value]) -> list[ir.Value]:
        return [I64(s) if s >= 0 else d for s, d in zip(t.get_shape(), dims)]

    # -- driver ------------------------------------------------------------------
    def run(self) -> None:
        self.block(self.op.body.block)
        self._finish_error_block()

    def block(self, block: Block) -> list[ir.Value] | None:
        for op in block.ops:
            got = self.operation(op)
            if isinstance(op, (scf.YieldOp, scf.ConditionOp)):
                return got
        return None

    def v(self, value: SSAValue):
        try:
            return self.env[value]
        except KeyError:
            raise CompileError(f"llvm: value {value} used before it is defined") from None

    def set(self, op: Operation, value) -> None:
        self.env[op.results[0]] = value

    # -- ops -----------------------------------------------------------------------
    def operation(self, op: Operation):
        b = self.b
        t = type(op)
        if t in FBIN:
            flags = _fastmath(op)
            self.set(op, getattr(b, FBIN[t])(self.v(op.lhs), self.v(op.rhs), flags=flags))
        elif t in IBIN:
            self.set(op, getattr(b, IBIN[t])(self.v(op.lhs), self.v(op.rhs)))
        elif t is arith.ConstantOp:
            self.set(op, _constant(op))
        elif t is arith.CmpiOp:
            kind, cmp = _ICMP[CMPI[op.predicate.value.data]]
            f = b.icmp_signed if kind == "s" else b.icmp_unsigned
            self.set(op, f(cmp, self.v(op.lhs), self.v(op.rhs)))
        elif t is arith.CmpfOp:
            self.set(op, self._cmpf(CMPF[op.predicate.value.data], self.v(op.lhs), self.v(op.rhs)))
        elif t is arith.SelectOp:
            self.set(op, b.select(self.v(op.cond), self.v(op.lhs), self.v(op.rhs)))
        elif t is arith.NegfOp:
            self.set(op, b.fneg(self.v(op.operand)))
        elif t in INTRINSIC2:
            x, y = self.v(op.lhs), self.v(op.rhs)
            self.set(op, b.call(self.tr.intrinsic(INTRINSIC2[t], [x.type], 2), [x, y]))
        elif t is arith.FloorDivSIOp:
            self.set(op, self._floordiv(self.v(op.lhs), self.v(op.rhs)))
        elif t is arith.CeilDivSIOp:
            self.set(op, self._ceildiv(self.v(op.lhs), self.v(op.rhs)))
        elif t in (arith.IndexCastOp, arith.ExtSIOp, arith.ExtUIOp, arith.TruncIOp):
            self.set(op, self._int_cast(op))
        elif t in (arith.SIToFPOp, arith.UIToFPOp):
            f = b.sitofp if t is arith.SIToFPOp else b.uitofp
            self.set(op, f(self.v(op.input), ll_type(op.result.type)))
        elif t in (arith.FPToSIOp, arith.FPToUIOp):
            x = self.v(op.input)
            name = "llvm.fptosi.sat" if t is arith.FPToSIOp else "llvm.fptoui.sat"
            rt = ll_type(op.result.type)
            fnty = ir.FunctionType(rt, [x.type])
            self.set(op, b.call(self.tr.llmod.declare_intrinsic(name, [rt, x.type], fnty), [x]))
        elif t is arith.ExtFOp:
            self.set(op, b.fpext(self.v(op.input), ll_type(op.result.type)))
        elif t is arith.TruncFOp:
            self.set(op, b.fptrunc(self.v(op.input), ll_type(op.result.type)))
        elif t is arith.BitcastOp:
            self.set(op, b.bitcast(self.v(op.input), ll_type(op.result.type)))
        elif t in LIBM:
            x = self.v(op.operand)
            self.set(op, b.call(self.tr.libm(LIBM[t], x.type, 1), [x]))
        elif t in LIBM2:
            x, y = self.v(op.lhs), self.v(op.rhs)
            self.set(op, b.call(self.tr.libm(LIBM2[t], x.type, 2), [x, y]))
        elif t in INTRINSIC:
            x = self.v(op.operand)
            self.set(op, b.call(self.tr.intrinsic(INTRINSIC[t], [x.type]), [x]))
        elif t is math.AbsIOp:
            x = self.v(op.operand)
            fnty = ir.FunctionType(x.type, [x.type, I1])
            self.set(op, b.call(self.tr.llmod.declare_intrinsic("llvm.abs", [x.type], fnty), [x, I1(0)]))
        elif t is math.IPowIOp:
            self.set(op, self._ipow(self.v(op.lhs), self.v(op.rhs)))
        elif t is math.FmaOp:
            a, x, c = self.v(op.a), self.v(op.b), self.v(op.c)
            self.set(op, b.call(self.tr.intrinsic("llvm.fma", [a.type], 3), [a, x, c]))
        elif t is memref.LoadOp:
            self.set(op, self._load(self.v(op.memref), [self.v(i) for i in op.indices]))
        elif t is memref.StoreOp:
            self._store(self.v(op.value), self.v(op.memref), [self.v(i) for i in op.indices])
        elif t is memref.AllocOp:
            self._alloc(op)
        elif t is memref.DeallocOp:
            self._dealloc(op)
        elif t is memref.DimOp:
            desc = self.v(op.source)
            k = op.index.owner.value.value.data
            self.set(op, desc.dims[k])
        elif t in (memref.CollapseShapeOp, memref.ExpandShapeOp, memref.CastOp):
            self._view(op)
        elif t is memref.GetGlobalOp:
            mt = op.memref.type
            self.set(op, Desc(self._global_ptr(op.name_.root_reference.data), [I64(s) for s in mt.get_shape()],
                              mt.element_type))
        elif t is memref.CopyOp:
            self._copy(self.v(op.source), self.v(op.destination))
        elif t is scf.ForOp:
            self._for(op)
        elif t is scf.ParallelOp:
            self._parallel(op)
        elif t is scf.ReduceOp:
            if op.args:
                raise CompileError("llvm: scf.parallel reductions are not supported")
        elif t is scf.IfOp:
            self._if(op)
        elif t is scf.WhileOp:
            self._while(op)
        elif t is scf.ConditionOp:
            return [self.v(op.condition), *[self.v(x) for x in op.args]]
        elif t is scf.YieldOp:
            return [self.v(x) for x in op.operands]
        elif t is cf.AssertOp:
            self._assert(op)
        elif t is func.CallOp:
            self._call(op)
        elif t is func.ReturnOp:
            self._return(op)
        else:
            raise CompileError(f"llvm: no translation for {op.name}")
        return None

    # -- arithmetic helpers ------------------------------------------------------------
    def _cmpf(self, pred: str, x, y):
        b = self.b
        if pred == "false":
            return I1(0)
        if pred == "true":
            return I1(1)
        if pred == "ord":
            return b.fcmp_ordered("ord", x, y)
        if pred == "uno":
            return b.fcmp_unordered("uno", x, y)
        ordered, cmp = pred[0] == "o", _FCMP_OP[pred[1:]]
        return (b.fcmp_ordered if ordered else b.fcmp_unordered)(cmp, x, y)

    def _floordiv(self, x, y):
        b = self.b
        q = b.sdiv(x, y)
        r = b.srem(x, y)
        zero = ir.Constant(x.type, 0)
        fix = b.and_(b.icmp_signed("!=", r, zero), b.icmp_signed("!=", b.icmp_signed("<", r, zero),
                                                                 b.icmp_signed("<", y, zero)))
        return b.select(fix, b.sub(q, ir.Constant(x.type, 1)), q)

    def _ceildiv(self, x, y):
        b = self.b
        q = b.sdiv(x, y)
        r = b.srem(x, y)
        zero = ir.Constant(x.type, 0)
        fix = b.and_(b.icmp_signed("!=", r, zero), b.icmp_signed("==", b.icmp_signed("<", r, zero),
                                                                 b.icmp_signed("<", y, zero)))
        return b.select(fix, b.add(q, ir.Constant(x.type, 1)), q)

    def _int_cast(self, op):
        x = self.v(op.input)
        rt = ll_type(op.result.type)
        if x.type == rt:
            return x
        if x.type.width > rt.width:
            return self.b.trunc(x, rt)
        if isinstance(op, arith.ExtUIOp):
            return self.b.zext(x, rt)
        return self.b.sext(x, rt)

    def _ipow(self, base, exp):
        """Square and multiply (exp >= 0 is checked before)."""
        b = self.b
        ty = base.type
        pre = b.block
        head = self.fn.append_basic_block("ipow.head")
        body = self.fn.append_basic_block("ipow.body")
        done = self.fn.append_basic_block("ipow.done")
        b.branch(head)
        b.position_at_end(head)
        acc = b.phi(ty)
        bb = b.phi(ty)
        e = b.phi(ty)
        acc.add_incoming(ir.Constant(ty, 1), pre)
        bb.add_incoming(base, pre)
        e.add_incoming(exp, pre)
        b.cbranch(b.icmp_signed(">", e, ir.Constant(ty, 0)), body, done)
        b.position_at_end(body)
        odd = b.trunc(e, I1)
        acc2 = b.select(odd, b.mul(acc, bb), acc)
        bb2 = b.mul(bb, bb)
        e2 = b.lshr(e, ir.Constant(ty, 1))
        acc.add_incoming(acc2, body)
        bb.add_incoming(bb2, body)
        e.add_incoming(e2, body)
        b.branch(head)
        b.position_at_end(done)
        return acc

    # -- memory ---------------------------------------------------------------------
    def _addr(self, desc: Desc, idx: list):
        b = self.b
        lin = None
        for k, i in enumerate(idx):
            lin = i if lin is None else b.add(b.mul(lin, desc.dims[k], flags=["nuw", "nsw"]), i,
                                                flags=["nuw", "nsw"])
        elt = storage_type(desc.elt)
        if lin is None:
            return desc.ptr
        return b.gep(desc.ptr, [lin], inbounds=True, source_etype=elt)

    def _load(self, desc: Desc, idx: list):
        elt = storage_type(desc.elt)
        v = self.b.load(self._addr(desc, idx), typ=elt, align=_align(elt))
        if ll_type(desc.elt) == I1:
            return self.b.icmp_unsigned("!=", v, I8(0))
        return v

    def _store(self, value, desc: Desc, idx: list, align: int | None = None, metadata=None):
        """A store; `metadata` marks it non-temporal (backends/streaming.py), at `align`."""
        elt = storage_type(desc.elt)
        if ll_type(desc.elt) == I1:
            value = self.b.zext(value, I8)
        store = self.b.store(value, self._addr(desc, idx), align=align or _align(elt))
        if metadata is not None:
            store.set_metadata("nontemporal", metadata)

    def _bytes(self, desc: Desc):
        b = self.b
        n = I64(_size(desc.elt))
        for d in desc.dims:
            n = b.mul(n, d)
        return n

    #: byte counts from here up cannot be allocated: asked for, they fail as out of memory
    IMPOSSIBLE_BYTES = 1 << 62

    def _alloc_bytes(self, desc: Desc):
        """The buffer's size in bytes, IMPOSSIBLE_BYTES when the product of its sizes
        overflows (zeros((k, k)) with k = 2**40 must be a MemoryError, not a small buffer)."""
        b = self.b
        mul = self.tr.llmod.globals.get("llvm.umul.with.overflow.i64") or ir.Function(
            self.tr.llmod, ir.FunctionType(ir.LiteralStructType([I64, I1]), [I64, I64]),
            "llvm.umul.with.overflow.i64")
        n, overflow = I64(_size(desc.elt)), I1(0)
        for d in desc.dims:
            if isinstance(d, ir.Constant):
                n = b.mul(n, d)
                continue
            r = b.call(mul, [n, d])
            n, overflow = b.extract_value(r, 0), b.or_(overflow, b.extract_value(r, 1))
        too_big = b.or_(overflow, b.icmp_unsigned(">=", n, I64(self.IMPOSSIBLE_BYTES)))
        return b.select(too_big, I64(self.IMPOSSIBLE_BYTES), n)

    def _alloc(self, op: memref.AllocOp) -> None:
        b = self.b
        mt = op.memref.type
        dyn = iter(op.dynamic_sizes)
        dims = [I64(s) if s >= 0 else self.v(next(dyn)) for s in mt.get_shape()]
        desc = Desc(None, dims, mt.element_type)
        nbytes = self._alloc_bytes(desc)
        alloc = self.tr.declare(self.tr.alloc_fn, PTR, [I64])
        ptr = b.call(alloc, [nbytes])
        ok = b.icmp_unsigned("!=", ptr, ir.Constant(PTR, None))
        self._check(ok, "MemoryError: out of memory allocating a buffer")
        slot = self.entry_builder.alloca(PTR)
        self.entry_builder.store(ir.Constant(PTR, None), slot)
        b.store(ptr, slot)
        self.alloc_slots.append(slot)
        self.slot_of[op.memref] = slot
        desc.ptr = ptr
        self.env[op.memref] = desc

    def _dealloc(self, op: memref.DeallocOp) -> None:
        desc = self.v(op.memref)
        free = self.tr.declare(self.tr.free_fn, ir.VoidType(), [PTR])
        self.b.call(free, [desc.ptr])
        slot = self.slot_of.get(op.memref)
        if slot is not None:
            self.b.store(ir.Constant(PTR, None), slot)

    def _view(self, op) -> None:
        src = self.v(op.operands[0])
        mt = op.results[0].type
        shape = mt.get_shape()
        if isinstance(op, memref.ExpandShapeOp):
            dyn = iter(op.output_shape)
            dims = [I64(s) if s >= 0 else self.v(next(dyn)) for s in shape]
        elif isinstance(op, memref.CollapseShapeOp):
            dims = []
            for group in op.reassociation.data:
                n = I64(1)
                for k in (e.value.data for e in group.data):
                    n = self.b.mul(n, src.dims[k])
                dims.append(n)
        else:
            dims = src.dims
        self.env[op.results[0]] = Desc(src.ptr, dims, mt.element_type)
        slot = self.slot_of.get(op.operands[0])
        if slot is not None:  # freeing the view frees the allocation
            self.slot_of[op.results[0]] = slot

    def _global_ptr(self, name: str) -> ir.Value:
        return self.tr.globals[name]

    def _copy(self, src: Desc, dst: Desc) -> None:
        n = self._bytes(src)
        memcpy = self.tr.intrinsic("llvm.memcpy", [PTR, PTR, I64])
        self.b.call(memcpy, [dst.ptr, src.ptr, n, I1(0)])

    # -- control flow ----------------------------------------------------------------
    def _for(self, op: scf.ForOp) -> None:
        b = self.b
        lb, ub, step = self.v(op.lb), self.v(op.ub), self.v(op.step)
        inits = [self.v(x) for x in op.iter_args]
        pre = b.block
        head = self.fn.append_basic_block("for.head")
        body = self.fn.append_basic_block("for.body")
        exit_ = self.fn.append_basic_block("for.exit")
        b.branch(head)
        b.position_at_end(head)
        iv = b.phi(I64)
        iv.add_incoming(lb, pre)
        accs = []
        for x in inits:
            p = b.phi(x.type)
            p.add_incoming(x, pre)
            accs.append(p)
        b.cbranch(b.icmp_signed("<", iv, ub), body, exit_)
        b.position_at_end(body)
        block = op.body.block
        self.env[block.args[0]] = iv
        for a, p in zip(block.args[1:], accs):
            self.env[a] = p
        yielded = self.block(block) or []
        latch = b.block
        nxt = b.add(iv, step, flags=["nsw"])
        iv.add_incoming(nxt, latch)
        for p, y in zip(accs, yielded):
            p.add_incoming(y, latch)
        b.branch(head)
        b.position_at_end(exit_)
        for r, p in zip(op.results, accs):
            self.env[r] = p

    def _parallel(self, op: scf.ParallelOp) -> None:
        """The loop body becomes a function of (context, lo, hi); big loops run on threads."""
        if len(op.lowerBound) != 1 or op.initVals:
            raise CompileError("llvm: only 1-d scf.parallel without reductions is supported")
        b = self.b
        captured = captured_values(op)
        inside = _defined_inside(op)
        fields = [f for v in captured for f in passed_fields(self.v(v))]
        lb, ub, step = self.v(op.lowerBound[0]), self.v(op.upperBound[0]), self.v(op.step[0])
        trip = b.sub(ub, lb)
        unit_step = isinstance(step, ir.Constant) and step.constant == 1
        stream = None
        if unit_step and self.tr.stream_threshold is not None:
            stream = streaming.streamable(op, inside, lambda t: _size(t.element_type))
        if stream is not None and isinstance(lb, ir.Constant) and isinstance(ub, ir.Constant) and \
                (ub.constant - lb.constant) * len(stream.stores) * stream.element_bytes < self.tr.stream_threshold:
            stream = None  # a static size that never writes enough
        if stream is not None:
            fields.append(self._stream_flag(stream, trip))
        # a named type: a literal one is spelled out in every access, and the struct of a
        # kernel of 1,000 inputs made a 10,000-op graph's IR text 200 MB, whose parsing took
        # longer than its compiling
        ctx_type = self.tr.llmod.context.get_identified_type(f"{self.fn.name}.par{self.outlined + 1}.ctx")
        ctx_type.set_body(*[f.type for f in fields])
        ctx = self.entry_builder.alloca(ctx_type)
        for k, f in enumerate(fields):
            b.store(f, b.gep(ctx, [I32(0), I32(k)], inbounds=True))
        body_fn = self._outline(op, captured, ctx_type, _copy_loop(op, inside) if unit_step else None)
        if stream is not None:
            body_fn = self._outline_streaming(op, captured, ctx_type, body_fn, stream)
        work = b.mul(trip, I64(_weight(op)))
        for extent in self._inner_extents(op, inside):
            work = b.mul(work, extent)
        threads = self.tr.num_threads
        if unit_step and threads > 1:
            big = b.and_(b.icmp_signed(">=", work, I64(self.tr.parallel_threshold)),
                         b.icmp_signed(">=", trip, I64(2)))
            pfor = self.tr.declare("irkit_parallel_for", I32, [PTR, PTR, I64, I64, I64])
            with b.if_else(big) as (par, ser):
                with par:
                    s_par = b.call(pfor, [body_fn, ctx, lb, ub, I64(threads)])
                    bb_par = b.block
                with ser:
                    s_ser = b.call(body_fn, [ctx, lb, ub])
                    bb_ser = b.block
            status = b.phi(I32)
            status.add_incoming(s_par, bb_par)
            status.add_incoming(s_ser, bb_ser)
        else:
            status = b.call(body_fn, [ctx, lb, ub])
        fail = self.fn.append_basic_block("par.fail")
        cont = self.fn.append_basic_block("par.ok")
        b.cbranch(b.icmp_signed("==", status, I32(0)), cont, fail)
        b.position_at_end(fail)
        self._to_error(status)
        b.position_at_end(cont)

    def _outlined_function(self, name: str, captured: list[SSAValue], ctx_type) -> FunctionTranslator:
        """A function of (context, lo, hi) whose translator sees the captured values as
        loaded from the context."""
        fn = ir.Function(self.tr.llmod, ir.FunctionType(I32, [PTR, I64, I64]), name)
        fn.linkage = "internal"
        # one copy of the loop for both the threaded and the serial call: inlined into the
        # caller, LLVM would optimise and generate every kernel twice (half the compile time)
        fn.attributes.add("noinline")
        sub = FunctionTranslator.__new__(FunctionTranslator)
        sub._setup(self.tr, fn)
        sub.outlined = self.outlined * 100
        ctx = fn.args[0]
        b = sub.b
        k = 0
        for v in captured:
            x = self.v(v)

            def load(ty):
                nonlocal k
                val = b.load(b.gep(ctx, [I32(0), I32(k)], inbounds=True, source_etype=ctx_type), typ=ty)
                k += 1
                return val
            if isinstance(x, Desc):
                ptr = load(PTR)
                dims = [d if isinstance(d, ir.Constant) else load(I64) for d in x.dims]
                sub.env[v] = Desc(ptr, dims, x.elt)
            elif isinstance(x, ir.Constant):
                sub.env[v] = x
            else:
                sub.env[v] = load(x.type)
        return sub

    def _finish_outlined(self, sub: FunctionTranslator) -> None:
        eb = ir.IRBuilder(sub.error_block)
        if sub.error_phi is None:
            eb.unreachable()
        else:
            eb.ret(sub.error_phi)

    def _outline(self, op: scf.ParallelOp, captured: list[SSAValue], ctx_type,
                 copied: tuple[SSAValue, SSAValue] | None = None) -> ir.Function:
        """The loop's body as a function of (context, lo, hi); `copied`: the loop copies the
        first buffer into the second (_copy_loop), and memmove does it."""
        self.outlined += 1
        sub = self._outlined_function(f"{self.fn.name}.par{self.outlined}", captured, ctx_type)
        fn, b = sub.fn, sub.b
        ctx, lo, hi = fn.args
        step = self.v(op.step[0])
        if copied is not None:
            # a copy (passes/copies_to_loops.py): libc's memmove of the range is faster than
            # the loop LLVM makes of it
            src, dst = sub.env[copied[0]], sub.env[copied[1]]
            size = I64(_size(src.elt))
            start = b.mul(lo, size)
            memmove = self.tr.intrinsic("llvm.memmove", [PTR, PTR, I64])
            with b.if_then(b.icmp_signed("<", lo, hi)):
                b.call(memmove, [b.gep(dst.ptr, [start], source_etype=I8), b.gep(src.ptr, [start], source_etype=I8),
                                 b.mul(b.sub(hi, lo), size), I1(0)])
            b.ret(I32(0))
            self._finish_outlined(sub)
            return fn
        pre = b.block
        head = fn.append_basic_block("par.head")
        body = fn.append_basic_block("par.body")
        exit_ = fn.append_basic_block("par.exit")
        b.branch(head)
        b.position_at_end(head)
        iv = b.phi(I64)
        iv.add_incoming(lo, pre)
        b.cbranch(b.icmp_signed("<", iv, hi), body, exit_)
        b.position_at_end(body)
        sub.env[op.body.block.args[0]] = iv
        if isinstance(step, ir.Constant):
            step_value = step
        else:
            step_value = sub.env[op.step[0]] if op.step[0] in sub.env else I64(1)
        sub.block(op.body.block)
        iv.add_incoming(b.add(iv, step_value, flags=["nsw"]), b.block)
        b.branch(head)
        b.position_at_end(exit_)
        b.ret(I32(0))
        self._finish_outlined(sub)
        return fn

    def _stream_flag(self, stream: streaming.Streamable, trip) -> ir.Value:
        """Whether this call streams (backends/streaming.py): it writes at least the
        threshold's bytes, and every output is as far from a 64-byte boundary as the first,
        a whole number of elements."""
        b = self.b
        written = b.mul(trip, I64(len(stream.stores) * stream.element_bytes))
        ok = b.icmp_signed(">=", written, I64(self.tr.stream_threshold))
        offsets = [b.and_(b.ptrtoint(self.v(s.memref).ptr, I64), I64(streaming.LINE - 1)) for s in stream.stores]
        ok = b.and_(ok, b.icmp_unsigned("==", b.and_(offsets[0], I64(stream.element_bytes - 1)), I64(0)))
        for offset in offsets[1:]:
            ok = b.and_(ok, b.icmp_unsigned("==", offset, offsets[0]))
        return b.zext(ok, I8)

    def _outline_streaming(self, op: scf.ParallelOp, captured: list[SSAValue], ctx_type,
                           plain: ir.Function, stream: streaming.Streamable) -> ir.Function:
        """The loop `plain` runs, with its aligned middle in blocks of one cache line per
        output whose stores stream, when the context's last field says so."""
        sub = self._outlined_function(f"{plain.name}.stream", captured, ctx_type)
        fn, b = sub.fn, sub.b
        ctx, lo, hi = fn.args
        flag = b.load(b.gep(ctx, [I32(0), I32(len(ctx_type.elements) - 1)], inbounds=True, source_etype=ctx_type),
                      typ=I8)
        streams, plain_call = fn.append_basic_block("stream"), fn.append_basic_block("plain")
        b.cbranch(b.icmp_unsigned("!=", flag, I8(0)), streams, plain_call)
        b.position_at_end(plain_call)
        b.ret(b.call(plain, [ctx, lo, hi]))
        b.position_at_end(streams)
        size, unroll = stream.element_bytes, stream.unroll
        first = b.ptrtoint(sub.env[stream.stores[0].memref].ptr, I64)
        offset = b.and_(b.add(first, b.mul(lo, I64(size))), I64(streaming.LINE - 1))
        skip = b.udiv(b.and_(b.sub(I64(streaming.LINE), offset), I64(streaming.LINE - 1)), I64(size))
        head = b.call(self.tr.intrinsic("llvm.smin", [I64], 2), [b.add(lo, skip), hi])
        middle_end = b.sub(hi, b.and_(b.sub(hi, head), I64(unroll - 1)))
        status_head = b.call(plain, [ctx, lo, head])
        pre = b.block
        loop, body, done = (fn.append_basic_block(n) for n in ("stream.head", "stream.body", "stream.done"))
        b.branch(loop)
        b.position_at_end(loop)
        base = b.phi(I64)
        base.add_incoming(head, pre)
        b.cbranch(b.icmp_signed("<", base, middle_end), body, done)
        b.position_at_end(body)
        # op by op across the block's iterations (they are independent: it is a parallel
        # loop), so that SLP finds each op's `unroll` copies side by side
        outer = sub.env
        envs = [{**outer, op.body.block.args[0]: b.add(base, I64(k), flags=["nuw", "nsw"]) if k else base}
                for k in range(unroll)]
        mark = streaming.nontemporal(self.tr.llmod)
        for o in op.body.block.ops:
            if isinstance(o, scf.ReduceOp):
                continue
            for k, env in enumerate(envs):
                sub.env = env
                if isinstance(o, memref.StoreOp):
                    sub._store(sub.v(o.value), sub.v(o.memref), [sub.v(i) for i in o.indices],
                               align=streaming.store_alignment(k, size), metadata=mark)
                else:
                    sub.operation(o)
        sub.env = outer
        base.add_incoming(b.add(base, I64(unroll), flags=["nsw"]), b.block)
        b.branch(loop)
        b.position_at_end(done)
        # non-temporal stores are ordered with no other store: fenced here, before the chunk
        # counts itself done and another thread reads what it wrote (x86: sfence, the one
        # fence documented for them; a seq_cst fence there is a locked op)
        streaming.store_fence(b, self.tr.llmod)
        status_tail = b.call(plain, [ctx, middle_end, hi])
        b.ret(b.select(b.icmp_signed("!=", status_head, I32(0)), status_head, status_tail))
        self._finish_outlined(sub)
        return fn

    def _inner_extents(self, op: scf.ParallelOp, inside: set) -> list[ir.Value]:
        """Trip counts of the loops nested first in the body, when known outside it; a loop
        whose bounds the body computes (a CSR row's stored values: indptr[i] to indptr[i+1])
        counts as DATA_DEPENDENT_TRIP iterations, so that such a kernel is split on its rows."""
        out = []
        block = op.body.block
        while True:
            loop = next((o for o in block.ops if isinstance(o, scf.ForOp)), None)
            if loop is None or any(v in inside for v in (loop.lb, loop.ub)):
                break
            out.append(self.b.sub(self.v(loop.ub), self.v(loop.lb)))
            block = loop.body.block
        if any(isinstance(o, scf.ForOp) and (o.lb in inside or o.ub in inside) for o in op.body.walk()):
            out.append(I64(DATA_DEPENDENT_TRIP))
        return out

    def _if(self, op: scf.IfOp) -> None:
        """A branch; a memref it yields is handed over: the result gets its own cleanup slot
        and the branch's allocation slot is cleared."""
        b = self.b
        cond = self.v(op.cond)
        then = self.fn.append_basic_block("if.then")
        other = self.fn.append_basic_block("if.else")
        merge = self.fn.append_basic_block("if.end")
        b.cbranch(cond, then, other)
        outs = []
        for region, bb in ((op.true_region, then), (op.false_region, other)):
            b.position_at_end(bb)
            got = self.block(region.block) if region.blocks else []
            got = got or []
            if region.blocks:
                for v in region.block.last_op.operands:
                    slot = self.slot_of.get(v)
                    if slot is not None:
                        b.store(ir.Constant(PTR, None), slot)
            outs.append((got, b.block))
            b.branch(merge)
        b.position_at_end(merge)
        handed = []
        for k, r in enumerate(op.results):  # phis first: LLVM wants them at the top of the block
            if isinstance(r.type, MemRefType):
                ptr = b.phi(PTR)
                dims = [b.phi(I64) for _ in r.type.get_shape()]
                for got, bb in outs:
                    ptr.add_incoming(got[k].ptr, bb)
                    for p, d in zip(dims, got[k].dims):
                        p.add_incoming(d, bb)
                self.env[r] = Desc(ptr, self._static_dims(r.type, dims), r.type.element_type)
                handed.append((r, ptr))
                continue
            p = b.phi(ll_type(r.type))
            for got, bb in outs:
                p.add_incoming(got[k], bb)
            self.env[r] = p
        for r, ptr in handed:
            slot = self.entry_builder.alloca(PTR)
            self.entry_builder.store(ir.Constant(PTR, None), slot)
            b.store(ptr, slot)
            self.alloc_slots.append(slot)
            self.slot_of[r] = slot

    def _while(self, op: scf.WhileOp) -> None:
        """scf.while over scalar values: `before` computes the condition, `after` the next values."""
        b = self.b
        inits = [self.v(x) for x in op.arguments]
        pre = b.block
        head = self.fn.append_basic_block("while.head")
        body = self.fn.append_basic_block("while.body")
        exit_ = self.fn.append_basic_block("while.exit")
        b.branch(head)
        b.position_at_end(head)
        phis = []
        for x in inits:
            p = b.phi(x.type)
            p.add_incoming(x, pre)
            phis.append(p)
        for a, p in zip(op.before_region.block.args, phis):
            self.env[a] = p
        cond, *forwarded = self.block(op.before_region.block)
        b.cbranch(cond, body, exit_)
        b.position_at_end(body)
        for a, x in zip(op.after_region.block.args, forwarded):
            self.env[a] = x
        nxt = self.block(op.after_region.block) or []
        for p, y in zip(phis, nxt):
            p.add_incoming(y, b.block)
        b.branch(head)
        b.position_at_end(exit_)
        for r, x in zip(op.results, forwarded):
            self.env[r] = x

    def _check(self, ok, message: str) -> None:
        """Branch to the error exit with this message's code unless `ok`."""
        b = self.b
        self.tr.out.messages.append(message)
        code = len(self.tr.out.messages)
        fail = self.fn.append_basic_block("check.fail")
        cont = self.fn.append_basic_block("check.ok")
        b.cbranch(ok, cont, fail)
        b.position_at_end(fail)
        self._to_error(I32(code))
        b.position_at_end(cont)

    def _to_error(self, code) -> None:
        if self.error_phi is None:
            eb = ir.IRBuilder(self.error_block)
            self.error_phi = eb.phi(I32)
        self.error_phi.add_incoming(code, self.b.block)
        self.b.branch(self.error_block)

    def _assert(self, op: cf.AssertOp) -> None:
        self._check(self.v(op.arg), op.msg.data)

    def _finish_error_block(self) -> None:
        eb = ir.IRBuilder(self.error_block)
        if self.error_phi is None:
            eb.unreachable()
            return
        free = self.tr.declare(self.tr.free_fn, ir.VoidType(), [PTR])
        for slot in self.alloc_slots:
            eb.call(free, [eb.load(slot, typ=PTR)])
        eb.ret(self.error_phi)

    def _return(self, op: func.ReturnOp) -> None:
        b = self.b
        slot = 0
        for v in op.arguments:
            desc = self.v(v)
            p = b.gep(self.results_ptr, [I64(slot)], inbounds=True, source_etype=I64)
            b.store(b.ptrtoint(desc.ptr, I64), p)
            slot += 1
            for d in desc.dims:
                b.store(d, b.gep(self.results_ptr, [I64(slot)], inbounds=True, source_etype=I64))
                slot += 1
        b.ret(I32(0))

    # -- calls ------------------------------------------------------------------------
    def _to_blas_int(self, value):
        """An index (i64) as the BLAS's integer: itself for ILP64, truncated for LP64."""
        bint = _blas_int()
        return value if bint == I64 else self.b.trunc(value, bint)

    def _call_runtime(self, op: func.CallOp, name: str) -> None:
        """A function of the runtime made by this translator (see the module's conventions):
        a memref is its data pointer and sizes; it has no results and no checks to fail."""
        args: list[ir.Value] = []
        for v in op.arguments:
            x = self.v(v)
            args += [x.ptr, *x.dims] if isinstance(x, Desc) else [x]
        fn = self.tr.declare(name, I32, [a.type for a in args] + [PTR])
        self.b.call(fn, args + [ir.Constant(PTR, None)])

    def _gemv(self, op: func.CallOp, sym: str, ft) -> None:
        """`@irkit_gemv_*(trans, M, N, alpha, A, offA, lda, X, offX, beta, Y, offY)`: BLAS's
        column-major y = alpha op(A) x + beta y (Fortran ABI), unit strides."""
        (trans, m, n, alpha, A, offa, lda, X, offx, beta, Y, offy) = [self.v(x) for x in op.arguments]
        b, eb = self.b, self.entry_builder
        bint = _blas_int()
        ch = eb.alloca(I8)
        im, in_, ilda, inc = (eb.alloca(bint) for _ in range(4))
        pal, pbe = eb.alloca(ft), eb.alloca(ft)
        b.store(b.select(trans, I8(ord("T")), I8(ord("N"))), ch)
        b.store(self._to_blas_int(m), im)
        b.store(self._to_blas_int(n), in_)
        b.store(self._to_blas_int(b.select(b.icmp_signed("<", lda, I64(1)), I64(1), lda)), ilda)
        b.store(bint(1), inc)
        b.store(alpha, pal)
        b.store(beta, pbe)
        pa = b.gep(A.ptr, [offa], inbounds=True, source_etype=ft)
        px = b.gep(X.ptr, [offx], inbounds=True, source_etype=ft)
        py = b.gep(Y.ptr, [offy], inbounds=True, source_etype=ft)
        gemv = self.tr.declare(sym, ir.VoidType(), [PTR] * 11)
        rows = b.select(trans, n, m)  # the length of y
        both = b.and_(b.icmp_signed(">", m, I64(0)), b.icmp_signed(">", n, I64(0)))
        with b.if_else(both) as (call, empty):
            with call:
                b.call(gemv, [ch, im, in_, pal, pa, ilda, px, inc, pbe, py, inc])
            with empty:  # x is empty: y is zeros (BLAS would return without writing it)
                memset = self.tr.intrinsic("llvm.memset", [PTR, I64])
                size = I64(4 if ft == F32 else 8)
                b.call(memset, [py, I8(0), b.mul(b.select(b.icmp_signed(">", rows, I64(0)), rows, I64(0)), size),
                                I1(0)])

    def _call(self, op: func.CallOp) -> None:
        name = op.callee.root_reference.data
        if name in GEMV:
            self._gemv(op, *GEMV[name])
            return
        if name in RUNTIME_FUNCTIONS:
            self._call_runtime(op, name)
            return
        if name not in GEMM:
            raise CompileError(f"llvm: call to unknown function @{name}")
        sym, ft = GEMM[name]
        (ta, tb, m, n, k, alpha, A, offa, lda, B, offb, ldb, beta, C, offc, ldc) = \
            [self.v(x) for x in op.arguments]
        b = self.b
        eb = self.entry_builder

        def slot(ty):
            return eb.alloca(ty)

        bint = _blas_int()
        ch_a, ch_b = slot(I8), slot(I8)
        im, in_, ik, ilda, ildb, ildc = (slot(bint) for _ in range(6))
        pal, pbe = slot(ft), slot(ft)
        # Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap A and B.
        b.store(b.select(tb, I8(ord("T")), I8(ord("N"))), ch_b)
        b.store(b.select(ta, I8(ord("T")), I8(ord("N"))), ch_a)
        for dst, val in ((im, m), (in_, n), (ik, k)):
            b.store(self._to_blas_int(val), dst)
        for dst, val in ((ilda, lda), (ildb, ldb), (ildc, ldc)):
            one = I64(1)
            b.store(self._to_blas_int(b.select(b.icmp_signed("<", val, one), one, val)), dst)
        b.store(alpha, pal)
        b.store(beta, pbe)
        pa = b.gep(A.ptr, [offa], inbounds=True, source_etype=ft)
        pb = b.gep(B.ptr, [offb], inbounds=True, source_etype=ft)
        pc = b.gep(C.ptr, [offc], inbounds=True, source_etype=ft)
        gemm = self.tr.declare(sym, ir.VoidType(), [PTR] * 13)
        nonempty = b.and_(b.icmp_signed(">", m, I64(0)), b.icmp_signed(">", n, I64(0)))
        # One row of C (a batch of one): BLAS's gemm packs its operands for blocks that a
        # single row never fills (x @ W, 1x784 @ 784x500: 400 us against gemv's 40 us), so
        # the row is a gemv on B's column-major view: C^T = op(B)^T op(A)^T.
        one_row = b.and_(b.icmp_signed("==", m, I64(1)), b.icmp_signed(">", k, I64(0)))
        with b.if_then(nonempty):
            with b.if_else(one_row) as (row, full):
                with row:
                    gemv_sym = GEMV["irkit_gemv_f32" if ft == F32 else "irkit_gemv_f64"][0]
                    gemv = self.tr.declare(gemv_sym, ir.VoidType(), [PTR] * 11)
                    vm, vn, incx, incy = (slot(bint) for _ in range(4))
                    b.store(self._to_blas_int(b.select(tb, k, n)), vm)  # op(B)^T as BLAS sees B
                    b.store(self._to_blas_int(b.select(tb, n, k)), vn)
                    b.store(b.select(ta, b.load(ilda, typ=bint), bint(1)), incx)  # the row of op(A)
                    b.store(bint(1), incy)
                    b.call(gemv, [ch_b, vm, vn, pal, pb, ildb, pa, incx, pbe, pc, incy])
                with full:
                    b.call(gemm, [ch_b, ch_a, in_, im, ik, pal, pb, ildb, pa, ilda, pbe, pc, ildc])


# a transcendental (a libm or libmvec call) weighs this many elementary ops when a loop's
# work is compared with the parallel threshold: measured on the float32 chain (three
# transcendentals and eight arithmetic ops an element: 14 times x + 1's time an element;
# with the threshold, 2 threads gain from about 5,000 elements of it)
TRANSCENDENTAL_WEIGHT = 8


def _weight(op: scf.ParallelOp) -> int:
    """The work of one iteration of a parallel loop's body, in elementary ops (1 for a
    copy), for its inner loops' every iteration."""
    return 1 + TRANSCENDENTAL_WEIGHT * sum(type(o) in LIBM or type(o) in LIBM2 for o in op.body.walk())


def _copy_loop(op: scf.ParallelOp, inside: set) -> tuple[SSAValue, SSAValue] | None:
    """(source, destination) when the loop's body is `dst[i] = src[i]` on 1-d buffers of one
    element type made outside it, else None. (A parallel loop's iterations cannot depend on
    each other, so the two can only be one buffer or none of each other: memmove holds.)"""
    ops = list(op.body.block.ops)
    if len(ops) != 3 or not isinstance(ops[0], memref.LoadOp) or not isinstance(ops[1], memref.StoreOp) \
            or not isinstance(ops[2], scf.ReduceOp) or ops[2].args:
        return None
    load, store = ops[0], ops[1]
    iv = op.body.block.args[0]
    if store.value != load.res or list(load.indices) != [iv] or list(store.indices) != [iv] \
            or load.memref in inside or store.memref in inside \
            or load.memref.type.element_type != store.memref.type.element_type:
        return None
    return load.memref, store.memref


def _blas_int() -> ir.IntType:
    """The integer type of the BLAS that compiled code calls (backends.jit picks it)."""
    from irkit.backends import jit
    return ir.IntType(jit.blas().int_bits)


def _fastmath(op) -> tuple:
    fm = op.properties.get("fastmath")
    if fm is None:
        return ()
    flags = [str(f) for f in getattr(fm, "data", ())]
    # sorted: the attribute holds a set, and the same IR must print the same text in every
    # process (it is the key of the compile cache)
    return tuple(sorted(f.split(".")[-1].lower() for f in flags)) if flags else ()


def _constant(op: arith.ConstantOp):
    val = op.value
    t = ll_type(op.result.type)
    if isinstance(val, FloatAttr):
        return ir.Constant(t, float(val.value.data))
    if isinstance(val, IntegerAttr):
        v = int(val.value.data)
        if t == I1:
            v &= 1
        return ir.Constant(t, v)
    raise CompileError(f"llvm: unsupported constant {val}")


def _size(elt: Attribute) -> int:
    lt = storage_type(elt)
    if lt == F32:
        return 4
    if lt == F64:
        return 8
    return lt.width // 8


def _align(lt: ir.Type) -> int:
    return 4 if lt == F32 else 8 if lt == F64 else max(lt.width // 8, 1)

