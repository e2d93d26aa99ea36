"""The only place that writes changes into copied files: ELF files, shebangs, sysconfig data, pycs.

Analysis (envpack.analyzer.native) only reads ELF, through envpack.elf; this module only writes,
so every change made to a shipped file can be found here. As in auditwheel's lddtree/patcher
split, the collector queues what an ELF file needs (ElfEdits: a new run path, stripped debug
sections) and one function applies it (apply, or EditedElf for bytes made on demand).
Everything is relocatable by construction: nothing needs rewriting after unpacking.
"""

from __future__ import annotations

import _imp
import atexit
import contextlib
import hashlib
import importlib.util
import json
import os
import posixpath
import pprint
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from envpack import _cachefile, elf
from envpack.errors import BuildError

PYC_FLAGS_UNCHECKED_HASH = (0b01).to_bytes(4, "little")


def origin_runpath(arcname: str, lib_dir: str = "lib") -> str:
    """The `$ORIGIN`-relative path from the ELF at ``arcname`` to ``lib_dir`` (env-relative)."""
    rel = posixpath.relpath(lib_dir, posixpath.dirname(arcname) or ".")
    return "$ORIGIN" if rel == "." else f"$ORIGIN/{rel}"


# ---------------------------------------------------------------------------------------------
# ELF files


@dataclass(frozen=True)
class ElfEdits:
    """The changes queued for one ELF file; apply() makes them all, in a fixed order.

    ``rpath``: DT_RPATH to put first, followed by the file's own `$ORIGIN` entries (None: run
    paths untouched). ``strip_debug``: the objcopy to remove debug sections with (None: kept).
    """

    rpath: tuple[str, ...] | None = None
    strip_debug: Path | None = None

    def __bool__(self) -> bool:
        return self.rpath is not None or self.strip_debug is not None


def apply(src: Path, dst: Path, edits: ElfEdits) -> None:
    """Write ``src`` with ``edits`` applied to ``dst``; BuildError naming the file on failure.

    Run path first (lief), then debug sections (objcopy), each step skipped when it has
    nothing to do; with no edits this is a plain copy.
    """
    current = src
    if edits.rpath is not None:
        try:
            _set_rpath(src, dst, list(edits.rpath))
        except (ValueError, OSError, elf.NotElfError) as exc:
            raise BuildError(f"cannot set the run path of {src}: {exc}") from None
        current = dst
    if edits.strip_debug is not None and elf.has_debug(current):
        try:
            _strip_debug(edits.strip_debug, current, dst)
        except OSError as exc:
            raise BuildError(f"cannot strip the debug sections of {src}: {exc}") from None
        current = dst
    if current == src:
        shutil.copyfile(src, dst)


def apply_kept(src: Path, dst: Path, edits: ElfEdits) -> None:
    """apply(), reusing the file an earlier build made from the same input and edits.

    A run path edit needs lief, 0.5 s to import; the interpreter is edited on every build, so
    a cached build would pay that for nothing. The output is kept in the cache directory
    under a key of the source's stat, the edits and the stat of lief and objcopy themselves
    (another version writes other bytes); a source modified within the last seconds is
    never kept (a second write in the same timestamp tick would go unseen). Bounded like the
    piece cache (``$ENVPACK_PIECE_CACHE_MAX``): the least recently used files go first.
    """
    from envpack.archive import PieceCache

    key = _edit_key(src, edits)
    kept = _cachefile.cache_dir() / "edited-elf" / key if key else None
    if kept is not None:
        try:
            shutil.copyfile(kept, dst)
            os.utime(kept)  # its mtime is its last use
            return
        except OSError:
            pass
    apply(src, dst, edits)
    if kept is not None:
        with contextlib.suppress(OSError):  # not kept: the next build edits again
            _cachefile.write_atomic(kept, lambda fh: _copy_into(dst, fh), suffix=".tmp")
            PieceCache(kept.parent).prune({kept.name}, suffix="")


