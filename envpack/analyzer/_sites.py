"""Extract a file's import sites from its AST, in a target-independent, marshal-able form.

The walker (imports.py) decides what to follow; this module only records *where* each import
is and *under which conditions* it runs, so the result can be cached on disk and computed in a
worker process. Everything returned is built from tuples, str, int, bool and None (marshal).

A summary is ``(sites, all_names, extends_path, data_refs, error, facts)``:

- site: ``(kind, module, level, names, line, lazy, guards, groups, anchor)``; kind is
  ``IMPORT``, ``FROM`` or ``DYNAMIC`` (a literal ``import_module``/``__import__`` string);
  ``lazy`` is the function the site is in (``"f"``, ``"Class.method"``; a nested function
  counts as its outermost one), ``""`` at module level and in functions the module calls at
  its top level; ``guards`` is a tuple of ``(condition, wanted truth)``; ``groups`` the ids of
  the ``try: … except ImportError`` and ``with suppress(ImportError):`` bodies the site is in
  (it is then optional); ``anchor`` is the ``package=`` of a dynamic relative import.
- facts: what other modules need to know of this one (see ``Facts``): its platform flags,
  the names it imports, its aliases of functions, the imported callables it calls at its top
  level, local code's call graph, and the ``try`` bodies that may raise ImportError themselves.
- condition: see conditions.py (the language, and its evaluator).
- data_refs (local code only): what data.py's ``scan`` finds (data.py owns its format).
"""

from __future__ import annotations

import ast
import bisect
import collections
import functools
import itertools
import operator
import re
import sys
import types
from collections.abc import Iterable
from typing import Any

from envpack.analyzer import data as _data
from envpack.analyzer.conditions import UNKNOWN, Cond, Guard, condition, never_runs
from envpack.analyzer.conditions import callee as _callee
from envpack.analyzer.conditions import dotted as _dotted
from envpack.analyzer.conditions import str_seq as _str_seq

IMPORT, FROM, DYNAMIC = 0, 1, 2

Site = tuple[int, str, int, tuple[str, ...], int, str, tuple[Guard, ...], tuple[int, ...], Any]
DataSummary = _data.DataSummary
# A name bound by an import at module level: (module, level, attribute); the attribute is ""
# when the name is the module itself (``import x.y as z``; ``import x.y`` binds ``x``).
Binding = tuple[str, int, str]
# A module-level call of an imported name: (name, attribute path after it, line, guards,
# groups, used as a context manager).
TopCall = tuple[str, str, int, tuple[Guard, ...], tuple[int, ...], bool]
# A function's references: bare names and attribute names.
Refs = tuple[tuple[str, ...], tuple[str, ...]]
Facts = tuple[
    dict[str, Cond],  # flags: names bound once to a condition the evaluator can decide
    dict[str, tuple[Binding, ...]],  # imported names (every binding, in order)
    dict[str, tuple[str, ...]],  # aliases: ``f = g``, ``f = g if c else h``
    tuple[TopCall, ...],
    # local code: functions ("f", "C.m") -> refs, and "" (module level) and "<main>" (under
    # ``if __name__ == "__main__":``); third-party code: none (see call_graph())
    dict[str, Refs],
    tuple[int, ...],  # try groups whose body may raise ImportError itself (``raise``)
    # third-party code with function-level sites: its functions' spans (unit, first, last line)
    tuple[tuple[str, int, int], ...],
]
Summary = tuple[
    tuple[Site, ...],
    tuple[str, ...] | None,
    bool,
    DataSummary,
    tuple[str, int, int] | None,
    Facts,
]

NO_FACTS: Facts = ({}, {}, {}, (), {}, (), ())
MAIN_UNIT = "<main>"

_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})
_DYNAMIC_FUNCS = frozenset({"import_module", "__import__"})


