"""irkit's passes, one module per pass (or small family), registered by name.

`PASSES` maps a pipeline name to a factory of the pass class, as xDSL's
`PassPipeline.parse_spec` and `irkit-opt` expect. The default pipeline that
`ik.function` runs is `irkit.pipeline.DEFAULT`.
"""

from __future__ import annotations

from typing import Callable

from xdsl.passes import ModulePass


def _passes() -> dict[str, Callable[[], type[ModulePass]]]:
    from xdsl.transforms.common_subexpression_elimination import CommonSubexpressionElimination
    from xdsl.transforms.dead_code_elimination import DeadCodeElimination

    from irkit.passes.autodiff import AutodiffPass
    from irkit.passes.block_reductions import BlockReductionsPass
    from irkit.passes.bufferize import BufferizePass
    from irkit.passes.canonicalize import CanonicalizePass
    from irkit.passes.constant_fold import ConstantFoldPass
    from irkit.passes.copies_to_loops import CopiesToLoopsPass
    from irkit.passes.decompose import DecomposePass
    from irkit.passes.fuse import FusePass
    from irkit.passes.gemm_epilogue import GemmEpiloguePass
    from irkit.passes.hoist_allocs import HoistAllocsPass
    from irkit.passes.lower_to_loops import LowerToLoopsPass
    from irkit.passes.parallel_reductions import ParallelReductionsPass
    from irkit.passes.scan_keep_last import ScanKeepLastPass
    from irkit.passes.sink_branches import SinkBranchesPass
    from irkit.passes.stabilize import StabilizePass

    classes = [AutodiffPass, CanonicalizePass, ConstantFoldPass, StabilizePass, CommonSubexpressionElimination,
               DeadCodeElimination, DecomposePass, FusePass, BufferizePass, LowerToLoopsPass, SinkBranchesPass,
               ScanKeepLastPass, HoistAllocsPass, ParallelReductionsPass, GemmEpiloguePass, CopiesToLoopsPass,
               BlockReductionsPass]
    return {cls.name: (lambda cls=cls: cls) for cls in classes}


PASSES = _passes()
