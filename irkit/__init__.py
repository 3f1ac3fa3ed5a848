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
from irkit.random import RandomStream  # noqa: E402
from irkit import sparse  # noqa: E402  (ik.sparse: CSR/CSC matrices)


# loaded on first use: the DSL's parser generator (lark) is 40 ms of `import irkit`
_LAZY = {"dsl": ("irkit.dsl", None), "compile_dsl": ("irkit.dsl", "compile_dsl"),
         "parse_dsl": ("irkit.dsl", "parse_dsl")}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        module, attr = _LAZY[name]
        found = importlib.import_module(module)
        return found if attr is None else getattr(found, attr)
    raise AttributeError(f"module 'irkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
