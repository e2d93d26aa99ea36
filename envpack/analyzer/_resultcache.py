"""Whole analyses kept on disk: when nothing an analysis consulted has changed, its Spec is reused.

A warm analysis still pays fixed costs (probing the target, indexing its distributions, loading
the parse cache, walking ~9,000 import sites, reading the ELF files) that dwarf a cheap check:
one ``stat`` of each file and directory the analysis consulted. So ``analyze()`` records what it
consults, at the few places it touches the file system (directory listings and module files of
the import walk, the distribution index's stamps, data references, ELF files and library
candidates, the target probe's binary, sys.path entries and ``.pth`` files, pyproject.toml), and
stores the Spec's JSON with those stats under a key of everything else the result depends on:
the roots, every option, the current directory, the environment variables the target or the
walk can see, and envpack's own code (the stats of its modules, Python's version).

Validation, not expiry: an entry is used only if every path still has the stat it had *before*
it was consulted, ``(mtime_ns, size, inode, ctime_ns, mode)`` (``_parsecache``'s trust model,
with the mode), or ``None`` for a path that did not exist. A new module in a sys.path directory,
a new ``.pth`` or ``.dist-info``, a ``pip install``, an edited local module or a created data
file each change the stat of something recorded. Per distribution, what the distribution index
trusts (its stamp: the location's listing and each metadata dir's RECORD) is what is recorded.

Racy stats (as git's racy-clean index entries): a change within the file system's timestamp
granularity of the one before it leaves the stat as it was. A path whose mtime or ctime is
within ``_RACY_NS`` of the analysis start is therefore also stored with a fingerprint (a file's
sha256, a directory's listing) that every lookup checks, until a lookup finds the stat old
enough to stand alone. Every directory keeps its listing's fingerprint: what was consulted is
the listing, so a directory whose stat moved but whose names did not (the Spec written beside
the processor) still vouches, and its new stat is kept. Paths noted only after they were used
(the probe's sys.path,
known once it answered) and racy make ``store`` ask the probe again, after taking their stats,
and keep the result only if the answer is the same.

What printing a result needs (the CLI's rendered output for one console) may ride along in the
entry (``add_rendering``), so a warm ``envpack analyze`` loads neither the analyzer nor rich.
This module imports nothing heavy for the same reason. Entries are marshal files written
atomically; at most ``_MAX_ENTRIES`` and ``_MAX_BYTES`` are kept, the least recently used go.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from envpack import _cachefile

FORMAT = 1
_MAX_ENTRIES = 32
_MAX_BYTES = 256 * 1024 * 1024
_MAX_RENDERINGS = 4  # consoles (tty or not, widths) per entry
# Coarser than any file system's timestamps (1 s on ext3/HFS+, 2 s on FAT) plus clock skew.
_RACY_NS = 3_000_000_000

# What was consulted at a path: its contents, its listing, the names of its listing an import
# can find (directories, module files), or only whether (and as what) it is. The lower wins.
FILE, DIR, IMPORT_DIR, PATH = 0, 1, 2, 3
_MODULE_SUFFIXES = (".py", ".pyc", ".so", ".pyd")  # every extension suffix ends in .so/.pyd

# (mtime_ns, size, inode, ctime_ns, mode), None: no such path.
Stat = tuple[int, int, int, int, int] | None

# Environment variables the target's start-up, a shim or the walk may read: the probe runs
# ``-I`` (PYTHONPATH is ignored), but a target that is a wrapper script sees the rest.
_ENV_PREFIXES = ("PYTHON", "PYENV", "CONDA", "VIRTUAL_ENV", "LD_", "PATH")
# The modules whose code decides a result (and, for the CLI, its rendering).
_CODE_DIRS = ("", "analyzer", "cli")
_DEPENDENCIES = ("packaging", "elftools", "importlib_metadata")


def _stat(path: str) -> Stat:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns, st.st_mode)


class _Recorder:
    """The paths one analysis consulted, each with its stat from before it was consulted."""

    def __init__(self) -> None:
        self.start = time.time_ns()
        self.seen: dict[str, list[Any]] = {}  # path -> [kind, stat, late]
        self.confirmations: list[Callable[[], bool]] = []

    def note(self, path: str, kind: int, late: bool) -> None:
        entry = self.seen.get(path)
        if entry is None:
            self.seen[path] = [kind, _stat(path), late]
        elif kind < entry[0]:
            entry[0] = kind  # contents or a listing outrank existence; the first stat stays


_recorder: _Recorder | None = None


@contextmanager
def recording() -> Iterator[_Recorder]:
    """Record what the code inside consults (the ``note_*`` calls) for ``store``."""
    global _recorder
    outer, _recorder = _recorder, _Recorder()
    try:
        yield _recorder
    finally:
        _recorder = outer


def recording_on() -> bool:
    return _recorder is not None


def confirm_late(check: Callable[[], bool]) -> None:
    """``check`` redoes what the late-noted paths fed (the probe) and says whether the answer
    is the same; ``store`` calls it when one of those paths is racy, after taking its stats."""
    if _recorder is not None:
        _recorder.confirmations.append(check)


def note_file(path: str | os.PathLike[str], *, late: bool = False) -> None:
    """The contents of ``path`` are about to be read (or its absence to matter)."""
    if _recorder is not None:
        _recorder.note(os.path.abspath(path), FILE, late)


def note_dir(path: str | os.PathLike[str], *, late: bool = False) -> None:
    """The listing of directory ``path`` is about to be read."""
    if _recorder is not None:
        _recorder.note(os.path.abspath(path), DIR, late)


def note_import_dir(path: str | os.PathLike[str]) -> None:
    """Directory ``path`` is about to be listed to find modules: only its subdirectories and
    module files can change what an import finds there (an envpack.json written beside the
    processor cannot)."""
    if _recorder is not None:
        _recorder.note(os.path.abspath(path), IMPORT_DIR, False)


def note_path(path: str | os.PathLike[str], *, late: bool = False) -> None:
    """Whether ``path`` exists, and whether it is a file or a directory, is about to matter."""
    if _recorder is not None:
        _recorder.note(os.path.abspath(path), PATH, late)


def note_tree(top: str | os.PathLike[str]) -> None:
    """Every directory under ``top`` is about to be listed (os.walk, a recursive glob)."""
    if _recorder is None:
        return
    todo, visited = [os.path.abspath(top)], set()
    while todo:
        directory = todo.pop()
        real = os.path.realpath(directory)
        if real in visited:
            continue
        visited.add(real)
        _recorder.note(directory, DIR, False)
        try:
            with os.scandir(directory) as it:
                subdirs = [e.path for e in it if _is_dir(e)]
        except OSError:
            continue
        todo += subdirs


def note_glob(pattern: str) -> None:
    """``glob.glob(pattern)`` is about to run: note the directories it may list."""
    if _recorder is None:
        return
    import glob

    parts = os.path.abspath(pattern).split(os.sep)
    magic = next((i for i, part in enumerate(parts) if glob.has_magic(part)), None)
    if magic is None:
        note_path(os.sep.join(parts))
    elif magic == len(parts) - 1 and "**" not in parts[magic]:
        note_dir(os.sep.join(parts[:magic]) or os.sep)
    else:
        note_tree(os.sep.join(parts[:magic]) or os.sep)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _racy(st: Stat, after: int) -> bool:
    """Whether a change made after ``st`` was taken could leave it as it is."""
    return st is not None and max(st[0], st[3]) >= after


def _fingerprint(path: str, kind: int) -> str | None:
    """What a stat cannot vouch for when it is racy: a file's bytes, a directory's listing."""
    digest = hashlib.sha256()
    try:
        if kind == FILE:
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        elif kind in (DIR, IMPORT_DIR):
            with os.scandir(path) as it:
                names = sorted(
                    f"{e.name}/{int(is_dir)}"
                    for e in it
                    for is_dir in (_is_dir(e),)
                    if kind == DIR or is_dir or e.name.endswith(_MODULE_SUFFIXES)
                )
            digest.update("\0".join(names).encode("utf-8", "surrogateescape"))
        else:
            return None
    except OSError:
        return "unreadable"
    return digest.hexdigest()


# -- keys ------------------------------------------------------------------------------------
def analysis_key(
    paths: Sequence[str | os.PathLike[str]],
    *,
    include_lazy: Collection[str] = (),
    hints: Mapping[str, Sequence[str]] | None = None,
    python: str | os.PathLike[str] | None = None,
    search_path: Sequence[str | os.PathLike[str]] = (),
    project_dir: str | os.PathLike[str] | None = None,
    data: Sequence[str] = (),
    exclude: Collection[str] = (),
) -> str | None:
    """The key of an ``analyze()`` call with these arguments (its own signature), here and now;
    None when the interpreter cannot be named (the analysis itself will say why)."""
    from envpack.analyzer.interpreter import resolve_executable
    from envpack.errors import UsageError

    try:
        exe = resolve_executable(python)
    except UsageError:
        return None
    parts = (
        FORMAT,
        [os.path.realpath(os.path.abspath(p)) for p in paths],
        sorted(set(include_lazy)),
        [(k, list(v)) for k, v in (hints or {}).items()],
        exe,
        [os.fspath(p) for p in search_path],
        os.fspath(project_dir) if project_dir is not None else None,
        list(data),
        list(exclude),
        os.getcwd(),
        sorted((k, v) for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)),
        code_identity(),
    )
    return hashlib.sha256(repr(parts).encode("utf-8", "surrogateescape")).hexdigest()


def code_identity() -> tuple[Any, ...]:
    """envpack's own modules and the libraries whose behaviour a result depends on, by stat;
    an upgrade (or an edit of a checkout) makes every stored result a stranger."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    stats: list[tuple[str, Stat]] = []
    for sub in _CODE_DIRS:
        directory = os.path.join(package, sub)
        try:
            names = sorted(n for n in os.listdir(directory) if n.endswith(".py"))
        except OSError:
            continue
        stats += [(f"{sub}/{n}", _stat(os.path.join(directory, n))) for n in names]
    return (sys.version, sys.implementation.cache_tag, stats, module_stats(_DEPENDENCIES))


