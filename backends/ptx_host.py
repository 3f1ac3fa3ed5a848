"""The host side of a GPU program (see `backends/ptx.py` for the whole mapping): the CPU code
of each function of the loops level, through the same `FunctionTranslator` as the CPU
backend, with its buffers in device memory. It computes sizes and checks, runs the loops
around launches, allocates through the runtime of `backends/cuda.py`, and cuts what must
run on the device into kernels: an `scf.parallel` is a launch of a grid-stride kernel (a
block reduction when it reduces, a warp a row when its rows hold nested parallel loops),
and a run of other ops that touch device buffers is a one-thread segment kernel, whose
scalars the host needs come back through the scratch buffer.
"""

from __future__ import annotations

import llvmlite.ir as ir
from xdsl.dialects import builtin, func, memref, scf
from xdsl.dialects.builtin import MemRefType
from xdsl.ir import Block, Operation, SSAValue

from irkit.backends import ptx_reduce as R
from irkit.backends.llvm import (F32, I1, I8, I32, I64, PTR, Desc, FunctionTranslator, Translator, captured_values,
                                 ll_type, storage_type)
from irkit.backends.ptx import (BLOCK, FUNCTIONS_GLOBAL, GPTR, MAX_BLOCKS, PROGRAM_GLOBAL, REDUCE_BLOCKS,
                                RESULT_GLOBAL, ROWS_A_BLOCK, RUNTIME, SCRATCH_SLOTS, TILE, DeviceTranslator,
                                KernelTranslator, _host_fields, device_global_name, entry_alloca)
from irkit.backends.ptx_scalars import HostScalar, ReducedCell, device_only_chain, is_promoted_access, promoted_scalars
from irkit.errors import CompileError


class HostTranslator(Translator):
    """The host module: the CPU code of each function, with buffers in device memory."""

    alloc_fn, free_fn = "irkit_cuda_alloc", "irkit_cuda_free"

    def __init__(self) -> None:
        super().__init__(vector_isa=None)
        self.device = DeviceTranslator(self.out.messages)
        self.global_names: list[str] = []
        self.program = ir.GlobalVariable(self.llmod, I64, PROGRAM_GLOBAL)
        self.program.initializer = I64(0)
        self.functions = ir.GlobalVariable(self.llmod, PTR, FUNCTIONS_GLOBAL)
        self.functions.initializer = ir.Constant(PTR, None)
        self.result = ir.GlobalVariable(self.llmod, I32, RESULT_GLOBAL)
        self.result.initializer = I32(0)
        for name, (ret, args) in RUNTIME.items():
            self.declare(name, ret, args)

    def translate(self, module: builtin.ModuleOp):
        for op in module.ops:
            if isinstance(op, memref.GlobalOp):
                self.device.global_(op)
                self.global_names.append(device_global_name(op.sym_name.data))
        for op in module.ops:
            if isinstance(op, func.FuncOp) and op.body.blocks:
                HostFunctionTranslator(self, op).run()
        return self.out


# ops that only the host can do: they allocate, free, copy, call a library, launch kernels
_HOST_ONLY = (memref.AllocOp, memref.DeallocOp, memref.CopyOp, func.CallOp, scf.ParallelOp)
_TERMINATORS = (scf.YieldOp, scf.ConditionOp, func.ReturnOp)


def _host_only(op: Operation) -> bool:
    return any(isinstance(inner, _HOST_ONLY) for inner in op.walk())


def _touches_memory(op: Operation, promoted: set[SSAValue]) -> bool:
    """Whether `op` reads or writes device buffers (a promoted 0-d buffer is host memory)."""
    return any(isinstance(inner, (memref.LoadOp, memref.StoreOp)) and not is_promoted_access(inner, promoted)
               for inner in op.walk())