def _copy_into(src: Path, out: BinaryIO) -> None:
    with open(src, "rb") as fh:
        shutil.copyfileobj(fh, out)


_RACY_NS = 2_000_000_000


# Bumped when the same edit writes other bytes (2: run paths overwritten in place when they fit).
_EDIT_FORMAT = 2


def _edit_key(src: Path, edits: ElfEdits) -> str | None:
    lief_spec = importlib.util.find_spec("lief")  # finds the module file, imports nothing
    tools: list[str | None] = [lief_spec.origin if lief_spec else None]
    tools.append(os.fspath(edits.strip_debug) if edits.strip_debug is not None else None)
    parts: list[object] = [_EDIT_FORMAT, repr(edits.rpath)]
    for path in [os.fspath(src), *tools]:
        if path is None:
            parts.append(None)
            continue
        try:
            st = os.stat(path)
        except OSError:
            return None
        if path == os.fspath(src) and st.st_mtime_ns > time.time_ns() - _RACY_NS:
            return None
        parts.append((path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


class EditedElf:
    """An ELF file's bytes with edits applied, made when asked (digest, then write).

    A source of this kind lets a warm rebuild's digest cache answer for the file (its key: the
    file and the objcopy binary) without running objcopy; a file with nothing to strip is read
    as it is. With ``keep`` (a path in the build's staging dir), the edited file made for the
    digest is kept there and read again by the writer, so objcopy runs once per file.
    """

    def __init__(
        self, path: Path, edits: ElfEdits, keep: Path | None = None, *, reuse: bool = False
    ) -> None:
        self.path = path
        self.edits = edits
        self.keep = keep
        self.reuse = reuse  # made through apply_kept: an earlier build's edit, if any

    @property
    def inputs(self) -> tuple[Path, ...]:
        """The files these bytes are a function of: the digest cache's key."""
        tools = (self.edits.strip_debug,) if self.edits.strip_debug is not None else ()
        return (self.path, *tools)

    def file(self) -> Path | None:
        """The file holding these bytes (the kept edit, made now if needed, or the input
        itself when there is nothing to strip): the writer reads it while writing, rather
        than holding it in memory. None without ``keep``: call this source instead."""
        if self.keep is None:
            return None
        if self.keep.is_file():
            return self.keep
        if self.edits.rpath is None and not elf.has_debug(self.path):
            return self.path
        self.keep.parent.mkdir(parents=True, exist_ok=True)
        (apply_kept if self.reuse else apply)(self.path, self.keep, self.edits)
        return self.keep

    def __call__(self) -> bytes:
        made = self.file()
        if made is not None:
            return made.read_bytes()
        if self.edits.rpath is None and not elf.has_debug(self.path):
            return self.path.read_bytes()
        with tempfile.TemporaryDirectory(prefix="envpack-edit-") as tmp:
            out = Path(tmp) / "out"
            apply(self.path, out, self.edits)
            return out.read_bytes()


def _set_rpath(src: Path, dst: Path, first: list[str]) -> None:
    """Write ``src`` to ``dst`` with DT_RPATH = ``first`` + its own `$ORIGIN` entries.

    Absolute entries of the build machine are dropped (they must never be searched on a worker);
    `$ORIGIN`-relative ones the file already had (numpy's ``$ORIGIN/../numpy.libs``) are kept.
    DT_RPATH, not DT_RUNPATH: ld.so searches RPATH *before* LD_LIBRARY_PATH and RUNPATH after
    it, and clusters often export LD_LIBRARY_PATH (``module load python``) naming another
    libpython of the same soname. The env's own libraries must win there too.
    """
    own = elf.read_elf(src).run_path
    kept = [p for p in own if p.startswith(("$ORIGIN", "${ORIGIN}"))]
    value = ":".join(dict.fromkeys(first + kept))
    if not _rpath_in_place(src, dst, value):
        _LIEF.edit(src, dst, value)


def _rpath_in_place(src: Path, dst: Path, value: str) -> bool:
    """Write ``src`` to ``dst`` with its one run path overwritten by ``value`` (the entry made
    DT_RPATH), when that fits in the old string's bytes and no other name shares them
    (elf.ElfFile.run_path_slot); False, nothing written, when not.

    The build machine's absolute run paths are longer than the `$ORIGIN` ones that replace
    them (pyenv's interpreter and every lib-dynload module: ``/root/.pyenv/versions/…/lib``),
    so the interpreter's and the stdlib's edits need no lief, whose import alone held the
    first layers of a cold build back by 0.5-0.8 s.
    """
    new = value.encode()
    try:
        with elf.ElfFile.open(src) as ef:
            slot = ef.run_path_slot()
    except elf.NotElfError:
        return False  # tables ld.so never reads (sections) may be broken: lief's job then
    if slot is None or len(new) > slot.room:
        return False
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as fh:
        for offset, data in slot.patches(new):
            fh.seek(offset)
            fh.write(data)
    after = elf.read_elf(dst)
    if after.rpath != tuple(p for p in value.split(":") if p) or after.runpath:
        raise ValueError(f"{dst}: the run path written in place reads back as {after.rpath}")
    return True


# What the lief helper process runs: one edit per line of JSON on stdin, a JSON reply each.
_LIEF_CHILD = """
import json, sys
import lief
lief.logging.disable()
tags = lief.ELF.DynamicEntry.TAG
for line in sys.stdin:
    src, dst, rpath = json.loads(line)
    try:
        binary = lief.parse(src)
        if binary is None or not isinstance(binary, lief.ELF.Binary):
            raise ValueError(src + ": not an ELF file lief can read")
        binary.remove(tags.RUNPATH)
        binary.remove(tags.RPATH)
        binary.add(lief.ELF.DynamicEntryRpath(rpath))
        binary.write(dst)
        reply = None
    except Exception as exc:
        reply = str(exc) or type(exc).__name__
    print(json.dumps(reply), flush=True)
"""


class _LiefHelper:
    """lief in a helper process, started on first use and kept for the build's other edits.

    Importing lief costs 0.5 s with the GIL held; in this process it would stall the build's
    writer and collector threads (and the compressors they feed) for that long. A cached build,
    an analysis, `envpack runner` never start it.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        atexit.register(self.close)  # (a no-op when none was started)

    def edit(self, src: Path, dst: Path, rpath: str) -> None:
        """Write ``src`` to ``dst`` with DT_RPATH ``rpath`` (and no RUNPATH); ValueError."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = subprocess.Popen(
                    # -P: not the current directory first (the user's project, its enum.py)
                    [sys.executable, "-P", "-c", _LIEF_CHILD],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
            proc = self._proc
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(json.dumps([str(src), str(dst), rpath]) + "\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
            except OSError:
                line = ""
            if not line:
                proc.kill()
                raise ValueError(
                    f"lief's helper process ({sys.executable}) died: is lief installed?"
                )
            error = json.loads(line)
        if error is not None:
            raise ValueError(error)

    def close(self) -> None:
        """Stop the helper. Killed, not asked to exit: it holds nothing (every edit was
        answered before edit() returned, and the lock keeps one from starting), and a Python
        with lief loaded took 0.13 s to finalize, on the way out of every cold build."""
        with self._lock:
            if self._proc is not None:
                with contextlib.suppress(OSError):
                    self._proc.kill()
                self._proc.wait()
                for pipe in (self._proc.stdin, self._proc.stdout):
                    if pipe is not None:
                        with contextlib.suppress(OSError):
                            pipe.close()
                self._proc = None


_LIEF = _LiefHelper()


def _strip_debug(objcopy: Path, src: Path, dst: Path) -> None:
    proc = subprocess.run(
        [str(objcopy), "--strip-debug", str(src), str(dst)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise OSError(proc.stderr.strip() or f"objcopy exited with {proc.returncode}")


# ---------------------------------------------------------------------------------------------
# Scripts and text files


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


# ---------------------------------------------------------------------------------------------
# pycs


_HASH_SAMPLE = b"# envpack: which algorithm does the target's source_hash use?\n"
# Runs in the target: hashes length-prefixed sources from stdin until it closes.
_HASH_SERVER = r"""
import sys, importlib.util
r, w = sys.stdin.buffer, sys.stdout.buffer
while True:
    n = r.read(8)
    if len(n) < 8:
        break
    w.write(importlib.util.source_hash(r.read(int.from_bytes(n, "little"))))
    w.flush()
"""


class SourceHasher:
    """``importlib.util.source_hash`` as the target interpreter computes it (PEP 552).

    The hash is keyed by the target's magic number, and its algorithm changed in 3.11
    (SipHash-2-4 became SipHash-1-3), so this Python cannot always compute it. When it gives
    the target's answer for a sample, it computes every hash itself; otherwise the target
    hashes each source, in one subprocess started on first use (for a 3.8-3.10 target).
    Thread-safe: the digest step calls it from a few threads.
    """

    def __init__(self, magic: bytes, python: str | None) -> None:
        self.magic = magic
        self.python = python
        self._key = int.from_bytes(magic, "little")  # importlib's _RAW_MAGIC_NUMBER
        self._local: bool | None = True if magic == importlib.util.MAGIC_NUMBER else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def __call__(self, source: bytes) -> bytes:
        if self._local:
            return _imp.source_hash(self._key, source)
        with self._lock:
            if self._local is None:
                sample = self._ask(_HASH_SAMPLE)
                self._local = sample == _imp.source_hash(self._key, _HASH_SAMPLE)
                if self._local:
                    self._close()
            if self._local:
                return _imp.source_hash(self._key, source)
            return self._ask(source)

    def _ask(self, source: bytes) -> bytes:
        if self._proc is None:
            if self.python is None:
                raise OSError("no target interpreter to compute source hashes with")
            self._proc = subprocess.Popen(
                [self.python, "-I", "-S", "-c", _HASH_SERVER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            self._proc.stdin.write(len(source).to_bytes(8, "little") + source)
            self._proc.stdin.flush()
            answer = self._proc.stdout.read(8)
        except OSError:
            answer = b""
        if len(answer) != 8:
            self._close()
            raise OSError(f"{self.python} did not answer a source hash")
        return answer

    def close(self) -> None:
        """Stop the target subprocess, if one was started."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def pyc_unchecked(
    pyc: bytes,
    source: bytes,
    source_mtime: int | None = None,
    *,
    magic: bytes = importlib.util.MAGIC_NUMBER,
    source_hash: Callable[[bytes], bytes] = importlib.util.source_hash,
) -> bytes | None:
    """A timestamp pyc turned into an unchecked-hash pyc (PEP 552), or None if it is stale.

    Archive members all get one fixed mtime, so timestamp pycs would never match their sources
    and Python would recompile every module on every start; an unchecked-hash pyc is valid
    wherever the env lands. The code object is kept byte for byte. ``magic`` and
    ``source_hash`` are the target interpreter's (default: this one's; see SourceHasher).
    """
    if len(pyc) < 16 or pyc[:4] != magic:
        return None
    flags = int.from_bytes(pyc[4:8], "little")
    if flags == 0:  # timestamp pyc: stale unless mtime and size match, as importlib checks
        if int.from_bytes(pyc[12:16], "little") != len(source) & 0xFFFFFFFF:
            return None
        if source_mtime is not None and int.from_bytes(pyc[8:12], "little") != (
            source_mtime & 0xFFFFFFFF
        ):
            return None
    digest = source_hash(source)
    if flags != 0 and pyc[8:16] != digest:
        return None
    return pyc[:4] + PYC_FLAGS_UNCHECKED_HASH + digest + pyc[16:]


__all__ = [
    "EditedElf",
    "ElfEdits",
    "SourceHasher",
    "apply",
    "origin_runpath",
    "pyc_unchecked",
    "relocate_script",
    "sysconfigdata",
    "trampoline",
]
