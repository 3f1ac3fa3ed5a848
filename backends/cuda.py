"""Running a GPU program (`ptx.Program`): the CUDA driver, device buffers, and the host
runtime the host program calls (`irkit_cuda_alloc`, `irkit_cuLaunchKernel`, ...).

Nothing here is imported by `import irkit` or by the CPU path, and nothing touches a driver
before the first call of a `target="cuda"` function. The driver API is reached through one
of three launchers with the same small interface (`alloc`, `to_device`, `load`, `function`, ...):

- NVIDIA's `cuda-bindings` (`pip install irkit[cuda]`), the default when it is installed;
- pycuda, when it is installed and importable (a source build against a CUDA toolkit), and
  the one used when the program already has a pycuda context current: irkit joins it;
- a ctypes wrapper of `libcuda.so.1` (it ships with the NVIDIA driver; no pip package
  needed), the fallback, and the one used when `IRKIT_LIBCUDA` names a library file (the
  tests use a fake one).

`IRKIT_CUDA_DRIVER=cuda-bindings|pycuda|ctypes` picks one.

The host code launches kernels by calling the driver's cuLaunchKernel itself. The
runtime's other functions (allocation from the pool, copies, cuBLAS) are C
callbacks (ctypes) into this module, a microsecond or two of Python each. They never raise
into native code: a failure returns an error value and leaves its text in `last_error`,
which the call's DeviceError carries.
"""

from __future__ import annotations

import ctypes
import math
from abc import ABC, abstractmethod
import os
import sys
import threading
import warnings
from ctypes import POINTER, byref, c_char_p, c_int, c_int32, c_int64, c_size_t, c_uint, c_uint64, c_void_p

import numpy as np

from irkit.backends.dlpack import DeviceArray, DeviceView
from irkit.errors import DeviceError

INSTALL = ("irkit's GPU backend needs an NVIDIA GPU and its driver (libcuda.so.1, from the NVIDIA driver "
           "package); set IRKIT_LIBCUDA to the library's path if it is not on the loader's path")


class _Launcher(ABC):
    """What every launcher shares: the context its calls run in.

    irkit's context (the device's primary context, or the pycuda context current when the
    launcher opened) is current for each call into the driver, from any thread. A thread
    with no context current keeps irkit's after the call, as CUDA's runtime API leaves the
    primary context (so the next call needs no switch); a thread whose own context is
    current gets it back after the call, as libraries sharing a thread should. pycuda keeps
    a stack per thread that must be empty when the thread ends, so through pycuda irkit's
    context is always popped again. A function call switches once for all of its
    allocations, copies and launches (`scope`)."""

    launcher = ""
    context: object = None

    def __init__(self) -> None:
        self._local = threading.local()

    def scope(self) -> "_Scope":
        """`with drv.scope():` the context is current inside."""
        return _Scope(self)

    def _enter(self) -> None:
        local = self._local
        depth = getattr(local, "depth", 0)
        if depth == 0:
            current = self._current()
            local.pushed = False
            if current != self._handle() and not (current == 0 and self._adopt_thread()):
                self._push()
                local.pushed = True
        local.depth = depth + 1

    def _exit(self) -> None:
        local = self._local
        local.depth -= 1
        if local.depth == 0 and local.pushed:
            local.pushed = False
            self._pop()

    @abstractmethod
    def launch_address(self) -> int | None:
        """The address of the driver's cuLaunchKernel for the host code to call, or None."""

    @abstractmethod
    def error_name(self, code: int) -> str:
        """A CUresult's name ("CUDA_ERROR_LAUNCH_FAILED")."""

    @abstractmethod
    def _current(self) -> int:
        """The handle of the context current on this thread (0: none)."""

    @abstractmethod
    def _handle(self) -> int:
        """The handle of irkit's context."""

    @abstractmethod
    def _adopt_thread(self) -> bool:
        """On a thread with no context current: make irkit's current for good and say True,
        or say False (then it is pushed for the call and popped after)."""

    @abstractmethod
    def _push(self) -> None:
        """Push irkit's context on this thread's stack."""

    @abstractmethod
    def _pop(self) -> None:
        """Pop it again."""


class _Scope:
    __slots__ = ("drv",)

    def __init__(self, drv: _Launcher) -> None:
        self.drv = drv

    def __enter__(self) -> None:
        self.drv._enter()

    def __exit__(self, *exc) -> None:
        self.drv._exit()


def _in_context(method):
    """A launcher method that needs irkit's context current."""
    def call(self, *args):
        if getattr(self._local, "depth", 0):  # inside a call's scope: current already
            return method(self, *args)
        self._enter()
        try:
            return method(self, *args)
        finally:
            self._exit()
    call.__name__, call.__doc__ = method.__name__, method.__doc__
    return call


