"""Which installed distribution owns each module file, and what each one declares.

The import graph decides what ships; this module only answers "whose file is this?" (from RECORD,
the exact owner, so ``yaml`` -> PyYAML and the portions of a namespace package split over several
distributions each find their own) and "what did a shipped distribution ask for that we left out,
and why" (``Requires-Dist`` with markers evaluated for the target interpreter).
"""

from __future__ import annotations

import csv
import functools
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import importlib_metadata
from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from envpack import _cachefile
from envpack.analyzer import _resultcache
from envpack.spec import Interpreter, LeftOut


@dataclass(frozen=True)
class InstalledDist:
    """One distribution as installed on the target's sys.path."""

    name: str
    version: str
    location: str  # the sys.path entry holding its .dist-info
    files: tuple[str, ...]  # existing files, relative to location, sorted
    size: int
    requires: tuple[str, ...]  # raw Requires-Dist lines
    editable_roots: tuple[str, ...]  # source trees of an editable install (from direct_url/.pth)
    top_level: tuple[str, ...]  # top-level import names its files provide

    @property
    def key(self) -> str:
        return canonicalize_name(self.name)


class DistIndex:
    """Every distribution installed on a list of sys.path entries, with a file -> owner map."""

    def __init__(self, paths: Sequence[str], *, cache_dir: Path | None = None) -> None:
        self._by_name: dict[str, InstalledDist] = {}
        self._owner: dict[str, InstalledDist] = {}
        self._editable: list[tuple[str, InstalledDist]] = []
        cache = _DistCache(cache_dir)
        for location in paths:
            for installed in cache.location(location):
                if installed.key in self._by_name:
                    continue  # an earlier sys.path entry shadows later copies, as at import
                self._by_name[installed.key] = installed
                # Resolve the location once, not each of the ~30k files of a coffea venv: a
                # realpath per RECORD entry was most of a warm analysis.
                base = resolve_path(installed.location)
                prefix = os.path.join(base, "")
                owner = self._owner
                for rel in installed.files:
                    # (files are normalized already: only one that climbs out needs normpath)
                    key = prefix + rel
                    owner.setdefault(os.path.normpath(key) if ".." in rel else key, installed)
                for root in installed.editable_roots:
                    self._editable.append((resolve_path(root) + os.sep, installed))
        cache.save()

    def __iter__(self) -> Iterator[InstalledDist]:
        return iter(sorted(self._by_name.values(), key=lambda d: d.key))

    def get(self, name: str) -> InstalledDist | None:
        return self._by_name.get(canonicalize_name(name))

    def owner(self, path: str | os.PathLike[str]) -> InstalledDist | None:
        """The distribution whose RECORD lists ``path``, or whose editable tree holds it."""
        key = resolve_path(path)
        found = self._owner.get(key)
        if found is not None:
            return found
        return next((d for root, d in self._editable if key.startswith(root)), None)

    def is_editable_source(self, path: str | os.PathLike[str]) -> bool:
        """True for a file of an editable install's source tree (not in any RECORD)."""
        key = resolve_path(path)
        return key not in self._owner and any(key.startswith(root) for root, _ in self._editable)


def resolve_path(path: str | os.PathLike[str]) -> str:
    """realpath of the directory (cached: a few hundred dirs hold tens of thousands of files)
    joined with the file name; file-level symlinks inside site-packages are not followed."""
    head, tail = os.path.split(os.path.normpath(os.fspath(path)))
    return os.path.join(_real_dir(head), tail) if tail else _real_dir(head)


@functools.lru_cache(maxsize=65536)
def _real_dir(path: str) -> str:
    return os.path.realpath(path)


@dataclass(frozen=True)
class _Raw:
    """What one .dist-info/.egg-info says, before sizes and ownership are worked out."""

    name: str
    version: str
    location: str
    record: tuple[str, ...]
    requires: tuple[str, ...]
    meta_dir: str


_META_DIRS = (".dist-info", ".egg-info")
_CACHE_FORMAT = 1

# A location's stamp: its own mtime plus (name, mtime, size) of each metadata dir's RECORD.
# Installing, removing or reinstalling a distribution changes it.
_Stamp = tuple[int, tuple[tuple[str, int, int], ...]]


