"""The deterministic archive writer: entries in, a byte-reproducible layered tarball out.

It never knows where bytes come from (the collector decides that): an :class:`Entry` carries a
path to copy, bytes, a callable producing bytes, or a symlink target. Every tar header is
normalized (fixed mtime, uid/gid 0, empty user/group names, 0755/0644 modes) and members are
written in sorted order, so the same entries always give the same bytes. The content hash in the
tarball's name is taken over the manifest (paths, modes, digests, link targets), not over the
compressed stream, so it does not depend on the compressor.

The tarball is layered (envpack.layout says how): each layer is a tar fragment compressed on
its own, and kept compressed in a :class:`PieceCache`, so a rebuild compresses only the layers
whose content changed and copies the rest.
"""

from __future__ import annotations

import hashlib
import heapq
import io
import itertools
import os
import queue
import shutil
import stat
import subprocess
import sys
import tarfile
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

from envpack import _cachefile, layout
from envpack.layout import META_DIR, Record, layer_name, manifest_bytes, manifest_hash

# 2000-01-01T00:00:00Z: any fixed date works; SOURCE_DATE_EPOCH overrides it, as usual.
DEFAULT_MTIME = 946684800

Compression = Literal["gzip", "zstd"]
Progress = Callable[[str, int, int], None]
"""progress(stage, done, total): called by the library, turned into a progress bar by the CLI."""


@dataclass(frozen=True)
class Link:
    """A symlink: its target, relative to the link's directory."""

    target: str


Source = Path | bytes | Link | Callable[[], bytes]


@dataclass(frozen=True)
class Entry:
    """One archive member: where it goes, its mode, and where its bytes come from."""

    arcname: str
    mode: int
    source: Source
    group: str = ""  # what it belongs to ("python", "stdlib", a distribution name, ...)
    # The files a callable source's bytes are a function of: its key in the digest cache.
    inputs: tuple[Path, ...] = ()


class Stale(Exception):
    """Raised by a callable source whose input no longer fits (a stale pyc): leave it out."""


def normalize_mode(mode: int, *, link: bool = False) -> int:
    """0755 for anything executable, 0644 otherwise: modes never leak umask or owner bits."""
    if link:
        return 0o777
    return 0o755 if mode & 0o111 else 0o644


def source_mtime() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value and value.isdigit():
        return int(value)
    return DEFAULT_MTIME


def _read(source: Source) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, Path):
        return source.read_bytes()
    if isinstance(source, Link):
        raise TypeError("a symlink has no content")
    return source()


class DigestCache:
    """sha256 and size of file contents, keyed by the files' identity and stat.

    A warm rebuild must name its tarball without reading ~600 MB again. The key of a file is
    (path, st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns): any write changes mtime and ctime
    (ctime cannot be set back by tools that restore mtimes), a replacement changes the inode. A
    file whose mtime is less than ``RACY`` seconds before the build started is never cached: a
    second write within the same timestamp tick would go unseen (git's "racily clean" rule).
    Stored as marshal (loading it never runs code), written atomically; an unreadable or
    corrupt file is an empty cache.
    """

    FORMAT = 1
    RACY = 2.0
    MAX = 200_000  # entries kept across builds; past it, only this build's are kept

    def __init__(self, file: Path | None) -> None:
        self.file = file
        self._old: dict[object, tuple[int, bytes]] = {}
        self._new: dict[object, tuple[int, bytes]] = {}
        self._cutoff = time.time_ns() - int(self.RACY * 1e9)
        loaded = _cachefile.load(file)
        if (
            isinstance(loaded, tuple)
            and len(loaded) == 2
            and loaded[0] == self.FORMAT
            and isinstance(loaded[1], dict)
        ):
            self._old = loaded[1]

    @staticmethod
    def default_file() -> Path:
        return _cachefile.cache_dir() / f"digests-v{DigestCache.FORMAT}.marshal"

    def key(self, paths: tuple[Path, ...]) -> tuple[object, ...] | None:
        """The cache key of content made from ``paths``; None when it must not be cached."""
        parts: list[object] = []
        for path in paths:
            try:
                st = os.stat(path)
            except OSError:
                return None
            if st.st_mtime_ns > self._cutoff:
                return None
            parts.append(
                (os.fspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            )
        return tuple(parts)

    def get(self, key: object) -> tuple[int, bytes] | None:
        hit = self._new.get(key) or self._old.get(key)
        if hit is not None:
            self._new[key] = hit
        return hit

    def put(self, key: object, size: int, digest: bytes) -> None:
        self._new[key] = (size, digest)

    def save(self) -> None:
        """Write the cache; a failure only costs the next build its hits."""
        if self.file is None or not self._new:
            return
        merged = dict(self._old) if len(self._old) + len(self._new) <= self.MAX else {}
        merged.update(self._new)
        _cachefile.save(self.file, (self.FORMAT, merged))


def record_of(entry: Entry, cache: DigestCache | None = None) -> Record:
    """Digest one entry (reads a file source once, streaming); raises Stale for a stale one."""
    src = entry.source
    if isinstance(src, Link):
        return Record(entry.arcname, 0o777, 0, None, src.target, entry.group)
    if isinstance(src, bytes):
        return Record(
            entry.arcname, entry.mode, len(src), hashlib.sha256(src).hexdigest(), None, entry.group
        )
    inputs = (src,) if isinstance(src, Path) else entry.inputs
    key = cache.key(inputs) if cache is not None and inputs else None
    hit = cache.get(key) if cache is not None and key is not None else None
    if hit is not None:
        return Record(entry.arcname, entry.mode, hit[0], hit[1].hex(), None, entry.group)
    if isinstance(src, Path):
        with open(src, "rb") as fh:
            sha = hashlib.file_digest(fh, "sha256")
            size = fh.tell()
    else:
        data = src()
        sha, size = hashlib.sha256(data), len(data)
    if cache is not None and key is not None:
        cache.put(key, size, sha.digest())
    return Record(entry.arcname, entry.mode, size, sha.hexdigest(), None, entry.group)


def _record_or_none(entry: Entry, cache: DigestCache | None) -> Record | None:
    try:
        return record_of(entry, cache)
    except Stale:
        return None


def digest(
    entries: list[Entry], progress: Progress | None = None, cache: DigestCache | None = None
) -> tuple[list[Entry], list[Record]]:
    """The entries that still yield content, and their records, in the entries' order.

    I/O and sha256 (which releases the GIL) bound, so a few threads help.
    """
    total = len(entries)
    kept: list[Entry] = []
    records: list[Record] = []
    chunks = [entries[i : i + 256] for i in range(0, total, 256)]  # one task each: few submits

    def run(chunk: list[Entry]) -> list[Record | None]:
        return [_record_or_none(e, cache) for e in chunk]

    done = 0
    with ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 1) * 2)) as pool:
        for chunk, results in zip(chunks, pool.map(run, chunks), strict=True):
            for entry, rec in zip(chunk, results, strict=True):
                if rec is not None:
                    kept.append(entry)
                    records.append(rec)
            done += len(chunk)
            if progress is not None:
                progress("hashing", done, total)
    return kept, records


