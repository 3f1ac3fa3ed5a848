"""DLPack (and CUDA Array Interface) for GPU arrays: device arrays in and out of
`target="cuda"` functions without a copy through the host, for frameworks that keep their
data on the GPU (PyTorch, CuPy, JAX; pycuda and numba by `__cuda_array_interface__`).

- `DeviceArray`: a result left on the device, owning its buffer; it exports itself through
  `__dlpack__` / `__dlpack_device__` (so `torch.from_dlpack(out)` takes it without a copy)
  and `__cuda_array_interface__` (a pycuda kernel takes it as an argument), and copies to
  the host on `numpy()` / `np.asarray(...)`.
- `device_view(obj, ...)`: the device buffer of any object that exports a CUDA tensor by
  DLPack (a DeviceArray, a torch.cuda tensor, ...) or the CUDA Array Interface (a pycuda
  GPUArray, a numba device array), checked like a numpy input is (dtype, rank, static
  sizes, C-contiguity); a DLPack capsule is consumed as the protocol says (renamed
  `used_dltensor`, its deleter called once irkit is done with it).

The structs are DLPack's stable (unversioned) ABI, which every producer still offers when
`__dlpack__` is called without `max_version`.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, c_char_p, c_int32, c_int64, c_uint8, c_uint16, c_uint64, c_void_p
from typing import Any

import numpy as np

from irkit.errors import DTypeError, ShapeError

KDL_CPU, KDL_CUDA, KDL_CUDA_HOST, KDL_CUDA_MANAGED = 1, 2, 3, 13
_CODES = {"i": 0, "u": 1, "f": 2, "b": 6}  # kDLInt, kDLUInt, kDLFloat, kDLBool


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", c_int32), ("device_id", c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", c_uint8), ("bits", c_uint8), ("lanes", c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", c_void_p), ("device", DLDevice), ("ndim", c_int32), ("dtype", DLDataType),
                ("shape", POINTER(c_int64)), ("strides", POINTER(c_int64)), ("byte_offset", c_uint64)]


class DLManagedTensor(ctypes.Structure):
    """DLPack's owner record; its fields are set below, since its deleter takes a pointer to it."""


_DELETER = ctypes.CFUNCTYPE(None, POINTER(DLManagedTensor))
DLManagedTensor._fields_ = [("dl_tensor", DLTensor), ("manager_ctx", c_void_p), ("deleter", _DELETER)]

_api = ctypes.pythonapi
_api.PyCapsule_New.restype = ctypes.py_object
_api.PyCapsule_New.argtypes = [c_void_p, c_char_p, c_void_p]
_api.PyCapsule_GetPointer.restype = c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, c_char_p]
_api.PyCapsule_SetName.restype = ctypes.c_int
_api.PyCapsule_SetName.argtypes = [ctypes.py_object, c_char_p]
_api.PyCapsule_IsValid.restype = ctypes.c_int
_api.PyCapsule_IsValid.argtypes = [ctypes.py_object, c_char_p]


def _dl_dtype(dtype: np.dtype) -> DLDataType:
    return DLDataType(_CODES[dtype.kind], 8 * dtype.itemsize, 1)


def _np_dtype(t: DLDataType) -> np.dtype | None:
    kind = {v: k for k, v in _CODES.items()}.get(t.code)
    if kind is None or t.lanes != 1:
        return None
    if kind == "b":
        return np.dtype(bool) if t.bits == 8 else None
    try:
        return np.dtype(f"{kind}{t.bits // 8}")
    except TypeError:
        return None


# -- export: a DeviceArray as a capsule ----------------------------------------------------------

_exported: dict[int, tuple] = {}  # address of a DLManagedTensor -> what keeps it and its array alive


@_DELETER
def _delete_managed(managed) -> None:
    _exported.pop(ctypes.addressof(managed.contents), None)


# the capsule being destroyed is seen by address: a new reference to it would revive it
_capsule_is_valid = ctypes.PYFUNCTYPE(ctypes.c_int, c_void_p, c_char_p)(("PyCapsule_IsValid", _api))
_capsule_pointer = ctypes.PYFUNCTYPE(c_void_p, c_void_p, c_char_p)(("PyCapsule_GetPointer", _api))


@ctypes.CFUNCTYPE(None, c_void_p)
def _capsule_destructor(capsule: int) -> None:
    # an unconsumed capsule (still named "dltensor") owns the tensor: delete it
    if _capsule_is_valid(capsule, b"dltensor"):
        _exported.pop(_capsule_pointer(capsule, b"dltensor"), None)


