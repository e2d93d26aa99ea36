"""The split form of a layered tarball: its head and each layer as files of their own.

Engines that cache input files by name (Work Queue ``cache=True``, TaskVine ``declare_file``)
keep each layer file on a worker once it has it; layer files are named after their content, so
a second environment that shares layers with the first sends only the ones it does not share.
The bytes are those of the single file, cut where its index says (nothing is recompressed), so
a split costs one copy in the kernel and is done once per environment.
"""

from __future__ import annotations

import os
import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from envpack import _cachefile, layout
from envpack.archive import PieceCache, copy_range, read_meta
from envpack.errors import UsageError


def default_dir() -> Path:
    """Where `split` puts the files by default: one directory per user (``$XDG_CACHE_HOME/
    envpack/layers``), shared by every environment, so a layer two environments share is one
    file at one path. Work Queue names a cached input after the md5 of its local path: the same
    path is what lets a worker keep the layer for the second environment."""
    return _cachefile.cache_dir() / "layers"


@dataclass(frozen=True)
class Split:
    """The split form of one environment: its head file and its layer files, in file order."""

    head: Path
    layers: tuple[Path, ...]

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.head, *self.layers)


def suffix_of(tarball: Path) -> str:
    for suffix in (".tar.gz", ".tar.zst"):
        if tarball.name.endswith(suffix):
            return suffix
    raise UsageError(f"{tarball} is not an envpack tarball (.tar.gz or .tar.zst)")


def split(tarball: Path, out_dir: Path | None = None) -> Split | None:
    """Write the split form of ``tarball`` into ``out_dir`` (default: `default_dir`); None when
    the tarball has no layers (built by an envpack before them). Bounded like the piece cache:
    least recently used files go past ``$ENVPACK_PIECE_CACHE_MAX``."""
    try:
        meta = dict(read_meta(tarball))
    except (OSError, tarfile.TarError, EOFError, zlib.error, RuntimeError) as exc:
        raise UsageError(f"{tarball} is not a readable envpack tarball ({exc})") from None
    if layout.LAYERS not in meta:
        return None
    summary = layout.parse_summary(meta.get(layout.SUMMARY, b""))
    env_hash = summary.get("hash", "")
    if not layout.is_hash(env_hash):
        raise UsageError(f"{tarball}: its summary names no environment hash")
    try:
        index = layout.parse_index(meta[layout.LAYERS])
    except layout.LayoutError as exc:
        raise UsageError(f"{tarball}: {exc}") from None
    size = tarball.stat().st_size
    head_size = index.head_size(size)
    if head_size <= 0:
        raise UsageError(f"{tarball}: its layer index does not fit the file (truncated?)")
    suffix = suffix_of(tarball)
    out = out_dir if out_dir is not None else default_dir()
    out.mkdir(parents=True, exist_ok=True)
    with open(tarball, "rb") as src:
        head = out / layout.head_file(env_hash, suffix)
        _write_ranges(src, head, [(0, head_size), (size - index.trailer, index.trailer)])
        layers = []
        for entry, offset in index.offsets(size):
            path = out / layout.layer_file(entry.hash, entry.size, suffix)
            _write_ranges(src, path, [(offset, entry.size)])
            layers.append(path)
    if out_dir is None:
        PieceCache(out).prune({p.name for p in (head, *layers)}, suffix="")
    return Split(head, tuple(layers))


def _write_ranges(src: BinaryIO, dst: Path, ranges: list[tuple[int, int]]) -> None:
    """``dst`` made of byte ranges of ``src``, written under a temp name and renamed; kept as
    it is when it already has the right size (layer files are named after their content)."""
    want = sum(n for _, n in ranges)
    try:
        st = dst.stat()
        if st.st_size == want:
            # its atime is its last use; never its mtime: Work Queue would see a changed file
            os.utime(dst, ns=(time.time_ns(), st.st_mtime_ns))
            return
    except FileNotFoundError:
        pass

    def write(out: BinaryIO) -> None:
        for offset, length in ranges:
            try:
                copy_range(src.fileno(), out.fileno(), offset, length)
            except EOFError:
                raise UsageError(
                    "the tarball ended before its layer index says it does (truncated?)"
                ) from None

    _cachefile.write_atomic(dst, write, suffix=".tmp", mode=0o644)  # prune() knows .tmp files


__all__ = ["Split", "default_dir", "split", "suffix_of"]