def digest_entries(entries: list[Entry], progress: Progress | None = None) -> list[Record]:
    """Records for every entry, in the entries' order (no cache; a Stale source is an error)."""
    kept, records = digest(entries, progress)
    if len(kept) != len(entries):
        gone = sorted({e.arcname for e in entries} - {e.arcname for e in kept})
        raise Stale(f"sources gave no content: {', '.join(gone)}")
    return records


def parent_dirs(paths: Iterable[str]) -> set[str]:
    """Every directory that holds a member, so the tarball creates them with fixed modes."""
    dirs: set[str] = set()
    for path in paths:
        parent = path.rpartition("/")[0]
        while parent and parent not in dirs:
            dirs.add(parent)
            parent = parent.rpartition("/")[0]
    return dirs


# -- layers ------------------------------------------------------------------------------------

# The order layers take in the file: what changes least first, what changes most (local code)
# last. A distribution is one layer each, in name order, between "stdlib" and "native".
_FIRST = ("python", "stdlib")
_LAST = ("native", "local", "envpack")


@dataclass(frozen=True)
class Layer:
    """A content-addressed part of an environment: its entries, their records, its manifest."""

    name: str
    entries: tuple[Entry, ...]
    records: tuple[Record, ...]
    manifest: bytes
    hash: str  # first 16 hex of sha256(manifest): what a node's layer store knows it by


def _order(group: str) -> tuple[int, str]:
    if group in _FIRST:
        return (_FIRST.index(group), group)
    if group in _LAST:
        return (len(_FIRST) + 1 + _LAST.index(group), group)
    return (len(_FIRST), group.lower())


def _groups(entries: Iterable[Entry]) -> list[list[Entry]]:
    """The entries of each layer, sorted by path; the layers in their fixed order."""
    by_group: dict[str, list[Entry]] = {}
    for entry in entries:
        by_group.setdefault(entry.group or "other", []).append(entry)
    return [sorted(by_group[g], key=lambda e: e.arcname) for g in sorted(by_group, key=_order)]


def _layer(group: str, entries: list[Entry], records: list[Record]) -> Layer:
    recs = tuple(records)
    manifest = manifest_bytes(recs)
    return Layer(
        layer_name(group or "other"), tuple(entries), recs, manifest, manifest_hash(manifest)
    )


def plan_layers(entries: list[Entry], records: list[Record]) -> list[Layer]:
    """One layer per group (the interpreter, the stdlib, each distribution, bundled native
    libraries, local code and data, envpack's scripts), in a fixed order."""
    of = dict(zip((e.arcname for e in entries), records, strict=True))
    return [_layer(g[0].group, g, [of[e.arcname] for e in g]) for g in _groups(entries)]


