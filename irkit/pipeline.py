"""The default pipeline, stage by stage, and the context that knows every dialect.

    tensor:  sink-branches, stabilize, autodiff, canonicalize, constant-fold, stabilize, canonicalize, cse,
             dce, scan-keep-last, sink-branches
    fused:   decompose, canonicalize, cse, gemm-epilogue, fuse   (no gemm-epilogue for a GPU)
    loops:   bufferize, lower-to-loops, copies-to-loops, block-reductions, hoist-allocs

`DEFAULT` is what `ik.function` runs for the CPU (`irkit-opt -p default`).
"""

from __future__ import annotations

import time
from typing import Sequence

from xdsl.context import Context
from xdsl.dialects import builtin, cf, func, math, memref, scf
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from irkit.config import config
from irkit.errors import CompileError, IrkitError

STAGES = {
    # branches take their own work first (their derivatives then stay lazy too); stabilize
    # (log∘softmax is differentiated as log_softmax), autodiff, then the rewrites again over
    # the gradients too; scans keep only what is read of them, and the branches take what
    # the derivatives added
    "tensor": ["sink-branches", "stabilize", "autodiff", "canonicalize", "constant-fold", "stabilize",
               "canonicalize", "cse", "dce", "scan-keep-last", "sink-branches"],
    "fused": ["decompose", "canonicalize", "cse", "gemm-epilogue", "fuse"],
    "loops": ["bufferize", "lower-to-loops", "copies-to-loops", "block-reductions", "hoist-allocs"],
}
DEFAULT = [p for stage in STAGES.values() for p in stage]
# for a GPU: every product is a library call or a tiled kernel, never loops in one thread, and
# reductions are scf.parallel with scf.reduce (block and warp reductions in backends/ptx.py)
# the products stay products for a GPU: cuBLAS's and the tiled kernel's epilogues are not
# irkit's yet, and no device has run gemm's lowering there
GPU_FUSED = [p for p in STAGES["fused"] if p != "gemm-epilogue"]
GPU_LOOPS = ["bufferize{small-gemm=0}", "lower-to-loops", "hoist-allocs", "parallel-reductions"]


def make_context() -> Context:
    from irkit.dialects.arith_ext import ARITH
    from irkit.dialects.autodiff import IKAD
    from irkit.dialects.fused import IKF
    from irkit.dialects.ik import IK
    ctx = Context()
    for d in (builtin.Builtin, func.Func, ARITH, math.Math, scf.Scf, memref.MemRef, cf.Cf, IK, IKAD, IKF):
        ctx.load_dialect(d)
    return ctx


def make_pass(name: str) -> ModulePass:
    """A pass by name, with options as irkit-opt takes them: `bufferize{small-gemm=0}`."""
    from xdsl.utils.arg_spec import parse_pipeline
    from irkit.passes import PASSES
    spec = next(iter(parse_pipeline(name)))
    if spec.name not in PASSES:
        raise ValueError(f"unknown pass {spec.name!r}; known passes: {', '.join(sorted(PASSES))}")
    cls = PASSES[spec.name]()
    return cls.from_pass_spec(spec) if spec.parameters else cls()


def run_passes(module: ModuleOp, names: Sequence[str], ctx: Context | None = None,
               timings: dict | None = None) -> ModuleOp:
    """Apply the named passes in order; a failure inside one names it."""
    ctx = ctx or make_context()
    for name in names:
        p = make_pass(name)
        t0 = time.perf_counter()
        try:
            p.apply(ctx, module)
            if config.verify:
                module.verify()
        except IrkitError:
            raise
        except Exception as e:
            raise CompileError(f"pass {name!r} failed: {type(e).__name__}: {e}") from e
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
        if config.debug:
            print(f"[irkit] {name}: {1e3 * (time.perf_counter() - t0):.2f} ms")
    return module
