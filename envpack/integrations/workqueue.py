"""Run Work Queue tasks inside an envpack environment.

`wrap` declares the environment (each of its layers, see `wrap`) and the runner as *cached*
inputs, so a worker receives them once and keeps them across tasks, and prefixes the task's
command with the runner, which unpacks the environment once per node (outside the worker's
workspace, which Work Queue wipes between managers). Nothing needs setting for that, on the
manager or the workers: the runner's default node cache is never a task's own TMPDIR.
``ENVPACK_CACHE`` in a worker's environment only moves it.

Both Python bindings are supported without importing either: Debian's ``work_queue``
(coop-computing-tools, ``specify_input_file`` / ``specify_command``) and conda-forge's
``ndcctools.work_queue`` (newer releases name them ``add_input_file`` / ``set_command``); the
methods the task object has decide which calls are made.
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, TypeVar, runtime_checkable

from envpack.errors import UsageError
from envpack.split import split

RUNNER_NAME = "envpack-run"
"""Remote name of the runner in every task's sandbox."""

DEBIAN_DIST_PACKAGES = Path("/usr/lib/python3/dist-packages")

# Shell control operators (; | & && || newline, command substitution): with one of these in
# the command, a bare prefix would run only its first part inside the environment, so the whole
# command goes to `sh -c` instead. Redirections (2>&1, >&2) are not operators. A false positive
# (an operator inside quotes) only costs one more sh.
_CONTROL = re.compile(r"[;|`\n]|\$\(|(?<![<>&])&(?![>&])|&&")


@runtime_checkable
class HasTarball(Protocol):
    """What `wrap` needs of an `envpack.build.Environment` (kept structural: no build import)."""

    @property
    def path(self) -> Path: ...


EnvLike = HasTarball | str | os.PathLike[str]
_Task = TypeVar("_Task")


def tarball_of(env: EnvLike) -> Path:
    """The tarball an Environment or a path names; it must be an existing file."""
    raw = env.path if isinstance(env, HasTarball) else env
    path = Path(os.fspath(raw)).absolute()
    if not path.is_file():
        raise UsageError(f"no environment tarball at {path}")
    return path


def runner_for(tarball: Path, runner: str | os.PathLike[str] | None = None) -> Path:
    """The runner to ship: the one given, else the one `envpack build` wrote next to the
    tarball (same version as the tarball), else the installed package's own."""
    if runner is not None:
        path = Path(os.fspath(runner)).absolute()
        if not path.is_file():
            raise UsageError(f"no runner at {path}")
        return path
    sibling = tarball.parent / RUNNER_NAME
    if sibling.is_file():
        return sibling
    from envpack.runtime import runner_path

    return Path(runner_path())


def runner_command(tarball_name: str, command: str, *, debug: bool = False) -> str:
    """The task command that runs ``command`` inside the environment ``tarball_name``."""
    prefix = f"./{RUNNER_NAME} {'-d ' if debug else ''}-e {shlex.quote(tarball_name)} -- "
    if _CONTROL.search(command):
        return prefix + "sh -c " + shlex.quote(command)
    return prefix + command


def wrap(
    task: _Task,
    env: EnvLike,
    *,
    runner: str | os.PathLike[str] | None = None,
    debug: bool = False,
    layers: bool = True,
) -> _Task:
    """Make ``task`` run inside ``env`` (an Environment or a tarball path); returns ``task``.

    ``layers`` (the default): send the environment as its split form (envpack.split), each
    layer a cached input named after its content, so a worker that already holds a layer for
    another environment of this manager (the previous build of an edited processor, another
    application) is not sent it again. Work Queue workers drop their cache when the manager
    goes, so across managers each layer is sent again (and unpacked only if the node lacks it).
    ``layers=False``, or a tarball without layers, sends the single file. ``debug`` passes
    ``-d`` to the runner: it then logs each step (``envpack-run: unpacked <hash>``) to stderr.
    """
    tarball = tarball_of(env)
    runner_file = runner_for(tarball, runner)
    command = _get_command(task)
    _input_method(task)  # refuse a non-task before reading the tarball
    parts = split(tarball) if layers else None
    if parts is None:
        add_input_file(task, tarball, tarball.name, cache=True)
        name = tarball.name
    else:
        for path in parts.files:
            add_input_file(task, path, path.name, cache=True)
        name = parts.head.name
    add_input_file(task, runner_file, RUNNER_NAME, cache=True)
    _set_command(task, runner_command(name, command, debug=debug))
    return task