class _CtypesKernels:
    """Modules, kernels and launches through ctypes on libcuda (`self.lib`): the ctypes
    launcher's, and pycuda's (which has no handle of a kernel to give the host code)."""

    lib: ctypes.CDLL

    def _fn(self, name: str, *argtypes) -> None:
        try:
            f = getattr(self.lib, name)
        except AttributeError:
            raise DeviceError(f"the CUDA driver library has no {name}; it is too old or not libcuda. "
                              f"{INSTALL}") from None
        f.argtypes, f.restype = list(argtypes), c_int

        def call(*args):
            err = f(*args)
            if err:
                raise DeviceError(f"{name}: {self.error_name(err)}")
        setattr(self, name.removesuffix("_v2"), call)

    def _bind_kernels(self) -> None:
        P = c_void_p
        self.lib.cuGetErrorName.argtypes = [c_int, POINTER(c_char_p)]
        self._fn("cuModuleLoadData", POINTER(P), c_char_p)
        self._fn("cuModuleGetFunction", POINTER(P), P, c_char_p)
        self._fn("cuModuleGetGlobal_v2", POINTER(c_uint64), POINTER(c_size_t), P, c_char_p)

    @_in_context
    def load(self, ptx: str) -> int:
        mod = c_void_p()
        self.cuModuleLoadData(byref(mod), ptx.encode() + b"\0")
        return mod.value

    @_in_context
    def function(self, module: int, name: str) -> int:
        fn = c_void_p()
        self.cuModuleGetFunction(byref(fn), c_void_p(module), name.encode())
        return fn.value

    @_in_context
    def global_(self, module: int, name: str) -> int:
        ptr, size = c_uint64(), c_size_t()
        self.cuModuleGetGlobal(byref(ptr), byref(size), c_void_p(module), name.encode())
        return ptr.value

    def launch_address(self) -> int | None:
        """The driver's cuLaunchKernel, which the host code calls with no Python between."""
        return ctypes.cast(self.lib.cuLaunchKernel, c_void_p).value

    def error_name(self, code: int) -> str:
        name = c_char_p()
        self.lib.cuGetErrorName(code, byref(name))
        return name.value.decode() if name.value else f"CUDA error {code}"


class Driver(_CtypesKernels, _Launcher):
    """The CUDA driver API through ctypes: one device (ordinal 0), its primary context."""

    launcher = "ctypes"

    def __init__(self, path: str | None = None) -> None:
        super().__init__()
        names = [path] if path else (["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so"])
        errors = []
        for n in names:
            try:
                self.lib = ctypes.CDLL(n)
                break
            except OSError as e:
                errors.append(str(e))
        else:
            raise DeviceError(f"no CUDA driver: {'; '.join(errors)}. {INSTALL}")
        P = c_void_p
        self._fn("cuInit", c_uint)
        self._fn("cuDeviceGetCount", POINTER(c_int))
        self._fn("cuDeviceGet", POINTER(c_int), c_int)
        self._fn("cuDeviceGetAttribute", POINTER(c_int), c_int, c_int)
        self._fn("cuDeviceGetName", c_char_p, c_int, c_int)
        self._fn("cuDevicePrimaryCtxRetain", POINTER(P), c_int)
        self._fn("cuCtxGetCurrent", POINTER(P))
        self._fn("cuCtxSetCurrent", P)
        self._fn("cuCtxPushCurrent_v2", P)
        self._fn("cuCtxPopCurrent_v2", POINTER(P))
        self._fn("cuCtxSynchronize")
        self._fn("cuMemAlloc_v2", POINTER(c_uint64), c_size_t)
        self._fn("cuMemFree_v2", c_uint64)
        self._fn("cuMemcpyHtoD_v2", c_uint64, P, c_size_t)
        self._fn("cuMemcpyDtoH_v2", P, c_uint64, c_size_t)
        self._fn("cuMemcpyDtoD_v2", c_uint64, c_uint64, c_size_t)
        self._bind_kernels()
        self.cuInit(0)
        count = c_int()
        self.cuDeviceGetCount(byref(count))
        if count.value < 1:
            raise DeviceError(f"the CUDA driver sees no GPU. {INSTALL}")
        dev, ctx = c_int(), c_void_p()
        self.cuDeviceGet(byref(dev), 0)
        self.device = dev
        self.name, self.sm = _describe(self)
        self.cuDevicePrimaryCtxRetain(byref(ctx), dev)
        self.context = ctx

    def attribute(self, attr: int) -> int:
        """A CUdevice_attribute of the device (75/76: compute capability, 36: memory clock
        in kHz, 37: memory bus width in bits, ...)."""
        value = c_int()
        self.cuDeviceGetAttribute(byref(value), attr, self.device)
        return value.value

    def device_name(self) -> str:
        name = ctypes.create_string_buffer(256)
        self.cuDeviceGetName(name, 256, self.device)
        return name.value.decode(errors="replace")

    def _current(self) -> int:
        ctx = c_void_p()
        self.cuCtxGetCurrent(byref(ctx))
        return ctx.value or 0

    def _handle(self) -> int:
        return self.context.value

    def _adopt_thread(self) -> bool:
        self.cuCtxSetCurrent(self.context)
        return True

    def _push(self) -> None:
        self.cuCtxPushCurrent(self.context)

    def _pop(self) -> None:
        self.cuCtxPopCurrent(byref(c_void_p()))

    # -- what the runtime uses -----------------------------------------------------------------
    @_in_context
    def alloc(self, nbytes: int) -> int:
        p = c_uint64()
        self.cuMemAlloc(byref(p), max(nbytes, 1))
        return p.value

    @_in_context
    def free(self, ptr: int) -> None:
        self.cuMemFree(c_uint64(ptr))

    @_in_context
    def to_device(self, dst: int, src: int, nbytes: int) -> None:
        if nbytes:
            self.cuMemcpyHtoD(c_uint64(dst), c_void_p(src), nbytes)

    @_in_context
    def to_host(self, dst: int, src: int, nbytes: int) -> None:
        if nbytes:
            self.cuMemcpyDtoH(c_void_p(dst), c_uint64(src), nbytes)

    @_in_context
    def copy(self, dst: int, src: int, nbytes: int) -> None:
        if nbytes:
            self.cuMemcpyDtoD(c_uint64(dst), c_uint64(src), nbytes)

    @_in_context
    def synchronize(self) -> None:
        self.cuCtxSynchronize()


