"""Data files local code opens: where the code names them, and where they are on this machine.

Detection (``scan``) reads one local module's AST into a marshal-able summary that the parse
cache keeps: the module's scopes (module, classes, functions) with what each binds
(assignments, imports, parameters and their defaults, ``self.x`` attributes, return values),
and every call that may open a file or pass a path on, its arguments kept as small expression
trees. Blocks no worker runs (``if __name__ == "__main__":``) open nothing, though the calls
there still pass paths on; ``if TYPE_CHECKING:`` bodies are skipped.

Resolution (``resolve``) evaluates those expressions over all local modules at once, as the code
would compute the path, without running it: module constants (strings, dict/list/tuple literals,
f-strings, ``os.path.join`` and ``Path /`` of them) across imports (``from utils.config import
CFG``, ``import utils.config as c; c.CFG[...]``), parameters from their call sites and defaults,
what local functions return, attributes a class sets on ``self``, loops over literal lists. A
call of an opener in OPENERS whose path comes out is looked up on this machine; one whose path
does not is a warning that names file:line. Every value is a set of alternatives, so a path
chosen by a branch ships both ways.
"""

from __future__ import annotations

import ast
import glob
import os
import posixpath
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

from envpack.analyzer import _resultcache
from envpack.analyzer.conditions import callee as _callee
from envpack.analyzer.conditions import const_str as _str
from envpack.analyzer.conditions import dotted as _dotted
from envpack.errors import UsageError

Expr = tuple[Any, ...]
Ref = tuple[Expr, int, int, int]  # (call or path expression, line, scope, flags)
# A scan: (scopes, refs), each a tuple of plain tuples; () for a module with nothing to read.
DataSummary = tuple[Any, ...]

UNKNOWN_EXPR: Expr = ("?",)

# Ref flags: an opener's call, a bare path construct (shipped when it exists), one that counts
# only when anchored to a module's directory (os.path.join), a call site of local code.
OPENS, BARE, BARE_FILE, SITE = 1, 2, 4, 8


# -- the opener table -----------------------------------------------------------------------
@dataclass(frozen=True)
class Opener:
    """A callable that reads a file named by one of its arguments."""

    name: str  # as messages name it
    calls: tuple[str, ...]  # qualified names ("numpy.load"); ".m": method m of any object
    arg: int | None = 0  # position of the path argument
    kw: tuple[str, ...] = ()  # its keyword names
    # path: the argument is a path; receiver: the method's object is the path (Path.open);
    # uproot: a path, "path:object" or {path: object}; weight_sets: coffea "name hist path"
    # lines; glob / receiver_glob: a pattern; resource: (package, resource name).
    form: str = "path"
    mode: int | None = None  # position of a mode argument: a write mode opens no input


OPENERS: tuple[Opener, ...] = (
    Opener("open", ("open", "io.open", "codecs.open"), kw=("file", "filename"), mode=1),
    Opener("gzip.open", ("gzip.open", "bz2.open", "lzma.open"), kw=("filename",), mode=1),
    Opener("Path.open", (".open", ".read_text", ".read_bytes"), arg=None, form="receiver", mode=0),
    Opener("numpy.load", ("numpy.load",), kw=("file",)),
    Opener("numpy.loadtxt", ("numpy.loadtxt",), kw=("fname",)),
    Opener("numpy.genfromtxt", ("numpy.genfromtxt",), kw=("fname",)),
    Opener("numpy.fromfile", ("numpy.fromfile",), kw=("file",)),
    Opener(
        "pandas.read_*",
        tuple(
            f"pandas.read_{k}"
            for k in ("csv", "table", "json", "parquet", "pickle", "hdf", "feather", "excel")
        ),
        kw=("filepath_or_buffer", "path_or_buf", "path", "io"),
    ),
    Opener("joblib.load", ("joblib.load",), kw=("filename",)),
    Opener("torch.load", ("torch.load", "torch.jit.load"), kw=("f",)),
    Opener(
        "onnxruntime.InferenceSession",
        ("onnxruntime.InferenceSession",),
        kw=("path_or_bytes",),
    ),
    Opener(
        "xgboost.Booster", ("xgboost.Booster", "xgboost.core.Booster"), arg=2, kw=("model_file",)
    ),
    Opener("load_model", (".load_model",), kw=("fname", "filepath")),  # xgboost, keras
    Opener("uproot.open", ("uproot.open",), kw=("path",), form="uproot"),
    Opener(
        "correctionlib.CorrectionSet.from_file",
        tuple(f"correctionlib.{m}CorrectionSet.from_file" for m in ("", "highlevel.", "_core.")),
        kw=("filename",),
    ),
    Opener(
        "coffea extractor.add_weight_sets",
        (".add_weight_sets",),
        kw=("weightsdescs",),
        form="weight_sets",
    ),
    Opener(
        "coffea lookup_tools converters",
        (
            *(
                f"coffea.lookup_tools.txt_converters.convert_{k}"
                for k in (
                    "jec_txt_file",
                    "jr_txt_file",
                    "jersf_txt_file",
                    "junc_txt_file",
                    "l5flavor_jes_txt_file",
                    "effective_area_file",
                    "rochester_file",
                )
            ),
            "coffea.lookup_tools.root_converters.convert_histo_root_file",
            "coffea.lookup_tools.csv_converters.convert_btag_csv_file",
            *(
                f"coffea.lookup_tools.json_converters.convert_{k}"
                for k in ("histo_json_file", "correctionlib_file", "pileup_json_file")
            ),
        ),
    ),
    Opener(
        "coffea LumiMask/LumiData",
        tuple(
            f"coffea.lumi_tools.{m}{c}"
            for m in ("", "lumi_tools.")
            for c in ("LumiMask", "LumiData")
        ),
        kw=("jsonfile", "lumi_csv"),
    ),
    Opener(
        "coffea BTagScaleFactor",
        ("coffea.btag_tools.BTagScaleFactor", "coffea.btag_tools.btagscalefactor.BTagScaleFactor"),
        kw=("filename",),
    ),
    Opener("h5py.File", ("h5py.File",), kw=("name",)),
    Opener(
        "zipfile/tarfile",
        ("zipfile.ZipFile", "tarfile.open", "tarfile.TarFile"),
        kw=("file", "name"),
        mode=1,
    ),
    Opener(
        "importlib.resources",
        tuple(
            f"{m}.{f}"
            for m in ("importlib.resources", "importlib_resources")
            for f in ("read_text", "read_binary", "open_text", "open_binary", "path")
        ),
        form="resource",
    ),
    Opener("pkgutil.get_data", ("pkgutil.get_data",), form="resource"),
    Opener("glob.glob", ("glob.glob", "glob.iglob"), kw=("pathname",), form="glob"),
    Opener("Path.glob", (".glob", ".rglob"), kw=("pattern",), form="receiver_glob"),
)

# Callables matched by their last name only when the callee cannot be named (an object whose
# type the walk does not know): a path that comes out ships, one that does not is no warning.
LOOSE = frozenset(
    {
        "open",
        "from_file",
        "load",
        "loadtxt",
        "genfromtxt",
        "fromfile",
        "read_csv",
        "read_json",
        "read_parquet",
        "read_pickle",
        "read_hdf",
        "read_table",
        "read_feather",
        "File",
        "LumiMask",
        "ZipFile",
        "TarFile",
    }
)
_LOOSE_OPENER = Opener("(by name)", ())

_BY_QUAL: dict[str, Opener] = {}
_BY_METHOD: dict[str, Opener] = {}
_BY_RECEIVER: dict[str, Opener] = {}
for _op in OPENERS:
    for _call in _op.calls:
        if not _call.startswith("."):
            _BY_QUAL[_call] = _op
        elif _op.form in ("receiver", "receiver_glob"):
            _BY_RECEIVER[_call[1:]] = _op
        else:
            _BY_METHOD[_call[1:]] = _op

