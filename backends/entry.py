"""The native entry of a compiled function: a CPython `METH_FASTCALL | METH_KEYWORDS`
function written in LLVM IR, so that a call from Python goes straight to machine code.

`entry(self, args, nargs, kwnames)` checks each argument where C would (an exact
`numpy.ndarray` of the right dtype, rank, static sizes, C-contiguous, aligned,
native byte order; for a 0-d input also a numpy scalar of exactly its dtype, or a
Python float for float64, whose value the kernel reads in place), calls the kernel
function, and wraps each result buffer in a new ndarray that owns it (a capsule frees
it with the array). A donated argument (a shared variable the function may update in
place) must also be a writable ndarray that overlaps no other argument; a result that
is its buffer is returned as that same array. Anything the checks do not accept (keywords included), it hands to
`self[0]`, the Python slow path, with the same arguments: conversions and error
messages live there. A failed run-time check in the kernel calls
`self[1](code, *args)`, which raises, naming the arguments.

The numpy C API is reached through its `_ARRAY_API` table and the CPython API
by symbol; offsets into numpy's structs are verified against a live array when
this module is first used.
"""

from __future__ import annotations

import ctypes
import functools
import os
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import llvmlite.ir as ir
import numpy as np

from irkit.backends import jit
from irkit.errors import CompileError

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
PTR = ir.PointerType()

# numpy's PyArrayObject / PyArray_Descr layout (numpy 1.x and 2.x alike), checked in _layout()
OFF_TYPE, OFF_DATA, OFF_ND, OFF_DIMS, OFF_DESCR, OFF_FLAGS = 8, 16, 24, 32, 56, 64
OFF_BYTEORDER, OFF_TYPENUM = 26, 28
API_ARRAY_TYPE, API_DESCR_FROM_TYPE, API_NEW_FROM_DESCR, API_SET_BASE = 2, 45, 94, 282
API_TABLE_SIZE = 400  # entries of numpy's _ARRAY_API read here (numpy 2.x has about 370)
NPY_C_CONTIGUOUS, NPY_ALIGNED, NPY_WRITEABLE, NPY_CARRAY = 0x1, 0x100, 0x400, 0x501
OFF_SCALAR_VALUE = 16  # the value of a numpy scalar (and of a Python float) after PyObject_HEAD
METH_FASTCALL, METH_KEYWORDS = 0x80, 0x02


@dataclass(frozen=True)
class ArgSpec:
    dtype: np.dtype
    shape: tuple  # ints, None where dynamic
    donated: bool = False  # the kernel may write into it (and return it as a result)


@dataclass(frozen=True)
class ResultSpec:
    dtype: np.dtype
    rank: int
    donated_arg: int | None = None  # the argument whose buffer this result may be


def accepted_typenums(dt: np.dtype) -> tuple[int, ...]:
    """numpy type numbers that mean `dt` here (int64 is both `long` and `long long` on Linux)."""
    nums = {np.dtype(c).num for c in "?bBhHiIlLqQfd" if np.dtype(c) == dt}
    nums.add(dt.num)
    return tuple(sorted(nums))


@functools.lru_cache(maxsize=None)
def _layout() -> None:
    """Check the struct offsets the entry relies on against a real array."""
    a = np.zeros((3, 5), np.float32)
    base = id(a)

    def rd(addr, t):
        return t.from_address(addr).value
    ok = (rd(base + OFF_TYPE, ctypes.c_void_p) == id(np.ndarray)
          and rd(base + OFF_DATA, ctypes.c_void_p) == a.ctypes.data
          and rd(base + OFF_ND, ctypes.c_int) == 2
          and rd(rd(base + OFF_DIMS, ctypes.c_void_p) + 8, ctypes.c_int64) == 5
          and rd(base + OFF_DESCR, ctypes.c_void_p) == id(a.dtype)
          and rd(rd(base + OFF_DESCR, ctypes.c_void_p) + OFF_TYPENUM, ctypes.c_int) == a.dtype.num
          and rd(base + OFF_FLAGS, ctypes.c_int) & NPY_C_CONTIGUOUS)
    for value in (np.float64(2.5), np.float32(2.5), 2.5):
        ok = ok and rd(id(value) + OFF_SCALAR_VALUE, ctypes.c_double if not isinstance(value, np.float32)
                       else ctypes.c_float) == 2.5
    if not ok:
        raise CompileError(f"numpy {np.__version__}'s array layout is not the one irkit's native "
                           "entry expects")