class BindingsDriver(_Launcher):
    """The CUDA driver API through NVIDIA's cuda-bindings: one device (ordinal 0), its
    primary context. Every call returns (status, *values); a bad status is a DeviceError."""

    launcher = "cuda-bindings"

    def __init__(self) -> None:
        super().__init__()
        from cuda.bindings import driver as cu
        self.cu = cu
        try:
            self._call("cuInit", 0)
        except DeviceError:
            raise
        except Exception as e:  # cuda-bindings found no libcuda.so.1 to load
            raise DeviceError(f"no CUDA driver: {type(e).__name__}: {e}. {INSTALL}") from None
        if self._call("cuDeviceGetCount") < 1:
            raise DeviceError(f"the CUDA driver sees no GPU. {INSTALL}")
        self.device = self._call("cuDeviceGet", 0)
        self.name, self.sm = _describe(self)
        self.context = self._call("cuDevicePrimaryCtxRetain", self.device)
        self._modules: dict[int, object] = {}  # the binding objects, kept alive by address

    def attribute(self, attr: int) -> int:
        """A CUdevice_attribute of the device, by number (as the ctypes driver takes it)."""
        return int(self._call("cuDeviceGetAttribute", self.cu.CUdevice_attribute(attr), self.device))

    def device_name(self) -> str:
        return self._call("cuDeviceGetName", 256, self.device).split(b"\0", 1)[0].decode(errors="replace")

    def _call(self, name: str, *args):
        err, *values = getattr(self.cu, name)(*args)
        if err != self.cu.CUresult.CUDA_SUCCESS:
            _, text = self.cu.cuGetErrorName(err)
            raise DeviceError(f"{name}: {text.decode() if isinstance(text, bytes) else err}")
        return values[0] if len(values) == 1 else tuple(values) if values else None

    def _current(self) -> int:
        return int(self._call("cuCtxGetCurrent"))

    def _handle(self) -> int:
        return int(self.context)

    def _adopt_thread(self) -> bool:
        self._call("cuCtxSetCurrent", self.context)
        return True

    def _push(self) -> None:
        self._call("cuCtxPushCurrent", self.context)

    def _pop(self) -> None:
        self._call("cuCtxPopCurrent")

    @_in_context
    def alloc(self, nbytes: int) -> int:
        return int(self._call("cuMemAlloc", max(nbytes, 1)))

    @_in_context
    def free(self, ptr: int) -> None:
        self._call("cuMemFree", ptr)

    @_in_context
    def to_device(self, dst: int, src: int, nbytes: int) -> None:
        if nbytes:
            self._call("cuMemcpyHtoD", dst, src, nbytes)

    @_in_context
    def to_host(self, dst: int, src: int, nbytes: int) -> None:
        if nbytes:
            self._call("cuMemcpyDtoH", dst, src, nbytes)

    @_in_context
    def copy(self, dst: int, src: int, nbytes: int) -> None:
        if nbytes:
            self._call("cuMemcpyDtoD", dst, src, nbytes)

    @_in_context
    def load(self, ptx: str) -> int:
        mod = self._call("cuModuleLoadData", ptx.encode() + b"\0")
        self._modules[int(mod)] = mod
        return int(mod)

    @_in_context
    def function(self, module: int, name: str) -> int:
        return int(self._call("cuModuleGetFunction", self._modules[module], name.encode()))

    @_in_context
    def global_(self, module: int, name: str) -> int:
        ptr, _size = self._call("cuModuleGetGlobal", self._modules[module], name.encode())
        return int(ptr)

    @_in_context
    def launch(self, fn: int, grid: tuple[int, int], block: tuple[int, int], shared: int, params: int) -> None:
        # kernelParams as an address: the void** list the host code packed
        self._call("cuLaunchKernel", fn, grid[0], grid[1], 1, block[0], block[1], 1, shared, 0, params, 0)

    def launch_address(self) -> int | None:
        """cuLaunchKernel of the libcuda cuda-bindings loaded (the one loaded under its
        soname), which the host code then calls with no Python between; None if not found."""
        try:
            lib = ctypes.CDLL("libcuda.so.1", mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
            return ctypes.cast(lib.cuLaunchKernel, c_void_p).value
        except (OSError, AttributeError):
            return None

    def error_name(self, code: int) -> str:
        try:
            _, name = self.cu.cuGetErrorName(self.cu.CUresult(code))
            return name.decode()
        except (ValueError, AttributeError):
            return f"CUDA error {code}"

    @_in_context
    def synchronize(self) -> None:
        self._call("cuCtxSynchronize")


class PycudaDriver(_CtypesKernels, _Launcher):
    """The CUDA driver API through pycuda, for programs that already use it: irkit runs in
    the pycuda context current when it opened (its buffers live beside theirs), else in the
    device's primary context; memory and copies go through pycuda. pycuda's kernels are
    Python objects, with no handle for the host code to launch them by, so modules and
    launches go to the libcuda.so.1 that pycuda loaded, through ctypes, in the same context."""

    launcher = "pycuda"

    def __init__(self) -> None:
        super().__init__()
        try:
            import pycuda.driver as cu
        except Exception as e:  # ImportError without libcuda.so.1, or a build for another CUDA
            raise DeviceError(f"no CUDA driver: pycuda cannot be imported ({type(e).__name__}: {e}). "
                              f"{INSTALL}") from None
        self.cu = cu
        self._errors = cu.Error
        try:
            cu.init()
            current = cu.Context.get_current()
            if current is not None:
                self.context, self.device = current, current.get_device()
            else:
                if cu.Device.count() < 1:
                    raise DeviceError(f"the CUDA driver sees no GPU. {INSTALL}")
                self.device = cu.Device(0)
                self.context = self.device.retain_primary_context()
        except cu.Error as e:
            raise DeviceError(f"pycuda: {e}") from None
        self.name, self.sm = _describe(self)
        self._allocations: dict[int, object] = {}  # pycuda frees a buffer with its object
        try:  # the library pycuda's extension loaded (by its soname), not another one
            self.lib = ctypes.CDLL("libcuda.so.1", mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        except (OSError, AttributeError) as e:
            raise DeviceError(f"pycuda works, but its libcuda.so.1 cannot be reached through ctypes ({e}); "
                              "use IRKIT_CUDA_DRIVER=cuda-bindings or ctypes") from None
        self._bind_kernels()

    def attribute(self, attr: int) -> int:
        """A CUdevice_attribute of the device, by number (as the ctypes driver takes it)."""
        try:
            return int(self.device.get_attribute(self.cu.device_attribute.values[attr]))
        except KeyError:
            raise DeviceError(f"pycuda knows no device attribute {attr}") from None

    def device_name(self) -> str:
        return self.device.name()

    def _current(self) -> int:
        current = self.cu.Context.get_current()
        return current.handle if current is not None else 0

    def _handle(self) -> int:
        return self.context.handle

    def _adopt_thread(self) -> bool:
        return False  # pycuda aborts when a thread ends with its context stack not empty

    def _push(self) -> None:
        self.context.push()

    def _pop(self) -> None:
        self.cu.Context.pop()

    def _enter(self) -> None:
        try:
            super()._enter()
        except self._errors as e:
            raise DeviceError(f"pycuda: {e}") from None

    @_in_context
    def alloc(self, nbytes: int) -> int:
        buf = self._guard(self.cu.mem_alloc, max(nbytes, 1))
        self._allocations[int(buf)] = buf
        return int(buf)

    @_in_context
    def free(self, ptr: int) -> None:
        self._guard(self._allocations.pop(ptr).free)

    @_in_context
    def to_device(self, dst: int, src: int, nbytes: int) -> None:
        if nbytes:
            self._guard(self.cu.memcpy_htod, dst, (ctypes.c_char * nbytes).from_address(src))

    @_in_context
    def to_host(self, dst: int, src: int, nbytes: int) -> None:
        if nbytes:
            self._guard(self.cu.memcpy_dtoh, (ctypes.c_char * nbytes).from_address(dst), src)

    @_in_context
    def copy(self, dst: int, src: int, nbytes: int) -> None:
        if nbytes:
            self._guard(self.cu.memcpy_dtod, dst, src, nbytes)

    @_in_context
    def synchronize(self) -> None:
        self._guard(self.cu.Context.synchronize)

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except self._errors as e:
            raise DeviceError(f"pycuda: {e}") from None


def _describe(drv) -> tuple[str, str]:
    """The device's name and its SM ("sm_90"), from the compute capability attributes."""
    return drv.device_name(), f"sm_{drv.attribute(75)}{drv.attribute(76)}"


LAUNCHERS = ("cuda-bindings", "pycuda", "ctypes")
_driver: _Launcher | None = None
_driver_lock = threading.Lock()


def _pycuda_in_use() -> bool:
    """Whether the program already runs pycuda with a context current here: then irkit joins
    that context rather than the primary one (pycuda.autoinit makes a context of its own)."""
    cu = sys.modules.get("pycuda.driver")
    try:
        return cu is not None and cu.Context.get_current() is not None
    except Exception:
        return False


def _open_driver() -> _Launcher:
    choice = os.environ.get("IRKIT_CUDA_DRIVER", "").strip().lower()
    library = os.environ.get("IRKIT_LIBCUDA") or None
    if choice not in ("", "auto", *LAUNCHERS):
        raise DeviceError(f"IRKIT_CUDA_DRIVER={choice!r}: irkit launches through "
                          + ", ".join(repr(n) for n in LAUNCHERS))
    if choice == "ctypes" or (library is not None and choice in ("", "auto")):
        return Driver(library)
    if choice == "pycuda" or (choice in ("", "auto") and _pycuda_in_use()):
        return PycudaDriver()
    try:
        import cuda.bindings.driver  # noqa: F401
    except ImportError:
        if choice == "cuda-bindings":
            raise DeviceError("IRKIT_CUDA_DRIVER=cuda-bindings, but NVIDIA's cuda-bindings is not installed: "
                              "pip install 'irkit[cuda]' (or cuda-bindings)") from None
    else:
        return BindingsDriver()
    import importlib.util
    if importlib.util.find_spec("pycuda") is None:
        return Driver(library)
    try:
        return PycudaDriver()
    except DeviceError as e:  # installed but not importable here: ctypes, if the driver is there
        drv = Driver(library)
        warnings.warn(f"irkit: pycuda is installed but unusable ({e}); launching through ctypes",
                      RuntimeWarning, stacklevel=3)
        return drv


def known_sm() -> str:
    """The SM kernels are built for: the device's own where the driver is open (never opened
    here: compiling needs no device), else sm_80."""
    from irkit.backends import ptx
    return ptx.sm_for(_driver.sm if _driver is not None else None)


def driver() -> _Launcher:
    """The process's launcher, opened on first use; DeviceError when there is none."""
    global _driver
    if _driver is None:
        with _driver_lock:
            if _driver is None:
                _driver = _open_driver()
    return _driver


# -- device memory: a caching pool ----------------------------------------------------------------

class Pool:
    """Device buffers kept for reuse once freed, by size class, as PyTorch's caching
    allocator does: a training step allocates the same buffers every call, and cuMemFree
    waits for the whole device (it would serialise host and GPU at every free) while
    cuMemAlloc costs microseconds. Reuse is safe because every irkit launch and copy runs
    in order on the one default stream. A buffer exported by DLPack or the CUDA Array
    Interface is not reused (`discard`): its consumer's stream may still read it. Freed
    buffers stay held until an allocation fails for memory (then all are released and the
    allocation tried again) or `empty_cache()`; `IRKIT_CUDA_POOL=0` turns the pool off."""

    def __init__(self, drv: "_Launcher") -> None:
        self.drv = drv
        self.enabled = os.environ.get("IRKIT_CUDA_POOL", "1") != "0"
        self.size_of: dict[int, int] = {}  # every live or held buffer the pool made -> its bytes
        self.held: dict[int, list[int]] = {}  # size class -> freed buffers
        self.held_bytes = 0
        self.lock = threading.Lock()

    @staticmethod
    def size_class(nbytes: int) -> int:
        """512-byte steps to 1 MiB, then steps of an eighth of the power of two below."""
        if nbytes <= 1 << 20:
            return ((nbytes + 511) & ~511) or 512
        step = 1 << (nbytes.bit_length() - 4)
        return -(-nbytes // step) * step

    def alloc(self, nbytes: int) -> int:
        if not self.enabled:
            return self.drv.alloc(nbytes)
        size = self.size_class(nbytes)
        with self.lock:
            free = self.held.get(size)
            if free:
                self.held_bytes -= size
                return free.pop()
        try:
            ptr = self.drv.alloc(size)
        except DeviceError as e:
            if "OUT_OF_MEMORY" not in str(e).upper().replace(" ", "_") or not self.held_bytes:
                raise
            self.empty()
            ptr = self.drv.alloc(size)
        with self.lock:
            self.size_of[ptr] = size
        return ptr

    def free(self, ptr: int) -> None:
        with self.lock:
            size = self.size_of.get(ptr)
            if size is not None:
                self.held.setdefault(size, []).append(ptr)
                self.held_bytes += size
                return
        self.drv.free(ptr)  # not the pool's (made with the pool off)

    def discard(self, ptr: int) -> None:
        """Free `ptr` to the driver, not for reuse."""
        with self.lock:
            self.size_of.pop(ptr, None)
        self.drv.free(ptr)

    def empty(self) -> None:
        """Give every held buffer back to the driver."""
        with self.lock:
            held = [p for ptrs in self.held.values() for p in ptrs]
            self.held.clear()
            self.held_bytes = 0
            for p in held:
                del self.size_of[p]
        for p in held:
            self.drv.free(p)


_pool: Pool | None = None


def pool() -> Pool:
    """The process's pool of device memory (the driver opened on first use)."""
    global _pool
    if _pool is None:
        drv = driver()
        with _driver_lock:
            if _pool is None:
                _pool = Pool(drv)
    return _pool


def empty_cache() -> None:
    """Give the device memory irkit holds for reuse back to the driver (buffers in use stay)."""
    if _pool is not None:
        _pool.empty()


# -- cuBLAS ----------------------------------------------------------------------------------------

class Cublas:
    """cuBLAS's gemm through ctypes, for the products of `target="cuda"` functions. The library
    comes from `IRKIT_LIBCUBLAS`, NVIDIA's nvidia-cublas wheels, `$CUDA_HOME`/`$CUDA_PATH` or
    the loader's path; `IRKIT_CUBLAS=0` keeps irkit's own tiled kernel."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lib = ctypes.CDLL(path)
        handle = c_void_p()
        status = self.lib.cublasCreate_v2(byref(handle))
        if status:
            raise DeviceError(f"cublasCreate failed with status {status} ({path})")
        self.handle = handle
        args = [c_void_p, c_int, c_int, c_int, c_int, c_int, c_void_p, c_void_p, c_int, c_void_p, c_int,
                c_void_p, c_void_p, c_int]
        self.sgemm, self.dgemm = self.lib.cublasSgemm_v2, self.lib.cublasDgemm_v2
        for fn in (self.sgemm, self.dgemm):
            fn.argtypes, fn.restype = args, c_int

    def gemm(self, bits: int, ta: bool, tb: bool, m: int, n: int, k: int, alpha: float, a: int, lda: int,
             b: int, ldb: int, beta: float, c: int, ldc: int) -> None:
        """Row-major C (m x n) = alpha op(A) op(B) + beta C, which column-major cuBLAS sees as
        C^T = op(B)^T op(A)^T: B's memory first (transposed when op(B) is), then A's."""
        scalar = ctypes.c_float if bits == 32 else ctypes.c_double
        al, be = scalar(alpha), scalar(beta)
        fn = self.sgemm if bits == 32 else self.dgemm
        status = fn(self.handle, int(tb), int(ta), n, m, k, byref(al), b, ldb, a, lda, byref(be), c, ldc)
        if status:
            raise DeviceError(f"cuBLAS {'s' if bits == 32 else 'd'}gemm failed with status {status} "
                              f"(m={m}, n={n}, k={k})")


def _cublas_candidates() -> list[str]:
    import glob
    import importlib.util
    found = []
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        found += sorted(glob.glob(os.path.join(root, "cublas", "lib", "libcublas.so*")), reverse=True)
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            found += sorted(glob.glob(os.path.join(os.environ[var], "lib64", "libcublas.so*")), reverse=True)
    found += ["libcublas.so.13", "libcublas.so.12", "libcublas.so"]
    return [f for f in found if "Lt" not in os.path.basename(f)]


_cublas: Cublas | None | bool = False  # False: not looked for yet
_cublas_lock = threading.Lock()


def cublas() -> Cublas | None:
    """The process's cuBLAS, found on first use; None when there is none (or IRKIT_CUBLAS=0)."""
    global _cublas
    with _cublas_lock:
        if _cublas is False:
            _cublas = None
            if os.environ.get("IRKIT_CUBLAS", "1") != "0":
                explicit = os.environ.get("IRKIT_LIBCUBLAS")
                if explicit:
                    try:
                        _cublas = Cublas(explicit)
                    except OSError as e:
                        raise DeviceError(f"IRKIT_LIBCUBLAS={explicit!r} cannot be loaded: {e}") from None
                for path in [] if explicit else _cublas_candidates():
                    try:
                        _cublas = Cublas(path)
                        break
                    except OSError:
                        continue  # not there
                    except DeviceError as e:  # there, but unusable: irkit's own kernel instead
                        warnings.warn(f"irkit: cuBLAS at {path} cannot be used ({e}); products run irkit's "
                                      "tiled kernel", RuntimeWarning, stacklevel=2)
                        break
        return _cublas


# -- the host runtime ------------------------------------------------------------------------------

class _State:
    last_error = ""
    programs: dict[int, "LoadedProgram"] = {}


def _guard(default):
    def wrap(fn):
        def call(*args):
            try:
                return fn(*args)
            except Exception as e:  # never into native code
                _State.last_error = f"{type(e).__name__}: {e}"
                return default
        return call
    return wrap


@_guard(None)
def _alloc(n):
    return pool().alloc(n)


@_guard(None)
def _free(p):
    if p:
        pool().free(p)


@_guard(1)
def _copy(dst, src, n):
    driver().copy(dst, src, n)
    return 0


@_guard(1)
def _read(dst, src, n):
    driver().to_host(dst, src, n)
    return 0


@_guard(1)
def _write(dst, src, n):
    driver().to_device(dst, src, n)
    return 0


@_guard(1)
def _launch_through_launcher(fn, gx, gy, gz, bx, by, bz, shared, stream, params, extra):
    """cuLaunchKernel's signature, for a launcher that cannot give the host code the driver's
    own (cuda-bindings where its libcuda is not found under the driver's soname)."""
    driver().launch(fn, (gx, gy), (bx, by), shared, params)
    return 0


_LAUNCH_PROTOTYPE = ctypes.CFUNCTYPE(c_int32, c_uint64, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint,
                                     c_void_p, c_void_p, c_void_p)


@_guard(2)
def _gemm(bits, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    blas = cublas()
    if blas is None:
        return 1  # the host code launches irkit's tiled kernel instead
    blas.gemm(bits, bool(ta), bool(tb), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    return 0


@_guard(None)
def _global(prog, index):
    return _State.programs[prog].globals[index]


@_guard(None)
def _scratch(prog):
    return _State.programs[prog].scratch


_CALLBACKS = {
    "irkit_cuda_alloc": (ctypes.CFUNCTYPE(c_void_p, c_int64), _alloc),
    "irkit_cuda_free": (ctypes.CFUNCTYPE(None, c_void_p), _free),
    "irkit_cuda_copy": (ctypes.CFUNCTYPE(c_int32, c_void_p, c_void_p, c_int64), _copy),
    "irkit_cuda_read": (ctypes.CFUNCTYPE(c_int32, c_void_p, c_void_p, c_int64), _read),
    "irkit_cuda_write": (ctypes.CFUNCTYPE(c_int32, c_void_p, c_void_p, c_int64), _write),
    "irkit_cuda_global": (ctypes.CFUNCTYPE(c_void_p, c_int64, c_int32), _global),
    "irkit_cuda_scratch": (ctypes.CFUNCTYPE(c_void_p, c_int64), _scratch),
    "irkit_cuda_gemm": (ctypes.CFUNCTYPE(c_int32, c_int32, ctypes.c_int8, ctypes.c_int8, c_int64, c_int64, c_int64,
                                         ctypes.c_double, c_void_p, c_int64, c_void_p, c_int64, ctypes.c_double,
                                         c_void_p, c_int64), _gemm),
}
_registered: list = []


def _register_runtime(drv: _Launcher) -> None:
    from irkit.backends import jit
    if _registered:
        return
    for name, (proto, fn) in _CALLBACKS.items():
        cb = proto(fn)
        _registered.append(cb)  # kept alive for the process
        jit.register_symbol(name, ctypes.cast(cb, c_void_p).value)
    launch = drv.launch_address()
    if launch is None:
        shim = _LAUNCH_PROTOTYPE(_launch_through_launcher)
        _registered.append(shim)
        launch = ctypes.cast(shim, c_void_p).value
    jit.register_symbol("irkit_cuLaunchKernel", launch)


class LoadedProgram:
    """A program on the device: its module, kernels, globals and scratch, and the host code."""

    _next = 1

    def __init__(self, program, ptx: str, entry: str) -> None:
        from irkit.backends import jit
        from irkit.backends.ptx import ERROR_GLOBAL, FUNCTIONS_GLOBAL, PROGRAM_GLOBAL, RESULT_GLOBAL, SCRATCH_SLOTS
        drv = driver()
        _register_runtime(drv)
        self.module = drv.load(ptx)
        self.functions = [drv.function(self.module, k.name) for k in program.kernels]
        self.globals = [drv.global_(self.module, g) for g in program.globals]
        self.error_flag = drv.global_(self.module, ERROR_GLOBAL)
        self.scratch = drv.alloc(8 * SCRATCH_SLOTS)
        self.id = LoadedProgram._next
        LoadedProgram._next += 1
        _State.programs[self.id] = self
        self.host = jit.compile_ir(str(program.host))
        engine = self.host.engine
        c_int64.from_address(engine.get_global_value_address(PROGRAM_GLOBAL)).value = self.id
        # the kernels' handles, where the host code's launches read them
        self.function_table = (c_void_p * max(len(self.functions), 1))(*self.functions)
        c_void_p.from_address(engine.get_global_value_address(FUNCTIONS_GLOBAL)).value = \
            ctypes.addressof(self.function_table)
        self.launch_result = c_int32.from_address(engine.get_global_value_address(RESULT_GLOBAL))
        self.entry = self.host.address(entry)

    def error_code(self) -> int:
        """The first failed check of any kernel since the last call (and clear it)."""
        drv = driver()
        code = c_int32()
        drv.to_host(ctypes.addressof(code), self.error_flag, 4)
        if code.value:
            zero = c_int32(0)
            drv.to_device(self.error_flag, ctypes.addressof(zero), 4)
        return code.value


class CudaRunner:
    """Calls a compiled function on the GPU: inputs copied in, results copied out as numpy
    arrays. Shared variables live on the device: a value uploaded once stays there while
    the variable holds it, and a new value a call makes stays there too (the variable holds
    a DeviceArray, copied to the host only when something reads it there)."""

    def __init__(self, program, ptx: str, entry: str, result_specs: list[tuple[np.dtype, int]],
                 n_shared: int, updated: dict[int, int]) -> None:
        self.program, self.ptx, self.entry_name = program, ptx, entry
        self.result_specs = result_specs
        self.n_shared = n_shared
        self.updated = updated  # result index -> the shared slot it becomes the new value of
        self.loaded: LoadedProgram | None = None
        # shared slot -> (the value the variable holds, the DeviceArray with its data)
        self.resident: dict[int, tuple[object, DeviceArray]] = {}
        self.entry = None  # the host function as a ctypes callable, made at the first call
        self.lock = threading.Lock()

    def _load(self) -> LoadedProgram:
        if self.loaded is None:
            self.loaded = LoadedProgram(self.program, self.ptx, self.entry_name)
        return self.loaded

    def run(self, arrays: list, raise_code, device_out: bool = False) -> list:
        """Run on `arrays` (numpy arrays, DeviceArrays, or DeviceViews of a caller's device
        buffers); the outputs as numpy arrays, or with `device_out` as DeviceArrays, then the
        new values of the updated shared variables as DeviceArrays."""
        with self.lock, driver().scope():  # one context switch for the call, if any
            return self._run(arrays, raise_code, device_out)

    def _run(self, arrays, raise_code, device_out=False):
        loaded = self._load()
        n_inputs = len(arrays) - self.n_shared
        args: list = []
        uploaded: list[DeviceArray] = []  # inputs copied for this call only: freed when it ends
        seen: set[int] = set()  # the device buffers of the arguments
        for k, a in enumerate(arrays):
            slot = k - n_inputs
            held = self.resident.get(slot) if slot >= 0 else None
            if isinstance(a, DeviceView):  # the caller's device buffer, used in place
                ptr = a.ptr
            else:
                if isinstance(a, DeviceArray):  # a value already on the device
                    dev = a
                elif held is not None and held[0] is a:
                    dev = held[1]
                else:
                    dev = DeviceArray.from_numpy(a)
                    if slot < 0:
                        uploaded.append(dev)
                if slot >= 0:
                    self.resident[slot] = (a, dev)
                ptr = dev.ptr
            seen.add(ptr)
            args.append(ptr)
            args.extend(a.shape)
        if self.entry is None:  # ranks are fixed by the signature: one prototype
            argtypes = [t for a in arrays for t in (c_void_p, *[c_int64] * len(a.shape))]
            self.entry = ctypes.CFUNCTYPE(c_int32, *argtypes, c_void_p)(loaded.entry)
        n_slots = sum(1 + rank for _, rank in self.result_specs)
        slots = (c_int64 * max(n_slots, 1))()
        _State.last_error = ""
        code = self.entry(*args, ctypes.cast(slots, c_void_p))
        if code == 0:
            code = loaded.error_code()
        if code:
            self._fail(code, raise_code)
        return self._results(slots, seen, device_out)

    def _fail(self, code: int, raise_code) -> None:
        detail = _State.last_error
        result, self.loaded.launch_result.value = self.loaded.launch_result.value, 0
        if result and not detail:  # a launch the driver refused, called from the host code directly
            detail = f"cuLaunchKernel: {driver().error_name(result)}"
        try:
            raise_code(code)
        except Exception as e:
            if detail:
                e.add_note(f"  device runtime: {detail}")
            raise

    def _results(self, slots, seen: set[int], device_out: bool) -> list:
        drv, memory = driver(), pool()
        out, k = [], 0
        for j, (dtype, rank) in enumerate(self.result_specs):
            ptr = slots[k] & 0xFFFFFFFFFFFFFFFF
            shape = tuple(slots[k + 1:k + 1 + rank])
            k += 1 + rank
            if ptr in seen:  # bufferize never returns an argument or a result twice; if it did, a copy
                nbytes = math.prod(shape) * np.dtype(dtype).itemsize
                fresh = memory.alloc(nbytes)
                drv.copy(fresh, ptr, nbytes)
                ptr = fresh
            seen.add(ptr)
            slot = self.updated.get(j)
            if slot is not None or device_out:
                dev = DeviceArray(ptr, shape, dtype, memory)
                if slot is not None:  # the variable's new value: it stays here for the next call
                    self.resident[slot] = (dev, dev)
                out.append(dev)
                continue
            arr = np.empty(shape, dtype=dtype)
            try:
                drv.to_host(arr.ctypes.data, ptr, arr.nbytes)
            finally:
                memory.free(ptr)
            out.append(arr)
        return out
