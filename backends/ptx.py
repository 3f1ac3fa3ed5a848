"""The loops level for NVIDIA GPUs: kernels as PTX, and a host program that launches them.

`translate(module)` splits each function of the loops level in two:

- **device** (`nvptx64-nvidia-cuda`, kernels in the `ptx_kernel` calling convention):
  - every `scf.parallel` the host reaches is a kernel `<func>_k<n>`: one thread per
    iteration through a grid-stride loop, its captured buffers, sizes and scalars as
    parameters (buffers as `ptr addrspace(1)`, so loads are `ld.global`);
  - an `scf.parallel` with `scf.reduce` (a full reduction, from passes/parallel_reductions.py)
    is a block reduction `<func>_r<n>` folding into a device cell the host reads back; a
    parallel loop over rows whose body holds nested `scf.parallel` loops (row reductions, row
    outputs) runs one warp a row, the lanes sharing each nested loop (`backends/ptx_reduce.py`);
  - other code that reads or writes buffers outside a parallel loop is a one-thread
    kernel `<func>_s<n>`; the scalars the host needs from it (a branch condition, a trip
    count) come back through a small scratch buffer, with the error flag. 0-d buffers that
    only pass scalars between ops stay on the host and reach kernels by value, and a full
    reduction whose value only device stores use stays in its device cell, which the storing
    kernel reads (`backends/ptx_scalars.py`);
  - `@irkit_gemm_*` / `@irkit_gemv_*` are cuBLAS calls where cuBLAS is found (see
    `backends/cuda.py`), else launches of a tiled kernel (`irkit_gemm_f32`, 16x16 tiles in
    shared memory);
  - transcendentals call libdevice (`__nv_expf`, ...; never `llvm.exp` & co., which kill
    the process in NVPTX codegen). Without libdevice, float32 exp/log/tanh and their
    family are defined here on `ex2.approx`/`lg2.approx` with range reduction; any other
    function is a compile error that says what to install;
  - a failed check inside a kernel stores its code in `@irkit_error` (the first one wins) and
    returns; in reduction and row kernels, whose threads meet at shuffles and barriers, the
    thread carries on instead, its later accesses going to `@irkit_safe_cell`.
- **host** (the CPU, through the same `FunctionTranslator` as the CPU backend;
  `backends/ptx_host.py`): sizes, checks, loops around launches and allocation, with
  buffers in device memory through the runtime functions of `backends/cuda.py`
  (`irkit_cuda_alloc`, `irkit_cuda_copy`, ...); launches call the driver's cuLaunchKernel
  (`irkit_cuLaunchKernel`) with the kernel's handle from `@irkit_cuda_functions`.

`emit_ptx(program.device_module)` links libdevice, optimises (O3, which folds
`__nvvm_reflect`) and returns the PTX text; no GPU or driver is needed for that.
"""

from __future__ import annotations

import functools
import re
import threading

import llvmlite.binding as llvm
import llvmlite.ir as ir
from xdsl.dialects import builtin, memref, scf
from xdsl.ir import Block, Operation, SSAValue

from irkit.backends import ptx_reduce as R
from irkit.backends.ptx_scalars import DeviceScalar, HostScalar, ReducedCell
from irkit.backends.llvm import (F32, I1, I8, I32, I64, PTR, Desc, FunctionTranslator, Translator, global_bytes,
                                 ll_type, passed_fields, storage_type)
from irkit.errors import CompileError

TRIPLE = "nvptx64-nvidia-cuda"
DATA_LAYOUT = "e-p6:32:32-i64:64-i128:128-i256:256-v16:16-v32:32-n16:32:64"
DEFAULT_SM = "sm_80"  # one build serves Ampere and newer (they JIT it)
# the SMs from Ampere on that LLVM 22's NVPTX target emits for (a device's own SM is used
# when it is one of these; a newer one JITs the sm_80 build)
KNOWN_SMS = frozenset({"sm_80", "sm_86", "sm_87", "sm_88", "sm_89", "sm_90", "sm_100", "sm_103",
                       "sm_110", "sm_120", "sm_121"})
