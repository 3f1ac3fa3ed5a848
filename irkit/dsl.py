"""The `.irk` DSL: functions over typed tensors, parsed with lark and built with the
Python API, so it enters the tensor dialect through the same front door as the
builder (one compiler).

    def predict(x: f32[n, 784], W: f32[784, 10], b: f32[10]) -> f32[n, 10] {
        return softmax(x @ W + b, axis=-1)
    }

- parameters are typed `f32[n, 784]` (a dtype, then dims: an int is static, a name is a
  dynamic dim that must agree wherever it repeats, `?` is a dynamic dim of its own), or a
  bare dtype for a scalar; `-> type` or `-> (type, ...)` states the results;
- statements: `a = expr`, `a, b = expr` (tuple unpacking), `return expr, ...`;
- expressions as in Python: `+ - * / // % ** @`, comparisons, `& | ~`, `x.T`, `x.shape`,
  methods (`x.sum(axis=1)`), indexing and slicing, calls of other functions of the file
  (inlined) and of every builtin of the Python API under the same name with keyword
  arguments; `grad(cost, a, b)`, `scan(step, sequences=..., outputs_info=...)` and
  `ifelse(c, a, b)` with a step given by another `def`.

`parse_dsl(src)` gives the xDSL module (one `func.func` per function, at the tensor level);
`compile_dsl(src)` the compiled callables by name. Errors are `ik.ParseError` (or the
matching irkit error) with the file, line and column and the source line with a caret.
"""

from __future__ import annotations

import functools
import linecache
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from irkit.errors import IrkitError, ParseError, ShapeError, SourceLoc

GRAMMAR = r"""
start: funcdef*

funcdef: "def" NAME "(" [params] ")" ["->" rettype] "{" stmt* "}"
params: param ("," param)* ","?
param: NAME ":" type
?rettype: type | "(" type ("," type)* ","? ")" -> tuple_type
type: DTYPE ["[" [dim ("," dim)*] "]"]
?dim: INT -> static_dim
    | NAME -> named_dim
    | "?" -> any_dim

?stmt: targets "=" exprlist ";"? -> assign
     | "return" exprlist ";"? -> return_
targets: NAME ("," NAME)* ","?
exprlist: expr ("," expr)* ","?

?expr: or_test
?or_test: and_test ("or" and_test)*
?and_test: not_test ("and" not_test)*
?not_test: "not" not_test -> not_
         | comparison
?comparison: bitor (COMP_OP bitor)?
?bitor: bitxor ("|" bitxor)*
?bitxor: bitand ("^" bitand)*
?bitand: arith ("&" arith)*
?arith: term (ADD_OP term)*
?term: factor (MUL_OP factor)*
?factor: UNARY_OP factor -> unary
       | power
?power: primary (POW factor)?
?primary: atom
        | primary "(" [arguments] ")" -> call
        | primary "[" subscripts "]" -> index
        | primary "." NAME -> attr
?atom: NAME -> name
     | INT -> int_
     | FLOAT -> float_
     | STRING -> string
     | "(" expr ")"
     | "(" [expr ("," expr)+ ","?] ")" -> tuple_
     | "(" expr "," ")" -> tuple_
     | "[" [expr ("," expr)* ","?] "]" -> list_

arguments: argument ("," argument)* ","?
?argument: expr
         | NAME "=" expr -> kwarg
subscripts: subscript ("," subscript)* ","?
?subscript: expr
          | [expr] ":" [expr] [":" [expr]] -> slice_
          | "..." -> ellipsis

POW.2: "**"
COMP_OP: "==" | "!=" | "<=" | ">=" | "<" | ">"
ADD_OP: "+" | "-"
MUL_OP: "*" | "//" | "/" | "%" | "@"
UNARY_OP: "-" | "+" | "~"
DTYPE.2: /(f16|f32|f64|i8|i16|i32|i64|u8|bool)(?![A-Za-z0-9_])/
NAME: /[A-Za-z_][A-Za-z0-9_]*/
INT: /[0-9]+/
FLOAT: /([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+/
STRING: /"[^"\n]*"|'[^'\n]*'/
COMMENT: /#[^\n]*/

%ignore COMMENT
%ignore /[ \t\f\r\n]+/
"""

DTYPES = {"f16": "float16", "f32": "float32", "f64": "float64", "i8": "int8", "i16": "int16", "i32": "int32",
          "i64": "int64", "u8": "uint8", "bool": "bool"}