def _get_command(task: Any) -> str:
    command = getattr(task, "command", None)
    if callable(command):  # a binding that exposes it as a method
        command = command()
    if not isinstance(command, str) or not command.strip():
        raise UsageError(f"{type(task).__name__} has no command to wrap")
    return command


def add_input_file(
    task: Any, local: str | os.PathLike[str], remote: str | None = None, *, cache: bool = False
) -> None:
    """Declare an input file of ``task`` with whichever binding made it."""
    local_name = str(local)
    remote_name = remote or os.path.basename(local_name)
    ok = _input_method(task)(local_name, remote_name, cache=cache)
    if ok is not None and not ok:
        # the C layer returns 0 when it refuses the file (e.g. an absolute remote name)
        raise UsageError(f"Work Queue refused the input {local_name} as {remote_name!r}")


def _input_method(task: Any) -> Any:
    """The binding's input-file method: ``specify_input_file`` (Debian's work_queue, ndcctools
    < 7.5) or ``add_input_file`` (newer ndcctools.work_queue)."""
    for name in ("specify_input_file", "add_input_file"):
        method = getattr(task, name, None)
        if method is not None:
            return method
    raise UsageError(f"{type(task).__name__} is not a Work Queue task (no input-file method)")


def _set_command(task: Any, command: str) -> None:
    for name in ("specify_command", "set_command"):
        setter = getattr(task, name, None)
        if setter is not None:
            setter(command)
            return
    raise UsageError(f"{type(task).__name__} has no way to set its command")


def binding_files(dist_packages: Path = DEBIAN_DIST_PACKAGES) -> tuple[Path, Path]:
    """Debian's binding for the running Python: work_queue.py and its extension module."""
    tag = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
    wrapper = dist_packages / "work_queue.py"
    ext = sorted(dist_packages.glob(f"_work_queue.{tag}*.so")) + sorted(
        dist_packages.glob("_work_queue.abi3.so")
    )
    if not wrapper.is_file() or not ext:
        raise ImportError(
            f"no Work Queue binding for Python {sys.version_info.major}.{sys.version_info.minor}: "
            f"install ndcctools (conda) or python3-workqueue (Debian, into {dist_packages})"
        )
    return wrapper, ext[0]


def load_binding(dist_packages: Path = DEBIAN_DIST_PACKAGES) -> ModuleType:
    """Import a Work Queue binding: ``work_queue`` or ``ndcctools.work_queue`` if importable,
    else Debian's from ``dist_packages``, without putting that whole directory on sys.path
    (its other packages would shadow the venv's): only the binding's two files are exposed,
    through symlinks in a temporary directory that is gone once the module is loaded.
    """
    for name in ("work_queue", "ndcctools.work_queue"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    files = binding_files(dist_packages)
    tmp = tempfile.mkdtemp(prefix="envpack-wq-binding-")
    try:
        for src in files:
            os.symlink(src, os.path.join(tmp, src.name))
        sys.path.insert(0, tmp)
        try:
            return importlib.import_module("work_queue")
        finally:
            sys.path.remove(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = [
    "RUNNER_NAME",
    "HasTarball",
    "add_input_file",
    "binding_files",
    "load_binding",
    "runner_command",
    "runner_for",
    "tarball_of",
    "wrap",
]