def module_stats(names: Iterable[str]) -> list[tuple[str, Stat]]:
    """The stat of each top-level module's file, found without importing it."""
    import importlib.util

    out: list[tuple[str, Stat]] = []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        origin = spec.origin if spec is not None else None
        out.append((name, _stat(origin) if origin else None))
    return out


# -- entries ---------------------------------------------------------------------------------
def _directory() -> Path:
    return _cachefile.cache_dir() / f"results-v{FORMAT}"


def _entry_file(key: str) -> Path:
    return _directory() / f"{key}.marshal"


def lookup(key: str | None) -> dict[str, Any] | None:
    """The entry stored under ``key`` if every path it consulted is as it was; else None.

    The entry holds ``spec`` (the Spec's JSON) and ``renderings`` (see ``add_rendering``)."""
    if key is None:
        return None
    path = _entry_file(key)
    entry = _cachefile.load(path)
    if not isinstance(entry, dict) or entry.get("format") != FORMAT or entry.get("key") != key:
        return None
    rows = entry.get("paths")
    if not isinstance(rows, list):
        return None
    settled = time.time_ns() - _RACY_NS
    dirty = False
    for i, (p, kind, st, fp, check) in enumerate(rows):
        now = _stat(p)
        if now == st and not check:
            continue
        # A changed stat (the Spec written beside the processor, a touch) or a racy one: the
        # fingerprint decides, when there is one.
        if fp is None or _fingerprint(p, kind) != fp:
            return None
        racy = kind != PATH and _racy(now, settled)
        if now != st or racy != check:
            rows[i] = (p, kind, now, fp, racy)  # what the next lookup needs to look at
            dirty = True
    if dirty:
        _cachefile.save(path, entry)
    else:
        with suppress(OSError):
            os.utime(path)  # recently used: pruned last
    return entry


