"""The tensor-level dialect `ik`: value semantics over ranked tensors.

One module per family of ops; each op states its shape and dtype rules, its
verifier, its numpy reference and its lowering in its own class (see
`base.py`). `IK` is the dialect; `OPS` lists every op class.
"""

from xdsl.ir import Dialect

from irkit.dialects.ik import control, create, elementwise, index, linalg, nn, random, reduce, shape, sparse
from irkit.dialects.ik.base import IkOp, Params
from irkit.dialects.ik.control import IfOp, ScanOp, YieldOp
from irkit.dialects.ik.create import ArangeOp, ConstantOp, EyeOp, FillOp, PlaceholderOp
from irkit.dialects.ik.elementwise import *  # noqa: F401,F403  (the op classes, by name)
from irkit.dialects.ik.index import GatherOp, NonzeroOp, ScatterOp, SetSliceOp, SliceOp
from irkit.dialects.ik.linalg import GemmOp, MatmulOp
from irkit.dialects.ik.nn import LogSoftmaxOp, LogSumExpOp, SoftmaxOp
from irkit.dialects.ik.random import (NextBelowOp, RandomIntegersOp, RandomNormalOp, RandomUniformOp,
                                      RequireOp)
from irkit.dialects.ik.reduce import (AllOp, AnyOp, ArgmaxOp, ArgminOp, MaxOp, MinOp, ProdOp,
                                      ReduceOp, SumOp)
from irkit.dialects.ik.shape import (BroadcastToOp, ConcatenateOp, DimOp, ExpandDimsOp, ReshapeOp,
                                     SqueezeOp, TransposeOp)

OPS = [*elementwise.OPS, *shape.OPS, *reduce.OPS, *index.OPS, *linalg.OPS, *create.OPS, *nn.OPS, *control.OPS,
       *sparse.OPS, *random.OPS]
IK = Dialect("ik", OPS, [])

__all__ = ["IK", "OPS", "IkOp", "Params", "ReduceOp"] + [op.__name__ for op in OPS]