def summarize(
    source: bytes, filename: str, local: bool, code: types.CodeType | None = None
) -> Summary:
    """Parse ``source`` and extract its import sites; a parse failure is returned, not raised.

    ``code``: the module's code compiled from exactly these bytes (a fresh ``.pyc``), if known;
    third-party function bodies the extractor would skip are then blanked before the parse
    (see ``elide``): the same summary for a fraction of the parse.
    """
    import_lines = _match_lines(source, _IMPORT_RE)
    tree = None
    if code is not None and not local:
        try:
            elided = elide(source, code, import_lines)
            tree = None if elided is None else ast.parse(elided, filename)
        except Exception:  # a shortcut never fails a summary
            tree = None  # not what the bytecode promised: parse the file as it is
    if tree is None:
        try:
            tree = ast.parse(source, filename)
        except SyntaxError as exc:
            error = (str(exc.msg), exc.lineno or 0, exc.offset or 0)
            return (), None, False, (), error, NO_FACTS
        except (ValueError, UnicodeError, RecursionError, MemoryError) as exc:
            return (), None, False, (), (f"{type(exc).__name__}: {exc}", 0, 0), NO_FACTS
    dynamic_lines = (
        _match_lines(source, _DYNAMIC_RE)
        if b"import_module" in source or b"__import__" in source  # (finds scan 50x faster)
        else []
    )
    extends = b"extend_path" in source or b"declare_namespace" in source
    ex = _Extractor(tree, local, import_lines, dynamic_lines)
    ex.source = source
    try:
        ex.run()
    except RecursionError:
        return (), None, False, (), ("RecursionError: nesting too deep to analyze", 0, 0), NO_FACTS
    data_refs = _data.scan(tree) if local else ()
    return tuple(ex.sites), ex.all_names, extends, data_refs, None, ex.facts()