_PATH_TYPES = frozenset({"Path", "PurePath", "PosixPath", "PurePosixPath"})
# Calls whose value is a path built from their arguments (nested in one another, only the
# outermost is a reference of its own).
_BUILDERS = _PATH_TYPES | {"join", "joinpath", "dirname", "abspath", "realpath", "normpath"}
# Last names of the callables a call may open a file with.
_OPEN_NAMES = frozenset(c.rsplit(".", 1)[-1] for op in OPENERS for c in op.calls) | LOOSE


# -- detection --------------------------------------------------------------------------------
def scan(tree: ast.Module) -> DataSummary:
    """The scopes and path-carrying calls of one local module (marshal-able)."""
    scanner = _Scanner()
    scanner.body(tree.body)
    return tuple(s.freeze() for s in scanner.scopes), tuple(scanner.refs)


class _ScopeB:
    """A scope while it is being scanned."""

    def __init__(
        self,
        kind: str,
        name: str,
        parent: int,
        cls: int = -1,
        params: tuple[str, ...] = (),
        kwonly: tuple[str, ...] = (),
        self_name: str | None = None,
    ) -> None:
        self.kind, self.name, self.parent, self.cls = kind, name, parent, cls
        self.params, self.kwonly, self.self_name = params, kwonly, self_name
        self.assigns: dict[str, list[tuple[Expr, int]]] = {}
        self.imports: dict[str, list[Expr]] = {}
        self.stars: list[tuple[str, int]] = []
        self.defaults: dict[str, tuple[Expr, int]] = {}
        self.returns: list[Expr] = []
        self.selfattrs: dict[str, list[tuple[Expr, int]]] = {}
        self.bases: list[Expr] = []
        self.globals: set[str] = set()

    def freeze(self) -> tuple[Any, ...]:
        return (
            self.kind,
            self.name,
            self.parent,
            self.cls,
            self.params,
            self.kwonly,
            self.self_name,
            tuple((k, tuple(v)) for k, v in self.assigns.items()),
            tuple((k, tuple(v)) for k, v in self.imports.items()),
            tuple(self.stars),
            tuple(self.defaults.items()),
            tuple(self.returns),
            tuple((k, tuple(v)) for k, v in self.selfattrs.items()),
            tuple(self.bases),
        )


_MAX_DEPTH = 24  # of one expression tree
_MAX_ITEMS = 4000  # of one literal list or dict


class _Scanner:
    def __init__(self) -> None:
        self.scopes = [_ScopeB("module", "", -1)]
        self.refs: list[Ref] = []
        self.cur = 0
        self.runs = True  # False under `if __name__ == "__main__":`

    # -- bindings ------------------------------------------------------------------------------
    def assign(self, name: str, value: Expr) -> None:
        target = 0 if name in self.scopes[self.cur].globals else self.cur
        self.scopes[target].assigns.setdefault(name, []).append((value, self.cur))

    def bind_target(self, target: ast.expr, value: Expr, node: ast.expr | None) -> None:
        if isinstance(target, ast.Name):
            self.assign(target.id, value)
        elif isinstance(target, ast.Tuple | ast.List):
            elts = target.elts
            if (
                isinstance(node, ast.Tuple | ast.List)
                and len(node.elts) == len(elts)
                and not any(isinstance(e, ast.Starred) for e in (*elts, *node.elts))
            ):
                for t, v in zip(elts, node.elts, strict=True):
                    self.bind_target(t, self.expr(v), v)
            else:
                for i, t in enumerate(elts):
                    if not isinstance(t, ast.Starred):
                        self.bind_target(t, ("[", value, ("i", i)), None)
        elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
            scope = self.scopes[self.cur]
            if scope.self_name is not None and target.value.id == scope.self_name:
                attrs = self.scopes[scope.cls].selfattrs
                attrs.setdefault(target.attr, []).append((value, self.cur))

    def bind_iter(self, target: ast.expr, it: Expr) -> None:
        if isinstance(target, ast.Name):
            self.assign(target.id, ("it", it, None))
        elif isinstance(target, ast.Tuple | ast.List):
            for i, elt in enumerate(target.elts):
                if isinstance(elt, ast.Name):
                    self.assign(elt.id, ("it", it, i))

    # -- statements ----------------------------------------------------------------------------
    def body(self, stmts: Sequence[ast.stmt]) -> None:
        for stmt in stmts:
            self.stmt(stmt)

    def stmt(self, node: ast.stmt) -> None:
        scope = self.scopes[self.cur]
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    scope.imports.setdefault(alias.asname, []).append(("mod", alias.name))
                else:
                    top = alias.name.split(".")[0]
                    scope.imports.setdefault(top, []).append(("mod", top))
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*":
                    scope.stars.append((node.module or "", node.level))
                else:
                    binding = ("from", node.module or "", node.level, alias.name)
                    scope.imports.setdefault(alias.asname or alias.name, []).append(binding)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            self.function(node)
        elif isinstance(node, ast.ClassDef):
            self.exprs([*node.decorator_list, *node.bases, *(k.value for k in node.keywords)])
            idx = len(self.scopes)
            cls = _ScopeB("class", node.name, self.cur)
            cls.bases = [self.expr(b) for b in node.bases]
            self.assign(node.name, ("class", idx))
            self.scopes.append(cls)
            self.inside(idx, node.body)
        elif isinstance(node, ast.Global):
            scope.globals.update(node.names)
        elif isinstance(node, ast.Assign):
            self.exprs([node.value])
            value = self.expr(node.value)
            for target in node.targets:
                self.bind_target(target, value, node.value)
        elif isinstance(node, ast.AnnAssign):
            if node.value is not None:
                self.exprs([node.value])
                self.bind_target(node.target, self.expr(node.value), node.value)
        elif isinstance(node, ast.Return):
            if node.value is not None:
                self.exprs([node.value])
                scope.returns.append(self.expr(node.value))
        elif isinstance(node, ast.If):
            self.exprs([node.test])
            never = _never_runs(node.test)
            if never == "main":
                runs, self.runs = self.runs, False
                self.body(node.body)
                self.runs = runs
            elif never is None:
                self.body(node.body)
            self.body(node.orelse)
        elif isinstance(node, ast.For | ast.AsyncFor):
            self.exprs([node.iter])
            self.bind_iter(node.target, self.expr(node.iter))
            self.body(node.body)
            self.body(node.orelse)
        elif isinstance(node, ast.While):
            self.exprs([node.test])
            self.body(node.body)
            self.body(node.orelse)
        elif isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                self.exprs([item.context_expr])
                if isinstance(item.optional_vars, ast.Name):
                    self.assign(item.optional_vars.id, ("with", self.expr(item.context_expr)))
            self.body(node.body)
        elif isinstance(node, ast.Try | ast.TryStar):
            self.body(node.body)
            for handler in node.handlers:
                self.body(handler.body)
            self.body(node.orelse)
            self.body(node.finalbody)
        elif isinstance(node, ast.Match):
            self.exprs([node.subject])
            for case in node.cases:
                self.body(case.body)
        else:
            self.exprs([node])

    def function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        args = node.args
        self.exprs([*node.decorator_list, *args.defaults, *(d for d in args.kw_defaults if d)])
        static = any(_dotted(d) == "staticmethod" for d in node.decorator_list)
        params = tuple(a.arg for a in (*args.posonlyargs, *args.args))
        kwonly = tuple(a.arg for a in args.kwonlyargs)
        kwonly += tuple(a.arg for a in (args.vararg, args.kwarg) if a is not None)
        enclosing = self.scopes[self.cur]
        cls = self.cur if enclosing.kind == "class" else -1
        self_name = params[0] if cls >= 0 and params and not static else None
        idx = len(self.scopes)
        scope = _ScopeB("def", node.name, self.cur, cls, params, kwonly, self_name)
        positional = params[len(params) - len(args.defaults) :]
        for param, default in zip(positional, args.defaults, strict=True):
            scope.defaults[param] = (self.expr(default), self.cur)
        for kwarg, kw_default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
            if kw_default is not None:
                scope.defaults[kwarg.arg] = (self.expr(kw_default), self.cur)
        self.assign(node.name, ("def", idx))
        self.scopes.append(scope)
        self.inside(idx, node.body)

    def inside(self, idx: int, body: Sequence[ast.stmt]) -> None:
        outer, self.cur = self.cur, idx
        self.body(body)
        self.cur = outer

    # -- expressions ---------------------------------------------------------------------------
    def exprs(self, nodes: Iterable[ast.AST]) -> None:
        stack: list[tuple[ast.AST, bool]] = [(n, False) for n in nodes]
        while stack:
            node, in_path = stack.pop()
            if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
                for gen in node.generators:
                    self.bind_iter(gen.target, self.expr(gen.iter))
            elif isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
                self.assign(node.target.id, self.expr(node.value))
            builder = _is_builder(node)
            if isinstance(node, ast.Call):
                self.call(node, builder and not in_path)
            elif (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Div)
                and not in_path
                and self.runs
                and not _numeric(node)
            ):
                self.refs.append((self.expr(node), node.lineno, self.cur, BARE))
            stack.extend((child, builder) for child in ast.iter_child_nodes(node))

    def call(self, node: ast.Call, outermost_builder: bool) -> None:
        name = _callee(node)
        flags = SITE if node.args or node.keywords else 0
        if self.runs and name in _OPEN_NAMES:
            flags |= OPENS
        if self.runs and outermost_builder and name in (*_PATH_TYPES, "joinpath"):
            flags |= BARE
        elif self.runs and outermost_builder and name == "join":
            flags |= BARE_FILE
        if flags:
            self.refs.append((self.expr(node), node.lineno, self.cur, flags))

    def expr(self, node: ast.AST, depth: int = 0) -> Expr:
        """``node`` as an expression tree of tuples; ``("?",)`` for what paths never use."""
        if depth > _MAX_DEPTH:
            return UNKNOWN_EXPR
        d = depth + 1
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str):
                return ("s", node.value)
            if isinstance(node.value, int) and not isinstance(node.value, bool):
                return ("i", node.value)
            return UNKNOWN_EXPR
        if isinstance(node, ast.Name):
            return ("n", node.id)
        if isinstance(node, ast.Attribute):
            return ("a", self.expr(node.value, d), node.attr)
        if isinstance(node, ast.Subscript):
            return ("[", self.expr(node.value, d), self.expr(node.slice, d))
        if isinstance(node, ast.Call):
            args = tuple(
                ("*",) if isinstance(a, ast.Starred) else self.expr(a, d) for a in node.args
            )
            kws = tuple((k.arg, self.expr(k.value, d)) for k in node.keywords if k.arg)
            return ("c", self.expr(node.func, d), args, kws)
        if isinstance(node, ast.BinOp):
            op = {ast.Div: "/", ast.Add: "+", ast.Mod: "%"}.get(type(node.op))
            if op is None:
                return UNKNOWN_EXPR
            return (op, self.expr(node.left, d), self.expr(node.right, d))
        if isinstance(node, ast.JoinedStr):
            parts: list[Expr] = []
            for value in node.values:
                if isinstance(value, ast.FormattedValue):
                    plain = value.format_spec is None and value.conversion in (-1, ord("s"))
                    parts.append(self.expr(value.value, d) if plain else UNKNOWN_EXPR)
                else:
                    parts.append(self.expr(value, d))
            return ("f", tuple(parts))
        if isinstance(node, ast.Dict):
            if len(node.keys) > _MAX_ITEMS:
                return UNKNOWN_EXPR
            items = tuple(
                (self.expr(k, d), self.expr(v, d))
                for k, v in zip(node.keys, node.values, strict=True)
                if k is not None
            )
            return ("d", items)
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            if len(node.elts) > _MAX_ITEMS:
                return UNKNOWN_EXPR
            return ("l", tuple(self.expr(e, d) for e in node.elts))
        if isinstance(node, ast.IfExp):
            return ("|", (self.expr(node.body, d), self.expr(node.orelse, d)))
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
            return ("|", tuple(self.expr(v, d) for v in node.values))
        if isinstance(node, ast.NamedExpr):
            return self.expr(node.value, d)
        return UNKNOWN_EXPR