class _HeaderFactory:
    """Tar headers with nothing of the build machine in them.

    tarfile's own PAX writer costs ~40 us a header (6,900 of them in a coffea env); the common
    case (an ASCII name and link target of at most 100 characters, a size below 8 GiB) is
    built here directly, byte for byte what tarfile writes (tests/test_archive.py compares
    them); anything else goes through tarfile.
    """

    def __init__(self, mtime: int) -> None:
        self.mtime = mtime
        self._fast = 0 <= mtime < 8**11
        # uid, gid (0) | size | mtime | checksum placeholder: the fields between mode and type
        self._ids = b"0000000\0" * 2
        self._mtime = b"%011o\0" % mtime if self._fast else b""
        # magic "ustar\0" "00", then empty uname, gname, devmajor, devminor, prefix, padding
        self._tail = tarfile.POSIX_MAGIC + NUL * (32 + 32 + 8 + 8 + 155 + 12)

    def make(self, name: str, kind: bytes, mode: int, size: int = 0, target: str = "") -> bytes:
        if kind == tarfile.DIRTYPE and not name.endswith("/"):
            name += "/"  # as tarfile's get_info() does
        if (
            self._fast
            and len(name) <= 100
            and len(target) <= 100
            and name.isascii()
            and target.isascii()
            and 0 <= size < 8**11
        ):
            buf = b"".join(
                (
                    name.encode().ljust(100, NUL),
                    b"%07o\0" % (mode & 0o7777),
                    self._ids,
                    b"%011o\0" % size,
                    self._mtime,
                    b"        ",
                    kind,
                    target.encode().ljust(100, NUL),
                    self._tail,
                )
            )
            return buf[:148] + b"%06o\0" % sum(buf) + buf[155:]
        return self.slow(name, kind, mode, size, target)

    def slow(self, name: str, kind: bytes, mode: int, size: int = 0, target: str = "") -> bytes:
        """The header as tarfile writes it (PAX extended headers where needed)."""
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.size = size
        info.linkname = target
        info.mtime = self.mtime
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


class _Writes(Protocol):
    def write(self, data: bytes, /) -> object: ...


def _pad(size: int) -> bytes:
    return NUL * (-size % tarfile.BLOCKSIZE)


NUL = b"\0"
TRAILER = NUL * (2 * tarfile.BLOCKSIZE)  # tar's end of archive: two zero blocks


class _Sink:
    """Where a piece's tar bytes go: cut into fixed blocks, each compressed on the pool as it
    fills (files are read straight into the block being filled: no copies).

    With ``hold``, the first ``hold`` bytes are a placeholder (a layer's manifest, known only
    once every file was hashed): the blocks they touch wait for finish() to patch them.
    """

    def __init__(self, pool: _Pool, hold: int = 0) -> None:
        self._pool = pool
        self._hold = hold
        self._buf = bytearray(BLOCK)
        self._pos = 0  # bytes used in _buf
        self._start = 0  # offset of _buf in the piece's tar stream
        self.futures: list[Future[bytes] | None] = []
        self._held: list[tuple[int, bytearray]] = []  # (index in futures, block)

    def _emit(self, block: bytearray) -> None:
        if self._start < self._hold:
            self._held.append((len(self.futures), block))
            self.futures.append(None)
        else:
            self.futures.append(self._pool.submit(block))

    def _full(self) -> None:
        self._emit(self._buf)
        self._start += BLOCK
        self._buf = bytearray(BLOCK)
        self._pos = 0

    def write(self, data: bytes, /) -> None:
        view = memoryview(data)
        at, n = 0, len(view)
        while at < n:
            take = min(n - at, BLOCK - self._pos)
            self._buf[self._pos : self._pos + take] = view[at : at + take]
            self._pos += take
            at += take
            if self._pos == BLOCK:
                self._full()

    def write_file(self, fh: BinaryIO, size: int, sha: hashlib._Hash) -> int:
        """Copy an open (unbuffered) file in, hashing it; the bytes it held (at most size+1:
        a file longer than its header said is caught without reading it all)."""
        done = 0
        while done <= size:
            with memoryview(self._buf) as whole, whole[self._pos :] as room:
                n = fh.readinto(room)  # type: ignore[attr-defined]  # a raw FileIO
                if not n:
                    break
                with room[:n] as got:
                    sha.update(got)
            self._pos += n
            done += n
            if self._pos == BLOCK:
                self._full()
        return done

    def finish(self, head: bytes = b"") -> None:
        """Send the last block, and the held ones with ``head`` (``hold`` bytes) in place."""
        if self._pos:
            self._emit(self._buf[: self._pos])
            self._pos = 0
        if len(head) != self._hold:
            raise ValueError(f"a held prefix of {self._hold} bytes, patched with {len(head)}")
        for index, block in self._held:
            at = index * BLOCK
            upto = min(len(block), self._hold - at)
            block[:upto] = head[at : at + upto]
            self.futures[index] = self._pool.submit(block)
        self._held.clear()

    def compressed(self) -> bool:
        """Whether every block is compressed (drain() would not wait)."""
        return not self._held and all(f is not None and f.done() for f in self.futures)

    def drain(self, out: BinaryIO) -> int:
        """Write the compressed blocks in order (waiting for them); returns the bytes written."""
        n = 0
        for future in self.futures:
            assert future is not None, "finish() first"
            data = future.result()
            out.write(data)
            n += len(data)
        self.futures.clear()
        return n


# Blocks are compressed independently (each a gzip member or a zstd frame), so their
# boundaries depend only on the input and the output is the same on any number of cores.
BLOCK = 4 << 20


