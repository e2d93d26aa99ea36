"""The split form of a layered tarball: its head and each layer as files of their own.

Engines that cache input files by name (Work Queue ``cache=True``, TaskVine ``declare_file``)
keep each layer file on a worker once it has it; layer files are named after their content, so
a second environment that shares layers with the first sends only the ones it does not share.
The bytes are those of the single file, cut where its index says (nothing is recompressed), so
a split costs one copy in the kernel and is done once per environment.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from envpack import layout
from envpack.archive import read_meta
from envpack.errors import UsageError

SPLIT_DIR = "envpack-layers"
"""Where `split` puts the files by default: a directory next to the tarball, shared by every
environment built there (a layer file two environments share is written once)."""


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
    """Write the split form of ``tarball`` into ``out_dir`` (default: `SPLIT_DIR` beside it);
    None when the tarball has no layers (built by an envpack before them)."""
    meta = dict(read_meta(tarball))
    if layout.LAYERS not in meta:
        return None
    summary = layout.parse_summary(meta.get(layout.SUMMARY, b""))
    env_hash = summary.get("hash", "")
    if not layout.is_hash(env_hash):
        raise UsageError(f"{tarball}: its summary names no environment hash")
    index = layout.parse_index(meta[layout.LAYERS])
    size = tarball.stat().st_size
    head_size = index.head_size(size)
    if head_size <= 0:
        raise UsageError(f"{tarball}: its layer index does not fit the file (truncated?)")
    suffix = suffix_of(tarball)
    out = out_dir if out_dir is not None else tarball.parent / SPLIT_DIR
    out.mkdir(parents=True, exist_ok=True)
    with open(tarball, "rb") as src:
        head = out / layout.head_file(env_hash, suffix)
        _write_ranges(src, head, [(0, head_size), (size - index.trailer, index.trailer)])
        layers = []
        for entry, offset in index.offsets(size):
            path = out / layout.layer_file(entry.hash, suffix)
            _write_ranges(src, path, [(offset, entry.size)])
            layers.append(path)
    return Split(head, tuple(layers))


def _write_ranges(src: BinaryIO, dst: Path, ranges: list[tuple[int, int]]) -> None:
    """``dst`` made of byte ranges of ``src``, written under a temp name and renamed; kept as
    it is when it already has the right size (layer files are named after their content)."""
    want = sum(n for _, n in ranges)
    try:
        if dst.stat().st_size == want:
            return
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for offset, length in ranges:
                _copy_range(src.fileno(), out.fileno(), offset, length)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _copy_range(src: int, dst: int, offset: int, length: int) -> None:
    left = length
    at = offset
    while left > 0:
        try:
            n = os.copy_file_range(src, dst, left, at)
        except OSError:
            n = os.write(dst, os.pread(src, min(left, 1 << 20), at))
        if n == 0:
            raise UsageError("the tarball ended before its layer index says it does (truncated?)")
        left -= n
        at += n


__all__ = ["SPLIT_DIR", "Split", "split", "suffix_of"]
