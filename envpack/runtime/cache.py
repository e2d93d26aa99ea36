"""The node cache as operators see it: list entries, prune to a size.

Same rules as ``envpack-run`` (stdlib only, so it works wherever envpack is installed):
an entry is ``<cache>/<16 hex>/`` with its lock ``<hash>.lock`` beside it; the lock file's
mtime is the last use; an entry is in use while anyone holds its lock (a task holds it shared
for as long as it runs), tested with a non-blocking exclusive flock, and is never removed then.
Sizes come from each entry's ``.envpack/summary`` (what it held when unpacked), not a walk.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from envpack.errors import EnvpackError, UsageError

DEFAULT_MAX = "20G"
_HASH = re.compile(r"[0-9a-f]{16}")
_TMP = re.compile(r"\.(?:tmp|trash)-([0-9a-f]{16})-\d+(?:\.\w+)?")
_SIZE = re.compile(r"(\d+)([kKmMgGtT]?)")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class CacheError(EnvpackError):
    """The cache directory cannot be read or changed."""


@dataclass(frozen=True)
class CacheEntry:
    """One unpacked environment on this node."""

    hash: str
    path: Path
    size: int  # bytes, from .envpack/summary
    last_use: float  # epoch seconds (the lock file's mtime)
    in_use: bool


@dataclass(frozen=True)
class PruneResult:
    removed: tuple[CacheEntry, ...]
    kept_in_use: tuple[CacheEntry, ...]  # over the limit but locked by a running task
    stale_removed: tuple[Path, ...]  # temp dirs of unpacks whose runner is gone
    size_before: int
    size_after: int


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where envpack-run keeps its cache: $ENVPACK_CACHE, else ${TMPDIR:-/tmp}/envpack-<uid>."""
    env = os.environ if environ is None else environ
    if env.get("ENVPACK_CACHE"):
        return Path(env["ENVPACK_CACHE"])
    return Path(env.get("TMPDIR") or "/tmp") / f"envpack-{os.getuid()}"


def parse_size(text: str) -> int:
    """Bytes from ``N`` or ``N`` with a K/M/G/T suffix (powers of 1024), as envpack-run reads it."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise UsageError(f"{text!r} is not a size (bytes, or a number with a K/M/G/T suffix)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def max_size(environ: Mapping[str, str] | None = None) -> int:
    """The limit envpack-run evicts to: $ENVPACK_CACHE_MAX, else 20G."""
    env = os.environ if environ is None else environ
    return parse_size(env.get("ENVPACK_CACHE_MAX") or DEFAULT_MAX)


@contextlib.contextmanager
def _try_lock(lock: Path) -> Iterator[bool]:
    """Hold a non-blocking exclusive flock on ``lock`` for the block; yields whether we got it."""
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise CacheError(f"cannot open {lock}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing the last fd of the description releases the lock


def _summary_bytes(entry: Path) -> int:
    try:
        text = (entry / ".envpack" / "summary").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return 0
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "bytes" and value.strip().isdigit():
            return int(value.strip())
    return 0


def _entry(cache: Path, name: str) -> CacheEntry:
    path = cache / name
    lock = cache / f"{name}.lock"
    try:
        last_use = lock.stat().st_mtime
    except FileNotFoundError:
        last_use = path.stat().st_mtime
    with _try_lock(lock) as free:
        in_use = not free
    return CacheEntry(name, path, _summary_bytes(path), last_use, in_use)


def list_entries(cache: Path) -> list[CacheEntry]:
    """Every entry in ``cache``, least recently used first."""
    try:
        names = [p.name for p in cache.iterdir() if _HASH.fullmatch(p.name) and p.is_dir()]
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CacheError(f"cannot read the cache {cache}: {exc.strerror}") from None
    return sorted((_entry(cache, n) for n in names), key=lambda e: (e.last_use, e.hash))


def stale_dirs(cache: Path) -> list[Path]:
    """Temp and trash dirs left by runners that died; their hash's lock is free."""
    out: list[Path] = []
    try:
        paths = list(cache.iterdir())
    except FileNotFoundError:
        return []
    for path in paths:
        match = _TMP.fullmatch(path.name)
        if match is None:
            continue
        with _try_lock(cache / f"{match.group(1)}.lock") as free:
            if free:
                out.append(path)
    return sorted(out)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def prune(cache: Path, max_bytes: int) -> PruneResult:
    """Remove least recently used entries until the cache holds at most ``max_bytes``.

    Each removal holds the entry's exclusive lock, taken without waiting: an entry in use is
    skipped, never waited for. Stale temp dirs go as well.
    """
    stale: list[Path] = []
    for path in stale_dirs(cache):
        match = _TMP.fullmatch(path.name)
        assert match is not None
        with _try_lock(cache / f"{match.group(1)}.lock") as free:
            if free and path.exists():
                _remove(path)
                stale.append(path)
    entries = list_entries(cache)
    total = before = sum(e.size for e in entries)
    removed: list[CacheEntry] = []
    kept: list[CacheEntry] = []
    for entry in entries:
        if total <= max_bytes:
            break
        with _try_lock(cache / f"{entry.hash}.lock") as free:
            if not free:
                kept.append(entry)
                continue
            trash = cache / f".trash-{entry.hash}-{os.getpid()}"
            try:
                entry.path.rename(trash)
                shutil.rmtree(trash)
            except FileNotFoundError:
                continue  # evicted by a runner meanwhile
            except OSError as exc:
                raise CacheError(f"cannot remove {entry.path}: {exc.strerror}") from None
        removed.append(entry)
        total -= entry.size
    return PruneResult(tuple(removed), tuple(kept), tuple(stale), before, total)


__all__ = [
    "DEFAULT_MAX",
    "CacheEntry",
    "CacheError",
    "PruneResult",
    "cache_dir",
    "list_entries",
    "max_size",
    "parse_size",
    "prune",
    "stale_dirs",
]