class _Ctx:
    __slots__ = ("cls", "groups", "guards", "lazy", "loops")

    def __init__(
        self,
        guards: tuple[Guard, ...] = (),
        groups: tuple[int, ...] = (),
        lazy: str = "",
        loops: dict[str, tuple[str, ...]] | None = None,
        cls: str = "",
    ) -> None:
        self.guards = guards
        self.groups = groups
        self.lazy = lazy  # the function whose body this is ("" at module level)
        self.loops = loops or {}
        self.cls = cls  # "C." inside the body of class C at module level

    def with_guard(self, cond: Cond, want: bool) -> _Ctx:
        return _Ctx((*self.guards, (cond, want)), self.groups, self.lazy, self.loops, self.cls)

    def with_group(self, gid: int) -> _Ctx:
        return _Ctx(self.guards, (*self.groups, gid), self.lazy, self.loops, self.cls)

    def with_loop(self, name: str, seq: tuple[str, ...]) -> _Ctx:
        loops = {**self.loops, name: seq}
        return _Ctx(self.guards, self.groups, self.lazy, loops, self.cls)

    def in_class(self, name: str) -> _Ctx:
        return _Ctx(self.guards, self.groups, self.lazy, self.loops, f"{self.cls}{name}.")

    def as_lazy(self, name: str) -> _Ctx:
        # A function body runs later, outside any try of its definition site; guards on the
        # definition (TYPE_CHECKING, version) still hold.
        return _Ctx(self.guards, (), self.lazy or self.cls + name, {})


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
        self.sites: list[Site] = []
        self.all_names: tuple[str, ...] | None = None
        self.funcs: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        self.classes: set[str] = set()
        self.conds: dict[str, Cond] = {}
        self.seqs: dict[str, tuple[str, ...]] = {}
        self.expanded: set[str] = set()
        self.next_gid = 0
        self.binds: dict[str, tuple[Binding, ...]] = {}
        self.assigned: dict[str, int] = {}
        self.aliases: dict[str, tuple[str, ...]] = {}
        self.calls: list[TopCall] = []
        self.with_calls: set[int] = set()  # ids of the Call nodes of ``with`` items
        self.refs: dict[str, tuple[set[str], set[str]]] = {}
        self.raising: list[int] = []

    # -- module-level facts used by the walk -----------------------------------------------
    def run(self) -> None:
        self.bind_imports(self.tree.body)
        assigned = self.assigned
        for node in self.tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self.funcs[node.name] = node
            elif isinstance(node, ast.ClassDef):
                self.classes.add(node.name)
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
                        # ``_mswindows``; psutil's ``WINDOWS``, here or imported from a
                        # sibling); plain constants are not: ``HAS_X = False`` is usually
                        # flipped by a later ``try: import x``.
                        cond = condition(node.value, self.flag)
                        if cond != UNKNOWN and cond[0] != "const":
                            self.conds[target.id] = cond
                        alias = _alias_names(node.value)
                        if alias:
                            self.aliases[target.id] = alias
        for name, count in assigned.items():
            if count > 1 or name in self.binds:
                self.conds.pop(name, None)
            if count > 1:
                self.aliases.pop(name, None)
        known = self.funcs.keys() | self.binds.keys() | self.classes
        self.aliases = {k: v for k, v in self.aliases.items() if set(v) <= known}
        self.body(self.tree.body, _Ctx())

    def bind_imports(self, stmts: list[ast.stmt]) -> None:
        """The names the module's top level imports (in if/try/with bodies too)."""
        for node in stmts:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.bind(alias.asname, (alias.name, 0, ""))
                    else:
                        top = alias.name.split(".")[0]
                        self.bind(top, (top, 0, ""))
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name != "*":
                        binding = (node.module or "", node.level, alias.name)
                        self.bind(alias.asname or alias.name, binding)
            elif isinstance(node, ast.If | ast.With | ast.AsyncWith):
                self.bind_imports(node.body)
                self.bind_imports(getattr(node, "orelse", []))
            elif isinstance(node, ast.Try | ast.TryStar):
                self.bind_imports(node.body)
                for handler in node.handlers:
                    self.bind_imports(handler.body)
                self.bind_imports(node.orelse)

    def bind(self, name: str, binding: Binding) -> None:
        have = self.binds.get(name, ())
        if binding not in have:
            self.binds[name] = (*have, binding)

    def flag(self, name: str) -> Cond:
        """The condition a (dotted) name stands for: a flag of this module or an imported one."""
        cond = self.conds.get(name)
        if cond is not None:
            return cond
        head, _, rest = name.partition(".")
        bound = self.binds.get(head, ())
        if len(bound) != 1 or head in self.assigned:
            return UNKNOWN
        module, level, attr = bound[0]
        path = ".".join(p for p in (attr, rest) if p)
        if not path:
            return UNKNOWN
        where, _, leaf = path.rpartition(".")
        # ("flag", module, level, name): the flag ``name`` of ``module`` (relative to this one
        # when level > 0), evaluated in that module's context.
        return ("flag", ".".join(p for p in (module, where) if p), level, leaf)

    def facts(self) -> Facts:
        units = {k: (tuple(sorted(n)), tuple(sorted(a))) for k, (n, a) in self.refs.items()}
        lazy_sites = not self.local and any(site[5] for site in self.sites)
        return (
            self.conds,
            self.binds,
            self.aliases,
            tuple(self.calls),
            units,
            tuple(self.raising),
            tuple(_unit_spans(self.tree)) if lazy_sites else (),
        )

    # -- statements ---------------------------------------------------------------------------
    def body(self, stmts: list[ast.stmt], ctx: _Ctx) -> None:
        for stmt in stmts:
            self.stmt(stmt, ctx)

    def stmt(self, node: ast.stmt, ctx: _Ctx) -> None:
        # Third-party code: a function body without "import" can hold no site; skip it unread.
        # Module-level code is read whole: any call there may run a function that imports.
        if not self.local and ctx.lazy and not _span_has(self.import_lines, node):
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                self.add(IMPORT, alias.name, 0, (), node.lineno, ctx, None)
        elif isinstance(node, ast.ImportFrom):
            names = tuple(a.name for a in node.names)
            self.add(FROM, node.module or "", node.level, names, node.lineno, ctx, None)
        elif isinstance(node, ast.If):
            self.exprs([node.test], ctx)
            cond = condition(node.test, self.flag)
            self.body(node.body, ctx.with_guard(cond, True))
            self.body(node.orelse, ctx.with_guard(cond, False))
        elif isinstance(node, ast.Try | ast.TryStar):
            self.try_(node, ctx)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            self.decorators(node.decorator_list, ctx)
            self.exprs([*node.args.defaults, *(d for d in node.args.kw_defaults if d)], ctx)
            inner = ctx.as_lazy(node.name)
            if self.local:
                self.unit(inner.lazy)
                if not ctx.lazy and node.decorator_list:
                    # A decorator may register the function to be called by others.
                    self.ref(ctx, name=inner.lazy)
            if self.local or _span_has(self.import_lines, node):
                self.body(node.body, inner)
        elif isinstance(node, ast.ClassDef):
            self.decorators(node.decorator_list, ctx)
            self.exprs([*node.bases, *(k.value for k in node.keywords)], ctx)
            self.body(node.body, ctx if ctx.lazy else ctx.in_class(node.name))
        elif isinstance(node, ast.For | ast.AsyncFor):
            self.exprs([node.iter], ctx)
            inner = ctx
            seq = _str_seq(node.iter)
            if seq is None and isinstance(node.iter, ast.Name):
                seq = self.seqs.get(node.iter.id)
            if seq is not None and isinstance(node.target, ast.Name):
                inner = ctx.with_loop(node.target.id, seq)
            self.body(node.body, inner)
            self.body(node.orelse, ctx)
        elif isinstance(node, ast.While):
            self.exprs([node.test], ctx)
            self.body(node.body, ctx)
            self.body(node.orelse, ctx)
        elif isinstance(node, ast.With | ast.AsyncWith):
            items = [item.context_expr for item in node.items]
            self.with_calls.update(id(e) for e in items if isinstance(e, ast.Call))
            self.exprs(items, ctx)
            if any(self.suppresses_import_error(e) for e in items):
                # ``with suppress(ImportError):`` is ``try: … except ImportError: pass``.
                gid = self.next_gid
                self.next_gid += 1
                self.body(node.body, ctx.with_group(gid))
            else:
                self.body(node.body, ctx)
        elif isinstance(node, ast.Match):
            self.exprs([node.subject], ctx)
            for case in node.cases:
                self.body(case.body, ctx)
        else:
            self.exprs([node], ctx)

    def try_(self, node: ast.Try | ast.TryStar, ctx: _Ctx) -> None:
        # A handler that re-raises (``except ModuleNotFoundError: print(…); raise``) guards
        # nothing: the import's failure still reaches the importer.
        guarding = [_catches_import_error(h.type) and not _reraises(h.body) for h in node.handlers]
        if not any(guarding):
            self.body(node.body, ctx)
            for handler in node.handlers:
                self.body(handler.body, ctx)
            self.body(node.orelse, ctx)
            self.body(node.finalbody, ctx)
            return
        gid = self.next_gid
        self.next_gid += 1
        if _raises(node.body):
            # ``if dask_too_old: raise ImportError`` (ndcctools.taskvine): the fallback may run
            # even when every import of the body resolves.
            self.raising.append(gid)
        failed: Cond = ("fail", gid)
        self.body(node.body, ctx.with_group(gid))
        for handler, guards in zip(node.handlers, guarding, strict=True):
            if guards:
                self.body(handler.body, ctx.with_guard(failed, True))
            else:
                self.body(handler.body, ctx)
        self.body(node.orelse, ctx.with_guard(failed, False))
        self.body(node.finalbody, ctx)

    def suppresses_import_error(self, node: ast.expr) -> bool:
        """``contextlib.suppress(ImportError, …)``, under any name the module imports it by."""
        if not isinstance(node, ast.Call) or not node.args:
            return False
        name = _dotted(node.func)
        if name is None:
            return False
        head, _, rest = name.partition(".")
        for module, _level, attr in self.binds.get(head, ()):
            full = ".".join(p for p in (module, attr, rest) if p)
            if full == "contextlib.suppress":
                return any(_catches_import_error(a) for a in node.args)
        return False

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

    # -- the call graph -------------------------------------------------------------------
    def unit(self, name: str) -> tuple[set[str], set[str]]:
        refs = self.refs.get(name)
        if refs is None:
            refs = self.refs[name] = (set(), set())
        return refs

    def ref(self, ctx: _Ctx, name: str = "", attr: str = "") -> None:
        """Local code: ``ctx``'s function (or the module level) refers to ``name``/``.attr``."""
        if ctx.lazy:
            unit = ctx.lazy
        elif any(want and cond[0] == "main" for cond, want in ctx.guards):
            unit = MAIN_UNIT
        elif never_runs(ctx.guards):
            return  # TYPE_CHECKING
        else:
            unit = ""
        names, attrs = self.unit(unit)
        if name:
            names.add(name)
        if attr:
            attrs.add(attr)

    def decorators(self, nodes: list[ast.expr], ctx: _Ctx) -> None:
        """``@name`` calls ``name`` when the definition runs; ``@f(…)`` calls ``f``."""
        self.exprs(nodes, ctx)
        if not ctx.lazy:
            for node in nodes:
                if isinstance(node, ast.Name | ast.Attribute):
                    self.callee(node, node.lineno, ctx, False)

    def callee(self, func: ast.expr, line: int, ctx: _Ctx, with_: bool) -> None:
        """A module-level call of ``func``: expand the module's own function, record others."""
        if isinstance(func, ast.Name):
            for name in self.aliases.get(func.id, (func.id,)):
                if name in self.funcs:
                    self.expand(name, ctx)
                elif name in self.binds:
                    self.calls.append((name, "", line, ctx.guards, ctx.groups, with_))
            return
        full = _dotted(func)
        if full is not None and "." in full:
            head, _, rest = full.partition(".")
            if head in self.binds and head not in self.assigned:
                self.calls.append((head, rest, line, ctx.guards, ctx.groups, with_))

    # -- expressions: dynamic imports, calls of the module's own functions -------------------
    def exprs(self, nodes: list[Any], ctx: _Ctx) -> None:
        want_calls = not ctx.lazy and bool(self.funcs or self.binds)
        if (
            not self.local
            and not want_calls
            and not (self.has_dynamic and any(_span_has(self.dynamic_lines, n) for n in nodes))
        ):
            return
        stack = list(nodes)
        if not self.local:
            # Third-party code: only calls matter (own functions, imported ones, import_module).
            while stack:
                node = stack.pop()
                if isinstance(node, ast.Call):
                    self.call(node, ctx, want_calls)
                elif isinstance(node, _LEAVES):
                    continue
                stack.extend(ast.iter_child_nodes(node))
            return
        while stack:
            node = stack.pop()
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                self.ref(ctx, name=node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                self.ref(ctx, attr=node.attr)
            elif isinstance(node, ast.Lambda):
                # runs later, not here; but what it names is referred to (the call graph)
                for sub in ast.walk(node.body):
                    if isinstance(sub, ast.Name):
                        self.ref(ctx, name=sub.id)
                    elif isinstance(sub, ast.Attribute):
                        self.ref(ctx, attr=sub.attr)
                continue
            if isinstance(node, ast.Call):
                self.call(node, ctx, want_calls)
            stack.extend(ast.iter_child_nodes(node))

    def call(self, node: ast.Call, ctx: _Ctx, want_calls: bool) -> None:
        func = node.func
        name = _callee(node)
        if name in _DYNAMIC_FUNCS and node.args and self.has_dynamic:
            self.dynamic(node, ctx)
        if want_calls:
            self.callee(func, node.lineno, ctx, id(node) in self.with_calls)

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
        self.body(self.funcs[fname].body, _Ctx(ctx.guards, ctx.groups, "", {}))


# Expressions that hold no call (a lambda's body runs later, not where it is written).
_LEAVES = (ast.Constant, ast.Name, ast.Lambda, ast.expr_context)

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


def call_graph(
    source: bytes, spans: tuple[tuple[str, int, int], ...], aliases: Iterable[str]
) -> dict[str, tuple[str, ...]]:
    """Third-party code: the module's functions ("f", "C.m") -> its functions their lines name.

    ``spans`` and ``aliases`` come from the module's facts. Computed only for the few modules
    a caller elsewhere runs a function of at import time, not for every file summarized.
    """
    names = {unit for unit, _, _ in spans if "." not in unit} | set(aliases)
    if not names:
        return {}
    pattern = re.compile(rb"\b(?:" + b"|".join(re.escape(n.encode()) for n in names) + rb")\b")
    mentions: list[tuple[int, str]] = []
    line, pos = 1, 0
    for m in pattern.finditer(source):
        line += source.count(b"\n", pos, m.start())
        pos = m.start()
        mentions.append((line, m.group().decode()))
    graph: dict[str, tuple[str, ...]] = {}
    for unit, start, end in spans:
        i = bisect.bisect_left(mentions, (start, ""))
        named: set[str] = set()
        while i < len(mentions) and mentions[i][0] <= end:
            named.add(mentions[i][1])
            i += 1
        named.discard(unit)
        if named:
            graph[unit] = tuple(sorted(named))
    return graph


def _alias_names(node: ast.expr) -> tuple[str, ...]:
    """``g`` or ``g if c else h``: the names a module-level assignment may bind."""
    if isinstance(node, ast.Name):
        return (node.id,)
    if (
        isinstance(node, ast.IfExp)
        and isinstance(node.body, ast.Name)
        and isinstance(node.orelse, ast.Name)
    ):
        return (node.body.id, node.orelse.id)
    return ()


def _reraises(body: list[ast.stmt]) -> bool:
    """An except handler that ends by raising (at its own level, not under an if)."""
    return any(isinstance(stmt, ast.Raise) for stmt in body)


def _raises(stmts: list[ast.stmt]) -> bool:
    """Whether a ``raise`` runs directly in ``stmts`` (not in functions defined there)."""
    stack: list[ast.AST] = list(stmts)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Raise):
            return True
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        stack.extend(n for n in ast.iter_child_nodes(node) if isinstance(n, ast.stmt))
    return False


