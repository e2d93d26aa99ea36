"""`envpack verify`: unpack, check every file against the manifest, import what ships.

The imports run with the shipped interpreter (``-I``), optionally with the build interpreter
and venv hidden under a tmpfs in a private mount namespace (``--isolated``), which is what a
worker without our Python looks like. A module that fails to import is then imported on the
build interpreter too (the same list, in the same order): one that fails there as well is not a
packaging problem (a package needing a newer numpy than installed, imported by its users only
under ``try/except ImportError``), so it is a note, not a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from envpack.cli.inspect_ import load_meta
from envpack.layout import LAYERS, Record, meta_files, parse_index
from envpack.runtime import runner_path
from envpack.spec import Spec

_IMPORT = r"""
import importlib, json, os, sys, traceback
for entry in reversed(os.environ.get("ENVPACK_VERIFY_PATH", "").split(os.pathsep)):
    if entry:
        sys.path.insert(0, entry)
bad = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException as exc:  # report every failure, keep going
        bad[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(bad))
"""


def check_files(root: Path, manifest: list[Record]) -> list[str]:
    """Every manifest entry present with its mode, size, digest or link target; nothing extra."""
    problems: list[str] = []
    index_file = root / LAYERS
    index = parse_index(index_file.read_bytes()) if index_file.is_file() else None
    listed = meta_files(index)
    for item in manifest:
        listed.add(item.path)
        path = root / item.path
        if item.target is not None:
            if not path.is_symlink() or os.readlink(path) != item.target:
                problems.append(f"{item.path}: not a symlink to {item.target}")
            continue
        if not path.is_file() or path.is_symlink():
            problems.append(f"{item.path}: missing")
            continue
        mode = path.stat().st_mode & 0o777
        if mode != item.mode:
            problems.append(f"{item.path}: mode {mode:04o}, manifest says {item.mode:04o}")
        with open(path, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        if digest != item.sha256:
            problems.append(f"{item.path}: content differs from the manifest")
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if (path.is_file() or path.is_symlink()) and rel not in listed:
            problems.append(f"{rel}: not in the manifest")
    return problems


def runner_check(root: Path) -> list[str]:
    """What a worker's envpack-run says of the unpacked tree (its own verification)."""
    res = subprocess.run(
        ["sh", str(runner_path()), "--check", "-e", str(root)],
        capture_output=True,
        text=True,
    )
    if res.returncode == 0:
        return []
    return [f"a worker's envpack-run would refuse it (exit {res.returncode}): {res.stderr.strip()}"]


def top_modules(spec: Spec) -> list[str]:
    """Every shipped top-level module: the distributions' and the local ones."""
    names = {m for d in spec.distributions for m in d.modules}
    for item in spec.local:
        if item.kind != "module":
            continue
        first = item.arcname.split("/", 1)[0]
        if first.endswith(".py"):
            names.add(first[:-3])
        elif "/" in item.arcname:
            names.add(first)
    return sorted(n for n in names if n.isidentifier())


def hidden_dirs(spec: Spec) -> list[str]:
    """What --isolated hides: the build interpreter's prefixes and the venv."""
    interp = spec.interpreter
    dirs = {interp.base_prefix, interp.prefix, str(Path(interp.real_executable).parent.parent)}
    return sorted(d for d in dirs if d and d != "/" and Path(d).is_dir())


def run_imports(root: Path, modules: list[str], hide: list[str]) -> tuple[int, str, str]:
    python = root / "bin" / "python"
    cmd = [str(python), "-I", "-c", _IMPORT, *modules]
    if hide:
        mounts = " && ".join(f"mount -t tmpfs none '{d}'" for d in hide)
        cmd = ["unshare", "--mount", "sh", "-c", f'{mounts} && exec "$@"', "sh", *cmd]
    env = {"PATH": f"{root / 'bin'}:/usr/bin:/bin", "PYTHONNOUSERSITE": "1"}
    cwd = root / "local" if (root / "local").is_dir() else root
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    return res.returncode, res.stdout, res.stderr


