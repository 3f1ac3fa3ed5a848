"""irkit: a compiler for array programs in the lineage of Theano, built as an
MLIR-style multi-level IR toolkit on xDSL and llvmlite.

    import irkit as ik
    x = ik.vector("x", dtype="float32")
    f = ik.function([x], ik.exp(-x * x).sum())
    f(np.ones(3, np.float32))
    print(f.ir("loops"))
"""

__version__ = "0.1.0"

from irkit.errors import (  # noqa: E402  (errors first: the rest imports them)
    CompileError,
    DeviceError,
    DisconnectedInputError,
    DTypeError,
    GradientError,
    GradientUndefinedError,
    IndexOutOfBoundsError,
    InvalidValueError,
    IrkitError,
    MissingInputError,
    ParseError,
    ShapeError,
)
from irkit.config import config  # noqa: E402
from irkit.variable import Variable  # noqa: E402
from irkit.ops import *  # noqa: E402,F401,F403
from irkit.ops import (  # noqa: E402  (names that star-import skips or that shadow builtins)
    abs, all, any, max, min, pow, round, sum,
)
from irkit.leaves import (  # noqa: E402
    SharedVariable, bmatrix, bscalar, bvector, col, dmatrix, dscalar, dvector, fmatrix, fscalar, fvector,
    imatrix, iscalar, ivector, lmatrix, lscalar, lvector, matrix, row, scalar, shared, tensor, tensor3,
    tensor4, vector,
)
from irkit.function import Function, function  # noqa: E402
from irkit.gradients import Lop, Rop, grad, hessian, jacobian, jvp, stop_gradient, verify_grad, vjp  # noqa: E402
from irkit.debugprint import debugprint  # noqa: E402
from irkit.graph_dot import graph_svg  # noqa: E402
from irkit.custom import OpFromGraph  # noqa: E402
from irkit.control import ifelse, scan, until  # noqa: E402
from irkit.dsl import compile_dsl, parse_dsl  # noqa: E402
from irkit.random import RandomStream  # noqa: E402
from irkit import sparse  # noqa: E402  (ik.sparse: CSR/CSC matrices)