GPTR = ir.PointerType(addrspace=1)
SPTR = ir.PointerType(addrspace=3)
BLOCK = 256           # threads a block for 1-d kernels
MAX_BLOCKS = 65535    # grid-stride loops cover the rest
REDUCE_BLOCKS = 1024  # a full reduction: about 8 blocks an SM fill an H100/H200, and fewer blocks fewer atomics
ROWS_A_BLOCK = BLOCK // R.WARP  # a row kernel runs one warp a row
TILE = 16             # gemm tiles are TILE x TILE
SCRATCH_SLOTS = 64    # 8-byte slots a one-thread kernel can hand back to the host

# the host runtime (backends/cuda.py registers these symbols before the host module loads)
RUNTIME = {
    "irkit_cuda_alloc": (PTR, [I64]),
    "irkit_cuda_free": (ir.VoidType(), [PTR]),
    "irkit_cuda_copy": (I32, [PTR, PTR, I64]),             # device to device
    "irkit_cuda_read": (I32, [PTR, PTR, I64]),             # device to host, synchronous
    "irkit_cuda_write": (I32, [PTR, PTR, I64]),            # host to device
    # the driver's cuLaunchKernel itself where the launcher can give its address (no Python
    # between the host code and the driver), else a launcher's function of the same signature:
    # (function, grid x y z, block x y z, shared bytes, stream, params, extra) -> CUresult
    "irkit_cuLaunchKernel": (I32, [PTR, I32, I32, I32, I32, I32, I32, I32, PTR, PTR, PTR]),
    "irkit_cuda_global": (PTR, [I64, I32]),
    "irkit_cuda_scratch": (PTR, [I64]),
    # cuBLAS when it is there: (bits, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc) of a
    # row-major C = alpha op(A) op(B) + beta C; 0 done, 1 no cuBLAS (launch the tiled kernel)
    "irkit_cuda_gemm": (I32, [I32, I8, I8, I64, I64, I64, ir.DoubleType(), PTR, I64, PTR, I64, ir.DoubleType(),
                              PTR, I64]),
}
PROGRAM_GLOBAL = "irkit_cuda_program"
FUNCTIONS_GLOBAL = "irkit_cuda_functions"  # host: the loaded kernels' handles, by kernel index
RESULT_GLOBAL = "irkit_cuda_result"  # host: the CUresult of a failed launch
ERROR_GLOBAL = "irkit_error"
SAFE_CELL_GLOBAL = "irkit_safe_cell"


class Kernel:
    """A kernel of the device module, as the launcher needs it."""

    __slots__ = ("name", "kind")

    def __init__(self, name: str, kind: str) -> None:
        self.name, self.kind = name, kind

    def __repr__(self) -> str:
        return f"Kernel({self.name!r}, {self.kind!r})"


class Program:
    """A loops module translated for a GPU: the host module (run on the CPU), the device
    module (kernels), and what the runtime needs to connect them. From the compile cache,
    the host module is its LLVM IR text and the device module is absent (its PTX is kept)."""

    def __init__(self, host: ir.Module, device: ir.Module, kernels: list[Kernel], globals_: list[str],
                 messages: list[str]) -> None:
        self.host, self.device = host, device
        self.kernels, self.globals, self.messages = kernels, globals_, messages


def translate(module: builtin.ModuleOp) -> Program:
    """Split the loops module `module` into a host program and its kernels."""
    from irkit.backends.ptx_host import HostTranslator  # the host side builds on the device side
    host = HostTranslator()
    host.translate(module)
    dev = host.device
    return Program(host.llmod, dev.llmod, dev.kernels, host.global_names, host.out.messages)


# -- device side ----------------------------------------------------------------------------------

# libdevice's names: C name of the double version -> __nv_<name>[f]
_NV_NAME = {"exp": "exp", "exp2": "exp2", "expm1": "expm1", "log": "log", "log2": "log2", "log10": "log10",
            "log1p": "log1p", "sin": "sin", "cos": "cos", "tan": "tan", "sinh": "sinh", "cosh": "cosh",
            "tanh": "tanh", "asin": "asin", "acos": "acos", "atan": "atan", "asinh": "asinh", "acosh": "acosh",
            "atanh": "atanh", "erf": "erf", "cbrt": "cbrt", "pow": "pow", "atan2": "atan2", "fmod": "fmod"}