def _unit_spans(tree: ast.Module) -> list[tuple[str, int, int]]:
    """The module's functions and methods ("f", "C.m") with their first and last lines."""
    spans: list[tuple[str, int, int]] = []
    stack: list[tuple[str, list[ast.stmt]]] = [("", tree.body)]
    while stack:
        prefix, body = stack.pop()
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                spans.append((prefix + node.name, node.lineno, node.end_lineno or node.lineno))
            elif isinstance(node, ast.ClassDef):
                stack.append((f"{prefix}{node.name}.", node.body))
    return spans


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


# -- eliding what the extractor never reads -----------------------------------------------------
# Most of a library is function bodies the extractor skips unread (no "import" in them), yet
# ``ast.parse`` builds them: most of a cold analysis's parse. With the module's code object in
# hand (its fresh .pyc), each function's extent is known without parsing: the instruction that
# loads a function's code carries the ``def`` statement's position (its line and column, and
# the line its body ends on). Such a body is replaced by blank lines and a ``pass`` on its last
# line, so every line number, every ``def``'s first and last line and everything outside the
# body are what the parse of the whole file gives, and so is the summary.

_CO_OPTIMIZED = 0x1  # functions, lambdas and comprehensions; not module or class bodies
_LOAD_CONST = 100
_EXTENDED_ARG = 144
_DEF = rb"(?:async[ \t]+)?def[ \t]+(\w+)"
# String literals as the tokenizer reads them (atomic: a string ends at its first closing quote).
_STR = (
    rb"(?>'''(?:\\.|[^\\])*?'''"
    rb'|"""(?:\\.|[^\\])*?"""'
    rb"|'(?:\\.|[^'\\\n])*'"
    rb'|"(?:\\.|[^"\\\n])*")'
)
# A def's header up to the colon that ends it: strings, comments, brackets, line joins.
_HEADER = (
    rb"(?P<str>" + _STR + rb")"
    rb"|(?P<fpre>(?<!\w)[rRbB]?[fF][rR]?(?=['\"]))"
    rb"|\#[^\n]*|\\\n|(?P<open>[(\[{])|(?P<close>[)\]}])|(?P<colon>:)|(?P<nl>\n)"
    rb"|(?P<lam>\blambda\b)"
)
# A string statement opening a body (a docstring; not an f-string), alone on its last line.
_DOC = rb"([ \t]+)(?:[rRuU]|[bB][rR]?|[rR][bB])?" + _STR + rb"[ \t]*(?:\#[^\n]*)?$"
# Names as code mentions them: comments, strings (but f-strings: their fields are code) and
# attributes skipped, a def's own name apart (what looks like an f-string, ``if"x"``, is read
# as one: more names only keep more bodies).
_TOKENS = (
    rb"[^#'\"A-Za-z_.0-9]+|[0-9]\w*"  # (runs that hold no name: one step each)
    rb"|\#[^\n]*|%s(?:[fF][rRbB]?|[rRbB][fF])"
    + _STR
    + rb"%s|[rRbBuU]{0,2}"
    + _STR
    + rb"|def[ \t]+\w+|\.[ \t]*\w+|%s[A-Za-z_]\w*%s"
)