class DeviceArray:
    """A result of a `target="cuda"` function left on the GPU. It owns its device buffer
    (freed with it), exports itself by DLPack, and copies to the host on `numpy()`."""

    __slots__ = ("ptr", "shape", "dtype", "device_id", "_owner", "_exported", "_host", "__weakref__")

    def __init__(self, ptr: int, shape: tuple[int, ...], dtype: np.dtype, owner, device_id: int = 0) -> None:
        self.ptr, self.shape, self.dtype, self.device_id = ptr, tuple(shape), np.dtype(dtype), device_id
        self._owner = owner  # the memory pool its buffer goes back to (cuda.Pool), or None
        self._exported = False  # handed to another framework: never reused once freed
        self._host: np.ndarray | None = None  # the host copy, made at the first read (irkit never writes
        #                                       a buffer it has handed out)

    @classmethod
    def from_numpy(cls, a: np.ndarray) -> "DeviceArray":
        """A device copy of a host array (the way in for data that starts on the host)."""
        from irkit.backends import cuda
        a = np.ascontiguousarray(a)
        pool = cuda.pool()
        ptr = pool.alloc(a.nbytes)
        cuda.driver().to_device(ptr, a.ctypes.data, a.nbytes)
        return cls(ptr, a.shape, a.dtype, pool)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def host(self) -> np.ndarray:
        """The data on the host, read-only: copied from the device at the first call only."""
        if self._host is None:
            from irkit.backends import cuda
            out = np.empty(self.shape, self.dtype)
            cuda.driver().to_host(out.ctypes.data, self.ptr, out.nbytes)
            out.setflags(write=False)
            self._host = out
        return self._host

    def numpy(self) -> np.ndarray:
        """A host copy of its own."""
        return self.host().copy()

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if copy is False:
            raise ValueError("a DeviceArray lives on the GPU: reading it on the host is a copy")
        out = self.numpy() if copy else self.host()
        return out if dtype is None else out.astype(dtype)

    def __dlpack_device__(self) -> tuple[int, int]:
        return (KDL_CUDA, self.device_id)

    def __dlpack__(self, stream: Any = None, max_version: Any = None, dl_device: Any = None,
                   copy: bool | None = None) -> Any:
        # irkit's launches run on the default stream and end synchronised: any consumer
        # stream sees the data, so `stream` needs no event
        if dl_device is not None and tuple(dl_device) != self.__dlpack_device__():
            raise BufferError(f"a DeviceArray lives on CUDA device {self.device_id}; it cannot be exported "
                              f"to device {tuple(dl_device)}")
        if copy:
            raise BufferError("a DeviceArray exports its own buffer (copy=True is not supported)")
        self._exported = True
        shape = (c_int64 * max(self.ndim, 1))(*self.shape)
        managed = DLManagedTensor()
        managed.dl_tensor = DLTensor(self.ptr, DLDevice(KDL_CUDA, self.device_id), self.ndim,
                                     _dl_dtype(self.dtype), shape, None, 0)
        managed.deleter = _delete_managed
        address = ctypes.addressof(managed)
        _exported[address] = (managed, shape, self)  # the array lives while a consumer holds it
        return _api.PyCapsule_New(address, b"dltensor", ctypes.cast(_capsule_destructor, c_void_p).value)

    @property
    def __cuda_array_interface__(self) -> dict:
        # version 3; no stream: irkit's calls end with their work done
        self._exported = True
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False), "strides": None,
                "version": 3, "stream": None}

    def __repr__(self) -> str:
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype.name}, device=cuda:{self.device_id})"

    def __del__(self) -> None:
        if self._owner is not None and self.ptr:
            try:  # an exported buffer may still be read on its consumer's stream: not reused
                (self._owner.discard if self._exported else self._owner.free)(self.ptr)
            except Exception:  # the driver may be gone at interpreter exit
                pass
            self.ptr = 0


# -- import: any CUDA DLPack producer ----------------------------------------------------------------

def on_device(obj: Any) -> bool:
    """Whether `obj` is a CUDA array, by DLPack or the CUDA Array Interface (host arrays,
    numpy's included, are not)."""
    if isinstance(obj, np.ndarray):
        return False
    probe = getattr(obj, "__dlpack_device__", None)
    if probe is not None:
        try:
            device_type, _ = probe()
        except Exception:
            return False
        return int(device_type) in (KDL_CUDA, KDL_CUDA_MANAGED)
    return hasattr(obj, "__cuda_array_interface__")


