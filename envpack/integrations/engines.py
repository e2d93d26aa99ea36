"""What each engine's worker side imports besides the user's code, in one table.

An engine runs its own code on the worker around the user's functions: TaskVine's PythonTask
wrapper script, the function-call library's server loop, the graph vertex DaskVine pickles by
reference, Parsl's worker pool, ``dask worker``. No import in the user's code names any of it,
so analysis cannot see it; `environment_for` analyzes the user's sources next to a generated
module importing exactly the engine's rows, as the coffea integration does for its executors.

Every row is proven needed by a test on the real engine (tests/integrations/test_engines.py):
the environment built without that one row fails on the real worker. A row an engine already
reaches through another of its rows is left out for that reason (it could not be proven), so
each engine's set is the smallest that works; ``extends`` composes engines built on others
(DaskVine's tasks are PythonTasks).
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from envpack.errors import AnalysisError, UsageError

if TYPE_CHECKING:
    from envpack.analyzer.api import Hints
    from envpack.build import Environment
    from envpack.spec import Spec


@dataclass(frozen=True)
class WorkerImport:
    """One module an engine imports on the worker, and where its own code does so."""

    module: str
    where: str


@dataclass(frozen=True)
class Engine:
    """An engine's worker side: its own rows, plus those of the engines it is built on."""

    name: str
    summary: str
    rows: tuple[WorkerImport, ...]
    extends: tuple[str, ...] = ()


ENGINES: Mapping[str, Engine] = {
    e.name: e
    for e in (
        Engine(
            "taskvine-python-task",
            "TaskVine PythonTask (also FuturesExecutor): `python3 w_<id> f_<id> a_<id> o_<id>`",
            (
                WorkerImport(
                    "cloudpickle",
                    "ndcctools/taskvine/task.py PythonTask._fn_wrapper: the w_<id> script it "
                    "writes starts with `import cloudpickle`, then unpickles the function",
                ),
            ),
        ),
        Engine(
            "taskvine-library",
            "TaskVine function-call library (create_library_from_functions, FunctionCall)",
            (
                # The library runs library_code.py: ndcctools/poncho/library_network_code.py
                # copied verbatim, whose imports are these (and cloudpickle, line 17, which
                # ndcctools.taskvine imports too).
                WorkerImport("threadpoolctl", "library_network_code.py:23 (threadpool_limits)"),
                WorkerImport(
                    "ndcctools.taskvine.utils",
                    "library_network_code.py:24 (load_variable_from_library); imports the whole "
                    "ndcctools.taskvine package, its C extension and cloudpickle",
                ),
            ),
        ),
        Engine(
            "daskvine",
            "DaskVine (`dask.compute(..., scheduler=m.get)`, task_mode='tasks')",
            (
                WorkerImport(
                    "ndcctools.taskvine.dask_executor",
                    "every vertex is PythonTask(execute_graph_vertex, ...): a module-level "
                    "function, which cloudpickle pickles by reference (dask_executor.py:756); "
                    "the module imports dask._task_spec, whose Task objects the vertex carries",
                ),
            ),
            extends=("taskvine-python-task",),
        ),
        Engine(
            "parsl-htex",
            "Parsl HighThroughputExecutor: its `process_worker_pool.py` and the workers it spawns",
            (
                WorkerImport(
                    "parsl.executors.high_throughput.process_worker_pool",
                    "the launch command runs parsl's bin/process_worker_pool.py, which imports "
                    "this module; it ships with the parsl distribution it reaches",
                ),
            ),
        ),
        Engine(
            "parsl-taskvine",
            "Parsl TaskVineExecutor: `python3 exec_parsl_function.py MAP FN ARGS RESULT`",
            (
                WorkerImport(
                    "parsl.executors.taskvine.exec_parsl_function",
                    "parsl/executors/taskvine/manager.py sends this file as each task's script; "
                    "it imports parsl.serialize (dill) to read the function",
                ),
            ),
        ),
        Engine(
            "dask-worker",
            "`dask worker tcp://...` (distributed) started inside the environment",
            (
                WorkerImport(
                    "distributed.cli.dask_worker",
                    "`dask worker` is dask's bin/dask finding this module through distributed's "
                    "`dask_cli` entry point, which no import names",
                ),
            ),
        ),
    )
}