class _Patterns:
    """Compiled on first use: a warm analysis parses nothing and should not pay for them."""

    def __init__(self) -> None:
        self.define = re.compile(_DEF)
        self.header = re.compile(_HEADER, re.S)
        self.header_special = re.compile(rb"['\"#\\]|lambda")
        self.doc = re.compile(_DOC, re.S | re.M)
        self.code_word = re.compile(_TOKENS % (b"", b"", b"(", b")"), re.S)  # the names only
        self.fstring = re.compile(_TOKENS % (b"(", b")", b"", b""), re.S)  # the f-strings only
        self.dedented: dict[int, re.Pattern[bytes]] = {}


@functools.cache
def _patterns() -> _Patterns:
    return _Patterns()


DefPos = tuple[types.CodeType, int, int, int]  # (code, def line, last line, column)


class _Text:
    """The source, its lines and where each starts."""

    def __init__(self, source: bytes) -> None:
        self.source = source
        self.lines = source.split(b"\n")
        ends = map(operator.add, map(len, self.lines), itertools.repeat(1))
        self.starts = [0, *itertools.accumulate(ends)]

    def line_of(self, pos: int) -> int:
        """The 1-based line holding offset ``pos``."""
        return bisect.bisect_right(self.starts, pos)

    def blankable(self, col: int, first: int, end: int) -> bool:
        """Lines ``first..end`` hold no statement at ``col`` or less, and no encoding cookie."""
        if first <= 2 or first > end:
            return False
        dedented = _patterns().dedented
        pattern = dedented.get(col)
        if pattern is None:
            pattern = dedented[col] = re.compile(rb"\n(?![ \t]{%d})[ \t]*[^ \t\n#]" % (col + 1))
        # (from the newline before ``first``: a literal first character searches fast)
        return pattern.search(self.source, self.starts[first - 1] - 1, self.starts[end] - 1) is None

    def blanked(self, spans: Iterable[tuple[int, int, bytes]]) -> bytes:
        """The source with lines ``first..end`` blank but for ``indent + "pass"`` on ``end``."""
        out = self.lines.copy()
        for first, end, indent in spans:
            out[first - 1 : end - 1] = [b""] * (end - first)
            out[end - 1] = indent + b"pass"
        return b"\n".join(out)

    def body(self, pos: DefPos) -> tuple[int | None, int | None]:
        """(the first line after a def's header, the same when all the body may be blanked)."""
        func, line, end, col = pos
        first = _body_line(self, func.co_name, line, end, col)
        return first, first if first is not None and self.blankable(col, first, end) else None

    def after_doc(self, first: int, end: int, col: int) -> tuple[int, bytes] | None:
        """(first line after the body's docstring, the body's indent) when the rest may go."""
        m = _patterns().doc.match(self.source, self.starts[first - 1], self.starts[end] - 1)
        if m is None:
            return None
        after = self.line_of(m.end()) + 1
        return (after, m.group(1)) if self.blankable(col, after, end) else None


