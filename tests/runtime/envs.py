"""Real environment trees and tarballs for the runtime tests, laid out as the builder lays them.

A tree holds `.envpack/summary` (hash, files, bytes, counted as the builder counts them: every
regular file and symlink of the archive, the .envpack members and the summary's own size
included), `.envpack/manifest.json`, `.envpack/spec.json`, `bin/python` (a sh script that execs
the test's interpreter, so no build is needed) and whatever a test adds; the tarball is made with
the real `tar`, members relative to the root, `.envpack/` first.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from envpack import archive, build, layout, split
from envpack.runtime import poncho_scripts, run_in_env_path, runner_path

RUNNER = str(runner_path())
SHELL = shutil.which("dash") or "/bin/sh"


@dataclass(frozen=True)
class Env:
    root: Path  # the unpacked tree
    hash: str
    tarball: Path


def write_tree(
    root: Path,
    files: dict[str, str | bytes] | None = None,
    *,
    symlinks: dict[str, str] | None = None,
    links: list[str] | None = None,
    salt: str = "",
    glibc: str | None = None,
) -> str:
    """Lay out an environment under ``root`` as the builder does; returns its 16-hex hash."""
    payload: dict[str, str | bytes] = {
        "bin/python": f'#!/bin/sh\nexec {sys.executable} "$@"\n',
        layout.RUN_IN_ENV: run_in_env_path().read_bytes(),
        layout.RUNNER: runner_path().read_bytes(),
        **{arc: path.read_bytes() for arc, path in poncho_scripts().items()},
        "lib/marker.txt": f"env {salt}\n",
        layout.SPEC: b"{}\n",
        **(files or {}),
    }
    if links is not None:
        payload[layout.LINKS] = layout.links_bytes(links)
    for rel, data in payload.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        executable = (rel.startswith("bin/") and rel != "bin/activate") or rel == layout.RUNNER
        path.chmod(0o755 if executable else 0o644)
    for rel, target in (symlinks or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, root / rel)
    return rewrite_meta(root, glibc=glibc)


def records_of(root: Path) -> list[layout.Record]:
    """Manifest records of every member under ``root`` but the summary and the manifest."""
    out: list[layout.Record] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel in (layout.SUMMARY, layout.MANIFEST, layout.SPEC):
            continue
        if path.is_symlink():
            out.append(layout.Record(rel, 0o777, 0, None, os.readlink(path)))
        elif path.is_file():
            data = path.read_bytes()
            mode = 0o755 if path.stat().st_mode & 0o100 else 0o644
            out.append(layout.Record(rel, mode, len(data), hashlib.sha256(data).hexdigest(), None))
    return out


def rewrite_meta(root: Path, *, glibc: str | None = None) -> str:
    """Write the manifest and summary of the tree as it is now (after a test changed it)."""
    manifest = layout.manifest_bytes(records_of(root))
    (root / layout.MANIFEST).write_bytes(manifest)
    env_hash = layout.manifest_hash(manifest)
    rewrite_summary(root, env_hash, glibc=glibc)
    return env_hash


def rewrite_summary(
    root: Path, env_hash: str, *, files: int | None = None, glibc: str | None = None
) -> None:
    """The builder's count: regular files + symlinks, bytes of regular files, itself included."""
    summary = root / layout.SUMMARY
    summary.unlink(missing_ok=True)
    records = records_of(root)
    manifest = (root / layout.MANIFEST).read_bytes()
    extra = {layout.MANIFEST: manifest, layout.SPEC: (root / layout.SPEC).read_bytes()}
    text = layout.summary_bytes(env_hash, records, extra, glibc)
    if files is not None:
        text = b"".join(
            f"files={files}\n".encode() if line.startswith(b"files=") else line + b"\n"
            for line in text.splitlines()
        )
    summary.write_bytes(text)


def pack(root: Path, out: Path, *extra: str, compress: str = "gz") -> Path:
    """`tar` the tree into ``out`` with members relative to the root, `.envpack/` first."""
    members = [".envpack", *sorted(p.name for p in root.iterdir() if p.name != ".envpack")]
    flag = {"gz": "-z", "zst": "--zstd"}[compress]
    subprocess.run(["tar", flag, "-cf", str(out), *extra, "-C", str(root), *members], check=True)
    return out


