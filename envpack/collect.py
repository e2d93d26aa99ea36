"""The collector: a Spec in, archive entries out (where each file goes, its mode, its bytes).

It decides the env layout; envpack.archive writes whatever it yields. Files that must change to
be relocatable (ELF run paths, shebangs, sysconfigdata, pycs) are changed here through
envpack.relocate, into a staging dir or in memory, never in place.

Stdlib granularity, chosen by measurement on the pyenv 3.11.7 here: the whole pure-Python stdlib
minus test suites, idlelib, tkinter, turtledemo, ensurepip, lib2to3 and the static libpython is
1,136 files, 22 MB on disk with its pycs, 7 MB compressed: about 6% of a coffea environment's
~117 MB. A minimal set (what the Spec lists plus what Python needs to start) would save those
~6 MB but break on every stdlib import the static walk cannot see (compiled modules import
Python modules invisibly, and stdlib modules import each other lazily inside functions), and
such a break shows up only on a worker. So: whole pure-Python stdlib (robust, cheap), but only
the lib-dynload extension modules the Spec lists (the analysis chooses them, see
envpack.analyzer.stdlib, and resolved the native libraries each needs). A module the Spec lists
inside an excluded package (e.g. tkinter) brings that package back.

Pycs are the target interpreter's (its cache tag and magic number, from the Spec), whichever
Python runs envpack.
"""

from __future__ import annotations

import importlib.util
import os
import posixpath
import shutil
import stat
import sys
from collections.abc import Callable, Iterator
from collections.abc import Collection as Collection_
from dataclasses import dataclass, field
from pathlib import Path

from envpack import elf, relocate, runtime
from envpack.archive import Entry, Link, Source, Stale, normalize_mode
from envpack.errors import BuildError
from envpack.layout import LINKS, RUN_IN_ENV, RUNNER, links_bytes
from envpack.spec import Distribution, Spec

# Top-level stdlib entries never shipped unless the Spec names a module inside them.
STDLIB_EXCLUDED = frozenset(
    {
        "test",
        "idlelib",
        "tkinter",
        "turtledemo",
        "turtle.py",
        "ensurepip",
        "lib2to3",
        "site-packages",
        "lib-dynload",
        "__pycache__",
    }
)
# Test suites inside shipped stdlib packages.
STDLIB_TEST_DIRS = ("ctypes/test", "distutils/tests", "unittest/test", "sqlite3/test")

# Test-suite directories inside distribution packages, dropped unless --keep-tests: measured on
# the coffea 0.7 processor (bench/build.py), 2,613 files, 59.5 MB raw / 17 MB gzip'd (scipy,
# numpy, numba, llvmlite, fsspec), and one real traced run opens none of them. Only a directory
# *below* a top-level package counts (``numpy/core/tests``), never a top-level ``tests`` package.
TEST_DIRS = frozenset({"tests", "test"})

# Debug sections of ELF files (.debug_*: DWARF, never mapped at run time) are stripped with
# `objcopy --strip-debug` unless --keep-debug: measured on the coffea 0.7 processor, the pyenv
# libpython alone carries 16.6 MB of DWARF (9.2 -> 2.0 MB gzip'd), zstandard's two modules
# 4.7 MB gzip'd, lz4/xxhash/numba/lib-dynload ~5 MB more: ~17 MB of a 173 MB tarball. Symbols
# used for linking (.dynsym) stay, so dlopen and symbol lookup are unchanged; what is lost is
# source-level debugging (gdb, perf annotations) on a worker. Without objcopy nothing is stripped.
OBJCOPY = shutil.which("objcopy")

LOCAL_PTH = "_envpack_local.pth"


@dataclass
class Collection:
    """What the collector produced: the entries, empty dirs to create, and non-fatal notes."""

    entries: list[Entry] = field(default_factory=list)
    empty_dirs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dropped_files: int = 0  # distribution files left out as test suites (RECORD pycs included)
    dropped_size: int = 0  # their bytes on disk
    elves: list[tuple[str, Path]] = field(default_factory=list)  # (arcname, source) of ELF files
    # Called once the entries have been digested and written (stops helper processes).
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        """Run the clean-ups; the entries' lazy sources may not be read afterwards."""
        for done in self.cleanup:
            done()
        self.cleanup.clear()