def elide(source: bytes, code: types.CodeType, import_lines: list[int]) -> bytes | None:
    """``source`` with the function bodies a third-party summary never reads blanked, or None.

    ``code`` must be compiled from ``source`` (the caller checked the .pyc is fresh). Blanked:
    a body without a line that mentions "import", or the part after its docstring when only the
    docstring does (the extractor reads such a body, and finds nothing in a docstring). Kept:
    a top-level function that module-level code may call (the extractor reads its body as
    module level), i.e. whose name the code outside function bodies mentions, in what the
    compiler dropped too (``if False:``). Anything unexpected (a one-line def, a header the
    scan cannot read, a body line not indented past its ``def``, CR line ends) keeps the body;
    a result that does not parse makes the caller parse the file as it is.
    """
    if b"\r" in source or sys.version_info[:2] != (3, 11):  # (3.11's opcodes and f-strings)
        return None
    text = _Text(source)
    # (a def, the first line after its header, the same when all its body may be blanked)
    tops = [(pos, *text.body(pos)) for pos in _defs(code)]
    methods = [(pos, *text.body(pos)) for c in _class_bodies(code) for pos in _nested(c)]
    # The top-level functions whose bodies count as module level, to a fixed point: the names
    # the text outside function bodies mentions, then those their bodies mention, and so on.
    outside = text.blanked((body, pos[2], b"") for pos, _, body in (*tops, *methods) if body)
    names = {pos[0].co_name.encode() for pos, _, _ in tops}
    words = _code_words(outside) if _may_mention(outside, names) else collections.Counter()
    called: set[int] = set()
    while True:
        more = {
            i
            for i, (pos, _, _) in enumerate(tops)
            if i not in called and words[pos[0].co_name.encode()] > 0
        }
        if not more:
            break
        called |= more
        for i in more:
            pos, _, body = tops[i]
            inside = source[text.starts[body - 1] : text.starts[pos[2]] - 1] if body else b""
            if _may_mention(inside, names):  # (left out of ``outside``: read it now)
                words += _code_words(inside)
    spans: list[tuple[int, int, bytes]] = []
    todo = [(d, i in called) for i, d in enumerate((*tops, *methods))]
    while todo:
        (pos, first, body), expanded = todo.pop()
        func, line, end, col = pos
        if not expanded and first is not None:
            if not _has_line(import_lines, line, end):
                if body is not None:
                    spans.append((body, end, text.lines[line - 1][:col] + b" "))
                    continue
            else:
                rest = text.after_doc(first, end, col)
                if rest is not None and not _has_line(import_lines, rest[0], end):
                    spans.append((rest[0], end, rest[1]))
                    continue
        todo.extend(((inner, *text.body(inner)), False) for inner in _nested(func))
    return text.blanked(spans) if spans else None