def make_env(base: Path, name: str = "env", **kwargs: object) -> Env:
    """A tree under ``base/name`` and its tarball ``base/envpack-<hash>.tar.gz``."""
    root = base / name
    env_hash = write_tree(root, **kwargs)  # type: ignore[arg-type]
    tarball = pack(root, base / f"envpack-{env_hash}.tar.gz")
    return Env(root, env_hash, tarball)


LAYERS = f"{layout.META_DIR}/layers"
LAYER_DIR = f"{layout.META_DIR}/layer"


@dataclass(frozen=True)
class Layer:
    hash: str
    name: str
    paths: tuple[str, ...]  # the manifest paths it holds
    piece: bytes  # its compressed piece, as it sits in the single file


@dataclass(frozen=True)
class LayeredEnv:
    root: Path  # the tree as `tar xzf` of the single file gives it
    hash: str
    tarball: Path  # the single file envpack-<hash>.tar.gz (or .tar.zst)
    layers: tuple[Layer, ...]
    head: bytes = field(repr=False)  # the head piece
    trailer: bytes = field(repr=False)

    def split(self, where: Path, *, skip: tuple[str, ...] = ()) -> Path:
        """The split form in ``where`` by envpack.split (what wrap() and the TaskVine helper
        send), without the layer files in ``skip`` (hashes or names); returns the head file."""
        form = split.split(self.tarball, where)
        assert form is not None
        suffix = split.suffix_of(self.tarball)
        for layer in self.layers:
            if layer.hash in skip or layer.name in skip:
                (where / layout.layer_file(layer.hash, len(layer.piece), suffix)).unlink()
        return form.head

    def layer(self, name: str) -> Layer:
        return next(x for x in self.layers if x.name == name)


# A hook to tamper with a layer's tar fragment: called with the layer's name and the open
# tarfile after its members are in, it may add members the layer's manifest does not list.
Hook = Callable[[str, tarfile.TarFile], None]


def _compress(data: bytes, compress: str) -> bytes:
    if compress == "gz":
        return gzip.compress(data, mtime=0)
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout


def _dir_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info


def _member(tar: tarfile.TarFile, root: Path, rel: str) -> None:
    path = root / rel
    info = tarfile.TarInfo(rel)
    info.mtime = 0
    if path.is_symlink():
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
        info.mode = 0o777
        tar.addfile(info)
        return
    data = path.read_bytes()
    info.size = len(data)
    info.mode = 0o755 if path.stat().st_mode & 0o100 else 0o644
    tar.addfile(info, io.BytesIO(data))


def _fragment(fill: Callable[[tarfile.TarFile], None]) -> bytes:
    """Tar members with no end-of-archive blocks (tarfile writes those only on close)."""
    buf = io.BytesIO()
    tar = tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT)  # noqa: SIM115
    fill(tar)
    return buf.getvalue()


def head_piece(root: Path, compress: str = "gz") -> bytes:
    """The head of the tree at ``root`` as it is now (a test may have changed its index)."""

    def fill(tar: tarfile.TarFile) -> None:
        tar.addfile(_dir_info(layout.META_DIR))
        for rel in (layout.SUMMARY, layout.MANIFEST, layout.SPEC, LAYERS):
            _member(tar, root, rel)

    return _compress(_fragment(fill), compress)


