"""Run Parsl apps inside an envpack environment: HighThroughputExecutor's worker pools, and
the TaskVineExecutor's tasks.

HighThroughputExecutor: `htex_launch_cmd` puts the runner in front of the pool's launch
command, ``envpack-run -e ENV -- process_worker_pool.py ...``. The pool (parsl's own bin script,
shipped with parsl) then runs on the environment's Python, and so does every worker process it
spawns; the runner holds the environment's node-cache entry shared for the pool's whole life,
so eviction cannot remove it under a running pool. A ``worker_init`` could only unpack it: it
runs before the pool, in the same shell, and holds nothing once it returns.

TaskVineExecutor: ``env_pack=`` takes a poncho package, which an envpack tarball is; parsl
declares it with ``declare_poncho`` and runs ``python3 exec_parsl_function.py ...`` through its
``bin/run_in_env``.

What the pool or exec_parsl_function.py imports besides the apps' modules comes from the engine
table (envpack.integrations.engines: parsl-htex, parsl-taskvine).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING

from envpack.integrations.engines import Engines
from envpack.integrations.engines import environment_for as _environment_for
from envpack.integrations.workqueue import EnvLike, runner_for, tarball_of

if TYPE_CHECKING:
    from envpack.analyzer.api import Hints
    from envpack.build import Environment

HTEX = "parsl-htex"
TASKVINE = "parsl-taskvine"


def environment_for(
    sources: Sequence[str | os.PathLike[str]],
    *,
    out_dir: str | os.PathLike[str],
    engines: Engines = HTEX,
    python: str | os.PathLike[str] | None = None,
    include_lazy: Collection[str] = (),
    hints: Hints | None = None,
    imports: Iterable[str] | None = None,
) -> Environment:
    """The environment for ``sources`` (the modules defining the apps) with the worker side of
    ``engines`` (`HTEX`, `TASKVINE` or both), for ``python`` (default: this interpreter)."""
    return _environment_for(
        engines,
        sources,
        out_dir=out_dir,
        python=python,
        include_lazy=include_lazy,
        hints=hints,
        imports=imports,
    )


def _default_launch_cmd() -> str:
    from parsl.executors.high_throughput.executor import DEFAULT_LAUNCH_CMD

    return str(DEFAULT_LAUNCH_CMD)


def htex_launch_cmd(
    env: EnvLike,
    *,
    runner: str | os.PathLike[str] | None = None,
    launch_cmd: str | None = None,
    debug: bool = False,
) -> str:
    """``HighThroughputExecutor(launch_cmd=...)`` running the pool inside ``env``, with the
    runner and tarball at their paths here (a shared filesystem, or this machine).
    ``launch_cmd`` is the pool's command (default: parsl's own DEFAULT_LAUNCH_CMD), with its
    ``{placeholders}``, which parsl fills in."""
    tarball = tarball_of(env)
    prefix = [str(runner_for(tarball, runner)), *(["-d"] if debug else []), "-e", str(tarball)]
    # parsl calls str.format on the whole command: braces in our paths must stay literal
    quoted = " ".join(shlex.quote(p) for p in prefix).replace("{", "{{").replace("}", "}}")
    return f"{quoted} -- {launch_cmd if launch_cmd is not None else _default_launch_cmd()}"


def taskvine_env_pack(env: EnvLike) -> str:
    """``TaskVineManagerConfig(env_pack=...)``: the tarball's path."""
    return str(tarball_of(env))


__all__ = ["HTEX", "TASKVINE", "environment_for", "htex_launch_cmd", "taskvine_env_pack"]