class _DistCache:
    """Scanned locations kept on disk while their stamp holds (a warm analysis reads no RECORD).

    marshal of plain tuples, not pickle: loading a cache file never runs code.
    """

    def __init__(self, directory: Path | None) -> None:
        self.file = None if directory is None else directory / f"dists-v{_CACHE_FORMAT}.marshal"
        self.entries: dict[str, tuple[_Stamp, list[tuple[Any, ...]]]] = {}
        self.dirty = False
        loaded = _cachefile.load(self.file)
        if isinstance(loaded, dict):
            self.entries = loaded

    def location(self, location: str) -> list[InstalledDist]:
        stamp = _stamp(location)
        if stamp is None:
            return []
        hit = self.entries.get(location)
        if hit is not None and hit[0] == stamp:
            try:
                return [InstalledDist(*fields) for fields in hit[1]]
            except TypeError:
                pass  # written by another layout of InstalledDist: rescan
        found = [_read(raw) for raw in _discover(location)]
        # (astuple would deep-copy every file name: its fields are already immutable)
        self.entries[location] = (stamp, [_fields_of(d) for d in found])
        self.dirty = True
        return found

    def save(self) -> None:
        if self.dirty:
            _cachefile.save(self.file, self.entries)


def _fields_of(dist: InstalledDist) -> tuple[Any, ...]:
    return tuple(getattr(dist, name) for name in _FIELD_NAMES)


_FIELD_NAMES = tuple(f.name for f in fields(InstalledDist))


def _stamp(location: str) -> _Stamp | None:
    _resultcache.note_dir(location)
    try:
        mtime = os.stat(location).st_mtime_ns
        names = sorted(n for n in os.listdir(location) if n.endswith(_META_DIRS))
    except OSError:
        return None
    parts: list[tuple[str, int, int]] = []
    for name in names:
        meta_dir = os.path.join(location, name)
        for probe in ("RECORD", "installed-files.txt", "SOURCES.txt", ""):
            _resultcache.note_path(os.path.join(meta_dir, probe) if probe else meta_dir)
            try:
                st = os.stat(os.path.join(meta_dir, probe) if probe else meta_dir)
            except OSError:
                continue
            parts.append((name, st.st_mtime_ns, st.st_size))
            break
    return (mtime, tuple(parts))


def _discover(location: str) -> Iterator[_Raw]:
    """Read .dist-info directories directly: importlib-metadata's pathlib-based ``files`` and
    email parsing cost over a second on a coffea venv, most of a warm analysis. .egg-info (legacy
    and ``setup.py develop`` installs) still goes through importlib-metadata."""
    try:
        names = sorted(os.listdir(location))
    except OSError:
        return
    for name in names:
        meta_dir = os.path.join(location, name)
        if name.endswith(".dist-info"):
            raw = _dist_info(location, meta_dir)
        elif name.endswith(".egg-info"):
            raw = _egg_info(location, meta_dir)
        else:
            continue
        if raw is not None:
            yield raw


def _dist_info(location: str, meta_dir: str) -> _Raw | None:
    meta = _read_text(os.path.join(meta_dir, "METADATA"))
    if meta is None:
        return None  # a broken .dist-info with no METADATA: nothing we could ship by name
    headers = _headers(meta)
    name = headers.get("name", [""])[0]
    if not name:
        return None
    record_text = _read_text(os.path.join(meta_dir, "RECORD"))
    if record_text is not None:
        record = tuple(row[0] for row in csv.reader(record_text.splitlines()) if row)
    else:  # no RECORD (a hand-made install): ship at least its metadata
        base = os.path.basename(meta_dir)
        _resultcache.note_dir(meta_dir)
        record = tuple(os.path.join(base, f) for f in sorted(os.listdir(meta_dir)))
    return _Raw(
        name=name,
        version=headers.get("version", [""])[0],
        location=location,
        record=record,
        requires=tuple(headers.get("requires-dist", ())),
        meta_dir=meta_dir,
    )


def _egg_info(location: str, meta_dir: str) -> _Raw | None:
    if _resultcache.recording_on():
        _resultcache.note_dir(meta_dir)  # (a single-file .egg-info: its stat)
        try:
            names = sorted(os.listdir(meta_dir))
        except OSError:
            names = []
        for entry in names:
            _resultcache.note_file(os.path.join(meta_dir, entry))
    dist = importlib_metadata.PathDistribution(Path(meta_dir))
    name = dist.metadata["Name"] if dist.metadata else None
    if not name:
        return None
    return _Raw(
        name=name,
        version=dist.version,
        location=location,
        record=tuple(str(f) for f in dist.files or ()),
        requires=tuple(dist.requires or ()),
        meta_dir=meta_dir,
    )