@functools.lru_cache(maxsize=None)
def scalar_type_slots(dt: np.dtype) -> tuple[int, ...]:
    """Where numpy's API table holds the scalar types that mean `dt` (np.int64 and
    np.longlong both mean int64 on Linux). The slots are numpy's ABI, fixed per version;
    looked up rather than hard-coded so the entry never bakes in an address."""
    api = _api_pointer()
    table = (ctypes.c_void_p * API_TABLE_SIZE).from_address(api)
    wanted = {id(np.dtype(c).type) for c in "?bBhHiIlLqQefd" if np.dtype(c) == dt}
    return tuple(k for k in range(API_TABLE_SIZE) if table[k] in wanted)


def _api_pointer() -> int:
    try:
        import numpy._core._multiarray_umath as mu
    except ImportError:  # numpy 1.x
        import numpy.core._multiarray_umath as mu
    return jit._capsule_pointer(mu._ARRAY_API)


_prepare_lock = threading.Lock()
_prepared = False


def prepare(products: Sequence[str] = ()) -> None:
    """Check numpy's layout, make its API table, the shared runtime and the runtime's
    `products` (backends/runtime.py) that a function calls reachable by name (once per
    process; a call while another thread prepares the same part waits for it)."""
    global _prepared
    from irkit.backends import runtime
    if not _prepared:
        with _prepare_lock:
            if not _prepared:
                _layout()
                jit.register_symbol("irkit_numpy_api", _api_pointer())
                runtime.runtime()
                _prepared = True
    runtime.products(products)


def _after_fork_in_child() -> None:
    """A fork while the runtime was being prepared on its thread leaves the child with the lock
    held by a thread it does not have: the child prepares for itself."""
    global _prepare_lock
    if not _prepared:
        _prepare_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def prepare_soon(products: Sequence[str] = ()) -> None:
    """Start `prepare(products)` on a thread of its own: the first compile in a process
    compiles the runtime (or loads it from the cache), which then overlaps the caller's work
    (prepare() itself waits for it, and raises what went wrong)."""
    from irkit.backends import runtime
    if runtime.ready(products):
        return

    def run() -> None:
        try:
            prepare(products)
        except Exception:  # noqa: BLE001 - the caller's own prepare() raises it
            pass
    # not a daemon: the interpreter waits for it at exit rather than unloading LLVM under it
    threading.Thread(target=run, name="irkit-runtime").start()