class _Pool:
    """Compresses blocks on every core, with a bound on the uncompressed bytes in flight."""

    def __init__(self, kind: Compression, level: int, workers: int | None = None) -> None:
        self.kind = kind
        self.level = level
        self.workers = workers or os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(max_workers=self.workers)
        self._inflight: deque[Future[bytes]] = deque()
        self._zstd = _zstd_compressor(level) if kind == "zstd" else None

    def compress(self, data: bytes | bytearray) -> bytes:
        if self._zstd is not None:
            return self._zstd(data)
        comp = zlib.compressobj(self.level, zlib.DEFLATED, 31)  # gzip header: no name, mtime 0
        return comp.compress(data) + comp.flush()

    def submit(self, data: bytes | bytearray) -> Future[bytes]:
        while self._inflight and self._inflight[0].done():
            self._inflight.popleft()
        while len(self._inflight) >= 2 * self.workers:
            self._inflight.popleft().result()
        future = self._pool.submit(self.compress, data)
        self._inflight.append(future)
        return future

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _zstd_compressor(level: int) -> Callable[[bytes | bytearray], bytes]:
    """zstd frames through the `zstandard` module when importable, else the `zstd` binary."""
    try:
        import zstandard  # type: ignore[import-not-found]  # optional dependency

        def compress(data: bytes | bytearray) -> bytes:
            return bytes(zstandard.ZstdCompressor(level=level).compress(data))

        return compress
    except ImportError:
        exe = shutil.which("zstd")
        if exe is None:
            raise RuntimeError("zstd compression needs the zstandard module or zstd") from None

        def run(data: bytes | bytearray) -> bytes:
            res = subprocess.run(
                [exe, "-q", "-c", f"-{level}", "--no-progress", "-"],
                input=data,
                capture_output=True,
                check=False,
            )
            if res.returncode != 0:
                raise OSError(f"zstd exited with status {res.returncode}")
            return res.stdout

        return run


@dataclass
class _Item:
    """An entry ready to be written: its bytes in memory, or the file that holds them."""

    entry: Entry
    data: bytes | None  # a bytes source, or a callable's result
    path: Path | None  # a file to read while writing
    size: int  # what its tar header says: the digested size, else the file's stat
    key: object | None  # its digest-cache key, taken before it is read
    record: Record | None  # its digest, when known before writing


def _file_of(source: Source) -> Path | None:
    """The file holding a callable source's bytes, when it can name one (made on demand, as
    relocate.EditedElf.file does): read while written, never held in memory."""
    named = getattr(source, "file", None)
    return named() if callable(named) else None


def _prepare(entry: Entry, record: Record | None, key: object | None) -> _Item | None:
    """What writing ``entry`` needs; None for a stale source with no digest (left out)."""
    src = entry.source
    if isinstance(src, Link):
        return _Item(entry, None, None, 0, None, record)
    if isinstance(src, bytes):
        return _Item(entry, src, None, len(src), key, record)
    file = src if isinstance(src, Path) else _file_of(src)
    if file is not None:
        size = record.size if record is not None else os.stat(file).st_size
        return _Item(entry, None, file, size, key, record)
    try:
        data = _read(src)
    except Stale:
        if record is not None:
            raise  # digested already: it is in the manifest, it must be in the tarball
        return None
    return _Item(entry, data, None, len(data) if record is None else record.size, key, record)


def _prepare_all(
    chunk: list[tuple[Entry, Record | None, object | None]],
) -> list[_Item | None]:
    return [_prepare(entry, record, key) for entry, record, key in chunk]


def _layer_prefix(headers: _HeaderFactory, lhash: str, manifest: bytes) -> bytes:
    """A layer fragment's first members: `.envpack/`, `.envpack/layer/` and its manifest."""
    return b"".join(
        (
            headers.make(META_DIR, tarfile.DIRTYPE, 0o755),
            headers.make(layout.LAYER_DIR, tarfile.DIRTYPE, 0o755),
            headers.make(layout.layer_manifest(lhash), tarfile.REGTYPE, 0o644, len(manifest)),
            manifest,
            _pad(len(manifest)),
        )
    )


_UNKNOWN = "0" * 64  # a digest not known yet: the manifest's length does not depend on it


def _draft(item: _Item) -> Record:
    """An item's record as far as it is known before it is read."""
    entry = item.entry
    if isinstance(entry.source, Link):
        return record_of(entry)
    return item.record or Record(entry.arcname, entry.mode, item.size, _UNKNOWN, None, entry.group)


