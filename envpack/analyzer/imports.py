"""Find every module a processor imports on a worker, without running or importing any of it.

Built on the stdlib ``modulefinder.ModuleFinder`` (its package, ``__path__`` and relative-import
machinery), with three changes the stock finder needs for a coffea environment:

- modules are located on the *target* interpreter's path with its extension suffixes and
  builtin names (another Python than ours), PEP 420 namespace packages included;
- import sites come from the AST (_sites.py), classified by the "what runs" policy below, and
  are cached on disk and parsed on every core (_parsecache.py);
- the walk is breadth-first with a work list: no recursion, and each module's chain is a
  shortest one from a root.

"What runs": module-level imports everywhere (class bodies, if/try/with/for bodies) except under
``TYPE_CHECKING``, ``__main__`` and branches dead for the target (platform flags imported from
other modules included, psutil's ``WINDOWS``); functions a module calls at its top level, its
own or imported from another module (``with lazy_importer():``); literal
``import_module``/``__import__`` strings; ``except ImportError`` fallbacks when the guarded body
may fail (an import that does not resolve, here or in what it imports unguarded, or a ``raise``
in the body); every import of local code. Function-level imports of third-party code are lazy
candidates, followed only when asked for or hinted. Modules that known import hooks create
(toolz's ``tlz.*``) are found where the hook finds them; excluded modules never are.

What may fail is a warning, not an error: an import under ``try/except ImportError`` or
``with suppress(ImportError)``, under a condition of third-party code the walk cannot decide,
inside a module reached only that way, or in a local function the worker never runs (a
name-based call graph from the processor's methods and every module's top level).
"""

from __future__ import annotations

import ast
import modulefinder
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from envpack._cachefile import cache_dir as default_cache_dir
from envpack.analyzer import _resultcache
from envpack.analyzer import data as _data
from envpack.analyzer import hints as _hints
from envpack.analyzer._parsecache import CacheStats, ParseCache, Parser
from envpack.analyzer._sites import DYNAMIC, FROM, MAIN_UNIT, Refs, Site, Summary
from envpack.analyzer.conditions import Cond, Evaluator
from envpack.analyzer.data import DataFile, DataWarning
from envpack.analyzer.interpreter import Target
from envpack.errors import UsageError

ModuleKind = Literal["builtin", "stdlib", "local", "site", "missing"]

# modulefinder's file kinds, plus one for PEP 420 namespace packages.
_PY_SOURCE = modulefinder._PY_SOURCE  # type: ignore[attr-defined]
_PY_COMPILED = modulefinder._PY_COMPILED  # type: ignore[attr-defined]
_C_EXTENSION = modulefinder._C_EXTENSION  # type: ignore[attr-defined]
_PKG_DIRECTORY = modulefinder._PKG_DIRECTORY  # type: ignore[attr-defined]
_C_BUILTIN = modulefinder._C_BUILTIN  # type: ignore[attr-defined]
_NAMESPACE = 100

# Frozen into every CPython binary (importlib's bootstrap), never files; and the running script.
_ALWAYS_THERE = frozenset({"_frozen_importlib", "_frozen_importlib_external", "__main__"})

# Packages that install a sys.meta_path importer serving modules no file holds: prefix ->
# (where the hook finds them, in order; whether it imports every one that exists, or only the
# first). setuptools' and pkg_resources' VendorImporter serve "<pkg>.extern.X" from their
# vendored copy, else the top-level X; toolz's tlz (tlz/_build_tlz.py) serves "tlz.X" from
# cytoolz.X when it is installed and always from toolz.X.
_IMPORT_HOOKS: dict[str, tuple[tuple[str, ...], bool]] = {
    "pkg_resources.extern.": (("pkg_resources._vendor.", ""), False),
    "setuptools.extern.": (("setuptools._vendor.", ""), False),
    "tlz.": (("cytoolz.", "toolz."), True),
}
_MAX_HOPS = 8  # re-exports and aliases followed from one call or flag


@dataclass(frozen=True)
class Module:
    """A reached module; ``chain`` is a shortest import chain from a root, ending in it."""

    name: str
    path: str | None  # the file (package: its __init__), None for builtins and namespaces
    kind: ModuleKind
    is_package: bool
    chain: tuple[str, ...]
    site: str  # "file:line" of the import that first reached it ("" for roots)
    package_path: tuple[str, ...] = ()  # __path__ of a package (several for a namespace)


@dataclass(frozen=True)
class MissingImport:
    """An import that does not resolve; optional ones (guarded by ``except ImportError``) warn."""

    module: str
    site: str
    optional: bool
    chain: tuple[str, ...]  # the chain of the importing module
    function: str = ""  # local code: the function the import is in ("" at module level)
    reason: str = ""  # why it is optional, when that is not the site's own try/except


@dataclass(frozen=True)
class ExcludedImport:
    """A module excluded by the user (never shipped) and every site that imports it."""

    module: str
    sites: tuple[str, ...]


@dataclass(frozen=True)
class LazyCandidate:
    """A function-level import in third-party code that the walk did not follow."""

    module: str
    site: str


@dataclass(frozen=True)
class HintMiss:
    """A hint target that is not an importable module (the caller may try it as a distribution)."""

    hinted: str
    target: str


