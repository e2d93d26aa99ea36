"""The node cache as operators see it: where it is, its entries, pruning it to a size.

Listing is read-only Python (stdlib and envpack.layout, so it works wherever envpack is
installed). Where the cache is and how eviction works are the runner's own: this module asks
``envpack-run --cache-dir`` and runs ``envpack-run --evict``, so the rules exist once. An entry
is ``<cache>/<16 hex>/`` with its lock ``<hash>.lock`` beside it; the lock file's mtime is the
last use and its text the bytes the entry really occupies; an entry is in use while anyone holds
its lock (a task holds it shared for as long as it runs), and is never removed then.

A layered env's entry is hard links into the layer store, ``<cache>/layers/<lhash>/`` (lock
``layers/<lhash>.lock``, text use=N): an entry's size is then what it alone holds, and each
layer counts once however many entries share it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from envpack import layout
from envpack.errors import EnvpackError, UsageError
from envpack.runtime import EXIT_USAGE, runner_path

LAYER_STORE = "layers"
"""The node's layer store: a directory of the cache, so entries can hard-link its files."""


class CacheError(EnvpackError):
    """The cache directory cannot be found, read or changed."""


@dataclass(frozen=True)
class CacheEntry:
    """One unpacked environment on this node."""

    hash: str
    path: Path
    size: int  # bytes on disk, as the runner recorded at unpack (else from .envpack/summary)
    last_use: float  # epoch seconds (the lock file's mtime)
    in_use: bool
    layers: tuple[str, ...] = ()  # the layer hashes it is assembled from (none: unlayered)


@dataclass(frozen=True)
class LayerEntry:
    """One layer in the node's layer store."""

    hash: str
    path: Path
    name: str  # the label the envs' indexes give it ("" when no env lists it)
    size: int  # bytes on disk, as the runner recorded when the layer entered the store
    shared_by: int  # how many entries list it


def saving(layers: list[LayerEntry]) -> int:
    """Bytes the store saves: each layer once instead of once per entry that holds it."""
    return sum(layer.size * (layer.shared_by - 1) for layer in layers if layer.shared_by > 1)


@dataclass(frozen=True)
class PruneResult:
    removed: tuple[CacheEntry, ...]
    kept_in_use: tuple[CacheEntry, ...]  # over the limit but locked by a running task
    stale_removed: tuple[Path, ...]  # temp dirs and trash of runners that are gone
    size_before: int
    size_after: int
    limit: int
    layers_removed: tuple[LayerEntry, ...] = ()  # layers no remaining entry lists