def engine(name: str) -> Engine:
    """The table's entry for ``name``; an unknown name lists the known ones."""
    try:
        return ENGINES[name]
    except KeyError:
        known = ", ".join(sorted(ENGINES))
        raise UsageError(f"no engine {name!r} in envpack's table (known: {known})") from None


Engines = str | Sequence[str]
"""One engine's name, or several: an environment serving a PythonTask and a library both."""


def _names(engines: Engines) -> tuple[str, ...]:
    names = (engines,) if isinstance(engines, str) else tuple(engines)
    if not names:
        raise UsageError(f"name an engine (known: {', '.join(sorted(ENGINES))})")
    return names


def worker_imports(engines: Engines) -> tuple[str, ...]:
    """Every module these engines' worker side imports: each one's rows after those of the
    engines it extends, each module once."""
    out: list[str] = []
    for name in _names(engines):
        for base in engine(name).extends:
            out += [m for m in worker_imports(base) if m not in out]
        out += [r.module for r in engine(name).rows if r.module not in out]
    return tuple(out)


def shim_name(engines: Engines) -> str:
    return "envpack_engine_" + re.sub(r"\W", "_", "_".join(_names(engines))) + ".py"


def write_shim(directory: Path, engines: Engines, imports: Iterable[str]) -> Path:
    """The module standing for the engines' worker side (same bytes every time, so the
    environment's hash only changes with what it imports)."""
    directory.mkdir(parents=True, exist_ok=True)
    shim = directory / shim_name(engines)
    text = (
        f'"""Generated by envpack: what {", ".join(_names(engines))} import on the worker."""\n\n'
        + "".join(f"import {m}  # noqa: F401\n" for m in sorted(set(imports)))
    )
    if not shim.exists() or shim.read_text() != text:
        shim.write_text(text)
    return shim


def analyze_for(
    engines: Engines,
    sources: Sequence[str | os.PathLike[str]],
    *,
    shim_dir: str | os.PathLike[str],
    python: str | os.PathLike[str] | None = None,
    include_lazy: Collection[str] = (),
    hints: Hints | None = None,
    imports: Iterable[str] | None = None,
) -> Spec:
    """The Spec of ``sources`` with the engines' worker side; ``imports`` replaces the table's
    rows (to add a module no code names, or to leave one out)."""
    from envpack.analyzer.api import analyze

    rows = worker_imports(engines) if imports is None else tuple(imports)
    shim = write_shim(Path(shim_dir), engines, rows)
    return analyze(
        [*map(Path, sources), shim], include_lazy=include_lazy, hints=hints, python=python
    )


def environment_for(
    engines: Engines,
    sources: Sequence[str | os.PathLike[str]],
    *,
    out_dir: str | os.PathLike[str],
    python: str | os.PathLike[str] | None = None,
    include_lazy: Collection[str] = (),
    hints: Hints | None = None,
    imports: Iterable[str] | None = None,
) -> Environment:
    """Analyze ``sources`` (the modules defining what is sent to workers) with the engines'
    worker side for ``python`` (default: this interpreter) and build the
    environment into ``out_dir``, or reuse the one already there."""
    from envpack.build import build

    if not sources:
        raise UsageError("no sources: name the modules that define what runs on the workers")
    out = Path(out_dir)
    spec = analyze_for(
        engines,
        sources,
        shim_dir=out / ".envpack-engines",
        python=python,
        include_lazy=include_lazy,
        hints=hints,
        imports=imports,
    )
    if not spec.complete:
        raise AnalysisError(list(spec.errors))
    return build(spec, out)


__all__ = [
    "ENGINES",
    "Engine",
    "Engines",
    "WorkerImport",
    "analyze_for",
    "engine",
    "environment_for",
    "worker_imports",
    "write_shim",
]