class DeviceTranslator(Translator):
    """The device module: kernels, device globals, the error flag, libdevice declarations."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__(vector_isa=None)
        self.llmod.triple = TRIPLE
        self.llmod.data_layout = DATA_LAYOUT
        self.out.messages = messages  # one numbering of checks for host and device
        self.kernels: list[Kernel] = []
        self.libdevice: list[str] = []
        self.error_flag = ir.GlobalVariable(self.llmod, I32, ERROR_GLOBAL, addrspace=1)
        self.error_flag.initializer = I32(0)
        self.error_flag.align = 4
        # read by libdevice's __nvvm_reflect("__CUDA_FTZ"): keep subnormals, as numpy does
        self.llmod.add_named_metadata("llvm.module.flags", [I32(4), "nvvm-reflect-ftz", I32(0)])

    def global_(self, op: memref.GlobalOp) -> None:
        """A constant buffer in global memory, visible to cuModuleGetGlobal."""
        name = op.sym_name.data
        init = global_bytes(op)
        g = ir.GlobalVariable(self.llmod, init.type, device_global_name(name), addrspace=1)
        g.initializer = init
        g.align = 64
        self.globals[name] = g

    def libm(self, name: str, ty: ir.Type, nargs: int) -> ir.Function:
        cname = "__nv_" + _NV_NAME[name] + ("f" if ty == F32 else "")
        fn = self.llmod.globals.get(cname)
        if fn is None:
            fn = ir.Function(self.llmod, ir.FunctionType(ty, [ty] * nargs), cname)
            self.libdevice.append(cname)
        return fn

    def sreg(self, b: ir.IRBuilder, name: str) -> ir.Value:
        """A special register (`tid.x`, `ctaid.x`, `ntid.x`, `nctaid.x`) as i64."""
        fname = "llvm.nvvm.read.ptx.sreg." + name
        fn = self.llmod.globals.get(fname) or ir.Function(self.llmod, ir.FunctionType(I32, []), fname)
        return b.zext(b.call(fn, []), I64)

    def new_kernel(self, name: str, params: list[ir.Type], kind: str) -> ir.Function:
        fn = ir.Function(self.llmod, ir.FunctionType(ir.VoidType(), params), name)
        fn.calling_convention = "ptx_kernel"
        self.kernels.append(Kernel(name, kind))
        return fn

    def safe_cell(self) -> ir.GlobalVariable:
        """`irkit_safe_cell`: where the accesses of a thread go after a failed check (see
        KernelTranslator); wide and aligned enough for any element, its contents are junk."""
        cell = self.llmod.globals.get(SAFE_CELL_GLOBAL)
        if cell is None:
            cell = ir.GlobalVariable(self.llmod, ir.ArrayType(I64, 2), SAFE_CELL_GLOBAL, addrspace=1)
            cell.initializer = ir.Constant(ir.ArrayType(I64, 2), [0, 0])
            cell.align = 16
        return cell

    def kernel_index(self, name: str) -> int:
        return next(k for k, kern in enumerate(self.kernels) if kern.name == name)

    # -- gemm -------------------------------------------------------------------------------------
    def gemm(self, ft: ir.Type) -> str:
        """`irkit_gemm_f32/f64(ta, tb, m, n, k, alpha, A, offa, lda, B, offb, ldb, beta, C, offc, ldc)`:
        row-major C = alpha op(A) op(B) + beta C, one TILE x TILE block of C a thread block;
        C is not read when beta is 0."""
        name = "irkit_gemm_" + ("f32" if ft == F32 else "f64")
        if name in self.llmod.globals:
            return name
        params = [I8, I8, I64, I64, I64, ft, GPTR, I64, I64, GPTR, I64, I64, ft, GPTR, I64, I64]
        fn = self.new_kernel(name, params, "gemm")
        ta, tb, m, n, k, alpha, A, offa, lda, B, offb, ldb, beta, C, offc, ldc = fn.args
        A.add_attribute("noalias")  # read-only: ld.global.nc
        B.add_attribute("noalias")
        tiles = []
        for which in ("a", "b"):
            g = ir.GlobalVariable(self.llmod, ir.ArrayType(ft, TILE * TILE), f"{name}.{which}", addrspace=3)
            g.linkage = "internal"
            g.initializer = ir.Constant(ir.ArrayType(ft, TILE * TILE), ir.Undefined)
            tiles.append(g)
        sa, sb = tiles
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        tx, ty = self.sreg(b, "tid.x"), self.sreg(b, "tid.y")
        row = b.add(b.mul(self.sreg(b, "ctaid.y"), I64(TILE)), ty)
        col = b.add(b.mul(self.sreg(b, "ctaid.x"), I64(TILE)), tx)
        ta1, tb1 = b.icmp_unsigned("!=", ta, I8(0)), b.icmp_unsigned("!=", tb, I8(0))
        ntiles = b.udiv(b.add(k, I64(TILE - 1)), I64(TILE))
        zero = ir.Constant(ft, 0.0)
        barrier = self.llmod.globals.get("llvm.nvvm.barrier0") or \
            ir.Function(self.llmod, ir.FunctionType(ir.VoidType(), []), "llvm.nvvm.barrier0")

        def element(base, off, ld, trans, i, p, rows, cols):
            """op(X)[i, p] of a rows x cols operand, 0 outside it."""
            inside = b.and_(b.icmp_signed("<", i, rows), b.icmp_signed("<", p, cols))
            idx = b.select(trans, b.add(b.mul(p, ld), i), b.add(b.mul(i, ld), p))
            safe = b.select(inside, b.add(off, idx), off)
            v = b.load(b.gep(base, [safe], source_etype=ft), typ=ft)
            return b.select(inside, v, zero)

        pre = b.block
        loop = fn.append_basic_block("tiles")
        inner = fn.append_basic_block("tile.done")
        done = fn.append_basic_block("done")
        b.branch(loop)
        b.position_at_end(loop)
        t = b.phi(I64)
        acc = b.phi(ft)
        t.add_incoming(I64(0), pre)
        acc.add_incoming(zero, pre)
        more = b.icmp_signed("<", t, ntiles)
        body = fn.append_basic_block("tile")
        b.cbranch(more, body, done)
        b.position_at_end(body)
        base = b.mul(t, I64(TILE))
        slot = b.add(b.mul(ty, I64(TILE)), tx)
        b.store(element(A, offa, lda, ta1, row, b.add(base, tx), m, k), b.gep(sa, [I64(0), slot], inbounds=True))
        b.store(element(B, offb, ldb, tb1, b.add(base, ty), col, k, n), b.gep(sb, [I64(0), slot], inbounds=True))
        b.call(barrier, [])
        a_acc = acc
        for p in range(TILE):
            x = b.load(b.gep(sa, [I64(0), b.add(b.mul(ty, I64(TILE)), I64(p))], inbounds=True), typ=ft)
            y = b.load(b.gep(sb, [I64(0), b.add(I64(p * TILE), tx)], inbounds=True), typ=ft)
            a_acc = b.call(self.intrinsic("llvm.fma", [ft], 3), [x, y, a_acc])
        b.call(barrier, [])
        b.branch(inner)
        b.position_at_end(inner)
        t.add_incoming(b.add(t, I64(1)), inner)
        acc.add_incoming(a_acc, inner)
        b.branch(loop)
        b.position_at_end(done)
        ok = b.and_(b.icmp_signed("<", row, m), b.icmp_signed("<", col, n))
        with b.if_then(ok):
            pc = b.gep(C, [b.add(offc, b.add(b.mul(row, ldc), col))], source_etype=ft)
            scaled = b.fmul(alpha, acc)
            with b.if_else(b.fcmp_ordered("==", beta, zero)) as (no_c, with_c):
                with no_c:
                    b.store(scaled, pc)
                with with_c:
                    b.store(b.call(self.intrinsic("llvm.fma", [ft], 3), [beta, b.load(pc, typ=ft), scaled]), pc)
        b.ret_void()
        return name


def device_global_name(name: str) -> str:
    """A memref.global's name in the device module (PTX names allow only [A-Za-z0-9_$])."""
    return re.sub(r"[^A-Za-z0-9_$]", "_", name) + "_dev"


