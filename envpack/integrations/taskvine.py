"""Run TaskVine tasks, PythonTasks, function-call libraries and DaskVine graphs inside an
envpack environment.

An envpack tarball is a poncho package (``bin/run_in_env``), so TaskVine unpacks it itself:
`declare` declares it with ``declare_poncho``, and the worker unpacks it once into its own cache,
outside every task sandbox, and runs each task as ``<env>/bin/run_in_env CMD``.

Why ``cache="forever"``: a worker drops every cached file below that level when a new manager
connects (vine_cache_load in vine_cache.c, f4e3b63), so at TaskVine's default ("workflow") or
"worker" each new manager unpacks the environment again on every worker. Keeping it is safe
because an environment's content names it twice over: at cache level "worker" and above TaskVine
caches a local file under the md5 of its content (vine_file.c, vine_cached_name.c; below that,
under its path, size and mtime), and envpack names the tarball after the sha256 of its files; a
changed environment is a different file, never a stale hit. ``envpack cache prune``
does not see these trees: they live in the worker's workspace (``--workspace``) and go with it.

`runner_task` is the other way: the tarball and envpack-run as plain cached inputs and
``envpack-run -e ENV -- CMD`` as the command, so every worker of a node shares one unpack in
the runner's node cache (see README, "The node cache").

Worker-side imports: `environment_for` adds what TaskVine's own code imports on the worker for
the engines in use (envpack.integrations.engines), e.g. cloudpickle for a PythonTask's wrapper.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from envpack.integrations.engines import Engines
from envpack.integrations.engines import environment_for as _environment_for
from envpack.integrations.workqueue import RUNNER_NAME, EnvLike, runner_for, tarball_of

if TYPE_CHECKING:
    from envpack.analyzer.api import Hints
    from envpack.build import Environment

FOREVER = "forever"

PYTHON_TASK = "taskvine-python-task"
LIBRARY = "taskvine-library"
DASKVINE = "daskvine"


def environment_for(
    sources: Sequence[str | os.PathLike[str]],
    *,
    out_dir: str | os.PathLike[str],
    engines: Engines = PYTHON_TASK,
    python: str | os.PathLike[str] | None = None,
    include_lazy: Collection[str] = (),
    hints: Hints | None = None,
    imports: Iterable[str] | None = None,
) -> Environment:
    """Build the environment for ``sources`` (the modules defining the functions sent to
    workers) with TaskVine's worker side for ``engines``: `PYTHON_TASK`, `LIBRARY`, `DASKVINE`
    or several. ``python`` is the interpreter whose packages ship (default: this one)."""
    return _environment_for(
        engines,
        sources,
        out_dir=out_dir,
        python=python,
        include_lazy=include_lazy,
        hints=hints,
        imports=imports,
    )


def declare(manager: Any, env: EnvLike, *, cache: str = FOREVER, peer_transfer: bool = True) -> Any:
    """Declare ``env`` (an Environment or a tarball path) to ``manager`` as a poncho package,
    kept by each worker across managers (see the module docstring); returns the vine File to
    pass to ``add_environment``, DaskVine's ``environment=`` or Parsl's executor."""
    return manager.declare_poncho(str(tarball_of(env)), cache=cache, peer_transfer=peer_transfer)


def python_task(env_file: Any, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A ``PythonTask(func, *args, **kwargs)`` that runs inside the declared environment.

    Its command is ``${PONCHO_PREFIX:+$PONCHO_PREFIX/bin/}python3 ...``: run_in_env (that is,
    envpack-run) exports PONCHO_PREFIX, so the environment's own python runs it.
    """
    import ndcctools.taskvine as vine

    t = vine.PythonTask(func, *args, **kwargs)
    t.add_environment(env_file)
    return t


def task(env_file: Any, command: str) -> Any:
    """A ``Task(command)`` run as ``<env>/bin/run_in_env command`` by the worker."""
    import ndcctools.taskvine as vine

    t = vine.Task(command)
    t.add_environment(env_file)
    return t


def runner_task(
    manager: Any,
    env: EnvLike,
    command: str,
    *,
    runner: str | os.PathLike[str] | None = None,
    cache: str = FOREVER,
    debug: bool = False,
    layers: bool = True,
) -> Any:
    """A ``Task`` whose command is ``envpack-run -e ENV -- command``, the environment and the
    runner as inputs cached at ``cache``: one unpack per node in the runner's node cache,
    shared by every worker of the node.

    ``layers`` (the default): the environment's split form (envpack.split), each layer a file
    named after its content, so at ``cache="forever"`` a worker keeps every layer across
    managers and another application, or the next build of an edited processor, sends only
    the layers the worker lacks. ``layers=False`` sends the single tarball."""
    import ndcctools.taskvine as vine

    from envpack.integrations.workqueue import runner_command
    from envpack.split import split

    tarball = tarball_of(env)
    runner_file = runner_for(tarball, runner)
    parts = split(tarball) if layers else None
    files = parts.files if parts is not None else (tarball,)
    name = files[0].name
    t = vine.Task("sh " + runner_command(name, command, debug=debug).removeprefix("./"))
    for path in files:
        t.add_input(manager.declare_file(str(path), cache=cache), path.name)
    t.add_input(manager.declare_file(str(runner_file), cache=cache), RUNNER_NAME)
    return t


def library(
    manager: Any,
    env: EnvLike,
    name: str,
    *functions: Callable[..., Any],
    env_file: Any = None,
    **options: Any,
) -> Any:
    """``create_library_from_functions(name, *functions)`` run inside ``env``: the library's
    hash covers the tarball's name (a content hash), and its environment is the poncho
    package `declare` makes (``env_file`` if already declared), kept across managers, instead
    of the one ndcctools would declare at "workflow" level. ``options`` go to ndcctools
    (exec_mode=, hoisting_modules=, library_context_info=, ...)."""
    tarball = tarball_of(env)
    lib = manager.create_library_from_functions(
        name, *functions, poncho_env=str(tarball), add_env=False, **options
    )
    lib.add_environment(env_file if env_file is not None else declare(manager, tarball))
    return lib


def dask_options(env_file: Any, **options: Any) -> dict[str, Any]:
    """Keyword arguments for ``dask.compute(..., scheduler=m.get, **dask_options(f))``:
    every graph vertex a PythonTask inside the declared environment. DaskVine at f4e3b63
    accepts dask 2024.12.0 to 2025.3.0: from 2025.4.0 on, ``dask.compute`` hands the scheduler
    an expression, and DaskVine fails on the manager (``'_HLGExprSequence' object has no
    attribute 'items'``)."""
    return {"environment": env_file, **options}


__all__ = [
    "DASKVINE",
    "FOREVER",
    "LIBRARY",
    "PYTHON_TASK",
    "dask_options",
    "declare",
    "environment_for",
    "library",
    "python_task",
    "runner_task",
    "task",
]
