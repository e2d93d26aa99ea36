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
import io
import os
import shutil
import stat
import subprocess
import tarfile
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


def plan_layers(entries: list[Entry], records: list[Record]) -> list[Layer]:
    """One layer per group (the interpreter, the stdlib, each distribution, bundled native
    libraries, local code and data, envpack's scripts), in a fixed order."""
    by_group: dict[str, list[tuple[Entry, Record]]] = {}
    for entry, rec in zip(entries, records, strict=True):
        by_group.setdefault(entry.group or "other", []).append((entry, rec))

    def order(group: str) -> tuple[int, str]:
        if group in _FIRST:
            return (_FIRST.index(group), group)
        if group in _LAST:
            return (len(_FIRST) + 1 + _LAST.index(group), group)
        return (len(_FIRST), group.lower())

    layers: list[Layer] = []
    for group in sorted(by_group, key=order):
        pairs = sorted(by_group[group], key=lambda p: p[0].arcname)
        recs = tuple(r for _, r in pairs)
        manifest = manifest_bytes(recs)
        layers.append(
            Layer(
                layer_name(group),
                tuple(e for e, _ in pairs),
                recs,
                manifest,
                manifest_hash(manifest),
            )
        )
    return layers


class _HeaderFactory:
    """Tar headers with nothing of the build machine in them."""

    def __init__(self, mtime: int) -> None:
        self.mtime = mtime

    def make(self, name: str, kind: bytes, mode: int, size: int = 0, target: str = "") -> bytes:
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
    """Where a piece's tar bytes go: cut into fixed blocks, each compressed on the pool."""

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self._buf = bytearray()
        self.futures: list[Future[bytes]] = []

    def write(self, data: bytes, /) -> None:
        self._buf += data
        if len(self._buf) >= BLOCK:
            self._flush(whole=True)

    def _flush(self, whole: bool) -> None:
        view = memoryview(self._buf)
        cut = len(view) - len(view) % BLOCK if whole else len(view)
        for at in range(0, cut, BLOCK):
            self.futures.append(self._pool.submit(bytes(view[at : min(at + BLOCK, cut)])))
        view.release()
        del self._buf[:cut]

    def finish(self) -> None:
        if self._buf:
            self._flush(whole=False)

    def drain(self, out: BinaryIO) -> int:
        """Write the compressed blocks in order (waiting for them); returns the bytes written."""
        n = 0
        for future in self.futures:
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

    def compress(self, data: bytes) -> bytes:
        if self._zstd is not None:
            return self._zstd(data)
        comp = zlib.compressobj(self.level, zlib.DEFLATED, 31)  # gzip header: no name, mtime 0
        return comp.compress(data) + comp.flush()

    def submit(self, data: bytes) -> Future[bytes]:
        while self._inflight and self._inflight[0].done():
            self._inflight.popleft()
        while len(self._inflight) >= 2 * self.workers:
            self._inflight.popleft().result()
        future = self._pool.submit(self.compress, data)
        self._inflight.append(future)
        return future

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _zstd_compressor(level: int) -> Callable[[bytes], bytes]:
    """zstd frames through the `zstandard` module when importable, else the `zstd` binary."""
    try:
        import zstandard  # type: ignore[import-not-found]  # optional dependency

        def compress(data: bytes) -> bytes:
            return bytes(zstandard.ZstdCompressor(level=level).compress(data))

        return compress
    except ImportError:
        exe = shutil.which("zstd")
        if exe is None:
            raise RuntimeError("zstd compression needs the zstandard module or zstd") from None

        def run(data: bytes) -> bytes:
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


def _layer_fragment(sink: _Writes, layer: Layer, headers: _HeaderFactory) -> None:
    """The layer's tar members: its manifest first, then its dirs and members sorted by path.

    Each file's bytes are hashed as they are written: a source that changed since it was
    digested must not end up in a cached piece under the old content's key.
    """
    own = layout.layer_manifest(layer.hash)
    sink.write(headers.make(META_DIR, tarfile.DIRTYPE, 0o755))
    sink.write(headers.make(layout.LAYER_DIR, tarfile.DIRTYPE, 0o755))
    sink.write(headers.make(own, tarfile.REGTYPE, 0o644, len(layer.manifest)))
    sink.write(layer.manifest + _pad(len(layer.manifest)))
    by_path = {e.arcname: (e, r) for e, r in zip(layer.entries, layer.records, strict=True)}
    for name in sorted((set(by_path) | parent_dirs(by_path)) - {META_DIR, layout.LAYER_DIR}):
        item = by_path.get(name)
        if item is None:
            sink.write(headers.make(name, tarfile.DIRTYPE, 0o755))
            continue
        entry, rec = item
        src = entry.source
        if isinstance(src, Link):
            sink.write(headers.make(name, tarfile.SYMTYPE, 0o777, target=src.target))
            continue
        sink.write(headers.make(name, tarfile.REGTYPE, entry.mode, rec.size))
        sha = hashlib.sha256()
        size = 0
        if isinstance(src, Path):
            with open(src, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    sha.update(chunk)
                    sink.write(chunk)
                    size += len(chunk)
        else:
            data = _read(src)
            sha.update(data)
            sink.write(data)
            size = len(data)
        if size != rec.size or sha.hexdigest() != rec.sha256:
            raise Stale(f"{name} changed since it was digested")
        sink.write(_pad(size))


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


def compress_layers(
    layers: list[Layer],
    cache: PieceCache,
    kind: Compression = "gzip",
    level: int | None = None,
    progress: Progress | None = None,
) -> list[Piece]:
    """Every layer's compressed piece: from the cache where it is there, else compressed now
    (on every core, across layers) and stored in it."""
    level = default_level(kind) if level is None else level
    mtime = source_mtime()
    headers = _HeaderFactory(mtime)
    keys = [cache.key(layer, kind, level, mtime) for layer in layers]
    found = {k: cache.get(k) for k in keys}
    todo = [(layer, k) for layer, k in zip(layers, keys, strict=True) if found[k] is None]
    total = sum(r.size for layer, _ in todo for r in layer.records) or 1
    done = 0
    made: dict[str, Path] = {}
    pool = _Pool(kind, level)
    try:
        pending: _Sink | None = None
        pending_key = ""
        for layer, key in todo:
            sink = _Sink(pool)
            _layer_fragment(sink, layer, headers)
            sink.finish()
            if pending is not None:  # write the previous layer while this one compresses
                made[pending_key] = cache.put(pending_key, pending.drain)
            pending, pending_key = sink, key
            done += sum(r.size for r in layer.records)
            if progress is not None:
                progress("compressing", done, total)
        if pending is not None:
            made[pending_key] = cache.put(pending_key, pending.drain)
    finally:
        pool.close()
    pieces: list[Piece] = []
    for layer, key in zip(layers, keys, strict=True):
        path = found[key] or made[key]
        pieces.append(Piece(layer, path, path.stat().st_size, found[key] is not None))
    cache.prune(cache.path(k).name for k in keys)
    return pieces


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
    "compress_layers",
    "copy_range",
    "digest",
    "digest_entries",
    "head_piece",
    "plan_layers",
    "read_meta",
    "trailer_piece",
    "write_pieces",
]
