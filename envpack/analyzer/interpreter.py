"""Ask the target interpreter about itself, without installing anything into it.

poncho must run inside the environment it analyzes; we run a short stdlib-only probe with the
target's binary instead, so `--python` works for any venv or conda env on the machine. The probe
runs on CPython 3.8 and later, and prints its JSON between markers holding a fresh nonce, so a
sitecustomize (or anything else the target runs at start-up) that prints cannot break it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envpack.analyzer import _resultcache
from envpack.errors import UsageError

if TYPE_CHECKING:
    from envpack.spec import Interpreter

# The probe's imports (json, subprocess, the Spec's dataclasses) wait for a probe: `choose` and
# `resolve_executable` serve `envpack analyze` answered from its result cache, which runs none.

# Runs in the target: stdlib only, and no syntax or API newer than 3.8.
_PROBE = r"""
import json, os, platform, sys, sysconfig, importlib.machinery, importlib.util
libpython = None
if sysconfig.get_config_var("Py_ENABLE_SHARED"):
    name = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")
    for d in (sysconfig.get_config_var("LIBDIR"), os.path.join(sys.base_prefix, "lib")):
        if d and name and os.path.exists(os.path.join(d, name)):
            libpython = os.path.realpath(os.path.join(d, name))
            break
# The base install's paths: in a venv, plain get_paths() puts platstdlib in the venv.
paths = sysconfig.get_paths(vars={
    "base": sys.base_prefix, "platbase": sys.base_exec_prefix,
    "installed_base": sys.base_prefix, "installed_platbase": sys.base_exec_prefix,
})
dynload = os.path.join(paths["platstdlib"], "lib-dynload")
suffixes = importlib.machinery.EXTENSION_SUFFIXES
stdlib_names = getattr(sys, "stdlib_module_names", None)  # 3.10+
if stdlib_names is None:
    # Before 3.10: what the stdlib dirs hold, plus the modules compiled into the binary.
    stdlib_names = set(sys.builtin_module_names)
    for d in (paths["stdlib"], paths["platstdlib"], dynload):
        try:
            entries = os.listdir(d)
        except OSError:
            continue
        for entry in entries:
            if entry.endswith(".py"):
                stdlib_names.add(entry[:-3])
            elif os.path.isdir(os.path.join(d, entry)):
                stdlib_names.add(entry)
            else:
                for suffix in suffixes:
                    if entry.endswith(suffix):
                        stdlib_names.add(entry[: -len(suffix)])
                        break
    # not identifiers: site-packages, lib-dynload, config-3.9-x86_64-linux-gnu
    stdlib_names = [n for n in stdlib_names if n.isidentifier() and n != "__pycache__"]