KEYWORDS = {"def", "return", "and", "or", "not", "None", "True", "False"}


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=True)


# ---------------------------------------------------------------------------
# errors with places
# ---------------------------------------------------------------------------

def _caret(source: str, line: int, column: int) -> str:
    lines = source.splitlines() or [""]
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    return f"    {text}\n    {' ' * max(column - 1, 0)}^"


def _error(kind: type, message: str, source: str, filename: str, line: int | None, column: int | None):
    if line is None:
        return kind(f"{filename}: {message}") if kind is not ParseError else \
            ParseError(f"{filename}: {message}", None, None, filename)
    text = f"{filename}:{line}:{column}: {message}\n{_caret(source, line, column)}"
    if kind is ParseError:
        return ParseError(text, line, column, filename)
    err = kind(text)
    err.line, err.column, err.filename = line, column, filename
    return err


def _syntax_error(e: UnexpectedInput, source: str, filename: str) -> ParseError:
    line, column = getattr(e, "line", None), getattr(e, "column", None)
    if isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END"):
        message = "unexpected end of input (a `}` or `)` may be missing)"
        lines = source.splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
    elif isinstance(e, UnexpectedToken):
        expected = sorted(e.accepts or e.expected)
        shown = ", ".join(_token_name(t) for t in expected[:8]) + (", ..." if len(expected) > 8 else "")
        message = f"unexpected {e.token.value!r}; expected {shown}"
    elif isinstance(e, UnexpectedCharacters):
        message = f"unexpected character {source[e.pos_in_stream]!r}" if e.pos_in_stream < len(source) else \
            "unexpected character"
    else:
        message = "syntax error"
    return _error(ParseError, message, source, filename, line, column)


_TOKEN_NAMES = {"LPAR": "'('", "RPAR": "')'", "LBRACE": "'{'", "RBRACE": "'}'", "LSQB": "'['", "RSQB": "']'",
                "COMMA": "','", "COLON": "':'", "EQUAL": "'='", "NAME": "a name", "INT": "an integer",
                "FLOAT": "a number", "DTYPE": "a dtype (f32, i64, ...)", "STRING": "a string",
                "MORETHAN": "'>'", "SEMICOLON": "';'", "DEF": "'def'", "RETURN": "'return'"}


def _token_name(t: str) -> str:
    return _TOKEN_NAMES.get(t, t.lower().replace("_", " "))


# ---------------------------------------------------------------------------
# the program
# ---------------------------------------------------------------------------

@dataclass
class ParamType:
    dtype: str
    dims: list  # int | str (a named dim) | None (`?`); None for a scalar type
    loc: tuple[int, int]


@dataclass
class Function:
    name: str
    params: list[tuple[str, ParamType]]
    results: list[ParamType] | None
    body: list[Tree]
    tree: Tree


@dataclass
class Program:
    source: str
    filename: str
    functions: dict[str, Function] = field(default_factory=dict)

    def error(self, kind: type, message: str, node: Any) -> IrkitError:
        """An irkit error at node's place: a Python kind (NameError, TypeError, ...) becomes a
        ParseError, so only irkit's errors come out of the DSL."""
        if not (isinstance(kind, type) and issubclass(kind, IrkitError)):
            kind = ParseError
        line, column = _position(node)
        return _error(kind, message, self.source, self.filename, line, column)


def _position(node: Any) -> tuple[int | None, int | None]:
    if isinstance(node, Token):
        return node.line, node.column
    meta = getattr(node, "meta", None)
    if meta is not None and not meta.empty:
        return meta.line, meta.column
    if isinstance(node, tuple) and len(node) == 2:
        return node
    return None, None


def parse_program(source: str, filename: str = "<irk>") -> Program:
    if not isinstance(source, str):
        raise TypeError(f"the DSL source must be a str, not {type(source).__name__}")
    try:
        tree = _parser().parse(source)
    except UnexpectedInput as e:
        raise _syntax_error(e, source, filename) from None
    except RecursionError:
        raise ParseError(f"{filename}: the expression is nested too deeply", None, None, filename) from None
    prog = Program(source, filename)
    # messages quote the source line through linecache, also for text that is not a file
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    for fdef in tree.children:
        name_tok, params_tree, ret, *body = fdef.children
        name = str(name_tok)
        if name in prog.functions:
            raise prog.error(ParseError, f"function {name!r} is defined twice", name_tok)
        if name in KEYWORDS:
            raise prog.error(ParseError, f"{name!r} is a keyword, not a function name", name_tok)
        params = []
        seen = set()
        for p in (params_tree.children if params_tree is not None else []):
            pname, ptype = p.children
            if str(pname) in seen:
                raise prog.error(ParseError, f"parameter {str(pname)!r} of {name} repeats", pname)
            seen.add(str(pname))
            params.append((str(pname), _param_type(ptype)))
        results = None
        if ret is not None:
            results = [_param_type(t) for t in ret.children] if ret.data == "tuple_type" else [_param_type(ret)]
        prog.functions[name] = Function(name, params, results, body, fdef)
    return prog