class EntryBuilder:
    """Adds `irkit_entry_<name>` to the LLVM module next to the kernel `name`."""

    def __init__(self, module: ir.Module) -> None:
        self.m = module

    def decl(self, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
        fn = self.m.globals.get(name)
        if fn is None:
            fn = ir.Function(self.m, ir.FunctionType(ret, args), name)
        return fn

    def python_float_type(self) -> ir.Value:
        """The address of CPython's `float` type object, resolved by symbol when linked."""
        ty = self.m.globals.get("PyFloat_Type")
        if ty is None:
            ty = ir.GlobalVariable(self.m, I8, "PyFloat_Type")
        return ty

    def build(self, kernel: ir.Function, args: list[ArgSpec], results: list[ResultSpec],
              single: bool) -> str:
        name = f"irkit_entry_{kernel.name}"
        fn = ir.Function(self.m, ir.FunctionType(PTR, [PTR, PTR, I64, PTR]), name)
        self_, argv, nargs, kwnames = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        fallback = fn.append_basic_block("fallback")
        api = self.m.globals.get("irkit_numpy_api") or ir.GlobalVariable(self.m, ir.ArrayType(PTR, API_TABLE_SIZE),
                                                                         "irkit_numpy_api")

        def api_fn(k: int):
            return b.load(b.gep(api, [I32(0), I32(k)], inbounds=True), typ=PTR)

        def field(base, off, ty):
            return b.load(b.gep(base, [I64(off)], inbounds=True, source_etype=I8), typ=ty)

        nslots = sum(1 + r.rank for r in results)
        slots = b.alloca(ir.ArrayType(I64, max(nslots, 1)))
        array_type = api_fn(API_ARRAY_TYPE)
        ok_n = b.and_(b.icmp_signed("==", nargs, I64(len(args))),
                      b.icmp_unsigned("==", kwnames, ir.Constant(PTR, None)))
        nxt = fn.append_basic_block("args")
        b.cbranch(ok_n, nxt, fallback)
        b.position_at_end(nxt)
        call_args: list[ir.Value] = []
        objs: list[ir.Value] = []
        extents: list[tuple[ir.Value, ir.Value] | None] = []  # [start, end) of each array's bytes
        for k, spec in enumerate(args):
            obj = b.load(b.gep(argv, [I64(k)], inbounds=True, source_etype=PTR), typ=PTR)
            obj_type = field(obj, OFF_TYPE, PTR)
            is_array = b.icmp_unsigned("==", obj_type, array_type)
            fields = fn.append_basic_block(f"arg{k}")
            done = fn.append_basic_block(f"arg{k}.ok")
            objs.append(obj)
            scalar_data = None
            if not spec.shape and not spec.donated:  # a 0-d input also takes a scalar of exactly its dtype
                scalar = fn.append_basic_block(f"arg{k}.scalar")
                b.cbranch(is_array, fields, scalar)
                b.position_at_end(scalar)
                is_scalar = I1(0)
                for slot in scalar_type_slots(spec.dtype):
                    is_scalar = b.or_(is_scalar, b.icmp_unsigned("==", obj_type, api_fn(slot)))
                if spec.dtype == np.float64:
                    is_scalar = b.or_(is_scalar, b.icmp_unsigned("==", obj_type, self.python_float_type()))
                scalar_data = b.gep(obj, [I64(OFF_SCALAR_VALUE)], inbounds=True, source_etype=I8)
                b.cbranch(is_scalar, done, fallback)
            else:
                b.cbranch(is_array, fields, fallback)
            b.position_at_end(fields)
            ok = b.icmp_signed("==", field(obj, OFF_ND, I32), I32(len(spec.shape)))
            flags = field(obj, OFF_FLAGS, I32)
            need = I32(NPY_C_CONTIGUOUS | NPY_ALIGNED | (NPY_WRITEABLE if spec.donated else 0))
            ok = b.and_(ok, b.icmp_unsigned("==", b.and_(flags, need), need))
            descr = field(obj, OFF_DESCR, PTR)
            typenum = field(descr, OFF_TYPENUM, I32)
            tok = I1(0)
            for num in accepted_typenums(spec.dtype):
                tok = b.or_(tok, b.icmp_signed("==", typenum, I32(num)))
            ok = b.and_(ok, tok)
            ok = b.and_(ok, b.icmp_unsigned("!=", field(descr, OFF_BYTEORDER, I8), I8(ord(">"))))
            dims_ok = fn.append_basic_block(f"arg{k}.dims")
            b.cbranch(ok, dims_ok, fallback)
            b.position_at_end(dims_ok)
            dims_ptr = field(obj, OFF_DIMS, PTR)
            dims = [b.load(b.gep(dims_ptr, [I64(j)], inbounds=True, source_etype=I64), typ=I64)
                    for j in range(len(spec.shape))]
            ok = I1(1)
            for d, s in zip(dims, spec.shape):
                if s is not None:
                    ok = b.and_(ok, b.icmp_signed("==", d, I64(s)))
            array_data = field(obj, OFF_DATA, PTR)
            array_end = b.block
            b.cbranch(ok, done, fallback)
            b.position_at_end(done)
            if scalar_data is None:
                call_args.append(array_data)
                nbytes = I64(spec.dtype.itemsize)
                for d in dims:
                    nbytes = b.mul(nbytes, d)
                start = b.ptrtoint(array_data, I64)
                extents.append((start, b.add(start, nbytes)))
            else:
                extents.append(None)
                data = b.phi(PTR)
                data.add_incoming(array_data, array_end)
                data.add_incoming(scalar_data, scalar)
                call_args.append(data)
            call_args.extend(dims)
        # a donated argument is written: no other argument may see its bytes
        for k, spec in enumerate(args):
            if not spec.donated:
                continue
            start, end = extents[k]
            for j, other in enumerate(extents):
                if j == k or other is None:
                    continue
                overlap = b.and_(b.icmp_unsigned("<", start, other[1]), b.icmp_unsigned("<", other[0], end))
                separate = fn.append_basic_block(f"arg{k}.apart{j}")
                b.cbranch(overlap, fallback, separate)
                b.position_at_end(separate)
        slots_ptr = b.gep(slots, [I32(0), I32(0)], inbounds=True)
        status = b.call(kernel, call_args + [slots_ptr])
        failed = fn.append_basic_block("failed")
        wrap = fn.append_basic_block("wrap")
        b.cbranch(b.icmp_signed("==", status, I32(0)), wrap, failed)

        # a failed check in the kernel: self[1](code, *args) raises
        b.position_at_end(failed)
        handler = b.call(self.decl("PyTuple_GetItem", PTR, [PTR, I64]), [self_, I64(1)])
        code = b.call(self.decl("PyLong_FromLong", PTR, [I64]), [b.sext(status, I64)])
        handler_args = b.alloca(PTR, I64(len(args) + 1))
        b.store(code, handler_args)
        for k in range(len(args)):
            item = b.load(b.gep(argv, [I64(k)], inbounds=True, source_etype=PTR), typ=PTR)
            b.store(item, b.gep(handler_args, [I64(k + 1)], inbounds=True, source_etype=PTR))
        vectorcall = self.decl("PyObject_Vectorcall", PTR, [PTR, PTR, I64, PTR])
        got = b.call(vectorcall, [handler, handler_args, I64(len(args) + 1), ir.Constant(PTR, None)])
        b.call(self.decl("Py_DecRef", ir.VoidType(), [PTR]), [code])
        b.ret(got)

        # arguments the fast path does not take: self[0](*args, **kwargs)
        b.position_at_end(fallback)
        slow = b.call(self.decl("PyTuple_GetItem", PTR, [PTR, I64]), [self_, I64(0)])
        got = b.call(vectorcall, [slow, argv, nargs, kwnames])
        b.ret(got)

        b.position_at_end(wrap)
        arg_data = [call_args[sum(1 + len(a.shape) for a in args[:k])] for k in range(len(args))]
        self._wrap_results(fn, b, api_fn, array_type, slots, results, single, objs, arg_data)
        return name

    def _wrap_results(self, fn, b, api_fn, array_type, slots, results, single, objs, arg_data) -> None:
        datas, arrays = [], []
        off = 0
        offsets = []
        owned = []  # whether each result's buffer is new (not a donated argument's)
        for r in results:
            offsets.append(off)
            datas.append(b.inttoptr(b.load(b.gep(slots, [I32(0), I32(off)], inbounds=True), typ=I64), PTR))
            owned.append(I1(1) if r.donated_arg is None else
                         b.icmp_unsigned("!=", datas[-1], arg_data[r.donated_arg]))
            off += 1 + r.rank
        incref = self.decl("Py_IncRef", ir.VoidType(), [PTR])
        for k, (r, data) in enumerate(zip(results, datas)):
            if r.donated_arg is not None:  # the argument itself, updated in place
                same, new = fn.append_basic_block(f"wrap{k}.same"), fn.append_basic_block(f"wrap{k}.new")
                joined = fn.append_basic_block(f"wrap{k}.joined")
                b.cbranch(owned[k], new, same)
                b.position_at_end(same)
                b.call(incref, [objs[r.donated_arg]])
                b.branch(joined)
                b.position_at_end(new)
                made = self._new_array(fn, b, k, r, data, slots, offsets, datas, owned, arrays, api_fn,
                                       array_type)
                new_end = b.block
                b.branch(joined)
                b.position_at_end(joined)
                arr = b.phi(PTR)
                arr.add_incoming(objs[r.donated_arg], same)
                arr.add_incoming(made, new_end)
                arrays.append(arr)
                continue
            arrays.append(self._new_array(fn, b, k, r, data, slots, offsets, datas, owned, arrays, api_fn,
                                          array_type))
        if single and len(arrays) == 1:
            b.ret(arrays[0])
            return
        lst = b.call(self.decl("PyList_New", PTR, [I64]), [I64(len(arrays))])
        set_item = self.decl("PyList_SetItem", I32, [PTR, I64, PTR])
        for k, a in enumerate(arrays):
            b.call(set_item, [lst, I64(k), a])
        b.ret(lst)

    def _new_array(self, fn, b, k, r, data, slots, offsets, datas, owned, arrays, api_fn, array_type) -> ir.Value:
        """An ndarray owning result k's buffer (a capsule frees it); on failure, free what is
        not yet wrapped, drop what is, and return NULL from the entry."""
        decref = self.decl("Py_DecRef", ir.VoidType(), [PTR])
        free = self.decl("irkit_free", ir.VoidType(), [PTR])
        capsule_new = self.decl("PyCapsule_New", PTR, [PTR, PTR, PTR])
        destructor = self.decl("irkit_capsule_free", ir.VoidType(), [PTR])
        descr_from_type = api_fn(API_DESCR_FROM_TYPE)
        new_from_descr = api_fn(API_NEW_FROM_DESCR)
        set_base = api_fn(API_SET_BASE)
        t_descr = ir.FunctionType(PTR, [I32])
        t_new = ir.FunctionType(PTR, [PTR, PTR, I32, PTR, PTR, PTR, I32, PTR])
        t_base = ir.FunctionType(I32, [PTR, PTR])
        dims = b.gep(slots, [I32(0), I32(offsets[k] + 1)], inbounds=True)
        descr = b.call(_cast_fn(b, descr_from_type, t_descr), [I32(r.dtype.num)])
        arr = b.call(_cast_fn(b, new_from_descr, t_new),
                     [array_type, descr, I32(r.rank), dims, ir.Constant(PTR, None), data,
                      I32(NPY_CARRAY), ir.Constant(PTR, None)])
        fail = fn.append_basic_block(f"wrap{k}.fail")
        ok = fn.append_basic_block(f"wrap{k}.ok")
        b.cbranch(b.icmp_unsigned("==", arr, ir.Constant(PTR, None)), fail, ok)
        b.position_at_end(fail)
        for d, mine in zip(datas[k:], owned[k:]):
            with b.if_then(mine):
                b.call(free, [d])
        for a in arrays:
            b.call(decref, [a])
        b.ret(ir.Constant(PTR, None))
        b.position_at_end(ok)
        cap = b.call(capsule_new, [data, ir.Constant(PTR, None), destructor])
        b.call(_cast_fn(b, set_base, t_base), [arr, cap])
        return arr


class _FunctionPointerLoad(ir.instructions.LoadInstr):
    """A function pointer loaded from numpy's API table, callable with a known type."""

    @property
    def function_type(self) -> ir.FunctionType:
        return self._function_type


def _cast_fn(b: ir.IRBuilder, ptr: ir.Value, ftype: ir.FunctionType) -> ir.Value:
    """Make a pointer loaded from numpy's API table callable with `ftype`."""
    ptr.__class__ = _FunctionPointerLoad
    ptr._function_type = ftype
    return ptr


class NativeFunction:
    """A compiled entry wrapped as a Python builtin (kept alive with its engine).

    The builtin's PyMethodDef must outlive it: CPython reads it when the builtin is freed.
    It lives in a bytes object (as does the name it points to) inside the builtin's own
    `self` tuple, which the builtin releases last. A ctypes structure would not do: a
    function whose class holds its builtin (`Function._call_natively`) is a reference cycle,
    and when the garbage collector breaks one (at the latest at exit) it may clear the
    structure first, freeing its buffer under the builtin (a crash in 4 of 10 exits after a
    2,000-op graph)."""

    def __init__(self, compiled: jit.Compiled, entry: str, slow, error) -> None:
        self.compiled = compiled
        name = entry.encode()
        method_def = struct.pack("@PPiP", _bytes_address(name), compiled.address(entry),
                                 METH_FASTCALL | METH_KEYWORDS, 0)
        self.state = (slow, error, name, method_def)  # self[0], self[1] for the entry; the rest kept
        new = ctypes.pythonapi.PyCFunction_NewEx
        new.restype = ctypes.py_object
        new.argtypes = [ctypes.c_void_p, ctypes.py_object, ctypes.py_object]
        self.call = new(_bytes_address(method_def), self.state, None)


def _bytes_address(data: bytes) -> int:
    """Where a bytes object keeps its bytes (they never move, and live as long as it)."""
    return ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value
