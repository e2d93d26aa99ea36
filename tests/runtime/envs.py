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

from envpack.runtime import run_in_env_path, runner_path

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
) -> str:
    """Lay out an environment under ``root``; returns its 16-hex hash."""
    payload: dict[str, str | bytes] = {
        "bin/python": f'#!/bin/sh\nexec {sys.executable} "$@"\n',
        "bin/run_in_env": run_in_env_path().read_bytes(),
        "lib/marker.txt": f"env {salt}\n",
        **(files or {}),
    }
    meta: dict[str, bytes] = {
        ".envpack/manifest.json": b'{"files": []}\n',
        ".envpack/spec.json": b"{}\n",
    }
    if links is not None:
        meta[".envpack/links"] = "".join(f"{p}\n" for p in links).encode()
    for rel, data in {**payload, **meta}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        path.chmod(0o755 if rel.startswith("bin/") else 0o644)
    for rel, target in (symlinks or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, root / rel)
    digest = hashlib.sha256(salt.encode())
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
    env_hash = digest.hexdigest()[:16]
    rewrite_summary(root, env_hash)
    return env_hash


def rewrite_summary(root: Path, env_hash: str, *, files: int | None = None) -> None:
    """The builder's count: regular files + symlinks, bytes of regular files, itself included."""
    summary = root / ".envpack" / "summary"
    summary.unlink(missing_ok=True)
    entries = [p for p in root.rglob("*") if p.is_symlink() or p.is_file()]
    count = len(entries) + 1 if files is None else files
    base = sum(p.stat().st_size for p in entries if not p.is_symlink())
    guess = base
    text = ""
    for _ in range(5):
        text = f"hash={env_hash}\nfiles={count}\nbytes={guess}\n"
        if base + len(text) == guess:
            break
        guess = base + len(text)
    summary.write_text(text)


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