def _never_runs(test: ast.expr) -> str | None:
    """``"main"`` for ``__name__ == "__main__"``, ``"tc"`` for ``TYPE_CHECKING``, else None."""
    if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
        return "tc"
    if isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING":
        return "tc"
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
        left, right = test.left, test.comparators[0]
        if (_dotted(left) == "__name__" and _str(right) == "__main__") or (
            _str(left) == "__main__" and _dotted(right) == "__name__"
        ):
            return "main"
    return None


def _is_builder(node: ast.AST) -> bool:
    """A node whose value is a path made of its children's (``a / b``, ``Path(x).parent``)."""
    if isinstance(node, ast.BinOp):
        return isinstance(node.op, ast.Div)
    if isinstance(node, ast.Call):
        return _callee(node) in _BUILDERS
    if isinstance(node, ast.Attribute):
        return node.attr in ("parent", "parents")
    return False


def _numeric(node: ast.BinOp) -> bool:
    """``x / 2``: a division, not a path."""
    return any(
        isinstance(n, ast.Constant) and isinstance(n.value, int | float)
        for n in (node.left, node.right)
    )


# -- values ---------------------------------------------------------------------------------
class _Unknown:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()


@dataclass(frozen=True)
class Frame:
    """Where an expression is evaluated: a scope, with its parameters bound (a call) or free."""

    module: str
    scope: int
    bound: tuple[tuple[str, tuple[Any, ...]], ...] | None = None


@dataclass(frozen=True)
class Anchored:
    """A path relative to a local module's directory (``__file__``, importlib.resources)."""

    directory: str  # on this machine
    arcdir: str  # the same directory inside local/ ("" for the import root)
    rel: str  # normalized, "." for the directory itself, may start with ".."


@dataclass(frozen=True)
class Qual:
    """Something of a module that is not local: ``numpy``, ``numpy.load``, a builtin."""

    name: str


@dataclass(frozen=True)
class ModV:
    name: str  # a local module


@dataclass(frozen=True)
class FuncV:
    module: str
    scope: int
    bound_self: Any = None  # the instance of a bound method


@dataclass(frozen=True)
class ClassV:
    module: str
    scope: int


@dataclass(frozen=True)
class InstV:
    module: str
    scope: int  # its class


class Lit:
    """A dict or list literal, its items evaluated only when looked up.

    Compared by the identity of its expression: hashing a large literal's tree every time it
    is looked up would cost more than the lookups.
    """

    __slots__ = ("expr", "frame")

    def __init__(self, expr: Expr, frame: Frame) -> None:
        self.expr = expr
        self.frame = frame

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lit) and other.expr is self.expr and other.frame == self.frame

    def __hash__(self) -> int:
        return hash((id(self.expr), self.frame))


@dataclass(frozen=True)
class SeqV:
    items: tuple[Any, ...]


@dataclass(frozen=True)
class AttrV:
    """An attribute of a value the walk cannot look into: a method of a path, dict or object."""

    recv: Any
    name: str


@dataclass(frozen=True)
class GlobV:
    pattern: Any  # str | Anchored


@dataclass(frozen=True)
class Iterated:
    """What iterating ``zip(...)`` / ``enumerate(...)`` / ``d.items()`` yields, by position."""

    columns: tuple[tuple[Any, ...], ...]


Value = Union[  # noqa: UP007  (a module-level alias evaluated at run time)
    str,
    int,
    Anchored,
    Qual,
    ModV,
    FuncV,
    ClassV,
    InstV,
    Lit,
    SeqV,
    AttrV,
    GlobV,
    Iterated,
    _Unknown,
]
Alts = tuple[Value, ...]

_MAX_ALTS = 64  # alternatives of one value
_MAX_EVAL_DEPTH = 60  # nested evaluations (calls into calls into lookups)