def _may_mention(text: bytes, names: set[bytes]) -> bool:
    """Whether ``text`` may name one of ``names`` as code: cheap counts, to skip reading it.

    What is left of each name's occurrences after those that cannot be code: ``def name``,
    ``.name`` (an attribute), ``"name"`` and ``'name'`` (strings: ``__all__``). Each is told by
    the characters before it, so none is subtracted twice; a name within a longer one is left
    in, which only reads more.
    """
    for n in names:
        found = text.count(n)
        if found and found > (
            text.count(b"def " + n)
            + text.count(b"." + n)
            + text.count(b'"' + n + b'"')
            + text.count(b"'" + n + b"'")
        ):
            return True
    return False


def _code_words(text: bytes) -> collections.Counter[bytes]:
    """How often ``text`` mentions each name as code (not as an attribute nor a def's name)."""
    words = collections.Counter(_patterns().code_word.findall(text))
    if re.search(rb"[fF][rRbB]?['\"]|[rRbB][fF]['\"]", text):
        for fstring in _patterns().fstring.findall(text):
            if fstring:
                words.update(_code_words(fstring[fstring.index(fstring[-1:]) + 1 : -1]))
    return words


def _nested(code: types.CodeType) -> list[DefPos]:
    """The defs in ``code`` and in the class bodies in it (at any depth)."""
    found = list(_defs(code))
    classes = _class_bodies(code)
    while classes:
        body = classes.pop()
        found.extend(_defs(body))
        classes.extend(_class_bodies(body))
    return found


