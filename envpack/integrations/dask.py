"""Start Dask distributed workers inside an envpack environment.

A ``dask worker`` is a long-lived process: started as ``envpack-run -e ENV -- dask worker
tcp://HOST:PORT``, it runs on the environment's own Python, holds the environment's node-cache
entry for its whole life (so eviction cannot remove it), and every process its nanny spawns is
the environment's Python too. What the worker imports besides the user's functions
(distributed.cli.dask_worker, found by ``dask`` through an entry point) comes from the engine
table, envpack.integrations.engines.

dask-jobqueue runs ``{python} -m distributed.cli.dask_worker tcp://... --name ... --nanny ...``
through ``/bin/sh -c`` in the job's directory; `jobqueue_options` gives ``python=`` the runner's
command line and HTCondor the two files to transfer.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING

from envpack.integrations.engines import environment_for as _environment_for
from envpack.integrations.workqueue import RUNNER_NAME, EnvLike, runner_for, tarball_of

if TYPE_CHECKING:
    from envpack.analyzer.api import Hints
    from envpack.build import Environment

ENGINE = "dask-worker"


def environment_for(
    sources: Sequence[str | os.PathLike[str]],
    *,
    out_dir: str | os.PathLike[str],
    python: str | os.PathLike[str] | None = None,
    include_lazy: Collection[str] = (),
    hints: Hints | None = None,
    imports: Iterable[str] | None = None,
) -> Environment:
    """The environment for ``sources`` (the modules defining what the client submits) with
    what ``dask worker`` imports, for ``python`` (default: this interpreter)."""
    return _environment_for(
        ENGINE,
        sources,
        out_dir=out_dir,
        python=python,
        include_lazy=include_lazy,
        hints=hints,
        imports=imports,
    )


def worker_command(
    env: EnvLike,
    scheduler: str,
    *options: str,
    runner: str | os.PathLike[str] | None = None,
) -> list[str]:
    """``envpack-run -e ENV -- dask worker SCHEDULER OPTIONS...`` as an argv, with the runner
    and tarball at their local paths (a shared filesystem, or this machine)."""
    tarball = tarball_of(env)
    return [
        str(runner_for(tarball, runner)),
        "-e",
        str(tarball),
        "--",
        "dask",
        "worker",
        scheduler,
        *options,
    ]


def jobqueue_python(env: EnvLike) -> str:
    """The ``python=`` of a dask-jobqueue cluster whose jobs receive the runner and the tarball
    in their working directory (HTCondor's file transfer, which need not keep the runner's
    execute bit: hence ``sh``)."""
    return f"sh {RUNNER_NAME} -e {shlex.quote(tarball_of(env).name)} -- python"


def jobqueue_options(
    env: EnvLike, *, runner: str | os.PathLike[str] | None = None
) -> dict[str, object]:
    """Keyword arguments for ``dask_jobqueue.HTCondorCluster``: ``python=`` runs the worker
    inside the environment, and the job transfers the runner and the tarball to its scratch
    directory. Merge your own ``job_extra_directives`` into the returned ones."""
    tarball = tarball_of(env)
    files = f"{runner_for(tarball, runner)},{tarball}"
    return {
        "python": jobqueue_python(tarball),
        "job_extra_directives": {
            "should_transfer_files": "YES",
            "when_to_transfer_output": "ON_EXIT_OR_EVICT",
            "transfer_input_files": files,
        },
    }


__all__ = [
    "ENGINE",
    "environment_for",
    "jobqueue_options",
    "jobqueue_python",
    "worker_command",
]
