"""Compile the C fixtures of tests/fixtures/c with gcc at test time (no binaries in the repo)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

SOURCES = Path(__file__).resolve().parents[1] / "fixtures" / "c"

needs_gcc = pytest.mark.skipif(
    shutil.which("gcc") is None, reason="gcc is needed to compile the ELF fixtures"
)


def compile_c(
    source: str,
    out: Path,
    *,
    executable: bool = False,
    soname: str | None = None,
    link: Sequence[str | Path] = (),
    libdirs: Sequence[Path] = (),
    rpath: Sequence[str | Path] = (),
    runpath: Sequence[str | Path] = (),
    extra: Sequence[str] = (),
) -> Path:
    """Build ``source`` into ``out`` (a shared object unless ``executable``).

    ``link`` holds -l names or library paths; ``rpath`` is written as DT_RPATH
    (--disable-new-dtags), ``runpath`` as DT_RUNPATH (--enable-new-dtags). --no-as-needed keeps
    every linked library in DT_NEEDED, whether or not a symbol of it is used.
    """
    assert not (rpath and runpath), "one link writes DT_RPATH or DT_RUNPATH, not both"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["gcc", "-O0", "-o", str(out), str(SOURCES / source)]
    if not executable:
        cmd[1:1] = ["-shared", "-fPIC"]
        if soname != "":  # "" builds a library without DT_SONAME
            cmd.append(f"-Wl,-soname,{soname or out.name}")
    cmd.append("-Wl,--no-as-needed")
    for d in libdirs:
        cmd += [f"-L{d}", f"-Wl,-rpath-link,{d}"]
    for lib in link:
        cmd.append(str(lib) if isinstance(lib, Path) else f"-l{lib}")
    if rpath:
        cmd += ["-Wl,--disable-new-dtags", "-Wl,-rpath," + ":".join(map(str, rpath))]
    if runpath:
        cmd += ["-Wl,--enable-new-dtags", "-Wl,-rpath," + ":".join(map(str, runpath))]
    cmd += list(extra)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise AssertionError(f"gcc failed: {' '.join(cmd)}\n{proc.stderr}")
    return out


def patch_byte(src: Path, dst: Path, offset: int, value: bytes) -> Path:
    """Copy ``src`` to ``dst`` with the bytes at ``offset`` replaced (e_machine, EI_CLASS…)."""
    data = bytearray(src.read_bytes())
    data[offset : offset + len(value)] = value
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(bytes(data))
    return dst
