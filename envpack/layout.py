"""The worker contract: the `.envpack/` members and the node cache, written and read here only.

An environment (the tarball, and the directory it unpacks to) holds, besides its files::

    .envpack/summary        hash=<16 hex>, files=, bytes=, glibc=: identity, size, glibc floor
    .envpack/manifest.json  every other member (path, mode, size, sha256 | link target);
                            the first 16 hex digits of its sha256 are the environment's hash
    .envpack/spec.json      the Spec it was built from: documentation, not in the manifest, so
                            the same files get the same name however the build was invoked
    .envpack/links          data files the code opens by relative path, relative to local/
    .envpack/layers         the index of its layers: hash, compressed size and name of each
    .envpack/layer/<l>.json each layer's own manifest (same format); <l> is its hash
    .envpack/envpack-run    the runner; bin/run_in_env (poncho's face) delegates to it
    bin/run_in_env

`envpack-run` (POSIX sh) reads the manifest with `sed`, so its format is line-oriented JSON: one
record per line, keys in a fixed order, UTF-8 as is; names holding control characters are
refused.

A tarball is layered: a head piece (the meta members and the env's empty directories), one
piece per layer (the interpreter, each distribution, bundled libraries, local code, envpack's
own scripts), and the tar end-of-archive, each compressed on its own, so concatenated they are
one tarball plain `tar xzf` unpacks, and a layer already on a node (from any environment) need
not be unpacked or sent again. The index is not trusted: a layer's hash is that of its
manifest, the layers' records must add up to the env's manifest, and the runner checks both.

The node cache holds ``<cache>/<hash>/`` entries with a ``<hash>.lock`` beside each
(flock; its mtime is the last use; its text ``use=<bytes>`` the disk the entry really uses).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from envpack.errors import EnvpackError

META_DIR = ".envpack"
SUMMARY = f"{META_DIR}/summary"
MANIFEST = f"{META_DIR}/manifest.json"
SPEC = f"{META_DIR}/spec.json"
LINKS = f"{META_DIR}/links"
RUNNER = f"{META_DIR}/envpack-run"
RUN_IN_ENV = "bin/run_in_env"
LAYERS = f"{META_DIR}/layers"
LAYER_DIR = f"{META_DIR}/layer"
LAYERS_FORMAT = 1

MANIFEST_SCHEMA = 2
HASH_LEN = 16
_HASH = re.compile(r"[0-9a-f]{16}")
_GLIBC = re.compile(r"\d+(?:\.\d+)+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LAYER_NAME = re.compile(r"[A-Za-z0-9._+-]+")


class LayoutError(EnvpackError):
    """An environment's `.envpack/` members cannot be written or read as the contract says."""


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
        """The record as the manifest holds it (this key order is what the runner's sed reads)."""
        out: dict[str, object] = {"path": self.path, "mode": f"{self.mode:04o}"}
        if self.target is None:
            out.update(size=self.size, sha256=self.sha256)
        else:
            out["target"] = self.target
        return out


def is_hash(text: str) -> bool:
    """An environment hash: exactly 16 lowercase hex digits."""
    return _HASH.fullmatch(text) is not None


def check_name(name: str, what: str = "member") -> None:
    """Refuse names the runner would refuse: control characters defeat line-based checks."""
    if _CONTROL.search(name):
        raise LayoutError(f"{what} {name!r} holds a control character; no worker would accept it")


_quote = json.encoder.encode_basestring  # what json.dumps(..., ensure_ascii=False) uses


def _line(rec: Record) -> str:
    """``json.dumps(rec.to_json(), ensure_ascii=False)``, byte for byte, without building a
    dict and an encoder per record: a coffea build writes 27,000 of these lines."""
    head = f'{{"path": {_quote(rec.path)}, "mode": "{rec.mode:04o}"'
    if rec.target is not None:
        return f'{head}, "target": {_quote(rec.target)}}}'
    sha = "null" if rec.sha256 is None else _quote(rec.sha256)
    return f'{head}, "size": {rec.size}, "sha256": {sha}}}'


