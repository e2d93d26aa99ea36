"""Extract a file's import sites from its AST, in a target-independent, marshal-able form.

The walker (imports.py) decides what to follow; this module only records *where* each import
is and *under which conditions* it runs, so the result can be cached on disk and computed in a
worker process. Everything returned is built from tuples, str, int, bool and None (marshal).

A summary is ``(sites, all_names, extends_path, data_refs, error)``:

- site: ``(kind, module, level, names, line, lazy, guards, groups, anchor)``; kind is
  ``IMPORT``, ``FROM`` or ``DYNAMIC`` (a literal ``import_module``/``__import__`` string);
  ``lazy`` means inside a function body that the module does not call at its top level;
  ``guards`` is a tuple of ``(condition, wanted truth)``; ``groups`` the ids of the
  ``try: … except ImportError`` bodies the site is in (it is then optional);
  ``anchor`` is the ``package=`` of a dynamic relative import.
- condition: see conditions.py (the language, and its evaluator).
- data_refs (local code only): ``(relpath, anchor, line)`` with anchor ``"file"`` (relative
  to the file's directory only) or ``"either"`` (the file's directory, then the cwd).
"""

from __future__ import annotations

import ast
import bisect
import re
from typing import Any

from envpack.analyzer.conditions import UNKNOWN, Cond, Guard, condition, never_runs
from envpack.analyzer.conditions import const_str as _str
from envpack.analyzer.conditions import dotted as _dotted
from envpack.analyzer.conditions import str_seq as _str_seq

IMPORT, FROM, DYNAMIC = 0, 1, 2

Site = tuple[int, str, int, tuple[str, ...], int, bool, tuple[Guard, ...], tuple[int, ...], Any]
DataRef = tuple[str, str, int]
Summary = tuple[
    tuple[Site, ...], tuple[str, ...] | None, bool, tuple[DataRef, ...], tuple[str, int, int] | None
]