def _param_types(x) -> list[ir.Type]:
    """A kernel's parameters for a captured host value (`passed_fields`): buffers in global
    memory, bools as bytes, a promoted 0-d buffer as its value."""
    if isinstance(x, HostScalar):
        return [storage_type(x.elt)]
    if isinstance(x, ReducedCell):
        return [GPTR]
    return [GPTR if isinstance(x, Desc) and k == 0 else I8 if f.type == I1 else f.type
            for k, f in enumerate(passed_fields(x))]


def _host_fields(b: ir.IRBuilder, x) -> list[ir.Value]:
    if isinstance(x, HostScalar):  # its value now: every host store before the launch has run
        return [b.load(x.slot, typ=storage_type(x.elt))]
    if isinstance(x, ReducedCell):
        return [x.ptr]
    return [b.zext(f, I8) if f.type == I1 else f for f in passed_fields(x)]


class KernelTranslator(FunctionTranslator):
    """The body of one kernel. Captured host values arrive as parameters; a failed check
    stores its code in the error flag and returns, except in kernels whose threads meet at
    shuffles and barriers (reductions, rows): there a thread that returned early would leave
    its partners waiting at a `shfl.sync`/`bar.sync` with a full mask (undefined behaviour,
    a hang), so it records the error and carries on with every later access redirected to a
    harmless cell (the call raises anyway)."""

    def __init__(self, dev: DeviceTranslator, name: str, kind: str, captured: list[tuple[SSAValue, object]],
                 extra: list[ir.Type]) -> None:
        params: list[ir.Type] = []
        for _, x in captured:
            params.extend(_param_types(x))
        fn = dev.new_kernel(name, params + extra, kind)
        self._setup(dev, fn)
        self.op = None
        self.row_body: Block | None = None  # in a row kernel: the row's body, whose loops the lanes share
        self.lane: ir.Value | None = None
        self.carries_on = kind in ("reduce", "rows")
        self.failed: ir.Value | None = None  # an i1 slot, once a carrying-on kernel has a check
        args = iter(fn.args)
        b = self.b
        for v, x in captured:
            if isinstance(x, Desc):
                ptr = b.addrspacecast(next(args), PTR)
                dims = [d if isinstance(d, ir.Constant) else next(args) for d in x.dims]
                self.env[v] = Desc(ptr, dims, x.elt)
            elif isinstance(x, ir.Constant):
                self.env[v] = x
            elif isinstance(x, HostScalar):
                self.env[v] = DeviceScalar(next(args), x.elt)
            elif isinstance(x, ReducedCell):  # the reduction kernel, launched before, has finished
                self.env[v] = b.load(b.addrspacecast(next(args), PTR), typ=x.type)
            else:
                a = next(args)
                self.env[v] = b.trunc(a, I1) if x.type == I1 else a
        self.extra = list(args)

    def _global_ptr(self, name: str) -> ir.Value:
        return self.b.addrspacecast(self.tr.globals[name], PTR)

    def _check(self, ok, message: str) -> None:
        if not self.carries_on:
            return super()._check(ok, message)
        self.tr.out.messages.append(message)
        code = len(self.tr.out.messages)
        b = self.b
        if self.failed is None:
            self.failed = entry_alloca(self, I1)  # O3 keeps it in a register
            self.entry_builder.store(I1(0), self.failed)
            if b.block is self.entry_builder.block:
                b.position_at_end(b.block)
        bad = b.not_(ok)
        b.store(b.or_(b.load(self.failed, typ=I1), bad), self.failed)
        with b.if_then(bad, likely=False):
            b.cmpxchg(self.tr.error_flag, I32(0), I32(code), "monotonic", "monotonic")

    def _addr(self, desc: Desc, idx: list):
        """After a failed check, the address of a cell no thread cares about: an index that
        failed its check (and all that follows from it) never reaches memory."""
        addr = super()._addr(desc, idx)
        if self.failed is None:
            return addr
        b = self.b
        return b.select(b.load(self.failed, typ=I1), b.addrspacecast(self.tr.safe_cell(), PTR), addr)

    def _load(self, desc, idx: list):
        if isinstance(desc, DeviceScalar):
            v = desc.value
            return self.b.icmp_unsigned("!=", v, I8(0)) if ll_type(desc.elt) == I1 else v
        return super()._load(desc, idx)

    def _store(self, value, desc, idx: list):
        if isinstance(desc, DeviceScalar):  # promoted_scalars only promotes buffers stored on the host
            raise CompileError("ptx: a kernel stores to a 0-d buffer the host keeps")
        super()._store(value, desc, idx)

    def _finish_error_block(self) -> None:
        eb = ir.IRBuilder(self.error_block)
        if self.error_phi is None:
            eb.unreachable()
            return
        eb.cmpxchg(self.tr.error_flag, I32(0), self.error_phi, "monotonic", "monotonic")
        eb.ret_void()

    def _unsupported(self, op: Operation):
        raise CompileError(f"ptx: {op.name} inside a kernel has no GPU lowering")

    def _alloc(self, op) -> None:
        self._unsupported(op)

    def _dealloc(self, op) -> None:
        self._unsupported(op)

    def _call(self, op) -> None:
        self._unsupported(op)

    def _parallel(self, op: scf.ParallelOp) -> None:
        """A parallel loop nested in a kernel: shared by the lanes of the warp when it is in a
        row kernel's row body, else run by the thread, in order."""
        shared = self.row_body is not None and op.parent_block() is self.row_body
        start, stride = (self.lane, I64(R.WARP)) if shared else (I64(0), I64(1))
        self.iterate(op, start, stride, shared)
        if shared and not op.initVals:
            R.warp_sync(self.tr.llmod, self.b)  # later code of the row may read what the lanes wrote

    def bounds(self, op: scf.ParallelOp) -> tuple[list, list, list]:
        return ([self.v(x) for x in op.lowerBound], [self.v(x) for x in op.upperBound],
                [self.v(x) for x in op.step])

    def iterate(self, op: scf.ParallelOp, start: ir.Value, stride: ir.Value, combine_lanes: bool,
                bounds: tuple | None = None) -> ir.Value | None:
        """Run the body of `op` at positions start, start+stride, ... of its iteration space.
        With a reduction, the value is accumulated from the identity in the thread, then
        combined over the warp when `combine_lanes`, then with the init value (unless the
        caller folds the init elsewhere: `bounds` given); it is the result of `op` and returned."""
        b = self.b
        lbs, ubs, steps = bounds or self.bounds(op)
        trips = [b.select(b.icmp_signed(">", t, I64(0)), t, I64(0))
                 for t in (b.sdiv(b.add(b.sub(u, l), b.sub(s, I64(1))), s) for l, u, s in zip(lbs, ubs, steps))]
        total = trips[0]
        for t in trips[1:]:
            total = b.mul(total, t)
        reducing = bool(op.initVals)
        if reducing:
            comb = R.combiner(op.body.block.last_op.reductions[0])
            ty = ll_type(op.initVals[0].type)
            ident = R.identity(comb, ty)
            acc = entry_alloca(self, ty)  # O3 keeps it in a register
            b.store(ident, acc)

        def body(digits):
            ivs = [b.add(l, b.mul(d, s)) for l, d, s in zip(lbs, digits, steps)]
            block = op.body.block
            for arg, iv in zip(block.args, ivs):
                self.env[arg] = iv
            for inner in block.ops:
                if isinstance(inner, scf.ReduceOp):
                    break
                self.operation(inner)
            if reducing:
                x = self.v(block.last_op.args[0])
                b.store(self.combine(op, b.load(acc, typ=ty), x), acc)
        with b.if_then(b.icmp_signed(">", total, I64(0))):
            R.strided_nd(self.fn, b, trips, start, stride, body)
        if not reducing:
            return None
        value = b.load(acc, typ=ty)
        if combine_lanes:
            value = R.warp_allreduce(self.tr.llmod, b, value, lambda u, w: self.combine(op, u, w))
        if bounds is None:
            value = self.combine(op, self.v(op.initVals[0]), value)
            self.env[op.results[0]] = value
        return value

    def combine(self, op: scf.ParallelOp, lhs: ir.Value, rhs: ir.Value) -> ir.Value:
        """The scf.reduce region of `op` applied to two values."""
        region = op.body.block.last_op.reductions[0]
        block = region.block
        self.env[block.args[0]], self.env[block.args[1]] = lhs, rhs
        for inner in block.ops:
            if isinstance(inner, scf.ReduceReturnOp):
                return self.v(inner.result)
            self.operation(inner)
        raise CompileError("ptx: an scf.reduce region without scf.reduce.return")

    def _body(self, block: Block, iv) -> None:
        self.env[block.args[0]] = iv
        self.block(block)

    def _serial_loop(self, start, stop, step, emit) -> None:
        b = self.b
        pre = b.block
        head = self.fn.append_basic_block("loop.head")
        body = self.fn.append_basic_block("loop.body")
        exit_ = self.fn.append_basic_block("loop.exit")
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64)
        i.add_incoming(start, pre)
        b.cbranch(b.icmp_signed("<", i, stop), body, exit_)
        b.position_at_end(body)
        emit(i)
        i.add_incoming(b.add(i, step), b.block)
        b.branch(head)
        b.position_at_end(exit_)

    def grid_stride(self, trip, emit) -> None:
        """`emit(i)` for i in [0, trip), spread over every thread of the grid."""
        b = self.b
        tr = self.tr
        start = b.add(b.mul(tr.sreg(b, "ctaid.x"), tr.sreg(b, "ntid.x")), tr.sreg(b, "tid.x"))
        stride = b.mul(tr.sreg(b, "ntid.x"), tr.sreg(b, "nctaid.x"))
        self._serial_loop(start, trip, stride, emit)

    def finish(self) -> None:
        self.b.ret_void()
        self._finish_error_block()