class DeviceView:
    """A producer's CUDA buffer for the length of one call; `release()` gives it back."""

    __slots__ = ("ptr", "shape", "dtype", "_capsule", "_managed")

    def __init__(self, ptr: int, shape: tuple[int, ...], dtype: np.dtype, capsule, managed) -> None:
        self.ptr, self.shape, self.dtype = ptr, shape, dtype
        self._capsule, self._managed = capsule, managed

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def release(self) -> None:
        if self._managed is not None:
            managed, self._managed = self._managed, None
            if managed.deleter:
                managed.deleter(ctypes.pointer(managed))


def device_view(obj: Any, label: str, dtype: np.dtype, static_shape: tuple) -> DeviceView:
    """The CUDA buffer `obj` exports, checked against the input it is given for."""
    if getattr(obj, "__dlpack__", None) is None:
        return _interface_view(obj, label, dtype, static_shape)
    capsule = obj.__dlpack__(stream=None)
    address = _api.PyCapsule_GetPointer(capsule, b"dltensor")
    managed = DLManagedTensor.from_address(address)
    _api.PyCapsule_SetName(capsule, b"used_dltensor")  # ours now: we call its deleter
    view = DeviceView(0, (), dtype, capsule, managed)
    try:
        t = managed.dl_tensor
        got = _np_dtype(t.dtype)
        shape = tuple(t.shape[k] for k in range(t.ndim))
        got_name = None if got is not None else f"DLPack type code {t.dtype.code}, {t.dtype.bits} bits"
        strides = tuple(t.strides[k] for k in range(t.ndim)) if t.strides else None
        _check(label, got, shape, strides, dtype, static_shape, got_name)
        view.ptr, view.shape = int(t.data or 0) + int(t.byte_offset), shape
        return view
    except BaseException:
        view.release()
        raise


def check_device_array(a: DeviceArray, label: str, dtype: np.dtype, static_shape: tuple) -> None:
    """An irkit DeviceArray given as an input, checked as `device_view` checks others."""
    _check(label, a.dtype, a.shape, None, dtype, static_shape)


def _interface_view(obj: Any, label: str, dtype: np.dtype, static_shape: tuple) -> DeviceView:
    """`device_view` for a `__cuda_array_interface__` producer (version 0 to 3)."""
    cai = obj.__cuda_array_interface__
    shape = tuple(int(n) for n in cai["shape"])
    try:
        got = np.dtype(cai["typestr"])
    except TypeError:
        raise DTypeError(f"{label}: the device array's typestr {cai['typestr']!r} is no numpy dtype") from None
    strides = cai.get("strides")
    if strides is not None:  # in bytes there, in elements in DLPack
        if any(s % got.itemsize for s in strides):
            raise ShapeError(f"{label}: the device array's strides {tuple(strides)} are not whole elements")
        strides = tuple(s // got.itemsize for s in strides)
    if cai.get("mask") is not None:
        raise ShapeError(f"{label}: the device array has a mask; irkit takes unmasked arrays")
    _check(label, got, shape, strides, dtype, static_shape)
    if cai.get("stream") not in (None, 1):  # work pending on another stream: wait for it
        from irkit.backends import cuda
        cuda.driver().synchronize()
    return DeviceView(int(cai["data"][0] or 0), shape, dtype, None, None)


def _check(label: str, got: np.dtype | None, shape: tuple, strides: tuple | None, dtype: np.dtype,
           static_shape: tuple, got_name: str | None = None) -> None:
    """A device array against the input it is given for: dtype (`got_name` names one numpy
    has not), rank, static sizes, and C-contiguity (`strides` in elements; None is C-contiguous)."""
    if got != dtype:
        raise DTypeError(f"{label}: the device array has dtype {got_name or got.name}, the input is {dtype.name} "
                         "(cast it on its device first)")
    if len(shape) != len(static_shape):
        raise ShapeError(f"{label}: the device array has rank {len(shape)} (shape {shape}), the input "
                         f"{len(static_shape)}")
    for k, (n, want) in enumerate(zip(shape, static_shape)):
        if want is not None and n != want:
            raise ShapeError(f"{label}: dim {k} of the device array is {n}, the input's is {want}")
    if strides:
        expect, step = [], 1
        for n in reversed(shape):
            expect.append(step)
            step *= n
        if any(s != e for s, e, n in zip(strides, reversed(expect), shape) if n > 1):
            raise ShapeError(f"{label}: the device array is not C-contiguous (strides {strides} in elements); "
                             "make it contiguous on its device first")