def _defs(parent: types.CodeType) -> Iterable[DefPos]:
    """The functions ``def`` statements in ``parent`` make: (code, def line, last line, col)."""
    raw = parent.co_code
    positions: list[Any] | None = None
    for index, const in enumerate(parent.co_consts):
        if not isinstance(const, types.CodeType) or not const.co_flags & _CO_OPTIMIZED:
            continue
        if const.co_name.startswith("<"):  # lambdas, comprehensions
            continue
        offset = _load_const_offset(raw, index)
        if offset is None:
            continue
        if positions is None:
            positions = list(parent.co_positions())
        line, end, col, _ = positions[offset // 2]
        if line is None or end is None or col is None:
            continue
        yield const, line, end, col


def _class_bodies(parent: types.CodeType) -> list[types.CodeType]:
    return [
        c
        for c in parent.co_consts
        if isinstance(c, types.CodeType) and not c.co_flags & _CO_OPTIMIZED
    ]


def _load_const_offset(raw: bytes, index: int) -> int | None:
    """The offset of the instruction ``LOAD_CONST index`` in ``raw`` (3.11 wordcode)."""
    if index > 0xFFFF:
        return None
    if index > 255:
        needle = bytes((_EXTENDED_ARG, index >> 8, _LOAD_CONST, index & 0xFF))
        skip = 2
    else:
        needle = bytes((_LOAD_CONST, index))
        skip = 0
    pos = raw.find(needle)
    while pos >= 0:
        if pos % 2 == 0 and (skip or pos < 2 or raw[pos - 2] != _EXTENDED_ARG):
            return pos + skip
        pos = raw.find(needle, pos + 1)
    return None


def _has_line(lines: list[int], start: int, end: int) -> bool:
    i = bisect.bisect_left(lines, start)
    return i < len(lines) and lines[i] <= end


def _body_line(text: _Text, name: str, line: int, end: int, col: int) -> int | None:
    """The first line after a def's header when its body starts on a line of its own, else None.

    The header is scanned from ``def`` to the colon that ends it; strings, comments, brackets
    and line joins are read as Python's tokenizer reads them. An f-string (3.12 nests quotes
    in them) or a lambda outside brackets stops the scan: the body is then kept.
    """
    if line > len(text.lines) or end <= line or not name.isascii():
        return None
    first_line = text.lines[line - 1]
    if first_line[:col].strip(b" \t"):
        return None
    word = name.encode()
    if first_line.startswith(b"def " + word, col):
        after = col + 4 + len(word)
    else:
        m = _patterns().define.match(first_line, col)
        if m is None or m.group(1) != word:
            return None
        after = m.end()
    rest = first_line[after:]
    if rest[:1].isalnum() or rest[:1] == b"_":
        return None  # another name that starts with this one
    if (
        rest.rstrip(b" \t").endswith(b":")
        and _patterns().header_special.search(rest) is None
        and rest.count(b"(") == rest.count(b")")
        and rest.count(b"[") == rest.count(b"]")
        and rest.count(b"{") == rest.count(b"}")
    ):
        return line + 1  # the common case: a header on one line, ending with its colon
    depth = 0
    starts = text.starts
    for tok in _patterns().header.finditer(text.source, starts[line - 1] + after, starts[end] - 1):
        kind = tok.lastgroup
        if kind == "open":
            depth += 1
        elif kind == "close":
            depth -= 1
        elif kind == "fpre" or (kind in ("lam", "nl") and not depth):
            return None
        elif kind == "colon" and not depth:
            header = text.line_of(tok.end())
            rest = text.source[tok.end() : starts[header] - 1].strip(b" \t")
            if rest and not rest.startswith(b"#"):
                return None  # the body starts on the header's line
            return header + 1
    return None