def make_layered_env(
    base: Path,
    name: str = "env",
    *,
    groups: dict[str, tuple[str, ...]] | None = None,
    compress: str = "gz",
    empty_dirs: tuple[str, ...] = (),
    hook: Hook | None = None,
    **kwargs: object,
) -> LayeredEnv:
    """A layered env: the tree of :func:`write_tree` under ``base/name``, its files grouped
    into layers (``groups``: layer name -> path prefixes; the rest is the layer ``local``),
    written by the real writer (envpack.build.write_layered) as ``base/envpack-<hash>.tar.*``,
    and unpacked by plain tar into ``base/name.tree`` (the tree the runner must assemble).
    With a ``hook``, the pieces are written here instead, as layers.md lays them out, so the
    hook can put in a layer what no writer would."""
    src = base / name
    env_hash = write_tree(src, **kwargs)  # type: ignore[arg-type]

    def group_of(path: str) -> str:
        return next(
            (n for n, pre in (groups or {}).items() if any(path.startswith(p) for p in pre)),
            "local",
        )

    tarball = base / f"envpack-{env_hash}.tar.{compress}"
    if hook is None:
        entries = [
            archive.Entry(
                rec.path,
                rec.mode,
                archive.Link(rec.target) if rec.target is not None else src / rec.path,
                group_of(rec.path),
            )
            for rec in records_of(src)
        ]
        kept, records = archive.digest(entries)
        glibc = kwargs.get("glibc")
        build.write_layered(
            tarball,
            kept,
            records,
            spec_json=(src / layout.SPEC).read_bytes(),
            empty_dirs=empty_dirs,
            glibc=glibc if isinstance(glibc, str) else None,
            compress="gzip" if compress == "gz" else "zstd",
        )
    else:
        _write_by_hand(src, env_hash, tarball, group_of, compress, hook)
    index = layout.parse_index(dict(archive.read_meta(tarball))[LAYERS])
    data = tarball.read_bytes()
    tree = base / f"{name}.tree"
    tree.mkdir()
    # a hostile tarball may not unpack whole (tar refuses its '..' members): that is its point
    subprocess.run(["tar", "-xf", str(tarball), "-C", str(tree)], check=hook is None)
    layers = tuple(
        Layer(
            e.hash,
            e.name,
            tuple(
                r.path
                for r in layout.parse_manifest((tree / layout.layer_manifest(e.hash)).read_bytes())
            ),
            data[offset : offset + e.size],
        )
        for e, offset in index.offsets(len(data))
    )
    head = data[: index.head_size(len(data))]
    return LayeredEnv(tree, env_hash, tarball, layers, head, data[len(data) - index.trailer :])


def _write_by_hand(
    root: Path,
    env_hash: str,
    tarball: Path,
    group_of: Callable[[str], str],
    compress: str,
    hook: Hook,
) -> None:
    """Head, layer pieces and trailer of the tree at ``root`` as layers.md lays them out."""
    records = records_of(root)
    parts: dict[str, list[layout.Record]] = {}
    for rec in records:
        parts.setdefault(group_of(rec.path), []).append(rec)
    layers: list[tuple[str, str, bytes]] = []
    for lname in sorted(parts):
        manifest = layout.manifest_bytes(parts[lname])
        lhash = layout.manifest_hash(manifest)
        paths = tuple(sorted(r.path for r in parts[lname]))
        (root / LAYER_DIR).mkdir(parents=True, exist_ok=True)
        (root / LAYER_DIR / f"{lhash}.json").write_bytes(manifest)

        def fill(tar: tarfile.TarFile, lname: str = lname, paths: tuple[str, ...] = paths,
                 lhash: str = lhash) -> None:  # fmt: skip
            for d in (layout.META_DIR, LAYER_DIR):
                tar.addfile(_dir_info(d))
            _member(tar, root, f"{LAYER_DIR}/{lhash}.json")
            dirs: set[str] = set()
            for p in paths:
                parts_ = p.split("/")[:-1]
                dirs.update("/".join(parts_[: i + 1]) for i in range(len(parts_)))
            for rel in sorted(dirs | set(paths)):
                if rel in dirs:
                    tar.addfile(_dir_info(rel))
                else:
                    _member(tar, root, rel)
            hook(lname, tar)

        layers.append((lhash, lname, _compress(_fragment(fill), compress)))
    trailer = _compress(b"\0" * 1024, compress)
    index = (
        "envpack-layers 1\n"
        + "".join(f"{h} {len(piece)} {n}\n" for h, n, piece in layers)
        + f"trailer {len(trailer)}\n"
    )
    (root / LAYERS).write_text(index)
    # the summary counts the whole unpacked tree, layer manifests and index included
    meta = [layout.MANIFEST, layout.SPEC, LAYERS, *(f"{LAYER_DIR}/{h}.json" for h, _, _ in layers)]
    extra = {rel: (root / rel).read_bytes() for rel in meta}
    (root / layout.SUMMARY).write_bytes(layout.summary_bytes(env_hash, records, extra))
    head = head_piece(root, compress)
    tarball.write_bytes(head + b"".join(piece for _, _, piece in layers) + trailer)


def run(
    args: list[str],
    *,
    cache: Path,
    cwd: Path,
    extra_env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """envpack-run under dash, with its cache at ``cache``."""
    env = {**os.environ, "ENVPACK_CACHE": str(cache), **(extra_env or {})}
    return subprocess.run(
        [SHELL, RUNNER, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cache_entries(cache: Path) -> list[str]:
    """Names in the cache other than lock files (entries, temp dirs)."""
    if not cache.exists():
        return []
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock"))
