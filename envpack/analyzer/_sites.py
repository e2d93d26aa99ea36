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
- condition: ``("tc",)`` TYPE_CHECKING, ``("main",)`` ``__name__ == "__main__"``,
  ``("ver", op, rhs, sub)``, ``("plat", op, rhs)``, ``("platsw", prefixes)``,
  ``("spec", name)`` (``importlib.util.find_spec("name")``: true when it resolves),
  ``("osname", op, rhs)``, ``("platsys", op, rhs)``, ``("const", bool)``, ``("fail", gid)``
  (the try body ``gid`` had an import that did not resolve), ``("and", …)``, ``("or", …)``,
  ``("not", c)`` and ``("?",)`` for anything else.
- data_refs (local code only): what data.py's ``scan`` finds (data.py owns its format).
"""

from __future__ import annotations

import ast
import bisect
import re
from typing import Any

from envpack.analyzer import data as _data

IMPORT, FROM, DYNAMIC = 0, 1, 2

Cond = tuple[Any, ...]
Guard = tuple[Cond, bool]
Site = tuple[int, str, int, tuple[str, ...], int, bool, tuple[Guard, ...], tuple[int, ...], Any]
DataSummary = _data.DataSummary
Summary = tuple[
    tuple[Site, ...], tuple[str, ...] | None, bool, DataSummary, tuple[str, int, int] | None
]

UNKNOWN: Cond = ("?",)

_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})
_DYNAMIC_FUNCS = frozenset({"import_module", "__import__"})
_CMP_OPS: dict[type[ast.cmpop], str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
}


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
        data_refs = _data.scan(tree) if local else ()
    except RecursionError:
        return (), None, False, (), ("RecursionError: nesting too deep to analyze", 0, 0)
    return tuple(ex.sites), ex.all_names, extends, data_refs, None


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
                        cond = self.cond(node.value)
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
            cond = self.cond(node.test)
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

    # -- expressions: dynamic imports, calls of the module's own functions -------------------
    def exprs(self, nodes: list[Any], ctx: _Ctx) -> None:
        want_calls = not ctx.lazy and bool(self.funcs)
        if not self.local and not any(
            (want_calls and _span_has(self.call_lines, n))
            or (self.has_dynamic and _span_has(self.dynamic_lines, n))
            for n in nodes
        ):
            return
        stack = list(nodes)
        while stack:
            node = stack.pop()
            if isinstance(node, ast.Lambda):
                continue
            if isinstance(node, ast.Call):
                self.call(node, ctx, want_calls)
            stack.extend(ast.iter_child_nodes(node))

    def call(self, node: ast.Call, ctx: _Ctx, want_calls: bool) -> None:
        func = node.func
        name = _callee(node)
        if name in _DYNAMIC_FUNCS and node.args and self.has_dynamic:
            self.dynamic(node, ctx)
        if want_calls and isinstance(func, ast.Name) and func.id in self.funcs:
            self.expand(func.id, ctx)

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

    # -- conditions -------------------------------------------------------------------------
    def cond(self, node: ast.expr) -> Cond:
        if isinstance(node, ast.BoolOp):
            op = "and" if isinstance(node.op, ast.And) else "or"
            return (op, *(self.cond(v) for v in node.values))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ("not", self.cond(node.operand))
        if isinstance(node, ast.Name):
            if node.id == "TYPE_CHECKING":
                return ("tc",)
            return self.conds.get(node.id, UNKNOWN)
        if isinstance(node, ast.Attribute) and node.attr == "TYPE_CHECKING":
            return ("tc",)
        if isinstance(node, ast.Constant) and isinstance(node.value, bool | int):
            return ("const", bool(node.value))
        if isinstance(node, ast.Call):
            func = node.func
            spec = _spec_probe(node)
            if spec is not None:
                return ("spec", spec)
            if (
                isinstance(func, ast.Attribute)
                and func.attr == "startswith"
                and _dotted(func.value) == "sys.platform"
                and len(node.args) == 1
            ):
                arg = node.args[0]
                prefixes = _str_seq(arg) if isinstance(arg, ast.Tuple) else None
                single = _str(arg)
                if single is not None:
                    prefixes = (single,)
                if prefixes is not None:
                    return ("platsw", prefixes)
            return UNKNOWN
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            return self.compare(node.left, node.ops[0], node.comparators[0])
        return UNKNOWN

    def compare(self, left: ast.expr, op: ast.cmpop, right: ast.expr) -> Cond:
        if (
            isinstance(op, ast.Is | ast.IsNot)
            and isinstance(right, ast.Constant)
            and right.value is None
            and isinstance(left, ast.Call)
        ):
            spec = _spec_probe(left)
            if spec is not None:
                return ("spec", spec) if isinstance(op, ast.IsNot) else ("not", ("spec", spec))
        sym = _CMP_OPS.get(type(op))
        if sym is None:
            return UNKNOWN
        lname = _dotted(left)
        if lname == "__name__" and _str(right) == "__main__" and sym in ("==", "!="):
            return ("main",) if sym == "==" else ("not", ("main",))
        if _str(left) == "__main__" and _dotted(right) == "__name__" and sym in ("==", "!="):
            return ("main",) if sym == "==" else ("not", ("main",))
        ver = _version_ref(left)
        if ver is not None:
            rhs = _int_tuple(right)
            if rhs is not None and sym not in ("in", "not in"):
                return ("ver", sym, rhs, ver)
            return UNKNOWN
        kind = {"sys.platform": "plat", "os.name": "osname"}.get(lname or "")
        if (
            kind is None
            and isinstance(left, ast.Call)
            and not left.args
            and _dotted(left.func) in ("platform.system", "_platform.system")
        ):
            kind = "platsys"
        if kind is None:
            return UNKNOWN
        if sym in ("in", "not in"):
            seq = _str_seq(right)
            return (kind, sym, seq) if seq is not None else UNKNOWN
        rhs_s = _str(right)
        if rhs_s is None or sym not in ("==", "!="):
            return UNKNOWN
        return (kind, sym, rhs_s)


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


def _spec_probe(node: ast.Call) -> str | None:
    """``importlib.util.find_spec("x")`` (or ``find_spec``/``pkgutil.find_loader``): ``"x"``."""
    name = _dotted(node.func) or ""
    if name.rsplit(".", 1)[-1] not in ("find_spec", "find_loader") or len(node.args) != 1:
        return None
    return _str(node.args[0])


def _catches_import_error(node: ast.expr | None) -> bool:
    if node is None:
        return True
    if isinstance(node, ast.Tuple):
        return any(_catches_import_error(e) for e in node.elts)
    name = _dotted(node)
    return name is not None and name.rsplit(".", 1)[-1] in _IMPORT_ERRORS


def _dotted(node: ast.AST) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _callee(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _str(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _str_seq(node: ast.AST) -> tuple[str, ...] | None:
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        out = tuple(_str(e) for e in node.elts)
        if all(s is not None for s in out):
            return tuple(s for s in out if s is not None)
    return None


def _int_tuple(node: ast.AST) -> tuple[int, ...] | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return (node.value,)
    if isinstance(node, ast.Tuple):
        vals = [e.value for e in node.elts if isinstance(e, ast.Constant)]
        ints = [v for v in vals if isinstance(v, int) and not isinstance(v, bool)]
        if len(ints) == len(node.elts):
            return tuple(ints)
    return None


def _version_ref(node: ast.AST) -> tuple[str, int] | None:
    """``sys.version_info`` (full), ``[:n]`` (slice), ``[n]`` / ``.major`` (index)."""
    if _dotted(node) == "sys.version_info":
        return ("all", 0)
    if isinstance(node, ast.Attribute) and _dotted(node.value) == "sys.version_info":
        idx = {"major": 0, "minor": 1, "micro": 2}.get(node.attr)
        return ("idx", idx) if idx is not None else None
    if isinstance(node, ast.Subscript) and _dotted(node.value) == "sys.version_info":
        sl = node.slice
        if isinstance(sl, ast.Constant) and isinstance(sl.value, int):
            return ("idx", sl.value)
        if (
            isinstance(sl, ast.Slice)
            and sl.lower is None
            and sl.step is None
            and isinstance(sl.upper, ast.Constant)
            and isinstance(sl.upper.value, int)
        ):
            return ("slice", sl.upper.value)
    return None