def _param_type(t: Tree) -> ParamType:
    dtype_tok = t.children[0]
    dims = None
    if len(t.children) > 1 and t.children[1:] != [None]:
        dims = []
        for d in t.children[1:]:
            if d is None:
                continue
            if d.data == "static_dim":
                dims.append(int(d.children[0]))
            elif d.data == "named_dim":
                dims.append(str(d.children[0]))
            else:
                dims.append(None)
    return ParamType(DTYPES[str(dtype_tok)], dims, (dtype_tok.line, dtype_tok.column))


# ---------------------------------------------------------------------------
# building: the tree evaluated with the Python API
# ---------------------------------------------------------------------------

class _Builder:
    """Evaluates a function's statements with irkit's ops: values are Variables, Python
    numbers, strings, tuples, or DSL functions (as step functions)."""

    def __init__(self, prog: Program) -> None:
        self.prog = prog
        self.depth = 0

    def err(self, kind, message, node):
        return self.prog.error(kind, message, node)

    # -- a function, as the top-level graph or inlined at a call ----------------------------------
    def inputs(self, fn: Function):
        """The inputs of `fn` compiled on its own: its placeholders, and the values its body sees
        (with named dims made to agree), and the named dims' sizes."""
        import irkit as ik
        placeholders = []
        for pname, pt in fn.params:
            shape = () if pt.dims is None else tuple(d if isinstance(d, int) else None for d in pt.dims)
            placeholders.append(ik.tensor(pname, shape=shape, dtype=pt.dtype))
        bound, dims_of = self.bind_named_dims(fn, placeholders, {})
        return placeholders, bound, dims_of

    def bind_named_dims(self, fn: Function, args: list, dims_of: dict) -> tuple[list, dict]:
        """Each named dim: its first occurrence's size; a later one must agree (statically now,
        or at the call: the value is broadcast to the size, which checks it)."""
        import irkit as ik
        out = []
        for (pname, pt), v in zip(fn.params, args):
            if pt.dims is None or not hasattr(v, "ndim"):
                out.append(v)
                continue
            sizes = list(v.shape)
            changed = False
            for axis, d in enumerate(pt.dims):
                if not isinstance(d, str):
                    continue
                if d not in dims_of:
                    dims_of[d] = (sizes[axis], v.static_shape[axis], pname, axis)
                    continue
                size, static, first, first_axis = dims_of[d]
                mine = v.static_shape[axis]
                if static is not None and mine is not None and static != mine:
                    raise self.err(ShapeError, f"named dim {d!r} is {static} in {first!r} (axis {first_axis}) but "
                                   f"{mine} in {pname!r} (axis {axis})", pt.loc)
                sizes[axis] = size
                changed = True
            if changed:
                v = ik.broadcast_to(v, tuple(sizes))
            out.append(v)
        return out, dims_of

    def call_function(self, fn: Function, args: list, node) -> Any:
        import irkit as ik
        if len(args) != len(fn.params):
            raise self.err(TypeError, f"{fn.name} takes {len(fn.params)} arguments, got {len(args)}", node)
        self.depth += 1
        if self.depth > 200:
            raise self.err(ParseError, f"calls nest more than 200 deep (is {fn.name} recursive?)", node)
        try:
            checked = []
            for (pname, pt), a in zip(fn.params, args):
                a = ik.as_variable(a, np.dtype(pt.dtype)) if not isinstance(a, ik.Variable) else a
                if str(a.dtype) != pt.dtype:
                    raise self.err(ik.DTypeError, f"argument {pname!r} of {fn.name} must be {pt.dtype}, not "
                                   f"{a.dtype}", node)
                rank = 0 if pt.dims is None else len(pt.dims)
                if a.ndim != rank:
                    raise self.err(ShapeError, f"argument {pname!r} of {fn.name} must have rank {rank}, not "
                                   f"{a.ndim}", node)
                for axis, d in enumerate(pt.dims or []):
                    got = a.static_shape[axis]
                    if isinstance(d, int) and got is not None and got != d:
                        raise self.err(ShapeError, f"argument {pname!r} of {fn.name} must have size {d} in "
                                       f"axis {axis}, not {got}", node)
                checked.append(a)
            checked, dims_of = self.bind_named_dims(fn, checked, {})
            return self.run(fn, checked, dims_of)
        finally:
            self.depth -= 1

    def run(self, fn: Function, args: list, dims_of: dict) -> Any:
        env: dict[str, Any] = {name: a for (name, _), a in zip(fn.params, args)}
        for d, (size, *_rest) in dims_of.items():
            if d not in env:
                env[d] = size
        for stmt in fn.body:
            if stmt.data == "return_":
                values = [self.expr(e, env) for e in stmt.children[0].children]
                return self.check_results(fn, values, stmt)
            targets = [str(t) for t in stmt.children[0].children]
            exprs = stmt.children[1].children
            value = self.expr(exprs[0], env) if len(exprs) == 1 else tuple(self.expr(e, env) for e in exprs)
            if len(targets) == 1:
                env[targets[0]] = value
                continue
            items = list(value) if isinstance(value, (tuple, list)) else None
            if items is None or len(items) != len(targets):
                count = "one value" if items is None else f"{len(items)} values"
                raise self.err(ValueError, f"cannot unpack {count} into {len(targets)} names", stmt)
            env.update(zip(targets, items))
        raise self.err(ParseError, f"function {fn.name} has no return statement", fn.tree)

    def check_results(self, fn: Function, values: list, node) -> Any:
        import irkit as ik
        flat = values[0] if len(values) == 1 and isinstance(values[0], tuple) else values
        flat = [ik.as_variable(v) if not isinstance(v, ik.Variable) else v for v in flat]
        if fn.results is not None:
            if len(flat) != len(fn.results):
                raise self.err(ValueError, f"{fn.name} returns {len(flat)} values but declares {len(fn.results)}",
                               node)
            out = []
            for k, (v, pt) in enumerate(zip(flat, fn.results)):
                if str(v.dtype) != pt.dtype:
                    if np.can_cast(v.dtype, pt.dtype, "same_kind"):
                        v = ik.cast(v, pt.dtype)
                    else:
                        raise self.err(ik.DTypeError, f"result {k} of {fn.name} is {v.dtype}, declared "
                                       f"{pt.dtype}", node)
                rank = 0 if pt.dims is None else len(pt.dims)
                if v.ndim != rank:
                    raise self.err(ShapeError, f"result {k} of {fn.name} has rank {v.ndim}, declared {rank}", node)
                for axis, d in enumerate(pt.dims or []):
                    got = v.static_shape[axis]
                    if isinstance(d, int) and got is not None and got != d:
                        raise self.err(ShapeError, f"result {k} of {fn.name} has size {got} in axis {axis}, "
                                       f"declared {d}", node)
                out.append(v)
            flat = out
        return flat[0] if len(flat) == 1 else tuple(flat)

    # -- expressions ----------------------------------------------------------------------------
    def expr(self, node, env: dict) -> Any:
        from irkit import graph
        line, column = _position(node)
        loc = SourceLoc(self.prog.filename, line, column) if line is not None else None
        try:
            with graph.detached(loc):  # the ops built here carry the DSL's place
                return getattr(self, "e_" + node.data)(node, env)
        except IrkitError as e:
            if getattr(e, "line", None) is not None:
                raise
            raise self.err(type(e), str(e), node) from None
        except (TypeError, ValueError, IndexError, AttributeError, KeyError) as e:
            if getattr(e, "line", None) is not None:
                raise
            raise self.err(ParseError, f"{type(e).__name__}: {e}", node) from None

    def e_name(self, node, env):
        name = str(node.children[0])
        if name in env:
            return env[name]
        if name == "None":
            return None
        if name in ("True", "False"):
            return name == "True"
        if name in self.prog.functions:
            return self.prog.functions[name]
        builtin = _builtin(name)
        if builtin is not None:
            return builtin
        raise self.err(NameError, f"unknown name {name!r}", node)

    def e_int_(self, node, env):
        return int(node.children[0])

    def e_float_(self, node, env):
        return float(node.children[0])

    def e_string(self, node, env):
        return str(node.children[0])[1:-1]

    def e_tuple_(self, node, env):
        return tuple(self.expr(c, env) for c in node.children if c is not None)

    def e_list_(self, node, env):
        return [self.expr(c, env) for c in node.children if c is not None]

    def e_unary(self, node, env):
        op, x = str(node.children[0]), self.expr(node.children[1], env)
        return {"-": lambda v: -v, "+": lambda v: +v, "~": lambda v: ~v}[op](x)

    def e_not_(self, node, env):
        import irkit as ik
        return ik.logical_not(self.expr(node.children[0], env))

    def _fold(self, node, env, ops: dict):
        children = node.children
        acc = self.expr(children[0], env)
        k = 1
        while k < len(children):
            if isinstance(children[k], Token) and children[k].type in ("ADD_OP", "MUL_OP", "COMP_OP"):
                op, rhs = str(children[k]), self.expr(children[k + 1], env)
                k += 2
            else:
                op, rhs = None, self.expr(children[k], env)
                k += 1
            acc = _apply(ops[op], acc, rhs)
        return acc

    def e_arith(self, node, env):
        return self._fold(node, env, {"+": lambda a, b: a + b, "-": lambda a, b: a - b})

    def e_term(self, node, env):
        return self._fold(node, env, {"*": lambda a, b: a * b, "/": lambda a, b: a / b,
                                      "//": lambda a, b: a // b, "%": lambda a, b: a % b,
                                      "@": lambda a, b: a @ b})

    def e_comparison(self, node, env):
        return self._fold(node, env, {"==": _eq, "!=": _ne, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
                                      ">": lambda a, b: a > b, ">=": lambda a, b: a >= b})

    def e_bitor(self, node, env):
        return self._fold(node, env, {None: lambda a, b: a | b})

    def e_bitxor(self, node, env):
        return self._fold(node, env, {None: lambda a, b: a ^ b})

    def e_bitand(self, node, env):
        return self._fold(node, env, {None: lambda a, b: a & b})

    def e_or_test(self, node, env):
        import irkit as ik
        return self._fold(node, env, {None: ik.logical_or})

    def e_and_test(self, node, env):
        import irkit as ik
        return self._fold(node, env, {None: ik.logical_and})

    def e_power(self, node, env):
        return _apply(lambda a, b: a ** b, self.expr(node.children[0], env), self.expr(node.children[2], env))

    def e_attr(self, node, env):
        import irkit as ik
        target, name = self.expr(node.children[0], env), str(node.children[1])
        if isinstance(target, ik.Variable):
            if name == "T":
                return target.T
            if name == "shape":
                return tuple(target.shape)
            if name in ("ndim",):
                return target.ndim
            method = getattr(target, name, None)
            if method is not None and callable(method) and not name.startswith("_"):
                return method
        raise self.err(AttributeError, f"no attribute {name!r} on {_describe(target)}", node.children[1])

    def e_index(self, node, env):
        target = self.expr(node.children[0], env)
        items = [self.subscript(s, env) for s in node.children[1].children]
        key = items[0] if len(items) == 1 else tuple(items)
        return target[key]

    def subscript(self, node, env):
        if isinstance(node, Tree) and node.data == "slice_":
            parts = [None if c is None else self.expr(c, env) for c in node.children]
            return slice(*parts)
        if isinstance(node, Tree) and node.data == "ellipsis":
            return Ellipsis
        return self.expr(node, env)

    def e_call(self, node, env):
        fn = self.expr(node.children[0], env)
        args, kwargs = [], {}
        arg_tree = node.children[1]
        for a in (arg_tree.children if arg_tree is not None else []):
            if isinstance(a, Tree) and a.data == "kwarg":
                kwargs[str(a.children[0])] = self.expr(a.children[1], env)
            else:
                if kwargs:
                    raise self.err(ParseError, "a positional argument after a keyword argument", a)
                args.append(self.expr(a, env))
        if isinstance(fn, Function):
            if kwargs:
                raise self.err(TypeError, f"{fn.name} takes no keyword arguments", node)
            return self.call_function(fn, args, node)
        if isinstance(fn, _Special):
            return fn(self, node, args, kwargs)
        if not callable(fn):
            raise self.err(TypeError, f"{_describe(fn)} is not a function", node)
        return fn(*args, **kwargs)


