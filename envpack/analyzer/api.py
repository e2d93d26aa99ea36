"""analyze(): processor files in, Spec out. The one place the analyzer's parts meet.

probe the target interpreter -> walk imports (imports.py) -> map module files to distributions
(distributions.py) -> read every ELF the environment will hold (native.py) -> Spec, with a reason
for every entry and every problem collected, never just the first.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from envpack._cachefile import cache_dir
from envpack.analyzer import _resultcache
from envpack.analyzer.data import data_tree, manual_data, package_data
from envpack.analyzer.distributions import (
    DistIndex,
    InstalledDist,
    left_out,
    marker_environment,
    resolve_path,
)
from envpack.analyzer.hints import parse_hint
from envpack.analyzer.imports import MissingImport, check_root, find_imports
from envpack.analyzer.interpreter import Target, probe
from envpack.analyzer.stdlib import unreached_extensions
from envpack.errors import UsageError
from envpack.spec import (
    Distribution,
    Excluded,
    LazyImport,
    LocalFile,
    Spec,
    StdlibModule,
)

Hints = Mapping[str, Sequence[str]]


def analyze(
    paths: Iterable[str | os.PathLike[str]],
    *,
    include_lazy: Collection[str] = (),
    hints: Hints | None = None,
    python: str | os.PathLike[str] | None = None,
    search_path: Sequence[str | os.PathLike[str]] = (),
    project_dir: str | os.PathLike[str] | None = None,
    data: Sequence[str] = (),
    exclude: Collection[str] = (),
    cache: bool = True,
) -> Spec:
    """Analyze processor files for the target interpreter ``python`` (default: this one).

    ``include_lazy`` names modules or distributions whose lazy imports to ship ("all" for every
    one); ``hints`` maps a module to the modules or distributions it imports data-dependently,
    merged over the curated table and the project's ``[tool.envpack]`` settings.
    ``search_path``: directories of local code besides the roots' own (like PYTHONPATH);
    ``project_dir``: where to look for ``[tool.envpack]`` (default: the first root's directory).
    Both serve generated roots (notebooks, live objects) that live in a temporary directory.
    ``data``:
    files, directories or globs (relative to the current directory) to ship as data besides
    what the code is seen to open, placed as they lie relative to the first processor.
    ``exclude`` names modules never to ship (with the project's ``exclude``): importing one
    is no error. ``cache``: reuse the stored result of the same call when nothing it consulted
    has changed (envpack.analyzer._resultcache), and store this one; False analyzes afresh.
    """
    paths = list(paths)
    options: dict[str, Any] = {
        "include_lazy": include_lazy,
        "hints": hints,
        "python": python,
        "search_path": search_path,
        "project_dir": project_dir,
        "data": data,
        "exclude": exclude,
    }
    if not cache:
        return _analyze(paths, **options)
    key = _resultcache.analysis_key(paths, **options)
    entry = _resultcache.lookup(key)
    if entry is not None:
        return Spec.from_json(entry["spec"], source="the result cache")
    with _resultcache.recording() as recorder:
        spec = _analyze(paths, **options)
    _resultcache.store(key, recorder, spec.to_json())
    return spec


def _analyze(
    paths: Iterable[str | os.PathLike[str]],
    *,
    include_lazy: Collection[str],
    hints: Hints | None,
    python: str | os.PathLike[str] | None,
    search_path: Sequence[str | os.PathLike[str]],
    project_dir: str | os.PathLike[str] | None,
    data: Sequence[str],
    exclude: Collection[str],
) -> Spec:
    from envpack.analyzer.native import analyze_native

    roots = _roots(paths)
    target = probe(python)
    interp = target.interpreter
    index = DistIndex(_site_dirs(target), cache_dir=cache_dir())

    project = project_settings(Path(project_dir) if project_dir else roots[0].parent)
    merged_hints: dict[str, list[str]] = {k: list(v) for k, v in project.hints.items()}
    for hinted, targets in (hints or {}).items():
        merged_hints.setdefault(hinted, []).extend(targets)
    lazy_names = _expand_names({*project.include_lazy, *include_lazy}, index)
    excluded_by: dict[str, list[str]] = {}
    for name in exclude:
        excluded_by.setdefault(_module_name(name, "--exclude"), []).append("cli")
    for name in project.exclude:
        excluded_by.setdefault(_module_name(name, f"{project.path}: exclude"), []).append(
            str(project.path)
        )
    # Hint targets may name distributions ("uproot.extras=zstandard" or "=python-xxhash").
    hint_modules = {m: tuple(_expand_names(t, index)) for m, t in merged_hints.items()}

    graph = find_imports(
        roots,
        target,
        include_lazy="all" if "all" in lazy_names else lazy_names,
        hints=hint_modules,
        extra_paths=search_path,
        exclude=excluded_by,
    )

    warnings: list[str] = list(graph.warnings)
    # An editable package's data ships whole (below): what its own code opens needs no --data.
    warnings += [str(w) for w in graph.data_warnings if not index.is_editable_source(w.path)]
    errors: list[str] = []
    chosen: dict[str, tuple[InstalledDist, set[str], tuple[str, ...]]] = {}
    local: dict[str, LocalFile] = {}
    stdlib: list[StdlibModule] = []
    editable: set[str] = set()
    editable_packages: dict[str, tuple[str, str]] = {}  # top-level package -> (its dir, dist)

    def choose(dist: InstalledDist, module: str, chain: tuple[str, ...]) -> None:
        entry = chosen.get(dist.key)
        if entry is None or len(chain) < len(entry[2]):
            chosen[dist.key] = (dist, entry[1] if entry else set(), chain)
        chosen[dist.key][1].add(module.split(".")[0])

    for name in sorted(graph.modules):
        mod = graph.modules[name]
        chain = tuple(mod.chain)
        if mod.kind in ("builtin", "stdlib"):
            stdlib.append(StdlibModule(name=name, path=mod.path, why=chain))
            continue
        if mod.path is None:
            continue  # a namespace package: its portions carry the files
        owner = index.owner(mod.path)
        in_editable_tree = owner is not None and index.is_editable_source(mod.path)
        if mod.kind == "local" or owner is None or in_editable_tree:
            if owner is not None and in_editable_tree:
                editable.add(owner.key)
                choose(owner, name, chain)
                if mod.is_package and "." not in name:
                    editable_packages[name] = (os.path.dirname(mod.path), owner.name)
            arc = _module_arcname(name, mod.path, mod.is_package)
            local[arc] = LocalFile(
                path=mod.path, arcname=arc, kind="module", why=_why_text(chain, mod.site)
            )
            if owner is None and mod.kind != "local":
                warnings.append(f"{mod.path}: on sys.path but in no distribution's RECORD")
            continue
        choose(owner, name, chain)

    # lib-dynload modules the walk did not reach still ship (envpack.analyzer.stdlib says why).
    stdlib += unreached_extensions(target, {m.name for m in stdlib})

    for hint in graph.hint_misses:
        dist = index.get(hint.target)
        if dist is not None:
            choose(dist, dist.top_level[0] if dist.top_level else dist.name, (hint.hinted,))
        else:
            warnings.append(f"hint {hint.hinted}={hint.target}: no such module or distribution")

    def chosen_requires() -> dict[str, str]:
        """Requires-Dist names of what is shipped, by normalized name: who may provide it."""
        out: dict[str, str] = {}
        for dist, _, _ in chosen.values():
            for line in dist.requires:
                name = _requirement_name(line)
                if name:
                    out.setdefault(canonicalize_name(name), name)
        return out

    for miss in graph.missing:
        where = f"{miss.site}: " if miss.site else ""
        via = f" (via {' -> '.join(miss.chain)})" if len(miss.chain) > 1 else ""
        importer = graph.modules.get(miss.chain[-1]) if miss.chain else None
        if miss.optional and (importer is None or importer.kind in ("stdlib", "local")):
            # The stdlib's own platform fallbacks ('nt' in os.py) are not the user's concern;
            # the walk itself already warns about those in local code.
            continue
        if miss.optional:
            why = f": {miss.reason}" if miss.reason else ""
            warnings.append(f"{where}optional import '{miss.module}' is not installed{via}{why}")
        else:
            errors.append(
                f"{where}cannot import '{miss.module}': not installed for {interp.executable}"
                f"{via}; {_resolution(miss, interp.executable, chosen_requires(), index)}"
            )

    for pkg, (directory, dist_name) in sorted(editable_packages.items()):
        why = f"package data of {pkg} (editable install of {dist_name})"
        for path, arc in package_data(directory, pkg):
            local.setdefault(arc, LocalFile(path=path, arcname=arc, kind="resource", why=why))
    for found in graph.data_files:
        for path, arc in data_tree(found.path, found.arcname or found.relpath, found.is_dir):
            why = f"opened at {found.site}"
            local.setdefault(arc, LocalFile(path=path, arcname=arc, kind="data", why=why))
    manual = [(p, os.getcwd(), "--data") for p in data]
    manual += [(p, str(project.root), f"{project.root}/pyproject.toml") for p in project.data]
    for path, arc, why in manual_data(manual, str(roots[0].parent)):
        local.setdefault(arc, LocalFile(path=path, arcname=arc, kind="data", why=why))

    env = marker_environment(interp)
    dists: list[Distribution] = []
    for key in sorted(chosen):
        dist, modules, chain = chosen[key]
        files = dist.files
        if key in editable:  # its code ships as local source; keep only the metadata
            files = tuple(f for f in files if ".dist-info" in f.split(os.sep)[0])
        size = dist.size
        kept = _without_excluded(files, excluded_by)  # an excluded module inside a shipped dist
        if key in editable or kept != files:
            files = kept
            size = sum(_size(dist.location, f) for f in files)
        dists.append(
            Distribution(
                name=dist.name,
                version=dist.version,
                location=dist.location,
                files=files,
                size=size,
                modules=tuple(sorted(modules)),
                why=chain,
                editable=key in editable,
                left_out=left_out(dist, chosen, index, env),
            )
        )

    shipped_files = {
        os.path.normpath(os.path.join(real_location, f))
        for d in dists
        for real_location in (os.path.realpath(d.location),)
        for f in d.files
    }
    elves = [interp.real_executable]
    elves += [m.path for m in stdlib if m.path and _is_ext(m.path)]
    elves += sorted(f for f in shipped_files if _is_ext(f))
    elves += [f.path for f in local.values() if f.kind == "module" and _is_ext(f.path)]
    native = analyze_native(elves, shipped=frozenset(shipped_files), machine=interp.machine)
    warnings += native.warnings
    reached = {resolve_path(m.path) for m in graph.modules.values() if m.path}
    for lib in native.libs:
        if lib.kind != "missing":
            continue
        needers = ", ".join(lib.needed_by)
        if all(_is_unreached_module(f, reached, target) for f in lib.needed_by):
            # A shipped extension module nothing imports (numba's tbbpool needs libtbb only
            # when the TBB threading layer is chosen): it cannot fail the processor.
            warnings.append(f"{lib.soname}: not found, needed by {needers} (never imported)")
        else:
            errors.append(f"{lib.soname}: not found, needed by {needers}")

    owners: dict[str, str] = {}  # top-level name -> the first distribution providing it
    for dist in index:
        for top in dist.top_level:
            owners.setdefault(top, dist.name)
    lazy = [
        LazyImport(module=c.module, site=c.site, distribution=owners.get(c.module.split(".")[0]))
        for c in graph.lazy
    ]
    return Spec(
        interpreter=interp,
        roots=tuple(str(r) for r in roots),
        local=tuple(local[k] for k in sorted(local)),
        distributions=tuple(dists),
        stdlib=tuple(stdlib),
        native=tuple(sorted(native.libs, key=lambda n: (n.soname, n.path or ""))),
        glibc=native.glibc,
        lazy=tuple(sorted(set(lazy), key=lambda x: (x.module, x.site))),
        warnings=tuple(sorted(set(warnings))),
        errors=tuple(sorted(set(errors))),
        excluded=tuple(
            Excluded(module=e.module, by=tuple(excluded_by[e.module]), sites=e.sites)
            for e in graph.excluded
        ),
    )


class ProjectSettings:
    """``[tool.envpack]`` of the nearest pyproject.toml: hints, include-lazy and exclude."""

    def __init__(
        self,
        hints: Mapping[str, Sequence[str]],
        include_lazy: Sequence[str],
        data: Sequence[str] = (),
        root: Path | None = None,
        exclude: Sequence[str] = (),
        path: Path | None = None,
    ) -> None:
        self.hints = dict(hints)
        self.include_lazy = tuple(include_lazy)
        self.data = tuple(data)  # paths and globs, relative to root
        self.root = root or Path.cwd()  # the directory of the pyproject.toml
        self.exclude = tuple(exclude)
        self.path = path  # the pyproject.toml they come from


def project_settings(start: Path) -> ProjectSettings:
    """Read ``[tool.envpack]`` from the first pyproject.toml at or above ``start``."""
    for directory in (start, *start.parents):
        pyproject = directory / "pyproject.toml"
        _resultcache.note_file(pyproject)
        if pyproject.is_file():
            try:
                data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise UsageError(f"{pyproject}: cannot read [tool.envpack]: {exc}") from None
            table = data.get("tool", {}).get("envpack", {})
            hints = table.get("hints", {})
            lazy = table.get("include-lazy", [])
            if not isinstance(hints, dict) or not all(
                isinstance(v, list) and all(isinstance(x, str) for x in v) for v in hints.values()
            ):
                raise UsageError(
                    f"{pyproject}: [tool.envpack] hints must map a module to a list of names"
                )
            if not isinstance(lazy, list) or not all(isinstance(x, str) for x in lazy):
                raise UsageError(f"{pyproject}: [tool.envpack] include-lazy must be a list")
            files = table.get("data", [])
            if not isinstance(files, list) or not all(isinstance(x, str) for x in files):
                raise UsageError(
                    f"{pyproject}: [tool.envpack] data must be a list of paths or globs"
                )
            exclude = table.get("exclude", [])
            if not isinstance(exclude, list) or not all(isinstance(x, str) for x in exclude):
                raise UsageError(
                    f"{pyproject}: [tool.envpack] exclude must be a list of module names"
                )
            return ProjectSettings(hints, lazy, files, directory, exclude, pyproject)
    return ProjectSettings({}, ())


# Import names whose distribution is named otherwise, for the advice on a missing import (the
# ones a HEP analysis meets; a shipped distribution's Requires-Dist is asked first).
_DIST_OF_IMPORT = {
    "OpenSSL": "pyOpenSSL",
    "PIL": "Pillow",
    "XRootD": "xrootd",
    "attr": "attrs",
    "bs4": "beautifulsoup4",
    "cv2": "opencv-python",
    "dateutil": "python-dateutil",
    "jwt": "PyJWT",
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "snappy": "python-snappy",
    "yaml": "PyYAML",
    "zmq": "pyzmq",
}


def _resolution(
    miss: MissingImport, python: str, requires: Mapping[str, str], index: DistIndex
) -> str:
    """How to resolve a missing import: install it, exclude it, or hint what provides it."""
    if miss.module.startswith("."):
        return "to resolve: a relative import needs the package it is in; import it absolutely"
    top = miss.module.split(".")[0]
    dist = requires.get(canonicalize_name(top)) or _DIST_OF_IMPORT.get(top)
    if dist is None and index.get(top) is not None:
        dist = top  # installed, yet the module is not there: reinstall it
    if dist is not None:
        install = f"{python} -m pip install {dist}"
    else:
        install = (
            f"install the distribution that provides '{top}' into {python} "
            f"(pip install {top}, if that is its name)"
        )
    return (
        f"to resolve: {install}; or, if workers never import it, --exclude {miss.module} "
        f"(or [tool.envpack] exclude); or, if something else provides it at run time, "
        f"--hint {miss.module}=PROVIDER"
    )


def _requirement_name(line: str) -> str | None:
    try:
        return Requirement(line).name
    except InvalidRequirement:
        return None


def _module_name(text: str, what: str) -> str:
    name = text.strip()
    if not name or not all(part.isidentifier() for part in name.split(".")):
        raise UsageError(f"{what} {text!r}: expected a module name (pkg or pkg.sub)")
    return name


def _without_excluded(files: tuple[str, ...], excluded: Collection[str]) -> tuple[str, ...]:
    """A distribution's files without those of excluded modules (a package dir, a module file,
    its bytecode, an extension module)."""
    if not excluded:
        return files
    out = []
    for rel in files:
        parts = rel.split("/")
        stem = parts[-1].split(".")[0]
        dotted = ".".join(p for p in parts[:-1] if p != "__pycache__")
        candidates = {dotted, f"{dotted}.{stem}" if dotted else stem}
        if not any(c == e or c.startswith(e + ".") for c in candidates for e in excluded):
            out.append(rel)
    return tuple(out)


def _roots(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    roots = [check_root(Path(p)).resolve() for p in paths]
    if not roots:
        raise UsageError("no processor file given")
    return roots


def _site_dirs(target: Target) -> list[str]:
    interp = target.interpreter
    stdlib_dirs = {os.path.realpath(d) for d in (interp.stdlib, interp.platstdlib, interp.dynload)}
    for p in target.sys_path:
        _resultcache.note_path(p)
    return [
        p for p in target.sys_path if os.path.isdir(p) and os.path.realpath(p) not in stdlib_dirs
    ]


def _expand_names(names: Iterable[str], index: DistIndex) -> list[str]:
    """Distribution names become the top-level modules they provide; module names stay."""
    out: list[str] = []
    for name in names:
        out.append(name)
        dist = index.get(name)
        if dist is not None:
            out.extend(m for m in dist.top_level if m != name)
    return sorted(set(out))


def _module_arcname(name: str, path: str, is_package: bool) -> str:
    parts = name.split(".")
    if is_package:
        return "/".join(parts) + "/" + os.path.basename(path)
    return "/".join([*parts[:-1], os.path.basename(path)])


def _why_text(chain: Sequence[str], site: str | None) -> str:
    text = "imported by " + " -> ".join(chain[:-1]) if len(chain) > 1 else "a processor file"
    return f"{text} ({site})" if site and len(chain) > 1 else text


def _is_unreached_module(path: str, reached: set[str], target: Target) -> bool:
    """An extension module (by its import suffix) that the import graph never reaches."""
    return path.endswith(target.extension_suffixes) and resolve_path(path) not in reached


def _is_ext(path: str) -> bool:
    base = os.path.basename(path)
    return base.endswith(".so") or ".so." in base


def _size(location: str, rel: str) -> int:
    _resultcache.note_path(os.path.join(location, rel))
    try:
        return os.lstat(os.path.join(location, rel)).st_size
    except OSError:
        return 0


__all__ = ["analyze", "parse_hint", "project_settings"]