def _write_layer(
    pool: _Pool,
    headers: _HeaderFactory,
    group: str,
    items: list[_Item],
    digests: DigestCache | None,
) -> tuple[Layer, _Sink]:
    """One layer's tar fragment, sent to the pool block by block: its manifest first, then its
    dirs and members sorted by path.

    Every file is read once, and hashed as it is written. When the layer's digests were known
    before (``item.record``), a file whose bytes differ raises Stale: a source that changed
    since it was digested never enters a cached piece under the old content's key. Otherwise
    the hashes made here are the layer's: its manifest, known only at the end, is written into
    the blocks held back for it (its length is known at the start: a sha256 is 64 hex digits
    whatever it is, and the sizes are in the tar headers already).
    """
    expect = all(item.record is not None for item in items)
    first = manifest_bytes(_draft(item) for item in items)
    if expect:
        sink = _Sink(pool)
        sink.write(_layer_prefix(headers, manifest_hash(first), first))
    else:
        hold = len(_layer_prefix(headers, "0" * layout.HASH_LEN, first))
        sink = _Sink(pool, hold)
        sink.write(NUL * hold)
    by_path = {item.entry.arcname: item for item in items}
    records: list[Record] = []
    for path in sorted((set(by_path) | parent_dirs(by_path)) - {META_DIR, layout.LAYER_DIR}):
        item = by_path.get(path)
        if item is None:
            sink.write(headers.make(path, tarfile.DIRTYPE, 0o755))
            continue
        entry = item.entry
        if isinstance(entry.source, Link):
            sink.write(headers.make(path, tarfile.SYMTYPE, 0o777, target=entry.source.target))
            records.append(record_of(entry))
            continue
        sink.write(headers.make(path, tarfile.REGTYPE, entry.mode, item.size))
        if item.data is not None:
            sha = hashlib.sha256(item.data)
            sink.write(item.data)
            size = len(item.data)
        else:
            assert item.path is not None
            sha = hashlib.sha256()
            with open(item.path, "rb", buffering=0) as fh:
                size = sink.write_file(fh, item.size, sha)
        digest = sha.hexdigest()
        if item.record is not None and (size, digest) != (item.record.size, item.record.sha256):
            raise Stale(f"{path} changed since it was digested")
        if size != item.size:
            raise Stale(f"{path} changed while it was written ({item.size} bytes, then {size})")
        sink.write(_pad(size))
        if digests is not None and item.key is not None:
            digests.put(item.key, size, sha.digest())
        records.append(Record(path, entry.mode, size, digest, None, entry.group))
    layer = _layer(group, [item.entry for item in items], records)
    sink.finish(b"" if expect else _layer_prefix(headers, layer.hash, layer.manifest))
    return layer, sink


def _head_fragment(
    sink: _Writes, meta: list[tuple[str, bytes]], empty_dirs: Iterable[str], headers: _HeaderFactory
) -> None:
    sink.write(headers.make(META_DIR, tarfile.DIRTYPE, 0o755))
    for name, data in meta:
        sink.write(headers.make(name, tarfile.REGTYPE, 0o644, len(data)))
        sink.write(data + _pad(len(data)))
    dirs = set(empty_dirs)
    for name in sorted(dirs | parent_dirs(dirs)):
        sink.write(headers.make(name, tarfile.DIRTYPE, 0o755))


class PieceCache:
    """Compressed layers kept on the build machine, keyed by their content and compression.

    A rebuild after an edit to local code compresses only the local layer: every other piece
    is copied from here. The key covers everything the piece's bytes are a function of (the
    layer manifest: paths, modes, sizes, sha256s; the compressor and level; the tar mtime), and
    a piece is only stored when every file's bytes matched its digest while it was written.
    Bounded: least recently used pieces go past ``max_bytes``.
    """

    FORMAT = 1

    def __init__(self, root: Path, max_bytes: int | None = None) -> None:
        self.root = root
        self.max_bytes = _cache_max() if max_bytes is None else max_bytes

    @staticmethod
    def default_root() -> Path:
        return _cachefile.cache_dir() / "pieces"

    def key(self, layer: Layer, kind: Compression, level: int, mtime: int) -> str:
        h = hashlib.sha256(f"envpack-piece {self.FORMAT} {kind} {level} {mtime}\n".encode())
        h.update(layer.manifest)
        return h.hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.root / f"{key}.piece"

    def get(self, key: str) -> Path | None:
        path = self.path(key)
        try:
            os.utime(path)  # its mtime is its last use
        except OSError:
            return None
        return path

    def put(self, key: str, writer: Callable[[BinaryIO], object]) -> Path:
        """Write a piece under a temporary name and rename it: a reader never sees half."""
        final = self.path(key)
        _cachefile.write_atomic(final, writer, suffix=".tmp")  # prune() knows .tmp files
        return final

    def prune(self, keep: Iterable[str] = (), *, suffix: str = ".piece") -> int:
        """Remove least recently used files named ``*<suffix>`` (the later of atime and mtime
        is their last use) past the bound, never those named in ``keep``, nor a temp file
        younger than an hour (a live build's). Returns the bytes removed."""
        kept = set(keep)
        items: list[tuple[float, int, Path]] = []
        total = 0
        now = time.time()
        try:
            listing = list(os.scandir(self.root))
        except OSError:
            return 0
        for item in listing:
            try:
                st = item.stat(follow_symlinks=False)
            except OSError:
                continue
            path = Path(item.path)
            if item.name.endswith(".tmp"):
                if now - st.st_mtime > 3600:
                    path.unlink(missing_ok=True)
                continue
            if not item.name.endswith(suffix) or not stat.S_ISREG(st.st_mode):
                continue
            total += st.st_size
            if item.name not in kept:
                items.append((max(st.st_atime, st.st_mtime), st.st_size, path))
        removed = 0
        for _, size, path in sorted(items):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            removed += size
        return removed