def store(key: str | None, recorder: _Recorder, spec_json: str) -> bool:
    """Keep ``spec_json`` under ``key`` with the stats ``recorder`` took; False when not kept
    (something changed while the analysis ran, a racy late path's source answers otherwise
    now, or the disk refused)."""
    if key is None:
        return False
    racy_after = recorder.start - _RACY_NS
    rows: list[tuple[str, int, Stat, str | None, bool]] = []
    late_racy = False
    for p, (kind, st, late) in recorder.seen.items():
        if _stat(p) != st:
            return False
        # Whether (and as what) a path exists is all its stat must tell, racy or not.
        racy = kind != PATH and _racy(st, racy_after)
        fp = None
        if racy or (kind in (DIR, IMPORT_DIR) and st is not None):
            fp = _fingerprint(p, kind)
            late_racy = late_racy or (racy and late)
            if _stat(p) != st:
                return False
        rows.append((p, kind, st, fp, racy))
    # A late path was noted after its use: its stat (and fingerprint, taken above) vouch for
    # the answer only if the answer, asked again now, is the one the analysis used.
    checks = recorder.confirmations
    if late_racy and not (checks and all(check() for check in checks)):
        return False
    entry = {"format": FORMAT, "key": key, "spec": spec_json, "paths": rows, "renderings": []}
    if not _cachefile.save(_entry_file(key), entry):
        return False
    _prune(_directory())
    return True


def add_rendering(key: str | None, spec_json: str, console: str, rendering: Any) -> None:
    """Keep how the CLI printed ``spec_json`` on ``console`` (a signature of its terminal and
    options) beside the entry that holds that very Spec; the oldest of too many goes."""
    if key is None:
        return
    path = _entry_file(key)
    entry = _cachefile.load(path)
    if not isinstance(entry, dict) or entry.get("key") != key or entry.get("spec") != spec_json:
        return
    kept = [r for r in entry.get("renderings", []) if r[0] != console]
    entry["renderings"] = [*kept[-(_MAX_RENDERINGS - 1) :], (console, rendering)]
    _cachefile.save(path, entry)


def rendering(entry: Mapping[str, Any], console: str) -> Any:
    """The rendering stored in ``entry`` for ``console``, or None."""
    return next((r[1] for r in entry.get("renderings", ()) if r[0] == console), None)


def _prune(directory: Path) -> None:
    try:
        with os.scandir(directory) as it:
            files = [
                (e.stat().st_mtime_ns, e.stat().st_size, e.path)
                for e in it
                if e.name.endswith(".marshal") and not e.name.startswith(".")
            ]
    except OSError:
        return
    files.sort(reverse=True)
    total = 0
    for i, (_, size, path) in enumerate(files):
        total += size
        if i >= _MAX_ENTRIES or total > _MAX_BYTES:
            with suppress(OSError):
                os.unlink(path)


__all__ = [
    "add_rendering",
    "analysis_key",
    "code_identity",
    "lookup",
    "module_stats",
    "note_dir",
    "note_file",
    "note_glob",
    "note_import_dir",
    "note_path",
    "note_tree",
    "recording",
    "recording_on",
    "rendering",
    "store",
]