@dataclass(frozen=True)
class ImportGraph:
    """Everything the walk found; every sequence sorted, so two runs compare equal."""

    roots: tuple[str, ...]  # root module names
    modules: Mapping[str, Module]
    missing: tuple[MissingImport, ...] = ()
    lazy: tuple[LazyCandidate, ...] = ()
    data_files: tuple[DataFile, ...] = ()
    data_warnings: tuple[DataWarning, ...] = ()  # data references not shipped, and why
    hint_misses: tuple[HintMiss, ...] = ()
    warnings: tuple[str, ...] = ()
    search_path: tuple[str, ...] = ()
    excluded: tuple[ExcludedImport, ...] = ()
    # What the parse cache served and what was parsed (not part of the result: a warm and a
    # cold walk compare equal).
    parse_stats: CacheStats = field(default_factory=CacheStats, compare=False, repr=False)

    @property
    def errors(self) -> tuple[MissingImport, ...]:
        return tuple(m for m in self.missing if not m.optional)


def find_imports(
    roots: Sequence[Path],
    target: Target,
    *,
    include_lazy: Iterable[str] | Literal["all"] = (),
    hints: Mapping[str, Sequence[str]] | None = None,
    extra_paths: Sequence[str | os.PathLike[str]] = (),
    cache_dir: Path | Literal[False] | None = None,
    jobs: int | None = None,
    exclude: Iterable[str] = (),
) -> ImportGraph:
    """Walk the imports of ``roots`` (processor files) as ``target`` would run them.

    The search path is each root's directory, then ``extra_paths`` (local code, like
    PYTHONPATH), then ``target.sys_path``. ``include_lazy``: module or top-level names whose
    lazy imports are followed, or ``"all"``. ``hints``: added to the curated table (hints.py).
    ``cache_dir``: where parse results are kept (default ``$XDG_CACHE_HOME/envpack``;
    ``False``: no cache). ``jobs``: processes for cold parsing (default: all cores).
    ``exclude``: modules (with their submodules) never followed; importing one is not an error,
    every site that does is listed in ``ImportGraph.excluded``.
    Raises UsageError for a root that is not a Python file or a syntax error in local code.
    """
    root_paths = [check_root(Path(r)) for r in roots]
    search: list[str] = []
    for entry in [*(str(p.parent) for p in root_paths), *(os.fspath(p) for p in extra_paths)]:
        entry = os.path.abspath(entry)
        if entry not in search:
            search.append(entry)
    for entry in target.sys_path:
        if entry not in search:
            search.append(entry)
    cache = ParseCache(None if cache_dir is False else cache_dir or default_cache_dir())
    parser = Parser(cache, jobs)
    finder = _Finder(search, target, parser, include_lazy, _hints.merged(hints), exclude)
    # Relative data paths are looked for there too: a generated root's job runs from there.
    finder.root_dirs += [os.path.abspath(p) for p in extra_paths]
    try:
        finder.walk(root_paths)
    finally:
        parser.close()
    return replace(finder.graph(), parse_stats=cache.stats)


def check_root(path: Path) -> Path:
    """``path`` made absolute, or a UsageError saying why it is not a Python file to analyze."""
    path = path.absolute()
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, not a Python file")
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    if path.suffix != ".py":
        raise UsageError(f"{path}: not a Python source file (expected a .py file)")
    try:
        head = path.read_bytes()[:8192]
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    if b"\0" in head:
        raise UsageError(f"{path}: not a Python source file (binary content)")
    return path