def _cache_max() -> int:
    """$ENVPACK_PIECE_CACHE_MAX (bytes, K/M/G/T suffixes), default 4G."""
    text = os.environ.get("ENVPACK_PIECE_CACHE_MAX", "4G").strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(text[-1:], 1)
    digits = text[:-1] if scale != 1 else text
    return int(digits) * scale if digits.isdigit() else 4 << 30


@dataclass(frozen=True)
class Piece:
    """A compressed layer on the build machine, ready to be copied into a tarball."""

    layer: Layer
    path: Path
    size: int
    reused: bool


def build_layers(
    entries: list[Entry] | Iterator[list[Entry]],
    cache: PieceCache,
    kind: Compression = "gzip",
    level: int | None = None,
    progress: Progress | None = None,
    *,
    records: list[Record] | None = None,
    digests: DigestCache | None = None,
) -> tuple[list[Entry], list[Record], list[Piece]]:
    """Every layer's compressed piece (in file order), with the entries kept and their records
    (in the entries' order; by path for an iterator).

    ``entries``: a list, or an iterator of layers' entries (Collector.groups: the layers are
    then written while later ones are still being collected, on a thread of this call).
    A layer whose manifest is known before it is written (from ``records``, the entries'
    digests, or else from the stat-keyed ``digests`` cache) is copied from the piece cache when
    it is there. Any other layer is written in one pass: each file read once, hashed as it is
    tar'd and compressed, the layer's key learnt at its end, and the piece stored under it (if
    the cache had it already, only time was lost). Without ``records`` a stale callable source
    is left out, as digest() does. Files are opened and callables run (ELF edits, pycs) on a
    few threads, ahead of the writer, which takes the layers in the order they get ready,
    while the pool compresses on every core.
    """
    given = None
    if records is not None:
        assert isinstance(entries, list)
        given = dict(zip((e.arcname for e in entries), records, strict=True))
    order: dict[str, int] | None = None
    if isinstance(entries, list):
        order = {e.arcname: n for n, e in enumerate(entries)}
        entries = iter(_groups(entries))
    writer = _LayerWriter(cache, kind, default_level(kind) if level is None else level)
    pieces = writer.run(entries, given, digests, progress)
    pairs = [pair for p in pieces for pair in zip(p.layer.entries, p.layer.records, strict=True)]
    pairs.sort(key=lambda pair: order[pair[0].arcname] if order else pair[0].arcname)
    cache.prune(p.path.name for p in pieces)
    return [e for e, _ in pairs], [r for _, r in pairs], pieces


_Plan = list[tuple[Entry, Record | None, object | None]]
_Todo = tuple[str, _Plan, list["Future[list[_Item | None]]"]]  # a layer being prepared


def _chunks(plan: _Plan) -> list[_Plan]:
    """A layer's entries cut into tasks of about equal cost: a few hundred stats, or a few
    ELF edits (an objcopy or lief run each), so that a layer's edits run on every preparing
    thread, not one after the other on one."""
    chunks: list[_Plan] = [[]]
    cost = 0
    for step in plan:
        src = step[0].source
        cost += 1 if isinstance(src, Path | bytes | Link) else 64 if _makes_file(src) else 2
        chunks[-1].append(step)
        if cost >= 256:
            chunks.append([])
            cost = 0
    return [c for c in chunks if c]


def _makes_file(source: Source) -> bool:
    """A source that makes its own file when read (an ELF edit: objcopy or lief)."""
    return hasattr(source, "file")


def _edits_elf(chunk: _Plan) -> bool:
    """Whether preparing the chunk runs an ELF edit."""
    return any(_makes_file(entry.source) for entry, _, _ in chunk)


_SWITCH_INTERVAL = 0.0005  # seconds; see _LayerWriter.run


