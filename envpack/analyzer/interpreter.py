"""Ask the target interpreter about itself, without installing anything into it.

poncho must run inside the environment it analyzes; we run a short stdlib-only probe with the
target's binary instead, so `--python` works for any venv or conda env on the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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
print(json.dumps({
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
    "extension_suffixes": importlib.machinery.EXTENSION_SUFFIXES,
    "version_info": list(sys.version_info[:3]),
}))
"""


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
    """Describe ``python`` (a binary, or a venv/conda prefix); default: the running one."""
    exe = _resolve(python)
    if exe in _cache:
        return _cache[exe]
    try:
        # -I: ignore PYTHONPATH and the user site, as the shipped env will; -S would hide
        # site-packages, which we need to see.
        out = subprocess.run(
            [exe, "-I", "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
        ).stdout
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"cannot run the target interpreter {exe}: {exc}") from None
    raw = json.loads(out)
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
    _cache[exe] = target
    return target


def _resolve(python: str | os.PathLike[str] | None) -> str:
    if python is None:
        return sys.executable
    path = Path(python)
    if path.is_dir():
        for candidate in (path / "bin" / "python3", path / "bin" / "python"):
            if candidate.exists():
                return str(candidate)
        raise UsageError(f"{path} is a directory with no bin/python in it")
    if not path.exists():
        raise UsageError(f"no such interpreter: {path}")
    return str(path)