class _Finder(modulefinder.ModuleFinder):
    """ModuleFinder on another interpreter's path, with AST sites and a breadth-first walk."""

    def __init__(
        self,
        path: list[str],
        target: Target,
        parser: Parser,
        include_lazy: Iterable[str] | Literal["all"],
        hints: dict[str, tuple[str, ...]],
        exclude: Iterable[str] = (),
    ) -> None:
        self.exclude = tuple(sorted({e.strip(".") for e in exclude if e.strip(".")}))
        super().__init__(path, excludes=list(self.exclude))
        # modulefinder.Module's attributes (__file__, __path__) are dynamic; typeshed omits them.
        self.modules: dict[str, Any] = {}
        self.target = target
        self.parser = parser
        self.hints = hints
        self.lazy_all = include_lazy == "all"
        self.lazy_names = frozenset() if include_lazy == "all" else frozenset(include_lazy)
        interp = target.interpreter
        self.platform = interp.platform
        exts = tuple(target.extension_suffixes)
        self.suffixes: tuple[tuple[str, int], ...] = (
            *((s, _C_EXTENSION) for s in exts),
            (".py", _PY_SOURCE),
            (".pyc", _PY_COMPILED),
        )
        std = {os.path.normpath(p) for p in (interp.stdlib, interp.platstdlib, interp.dynload) if p}
        # In a venv, sysconfig's platstdlib (and so the probe's dynload) point into the venv;
        # the real lib-dynload is the sys.path entry of that name.
        std |= {os.path.normpath(p) for p in target.sys_path if p.endswith("lib-dynload")}
        if interp.stdlib:
            std.add(os.path.normpath(os.path.join(interp.stdlib, "lib-dynload")))
        site = {os.path.normpath(p) for p in target.sys_path} - std
        site = {p for p in site if not p.endswith(".zip")}
        # Longest prefix wins: site-packages lives inside the stdlib directory.
        self.prefixes = sorted(
            [(p, "stdlib") for p in std] + [(p, "site") for p in site],
            key=lambda e: len(e[0]),
            reverse=True,
        )
        self.listings: dict[str, tuple[frozenset[str], frozenset[str]] | None] = {}
        self.editable = _editable_mappings(p for p, kind in self.prefixes if kind == "site")
        self.ns_portions: dict[str, list[str]] = {}
        self.meta: dict[str, tuple[tuple[str, ...], str, ModuleKind]] = {}  # chain, site, kind
        self.queue: list[str] = []
        self.ctx: tuple[tuple[str, ...], str] = ((), "")
        self.scanned: set[str] = set()
        self.all_names: dict[str, tuple[str, ...] | None] = {}
        self.pending_stars: dict[str, list[tuple[tuple[str, ...], str, bool]]] = {}
        self.missing: dict[tuple[str, str], MissingImport] = {}
        self.lazy: set[tuple[str, str]] = set()
        self.local_data: dict[str, _data.LocalModule] = {}
        self.hint_misses: set[tuple[str, str]] = set()
        self.warnings: list[str] = []
        self.root_names: list[str] = []
        self.root_dirs: list[str] = []
        self.conditions = Evaluator(
            self.platform, target.version_info, self._top_resolves, self._flag
        )
        self.summaries: dict[str, Summary] = {}
        # Import edges (importer -> (module, optional, function of local code)), to tell which
        # modules are reached only where their failure is caught.
        self.edges: dict[str, set[tuple[str, bool, str]]] = {}
        self.incoming: set[str] = set()
        self.pending_calls: dict[str, list[tuple[str, bool, bool]]] = {}
        self.expanded_calls: set[tuple[str, str, bool, bool]] = set()
        # (module, try group) -> (what its body imports, the fallback's sites, fails to use):
        # fallbacks not taken because the body resolves, taken if a failure hides behind it.
        self.fallbacks: dict[tuple[str, int], tuple[set[str], list[Site], dict[int, bool | None]]]
        self.fallbacks = {}
        self.excluded_sites: dict[str, set[str]] = {}

    # -- locating modules on the target's path (replaces importlib's PathFinder) -------------
    def _listing(self, directory: str) -> tuple[frozenset[str], frozenset[str]] | None:
        if directory in self.listings:
            return self.listings[directory]
        files: set[str] = set()
        dirs: set[str] = set()
        _resultcache.note_import_dir(directory)
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    try:
                        (dirs if entry.is_dir() else files).add(entry.name)
                    except OSError:
                        continue
            result: tuple[frozenset[str], frozenset[str]] | None = (
                frozenset(files),
                frozenset(dirs),
            )
        except OSError:
            result = None
        self.listings[directory] = result
        return result

    def _init_file(self, pkgdir: str) -> tuple[str, int] | None:
        listing = self._listing(pkgdir)
        if listing is None:
            return None
        for suffix, kind in self.suffixes:
            if "__init__" + suffix in listing[0]:
                return os.path.join(pkgdir, "__init__" + suffix), kind
        return None

    def find_module(  # type: ignore[override]  # typeshed's path type is wrong: a list of dirs
        self, name: str, path: list[str] | None, parent: Any = None
    ) -> tuple[None, str | None, tuple[str, str, int]]:
        fullname = f"{parent.__name__}.{name}" if parent is not None else name
        if fullname in self.excludes:
            raise ImportError(name)
        if path is None:
            if name in self.target.builtin_module_names or name in _ALWAYS_THERE:
                return None, None, ("", "", _C_BUILTIN)
            path = self.path
        portions: list[str] = []
        for entry in path:
            listing = self._listing(entry)
            if listing is None:
                continue
            files, dirs = listing
            if name in dirs:
                pkgdir = os.path.join(entry, name)
                if self._init_file(pkgdir) is not None:
                    return None, pkgdir, ("", "", _PKG_DIRECTORY)
                portions.append(pkgdir)
            for suffix, kind in self.suffixes:
                if name + suffix in files:
                    return None, os.path.join(entry, name + suffix), (suffix, "rb", kind)
        if parent is None and name in self.editable:
            found = self._editable_module(name, self.editable[name])
            if found is not None:
                return found
        if portions:
            self.ns_portions[fullname] = portions
            return None, portions[0], ("", "", _NAMESPACE)
        raise ImportError(f"No module named {fullname!r}", name=fullname)

    def _editable_module(
        self, name: str, where: str
    ) -> tuple[None, str | None, tuple[str, str, int]] | None:
        """A top-level name that setuptools' editable finder maps to a source path."""
        if self._init_file(where) is not None:
            return None, where, ("", "", _PKG_DIRECTORY)
        for suffix, kind in self.suffixes:
            _resultcache.note_path(where + suffix)
            if os.path.isfile(where + suffix):
                return None, where + suffix, (suffix, "rb", kind)
        _resultcache.note_path(where)
        if os.path.isdir(where):
            self.ns_portions[name] = [where]
            return None, where, ("", "", _NAMESPACE)
        return None

    def load_module(  # type: ignore[override]  # the file kind is an int, as modulefinder uses it
        self, fqname: str, fp: Any, pathname: str | None, file_info: tuple[str, str, int]
    ) -> Any:
        kind = file_info[2]
        if kind == _PKG_DIRECTORY:
            return self.load_package(fqname, pathname)
        m: Any = self.add_module(fqname)
        if kind == _NAMESPACE:
            m.__path__ = list(self.ns_portions.get(fqname, [pathname]))
        else:
            m.__file__ = pathname
        self._created(fqname, m, scan=kind in (_PY_SOURCE, _PY_COMPILED))
        return m

    def load_package(self, fqname: str, pathname: str | None) -> Any:
        assert pathname is not None
        m: Any = self.add_module(fqname)
        m.__path__ = [pathname, *modulefinder.packagePathMap.get(fqname, [])]
        init = self._init_file(pathname)
        if init is not None:
            m.__file__ = init[0]
            if init[1] == _PY_SOURCE:
                self._pkgutil_namespace(fqname, m, init[0])
        self._created(fqname, m, scan=init is not None and init[1] != _C_EXTENSION)
        return m

    def _pkgutil_namespace(self, fqname: str, m: Any, init: str) -> None:
        """``__path__ = extend_path(...)`` / ``declare_namespace``: every same-named dir counts."""
        parent_name, _, leaf = fqname.rpartition(".")
        parent = self.modules.get(parent_name) if parent_name else None
        search = parent.__path__ if parent is not None else self.path
        others = []
        for entry in search or ():
            listing = self._listing(entry)
            candidate = os.path.join(entry, leaf)
            if listing is not None and leaf in listing[1] and candidate not in m.__path__:
                others.append(candidate)
        if not others:
            return
        _resultcache.note_file(init)
        try:
            text = Path(init).read_bytes()
        except OSError:
            return
        if b"extend_path" in text or b"declare_namespace" in text:
            m.__path__.extend(others)

    def _created(self, fqname: str, m: Any, *, scan: bool) -> None:
        chain, site = self.ctx
        kind = self._classify(fqname, m)
        self.meta[fqname] = ((*chain, fqname), site, kind)
        self.queue.append(fqname)
        if scan:
            _resultcache.note_file(m.__file__)
            self.parser.prefetch(m.__file__, kind == "local")
        else:
            self.scanned.add(fqname)

    def _classify(self, fqname: str, m: Any) -> ModuleKind:
        path = m.__file__ or (m.__path__[0] if m.__path__ else None)
        if path is None:
            return "builtin"
        path = os.path.normpath(path)
        for prefix, kind in self.prefixes:
            if path.startswith(prefix + os.sep):
                return "stdlib" if kind == "stdlib" else "site"
        return "local"

    # -- the walk ------------------------------------------------------------------------------
    def walk(self, roots: list[Path]) -> None:
        for root in roots:
            name = root.stem
            if name in self.modules:
                continue
            self.ctx = ((), "")
            self.root_names.append(name)
            if str(root.parent) not in self.root_dirs:
                self.root_dirs.append(str(root.parent))
            self.load_module(name, None, str(root), (".py", "rb", _PY_SOURCE))
        while True:
            # Breadth-first: a module is scanned only after every module of the previous level,
            # so the first chain recorded for each module is a shortest one.
            while self.queue:
                level, self.queue = self.queue, []
                for name in level:
                    if name not in self.scanned:
                        self._scan(name, self._summary(name))
                    self._after_scan(name)
            if not self._take_fallbacks():
                break

    def _summary(self, name: str) -> Summary | None:
        """The parse summary of a reached module with Python source (None for the others)."""
        summary = self.summaries.get(name)
        if summary is None and name not in self.scanned and name in self.modules:
            m = self.modules[name]
            summary = self.parser.get(m.__file__, self.meta[name][2] == "local")
            self.summaries[name] = summary
        return summary

    def _scan(self, name: str, summary: Summary | None) -> None:
        self.scanned.add(name)
        if summary is None:
            return
        m = self.modules[name]
        kind = self.meta[name][2]
        sites, all_names, _, data_refs, error, facts = summary
        self.all_names[name] = all_names
        if error is not None:
            msg, line, col = error
            if kind == "local":
                raise UsageError(f"{m.__file__}:{line}:{col}: SyntaxError: {msg}")
            self.warnings.append(
                f"{m.__file__}: cannot parse ({msg}, line {line}); imports not read"
            )
            return
        local = kind == "local"
        fails: dict[int, bool | None] = {}
        self._sites(m, sites, fails)
        if kind != "stdlib":
            self._top_calls(m, facts, fails)
        if local:
            self._data_files(m, data_refs)

    def _sites(
        self,
        m: Any,
        sites: Iterable[Site],
        fails: dict[int, bool | None],
        *,
        forced: bool = False,
        optional_all: bool = False,
    ) -> None:
        """Follow ``sites`` of ``m`` as the "what runs" policy says.

        ``forced``: function-level sites of a function that runs at import time (a caller in
        another module calls it at its top level). ``optional_all``: every site is optional
        (an ``except ImportError`` fallback taken because a failure may hide behind its body).
        """
        name = m.__name__
        chain, _, kind = self.meta[name]
        local = kind == "local"
        summary = self.summaries.get(name)
        raising = set(summary[5][5]) if summary is not None else set()
        group_targets: dict[int, set[str]] = {}
        for site in sites:
            skind, module, level, names, line, lazy, guards, groups, anchor = site
            if forced:
                lazy = ""
            live = self.conditions.live(guards, fails, name)
            if live is False:
                if not forced:
                    self._note_fallback(name, site, fails, group_targets)
                continue
            # In third-party code, an import under a condition we cannot evaluate that does not
            # resolve is taken as guarded (the installed package works): a warning, not an error.
            # So is an except-ImportError fallback that may or may not run.
            fallback = any(
                want and cond[0] == "fail" and fails.get(cond[1]) is None for cond, want in guards
            )
            optional = optional_all or bool(groups) or fallback or (live is None and not local)
            where = f"{m.__file__}:{line}"
            if lazy and not local:
                absname = self._absolute(m, module, level, anchor, names)
                if absname is None:
                    continue
                if kind != "site" or not self._lazy_wanted(absname):
                    if kind == "site":
                        self.lazy.add((absname, where))
                    continue
                # Asked for, but a function-level import may well name an optional extra.
                optional = True
            function = lazy if local else ""
            ok, reached = self._import_site(
                m, chain, skind, module, level, names, anchor, where, optional, function
            )
            for gid in groups:
                # A body that raises ImportError itself may fail with every import resolved.
                before = fails.get(gid, None if gid in raising else False)
                fails[gid] = True if not ok else before
                group_targets.setdefault(gid, set()).update(reached)

    def _note_fallback(
        self,
        name: str,
        site: Site,
        fails: dict[int, bool | None],
        group_targets: dict[int, set[str]],
    ) -> None:
        """An ``except ImportError`` site not followed because its ``try`` body resolves."""
        guards = site[6]
        for cond, want in guards:
            if want and cond[0] == "fail" and fails.get(cond[1]) is False:
                trial = {**fails, cond[1]: None}
                if self.conditions.live(guards, trial, name) is not False:
                    key = (name, cond[1])
                    entry = self.fallbacks.setdefault(
                        key, (set(group_targets.get(cond[1], ())), [], trial)
                    )
                    entry[1].append(site)
                return

    def _take_fallbacks(self) -> bool:
        """Follow the fallbacks whose ``try`` body reaches an import that does not resolve.

        ``try: from .a import x / except ImportError: from .compat import x``: when ``.a`` (or
        what it imports without a guard of its own) fails, the fallback is what runs.
        """
        if not self.fallbacks:
            return False
        failing = {
            miss.chain[-1] for miss in self.missing.values() if not miss.optional and miss.chain
        }
        if not failing:
            return False
        importers: dict[str, set[str]] = {}
        for importer, edges in self.edges.items():
            for target, optional, _ in edges:
                if not optional:
                    importers.setdefault(target, set()).add(importer)
        fails_here = set(failing)
        stack = list(failing)
        while stack:
            for importer in importers.get(stack.pop(), ()):
                if importer not in fails_here:
                    fails_here.add(importer)
                    stack.append(importer)
        taken = False
        for key, (targets, sites, trial) in list(self.fallbacks.items()):
            if targets & fails_here:
                del self.fallbacks[key]
                self._sites(self.modules[key[0]], sites, trial, optional_all=True)
                taken = True
        return taken

    def _top_calls(self, m: Any, facts: Any, fails: dict[int, bool | None]) -> None:
        """Imported functions ``m`` calls at its top level: their imports run at import time."""
        calls = facts[3]
        if not calls:
            return
        name = m.__name__
        binds = facts[1]
        for callee, attr, _line, guards, groups, with_ in calls:
            live = self.conditions.live(guards, fails, name)
            if live is False:
                continue
            optional = bool(groups) or live is None
            for module, level, battr in binds.get(callee, ()):
                base = self._absolute(m, module, level, None, ()) if level else module
                path = ".".join(p for p in (battr, attr) if p)
                if base and path:
                    self._call(base, path, optional, with_, 0)

    def _call(self, base: str, path: str, optional: bool, with_: bool, hops: int) -> None:
        """A call of ``base.path`` at import time: expand it once ``base`` is scanned."""
        target, rest = base, path.split(".")
        while len(rest) > 1 and f"{target}.{rest[0]}" in self.modules:
            target, rest = f"{target}.{rest[0]}", rest[1:]
        meta = self.meta.get(target)
        if meta is None or meta[2] != "site" or hops > _MAX_HOPS:
            return  # the stdlib's functions, and local code's, are walked whole anyway
        member = ".".join(rest)
        if target in self.scanned:
            self._expand_call(target, member, optional, with_, hops)
        else:
            self.pending_calls.setdefault(target, []).append((member, optional, with_))

    def _expand_call(self, name: str, member: str, optional: bool, with_: bool, hops: int) -> None:
        """Follow the imports of function ``member`` of ``name`` (and of what it calls there)."""
        key = (name, member, optional, with_)
        summary = self.summaries.get(name)
        if key in self.expanded_calls or summary is None or hops > _MAX_HOPS:
            return
        self.expanded_calls.add(key)
        m = self.modules[name]
        binds, aliases = summary[5][1], summary[5][2]
        if member in aliases:  # ``lazy_importer = nothing if PY315 else backport``
            for alias in aliases[member]:
                self._expand_call(name, alias, optional, with_, hops + 1)
            return
        head, _, rest = member.partition(".")
        if head in binds:  # a re-export (``from .core.decorators import njit``)
            for module, level, attr in binds[head]:
                base = self._absolute(m, module, level, None, ()) if level else module
                path = ".".join(p for p in (attr, rest) if p)
                if base and path:
                    self._call(base, path, optional, with_, hops + 1)
            return
        if rest.count(".") > 0:
            return  # deeper than Class.method: an attribute of some object
        # A class runs its constructor, and as a context manager its __enter__/__exit__.
        dunders: tuple[str, ...] = ("__init__", "__new__", "__post_init__")
        if with_:
            dunders += ("__enter__", "__exit__")
        stack = [member, *(f"{member}.{d}" for d in dunders)]
        importing = {site[5] for site in summary[0] if site[5]}
        if not importing:
            return  # no function of the module imports anything
        # What the functions call matters only if some importing function is not called yet.
        graph = {} if importing <= set(stack) else self.parser.cache.call_graph(m.__file__, summary)
        closure: set[str] = set()
        while stack:
            unit = stack.pop()
            if unit not in closure:
                closure.add(unit)
                for mentioned in graph.get(unit, ()):
                    stack.extend(aliases.get(mentioned, (mentioned,)))
        # What the called function itself imports runs for sure; what the name-based call
        # graph adds beyond it may not (a name mentioned is not a call made): a missing import
        # there is a warning, as third-party code's undecidable conditions are.
        direct = {member, *(f"{member}.{d}" for d in dunders)}
        for units, opt in ((direct, optional), (closure - direct, True)):
            chosen = [site for site in summary[0] if site[5] in units]
            if chosen:
                self._sites(m, chosen, {}, forced=True, optional_all=opt)

    def _after_scan(self, name: str) -> None:
        m = self.modules[name]
        chain = self.meta[name][0]
        for target in self.hints.get(name, ()):
            self.ctx = (chain, f"hint:{name}")
            found, _ = self._resolve(target, None, 0)
            if found is None:
                self.hint_misses.add((name, target))
            else:
                self._edge(name, found.__name__, False, "")
        for importer_chain, where, optional in self.pending_stars.pop(name, []):
            self._star(m, importer_chain, where, optional)
        for member, optional, with_ in self.pending_calls.pop(name, []):
            self._expand_call(name, member, optional, with_, 0)

    def _flag(self, here: str, module: str, level: int, flag: str) -> tuple[Cond, str] | None:
        """What ``flag`` of ``module`` (imported by ``here``) is bound to, and where."""
        m = self.modules.get(here)
        for _ in range(_MAX_HOPS):
            if m is None:
                return None
            name = self._absolute(m, module, level, None, ()) if level else module
            if not name:
                return None
            summary = self._summary(name)
            if summary is None:
                return None
            flags, binds = summary[5][0], summary[5][1]
            if flag in flags:
                return flags[flag], name
            bound = binds.get(flag, ())
            if len(bound) != 1 or not bound[0][2]:
                return None
            module, level, flag = bound[0]  # re-exported: ``from ._common import WINDOWS``
            m = self.modules.get(name)
        return None

    def _lazy_wanted(self, absname: str) -> bool:
        if self.lazy_all:
            return True
        parts = absname.split(".")
        return any(".".join(parts[:i]) in self.lazy_names for i in range(1, len(parts) + 1))

    def _top_resolves(self, top: str) -> bool:
        """Whether the target finds the top-level module ``top`` (``find_spec`` tests)."""
        try:
            self.find_module(top, None)
        except ImportError:
            return False
        return True

    def _absolute(
        self, m: Any, module: str, level: int, anchor: Any, names: tuple[str, ...]
    ) -> str | None:
        if level == 0:
            return module or None
        if anchor is None or anchor == "__package__":
            base = m.__name__ if m.__path__ else m.__name__.rpartition(".")[0]
        elif anchor == "__name__":
            base = m.__name__
        else:
            base = str(anchor)
        parts = base.split(".") if base else []
        if level - 1 >= len(parts):
            return None
        base = ".".join(parts[: len(parts) - (level - 1)])
        if module:
            return f"{base}.{module}"
        if len(names) == 1 and names[0] != "*":
            return f"{base}.{names[0]}"
        return base

    def _import_site(
        self,
        m: Any,
        chain: tuple[str, ...],
        skind: int,
        module: str,
        level: int,
        names: tuple[str, ...],
        anchor: Any,
        where: str,
        optional: bool,
        function: str = "",
    ) -> tuple[bool, list[str]]:
        """Follow one import; (whether it succeeds at run time, the modules it reaches)."""
        self.ctx = (chain, where)
        if skind == DYNAMIC:
            absname = self._absolute(m, module, level, anchor, ())
            if absname is None:
                self._missing("." * level + module, where, optional, chain, function)
                return False, []
            module, level = absname, 0
        found, missing = self._resolve(module, m, level)
        if found is None and missing is not None and not self._excluded(missing):
            found = self._hooked(missing)
        if found is None:
            if missing is not None and missing.startswith(".") and not module and names:
                missing += names[0]  # "from . import x" outside a package: name the x
            self._missing(missing or module, where, optional, chain, function)
            return False, []
        ok = True
        reached = [found.__name__]
        if skind == FROM:
            for sub in names:
                if sub == "*":
                    if found.__name__ in self.scanned:
                        self._star(found, chain, where, optional)
                    else:
                        pending = self.pending_stars.setdefault(found.__name__, [])
                        pending.append((chain, where, optional))
                elif found.__path__:
                    subname = f"{found.__name__}.{sub}"
                    if self._excluded(subname):
                        self._missing(subname, where, optional, chain, function)
                        ok = False
                        continue
                    self.ctx = (chain, where)
                    # Not a submodule: a name defined in the package (cannot be checked).
                    sm: Any = self.import_module(sub, subname, found)
                    if sm is None and any(subname.startswith(p) for p in _IMPORT_HOOKS):
                        sm = self._hooked(subname)
                    if sm is not None:
                        reached.append(sm.__name__)
        for name in reached:
            self._edge(m.__name__, name, optional, function)
        return ok, reached

    def _edge(self, importer: str, name: str, optional: bool, function: str) -> None:
        """``importer`` imports ``name`` (and so its parent packages)."""
        edges = self.edges.setdefault(importer, set())
        if (name, optional, function) in edges:
            return  # and so are its parents
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            target = ".".join(parts[:i])
            if target != importer and target in self.modules:
                edges.add((target, optional, function))
                self.incoming.add(target)

    def _hooked(self, missing: str) -> Any:
        """A module that a known import hook serves (``_IMPORT_HOOKS``), else None."""
        for prefix, (places, every) in _IMPORT_HOOKS.items():
            if missing.startswith(prefix):
                rest = missing[len(prefix) :]
                first = None
                for place in places:
                    found, _ = self._resolve(place + rest, None, 0)
                    if found is not None:
                        first = first or found
                        if not every:
                            break
                return first
        return None

    def _excluded(self, name: str) -> str | None:
        """The ``exclude`` entry that covers module ``name`` (itself or a parent package)."""
        for entry in self.exclude:
            if name == entry or name.startswith(entry + "."):
                return entry
        return None

    def _star(self, pkg: Any, chain: tuple[str, ...], where: str, optional: bool) -> None:
        """``from pkg import *`` imports the submodules that ``pkg.__all__`` names."""
        if not pkg.__path__:
            return
        for sub in self.all_names.get(pkg.__name__) or ():
            self.ctx = (chain, where)
            found: Any = self.import_module(sub, f"{pkg.__name__}.{sub}", pkg)
            if found is not None and chain:
                self._edge(chain[-1], found.__name__, optional, "")

    def _resolve(self, name: str, caller: Any, level: int) -> tuple[Any, str | None]:
        """Import ``name`` (and its parents); (module, None) or (None, first missing name)."""
        try:
            parent = self.determine_parent(caller, level)
        except (ImportError, KeyError):
            return None, "." * level + name
        if name == "os.path" and parent is None:
            self._resolve("os", None, 0)
            name = "ntpath" if self.platform == "win32" else "posixpath"
        cur: Any = parent
        if not name:
            return cur, None
        for part in name.split("."):
            fq = f"{cur.__name__}.{part}" if cur is not None else part
            mod: Any
            if cur is not None and cur.__path__ is None:
                # A submodule of a plain module (six.moves, os.path): only sys.modules tricks
                # at run time make it importable; it lives in that module's file.
                return cur, None
            mod = self.import_module(part, fq, cur)
            if mod is None:
                return None, fq
            cur = mod
        return cur, None

    def _missing(
        self, name: str, where: str, optional: bool, chain: tuple[str, ...], function: str = ""
    ) -> None:
        excluded = self._excluded(name)
        if excluded is not None:
            self.excluded_sites.setdefault(excluded, set()).add(where)
            return
        if name in self.hints and name not in self.modules:
            # ``--hint tlz.curried=toolz``: something else provides it at run time.
            for target in self.hints[name]:
                self.ctx = (chain, f"hint:{name}")
                found, _ = self._resolve(target, None, 0)
                if found is None:
                    self.hint_misses.add((name, target))
                elif chain:
                    self._edge(chain[-1], found.__name__, optional, function)
            return
        top = name.lstrip(".").split(".")[0]
        if top in self.target.stdlib_module_names and top not in self.modules:
            # A stdlib module this platform lacks (winreg, _winapi, …): guarded at run time.
            optional = True
        key = (name, where)
        seen = self.missing.get(key)
        if seen is None or (seen.optional and not optional):  # the site reached unguarded too
            self.missing[key] = MissingImport(name, where, optional, chain, function)

    def _data_files(self, m: Any, data: _data.DataSummary) -> None:
        local = _data.LocalModule(m.__name__, m.__file__, m.__path__ is not None, data)
        self.local_data[m.__name__] = local

    # -- the result ----------------------------------------------------------------------------
    def graph(self) -> ImportGraph:
        modules: dict[str, Module] = {}
        for name in sorted(self.modules):
            m = self.modules[name]
            chain, site, kind = self.meta[name]
            modules[name] = Module(
                name=name,
                path=m.__file__,
                kind=kind,
                is_package=m.__path__ is not None,
                chain=chain,
                site=site,
                package_path=tuple(m.__path__ or ()),
            )
        lazy = tuple(
            LazyCandidate(mod, site) for mod, site in sorted(self.lazy) if mod not in modules
        )
        found = _data.resolve(self.local_data, [os.getcwd(), *self.root_dirs])
        missing = self._judged_missing()
        warnings = list(self.warnings)
        for miss in missing:
            if miss.optional and miss.chain and self.meta[miss.chain[-1]][2] == "local":
                if miss.reason:
                    warnings.append(
                        f"{miss.site}: optional import '{miss.module}' is not installed: "
                        + miss.reason
                    )
                else:
                    warnings.append(f"optional import {miss.module} not found ({miss.site})")
        return ImportGraph(
            roots=tuple(self.root_names),
            modules=modules,
            missing=tuple(sorted(missing, key=lambda x: (x.module, x.site))),
            lazy=lazy,
            data_files=found.files,
            data_warnings=found.warnings,
            hint_misses=tuple(HintMiss(h, t) for h, t in sorted(self.hint_misses)),
            warnings=tuple(sorted(set(warnings))),
            search_path=tuple(self.path),
            excluded=tuple(
                ExcludedImport(e, tuple(sorted(self.excluded_sites.get(e, ()))))
                for e in self.exclude
            ),
        )

    def _judged_missing(self) -> list[MissingImport]:
        """Missing imports, made optional where the worker never runs them or a failure is
        caught further up: in a local function nothing on the worker calls, or in a module
        imported only under try/except ImportError, a run-time condition of third-party code,
        or from such functions."""
        unreached = self._unreached() if any(m.function for m in self.missing.values()) else {}
        # Modules every worker imports: reached from a root by imports that are not optional,
        # and not only from local functions that never run.
        sure = set(self.root_names)
        stack = list(sure)
        while stack:
            importer = stack.pop()
            for target, optional, function in self.edges.get(importer, ()):
                if optional or target in sure or (importer, function) in unreached:
                    continue
                sure.add(target)
                stack.append(target)
        out: list[MissingImport] = []
        for miss in self.missing.values():
            importer = miss.chain[-1] if miss.chain else ""
            why = unreached.get((importer, miss.function)) if miss.function else None
            if not miss.optional and why is not None:
                reason = f"in {miss.function}(), which the worker never runs: {why}"
                miss = replace(miss, optional=True, reason=reason)
            elif not miss.optional and importer in self.incoming and importer not in sure:
                reason = (
                    f"{importer} itself is imported only where its failure is caught "
                    "(try/except ImportError, a run-time condition of third-party code) or "
                    "from functions the worker never runs"
                )
                miss = replace(miss, optional=True, reason=reason)
            out.append(miss)
        return out

    def _unreached(self) -> dict[tuple[str, str], str]:
        """Local functions the worker never runs, each with why (a name-based call graph).

        What runs: every local module's top level, and the methods of the classes defined in
        the processor files (the processor's methods); then every function or class those name,
        by bare name (resolved in the module and through its imports of local modules) or by
        attribute name (any local function or method so named), transitively.
        """
        units: dict[str, dict[str, Refs]] = {}
        binds: dict[str, Any] = {}
        for name, summary in self.summaries.items():
            if self.meta[name][2] == "local":
                units[name], binds[name] = summary[5][4], summary[5][1]
        heads: dict[str, dict[str, list[str]]] = {}
        by_attr: dict[str, list[tuple[str, str]]] = {}
        for mod, funcs in units.items():
            for unit in funcs:
                if unit in ("", MAIN_UNIT):
                    continue
                parts = unit.split(".")
                heads.setdefault(mod, {}).setdefault(parts[0], []).append(unit)
                for part in parts:
                    by_attr.setdefault(part, []).append((mod, unit))

        def named(mod: str, name: str, hops: int = 0) -> list[tuple[str, str]]:
            found = [(mod, u) for u in heads.get(mod, {}).get(name, ())]
            if found or hops > _MAX_HOPS:
                return found
            for module, level, attr in binds[mod].get(name, ()):
                base = self._absolute(self.modules[mod], module, level, None, ()) or ""
                if not level:
                    base = module
                if attr and base in units and f"{base}.{attr}" not in units:
                    found += named(base, attr, hops + 1)
            return found

        calls: dict[tuple[str, str], set[tuple[str, str]]] = {}
        for mod, funcs in units.items():
            for unit, (names, attrs) in funcs.items():
                out = calls.setdefault((mod, unit), set())
                for name in names:
                    out.update(named(mod, name))
                for attr in attrs:
                    out.update(by_attr.get(attr, ()))
        starts = [(mod, "") for mod in units]
        starts += [(root, u) for root in self.root_names for u in units.get(root, ()) if "." in u]
        reached = set(starts)
        stack = list(starts)
        while stack:
            for callee in calls.get(stack.pop(), ()):
                if callee not in reached:
                    reached.add(callee)
                    stack.append(callee)
        callers: dict[tuple[str, str], set[tuple[str, str]]] = {}
        for caller, callees in calls.items():
            for callee in callees:
                callers.setdefault(callee, set()).add(caller)
        roots = ", ".join(f"{r}.py" for r in self.root_names)
        why: dict[tuple[str, str], str] = {}
        for mod, funcs in units.items():
            for unit in funcs:
                key = (mod, unit)
                if unit in ("", MAIN_UNIT) or key in reached:
                    continue
                by = callers.get(key, set()) - {key}
                if any(u == MAIN_UNIT for _, u in by):
                    why[key] = 'it is called only under if __name__ == "__main__":'
                elif by:
                    who = ", ".join(sorted(f"{u}()" for _, u in by))
                    why[key] = f"it is called only from {who}, which never run either"
                else:
                    why[key] = (
                        "nothing calls it (not the processor's methods, the classes defined "
                        f"in {roots}, nor any module's top level)"
                    )
        return why