def _apply(fn, a, b):
    """fn(a, b); on two Python numbers with numpy's semantics (1.0 / 0 is inf, not an
    exception), keeping a Python number (a weak scalar, as written)."""
    numbers = (bool, int, float)
    if isinstance(a, numbers) and isinstance(b, numbers):
        with np.errstate(all="ignore"):
            return fn(np.asarray(a), np.asarray(b)).item()
    return fn(a, b)


def _eq(a, b):
    import irkit as ik
    return ik.eq(a, b) if isinstance(a, ik.Variable) or isinstance(b, ik.Variable) else a == b


def _ne(a, b):
    import irkit as ik
    return ik.ne(a, b) if isinstance(a, ik.Variable) or isinstance(b, ik.Variable) else a != b


def _describe(v) -> str:
    import irkit as ik
    if isinstance(v, ik.Variable):
        return f"a {v.dtype} tensor of rank {v.ndim}"
    if isinstance(v, Function):
        return f"function {v.name}"
    return type(v).__name__


class _Special:
    """A builtin that takes DSL functions (grad, scan, ifelse) or needs the builder."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def __call__(self, builder, node, args, kwargs):
        return self.fn(builder, node, args, kwargs)


def _grad(builder, node, args, kwargs):
    import irkit as ik
    if len(args) < 2:
        raise builder.err(TypeError, "grad(cost, x, ...) takes a cost and the values to differentiate by", node)
    cost, wrt = args[0], list(args[1:])
    got = ik.grad(cost, wrt, **kwargs)
    return got[0] if len(wrt) == 1 else tuple(got)


def _as_python_step(builder, fn, node):
    if not isinstance(fn, Function):
        raise builder.err(TypeError, f"the step must be a function of the file, not {_describe(fn)}", node)

    def step(*xs):
        return builder.call_function(fn, list(xs), node)
    return step


def _scan(builder, node, args, kwargs):
    import irkit as ik
    if not args:
        raise builder.err(TypeError, "scan(step, sequences=..., outputs_info=..., ...) needs a step", node)
    step = _as_python_step(builder, args[0], node)
    outs, updates = ik.scan(step, *args[1:], **kwargs)
    return tuple(outs) if isinstance(outs, list) else outs


def _ifelse(builder, node, args, kwargs):
    import irkit as ik
    got = ik.ifelse(*args, **kwargs)
    return tuple(got) if isinstance(got, list) else got


_SPECIALS = {"grad": _grad, "scan": _scan, "ifelse": _ifelse}


def _builtin(name: str):
    import irkit as ik
    if name in _SPECIALS:
        return _Special(_SPECIALS[name])
    if name.startswith("_") or name in ("function", "shared", "constant", "parse_dsl", "compile_dsl", "config"):
        return None
    value = getattr(ik, name, None)
    return value if callable(value) and not isinstance(value, type) else None


# ---------------------------------------------------------------------------
# the entry points
# ---------------------------------------------------------------------------

def _build(prog: Program, fn: Function):
    import sys
    builder = _Builder(prog)
    placeholders, inputs, dims_of = builder.inputs(fn)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20000))  # an expression nested 1,000 deep is a few thousand frames
    try:
        return placeholders, builder.run(fn, inputs, dims_of)
    except RecursionError:
        raise prog.error(ParseError, f"{fn.name}: expressions nest too deeply to build", fn.tree) from None
    finally:
        sys.setrecursionlimit(limit)


def parse_dsl(source: str, filename: str = "<irk>"):
    """The DSL's functions as an xDSL module at the tensor level (one func.func each)."""
    from xdsl.dialects.builtin import ModuleOp
    from irkit.function import build_module
    prog = parse_program(source, filename)
    module = ModuleOp([])
    for fn in prog.functions.values():
        inputs, out = _build(prog, fn)
        outs = list(out) if isinstance(out, tuple) else [out]
        sub, shared = build_module(inputs, outs, {}, name=fn.name)
        for op in list(sub.ops):
            op.detach()
            module.body.block.add_op(op)
    return module


def compile_dsl(source: str, filename: str = "<irk>") -> SimpleNamespace:
    """The DSL's functions compiled, as callables by name: `fns.predict(X, W, b)`."""
    import irkit as ik
    prog = parse_program(source, filename)
    compiled = {}
    for fn in prog.functions.values():
        inputs, out = _build(prog, fn)
        outs = list(out) if isinstance(out, tuple) else out
        compiled[fn.name] = ik.function(inputs, outs, name=fn.name)
    return SimpleNamespace(**compiled)


def load(path: str) -> SimpleNamespace:
    with open(path, encoding="utf-8") as f:
        return compile_dsl(f.read(), path)


__all__ = ["parse_dsl", "compile_dsl", "load", "GRAMMAR"]
