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
``TYPE_CHECKING``, ``__main__`` and branches dead for the target; functions a module calls at its
own top level; literal ``import_module``/``__import__`` strings; ``except ImportError`` fallbacks
only when the guarded import does not resolve; every import of local code. Function-level
imports of third-party code are lazy candidates, followed only when asked for or hinted.
"""

from __future__ import annotations

import ast
import modulefinder
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from envpack._cachefile import cache_dir as default_cache_dir
from envpack.analyzer import hints as _hints
from envpack.analyzer._parsecache import ParseCache, Parser
from envpack.analyzer._sites import DYNAMIC, FROM, Summary
from envpack.analyzer.conditions import Evaluator
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

# Packages that install a sys.meta_path importer serving "<pkg>.extern.X" from their vendored
# copy (or the top-level X when unbundled): setuptools' and pkg_resources' VendorImporter.
_VENDOR_HOOKS = {
    "pkg_resources.extern.": "pkg_resources._vendor.",
    "setuptools.extern.": "setuptools._vendor.",
}


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


@dataclass(frozen=True)
class LazyCandidate:
    """A function-level import in third-party code that the walk did not follow."""

    module: str
    site: str


@dataclass(frozen=True)
class DataFile:
    """A file or directory that local code opens by a literal relative path."""

    path: str  # absolute, on this machine
    relpath: str  # as written in the code
    # What relpath is relative to at run time: the referencing module's directory (written
    # as ``Path(__file__).parent / …``), or the working directory (a bare literal path).
    base: Literal["file", "cwd"]
    site: str
    is_dir: bool
    # Where it must be at run time, relative to the root local modules are imported from
    # (which is also the job's working directory): relpath, or the module's package dir + relpath.
    arcname: str = ""


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
    hint_misses: tuple[HintMiss, ...] = ()
    warnings: tuple[str, ...] = ()
    search_path: tuple[str, ...] = ()

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
) -> ImportGraph:
    """Walk the imports of ``roots`` (processor files) as ``target`` would run them.

    The search path is each root's directory, then ``extra_paths`` (local code, like
    PYTHONPATH), then ``target.sys_path``. ``include_lazy``: module or top-level names whose
    lazy imports are followed, or ``"all"``. ``hints``: added to the curated table (hints.py).
    ``cache_dir``: where parse results are kept (default ``$XDG_CACHE_HOME/envpack``;
    ``False``: no cache). ``jobs``: processes for cold parsing (default: all cores).
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
    finder = _Finder(search, target, parser, include_lazy, _hints.merged(hints))
    try:
        finder.walk(root_paths)
    finally:
        parser.close()
    return finder.graph()


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
    ) -> None:
        super().__init__(path)
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
        self.pending_stars: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        self.missing: dict[tuple[str, str], MissingImport] = {}
        self.lazy: set[tuple[str, str]] = set()
        self.data: dict[tuple[str, str], DataFile] = {}
        self.hint_misses: set[tuple[str, str]] = set()
        self.warnings: list[str] = []
        self.root_names: list[str] = []
        self.root_dirs: list[str] = []
        self.conditions = Evaluator(self.platform, target.version_info, self._top_resolves)

    # -- locating modules on the target's path (replaces importlib's PathFinder) -------------
    def _listing(self, directory: str) -> tuple[frozenset[str], frozenset[str]] | None:
        if directory in self.listings:
            return self.listings[directory]
        files: set[str] = set()
        dirs: set[str] = set()
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
            if os.path.isfile(where + suffix):
                return None, where + suffix, (suffix, "rb", kind)
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
        # Breadth-first: a module is scanned only after every module of the previous level,
        # so the first chain recorded for each module is a shortest one.
        while self.queue:
            level, self.queue = self.queue, []
            for name in level:
                if name not in self.scanned:
                    local = self.meta[name][2] == "local"
                    self._scan(name, self.parser.get(self.modules[name].__file__, local))
                self._after_scan(name)

    def _scan(self, name: str, summary: Summary) -> None:
        self.scanned.add(name)
        m = self.modules[name]
        chain, _, kind = self.meta[name]
        sites, all_names, _, data_refs, error = summary
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
        fails: dict[int, bool] = {}
        for site in sites:
            skind, module, level, names, line, lazy, guards, groups, anchor = site
            live = self.conditions.live(guards, fails)
            if live is False:
                continue
            # In third-party code, an import under a condition we cannot evaluate that does not
            # resolve is taken as guarded (the installed package works): a warning, not an error.
            optional = bool(groups) or (live is None and not local)
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
            ok = self._import_site(m, chain, skind, module, level, names, anchor, where, optional)
            for gid in groups:
                fails[gid] = fails.get(gid, False) or not ok
        if local:
            self._data_files(m, data_refs)

    def _after_scan(self, name: str) -> None:
        m = self.modules[name]
        chain = self.meta[name][0]
        for target in self.hints.get(name, ()):
            self.ctx = (chain, f"hint:{name}")
            found, _ = self._resolve(target, None, 0)
            if found is None:
                self.hint_misses.add((name, target))
        for importer_chain, where in self.pending_stars.pop(name, []):
            self._star(m, importer_chain, where)

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
    ) -> bool:
        self.ctx = (chain, where)
        if skind == DYNAMIC:
            absname = self._absolute(m, module, level, anchor, ())
            if absname is None:
                self._missing("." * level + module, where, optional, chain)
                return False
            module, level = absname, 0
        found, missing = self._resolve(module, m, level)
        if found is None and missing is not None:
            found = self._vendored(missing)
        if found is None:
            if missing is not None and missing.startswith(".") and not module and names:
                missing += names[0]  # "from . import x" outside a package: name the x
            self._missing(missing or module, where, optional, chain)
            return False
        if skind == FROM:
            for sub in names:
                if sub == "*":
                    if found.__name__ in self.scanned:
                        self._star(found, chain, where)
                    else:
                        self.pending_stars.setdefault(found.__name__, []).append((chain, where))
                elif found.__path__:
                    self.ctx = (chain, where)
                    # Not a submodule: a name defined in the package (cannot be checked).
                    self.import_module(sub, f"{found.__name__}.{sub}", found)
        return True

    def _vendored(self, missing: str) -> Any:
        for prefix, vendor in _VENDOR_HOOKS.items():
            if missing.startswith(prefix):
                rest = missing[len(prefix) :]
                found, _ = self._resolve(vendor + rest, None, 0)
                if found is None:
                    found, _ = self._resolve(rest, None, 0)
                return found
        return None

    def _star(self, pkg: Any, chain: tuple[str, ...], where: str) -> None:
        """``from pkg import *`` imports the submodules that ``pkg.__all__`` names."""
        if not pkg.__path__:
            return
        for sub in self.all_names.get(pkg.__name__) or ():
            self.ctx = (chain, where)
            self.import_module(sub, f"{pkg.__name__}.{sub}", pkg)

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

    def _missing(self, name: str, where: str, optional: bool, chain: tuple[str, ...]) -> None:
        top = name.lstrip(".").split(".")[0]
        if top in self.target.stdlib_module_names and top not in self.modules:
            # A stdlib module this platform lacks (winreg, _winapi, …): guarded at run time.
            optional = True
        key = (name, where)
        if key not in self.missing:
            self.missing[key] = MissingImport(name, where, optional, chain)

    def _data_files(self, m: Any, refs: tuple[tuple[str, str, int], ...]) -> None:
        here = os.path.dirname(m.__file__)
        pkg = m.__name__.split(".") if m.__path__ else m.__name__.split(".")[:-1]
        # A bare literal path resolves against the job's working directory; on this machine
        # look for it next to the file, in the current directory, and next to the processor
        # (the usual place to run it from).
        workdirs = [here, os.getcwd(), *self.root_dirs]
        for rel, anchor, line in refs:
            if not rel or os.path.isabs(rel) or "://" in rel:
                continue
            base: Literal["file", "cwd"] = "file" if anchor == "file" else "cwd"
            for directory in [here] if base == "file" else workdirs:
                full = os.path.normpath(os.path.join(directory, rel))
                if os.path.exists(full) and full != m.__file__:
                    where = f"{m.__file__}:{line}"
                    arc = os.path.normpath(os.path.join(*pkg, rel) if base == "file" else rel)
                    key = (full, rel)
                    if key not in self.data:
                        self.data[key] = DataFile(
                            full, rel, base, where, os.path.isdir(full), arc.replace(os.sep, "/")
                        )
                    break

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
        warnings = list(self.warnings)
        for miss in self.missing.values():
            if miss.optional and miss.chain and self.meta[miss.chain[-1]][2] == "local":
                warnings.append(f"optional import {miss.module} not found ({miss.site})")
        return ImportGraph(
            roots=tuple(self.root_names),
            modules=modules,
            missing=tuple(sorted(self.missing.values(), key=lambda x: (x.module, x.site))),
            lazy=lazy,
            data_files=tuple(sorted(self.data.values(), key=lambda d: (d.path, d.site))),
            hint_misses=tuple(HintMiss(h, t) for h, t in sorted(self.hint_misses)),
            warnings=tuple(sorted(set(warnings))),
            search_path=tuple(self.path),
        )


def _editable_mappings(site_dirs: Iterable[str]) -> dict[str, str]:
    """Top-level name -> source path from setuptools' ``__editable___*_finder.py`` hooks.

    PEP 660 editable installs of flat-layout projects are not on sys.path: a .pth installs a
    meta-path finder whose ``MAPPING`` literal says where each top-level package lives.
    """
    mapping: dict[str, str] = {}
    for site in sorted(site_dirs):
        try:
            names = sorted(n for n in os.listdir(site) if n.startswith("__editable__"))
        except OSError:
            continue
        for fname in names:
            if not fname.endswith("_finder.py"):
                continue
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
    "HintMiss",
    "ImportGraph",
    "LazyCandidate",
    "MissingImport",
    "Module",
    "ModuleKind",
    "find_imports",
]