def entry_alloca(t: FunctionTranslator, ty: ir.Type) -> ir.Value:
    """A stack slot in the entry block. llvmlite builders keep an insertion index, so the main
    builder, when it is still in the entry block, is moved back to that block's end."""
    slot = t.entry_builder.alloca(ty)
    if t.b.block is t.entry_builder.block:
        t.b.position_at_end(t.b.block)
    return slot


# -- PTX -----------------------------------------------------------------------------------------

_init_lock = threading.Lock()


@functools.lru_cache(maxsize=None)
def target_machine(sm: str = DEFAULT_SM) -> llvm.TargetMachine:
    from irkit.backends import jit
    jit.initialize()
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    # features="": LLVM picks the lowest PTX ISA for the SM, which older drivers accept
    return llvm.Target.from_triple(TRIPLE).create_target_machine(cpu=sm, features="", opt=3)


def sm_for(device_sm: str | None) -> str:
    """The SM to build for: the device's own when known (LLVM schedules for it and may use
    its instructions), else sm_80."""
    return device_sm if device_sm in KNOWN_SMS else DEFAULT_SM


def emit_ptx(device: ir.Module, sm: str = DEFAULT_SM) -> str:
    """The device module as PTX for `sm` (libdevice linked, O3), kept in the compile cache
    (`ik.config.cache_dir`) under its LLVM IR, the SM and the libdevice it links: LLVM's
    NVPTX code generator is most of a GPU function's compile."""
    from irkit.backends import jit, libdevice
    text = str(device)
    key = jit.object_key(f"ptx\0{sm}\0{libdevice.identity()}\0{text}")
    cached = jit.cache_load(key, ".ptx")
    if cached is not None:
        return cached.decode()
    ptx = _emit(text, sm)
    if key is not None:
        jit.cache_store(key, ptx.encode(), ".ptx")
    return ptx


def _emit(text: str, sm: str) -> str:
    with _init_lock:
        tm = target_machine(sm)
        mod = llvm.parse_assembly(text)
        mod.verify()
        used = [f.name for f in mod.functions if f.is_declaration and f.name.startswith("__nv_")]
        if used:
            from irkit.backends import libdevice
            for blob in libdevice.bitcode(used):
                mod.link_in(llvm.parse_bitcode(blob))
        pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=3))
        pb.getModulePassManager().run(mod, pb)
        return tm.emit_assembly(mod)