def _editable_mappings(site_dirs: Iterable[str]) -> dict[str, str]:
    """Top-level name -> source path from setuptools' ``__editable___*_finder.py`` hooks.

    PEP 660 editable installs of flat-layout projects are not on sys.path: a .pth installs a
    meta-path finder whose ``MAPPING`` literal says where each top-level package lives.
    """
    mapping: dict[str, str] = {}
    for site in sorted(site_dirs):
        _resultcache.note_dir(site)
        try:
            names = sorted(n for n in os.listdir(site) if n.startswith("__editable__"))
        except OSError:
            continue
        for fname in names:
            if not fname.endswith("_finder.py"):
                continue
            _resultcache.note_file(os.path.join(site, fname))
            try:
                tree = ast.parse(Path(site, fname).read_bytes())
            except (OSError, SyntaxError, ValueError):
                continue
            for node in tree.body:
                target = node.targets[0] if isinstance(node, ast.Assign) else None
                if isinstance(node, ast.AnnAssign):
                    target = node.target
                value = getattr(node, "value", None)
                if isinstance(target, ast.Name) and target.id == "MAPPING" and value is not None:
                    try:
                        literal = ast.literal_eval(value)
                    except ValueError:
                        continue
                    if isinstance(literal, dict):
                        for key, path in literal.items():
                            if isinstance(key, str) and isinstance(path, str):
                                mapping.setdefault(key, path)
    return mapping


__all__ = [
    "DataFile",
    "ExcludedImport",
    "HintMiss",
    "ImportGraph",
    "LazyCandidate",
    "MissingImport",
    "Module",
    "ModuleKind",
    "find_imports",
]