def _headers(text: str) -> dict[str, list[str]]:
    """Core-metadata headers (RFC 822 style) up to the body, keys lower-cased."""
    out: dict[str, list[str]] = {}
    last = ""
    for line in text.splitlines():
        if not line:
            break
        if line[0] in " \t" and last:
            out[last][-1] += " " + line.strip()
            continue
        key, sep, value = line.partition(":")
        if sep:
            last = key.strip().lower()
            out.setdefault(last, []).append(value.strip())
    return out


def _read_text(path: str) -> str | None:
    _resultcache.note_file(path)
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def _read(raw: _Raw) -> InstalledDist:
    location = raw.location
    files: list[str] = []
    size = 0
    top: set[str] = set()
    for entry in raw.record:
        rel = os.path.normpath(
            entry if not os.path.isabs(entry) else os.path.relpath(entry, location)
        )
        try:
            st = os.lstat(os.path.join(location, rel))
        except OSError:
            continue  # RECORD may list .pyc files that were never written
        files.append(rel)
        size += st.st_size
        head = rel.split(os.sep, 1)
        if head[0].startswith("..") or head[0].endswith((".dist-info", ".egg-info")):
            continue
        if len(head) == 2 and head[0] != "__pycache__":
            top.add(head[0])
        elif len(head) == 1 and rel.endswith((".py", ".so", ".pyd")):
            top.add(rel.split(".", 1)[0])
    return InstalledDist(
        name=raw.name,
        version=raw.version,
        location=location,
        files=tuple(sorted(files)),
        size=size,
        requires=raw.requires,
        editable_roots=_editable_roots(raw, files),
        top_level=tuple(sorted(t for t in top if t.isidentifier())),
    )


_NOT_PATH = ("#", "import")  # .pth lines that are comments or code, not paths


def _editable_roots(raw: _Raw, files: Sequence[str]) -> tuple[str, ...]:
    """Source trees of an editable install: the paths its own .pth files add to sys.path."""
    text = _read_text(os.path.join(raw.meta_dir, "direct_url.json"))
    if not text:
        return ()
    try:
        editable = bool(json.loads(text).get("dir_info", {}).get("editable"))
    except (ValueError, AttributeError):
        return ()
    if not editable:
        return ()
    roots: list[str] = []
    for rel in files:
        if rel.endswith(".pth"):
            lines = (_read_text(os.path.join(raw.location, rel)) or "").splitlines()
            roots += [ln.strip() for ln in lines if ln.strip() and not ln.startswith(_NOT_PATH)]
    return tuple(sorted(roots))


def marker_environment(interp: Interpreter) -> dict[str, str]:
    """PEP 508 marker variables for the target interpreter (not the one running envpack)."""
    major_minor = ".".join(interp.version.split(".")[:2])
    system = {"linux": "Linux", "darwin": "Darwin", "win32": "Windows"}.get(interp.platform, "")
    return {
        "implementation_name": interp.implementation,
        "implementation_version": interp.version,
        "os_name": "nt" if interp.platform == "win32" else "posix",
        "platform_machine": interp.machine,
        "platform_python_implementation": {"cpython": "CPython", "pypy": "PyPy"}.get(
            interp.implementation, interp.implementation
        ),
        "platform_release": "",
        "platform_system": system,
        "platform_version": "",
        "python_full_version": interp.version,
        "python_version": major_minor,
        "sys_platform": interp.platform,
        "extra": "",
    }


def left_out(
    dist: InstalledDist,
    shipped: Mapping[str, object],
    index: DistIndex,
    env: Mapping[str, str],
) -> tuple[LeftOut, ...]:
    """Requirements of ``dist`` that are not shipped, each with the reason (for ``--why``)."""
    out: list[LeftOut] = []
    for line in dist.requires:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            out.append(LeftOut(name=line, requirement=line, reason="unparsable requirement"))
            continue
        key = canonicalize_name(req.name)
        if key in shipped:
            continue
        reason = _marker_reason(req.marker, env)
        if reason is None:
            reason = "installed, not imported" if index.get(key) else "not installed"
        out.append(LeftOut(name=req.name, requirement=line, reason=reason))
    return tuple(sorted(out, key=lambda r: (canonicalize_name(r.name), r.requirement)))


def _marker_reason(marker: Marker | None, env: Mapping[str, str]) -> str | None:
    if marker is None or marker.evaluate(dict(env)):
        return None
    if "extra" in str(marker):
        return f"extra not requested ({marker})"
    return f"marker false for the target ({marker})"