class _LayerWriter:
    """build_layers' machinery: a feeder thread plans each layer as it arrives (records
    known without reading, piece cache lookups) and has its sources prepared on a few threads;
    the calling thread writes the prepared layers, whichever is ready first."""

    def __init__(self, cache: PieceCache, kind: Compression, level: int) -> None:
        self.cache = cache
        self.kind = kind
        self.level = level
        self.mtime = source_mtime()
        self.headers = _HeaderFactory(self.mtime)
        # Chunks that edit ELF files (an objcopy or lief run each, the first lief run 0.5 s)
        # go to threads of their own: queued behind the interpreter's and the stdlib's
        # edits, the small pure-Python layers were not ready before 1.2 s of a coffea build,
        # and the compressors had nothing to do until then.
        self.prep = ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 1) * 2))
        self.light = ThreadPoolExecutor(max_workers=2)
        self.arrivals: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        self.stop = threading.Event()

    def key(self, layer: Layer) -> str:
        return self.cache.key(layer, self.kind, self.level, self.mtime)

    def feed(
        self,
        groups: Iterator[list[Entry]],
        given: dict[str, Record] | None,
        digests: DigestCache | None,
    ) -> None:
        try:
            for group_entries in groups:
                if self.stop.is_set():
                    return
                plan: _Plan = []
                for entry in sorted(group_entries, key=lambda e: e.arcname):
                    if given is not None:
                        plan.append((entry, given[entry.arcname], None))
                    else:
                        plan.append((entry, *_cached_record(entry, digests)))
                group = plan[0][0].group
                recs = [rec for _, rec, _ in plan if rec is not None]
                if len(recs) == len(plan):
                    layer = _layer(group, [e for e, _, _ in plan], recs)
                    path = self.cache.get(self.key(layer))
                    if path is not None:
                        self.arrivals.put(
                            ("found", (group, Piece(layer, path, path.stat().st_size, True)))
                        )
                        continue
                futures = [
                    (self.prep if _edits_elf(chunk) else self.light).submit(_prepare_all, chunk)
                    for chunk in _chunks(plan)
                ]
                todo: _Todo = (group, plan, futures)
                self.arrivals.put(("todo", todo))  # before any "prepared" of its futures

                def prepared(_: object, todo: _Todo = todo) -> None:
                    self.arrivals.put(("prepared", todo))

                for future in futures:
                    future.add_done_callback(prepared)
        except BaseException as exc:  # told to the writer, which raises it
            self.arrivals.put(("error", exc))
        finally:
            self.arrivals.put(("end", None))

    def run(
        self,
        groups: Iterator[list[Entry]],
        given: dict[str, Record] | None,
        digests: DigestCache | None,
        progress: Progress | None,
    ) -> list[Piece]:
        pool = _Pool(self.kind, self.level)
        feeder = threading.Thread(
            target=self.feed, args=(groups, given, digests), name="envpack-layers", daemon=True
        )
        out: list[tuple[str, Piece]] = []
        # Layers whose preparing tasks are not all done: their arrival number and how many
        # tasks are left, told by the tasks' callbacks, never polled (polling every future of
        # every layer cost the writer 0.7 s of a coffea build).
        waiting: dict[int, list[int]] = {}
        ready: list[tuple[int, _Todo]] = []  # a heap: the earliest arrived is written first
        numbers = itertools.count()
        ended = False
        # written, not yet stored: stored once compressed, never waited for while there is
        # more to write (the pool would starve when small layers follow one another)
        written: deque[tuple[str, Layer, _Sink]] = deque()
        seen = done = 0
        # Python hands the GIL over every 5 ms by default: with the collector, the preparing
        # threads (each objcopy, each file opened takes it back several times) and this one
        # all waiting on it, preparing a layer took 30 times its own time and the pool
        # starved (dimuon, 2 cores: stdlib ready after 3.5-4.0 s, not 1.1 s; the build
        # 13-14 s, not 10). The compressors do not need it. Restored when done.
        interval = sys.getswitchinterval()
        sys.setswitchinterval(min(interval, _SWITCH_INTERVAL))
        try:
            feeder.start()
            while not (ended and not waiting and not ready):
                if ready and self.arrivals.empty():
                    _, (group, plan, prepared) = heapq.heappop(ready)
                    done += len(plan)
                    if progress is not None and ended:  # the total is known once all arrived
                        progress("compressing", done, seen)
                    items = [item for f in prepared for item in f.result() if item is not None]
                    if items:  # else every source was stale: no layer
                        layer, sink = _write_layer(pool, self.headers, group, items, digests)
                        written.append((group, layer, sink))
                    out.extend(self.store_done(written))
                    continue
                try:
                    # nothing to write: wait, waking to store what got compressed meanwhile
                    what, payload = self.arrivals.get(timeout=0.05 if written else None)
                except queue.Empty:
                    out.extend(self.store_done(written))
                    continue
                if what == "error":
                    raise payload  # type: ignore[misc]
                if what == "end":
                    ended = True
                elif what == "found":
                    out.append(payload)  # type: ignore[arg-type]
                elif what == "todo":
                    todo: _Todo = payload  # type: ignore[assignment]
                    seen += len(todo[1])
                    if todo[2]:
                        waiting[id(todo)] = [next(numbers), len(todo[2])]
                    else:
                        heapq.heappush(ready, (next(numbers), todo))
                else:  # "prepared": one of a layer's tasks is done
                    todo = payload  # type: ignore[assignment]
                    state = waiting[id(todo)]
                    state[1] -= 1
                    if not state[1]:
                        del waiting[id(todo)]
                        heapq.heappush(ready, (state[0], todo))
            while written:
                out.append(self.store(written.popleft()))
        finally:
            self.stop.set()
            self.prep.shutdown(wait=True, cancel_futures=True)
            self.light.shutdown(wait=True, cancel_futures=True)
            feeder.join()
            pool.close()
            sys.setswitchinterval(interval)
        out.sort(key=lambda gp: _order(gp[0] or "other"))
        return [piece for _, piece in out]

    def store_done(self, written: deque[tuple[str, Layer, _Sink]]) -> list[tuple[str, Piece]]:
        """Store the written layers, oldest first, as long as they are compressed."""
        stored = []
        while written and written[0][2].compressed():
            stored.append(self.store(written.popleft()))
        return stored

    def store(self, written: tuple[str, Layer, _Sink]) -> tuple[str, Piece]:
        group, layer, sink = written
        path = self.cache.put(self.key(layer), sink.drain)
        return group, Piece(layer, path, path.stat().st_size, False)


