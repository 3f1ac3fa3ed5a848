"""0-d buffers the GPU host program keeps for itself: promoted to host scalars.

The loops level passes scalars between ops through 0-d buffers (`memref<i64>` holding
`x.shape[0]` for a mean, the start and step of an `arange`, ...). On a GPU every access to
a buffer outside a parallel loop is device code, so each such store or load used to cost a
one-thread kernel `<f>_s<n>` and often a read back. A 0-d buffer is *promoted* when

- the function allocates it (`memref.alloc`, so no caller or output sees its memory),
- it is only loaded, stored and deallocated (never returned, copied, viewed or passed on),
- every store to it runs on the host: no `scf.parallel` above it, and every op above it
  holds host-only work (allocation, launches), so it is translated on the host, never
  folded into a device segment.

A promoted buffer lives in a host stack slot; host loads and stores are plain CPU memory
accesses, and a kernel that reads it gets the value as a parameter (`HostScalar` on the
host, `DeviceScalar` in the kernel), loaded when the kernel is launched, which is after every
store before it in program order since the host runs in order.
"""

from __future__ import annotations

import llvmlite.ir as ir
from xdsl.dialects import func, memref, scf
from xdsl.dialects.builtin import MemRefType
from xdsl.ir import Attribute, Operation, SSAValue

# what only the host does (backends/ptx.py `_HOST_ONLY`): an op holding one is translated on the host
_HOST_ONLY = (memref.AllocOp, memref.DeallocOp, memref.CopyOp, func.CallOp, scf.ParallelOp)


class HostScalar:
    """A promoted 0-d buffer in the host program: its stack slot (storage type) and element type."""

    __slots__ = ("slot", "elt")

    def __init__(self, slot: ir.Value, elt: Attribute) -> None:
        self.slot, self.elt = slot, elt


class DeviceScalar:
    """A promoted 0-d buffer inside a kernel: the value it held at the launch (storage type)."""

    __slots__ = ("value", "elt")

    def __init__(self, value: ir.Value, elt: Attribute) -> None:
        self.value, self.elt = value, elt


def _runs_on_host(op: Operation) -> bool:
    """Whether the host translates `op`: each op above it holds host-only work and none is a kernel."""
    parent = op.parent_op()
    while parent is not None and not isinstance(parent, func.FuncOp):
        if isinstance(parent, scf.ParallelOp):
            return False
        if not any(isinstance(inner, _HOST_ONLY) for inner in parent.walk()):
            return False  # a loop or branch of device work only: it runs as one device segment
        parent = parent.parent_op()
    return True


def _promotable(buf: SSAValue) -> bool:
    for use in buf.uses:
        user = use.operation
        if isinstance(user, memref.LoadOp) or isinstance(user, memref.DeallocOp):
            continue
        if isinstance(user, memref.StoreOp) and user.memref is buf and user.value is not buf:
            if _runs_on_host(user):
                continue
        return False
    return True


def promoted_scalars(fn: func.FuncOp) -> set[SSAValue]:
    """The 0-d buffers of `fn` the host keeps as scalars (see the module docstring)."""
    out: set[SSAValue] = set()
    for op in fn.walk():
        if isinstance(op, memref.AllocOp) and isinstance(op.memref.type, MemRefType) \
                and not op.memref.type.get_shape() and _promotable(op.memref):
            out.add(op.memref)
    return out


def is_promoted_access(op: Operation, promoted: set[SSAValue]) -> bool:
    """Whether `op` is a load or store of a promoted buffer (host work, not device work)."""
    return isinstance(op, (memref.LoadOp, memref.StoreOp)) and op.memref in promoted


class ReducedCell:
    """The device cell a full reduction folded into, standing for its value when only device
    code (stores to device buffers) uses it: kernels get the cell and load it, so the value
    never comes to the host (no read back, no wait for the reduction)."""

    __slots__ = ("ptr", "type")

    def __init__(self, ptr: ir.Value, type_: ir.Type) -> None:
        self.ptr, self.type = ptr, type_


def _pure_scalar(op: Operation) -> bool:
    return (op.name.split(".")[0] in ("arith", "math") and not op.regions
            and not any(isinstance(r.type, MemRefType) for r in op.results))


def device_only_chain(red: scf.ParallelOp, promoted: set[SSAValue]) -> list[Operation] | None:
    """When the value of the full reduction `red` only feeds stores to device buffers (through
    pure scalar ops in the same block), those ops, in block order, which the kernels of the
    stores recompute from the reduction's cell; None when the host needs the value."""
    block = red.parent_block()
    chain: set[Operation] = set()
    todo, stores = list(red.results), 0
    while todo:
        v = todo.pop()
        for use in v.uses:
            user = use.operation
            if user.parent_block() is not block:
                return None
            if (isinstance(user, memref.StoreOp) and user.value is v and v not in user.indices
                    and user.memref not in promoted):
                stores += 1
            elif _pure_scalar(user):
                if user not in chain:
                    chain.add(user)
                    todo.extend(user.results)
            else:
                return None
    if not stores:
        return None
    return [op for op in block.ops if op in chain]