def _runner(args: list[str], environ: Mapping[str, str] | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ if environ is None else environ)
    try:
        return subprocess.run(
            ["sh", str(runner_path()), *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise CacheError(f"cannot run {runner_path()}: {exc.strerror}") from None


def _message(res: subprocess.CompletedProcess[str]) -> str:
    text = res.stderr.strip().removeprefix("envpack-run: error: ")
    return text or f"envpack-run exited with status {res.returncode}"


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The directory envpack-run uses on this node (it creates it, and refuses unsafe ones)."""
    res = _runner(["--cache-dir"], environ)
    if res.returncode != 0:
        raise CacheError(_message(res))
    return Path(res.stdout.strip())


@contextlib.contextmanager
def _try_lock(lock: Path) -> Iterator[bool]:
    """Hold a non-blocking exclusive flock on ``lock`` for the block; yields whether we got it."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        yield True
        return
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


def _size(cache: Path, name: str, *, tree: bool = True) -> int:
    with contextlib.suppress(OSError):
        use = layout.lock_use((cache / layout.lock_name(name)).read_bytes())
        if use is not None:
            return use
    if not tree:
        return 0
    with contextlib.suppress(OSError):
        value = layout.parse_summary((cache / name / layout.SUMMARY).read_bytes()).get("bytes")
        if value and value.isdigit():
            return int(value)
    return 0


def _index(root: Path) -> layout.Index | None:
    """The layer index of an unpacked tree, None when it has none (or one this cannot read)."""
    try:
        return layout.parse_index((root / layout.LAYERS).read_bytes())
    except (OSError, layout.LayoutError):
        return None


def _entry(cache: Path, name: str) -> CacheEntry:
    path = cache / name
    lock = cache / layout.lock_name(name)
    try:
        last_use = lock.stat().st_mtime
    except FileNotFoundError:
        last_use = path.stat().st_mtime
    with _try_lock(lock) as free:
        in_use = not free
    index = _index(path)
    layers = tuple(e.hash for e in index.layers) if index else ()
    return CacheEntry(name, path, _size(cache, name), last_use, in_use, layers)


def list_layers(cache: Path) -> list[LayerEntry]:
    """Every layer in the store of ``cache``, most shared first, then largest."""
    store = cache / LAYER_STORE
    try:
        names = [p.name for p in store.iterdir() if layout.is_hash(p.name) and p.is_dir()]
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CacheError(f"cannot read the layer store {store}: {exc.strerror}") from None
    users: dict[str, int] = {}
    labels: dict[str, str] = {}
    with contextlib.suppress(FileNotFoundError):
        for item in cache.iterdir():
            if layout.is_hash(item.name) and item.is_dir():
                index = _index(item)
                for e in index.layers if index else ():
                    users[e.hash] = users.get(e.hash, 0) + 1
                    labels.setdefault(e.hash, e.name)
    out = [
        LayerEntry(n, store / n, labels.get(n, ""), _size(store, n, tree=False), users.get(n, 0))
        for n in names
    ]
    return sorted(out, key=lambda x: (-x.shared_by, -x.size, x.hash))


def list_entries(cache: Path) -> list[CacheEntry]:
    """Every entry in ``cache``, least recently used first."""
    try:
        names = [p.name for p in cache.iterdir() if layout.is_hash(p.name) and p.is_dir()]
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CacheError(f"cannot read the cache {cache}: {exc.strerror}") from None
    return sorted((_entry(cache, n) for n in names), key=lambda e: (e.last_use, e.hash))


def prune(cache: Path, limit: str | int | None = None) -> PruneResult:
    """Evict least recently used entries until ``cache`` holds at most ``limit`` (bytes, or a
    size with a K/M/G/T suffix; default $ENVPACK_CACHE_MAX, else 20G), by the runner's own
    eviction: an entry in use is skipped, never waited for; leftovers of dead runners go too."""
    before = {e.hash: e for e in list_entries(cache)}
    layers_before = {x.hash: x for x in list_layers(cache)}
    env = {**os.environ, "ENVPACK_CACHE": str(cache)}
    if limit is not None:
        env["ENVPACK_CACHE_MAX"] = str(limit)
    res = _runner(["--evict"], env)
    if res.returncode == EXIT_USAGE:
        raise UsageError(_message(res))
    if res.returncode != 0:
        raise CacheError(_message(res))
    removed: list[CacheEntry] = []
    kept: list[CacheEntry] = []
    stale: list[Path] = []
    layers: list[LayerEntry] = []
    total = (0, 0, 0)
    for line in res.stdout.splitlines():
        kind, _, rest = line.partition(" ")
        if kind in ("evicted", "in-use"):
            name, _, size = rest.partition(" ")
            entry = before.get(name) or CacheEntry(name, cache / name, int(size), 0.0, False)
            (removed if kind == "evicted" else kept).append(entry)
        elif kind == "evicted-layer":
            name, _, size = rest.partition(" ")
            layer = layers_before.get(name)
            layers.append(layer or LayerEntry(name, cache / LAYER_STORE / name, "", int(size), 0))
        elif kind == "stale":
            stale.append(Path(rest))
        elif kind == "total":
            a, b, c = (int(x) for x in rest.split())
            total = (a, b, c)
    return PruneResult(tuple(removed), tuple(kept), tuple(stale), *total, tuple(layers))


__all__ = [
    "LAYER_STORE",
    "CacheEntry",
    "CacheError",
    "LayerEntry",
    "PruneResult",
    "cache_dir",
    "list_entries",
    "list_layers",
    "prune",
    "saving",
]