_QUAL_CONSTS: dict[str, Value] = {"os.sep": "/", "os.path.sep": "/", "os.curdir": "."}
_IDENTITY = frozenset(
    {
        "str",
        "os.fspath",
        "os.path.abspath",
        "os.path.realpath",
        "os.path.normpath",
        "os.path.expanduser",
        "posixpath.abspath",
        "posixpath.realpath",
        "posixpath.normpath",
        "importlib.resources.as_file",
        "importlib_resources.as_file",
        "sorted",
        "list",
        "tuple",
        "set",
        "reversed",
    }
)
_JOIN = frozenset({"os.path.join", "posixpath.join"})
_PATH_CLASSES = frozenset(f"pathlib.{t}" for t in _PATH_TYPES)


def _is_path(v: Value) -> bool:
    return isinstance(v, str | Anchored)


def _norm(rel: str) -> str:
    return posixpath.normpath(rel) if rel else "."


def _div(a: Value, b: Value) -> Value:
    if not isinstance(b, str) or not _is_path(a):
        return UNKNOWN
    if b.startswith("/"):
        return b
    if isinstance(a, Anchored):
        rel = _norm(posixpath.join(a.rel, b))
        # A trailing slash stays, for code that goes on with `+` (topcoffea's pudirpath).
        return Anchored(a.directory, a.arcdir, rel + "/" if b.endswith("/") and rel != "." else rel)
    assert isinstance(a, str)
    return posixpath.join(a, b) if a else b


def _dirname(v: Value) -> Value:
    if isinstance(v, Anchored):
        rel = v.rel
        parent = posixpath.join(rel, "..") if rel == "." or rel.endswith("..") else None
        return Anchored(v.directory, v.arcdir, _norm(parent or posixpath.dirname(rel)))
    if isinstance(v, str):
        return posixpath.dirname(v.rstrip("/")) if "/" in v.rstrip("/") else ""
    return UNKNOWN


def _basename(v: Value) -> Value:
    if isinstance(v, Anchored):
        return posixpath.basename(v.rel) if v.rel not in (".", "..") else UNKNOWN
    if isinstance(v, str):
        return posixpath.basename(v.rstrip("/"))
    return UNKNOWN


def _concat(a: Value, b: Value) -> Value:
    if isinstance(a, Anchored) and isinstance(b, str):
        if a.rel == ".":  # the directory's path, without its trailing slash
            return Anchored(a.directory, a.arcdir, _norm(b)) if b.startswith("/") else UNKNOWN
        return Anchored(a.directory, a.arcdir, _norm(a.rel + b))
    return a + b if isinstance(a, str) and isinstance(b, str) else UNKNOWN


_PERCENT = re.compile(r"%[sd%]|%")


def _percent(template: Value, args: tuple[Value, ...]) -> Value:
    if not isinstance(template, str):
        return UNKNOWN
    pieces = iter(args)
    out: list[str] = []
    pos = 0
    for m in _PERCENT.finditer(template):
        out.append(template[pos : m.start()])
        pos = m.end()
        if m.group() == "%%":
            out.append("%")
            continue
        if m.group() == "%":
            return UNKNOWN
        arg = next(pieces, UNKNOWN)
        if not isinstance(arg, str | int):
            return UNKNOWN
        out.append(str(arg))
    out.append(template[pos:])
    return "".join(out)


def _format(template: Value, args: tuple[Value, ...], kwargs: dict[str, Value]) -> Value:
    if not isinstance(template, str):
        return UNKNOWN
    out: list[str] = []
    auto = 0
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        return UNKNOWN
    for text, field, spec, conv in parsed:
        out.append(text)
        if field is None:
            continue
        if spec or conv not in (None, "s"):
            return UNKNOWN
        if field == "":
            value = args[auto] if auto < len(args) else UNKNOWN
            auto += 1
        elif field.isdigit():
            value = args[int(field)] if int(field) < len(args) else UNKNOWN
        else:
            value = kwargs.get(field, UNKNOWN)
        if not isinstance(value, str | int):
            return UNKNOWN
        out.append(str(value))
    return "".join(out)


def _product(columns: Sequence[Alts]) -> list[tuple[Value, ...]]:
    rows: list[tuple[Value, ...]] = [()]
    for col in columns:
        rows = [(*r, v) for r in rows for v in col][:_MAX_ALTS]
    return rows


def _dedup(values: Iterable[Value]) -> Alts:
    out: dict[Value, None] = {}
    for v in values:
        out.setdefault(v, None)
        if len(out) >= _MAX_ALTS:
            break
    return tuple(out)


# -- resolution ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LocalModule:
    """What resolution needs of one local module: where it is and its scan."""

    name: str
    path: str
    is_package: bool
    data: DataSummary


@dataclass(frozen=True)
class DataFile:
    """A file or directory local code reads by a relative path."""

    path: str  # absolute, on this machine
    relpath: str  # the path the code computes (relative to ``base``)
    # What relpath is relative to at run time: the referencing module's directory (written
    # as ``Path(__file__).parent / …``), or the working directory (a bare relative path).
    base: Literal["file", "cwd"]
    site: str
    is_dir: bool
    # Where it must be at run time, relative to the root local modules are imported from
    # (which is also the job's working directory): relpath, or the module's package dir + relpath.
    arcname: str = ""


