"""The deterministic archive writer: entries in, a byte-reproducible tarball out.

It never knows where bytes come from (the collector decides that): an :class:`Entry` carries a
path to copy, bytes, a callable producing bytes, or a symlink target. Every tar header is
normalized (fixed mtime, uid/gid 0, empty user/group names, 0755/0644 modes) and entries are
written in sorted order, so the same entries always give the same bytes. The content hash in the
tarball's name is taken over the manifest (paths, modes, digests, link targets), not over the
compressed stream, so it does not depend on the compressor.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Literal

from envpack import _cachefile
from envpack.layout import META_DIR, Record

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


class _HeaderFactory:
    """Tar headers with nothing of the build machine in them."""

    def __init__(self, mtime: int) -> None:
        self.mtime = mtime

    def make(
        self, name: str, kind: bytes, mode: int, size: int = 0, target: str = ""
    ) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.size = size
        info.linkname = target
        info.mtime = self.mtime
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info


def write_tar(
    out: BinaryIO,
    meta: list[tuple[str, bytes]],
    entries: list[Entry],
    records: list[Record],
    *,
    empty_dirs: Iterable[str] = (),
    progress: Progress | None = None,
) -> None:
    """Write `.envpack/` first (the meta members in the given order, then its other entries),
    then every other directory and entry sorted by path."""
    headers = _HeaderFactory(source_mtime())
    by_path = dict(
        zip((e.arcname for e in entries), zip(entries, records, strict=True), strict=True)
    )
    meta_names = {name for name, _ in meta}
    paths = set(by_path) | parent_dirs(by_path) | parent_dirs(meta_names) | set(empty_dirs)
    paths -= meta_names

    def in_meta(name: str) -> bool:
        return name == META_DIR or name.startswith(META_DIR + "/")

    ordered = sorted(paths, key=lambda n: (not in_meta(n), n != META_DIR, n))
    total = len(ordered)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(headers.make(META_DIR, tarfile.DIRTYPE, 0o755))
        for name, data in meta:
            tar.addfile(headers.make(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
        for i, name in enumerate(ordered, 1):
            if name == META_DIR:
                continue
            item = by_path.get(name)
            if item is None:
                tar.addfile(headers.make(name, tarfile.DIRTYPE, 0o755))
            else:
                _add(tar, headers, *item)
            if progress is not None and (i % 256 == 0 or i == total):
                progress("writing", i, total)


def _add(tar: tarfile.TarFile, headers: _HeaderFactory, entry: Entry, rec: Record) -> None:
    src = entry.source
    if isinstance(src, Link):
        tar.addfile(headers.make(entry.arcname, tarfile.SYMTYPE, 0o777, target=src.target))
        return
    info = headers.make(entry.arcname, tarfile.REGTYPE, entry.mode, rec.size)
    if isinstance(src, Path):
        with open(src, "rb") as fh:
            tar.addfile(info, fh)
    else:
        data = _read(src)
        if len(data) != rec.size:
            raise Stale(f"{entry.arcname} gave {len(data)} bytes, {rec.size} when digested")
        tar.addfile(info, io.BytesIO(data))


class ParallelGzip(io.RawIOBase):
    """A gzip writer that compresses fixed-size blocks on every core.

    Each block becomes one complete gzip member (zlib's header: no name, mtime 0); the members
    are written in order, and a multi-member gzip is valid for `gzip -d`, `tar xzf` and Python.
    Block boundaries depend only on the input, so the output is the same on any core count.
    """

    BLOCK = 4 << 20

    def __init__(self, out: BinaryIO, level: int = 6, workers: int | None = None) -> None:
        super().__init__()
        self._out = out
        self._level = level
        self._workers = workers or os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(max_workers=self._workers)
        self._pending: deque[Future[bytes]] = deque()
        self._buf = bytearray()

    def writable(self) -> bool:
        return True

    def _compress(self, data: bytes) -> bytes:
        comp = zlib.compressobj(self._level, zlib.DEFLATED, 31)
        return comp.compress(data) + comp.flush()

    def _submit(self, data: bytes) -> None:
        self._pending.append(self._pool.submit(self._compress, data))
        while len(self._pending) > 2 * self._workers:
            self._out.write(self._pending.popleft().result())

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._buf += data
        while len(self._buf) >= self.BLOCK:
            self._submit(bytes(self._buf[: self.BLOCK]))
            del self._buf[: self.BLOCK]
        return len(data)

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._buf:
                self._submit(bytes(self._buf))
                self._buf.clear()
            while self._pending:
                self._out.write(self._pending.popleft().result())
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            super().close()


class ZstdPipe(io.RawIOBase):
    """zstd through the `zstandard` module when importable, else the `zstd` binary (-T0)."""

    def __init__(self, out: BinaryIO, level: int = 3) -> None:
        super().__init__()
        self._proc: subprocess.Popen[bytes] | None = None
        self._writer: IO[bytes]
        try:
            import zstandard  # type: ignore[import-not-found]  # optional dependency

            cctx = zstandard.ZstdCompressor(level=level, threads=-1)
            self._writer = cctx.stream_writer(out, closefd=False)
        except ImportError:
            exe = shutil.which("zstd")
            if exe is None:
                raise RuntimeError("zstd compression needs the zstandard module or zstd") from None
            self._proc = subprocess.Popen(
                [exe, "-q", "-c", "-T0", f"-{level}", "--no-progress", "-"],
                stdin=subprocess.PIPE,
                stdout=out,
            )
            assert self._proc.stdin is not None
            self._writer = self._proc.stdin

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._writer.write(data)
        return len(data)

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._writer.close()
            if self._proc is not None and self._proc.wait() != 0:
                raise OSError(f"zstd exited with status {self._proc.returncode}")
        finally:
            super().close()


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


def compressor(kind: Compression, out: BinaryIO, level: int | None) -> io.RawIOBase:
    if kind == "gzip":
        return ParallelGzip(out, DEFAULT_GZIP_LEVEL if level is None else level)
    return ZstdPipe(out, 3 if level is None else level)


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
        if not member.name.startswith(META_DIR + "/"):
            return
        if member.isfile():
            fh = tar.extractfile(member)
            assert fh is not None
            yield member.name, fh.read()


__all__ = [
    "DigestCache",
    "Entry",
    "Link",
    "Progress",
    "Source",
    "Stale",
    "compressor",
    "digest",
    "digest_entries",
    "read_meta",
    "write_tar",
]