result = json.dumps({
    "implementation": sys.implementation.name,
    "version": platform.python_version(),
    "executable": sys.executable,
    "real_executable": os.path.realpath(sys.executable),
    "prefix": sys.prefix,
    "base_prefix": sys.base_prefix,
    "stdlib": paths["stdlib"],
    "platstdlib": paths["platstdlib"],
    "dynload": dynload,
    "libpython": libpython,
    "platform": sys.platform,
    "machine": platform.machine(),
    "conda": os.path.isdir(os.path.join(sys.prefix, "conda-meta")),
    "sys_path": [p for p in sys.path if p],
    "stdlib_module_names": sorted(stdlib_names),
    "stdlib_names_from_disk": not hasattr(sys, "stdlib_module_names"),
    "builtin_module_names": sorted(sys.builtin_module_names),
    "extension_suffixes": suffixes,
    "version_info": list(sys.version_info[:3]),
    "cache_tag": sys.implementation.cache_tag,
    "pyc_magic": importlib.util.MAGIC_NUMBER.hex(),
})
# sys.__stdout__: a sitecustomize may have replaced sys.stdout.
out = sys.__stdout__
out.write("\n" + sys.argv[1] + result + sys.argv[2] + "\n")
out.flush()
"""
# The compiled modules of 3.10's sys.stdlib_module_names (every name there that is not a .py
# file or a package in its Lib/): a 3.8/3.9 target's dirs lack those built only on other
# platforms (winreg, _winapi) or without an optional library (_tkinter, _dbm), which the
# analyzer must still know as stdlib, so that a guarded import of one is not an error.
_COMPILED_STDLIB = frozenset(
    """
    _abc _ast _asyncio _bisect _blake2 _bz2 _codecs _codecs_cn _codecs_hk _codecs_iso2022
    _codecs_jp _codecs_kr _codecs_tw _collections _contextvars _crypt _csv _ctypes _curses
    _curses_panel _datetime _dbm _decimal _elementtree _frozen_importlib
    _frozen_importlib_external _functools _gdbm _hashlib _heapq _imp _io _json _locale _lsprof
    _lzma _md5 _msi _multibytecodec _multiprocessing _opcode _operator _overlapped _pickle
    _posixshmem _posixsubprocess _queue _random _scproxy _sha1 _sha256 _sha3 _sha512 _signal
    _socket _sqlite3 _sre _ssl _stat _statistics _string _struct _symtable _thread _tkinter
    _tracemalloc _uuid _warnings _weakref _winapi _zoneinfo array atexit audioop binascii
    builtins cmath errno faulthandler fcntl gc grp itertools marshal math mmap msilib msvcrt nis
    nt ossaudiodev posix pwd pyexpat readline resource select spwd sys syslog termios time
    unicodedata winreg winsound zlib
    """.split()  # noqa: SIM905  (a list literal would take 106 lines, one name each)
)
_TIMEOUT = 60  # seconds; a cold start on a network filesystem takes a few
_TAIL = 2000  # characters of the target's stderr (and stdout) quoted in an error


@dataclass(frozen=True)
class Target:
    """The interpreter plus the facts the analyzer needs that do not belong in the Spec."""

    interpreter: Interpreter
    stdlib_module_names: frozenset[str]
    builtin_module_names: frozenset[str]
    extension_suffixes: tuple[str, ...]
    version_info: tuple[int, int, int]

    @property
    def sys_path(self) -> tuple[str, ...]:
        return self.interpreter.sys_path


_cache: dict[str, Target] = {}

# Activation variables, innermost first: `source venv/bin/activate` on top of an active conda
# env sets VIRTUAL_ENV and leaves CONDA_PREFIX, and the venv is what the user works in.
_ACTIVE = ("VIRTUAL_ENV", "CONDA_PREFIX")


@dataclass(frozen=True)
class Choice:
    """The target interpreter to analyze for, and why that one (for the CLI to say)."""

    python: str  # absolute path of the binary
    source: str  # "--python", "$VIRTUAL_ENV", "$CONDA_PREFIX" or "envpack's own"

    @property
    def reason(self) -> str:
        if self.source == "--python":
            return "from --python"
        if self.source.startswith("$"):
            return f"the active {self.source}"
        return "envpack's own: no other venv or conda env is active"


def choose(
    python: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Choice:
    """The interpreter to analyze for: ``python`` if given, else the active environment's.

    As venv-pack and conda-pack do, an activated venv (``$VIRTUAL_ENV``) or conda env
    (``$CONDA_PREFIX``) is the default target when envpack itself runs from another prefix
    (pipx, a tools venv); when envpack runs inside the active env, or none is active, the
    target is the interpreter running envpack.
    """
    if python is not None:
        return Choice(resolve_executable(python), "--python")
    env = os.environ if environ is None else environ
    own = os.path.realpath(sys.prefix)
    for var in _ACTIVE:
        prefix = env.get(var)
        if not prefix:
            continue
        if os.path.realpath(prefix) == own:
            break  # envpack runs inside the active env: its own interpreter is the target
        if not Path(prefix).is_dir() or not any(
            (Path(prefix) / "bin" / name).exists() for name in ("python3", "python")
        ):
            raise UsageError(
                f"${var} is {prefix}, which holds no bin/python: activate a working "
                "environment, unset the variable, or pass --python"
            )
        return Choice(resolve_executable(prefix), f"${var}")
    return Choice(sys.executable, "envpack's own")


def probe(python: str | os.PathLike[str] | None = None) -> Target:
    """Describe ``python`` (a binary, or a venv/conda prefix); default: the running one.

    A relative path is taken relative to the current directory, never looked up on PATH.
    Raises UsageError saying what ran and how it failed when the target is not a Python
    that can answer the probe.
    """
    exe = resolve_executable(python)
    # An analysis whose result is stored asks afresh: a .pth added since this process last
    # asked would otherwise be missed in a result that outlives the process.
    if exe in _cache and not _resultcache.recording_on():
        return _cache[exe]
    _note_target(exe, None)
    target = _target(exe, _run_probe(exe))
    _cache[exe] = target
    _note_target(exe, target)
    _resultcache.confirm_late(lambda: _target(exe, _run_probe(exe)) == target)
    return target


def _target(exe: str, raw: dict[str, Any]) -> Target:
    """The probe's answer as a Target."""
    from envpack.spec import Interpreter

    try:
        interp = Interpreter(
            implementation=raw["implementation"],
            version=raw["version"],
            executable=raw["executable"],
            real_executable=raw["real_executable"],
            prefix=raw["prefix"],
            base_prefix=raw["base_prefix"],
            stdlib=raw["stdlib"],
            platstdlib=raw["platstdlib"],
            dynload=raw["dynload"],
            libpython=raw["libpython"],
            platform=raw["platform"],
            machine=raw["machine"],
            conda=raw["conda"],
            sys_path=tuple(raw["sys_path"]),
            cache_tag=raw["cache_tag"],
            pyc_magic=raw["pyc_magic"],
        )
        target = Target(
            interpreter=interp,
            stdlib_module_names=frozenset(raw["stdlib_module_names"]).union(
                _COMPILED_STDLIB if raw["stdlib_names_from_disk"] else ()
            ),
            builtin_module_names=frozenset(raw["builtin_module_names"]),
            extension_suffixes=tuple(raw["extension_suffixes"]),
            version_info=(raw["version_info"][0], raw["version_info"][1], raw["version_info"][2]),
        )
    except (KeyError, IndexError, TypeError) as exc:
        raise UsageError(f"{exe}: the probe's answer lacks {exc}; is it CPython 3.8+?") from None
    return target