def _cached_record(
    entry: Entry, digests: DigestCache | None
) -> tuple[Record | None, object | None]:
    """An entry's record without reading it (links, bytes, the digest cache's hits), and its
    digest-cache key (taken now, before any read)."""
    src = entry.source
    if isinstance(src, Link | bytes):
        return record_of(entry), None
    inputs = (src,) if isinstance(src, Path) else entry.inputs
    key = digests.key(inputs) if digests is not None and inputs else None
    hit = digests.get(key) if digests is not None and key is not None else None
    if hit is None:
        return None, key
    return Record(entry.arcname, entry.mode, hit[0], hit[1].hex(), None, entry.group), key


def compress_bytes(data: bytes, kind: Compression = "gzip", level: int | None = None) -> bytes:
    """A small piece (the head, the trailer) compressed as the layers are."""
    pool = _Pool(kind, default_level(kind) if level is None else level, workers=1)
    try:
        sink = _Sink(pool)
        sink.write(data)
        sink.finish()
        out = io.BytesIO()
        sink.drain(out)
        return out.getvalue()
    finally:
        pool.close()


def head_piece(
    meta: list[tuple[str, bytes]],
    empty_dirs: Iterable[str] = (),
    kind: Compression = "gzip",
    level: int | None = None,
) -> bytes:
    """The head: `.envpack/` (the meta members, in the given order) and the empty dirs."""
    sink = io.BytesIO()
    _head_fragment(sink, meta, empty_dirs, _HeaderFactory(source_mtime()))
    return compress_bytes(sink.getvalue(), kind, level)


def trailer_piece(kind: Compression = "gzip", level: int | None = None) -> bytes:
    return compress_bytes(TRAILER, kind, level)


def write_pieces(out: BinaryIO, head: bytes, pieces: list[Piece], trailer: bytes) -> None:
    """The single file: head, every layer's piece in order, trailer (copied in the kernel)."""
    out.write(head)
    out.flush()
    for piece in pieces:
        with open(piece.path, "rb") as src:
            try:
                copy_range(src.fileno(), out.fileno(), 0, piece.size)
            except EOFError:
                raise OSError(f"{piece.path} is shorter than its {piece.size} bytes") from None
    out.write(trailer)


def copy_range(src: int, dst: int, offset: int, length: int) -> None:
    """Append ``length`` bytes at ``offset`` of file ``src`` to ``dst`` (at its position): in
    the kernel (copy_file_range) where it can, else through userspace (another filesystem, an
    old kernel). EOFError when ``src`` ends first."""
    left, at = length, offset
    while left > 0:
        try:
            n = os.copy_file_range(src, dst, left, at)
        except OSError:
            n = os.write(dst, os.pread(src, min(left, 1 << 20), at))
        if n == 0:
            raise EOFError(f"the source ends {left} bytes short")
        left -= n
        at += n


def zstd_available() -> bool:
    try:
        import zstandard  # noqa: F401

        return True
    except ImportError:
        return shutil.which("zstd") is not None


# gzip -5, not zlib's usual 6: measured on the coffea 0.7 processor's 525 MB env (bench/build.py),
# level 5 is 1.2% larger (160.7 vs 158.8 MB) and 30% faster (8.5 vs 11.8 s on 2 cores), which is
# what keeps the build within 25% of `tar czf` of the venv while the size stays within 1.3x of
# the traced lower bound. (isal was measured too: its best level is 11% larger than zlib -6.)
DEFAULT_GZIP_LEVEL = 5


def default_level(kind: Compression) -> int:
    return DEFAULT_GZIP_LEVEL if kind == "gzip" else 3


def suffix(kind: Compression) -> str:
    return ".tar.gz" if kind == "gzip" else ".tar.zst"


def read_meta(path: Path) -> Iterator[tuple[str, bytes]]:
    """Yield the `.envpack/` members of a tarball, stopping at the first other member.

    They come first, so `inspect` reads a few kilobytes of a multi-gigabyte archive.
    """
    if path.name.endswith(".zst"):
        exe = shutil.which("zstd")
        if exe is None:
            raise RuntimeError("reading a .tar.zst needs the zstd binary")
        proc = subprocess.Popen([exe, "-q", "-d", "-c", str(path)], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                yield from _meta_members(tar)
        finally:
            proc.kill()
            proc.wait()
        return
    with tarfile.open(path, mode="r|*") as tar:
        yield from _meta_members(tar)


def _meta_members(tar: tarfile.TarFile) -> Iterator[tuple[str, bytes]]:
    for member in tar:
        if member.name == META_DIR:
            continue
        first_layer = member.name == layout.LAYER_DIR or member.name.startswith(
            layout.LAYER_DIR + "/"
        )
        if not member.name.startswith(META_DIR + "/") or first_layer:
            return  # the head ends where the first layer begins
        if member.isfile():
            fh = tar.extractfile(member)
            assert fh is not None
            yield member.name, fh.read()


__all__ = [
    "DigestCache",
    "Entry",
    "Layer",
    "Link",
    "Piece",
    "PieceCache",
    "Progress",
    "Source",
    "Stale",
    "build_layers",
    "copy_range",
    "digest",
    "digest_entries",
    "head_piece",
    "plan_layers",
    "read_meta",
    "trailer_piece",
    "write_pieces",
]