class HostFunctionTranslator(FunctionTranslator):
    """A function's host code: runs on the CPU, launches kernels, keeps buffers on the device."""

    def __init__(self, tr: HostTranslator, op: func.FuncOp) -> None:
        super().__init__(tr, op)
        self.dev: DeviceTranslator = tr.device
        self.name = op.sym_name.data
        self.count = 0
        self.promoted = promoted_scalars(op)  # 0-d buffers kept on the host (backends/ptx_scalars.py)
        # full reductions whose value only device stores use, and the scalar ops between them,
        # which the stores' kernels recompute (device_only_chain)
        self.device_reductions: set[Operation] = set()
        self.deferred: set[Operation] = set()

    # -- the runtime -------------------------------------------------------------------------------
    def _program(self) -> ir.Value:
        return self.b.load(self.tr.program, typ=I64)

    def _global_ptr(self, name: str) -> ir.Value:
        index = self.tr.global_names.index(device_global_name(name))
        ptr = self.b.call(self._runtime("irkit_cuda_global"), [self._program(), I32(index)])
        self._check(self.b.icmp_unsigned("!=", ptr, ir.Constant(PTR, None)),
                    f"DeviceError: the device global @{name} is missing from the loaded module")
        return ptr

    def _runtime(self, name: str) -> ir.Function:
        ret, args = RUNTIME[name]
        return self.tr.declare(name, ret, args)

    def _status(self, status, what: str) -> None:
        self._check(self.b.icmp_signed("==", status, I32(0)), f"DeviceError: {what} failed")

    # -- promoted 0-d buffers: a host stack slot instead of device memory ---------------------------
    def _alloc(self, op: memref.AllocOp) -> None:
        if op.memref not in self.promoted:
            return super()._alloc(op)
        self.env[op.memref] = HostScalar(entry_alloca(self, storage_type(op.memref.type.element_type)),
                                         op.memref.type.element_type)

    def _dealloc(self, op: memref.DeallocOp) -> None:
        if op.memref not in self.promoted:
            super()._dealloc(op)

    def _load(self, desc, idx: list):
        if isinstance(desc, HostScalar):
            v = self.b.load(desc.slot, typ=storage_type(desc.elt))
            return self.b.icmp_unsigned("!=", v, I8(0)) if ll_type(desc.elt) == I1 else v
        return super()._load(desc, idx)

    def _store(self, value, desc, idx: list):
        if isinstance(desc, HostScalar):
            self.b.store(self.b.zext(value, I8) if ll_type(desc.elt) == I1 else value, desc.slot)
            return
        super()._store(value, desc, idx)

    def _reduction_cell(self, kernel: str) -> ir.Value:
        """The device address of `<kernel>_cell`, a global of the device module (8 bytes)."""
        name = kernel + "_cell"
        cell = ir.GlobalVariable(self.dev.llmod, I64, name, addrspace=1)
        cell.initializer = I64(0)
        cell.align = 8
        self.tr.global_names.append(name)
        ptr = self.b.call(self._runtime("irkit_cuda_global"),
                          [self._program(), I32(len(self.tr.global_names) - 1)])
        self._check(self.b.icmp_unsigned("!=", ptr, ir.Constant(PTR, None)),
                    f"DeviceError: the device global @{name} is missing from the loaded module")
        return ptr

    def _copy(self, src: Desc, dst: Desc) -> None:
        status = self.b.call(self._runtime("irkit_cuda_copy"), [dst.ptr, src.ptr, self._bytes(src)])
        self._status(status, "a copy between device buffers")

    def launch(self, kernel: str, fields: list[ir.Value], grid: tuple, block: tuple) -> None:
        """cuLaunchKernel(kernel, grid, block) with `fields` as its parameters."""
        b, eb = self.b, self.entry_builder
        ctx_type = ir.LiteralStructType([f.type for f in fields] or [I8])
        ctx = eb.alloca(ctx_type)
        params = eb.alloca(ir.ArrayType(PTR, max(len(fields), 1)))
        for k, f in enumerate(fields):
            slot = b.gep(ctx, [I32(0), I32(k)], inbounds=True)
            b.store(f, slot)
            b.store(slot, b.gep(params, [I32(0), I32(k)], inbounds=True))
        (gx, gy), (bx, by) = [[b.trunc(x, I32) if x.type == I64 else x for x in dims] for dims in (grid, block)]
        table = b.load(self.tr.functions, typ=PTR)
        handle = b.load(b.gep(table, [I64(self.dev.kernel_index(kernel))], source_etype=PTR), typ=PTR)
        null = ir.Constant(PTR, None)
        status = b.call(self._runtime("irkit_cuLaunchKernel"),
                        [handle, gx, gy, I32(1), bx, by, I32(1), I32(0), null, params, null])
        b.store(status, self.tr.result)  # named by the runtime if the check fails
        self._status(status, f"the launch of kernel {kernel}")

    def _fields(self, captured: list[SSAValue]) -> tuple[list[tuple[SSAValue, object]], list[ir.Value]]:
        pairs = [(v, self.v(v)) for v in captured]
        fields: list[ir.Value] = []
        for _, x in pairs:
            fields.extend(_host_fields(self.b, x))
        return pairs, fields

    def _blocks_for(self, trip) -> ir.Value:
        b = self.b
        n = b.udiv(b.add(trip, I64(BLOCK - 1)), I64(BLOCK))
        return b.select(b.icmp_signed(">", n, I64(MAX_BLOCKS)), I64(MAX_BLOCKS), n)

    # -- kernels -------------------------------------------------------------------------------------
    def _parallel(self, op: scf.ParallelOp) -> None:
        """A kernel: a block reduction for a reduction, one warp a row for a loop over rows
        with nested parallel loops, else one thread per iteration, grid-stride."""
        if op.initVals:
            return self._full_reduction(op)
        if any(isinstance(inner, scf.ParallelOp) for inner in op.body.block.ops):
            return self._rows(op)
        if len(op.lowerBound) != 1:
            raise CompileError("ptx: only 1-d scf.parallel without reductions is supported")
        self.count += 1
        name = f"{self.name}_k{self.count}"
        pairs, fields = self._fields(captured_values(op))
        kt = KernelTranslator(self.dev, name, "parallel", pairs, [I64, I64, I64])
        lb, ub, step = kt.extra
        b = kt.b
        trip = b.sdiv(b.add(b.sub(ub, lb), b.sub(step, I64(1))), step)

        def body(i):
            kt._body(op.body.block, b.add(lb, b.mul(i, step)))
        kt.grid_stride(trip, body)
        kt.finish()
        hb = self.b
        lb_h, ub_h, step_h = self.v(op.lowerBound[0]), self.v(op.upperBound[0]), self.v(op.step[0])
        trip_h = hb.sdiv(hb.add(hb.sub(ub_h, lb_h), hb.sub(step_h, I64(1))), step_h)
        with hb.if_then(hb.icmp_signed(">", trip_h, I64(0))):
            self.launch(name, fields + [lb_h, ub_h, step_h], (self._blocks_for(trip_h), I64(1)),
                        (I64(BLOCK), I64(1)))

    def _full_reduction(self, op: scf.ParallelOp) -> None:
        """`<f>_r<n>`: a grid-stride block reduction folding into a device cell that holds the
        init value; the host reads the result back (it is a host value at the loops level)."""
        if len(op.initVals) != 1:
            raise CompileError("ptx: an scf.parallel with several reductions has no GPU lowering")
        self.count += 1
        name = f"{self.name}_r{self.count}"
        d = len(op.lowerBound)
        pairs, fields = self._fields(captured_values(op))
        kt = KernelTranslator(self.dev, name, "reduce", pairs, [I64] * (3 * d) + [GPTR])
        kb, tr = kt.b, kt.tr
        bounds = (kt.extra[:d], kt.extra[d:2 * d], kt.extra[2 * d:3 * d])
        cell = kt.extra[3 * d]
        tid, ntid = tr.sreg(kb, "tid.x"), tr.sreg(kb, "ntid.x")
        start = kb.add(kb.mul(tr.sreg(kb, "ctaid.x"), ntid), tid)
        stride = kb.mul(ntid, tr.sreg(kb, "nctaid.x"))
        value = kt.iterate(op, start, stride, False, bounds)
        comb = R.combiner(op.body.block.last_op.reductions[0])
        ty = value.type

        def fold(total):
            R.atomic_fold(kb, comb, cell, total, lambda u, w: kt.combine(op, u, w))
        R.block_reduce(tr.llmod, kb, name, value, R.identity(comb, ty), lambda u, w: kt.combine(op, u, w),
                       tid, ntid, fold)
        kt.finish()

        b = self.b
        lbs, ubs, steps = ([self.v(x) for x in xs] for xs in (op.lowerBound, op.upperBound, op.step))
        total = I64(1)
        for lb, ub, step in zip(lbs, ubs, steps):
            trip = b.sdiv(b.add(b.sub(ub, lb), b.sub(step, I64(1))), step)
            total = b.mul(total, b.select(b.icmp_signed(">", trip, I64(0)), trip, I64(0)))
        slot = entry_alloca(self, storage_type(op.initVals[0].type))
        nbytes = I64(ty.width // 8 if isinstance(ty, ir.IntType) else (4 if ty == F32 else 8))
        b.store(self.v(op.initVals[0]), slot)
        device_only = op in self.device_reductions
        if device_only:  # a cell of its own, which later kernels read
            cell_h = self._reduction_cell(name)
        else:  # scratch slot 0: it is read back before any other kernel writes scratch
            cell_h = b.call(self._runtime("irkit_cuda_scratch"), [self._program()])
        self._status(b.call(self._runtime("irkit_cuda_write"), [cell_h, slot, nbytes]),
                     "writing a reduction's init value to the device")
        with b.if_then(b.icmp_signed(">", total, I64(0))):
            blocks = b.udiv(b.add(total, I64(BLOCK - 1)), I64(BLOCK))
            blocks = b.select(b.icmp_signed(">", blocks, I64(REDUCE_BLOCKS)), I64(REDUCE_BLOCKS), blocks)
            self.launch(name, fields + lbs + ubs + steps + [cell_h], (blocks, I64(1)), (I64(BLOCK), I64(1)))
        if device_only:
            self.env[op.results[0]] = ReducedCell(cell_h, ty)
            return
        # a failed check inside the kernel is seen at the end of the call, as for any kernel
        self._status(b.call(self._runtime("irkit_cuda_read"), [slot, cell_h, nbytes]),
                     "reading a reduction back from the device")
        self.env[op.results[0]] = b.load(slot, typ=ty)

    def _rows(self, op: scf.ParallelOp) -> None:
        """`<f>_k<n>` with one warp a row: the lanes share the nested parallel loops (a row's
        reductions end in every lane); the rest of the row body runs in all lanes."""
        if len(op.lowerBound) != 1:
            raise CompileError("ptx: only 1-d scf.parallel over rows is supported")
        self.count += 1
        name = f"{self.name}_k{self.count}"
        pairs, fields = self._fields(captured_values(op))
        kt = KernelTranslator(self.dev, name, "rows", pairs, [I64, I64, I64])
        lb, ub, step = kt.extra
        kb, tr = kt.b, kt.tr
        tid = tr.sreg(kb, "tid.x")
        warps = kb.lshr(tr.sreg(kb, "ntid.x"), I64(5))
        kt.lane = kb.and_(tid, I64(R.WARP - 1))
        kt.row_body = op.body.block
        first = kb.add(kb.mul(tr.sreg(kb, "ctaid.x"), warps), kb.lshr(tid, I64(5)))
        trip = kb.sdiv(kb.add(kb.sub(ub, lb), kb.sub(step, I64(1))), step)
        # the row loop is the same in all lanes of a warp: its shuffles have every lane
        kt._serial_loop(first, trip, kb.mul(warps, tr.sreg(kb, "nctaid.x")),
                        lambda i: kt._body(op.body.block, kb.add(lb, kb.mul(i, step))))
        kt.finish()
        b = self.b
        lb_h, ub_h, step_h = self.v(op.lowerBound[0]), self.v(op.upperBound[0]), self.v(op.step[0])
        trip_h = b.sdiv(b.add(b.sub(ub_h, lb_h), b.sub(step_h, I64(1))), step_h)
        with b.if_then(b.icmp_signed(">", trip_h, I64(0))):
            blocks = b.udiv(b.add(trip_h, I64(ROWS_A_BLOCK - 1)), I64(ROWS_A_BLOCK))
            blocks = b.select(b.icmp_signed(">", blocks, I64(MAX_BLOCKS)), I64(MAX_BLOCKS), blocks)
            self.launch(name, fields + [lb_h, ub_h, step_h], (blocks, I64(1)), (I64(BLOCK), I64(1)))

    def _call(self, op: func.CallOp) -> None:
        name = op.callee.root_reference.data
        args = [self.v(x) for x in op.arguments]
        b = self.b
        if name.startswith("irkit_gemm_"):
            (ta, tb, m, n, k, alpha, A, offa, lda, B, offb, ldb, beta, C, offc, ldc) = args
        elif name.startswith("irkit_gemv_"):
            # column-major BLAS gemv as a one-row row-major gemm: y^T = x^T op(A)^T
            (trans, m_, n_, alpha, A_, offa_, lda_, X, offx, beta, Y, offy) = args
            rows, cols = b.select(trans, n_, m_), b.select(trans, m_, n_)
            ta, tb, m, n, k = I1(0), trans, I64(1), rows, cols
            A, offa, lda = X, offx, cols
            B, offb, ldb = A_, offa_, lda_
            C, offc, ldc = Y, offy, rows
        else:
            raise CompileError(f"ptx: call to unknown function @{name}")
        ft = ll_type(op.arguments[5].type if name.startswith("irkit_gemm_") else op.arguments[3].type)
        kernel = self.dev.gemm(ft)
        ta8, tb8 = (b.zext(t, I8) if t.type == I1 else t for t in (ta, tb))
        fields = [ta8, tb8, m, n, k, alpha, A.ptr, offa, lda, B.ptr, offb, ldb, beta, C.ptr, offc, ldc]
        grid = (b.udiv(b.add(n, I64(TILE - 1)), I64(TILE)), b.udiv(b.add(m, I64(TILE - 1)), I64(TILE)))
        size = I64(4 if ft == F32 else 8)

        def at(buf, off):  # the device address of element `off`
            return b.gep(buf.ptr, [b.mul(off, size)], source_etype=I8)

        def wide(x):
            return x if ft != F32 else b.fpext(x, ir.DoubleType())

        with b.if_then(b.and_(b.icmp_signed(">", m, I64(0)), b.icmp_signed(">", n, I64(0)))):
            status = b.call(self._runtime("irkit_cuda_gemm"),
                            [I32(32 if ft == F32 else 64), ta8, tb8, m, n, k, wide(alpha), at(A, offa), lda,
                             at(B, offb), ldb, wide(beta), at(C, offc), ldc])
            with b.if_then(b.icmp_signed("==", status, I32(1))):  # no cuBLAS: the tiled kernel
                self.launch(kernel, fields, grid, (I64(TILE), I64(TILE)))
            self._status(b.select(b.icmp_signed("==", status, I32(1)), I32(0), status), f"cuBLAS's gemm for @{name}")

    # -- code that touches buffers outside parallel loops ------------------------------------------
    def operation(self, op: Operation):
        if isinstance(op, (memref.LoadOp, memref.StoreOp)) and not is_promoted_access(op, self.promoted):
            raise CompileError(f"ptx: {op.name} at the host level of {self.name} (inside an op that "
                               "also allocates or launches); it has no GPU lowering")
        return super().operation(op)

    def block(self, block: Block) -> list[ir.Value] | None:
        ops = list(block.ops)
        for op in ops:
            if isinstance(op, scf.ParallelOp) and len(op.initVals) == 1:
                chain = device_only_chain(op, self.promoted)
                if chain is not None:
                    self.device_reductions.add(op)
                    self.deferred.update(chain)
        k = 0
        while k < len(ops):
            op = ops[k]
            if op in self.deferred:  # computed by the kernels that store it
                k += 1
                continue
            if self._starts_segment(op):
                segment = [op]
                produced = set(op.results)
                k += 1
                while k < len(ops) and self._joins_segment(ops[k], produced):
                    segment.append(ops[k])
                    produced.update(ops[k].results)
                    k += 1
                self._segment(segment, block)
                continue
            got = self.operation(op)
            if isinstance(op, (scf.YieldOp, scf.ConditionOp)):
                return got
            k += 1
        return None

    def _starts_segment(self, op: Operation) -> bool:
        return (not isinstance(op, _TERMINATORS) and _touches_memory(op, self.promoted) and not _host_only(op)
                and not any(isinstance(r.type, MemRefType) for r in op.results))

    def _joins_segment(self, op: Operation, produced: set) -> bool:
        if self._starts_segment(op):
            return True
        if (isinstance(op, _TERMINATORS) or _host_only(op) or is_promoted_access(op, self.promoted)
                or op in self.deferred  # only the segments that store them compute them (_with_deferred)
                or any(isinstance(r.type, MemRefType) for r in op.results)):
            return False
        return any(v in produced for inner in op.walk() for v in inner.operands)

    def _segment(self, ops: list[Operation], block: Block) -> None:
        """Device code outside any parallel loop: a reduction kernel when it is a fold into a
        scalar, else one thread; then the scalars the host reads later come back."""
        ops = self._with_deferred(ops, block)
        members = set(ops)
        defined = set()
        for op in ops:
            defined |= _defined_within(op)
        captured: list[SSAValue] = []
        for op in ops:
            for inner in op.walk():
                for v in inner.operands:
                    if v not in defined and v not in captured:
                        captured.append(v)
        outputs = [r for op in ops if op not in self.deferred for r in op.results
                   if any(_ancestor_in(use.operation, block) not in members for use in r.uses)]
        if len(outputs) + 1 > SCRATCH_SLOTS:
            raise CompileError(f"ptx: {len(outputs)} scalars leave one device segment of {self.name}; "
                               f"at most {SCRATCH_SLOTS - 1} fit")
        self.count += 1
        name = f"{self.name}_s{self.count}"
        pairs, fields = self._fields(captured)
        kt = KernelTranslator(self.dev, name, "serial", pairs, [GPTR])
        out = kt.b.addrspacecast(kt.extra[0], PTR)
        for op in ops:
            kt.operation(op)
        kb = kt.b
        kb.store(kb.zext(kb.load(kt.tr.error_flag, typ=I32), I64), out)
        for j, r in enumerate(outputs, start=1):
            value = kt.v(r)
            slot = kb.gep(out, [I64(j)], source_etype=I64)
            kb.store(kb.zext(value, I8) if value.type == I1 else value, slot)
        kt.finish()
        b = self.b
        scratch = b.call(self._runtime("irkit_cuda_scratch"), [self._program()])
        self.launch(name, fields + [scratch], (I64(1), I64(1)), (I64(1), I64(1)))
        if not outputs:  # nothing to wait for: a failed check is seen at the end of the call
            return
        host = self.entry_builder.alloca(ir.ArrayType(I64, SCRATCH_SLOTS))
        status = b.call(self._runtime("irkit_cuda_read"), [host, scratch, I64(8 * (len(outputs) + 1))])
        self._status(status, "reading scalars back from the device")
        code = b.trunc(b.load(host, typ=I64), I32)
        fail = self.fn.append_basic_block("kernel.fail")
        cont = self.fn.append_basic_block("kernel.ok")
        b.cbranch(b.icmp_signed("==", code, I32(0)), cont, fail)
        b.position_at_end(fail)
        self._to_error(code)
        b.position_at_end(cont)
        for j, r in enumerate(outputs, start=1):
            ty = ll_type(r.type)
            slot = b.gep(host, [I32(0), I32(j)], inbounds=True)
            v = b.load(slot, typ=I8 if ty == I1 else ty)
            self.env[r] = b.icmp_unsigned("!=", v, I8(0)) if ty == I1 else v


    def _with_deferred(self, ops: list[Operation], block: Block) -> list[Operation]:
        """`ops` after the deferred ops (see `device_only_chain`) they use, in block order."""
        needed: set[Operation] = set()
        todo = [v for op in ops for inner in op.walk() for v in inner.operands]
        while todo:
            owner = todo.pop().owner
            if isinstance(owner, Operation) and owner in self.deferred and owner not in needed:
                needed.add(owner)
                todo.extend(owner.operands)
        return [op for op in block.ops if op in needed] + ops


def _defined_within(op: Operation) -> set:
    out = set(op.results)
    for inner in op.walk():
        out.update(inner.results)
        for region in inner.regions:
            for blk in region.blocks:
                out.update(blk.args)
    return out


def _ancestor_in(op: Operation, block: Block) -> Operation | None:
    while op is not None and op.parent_block() is not block:
        op = op.parent_op()
    return op
