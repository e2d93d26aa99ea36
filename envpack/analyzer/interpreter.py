"""Ask the target interpreter about itself, without installing anything into it.

poncho must run inside the environment it analyzes; we run a short stdlib-only probe with the
target's binary instead, so `--python` works for any venv or conda env on the machine. The probe
prints its JSON between markers holding a fresh nonce, so a sitecustomize (or anything else the
target runs at start-up) that prints cannot break it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envpack.errors import UsageError
from envpack.spec import Interpreter

_PROBE = r"""
import json, os, platform, sys, sysconfig, importlib.machinery
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
    "stdlib_module_names": sorted(sys.stdlib_module_names),
    "builtin_module_names": sorted(sys.builtin_module_names),
    "extension_suffixes": suffixes,
    "version_info": list(sys.version_info[:3]),
})
# sys.__stdout__: a sitecustomize may have replaced sys.stdout.
out = sys.__stdout__
out.write("\n" + sys.argv[1] + result + sys.argv[2] + "\n")
out.flush()
"""
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


def probe(python: str | os.PathLike[str] | None = None) -> Target:
    """Describe ``python`` (a binary, or a venv/conda prefix); default: the running one.

    A relative path is taken relative to the current directory, never looked up on PATH.
    Raises UsageError saying what ran and how it failed when the target is not a Python
    that can answer the probe.
    """
    exe = _resolve(python)
    if exe in _cache:
        return _cache[exe]
    raw = _run_probe(exe)
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
        )
        target = Target(
            interpreter=interp,
            stdlib_module_names=frozenset(raw["stdlib_module_names"]),
            builtin_module_names=frozenset(raw["builtin_module_names"]),
            extension_suffixes=tuple(raw["extension_suffixes"]),
            version_info=(raw["version_info"][0], raw["version_info"][1], raw["version_info"][2]),
        )
    except (KeyError, IndexError, TypeError) as exc:
        raise UsageError(f"{exe}: the probe's answer lacks {exc}; is it CPython 3.10+?") from None
    _cache[exe] = target
    return target


def _run_probe(exe: str) -> dict[str, Any]:
    """Run the probe with ``exe`` and return its JSON, found between this run's markers."""
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


def _resolve(python: str | os.PathLike[str] | None) -> str:
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
