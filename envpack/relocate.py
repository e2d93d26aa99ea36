"""The only place that writes changes into copied files: ELF run paths, shebangs, sysconfig data.

Analysis (envpack.analyzer.native) only reads ELF; this module only writes, so every change made
to a shipped file can be found here. Everything is relocatable by construction: nothing needs
rewriting after unpacking.
"""

from __future__ import annotations

import importlib.util
import posixpath
import pprint
import re
from pathlib import Path

import lief

PYC_FLAGS_UNCHECKED_HASH = (0b01).to_bytes(4, "little")


def origin_runpath(arcname: str, lib_dir: str = "lib") -> str:
    """The `$ORIGIN`-relative path from the ELF at ``arcname`` to ``lib_dir`` (env-relative)."""
    rel = posixpath.relpath(lib_dir, posixpath.dirname(arcname) or ".")
    return "$ORIGIN" if rel == "." else f"$ORIGIN/{rel}"


def set_rpath(src: Path, dst: Path, first: list[str]) -> None:
    """Copy ELF ``src`` to ``dst`` with DT_RPATH = ``first`` + its own `$ORIGIN` entries.

    Absolute entries of the build machine are dropped (they must never be searched on a worker);
    `$ORIGIN`-relative ones the file already had (numpy's ``$ORIGIN/../numpy.libs``) are kept.
    DT_RPATH, not DT_RUNPATH: ld.so searches RPATH *before* LD_LIBRARY_PATH and RUNPATH after
    it, and clusters often export LD_LIBRARY_PATH (``module load python``) naming another
    libpython of the same soname. The env's own libraries must win there too.
    """
    lief.logging.disable()
    binary = lief.parse(str(src))
    if binary is None or not isinstance(binary, lief.ELF.Binary):
        raise ValueError(f"{src}: not an ELF file lief can read")
    tags = lief.ELF.DynamicEntry.TAG
    kept = [p for p in _paths(binary) if p.startswith(("$ORIGIN", "${ORIGIN}"))]
    binary.remove(tags.RUNPATH)
    binary.remove(tags.RPATH)
    ordered = list(dict.fromkeys(first + kept))
    binary.add(lief.ELF.DynamicEntryRpath(":".join(ordered)))
    binary.write(str(dst))


def runpath_of(path: Path) -> list[str]:
    """The RUNPATH (or RPATH) entries of an ELF file, for tests and `verify`."""
    lief.logging.disable()
    binary = lief.parse(str(path))
    if binary is None or not isinstance(binary, lief.ELF.Binary):
        return []
    return _paths(binary)


def _paths(binary: lief.ELF.Binary) -> list[str]:
    """RUNPATH entries, else RPATH entries (ld.so ignores RPATH when RUNPATH is present)."""
    tags = lief.ELF.DynamicEntry.TAG
    runpath = binary.get(tags.RUNPATH)
    if isinstance(runpath, lief.ELF.DynamicEntryRunPath):
        return [p for p in str(runpath.runpath).split(":") if p]
    rpath = binary.get(tags.RPATH)
    if isinstance(rpath, lief.ELF.DynamicEntryRpath):
        return [p for p in str(rpath.rpath).split(":") if p]
    return []


_PY_SHEBANG = re.compile(rb"^#![^\n]*python[0-9.]*[^\n]*\n")
# pip's own trampoline for shebangs too long for the kernel: sh runs the exec line, Python sees
# a string literal.
_PIP_SH = re.compile(rb"^#!/bin/sh\n'''exec' [^\n]*\n' '''\n")


def trampoline(python_name: str) -> bytes:
    """A sh/Python polyglot header: sh execs the env's python next to the script, Python skips it.

    `'''exec' ...` is `exec ...` to sh and the start of a string literal to Python, so the same
    file works wherever the env is unpacked, with no absolute path in it.
    """
    return (
        b"#!/bin/sh\n"
        b"'''exec' \"$(dirname -- \"$0\")/" + python_name.encode() + b'" "$0" "$@"\n'
        b"' '''\n"
    )


def relocate_script(data: bytes, python_name: str) -> bytes | None:
    """The script with its Python shebang made relocatable, or None if it is not a Python script."""
    match = _PIP_SH.match(data) or _PY_SHEBANG.match(data)
    if match is None:
        return None
    return trampoline(python_name) + data[match.end() :]


def sysconfigdata(text: str, build_prefixes: list[str]) -> str:
    """Rewrite `_sysconfigdata_*.py` so no build-machine prefix is left in it.

    Each value that mentions a build prefix is rebuilt at import time from ``sys.base_prefix``
    (where the env was unpacked), so sysconfig answers with the env's own paths and pip or a
    compiler wrapper never sees the build machine's.
    """
    namespace: dict[str, object] = {}
    exec(compile(text, "<sysconfigdata>", "exec"), namespace)  # stdlib's own data file
    raw = namespace.get("build_time_vars")
    if not isinstance(raw, dict):
        raise ValueError("no build_time_vars in sysconfigdata")
    marker = "\x00PREFIX\x00"
    prefixes = sorted({p.rstrip("/") for p in build_prefixes if p}, key=len, reverse=True)
    fixed: dict[str, object] = {}
    for key, value in raw.items():
        if isinstance(value, str):
            for prefix in prefixes:
                value = value.replace(prefix, marker)
        fixed[key] = value
    body = pprint.pformat(fixed, width=100, sort_dicts=True)
    return (
        "# Rewritten by envpack: build-machine prefixes replaced by the unpacked env's own.\n"
        "import sys as _sys\n\n"
        f"_MARK = {marker!r}\n\n"
        "def _here(value):\n"
        "    return value.replace(_MARK, _sys.base_prefix) if isinstance(value, str) else value\n\n"
        f"build_time_vars = {{_k: _here(_v) for _k, _v in {body}.items()}}\n"
    )


def pyc_unchecked(pyc: bytes, source: bytes, source_mtime: int | None = None) -> bytes | None:
    """A timestamp pyc turned into an unchecked-hash pyc (PEP 552), or None if it is stale.

    Archive members all get one fixed mtime, so timestamp pycs would never match their sources
    and Python would recompile every module on every start; an unchecked-hash pyc is valid
    wherever the env lands. The code object is kept byte for byte.
    """
    if len(pyc) < 16 or pyc[:4] != importlib.util.MAGIC_NUMBER:
        return None
    flags = int.from_bytes(pyc[4:8], "little")
    if flags == 0:  # timestamp pyc: stale unless mtime and size match, as importlib checks
        if int.from_bytes(pyc[12:16], "little") != len(source) & 0xFFFFFFFF:
            return None
        if source_mtime is not None and int.from_bytes(pyc[8:12], "little") != (
            source_mtime & 0xFFFFFFFF
        ):
            return None
    elif pyc[8:16] != importlib.util.source_hash(source):
        return None
    return pyc[:4] + PYC_FLAGS_UNCHECKED_HASH + importlib.util.source_hash(source) + pyc[16:]


__all__ = [
    "origin_runpath",
    "pyc_unchecked",
    "relocate_script",
    "runpath_of",
    "set_rpath",
    "sysconfigdata",
    "trampoline",
]
