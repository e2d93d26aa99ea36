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
import json
import os
import shutil
import subprocess
import tarfile
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Literal

MANIFEST_SCHEMA = 1
META_DIR = ".envpack"
SUMMARY = f"{META_DIR}/summary"
MANIFEST = f"{META_DIR}/manifest.json"
SPEC = f"{META_DIR}/spec.json"
LINKS = f"{META_DIR}/links"

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


@dataclass(frozen=True)
class Record:
    """A manifest line: what a member is, without its bytes."""

    path: str
    mode: int
    size: int
    sha256: str | None  # None for symlinks
    target: str | None  # symlink target, None for files
    group: str = ""

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"path": self.path, "mode": f"{self.mode:04o}"}
        if self.target is None:
            out.update(size=self.size, sha256=self.sha256)
        else:
            out["target"] = self.target
        return out


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


def record_of(entry: Entry) -> Record:
    """Digest one entry (reads a file source once, streaming)."""
    src = entry.source
    if isinstance(src, Link):
        return Record(entry.arcname, 0o777, 0, None, src.target, entry.group)
    if isinstance(src, Path):
        with open(src, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256")
            size = fh.tell()
        return Record(entry.arcname, entry.mode, size, digest.hexdigest(), None, entry.group)
    data = _read(src)
    return Record(
        entry.arcname, entry.mode, len(data), hashlib.sha256(data).hexdigest(), None, entry.group
    )


def digest_entries(entries: list[Entry], progress: Progress | None = None) -> list[Record]:
    """Records for every entry, in the entries' order; I/O bound, so two threads help."""
    total = len(entries)
    records: list[Record] = []
    with ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 1) * 2)) as pool:
        for i, rec in enumerate(pool.map(record_of, entries, chunksize=64), 1):
            records.append(rec)
            if progress is not None and (i % 256 == 0 or i == total):
                progress("hashing", i, total)
    return records


def manifest_bytes(records: Iterable[Record]) -> bytes:
    """The canonical manifest JSON: sorted by path, one key order, so its hash is stable."""
    doc = {
        "schema": MANIFEST_SCHEMA,
        "files": [r.to_json() for r in sorted(records, key=lambda r: r.path)],
    }
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def manifest_hash(manifest: bytes) -> str:
    """First 16 hex digits of the manifest's sha256: the environment's identity."""
    return hashlib.sha256(manifest).hexdigest()[:16]


def summary_bytes(env_hash: str, records: list[Record], extra: dict[str, bytes]) -> bytes:
    """`.envpack/summary`: what the runner checks after unpacking (count and bytes).

    files = regular files + symlinks in the archive, bytes = total size of its regular files,
    both including the .envpack members themselves; bytes includes the summary's own size, so
    it is found as a fixed point (two rounds at most).
    """
    files = len(records) + len(extra) + 1
    base = sum(r.size for r in records if r.target is None) + sum(len(v) for v in extra.values())
    text = b""
    guess = base
    for _ in range(5):
        text = f"hash={env_hash}\nfiles={files}\nbytes={guess}\n".encode()
        if base + len(text) == guess:
            break
        guess = base + len(text)
    return text


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
        tar.addfile(info, io.BytesIO(_read(src)))


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


def compressor(kind: Compression, out: BinaryIO, level: int | None) -> io.RawIOBase:
    if kind == "gzip":
        return ParallelGzip(out, 6 if level is None else level)
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
    "Entry",
    "Link",
    "Progress",
    "Record",
    "Source",
    "compressor",
    "digest_entries",
    "manifest_bytes",
    "manifest_hash",
    "read_meta",
    "summary_bytes",
    "write_tar",
]
