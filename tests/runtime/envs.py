"""Real environment trees and tarballs for the runtime tests, laid out as the builder lays them.

A tree holds `.envpack/summary` (hash, files, bytes, counted as the builder counts them: every
regular file and symlink of the archive, the .envpack members and the summary's own size
included), `.envpack/manifest.json`, `.envpack/spec.json`, `bin/python` (a sh script that execs
the test's interpreter, so no build is needed) and whatever a test adds; the tarball is made with
the real `tar`, members relative to the root, `.envpack/` first.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from envpack import layout
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