def _note_target(exe: str, target: Target | None) -> None:
    """Tell a result cache what the probe's answer depends on: the binary and its venv's
    pyvenv.cfg (before the probe), then each sys.path entry and what site.py reads there
    (``.pth`` files, the paths they add, sitecustomize), noted after it ran (``late``: if one
    changed just before, the result cache asks the probe again before it keeps a result)."""
    if not _resultcache.recording_on():
        return
    if target is None:
        _resultcache.note_path(exe)
        bindir = os.path.dirname(exe)
        for cfg in (os.path.join(bindir, "pyvenv.cfg"), os.path.join(bindir, "..", "pyvenv.cfg")):
            _resultcache.note_file(os.path.normpath(cfg))
        return
    interp = target.interpreter
    for path in (
        interp.real_executable,
        interp.libpython,
        os.path.join(interp.prefix, "conda-meta"),
    ):
        if path:
            _resultcache.note_path(path, late=True)
    for entry in target.sys_path:
        _resultcache.note_dir(entry, late=True)
        try:
            names = sorted(os.listdir(entry))
        except OSError:
            continue
        for name in names:
            full = os.path.join(entry, name)
            if name in ("sitecustomize.py", "usercustomize.py"):
                _resultcache.note_file(full, late=True)
            elif name.endswith(".pth"):
                _resultcache.note_file(full, late=True)
                for line in _read_lines(full):
                    if line and not line.startswith(("#", "import ", "import\t")):
                        _resultcache.note_path(os.path.join(entry, line), late=True)


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return [line.rstrip() for line in fh]
    except OSError:
        return []


def _run_probe(exe: str) -> dict[str, Any]:
    """Run the probe with ``exe`` and return its JSON, found between this run's markers."""
    import json
    import re
    import secrets
    import subprocess

    nonce = secrets.token_hex(8)
    begin, end = f"<envpack-probe {nonce}>", f"</envpack-probe {nonce}>"
    # -I: ignore PYTHONPATH and the user site, as the shipped env will; -S would hide
    # site-packages, which we need to see.
    cmd = [exe, "-I", "-c", _PROBE, begin, end]
    ran = f"{exe} -I -c <envpack probe>"
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise UsageError(f"{ran}: no answer within {_TIMEOUT} s") from None
    except OSError as exc:
        raise UsageError(
            f"cannot run the target interpreter {exe}: {exc.strerror or exc}"
        ) from None
    stdout = proc.stdout.decode("utf-8", "replace")
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise UsageError(f"{ran} {_status(proc.returncode)}{_output(stderr=stderr)}")
    found = re.search(re.escape(begin) + "(.*?)" + re.escape(end), stdout, re.DOTALL)
    if found is None:
        raise UsageError(
            f"{ran} exited with status 0 but printed no probe result: is {exe} a Python "
            f"interpreter?{_output(stdout=stdout, stderr=stderr)}"
        )
    try:
        raw = json.loads(found.group(1))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{ran}: unreadable probe result ({exc})") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{ran}: the probe result is not a JSON object")
    return raw


def _status(returncode: int) -> str:
    import signal

    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with status {returncode}"


def _output(**streams: str) -> str:
    """The tail of each non-empty stream, indented under a heading; or that there was none."""
    parts = []
    for label, text in streams.items():
        text = text.strip()
        if text:
            cut = "…" if len(text) > _TAIL else ""
            body = "\n".join("    " + line for line in (cut + text[-_TAIL:]).splitlines())
            parts.append(f"\n  its {label} ends with:\n{body}")
    return "".join(parts) or f" (nothing on {' or '.join(streams)})"


def resolve_executable(python: str | os.PathLike[str] | None) -> str:
    """The binary to run, as an absolute path (so subprocess never searches PATH for it)."""
    if python is None:
        return sys.executable
    # absolute(), not resolve(): a venv's bin/python is a symlink whose own location is what
    # makes it the venv's interpreter.
    path = Path(python).absolute()
    if path.is_dir():
        for candidate in (path / "bin" / "python3", path / "bin" / "python"):
            if candidate.exists():
                return str(candidate)
        raise UsageError(f"{python} is a directory with no bin/python in it")
    if not path.exists():
        raise UsageError(f"no such interpreter: {python}")
    return str(path)