def manifest_bytes(records: Iterable[Record]) -> bytes:
    """The canonical manifest: sorted by path, one record per line, so its hash is stable."""
    lines: list[str] = []
    seen: set[str] = set()
    for rec in sorted(records, key=lambda r: r.path):
        check_name(rec.path)
        if rec.target is not None:
            check_name(rec.target, f"the target of {rec.path!r},")
        if rec.path in seen:
            raise LayoutError(f"{rec.path} is listed twice in the manifest")
        seen.add(rec.path)
        lines.append(_line(rec))
    body = ",\n".join(lines)
    head = f'{{"schema": {MANIFEST_SCHEMA}, "files": [\n'
    return (head + body + ("\n" if body else "") + "]}\n").encode()


def manifest_hash(manifest: bytes) -> str:
    """First 16 hex digits of the manifest's sha256: the environment's identity."""
    return hashlib.sha256(manifest).hexdigest()[:HASH_LEN]


def parse_manifest(data: bytes) -> list[Record]:
    """Records of a manifest (schema 1's indented JSON reads too: same keys)."""
    try:
        doc = json.loads(data)
        items = doc["files"]
        return [
            Record(
                str(it["path"]),
                int(str(it["mode"]), 8),
                int(it.get("size", 0)),
                it.get("sha256"),
                it.get("target"),
            )
            for it in items
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise LayoutError(f"not an envpack manifest: {exc}") from None


def summary_bytes(
    env_hash: str, records: list[Record], extra: Mapping[str, bytes], glibc: str | None = None
) -> bytes:
    """`.envpack/summary`: the hash, the count and bytes an unpacked tree holds, and the glibc
    its ELF files need (the runner refuses a worker with an older one before unpacking).

    files = regular files + symlinks, bytes = total size of the regular files, both counting
    the `.envpack` members themselves; bytes includes the summary's own size, so it is found
    as a fixed point (two rounds at most).
    """
    if glibc is not None and not _GLIBC.fullmatch(glibc):
        raise LayoutError(f"glibc version {glibc!r} is not a version like 2.28")
    floor = f"glibc={glibc}\n" if glibc else ""
    files = len(records) + len(extra) + 1
    base = sum(r.size for r in records if r.target is None) + sum(len(v) for v in extra.values())
    text = b""
    guess = base
    for _ in range(5):
        text = f"hash={env_hash}\nfiles={files}\nbytes={guess}\n{floor}".encode()
        if base + len(text) == guess:
            break
        guess = base + len(text)
    return text


def parse_summary(data: bytes) -> dict[str, str]:
    """key=value lines of a summary; a line without '=' is ignored, as the runner does."""
    out: dict[str, str] = {}
    for line in data.decode("utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out


def links_bytes(paths: Iterable[str]) -> bytes:
    """`.envpack/links`: one data path per line, relative to local/."""
    out = sorted(set(paths))
    for path in out:
        check_name(path, "data file")
    return "".join(f"{p}\n" for p in out).encode()


def parse_links(data: bytes) -> list[str]:
    return [line for line in data.decode("utf-8", errors="replace").splitlines() if line]


def layer_manifest(layer_hash: str) -> str:
    """Where a layer's manifest lives in the tree: `.envpack/layer/<hash>.json`."""
    return f"{LAYER_DIR}/{layer_hash}.json"


def layer_name(label: str) -> str:
    """A label the index can hold (one word): anything else becomes '_'."""
    return "".join(c if _LAYER_NAME.fullmatch(c) else "_" for c in label) or "_"


@dataclass(frozen=True)
class IndexEntry:
    """One layer as the index lists it: its hash, its compressed bytes, a label for humans."""

    hash: str
    size: int
    name: str


@dataclass(frozen=True)
class Index:
    """`.envpack/layers`: the layers in file order and the trailer's compressed size."""

    layers: tuple[IndexEntry, ...]
    trailer: int

    def head_size(self, file_size: int) -> int:
        """Bytes of the head piece in a file of ``file_size`` bytes (it comes first)."""
        return file_size - self.trailer - sum(e.size for e in self.layers)

    def offsets(self, file_size: int) -> list[tuple[IndexEntry, int]]:
        """Each layer with the offset of its piece in the single file."""
        at = self.head_size(file_size)
        out: list[tuple[IndexEntry, int]] = []
        for entry in self.layers:
            out.append((entry, at))
            at += entry.size
        return out


def index_bytes(index: Index) -> bytes:
    lines = [f"envpack-layers {LAYERS_FORMAT}"]
    for e in index.layers:
        if not is_hash(e.hash) or not _LAYER_NAME.fullmatch(e.name) or e.size <= 0:
            raise LayoutError(f"bad layer {e!r}")
        lines.append(f"{e.hash} {e.size} {e.name}")
    lines.append(f"trailer {index.trailer}")
    return ("\n".join(lines) + "\n").encode()


def parse_index(data: bytes) -> Index:
    """The index of a layered tarball; LayoutError when it is not one this envpack reads."""
    lines = data.decode("utf-8", errors="replace").splitlines()
    if not lines or lines[0] != f"envpack-layers {LAYERS_FORMAT}":
        raise LayoutError("not an envpack layer index (or one of a newer format)")
    layers: list[IndexEntry] = []
    trailer: int | None = None
    for line in lines[1:]:
        parts = line.split(" ")
        if len(parts) == 2 and parts[0] == "trailer" and parts[1].isdigit() and trailer is None:
            trailer = int(parts[1])
        elif (
            len(parts) == 3
            and trailer is None
            and is_hash(parts[0])
            and parts[1].isdigit()
            and _LAYER_NAME.fullmatch(parts[2])
        ):
            layers.append(IndexEntry(parts[0], int(parts[1]), parts[2]))
        else:
            raise LayoutError(f"bad line in the layer index: {line!r}")
    if trailer is None:
        raise LayoutError("the layer index has no trailer line")
    return Index(tuple(layers), trailer)


def head_file(env_hash: str, suffix: str) -> str:
    """Split form: the file holding the head and trailer pieces (a tarball of `.envpack/`)."""
    return f"envpack-{env_hash}.head{suffix}"


def layer_file(layer_hash: str, size: int, suffix: str) -> str:
    """Split form: the file holding one layer's piece (``size`` compressed bytes, as the index
    says); the runner looks for it beside the head. The size is in the name because the same
    layer compressed at another level is other bytes, and Work Queue caches a file by its path."""
    return f"envpack-layer-{layer_hash}-{size}{suffix}"


def meta_files(index: Index | None) -> set[str]:
    """The files besides the manifest's that an unpacked tree holds (summary, manifest, Spec,
    and for a layered env its index and each layer's manifest)."""
    out = {SUMMARY, MANIFEST, SPEC}
    if index is not None:
        out.add(LAYERS)
        out.update(layer_manifest(e.hash) for e in index.layers)
    return out


def lock_name(env_hash: str) -> str:
    """The lock file beside a cache entry."""
    return f"{env_hash}.lock"


def lock_use(data: bytes) -> int | None:
    """Bytes an entry really uses on disk, as the runner recorded it in the lock file."""
    value = parse_summary(data).get("use", "")
    return int(value) if value.isdigit() else None


__all__ = [
    "HASH_LEN",
    "LAYERS",
    "LAYER_DIR",
    "LINKS",
    "MANIFEST",
    "MANIFEST_SCHEMA",
    "META_DIR",
    "RUNNER",
    "RUN_IN_ENV",
    "SPEC",
    "SUMMARY",
    "Index",
    "IndexEntry",
    "LayoutError",
    "Record",
    "check_name",
    "head_file",
    "index_bytes",
    "is_hash",
    "layer_file",
    "layer_manifest",
    "layer_name",
    "links_bytes",
    "lock_name",
    "lock_use",
    "manifest_bytes",
    "manifest_hash",
    "meta_files",
    "parse_index",
    "parse_links",
    "parse_manifest",
    "parse_summary",
    "summary_bytes",
]