@dataclass(frozen=True, order=True)
class DataWarning:
    """A data reference that was not shipped, and why; at ``path:line``."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass(frozen=True)
class Resolution:
    files: tuple[DataFile, ...]
    warnings: tuple[DataWarning, ...]


def resolve(modules: Mapping[str, LocalModule], workdirs: Sequence[str]) -> Resolution:
    """Evaluate every data reference of ``modules`` and find each on this machine.

    A path relative to the working directory is looked for next to its module, then in
    ``workdirs`` (the current directory, the processors' directories), in that order.
    """
    return _Resolver(modules, workdirs).run()


@dataclass
class _Scope:
    kind: str
    name: str
    parent: int
    cls: int
    params: tuple[str, ...]
    kwonly: tuple[str, ...]
    self_name: str | None
    assigns: dict[str, tuple[tuple[Expr, int], ...]]
    imports: dict[str, tuple[Expr, ...]]
    stars: tuple[tuple[str, int], ...]
    defaults: dict[str, tuple[Expr, int]]
    returns: tuple[Expr, ...]
    selfattrs: dict[str, tuple[tuple[Expr, int], ...]]
    bases: tuple[Expr, ...]

    @classmethod
    def of(cls, raw: tuple[Any, ...]) -> _Scope:
        kind, name, parent, klass, params, kwonly, self_name = raw[:7]
        assigns, imports, stars, defaults, returns, selfattrs, bases = raw[7:]
        return cls(
            kind,
            name,
            parent,
            klass,
            params,
            kwonly,
            self_name,
            dict(assigns),
            dict(imports),
            stars,
            dict(defaults),
            returns,
            dict(selfattrs),
            bases,
        )


class _Resolver:
    def __init__(self, modules: Mapping[str, LocalModule], workdirs: Sequence[str]) -> None:
        self.modules = modules
        self.workdirs = list(workdirs)
        self.scopes: dict[str, list[_Scope]] = {}
        self.refs: dict[str, tuple[Ref, ...]] = {}
        for name, mod in modules.items():
            if len(mod.data) == 2:
                self.scopes[name] = [_Scope.of(s) for s in mod.data[0]]
                self.refs[name] = mod.data[1]
        self.memo: dict[tuple[int, Frame], tuple[Expr, Alts]] = {}
        self.busy: set[tuple[int, Frame]] = set()
        self.attr_busy: set[tuple[str, str]] = set()
        self.depth = 0
        self.callers: dict[tuple[str, int], list[tuple[str, Ref, int]]] = {}
        self._by_name: dict[str, list[tuple[str, Ref]]] | None = None
        self.found: dict[tuple[str, str], DataFile] = {}
        self.module_files = frozenset(os.path.normpath(m.path) for m in modules.values())
        self.warnings: set[DataWarning] = set()
        self.where: tuple[str, int] = ("", 0)  # the reference being resolved, for warnings

    def run(self) -> Resolution:
        for name in sorted(self.refs):
            mod = self.modules[name]
            for ref in self.refs[name]:
                expr, line, scope, flags = ref
                frame = Frame(name, scope)
                site = f"{mod.path}:{line}"
                self.where = (mod.path, line)
                if flags & OPENS:
                    self.opener(expr, frame, site, mod)
                if flags & (BARE | BARE_FILE):
                    for value in self.ev(expr, frame):
                        if isinstance(value, Anchored) or (flags & BARE and isinstance(value, str)):
                            self.place(value, site, mod, None)
        files = sorted(self.found.values(), key=lambda d: (d.path, d.site))
        return Resolution(tuple(files), tuple(sorted(self.warnings)))

    # -- openers -----------------------------------------------------------------------------
    def opener(self, call: Expr, frame: Frame, site: str, mod: LocalModule) -> None:
        matches = self.match(call[1], frame)
        table = [op for op, _ in matches if op is not _LOOSE_OPENER]
        if not matches:
            return
        values: list[Value] = []
        for op, recv in matches:
            got = self.opener_paths(op, recv, call, frame)
            if got is None:
                return  # opened for writing
            values.extend(got)
        paths = [v for v in _dedup(values) if _is_path(v) or isinstance(v, GlobV)]
        if not paths:
            if table:
                self.warn(
                    f"{table[0].name}: path not resolved; add it with --data if workers need it"
                )
            return
        for value in paths:
            self.place(value, site, mod, table[0] if table else None)

    def match(self, callee: Expr, frame: Frame) -> list[tuple[Opener, Value | None]]:
        out: list[tuple[Opener, Value | None]] = []
        final = callee[2] if callee[0] == "a" else callee[1] if callee[0] == "n" else ""
        for value in self.ev(callee, frame):
            if isinstance(value, Qual):
                op = _BY_QUAL.get(value.name)
                if op is not None:
                    out.append((op, None))
                elif value.name.rsplit(".", 1)[-1] in LOOSE:
                    out.append((_LOOSE_OPENER, None))
            elif isinstance(value, AttrV):
                if _is_path(value.recv) and value.name in _BY_RECEIVER:
                    out.append((_BY_RECEIVER[value.name], value.recv))
                elif value.name in _BY_METHOD:
                    out.append((_BY_METHOD[value.name], value.recv))
                elif value.name in LOOSE:
                    out.append((_LOOSE_OPENER, None))
            elif value is UNKNOWN and final in LOOSE:
                out.append((_LOOSE_OPENER, None))
        return out

    def opener_paths(
        self, op: Opener, recv: Value | None, call: Expr, frame: Frame
    ) -> list[Value] | None:
        if op.mode is not None:
            modes = self.arg(call, frame, op.mode, ("mode",))
            if modes and all(isinstance(m, str) and set(m) & set("wax") for m in modes):
                return None
        if op.form in ("receiver", "receiver_glob"):
            if recv is None:
                return []
            if op.form == "receiver":
                return [recv]
            pats = self.arg(call, frame, 0, op.kw) or ()
            prefix = "**/" if call[1][0] == "a" and call[1][2] == "rglob" else ""
            return [GlobV(_div(recv, prefix + p)) for p in pats if isinstance(p, str)]
        if op.form == "resource":
            pkgs = self.arg(call, frame, 0, ("package", "anchor")) or ()
            names = self.arg(call, frame, 1, ("resource",)) or ()
            return [_div(self.package_dir(p), n) for p in pkgs for n in names]
        values = self.arg(call, frame, op.arg, op.kw)
        if values is None:
            return []
        if op.form == "glob":
            return [GlobV(v) for v in values if _is_path(v)]
        if op.form == "uproot":
            return [p for v in values for p in self.uproot_paths(v)]
        if op.form == "weight_sets":
            return [p for v in values for p in self.weight_set_paths(v)]
        return [v for v in values if _is_path(v) or isinstance(v, GlobV)]

    def uproot_paths(self, value: Value) -> list[Value]:
        if isinstance(value, Lit) and value.expr[0] == "d":
            return [k for ke, _ in value.expr[1] for k in self.ev(ke, value.frame)]
        if isinstance(value, str) and ".root:" in value and "://" not in value:
            return [value[: value.index(".root:") + 5]]
        if isinstance(value, Anchored) and ".root:" in value.rel:
            rel = value.rel[: value.rel.index(".root:") + 5]
            return [Anchored(value.directory, value.arcdir, rel)]
        return [value]

    def weight_set_paths(self, value: Value) -> list[Value]:
        out: list[Value] = []
        for line in self.iterate((value,), None):
            if isinstance(line, str) and not line.startswith("#"):
                parts = line.split()
                if len(parts) == 3:
                    out.append(parts[2])
        return out

    def arg(self, call: Expr, frame: Frame, pos: int | None, kws: Sequence[str]) -> Alts | None:
        _, _, args, keywords = call
        for name, value in keywords:
            if name in kws:
                return self.ev(value, frame)
        if pos is not None and pos < len(args) and all(a[0] != "*" for a in args[: pos + 1]):
            return self.ev(args[pos], frame)
        return None

    def package_dir(self, pkg: Value) -> Value:
        name = pkg.name if isinstance(pkg, ModV) else pkg
        mod = self.modules.get(name) if isinstance(name, str) else None
        if mod is None:
            return UNKNOWN  # a package that is not local ships whole, its data with it
        parts = mod.name.split(".")
        arcdir = "/".join(parts if mod.is_package else parts[:-1])
        return Anchored(os.path.dirname(mod.path), arcdir, ".")

    # -- placing a path on this machine and in the environment -------------------------------
    def place(self, value: Value, site: str, mod: LocalModule, op: Opener | None) -> None:
        here = os.path.dirname(mod.path)
        if isinstance(value, GlobV):
            self.place_glob(value.pattern, site, mod, op)
            return
        if isinstance(value, Anchored):
            if value.rel == ".":
                return  # the module's own directory: never data of its own
            full = os.path.normpath(os.path.join(value.directory, value.rel))
            arc = _norm(posixpath.join(value.arcdir, value.rel))
            if full == mod.path:
                return
            _resultcache.note_path(full)
            if os.path.exists(full):
                self.add(full, value.rel, "file", site, arc)
            elif op is not None:
                self.warn(f"{op.name}: {full} does not exist; not shipped")
            return
        if not isinstance(value, str) or not value or "://" in value or value[0] in "/~$":
            return  # absolute, remote or from the environment: not the code's own data
        rel = _norm(value)
        if rel == ".":
            return
        for directory in [here, *self.workdirs]:
            full = os.path.normpath(os.path.join(directory, rel))
            _resultcache.note_path(full)
            if os.path.exists(full) and full != mod.path:
                self.add(full, value, "cwd", site, rel)
                return
        if op is not None:
            where = ", ".join(dict.fromkeys([here, *self.workdirs]))
            self.warn(
                f"{op.name}: {value!r} not found in {where}; not shipped "
                "(add it with --data if workers need it)"
            )

    def place_glob(self, pattern: Value, site: str, mod: LocalModule, op: Opener | None) -> None:
        if isinstance(pattern, Anchored):
            roots = [(pattern.directory, pattern.arcdir)]
            pat = pattern.rel
        elif isinstance(pattern, str) and pattern and not pattern.startswith("/"):
            roots = [(d, "") for d in dict.fromkeys([os.path.dirname(mod.path), *self.workdirs])]
            pat = pattern
        else:
            return
        for directory, arcdir in roots:
            _resultcache.note_glob(os.path.join(glob.escape(directory), pat))
            matches = sorted(glob.glob(os.path.join(glob.escape(directory), pat), recursive=True))
            if matches:
                for full in matches:
                    rel = os.path.relpath(full, directory).replace(os.sep, "/")
                    base: Literal["file", "cwd"] = (
                        "file" if isinstance(pattern, Anchored) else "cwd"
                    )
                    self.add(
                        os.path.normpath(full), rel, base, site, _norm(posixpath.join(arcdir, rel))
                    )
                return
        if op is not None:
            self.warn(f"{op.name}: {pat!r} matches no file; nothing shipped")

    def warn(self, message: str) -> None:
        self.warnings.add(DataWarning(self.where[0], self.where[1], message))

    def add(self, full: str, rel: str, base: Literal["file", "cwd"], site: str, arc: str) -> None:
        if arc == ".." or arc.startswith("../"):
            self.warn(
                f"{full} is outside the directory the code ships from, where no worker can "
                "have it; not shipped (move it beside the code)"
            )
            return
        if full in self.module_files or (
            os.path.isdir(full) and any(f.startswith(full + os.sep) for f in self.module_files)
        ):
            return  # the code itself (`os.path.dirname(__file__) + "/.."`): it ships as modules
        key = (full, rel)
        if key not in self.found:
            self.found[key] = DataFile(full, rel, base, site, os.path.isdir(full), arc)

    # -- evaluation ----------------------------------------------------------------------------
    def ev(self, expr: Expr, frame: Frame) -> Alts:
        key = (id(expr), frame)
        hit = self.memo.get(key)
        if hit is not None and hit[0] is expr:
            return hit[1]
        if key in self.busy or self.depth > _MAX_EVAL_DEPTH:
            return ()
        self.busy.add(key)
        self.depth += 1
        try:
            out = _dedup(self._ev(expr, frame))
        except RecursionError:
            out = (UNKNOWN,)
        finally:
            self.busy.discard(key)
            self.depth -= 1
        self.memo[key] = (expr, out)
        return out

    def _ev(self, e: Expr, f: Frame) -> Iterable[Value]:
        tag = e[0]
        if tag in ("s", "i"):
            return (e[1],)
        if tag == "n":
            return self.name(e[1], f)
        if tag == "a":
            return [v for base in self.ev(e[1], f) for v in self.attr(base, e[2])]
        if tag == "[":
            keys = self.ev(e[2], f)
            return [v for base in self.ev(e[1], f) for k in keys for v in self.sub(base, k)]
        if tag in ("/", "+", "%"):
            left, right = self.ev(e[1], f), self.ev(e[2], f)
            if tag == "/":
                return [_div(a, b) for a in left for b in right][:_MAX_ALTS]
            if tag == "+":
                return [_concat(a, b) for a in left for b in right][:_MAX_ALTS]
            return [_percent(a, self.elements(b)) for a in left for b in right][:_MAX_ALTS]
        if tag == "f":
            rows = _product([self.ev(p, f) for p in e[1]])
            return [
                "".join(str(x) for x in row)
                if all(isinstance(x, str | int) for x in row)
                else UNKNOWN
                for row in rows
            ]
        if tag == "c":
            return self.call(e, f)
        if tag in ("d", "l"):
            return (Lit(e, f),)
        if tag == "|":
            return [v for alt in e[1] for v in self.ev(alt, f)]
        if tag == "def":
            return (FuncV(f.module, e[1]),)
        if tag == "class":
            return (ClassV(f.module, e[1]),)
        if tag == "it":
            return self.iterate(self.ev(e[1], f), e[2])
        if tag == "with":
            return [v for v in self.ev(e[1], f) if _is_path(v)] or (UNKNOWN,)
        return (UNKNOWN,)

    def elements(self, value: Value) -> tuple[Value, ...]:
        """The items of a literal tuple for ``%``-formatting (each its first alternative)."""
        if isinstance(value, Lit) and value.expr[0] == "l":
            return tuple((self.ev(x, value.frame) or (UNKNOWN,))[0] for x in value.expr[1])
        return (value,)

    def name(self, name: str, f: Frame) -> Alts:
        scopes = self.scopes.get(f.module)
        if not scopes:
            return (UNKNOWN,)
        scope = scopes[f.scope]
        if f.bound is not None:
            for key, values in f.bound:
                if key == name:
                    return values
        out: list[Value] = []
        known = False
        for expr, where in scope.assigns.get(name, ()):
            known = True
            out.extend(self.ev(expr, f if where == f.scope else Frame(f.module, where)))
        for binding in scope.imports.get(name, ()):
            known = True
            out.extend(self.binding(binding, f.module))
        if scope.kind == "def" and (name in scope.params or name in scope.kwonly):
            known = True
            if name == scope.self_name:
                out.append(InstV(f.module, scope.cls))
            else:
                default = scope.defaults.get(name)
                if default is not None:
                    out.extend(self.ev(default[0], Frame(f.module, default[1])))
                if f.bound is None:
                    out.extend(self.from_callers(f.module, f.scope, name))
        if known:
            return tuple(out) or (UNKNOWN,)
        parent = scope.parent
        if scope.kind == "def":
            while parent >= 0 and scopes[parent].kind == "class":
                parent = scopes[parent].parent  # a method does not see its class's names
        if parent >= 0:
            return self.name(name, Frame(f.module, parent))
        return self.module_fallback(f.module, name)

    def module_fallback(self, module: str, name: str) -> Alts:
        """A name a module does not bind: a star import's, a module global, or a builtin."""
        mod = self.modules[module]
        out: list[Value] = []
        for star, level in self.scopes[module][0].stars:
            absname = self.absolute(module, star, level)
            if absname is None:
                continue
            if absname in self.scopes:
                got = self.module_attr(absname, name)
                if got != (UNKNOWN,):
                    out.extend(got)
            else:
                out.append(Qual(f"{absname}.{name}"))
        if name == "__file__":
            out.append(self.file_anchor(mod))
        elif name in ("__name__", "__package__"):
            out.append(
                mod.name if name == "__name__" or mod.is_package else mod.name.rpartition(".")[0]
            )
        else:
            out.append(Qual(name))
        return tuple(out)

    def file_anchor(self, mod: LocalModule) -> Anchored:
        anchor = self.package_dir(mod.name)
        assert isinstance(anchor, Anchored)
        return Anchored(anchor.directory, anchor.arcdir, os.path.basename(mod.path))

    def absolute(self, module: str, name: str, level: int) -> str | None:
        if level == 0:
            return name
        mod = self.modules[module]
        parts = mod.name.split(".") if mod.is_package else mod.name.split(".")[:-1]
        if level - 1 > len(parts) or (level - 1 == len(parts) and not name):
            return None
        base = parts[: len(parts) - (level - 1)]
        return ".".join([*base, name] if name else base)

    def binding(self, binding: Expr, module: str) -> Alts:
        if binding[0] == "mod":
            return (ModV(binding[1]) if binding[1] in self.modules else Qual(binding[1]),)
        _, src, level, name = binding
        absname = self.absolute(module, src, level)
        if absname is None:
            return (UNKNOWN,)
        full = f"{absname}.{name}" if absname else name
        if absname == module and full in self.modules:
            return (ModV(full),)  # `from . import sub` in a package's __init__
        if absname in self.modules:
            return self.module_attr(absname, name)
        return (ModV(full) if full in self.modules else Qual(full),)

    def module_attr(self, module: str, name: str) -> Alts:
        """``module.name``: what the module binds to it, else its submodule of that name."""
        key = (module, name)
        if key in self.attr_busy:
            return ()  # modules importing a name from each other
        self.attr_busy.add(key)
        try:
            return self._module_attr(module, name)
        finally:
            self.attr_busy.discard(key)

    def _module_attr(self, module: str, name: str) -> Alts:
        scopes = self.scopes.get(module)
        if scopes and (name in scopes[0].assigns or name in scopes[0].imports):
            return self.name(name, Frame(module, 0))
        sub = f"{module}.{name}"
        if sub in self.modules:
            return (ModV(sub),)
        mod = self.modules.get(module)
        if mod is not None and name == "__file__":
            return (self.file_anchor(mod),)
        if mod is not None and name == "__path__" and mod.is_package:
            return (SeqV((self.package_dir(module),)),)
        if mod is not None and name == "__name__":
            return (module,)
        if scopes and scopes[0].stars:
            got = [
                v
                for v in self.module_fallback(module, name)
                if not isinstance(v, Qual) or "." in v.name
            ]
            return tuple(got) or (UNKNOWN,)
        return (UNKNOWN,)

    def attr(self, value: Value, name: str) -> Alts:
        if isinstance(value, ModV):
            return self.module_attr(value.name, name)
        if isinstance(value, Qual):
            full = f"{value.name}.{name}"
            return (_QUAL_CONSTS.get(full, Qual(full)),)
        if isinstance(value, InstV):
            return tuple(self.inst_attr(value, name, 0)) or (AttrV(UNKNOWN, name),)
        if isinstance(value, ClassV):
            scope = self.scopes[value.module][value.scope]
            out = [
                v
                for e, s in scope.assigns.get(name, ())
                for v in self.ev(e, Frame(value.module, s))
            ]
            return tuple(out) or (UNKNOWN,)
        if _is_path(value):
            if name == "parent":
                return (_dirname(value),)
            if name == "name":
                return (_basename(value),)
        if _is_path(value) or isinstance(value, Lit):
            return (AttrV(value, name),)
        return (AttrV(UNKNOWN, name),)

    def inst_attr(self, inst: InstV, name: str, depth: int) -> list[Value]:
        scope = self.scopes[inst.module][inst.scope]
        out: list[Value] = []
        for expr, where in scope.assigns.get(name, ()):
            for v in self.ev(expr, Frame(inst.module, where)):
                if isinstance(v, FuncV) and v.bound_self is None:
                    v = FuncV(v.module, v.scope, inst)  # a method, bound to the instance
                out.append(v)
        for expr, where in scope.selfattrs.get(name, ()):
            out.extend(self.ev(expr, Frame(inst.module, where)))
        if not out and depth < 8:
            for base in scope.bases:
                for cls in self.ev(base, Frame(inst.module, scope.parent)):
                    if isinstance(cls, ClassV):
                        out.extend(self.inst_attr(InstV(cls.module, cls.scope), name, depth + 1))
        return out

    def sub(self, value: Value, key: Value) -> Alts:
        if isinstance(value, Lit) and value.expr[0] == "d" and key is not UNKNOWN:
            out = [
                v
                for ke, ve in value.expr[1]
                if key in self.ev(ke, value.frame)
                for v in self.ev(ve, value.frame)
            ]
            return tuple(out) or (UNKNOWN,)
        if isinstance(key, int):
            if isinstance(value, Lit) and value.expr[0] == "l":
                items = value.expr[1]
                if -len(items) <= key < len(items):
                    return self.ev(items[key], value.frame)
            if isinstance(value, SeqV) and -len(value.items) <= key < len(value.items):
                return (value.items[key],)
            if isinstance(value, AttrV) and value.name == "parents" and key >= 0:
                parent: Value = value.recv
                for _ in range(key + 1):
                    parent = _dirname(parent)
                return (parent,)
            if isinstance(value, Iterated) and 0 <= key < len(value.columns):
                return value.columns[key]
        return (UNKNOWN,)

    def iterate(self, values: Alts, index: int | None) -> list[Value]:
        """What a loop over ``values`` binds: every element (or its ``index``-th item)."""
        out: list[Value] = []
        for value in values:
            items: Sequence[Value]
            if isinstance(value, Iterated):
                if index is not None and index < len(value.columns):
                    out.extend(value.columns[index])
                else:
                    out.append(UNKNOWN)
                continue
            if isinstance(value, Lit):
                if value.expr[0] == "l":
                    items = [v for e in value.expr[1] for v in self.ev(e, value.frame)]
                else:
                    items = [v for k, _ in value.expr[1] for v in self.ev(k, value.frame)]
            elif isinstance(value, SeqV):
                items = value.items
            elif isinstance(value, GlobV):
                items = [value]
            else:
                out.append(UNKNOWN)
                continue
            for item in items:
                out.extend((item,) if index is None else self.sub(item, index))
        return out[:_MAX_ALTS]

    # -- calls -------------------------------------------------------------------------------
    def call(self, e: Expr, f: Frame) -> list[Value]:
        out: list[Value] = []
        for fv in self.ev(e[1], f):
            if isinstance(fv, Qual):
                out.extend(self.qual_call(fv.name, e, f))
            elif isinstance(fv, FuncV):
                out.extend(self.invoke(fv, e, f))
            elif isinstance(fv, ClassV):
                out.append(InstV(fv.module, fv.scope))
            elif isinstance(fv, AttrV):
                out.extend(self.method_call(fv, e, f))
            else:
                out.append(UNKNOWN)
        return out

    def all_args(self, e: Expr, f: Frame) -> list[Alts] | None:
        args = e[2]
        if any(a[0] == "*" for a in args):
            return None
        return [self.ev(a, f) for a in args]

    def qual_call(self, name: str, e: Expr, f: Frame) -> list[Value]:
        args = self.all_args(e, f)
        if args is None:
            return [UNKNOWN]
        if name in _JOIN or name in _PATH_CLASSES:
            if not args:
                return [""]  # Path(): the working directory
            rows = _product(args)
            out: list[Value] = []
            for row in rows:
                value: Value = row[0] if _is_path(row[0]) else UNKNOWN
                for piece in row[1:]:
                    value = _div(value, piece)
                out.append(value)
            return out
        if name in ("os.getcwd", "pathlib.Path.cwd"):
            return [""]
        if not args:
            return [UNKNOWN]
        if name in _IDENTITY:
            return list(args[0])
        if name in ("os.path.dirname", "posixpath.dirname"):
            return [_dirname(v) for v in args[0]]
        if name in ("os.path.basename", "posixpath.basename"):
            return [_basename(v) for v in args[0]]
        if name in ("importlib.resources.files", "importlib_resources.files"):
            return [self.package_dir(v) for v in args[0]]
        if name in ("importlib.resources.path", "importlib_resources.path") and len(args) > 1:
            return [_div(self.package_dir(p), n) for p in args[0] for n in args[1]]
        if name in ("glob.glob", "glob.iglob"):
            return [GlobV(v) if _is_path(v) else UNKNOWN for v in args[0]]
        if name == "zip":
            return [Iterated(tuple(tuple(self.iterate(a, None)) for a in args))]
        if name == "enumerate":
            return [Iterated(((UNKNOWN,), tuple(self.iterate(args[0], None))))]
        return [UNKNOWN]

    def method_call(self, fv: AttrV, e: Expr, f: Frame) -> list[Value]:
        recv, name = fv.recv, fv.name
        args = self.all_args(e, f)
        if args is None:
            return [UNKNOWN]
        if isinstance(recv, Lit) and recv.expr[0] == "d":
            if name == "get" and args:
                default = args[1] if len(args) > 1 else (UNKNOWN,)
                return [v for k in args[0] for v in self.sub(recv, k)] + list(default)
            if name in ("items", "values", "keys"):
                keys = [k for ke, _ in recv.expr[1] for k in self.ev(ke, recv.frame)]
                vals = [v for _, ve in recv.expr[1] for v in self.ev(ve, recv.frame)]
                columns = {"items": (keys, vals), "keys": (keys,), "values": (vals,)}[name]
                if name == "items":
                    return [Iterated(tuple(tuple(c) for c in columns))]
                return [SeqV(tuple(columns[0]))]
            return [UNKNOWN]
        if not _is_path(recv):
            return [UNKNOWN]
        if name in ("resolve", "absolute", "expanduser") and not args:
            return [recv]
        if name == "joinpath":
            rows = _product(args)
            out: list[Value] = []
            for row in rows:
                value = recv
                for piece in row:
                    value = _div(value, piece)
                out.append(value)
            return out
        if name in ("glob", "rglob") and args:
            prefix = "**/" if name == "rglob" else ""
            return [
                GlobV(_div(recv, prefix + p)) if isinstance(p, str) else UNKNOWN for p in args[0]
            ]
        if isinstance(recv, str):
            if name == "format":
                kwargs = {k: (self.ev(v, f) or (UNKNOWN,))[0] for k, v in e[3]}
                return [_format(recv, row, kwargs) for row in _product(args)]
            if name == "join" and len(args) == 1:
                joined: list[Value] = []
                for seq in args[0]:
                    parts = self.iterate((seq,), None)
                    strs = [p for p in parts if isinstance(p, str)]
                    joined.append(recv.join(strs) if len(strs) == len(parts) else UNKNOWN)
                return joined
            if name == "replace" and len(args) == 2:
                return [
                    recv.replace(a, b) if isinstance(a, str) and isinstance(b, str) else UNKNOWN
                    for a in args[0]
                    for b in args[1]
                ]
            if name in ("strip", "rstrip", "lstrip", "lower", "upper") and not args:
                return [getattr(recv, name)()]
        return [UNKNOWN]

    def invoke(self, fv: FuncV, e: Expr, f: Frame) -> list[Value]:
        """What a local function returns for the call ``e`` (its parameters bound)."""
        scope = self.scopes[fv.module][fv.scope]
        bound: dict[str, Alts] = {}
        params = list(scope.params)
        if fv.bound_self is not None and params:
            bound[params.pop(0)] = (fv.bound_self,)
        for i, arg in enumerate(e[2]):
            if arg[0] == "*":
                break
            if i < len(params):
                bound[params[i]] = self.ev(arg, f)
        for key, arg in e[3]:
            if key in scope.params or key in scope.kwonly:
                bound[key] = self.ev(arg, f)
        frame = Frame(fv.module, fv.scope, tuple(sorted(bound.items(), key=lambda kv: kv[0])))
        out = [v for r in scope.returns for v in self.ev(r, frame)]
        return out or [UNKNOWN]

    def from_callers(self, module: str, scope_idx: int, param: str) -> list[Value]:
        """A parameter's values at every call site of its function, in any local module."""
        scope = self.scopes[module][scope_idx]
        pos = scope.params.index(param) if param in scope.params else None
        out: list[Value] = []
        for caller, ref, shift in self.callers_of(module, scope_idx):
            call = ref[0]
            frame = Frame(caller, ref[2])
            by_name = [a for k, a in call[3] if k == param]
            if by_name:
                out.extend(self.ev(by_name[0], frame))
            elif pos is not None:
                i = pos - shift
                args = call[2]
                if 0 <= i < len(args) and all(a[0] != "*" for a in args[: i + 1]):
                    out.extend(self.ev(args[i], frame))
        return out

    def callers_of(self, module: str, scope_idx: int) -> list[tuple[str, Ref, int]]:
        """The call sites of a local function: (module, ref, 1 if ``self`` is bound else 0).

        Only calls spelled with the function's name (its class's, for ``__init__``) can be
        one, so only those callees are evaluated, once; calls through an alias are missed.
        """
        key = (module, scope_idx)
        known = self.callers.get(key)
        if known is not None:
            return known
        self.callers[key] = []  # while the callees are evaluated: no call sites yet
        scope = self.scopes[module][scope_idx]
        names = {scope.name}
        if scope.name == "__init__" and scope.cls >= 0:
            names.add(self.scopes[module][scope.cls].name)
        found: list[tuple[str, Ref, int]] = []
        for name in sorted(names):
            for caller, ref in self.by_callee_name().get(name, ()):
                for fv in self.ev(ref[0][1], Frame(caller, ref[2])):
                    if isinstance(fv, FuncV) and (fv.module, fv.scope) == key:
                        found.append((caller, ref, 1 if fv.bound_self is not None else 0))
                    elif isinstance(fv, ClassV) and scope.cls == fv.scope and fv.module == module:
                        found.append((caller, ref, 1))
        self.callers[key] = found
        return found

    def by_callee_name(self) -> dict[str, list[tuple[str, Ref]]]:
        """Every call site with arguments, by the last name of what it calls."""
        if self._by_name is None:
            self._by_name = {}
            for module in sorted(self.refs):
                for ref in self.refs[module]:
                    callee = ref[0][1] if ref[3] & SITE else None
                    if callee is not None and callee[0] in ("n", "a"):
                        name = callee[1] if callee[0] == "n" else callee[2]
                        self._by_name.setdefault(name, []).append((module, ref))
        return self._by_name


# -- files that ship as data without being seen opened ------------------------------------
def data_tree(path: str, relpath: str, is_dir: bool) -> list[tuple[str, str]]:
    """A data file as (source, arcname); a directory as every file under it, in sorted order."""
    rel = os.path.normpath(relpath)
    if not is_dir:
        return [(path, rel)]
    out: list[tuple[str, str]] = []
    _resultcache.note_tree(path)
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            out.append((full, os.path.normpath(os.path.join(rel, os.path.relpath(full, path)))))
    return out


def manual_data(entries: Sequence[tuple[str, str, str]], root: str) -> list[tuple[str, str, str]]:
    """Files named by hand (``--data``, ``[tool.envpack] data``) as (path, arcname, why).

    ``entries`` are (path, directory or glob; the directory it is relative to; who named it).
    A file's arcname is its path relative to ``root``, the first processor's directory: the
    task's working directory holds it there, as it holds the data the code is seen to open.
    Raises UsageError for a name that matches nothing, or a file outside ``root``.
    """
    out: list[tuple[str, str, str]] = []
    real_root = os.path.realpath(root)
    for given, base, who in entries:
        pattern = os.path.join(base, os.path.expanduser(given))
        if glob.has_magic(given):
            _resultcache.note_glob(pattern)
            matches = sorted(glob.glob(pattern, recursive=True))
        else:
            _resultcache.note_path(pattern)
            matches = [pattern] if os.path.exists(pattern) else []
        if not matches:
            raise UsageError(f"{who}: data {given!r} matches no file (looked in {base})")
        for match in matches:
            rel = os.path.relpath(os.path.realpath(match), real_root)
            if rel == ".." or rel.startswith(".." + os.sep):
                raise UsageError(
                    f"{who}: data {given!r}: {match} is outside {root}, the processor's "
                    "directory; workers find data relative to their working directory, which "
                    f"holds what lies under it: move the file under {root}"
                )
            why = f"added by {who} {given!r}"
            for path, arc in data_tree(match, rel, os.path.isdir(match)):
                out.append((path, arc.replace(os.sep, "/"), why))
    return out


# Never package data, in an editable package's tree: its Python sources (modules ship as the
# import graph reaches them) and bytecode, extension modules, caches, metadata, test suites.
_NOT_DATA_DIRS = frozenset({"__pycache__", "tests", "test"})
_NOT_DATA_SUFFIXES = (".py", ".pyc", ".pyo", ".pyi", ".so", ".pyd")


def package_data(directory: str, arcdir: str) -> list[tuple[str, str]]:
    """The data files of a package's source tree (an editable install) as (path, arcname).

    Everything but code, hidden files and directories (.git, .ipynb_checkpoints),
    ``__pycache__``, ``*.egg-info`` and ``tests``/``test`` directories; in sorted order.
    """
    out: list[tuple[str, str]] = []
    _resultcache.note_tree(directory)
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".") and d not in _NOT_DATA_DIRS and not d.endswith(".egg-info")
        )
        rel_dir = os.path.relpath(dirpath, directory)
        for name in sorted(filenames):
            if name.startswith(".") or name.endswith(_NOT_DATA_SUFFIXES) or ".so." in name:
                continue
            rel = os.path.normpath(os.path.join(arcdir, rel_dir, name))
            out.append((os.path.join(dirpath, name), rel.replace(os.sep, "/")))
    return out


__all__ = [
    "OPENERS",
    "DataFile",
    "DataSummary",
    "DataWarning",
    "LocalModule",
    "Opener",
    "Resolution",
    "data_tree",
    "manual_data",
    "package_data",
    "resolve",
    "scan",
]