def build_side_imports(spec: Spec, modules: list[str]) -> dict[str, str] | None:
    """The same imports on the build interpreter: the failures, or None if it cannot run."""
    python = spec.interpreter.executable
    if not os.access(python, os.X_OK):
        return None
    # Local modules are imported from the processors' directories, as on the build machine.
    roots = sorted({str(Path(r).parent) for r in spec.roots})
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONNOUSERSITE": "1",
        "ENVPACK_VERIFY_PATH": os.pathsep.join(roots),
    }
    try:
        res = subprocess.run(
            [python, "-I", "-c", _IMPORT, *modules],
            capture_output=True,
            text=True,
            env=env,
            cwd=roots[0] if roots and Path(roots[0]).is_dir() else None,
        )
    except OSError:
        return None
    try:
        failed = json.loads(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 else None
    except (json.JSONDecodeError, IndexError):
        return None
    return failed if isinstance(failed, dict) else None


@click.command("verify")
@click.argument("tarball", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--isolated", is_flag=True, help="Hide the build interpreter and venv (unshare).")
def verify_command(tarball: Path, isolated: bool) -> None:
    """Unpack ENV.tar.gz to a temp dir, check it against its manifest, import what it ships."""
    err = Console(stderr=True, soft_wrap=True)
    out = Console()
    try:
        summary, manifest, spec = load_meta(tarball)
    except ValueError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise SystemExit(2) from None
    hide: list[str] = []
    if isolated:
        if shutil.which("unshare") is None:
            err.print("[red]error:[/] --isolated needs unshare (util-linux)")
            raise SystemExit(2)
        hide = hidden_dirs(spec)
    with tempfile.TemporaryDirectory(prefix="envpack-verify-") as tmp:
        root = Path(tmp)
        try:
            if tarball.name.endswith(".zst"):
                subprocess.run(["tar", "--zstd", "-xf", str(tarball), "-C", tmp], check=True)
            else:
                with tarfile.open(tarball) as tar:
                    tar.extractall(root, filter="tar")
        except (OSError, tarfile.TarError, EOFError, subprocess.CalledProcessError) as exc:
            err.print(f"[red]FAIL[/] cannot unpack {tarball}: {exc}")
            raise SystemExit(1) from None
        problems = check_files(root, manifest) or runner_check(root)
        count = sum(1 for p in root.rglob("*") if p.is_file() or p.is_symlink())
        if str(count) != summary.get("files"):
            problems.append(f"{count} files unpacked, the summary says {summary.get('files')}")
        modules = top_modules(spec)
        rc, stdout, stderr = run_imports(root, modules, hide)
        try:
            bad: dict[str, str] = json.loads(stdout.strip().splitlines()[-1]) if rc == 0 else {}
        except (json.JSONDecodeError, IndexError):
            bad = {}
            rc = rc or 1
        if rc != 0:
            problems.append(f"the shipped interpreter failed (exit {rc}): {stderr.strip()[-2000:]}")
        notes: list[str] = []
        if bad:
            on_build = build_side_imports(spec, modules)
            if on_build is None:
                notes.append(
                    f"cannot run the build interpreter {spec.interpreter.executable} to compare; "
                    "every failed import counts"
                )
            for name in sorted(bad):
                if on_build is not None and name in on_build:
                    same = "" if on_build[name] == bad[name] else f"; here: {bad[name]}"
                    notes.append(
                        f"import {name} fails on the build interpreter too ({on_build[name]}"
                        f"{same}): not a packaging problem"
                    )
                else:
                    problems.append(f"import {name}: {bad[name]}")
    for note in notes:
        err.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    if problems:
        for problem in problems:
            err.print(f"[red]FAIL[/] {escape(problem)}", soft_wrap=True)
        raise SystemExit(1)
    where = " (build interpreter hidden)" if isolated else ""
    also = f" ({len(bad)} fail on the build interpreter too, noted)" if bad else ""
    out.print(
        f"OK {tarball.name}: {summary.get('files')} files match the manifest; "
        f"{len(modules) - len(bad)} top-level modules import{where}{also}",
        soft_wrap=True,
    )