def layout(spec: Spec) -> tuple[str, str, str]:
    """(python name, stdlib dir, site-packages dir) inside the env, e.g. python3.11."""
    major_minor = ".".join(spec.interpreter.version.split(".")[:2])
    py = f"python{major_minor}"
    return py, f"lib/{py}", f"lib/{py}/site-packages"


class Collector:
    """Walks a Spec and yields entries; problems are collected and raised once, all together."""

    def __init__(
        self,
        spec: Spec,
        staging: Path,
        runner_script: Path | None = None,
        *,
        keep_tests: bool = False,
        keep_debug: bool = False,
    ) -> None:
        self.spec = spec
        self.keep_tests = keep_tests
        self.objcopy = None if keep_debug or OBJCOPY is None else Path(OBJCOPY)
        self._reached = _reached_test_dirs(spec)
        self.staging = staging
        self.runner_script = runner_script
        self.py, self.stdlib_arc, self.site_arc = layout(spec)
        self.out = Collection()
        self.missing: list[str] = []
        self._seen: dict[str, str] = {}
        self._bundle_needers = self._needers()
        self.cache_tag, magic = _pyc_format(spec)
        self.hasher: relocate.SourceHasher | None = None
        if magic is not None and self.cache_tag is not None:
            self.hasher = relocate.SourceHasher(
                bytes.fromhex(magic), spec.interpreter.real_executable
            )
            self.out.cleanup.append(self.hasher.close)

    # -- public ------------------------------------------------------------------------------

    def collect(self) -> Collection:
        for _ in self.groups():
            pass
        return self.out

    def groups(self) -> Iterator[list[Entry]]:
        """Collect, yielding each layer's entries (one group) as soon as no later step can add
        to it, so the writer compresses them while the rest is collected. Raises at the end,
        listing every vanished file; nothing more is yielded once one is missing."""
        names = [d.name for d in self.spec.distributions]
        # a group a later step adds to too (a distribution named "local"...) goes at the end
        shared = {n for n in names if names.count(n) > 1}
        shared |= {"python", "stdlib", "native", "local", "envpack"} & set(names)
        held: dict[str, list[Entry]] = {}
        seen = 0

        def finished(*groups: str) -> list[list[Entry]]:
            nonlocal seen
            for entry in self.out.entries[seen:]:
                held.setdefault(entry.group, []).append(entry)
            seen = len(self.out.entries)
            if self.missing:
                return []
            return [held.pop(g) for g in groups if g in held and g not in shared]

        self._interpreter()
        yield from finished("python")
        self._stdlib()
        self._dynload()
        yield from finished("stdlib")
        for dist in self.spec.distributions:
            self._distribution(dist)
            yield from finished(dist.name)
        self._native()
        yield from finished("native")
        self._local()
        self._runner()
        yield from finished("local", "envpack")
        if self.missing:
            listed = "\n  ".join(self.missing)
            raise BuildError(
                f"{len(self.missing)} file(s) listed in the Spec are gone since analysis "
                f"(re-run `envpack analyze`):\n  {listed}"
            )
        finished()
        yield from held.values()
        self.out.entries.sort(key=lambda e: e.arcname)

    # -- pieces ------------------------------------------------------------------------------

    def _interpreter(self) -> None:
        interp = self.spec.interpreter
        exe = Path(interp.real_executable)
        arc = f"bin/{self.py}"
        if not exe.is_file():
            self.missing.append(f"{exe} (the interpreter)")
            return
        if self._add(arc, 0o755, self._staged(exe, arc), "python"):
            self.out.elves.append((arc, exe))
        self._add("bin/python3", 0o777, Link(self.py), "python")
        self._add("bin/python", 0o777, Link(self.py), "python")
        if interp.libpython:
            lib = Path(interp.libpython)
            if not lib.is_file():
                self.missing.append(f"{lib} (the interpreter's libpython)")
            else:
                lib_arc = f"lib/{lib.name}"
                self._add_elf(lib_arc, 0o755, lib, "python")

    def _stdlib(self) -> None:
        root = Path(self.spec.interpreter.stdlib)
        if not root.is_dir():
            self.missing.append(f"{root} (the stdlib)")
            return
        wanted_tops = set()
        for mod in self.spec.stdlib:
            if mod.path and _is_under(mod.path, root):
                wanted_tops.add(Path(mod.path).relative_to(root).parts[0])
        prefixes = {
            self.spec.interpreter.base_prefix,
            self.spec.interpreter.prefix,
            str(Path(self.spec.interpreter.real_executable).parent.parent),
        }
        # lib-dynload is _dynload's: only the modules the Spec lists, each with its run path.
        wanted_tops.discard("lib-dynload")
        skip = {t for t in STDLIB_EXCLUDED if t not in wanted_tops}
        skip |= {p.name for p in root.glob("config-*")}
        for path, rel in _walk(root, skip):
            top = rel.split("/", 1)[0]
            if top in skip:
                continue
            if any(rel.startswith(t + "/") for t in STDLIB_TEST_DIRS):
                continue
            arc = f"{self.stdlib_arc}/{rel}"
            if rel.startswith("_sysconfigdata_") and rel.endswith(".py"):
                text = relocate.sysconfigdata(path.read_text(encoding="utf-8"), sorted(prefixes))
                self._add(arc, 0o644, text.encode(), "stdlib")
            elif "/__pycache__/" in f"/{rel}" or rel.startswith("__pycache__/"):
                continue  # pycs come with their sources, below
            else:
                added = self._add(arc, normalize_mode(path.stat().st_mode), path, "stdlib")
                if added and rel.endswith(".py"):
                    self._pyc(path, arc, "stdlib")
        self.out.empty_dirs.append(f"{self.stdlib_arc}/lib-dynload")

    def _dynload(self) -> None:
        """lib-dynload modules in use, recognized by their directory's name.

        Not by Interpreter.dynload alone: inside a venv, sysconfig's platstdlib (which it is
        derived from) names the venv, whose lib-dynload does not exist.
        """
        dynload = Path(self.spec.interpreter.dynload)
        for mod in self.spec.stdlib:
            if not mod.path:
                continue
            path = Path(mod.path)
            if _is_under(mod.path, dynload):
                rel = path.relative_to(dynload).as_posix()
            elif path.parent.name == "lib-dynload":
                rel = path.name
            else:
                continue
            arc = f"{self.stdlib_arc}/lib-dynload/{rel}"
            if not path.is_file():
                self.missing.append(f"{path} (stdlib module {mod.name})")
                continue
            self._add_elf(arc, 0o755, path, "stdlib")

    def _distribution(self, dist: Distribution) -> None:
        location = Path(dist.location)
        for rel in dist.files:
            path = location / rel
            arc = posixpath.normpath(f"{self.site_arc}/{rel}")
            if arc.startswith("../") or arc == "..":
                self.out.warnings.append(f"{dist.name}: {rel} lies outside the env; skipped")
                continue
            if not self.keep_tests and _in_test_dir(rel, self._reached):
                self._drop(path)
                continue
            name = posixpath.basename(arc)
            if dist.editable and (name.endswith(".pth") or name.startswith("__editable__")):
                continue  # its source ships as local code; this .pth would point at our disk
            try:
                st = path.lstat()
            except FileNotFoundError:
                if rel.endswith(".pyc"):
                    continue  # pip lists pycs it compiled; a missing one only costs start-up
                self.missing.append(f"{path} (distribution {dist.name} {dist.version})")
                continue
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(path)
                if not target.startswith("/"):
                    self._add(arc, 0o777, Link(target), dist.name)
                    continue
                st = path.stat()
            if "/__pycache__/" in arc:
                continue  # handled with the source, so only fresh pycs ship
            mode = normalize_mode(st.st_mode)
            if arc.startswith("bin/"):
                data = path.read_bytes()
                script = relocate.relocate_script(data, self.py)
                if script is not None:
                    self._add(arc, 0o755, script, dist.name)
                    continue
            if arc.endswith(".py"):
                # A file two distributions list (a pkgutil-style namespace __init__.py) ships
                # once, its pyc with it: only the owner of the source adds the pyc.
                if self._add(arc, mode, path, dist.name):
                    self._pyc(path, arc, dist.name)
            elif _is_elf(path, name):
                self._add_elf(arc, 0o755 if mode & 0o111 else mode, path, dist.name)
            else:
                self._add(arc, mode, path, dist.name)

    def _native(self) -> None:
        for lib in self.spec.native:
            if lib.kind != "bundle":
                continue
            if lib.path is None or not Path(lib.path).exists():
                self.missing.append(f"{lib.path or lib.soname} (native library {lib.soname})")
                continue
            arc = f"lib/{lib.soname}"
            if self._seen.get(arc) == "python" and _same_file(
                lib.path, self.spec.interpreter.libpython
            ):
                continue  # the interpreter's libpython, shipped with it already
            self._add_elf(arc, 0o755, Path(lib.path), "native")

    def _local(self) -> None:
        links: list[str] = []
        for item in self.spec.local:
            path = Path(item.path)
            arc = posixpath.normpath(f"local/{item.arcname}")
            if arc.startswith("../") or not arc.startswith("local/"):
                raise BuildError(f"local file {item.path}: arcname {item.arcname!r} escapes local/")
            if not path.is_file():
                self.missing.append(f"{path} (local {item.kind}: {item.why})")
                continue
            self._add(arc, normalize_mode(path.stat().st_mode), path, "local")
            if item.kind == "data":
                links.append(arc.removeprefix("local/"))  # the runner links ./P -> local/P
        if links:
            self._add(LINKS, 0o644, links_bytes(links), "envpack")
        # Relative .pth lines are joined with the site dir: this one names <env>/local.
        self._add(f"{self.site_arc}/{LOCAL_PTH}", 0o644, b"../../../local\n", "envpack")

    def _runner(self) -> None:
        # bin/run_in_env (poncho's face) only delegates to the runner shipped beside it, so
        # activation and checks exist once (envpack/runtime/envpack-run).
        if self.runner_script is not None and self.runner_script.is_file():
            self._add(RUN_IN_ENV, 0o755, self.runner_script, "envpack")
            self._add(RUNNER, 0o755, runtime.runner_path(), "envpack")
            # poncho's faces; a conda env's own bin/activate (from its conda package) wins
            for arcname, script in runtime.poncho_scripts().items():
                mode = 0o644 if arcname == "bin/activate" else 0o755
                if arcname not in self._seen:
                    self._add(arcname, mode, script, "envpack")

    # -- helpers -----------------------------------------------------------------------------

    def _drop(self, path: Path) -> None:
        try:
            st = path.stat()
        except OSError:
            return  # gone or a dangling link: nothing shipped, nothing saved
        self.out.dropped_files += 1
        self.out.dropped_size += st.st_size

    def _add(
        self, arc: str, mode: int, source: Source, group: str, inputs: tuple[Path, ...] = ()
    ) -> bool:
        """Add an entry unless ``arc`` is taken (the first owner keeps it); whether it was added.

        Every entry goes through here, so an archive name is never entered twice.
        """
        owner = self._seen.get(arc)
        if owner is not None:
            if owner != group:
                self.out.warnings.append(f"{arc}: shipped by {owner}, also listed by {group}")
            return False
        self._seen[arc] = group
        self.out.entries.append(Entry(arc, mode, source, group, inputs))
        return True

    def _pyc(self, source: Path, arc: str, group: str) -> None:
        """Ship the source's own pyc (the target's), turned unchecked-hash, when it is fresh.

        Freshness is decided when the entry is digested (a stale pyc raises Stale there and is
        left out: Python compiles the source in memory instead), so the digest cache, keyed by
        both files, spares a warm rebuild from reading either.
        """
        hasher = self.hasher
        if hasher is None:
            return  # a Spec without the target's cache tag and magic: no pycs
        pyc = source.parent / "__pycache__" / f"{source.stem}.{self.cache_tag}.pyc"
        if not pyc.is_file():
            return
        pyc_arc = posixpath.join(posixpath.dirname(arc), "__pycache__", pyc.name)

        def load() -> bytes:
            data = source.read_bytes()
            mtime = int(source.stat().st_mtime)
            try:
                out = relocate.pyc_unchecked(
                    pyc.read_bytes(), data, mtime, magic=hasher.magic, source_hash=hasher
                )
            except OSError as exc:
                raise Stale(f"{pyc}: {exc}") from None
            if out is None:
                raise Stale(f"{pyc} is stale")
            return out

        self._add(pyc_arc, 0o644, load, group, (pyc, source))

    def _needers(self) -> set[str]:
        needers: set[str] = set()
        for lib in self.spec.native:
            if lib.kind == "bundle":
                for path in lib.needed_by:
                    needers.add(path)
                    needers.add(os.path.realpath(path))
        return needers

    def _edits(self, arc: str, *, rpath: bool) -> relocate.ElfEdits:
        """What an ELF file needs changed: an `$ORIGIN` RPATH to lib/ if asked, no debug."""
        return relocate.ElfEdits(
            rpath=(relocate.origin_runpath(arc),) if rpath else None,
            strip_debug=self.objcopy,
        )

    def _staged(self, path: Path, arc: str) -> relocate.EditedElf:
        """A copy in the staging dir with `$ORIGIN/..lib` first in its RPATH, stripped; made
        when first read (lief and the edit then run while other layers compress).

        Always so for the interpreter: the shipped libpython must win over a system one of
        the same soname (Debian's libpython3.11.so.1.0), which a build-machine RUNPATH would
        miss. Never in the digest cache (no inputs): its bytes depend on the edit too.
        """
        return relocate.EditedElf(
            path, self._edits(arc, rpath=True), self.staging / arc, reuse=True
        )

    def _add_elf(self, arc: str, mode: int, path: Path, group: str) -> None:
        """An ELF entry: patched into the staging dir when it needs a new RPATH (stripped
        there too); otherwise stripped on demand, in memory, so a warm rebuild's digest cache
        answers for it without running objcopy.
        """
        if {str(path), os.path.realpath(path)} & self._bundle_needers:
            added = self._add(arc, mode, self._staged(path, arc), group)
        elif self.objcopy is None:
            added = self._add(arc, mode, path, group)
        else:
            keep = self.staging / ".edited" / arc
            edited = relocate.EditedElf(path, self._edits(arc, rpath=False), keep)
            added = self._add(arc, mode, edited, group, edited.inputs)
        if added:
            self.out.elves.append((arc, path))