_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})
_DYNAMIC_FUNCS = frozenset({"import_module", "__import__"})
# Callables whose first argument is a path to read: open(), pathlib, numpy/pandas/uproot
# readers, correctionlib's CorrectionSet.from_file, h5py.File, coffea's LumiMask.
_DATA_FUNCS = frozenset(
    {
        "open",
        "Path",
        "PurePath",
        "PosixPath",
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


def summarize(source: bytes, filename: str, local: bool) -> Summary:
    """Parse ``source`` and extract its import sites; a parse failure is returned, not raised."""
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as exc:
        return (), None, False, (), (str(exc.msg), exc.lineno or 0, exc.offset or 0)
    except (ValueError, UnicodeError, RecursionError, MemoryError) as exc:
        return (), None, False, (), (f"{type(exc).__name__}: {exc}", 0, 0)
    import_lines = _match_lines(source, _IMPORT_RE)
    dynamic_lines = _match_lines(source, _DYNAMIC_RE)
    extends = b"extend_path" in source or b"declare_namespace" in source
    ex = _Extractor(tree, local, import_lines, dynamic_lines)
    ex.source = source
    try:
        ex.run()
    except RecursionError:
        return (), None, False, (), ("RecursionError: nesting too deep to analyze", 0, 0)
    return tuple(ex.sites), ex.all_names, extends, tuple(ex.data), None


class _Ctx:
    __slots__ = ("groups", "guards", "lazy", "loops")

    def __init__(
        self,
        guards: tuple[Guard, ...] = (),
        groups: tuple[int, ...] = (),
        lazy: bool = False,
        loops: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.guards = guards
        self.groups = groups
        self.lazy = lazy
        self.loops = loops or {}

    def with_guard(self, cond: Cond, want: bool) -> _Ctx:
        return _Ctx((*self.guards, (cond, want)), self.groups, self.lazy, self.loops)

    def with_group(self, gid: int) -> _Ctx:
        return _Ctx(self.guards, (*self.groups, gid), self.lazy, self.loops)

    def as_lazy(self) -> _Ctx:
        # A function body runs later, outside any try of its definition site; guards on the
        # definition (TYPE_CHECKING, version) still hold.
        return _Ctx(self.guards, (), True, {})


class _Extractor:
    def __init__(
        self, tree: ast.Module, local: bool, import_lines: list[int], dynamic_lines: list[int]
    ) -> None:
        self.tree = tree
        self.local = local
        # Lines mentioning "import": a function body without one has no import site, so
        # third-party function bodies are skipped unread (most of a library's code).
        self.import_lines = import_lines
        self.dynamic_lines = dynamic_lines
        self.has_dynamic = bool(dynamic_lines)
        self.source = b""
        self.call_lines: list[int] = []
        self.sites: list[Site] = []
        self.data: list[DataRef] = []
        self.all_names: tuple[str, ...] | None = None
        self.funcs: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        self.conds: dict[str, Cond] = {}
        self.seqs: dict[str, tuple[str, ...]] = {}
        self.expanded: set[str] = set()
        self.next_gid = 0

    # -- module-level facts used by the walk -----------------------------------------------
    def run(self) -> None:
        assigned: dict[str, int] = {}
        for node in self.tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self.funcs[node.name] = node
            elif isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name):
                    assigned[target.id] = assigned.get(target.id, 0) + 1
                    seq = _str_seq(node.value)
                    if seq is not None:
                        self.seqs[target.id] = seq
                        if target.id == "__all__":
                            self.all_names = seq
                    else:
                        # A flag named once for a platform/version test (subprocess's
                        # ``_mswindows``); plain constants are not: ``HAS_X = False`` is
                        # usually flipped by a later ``try: import x``.
                        cond = condition(node.value, self.conds)
                        if cond != UNKNOWN and cond[0] != "const":
                            self.conds[target.id] = cond
        for name, count in assigned.items():
            if count > 1:
                self.conds.pop(name, None)
        if self.funcs and not self.local:
            # Lines that mention one of the module's own functions: only statements spanning
            # one of them can call it, so the others' expressions are not walked.
            names = b"|".join(re.escape(n.encode()) for n in sorted(self.funcs))
            self.call_lines = _match_lines(self.source, re.compile(rb"\b(?:" + names + rb")\b"))
        self.body(self.tree.body, _Ctx())

    # -- statements ---------------------------------------------------------------------------
    def body(self, stmts: list[ast.stmt], ctx: _Ctx) -> None:
        for stmt in stmts:
            self.stmt(stmt, ctx)

    def stmt(self, node: ast.stmt, ctx: _Ctx) -> None:
        # Third-party code: a statement whose lines mention neither "import" nor (when it runs
        # at module level) one of the module's own functions can hold no site; skip it unread.
        if (
            not self.local
            and not _span_has(self.import_lines, node)
            and (ctx.lazy or not _span_has(self.call_lines, node))
        ):
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                self.add(IMPORT, alias.name, 0, (), node.lineno, ctx, None)
        elif isinstance(node, ast.ImportFrom):
            names = tuple(a.name for a in node.names)
            self.add(FROM, node.module or "", node.level, names, node.lineno, ctx, None)
        elif isinstance(node, ast.If):
            self.exprs([node.test], ctx)
            cond = condition(node.test, self.conds)
            self.body(node.body, ctx.with_guard(cond, True))
            self.body(node.orelse, ctx.with_guard(cond, False))
        elif isinstance(node, ast.Try | ast.TryStar):
            self.try_(node, ctx)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            self.exprs(node.decorator_list, ctx)
            self.exprs([*node.args.defaults, *(d for d in node.args.kw_defaults if d)], ctx)
            if self.local or _span_has(self.import_lines, node):
                self.body(node.body, ctx.as_lazy())
        elif isinstance(node, ast.ClassDef):
            self.exprs([*node.decorator_list, *node.bases, *(k.value for k in node.keywords)], ctx)
            self.body(node.body, ctx)
        elif isinstance(node, ast.For | ast.AsyncFor):
            self.exprs([node.iter], ctx)
            inner = ctx
            seq = _str_seq(node.iter)
            if seq is None and isinstance(node.iter, ast.Name):
                seq = self.seqs.get(node.iter.id)
            if seq is not None and isinstance(node.target, ast.Name):
                inner = _Ctx(ctx.guards, ctx.groups, ctx.lazy, {**ctx.loops, node.target.id: seq})
            self.body(node.body, inner)
            self.body(node.orelse, ctx)
        elif isinstance(node, ast.While):
            self.exprs([node.test], ctx)
            self.body(node.body, ctx)
            self.body(node.orelse, ctx)
        elif isinstance(node, ast.With | ast.AsyncWith):
            self.exprs([item.context_expr for item in node.items], ctx)
            self.body(node.body, ctx)
        elif isinstance(node, ast.Match):
            self.exprs([node.subject], ctx)
            for case in node.cases:
                self.body(case.body, ctx)
        else:
            self.exprs([node], ctx)

    def try_(self, node: ast.Try | ast.TryStar, ctx: _Ctx) -> None:
        catches = any(_catches_import_error(h.type) for h in node.handlers)
        if not catches:
            self.body(node.body, ctx)
            for handler in node.handlers:
                self.body(handler.body, ctx)
            self.body(node.orelse, ctx)
            self.body(node.finalbody, ctx)
            return
        gid = self.next_gid
        self.next_gid += 1
        failed: Cond = ("fail", gid)
        self.body(node.body, ctx.with_group(gid))
        for handler in node.handlers:
            if _catches_import_error(handler.type):
                self.body(handler.body, ctx.with_guard(failed, True))
            else:
                self.body(handler.body, ctx)
        self.body(node.orelse, ctx.with_guard(failed, False))
        self.body(node.finalbody, ctx)

    def add(
        self,
        kind: int,
        module: str,
        level: int,
        names: tuple[str, ...],
        line: int,
        ctx: _Ctx,
        anchor: Any,
    ) -> None:
        self.sites.append(
            (kind, module, level, names, line, ctx.lazy, ctx.guards, ctx.groups, anchor)
        )

    # -- expressions: dynamic imports, calls of the module's own functions, data files -------
    def exprs(self, nodes: list[Any], ctx: _Ctx) -> None:
        want_calls = not ctx.lazy and bool(self.funcs)
        if not self.local and not any(
            (want_calls and _span_has(self.call_lines, n))
            or (self.has_dynamic and _span_has(self.dynamic_lines, n))
            for n in nodes
        ):
            return
        stack = list(nodes)
        consumed: set[int] = set()
        while stack:
            node = stack.pop()
            if isinstance(node, ast.Lambda):
                continue
            if isinstance(node, ast.Call):
                self.call(node, ctx, want_calls, consumed)
            elif (
                self.local
                and isinstance(node, ast.BinOp)
                and id(node) not in consumed
                and not _never_runs(ctx)
            ):
                joined = self.path_div(node, consumed)
                if joined is not None:
                    self.data.append((joined[0], joined[1], node.lineno))
            stack.extend(ast.iter_child_nodes(node))

    def call(self, node: ast.Call, ctx: _Ctx, want_calls: bool, consumed: set[int]) -> None:
        if self.local and _never_runs(ctx):
            consumed.add(id(node))  # no data files from __main__ / TYPE_CHECKING blocks
        func = node.func
        name = _callee(node)
        if name in _DYNAMIC_FUNCS and node.args and self.has_dynamic:
            self.dynamic(node, ctx)
        if want_calls and isinstance(func, ast.Name) and func.id in self.funcs:
            self.expand(func.id, ctx)
        if self.local and id(node) not in consumed and name == "join":
            ref = self.path_expr(node)
            if ref is not None and ref[1] == "file":  # os.path.join(os.path.dirname(__file__), …)
                self.data.append((ref[0], ref[1], node.lineno))
        if self.local and id(node) not in consumed:
            if name in _DATA_FUNCS and node.args:
                ref = self.path_expr(node.args[0])
                if ref is not None:
                    self.data.append((ref[0], ref[1], node.lineno))
            elif name == "add_weight_sets" and node.args:
                # coffea extractor: "local_name hist_name path/to/file.root" entries.
                for entry in _str_seq(node.args[0]) or ():
                    parts = entry.split()
                    if parts:
                        self.data.append((parts[-1], "either", node.lineno))

    def dynamic(self, node: ast.Call, ctx: _Ctx) -> None:
        arg = node.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            names: tuple[str, ...] = (arg.value,)
        elif isinstance(arg, ast.Name) and arg.id in ctx.loops:
            names = ctx.loops[arg.id]
        else:
            return
        anchor: Any = None
        pkg: ast.expr | None = node.args[1] if len(node.args) > 1 else None
        for kw in node.keywords:
            if kw.arg == "package":
                pkg = kw.value
        if isinstance(pkg, ast.Name) and pkg.id in ("__name__", "__package__"):
            anchor = pkg.id
        elif isinstance(pkg, ast.Constant) and isinstance(pkg.value, str):
            anchor = pkg.value
        for name in names:
            stripped = name.lstrip(".")
            level = len(name) - len(stripped)
            if not stripped and not level:
                continue
            if level and anchor is None:
                continue  # relative with an unknown package: cannot resolve statically
            self.add(DYNAMIC, stripped, level, (), node.lineno, ctx, anchor)

    def expand(self, fname: str, ctx: _Ctx) -> None:
        """A module-level call of the module's own function: its body counts as module level."""
        if fname in self.expanded:
            return
        self.expanded.add(fname)
        self.body(self.funcs[fname].body, _Ctx(ctx.guards, ctx.groups, False, {}))

    # -- data file references -------------------------------------------------------------
    def path_expr(self, node: ast.expr) -> tuple[str, str] | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return (node.value, "either") if node.value else None
        if isinstance(node, ast.Call):
            func = node.func
            if (
                isinstance(func, ast.Attribute)
                and func.attr == "join"
                and _dotted(func.value) in ("os.path", "path", "osp")
                and node.args
            ):
                first = node.args[0]
                parts = [_str(a) for a in node.args[1:]]
                if any(p is None for p in parts):
                    return None
                rest = "/".join(p for p in parts if p)
                if _is_file_dir(first):
                    return (rest, "file") if rest else None
                head = _str(first)
                if head is None:
                    return None
                return ("/".join(p for p in (head, rest) if p), "either")
        return None

    def path_div(self, node: ast.BinOp, consumed: set[int]) -> tuple[str, str] | None:
        """``Path("a") / "b"`` and ``Path(__file__).parent / "b"`` chains of literals."""
        parts: list[str] = []
        cur: ast.expr = node
        inner: list[ast.AST] = []
        while isinstance(cur, ast.BinOp) and isinstance(cur.op, ast.Div):
            piece = _str(cur.right)
            if piece is None:
                return None
            parts.append(piece)
            inner.append(cur)
            cur = cur.left
        parts.reverse()
        if _is_file_dir(cur):
            anchor = "file"
        elif (
            isinstance(cur, ast.Call)
            and _callee(cur) in ("Path", "PurePath", "PosixPath")
            and len(cur.args) == 1
            and _str(cur.args[0]) is not None
        ):
            parts.insert(0, _str(cur.args[0]) or "")
            anchor = "either"
            inner.append(cur)
        else:
            return None
        consumed.update(id(n) for n in inner)
        rel = "/".join(p for p in parts if p)
        return (rel, anchor) if rel else None


_IMPORT_RE = re.compile(rb"import")
_DYNAMIC_RE = re.compile(rb"import_module|__import__")


def _match_lines(source: bytes, pattern: re.Pattern[bytes]) -> list[int]:
    """The (sorted, 1-based) numbers of the lines where ``pattern`` matches."""
    lines: list[int] = []
    line, pos = 1, 0
    for m in pattern.finditer(source):
        line += source.count(b"\n", pos, m.start())
        pos = m.start()
        if not lines or lines[-1] != line:
            lines.append(line)
    return lines


def _span_has(lines: list[int], node: ast.AST) -> bool:
    """Whether any of the sorted ``lines`` falls within ``node``'s source span."""
    start = getattr(node, "lineno", None)
    if start is None:
        return True
    end = getattr(node, "end_lineno", None) or start
    i = bisect.bisect_left(lines, start)
    return i < len(lines) and lines[i] <= end


def _never_runs(ctx: _Ctx) -> bool:
    """Under ``if __name__ == "__main__":`` or ``if TYPE_CHECKING:`` (for every target)."""
    return never_runs(ctx.guards)


def _catches_import_error(node: ast.expr | None) -> bool:
    if node is None:
        return True
    if isinstance(node, ast.Tuple):
        return any(_catches_import_error(e) for e in node.elts)
    name = _dotted(node)
    return name is not None and name.rsplit(".", 1)[-1] in _IMPORT_ERRORS


def _callee(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _is_file_dir(node: ast.AST) -> bool:
    """``os.path.dirname(__file__)`` (optionally of abspath/realpath), ``Path(__file__).parent``."""
    if isinstance(node, ast.Call) and _dotted(node.func) in ("os.path.dirname", "path.dirname"):
        if len(node.args) != 1:
            return False
        arg = node.args[0]
        if isinstance(arg, ast.Call) and _dotted(arg.func) in (
            "os.path.abspath",
            "os.path.realpath",
        ):
            arg = arg.args[0] if arg.args else arg
        return isinstance(arg, ast.Name) and arg.id == "__file__"
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        inner = node.value
        if (
            isinstance(inner, ast.Call)
            and isinstance(inner.func, ast.Attribute)
            and inner.func.attr in ("resolve", "absolute")
            and not inner.args
        ):
            inner = inner.func.value
        return (
            isinstance(inner, ast.Call)
            and _callee(inner) in ("Path", "PurePath", "PosixPath")
            and len(inner.args) == 1
            and isinstance(inner.args[0], ast.Name)
            and inner.args[0].id == "__file__"
        )
    return False