def _reached_test_dirs(spec: Spec) -> set[str]:
    """Dotted prefixes of test packages some module the Spec names lives in or under.

    The Spec lists distributions' top-level modules only, so this is mostly empty; it still
    keeps a test package that the import graph reached by name (``pkg.tests.helpers``).
    """
    names = [m for d in spec.distributions for m in d.modules]
    names += [m.name for m in spec.stdlib]
    reached: set[str] = set()
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts)):
            if parts[i] in TEST_DIRS:
                reached.add("/".join(parts[: i + 1]))
    return reached


def _in_test_dir(rel: str, reached: Collection_[str]) -> bool:
    """Whether a RECORD path lies in a test directory below a top-level package."""
    parts = rel.split("/")
    top = parts[0]
    if len(parts) < 3 or top.endswith((".dist-info", ".data", ".egg-info")) or top in ("..", "bin"):
        return False
    for i in range(1, len(parts) - 1):
        if parts[i] in TEST_DIRS:
            return "/".join(parts[: i + 1]) not in reached
    return False


def _is_under(path: str, root: Path) -> bool:
    try:
        Path(path).relative_to(root)
    except ValueError:
        return False
    return True


def _is_elf(path: Path, name: str) -> bool:
    """An ELF file by name (``*.so``, ``*.so.*``) or, for other names, when executable."""
    if not name.endswith(".so") and ".so." not in name:
        try:
            if not os.access(path, os.X_OK):
                return False
        except OSError:
            return False
    return elf.is_elf(path)


def _pyc_format(spec: Spec) -> tuple[str | None, str | None]:
    """The target's pyc cache tag and magic (hex); this Python's for an older Spec of its
    own version (written before the probe reported them), else None: no pycs ship."""
    interp = spec.interpreter
    if interp.cache_tag is not None and interp.pyc_magic is not None:
        return interp.cache_tag, interp.pyc_magic
    ours = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if interp.implementation == sys.implementation.name and (
        interp.version == ours or interp.version.startswith(ours + ".")
    ):
        return sys.implementation.cache_tag, importlib.util.MAGIC_NUMBER.hex()
    return None, None


def _same_file(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and os.path.realpath(a) == os.path.realpath(b)


def _walk(root: Path, skip_top: Collection_[str] = ()) -> Iterator[tuple[Path, str]]:
    """Files under ``root`` in a reproducible order, as (path, posix path relative to root)."""
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        rel_dir = base.relative_to(root).as_posix()
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in skip_top]
        dirnames.sort()
        for name in sorted(filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            yield base / name, rel


def collect(
    spec: Spec,
    staging: Path,
    runner_script: Path | None = None,
    *,
    keep_tests: bool = False,
    keep_debug: bool = False,
) -> Collection:
    """Every entry of the env for ``spec``; raises BuildError listing every vanished file."""
    collector = Collector(
        spec, staging, runner_script, keep_tests=keep_tests, keep_debug=keep_debug
    )
    return collector.collect()


__all__ = [
    "LOCAL_PTH",
    "STDLIB_EXCLUDED",
    "TEST_DIRS",
    "Collection",
    "Collector",
    "collect",
    "layout",
]
