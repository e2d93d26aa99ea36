"""envpack.integrations.engines: the table of what each engine imports on the worker.

Every row is proven on the real engine: the environment built without that one row fails on a
real worker whose own Python is hidden (the TaskVine rows here, the Parsl and Dask rows in
test_parsl.py and test_dask.py), while the same environment with every row works
(test_taskvine.py, test_parsl.py, test_dask.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from envpack.errors import UsageError
from envpack.integrations.engines import (
    ENGINES,
    engine,
    worker_imports,
    write_shim,
)
from tests.integrations.conftest import EngineVenv, build_engine_env
from tests.integrations.taskvine_support import TaskVine
from tests.integrations.test_taskvine import run_engine


def test_an_engine_extends_the_ones_it_is_built_on() -> None:
    assert worker_imports("daskvine") == ("cloudpickle", "ndcctools.taskvine.dask_executor")
    both = worker_imports(("taskvine-python-task", "taskvine-library"))
    assert both == ("cloudpickle", "threadpoolctl", "ndcctools.taskvine.utils")
    assert worker_imports("taskvine-library") == both[1:]


def test_an_unknown_engine_names_the_known_ones() -> None:
    with pytest.raises(UsageError, match="known: dask-worker, daskvine"):
        engine("dask")


# (engine, row, scenario, what the real worker says without that row)
TASKVINE_ROWS = [
    ("taskvine-python-task", "cloudpickle", "python-task", "No module named 'cloudpickle'"),
    ("taskvine-library", "threadpoolctl", "library", "No module named 'threadpoolctl'"),
    # cloudpickle came with ndcctools.taskvine: library_code.py imports it first (line 17)
    ("taskvine-library", "ndcctools.taskvine.utils", "library", "No module named 'cloudpickle'"),
    ("daskvine", "ndcctools.taskvine.dask_executor", "daskvine", "No module named 'ndcctools'"),
]


def test_the_proofs_cover_every_row() -> None:
    from tests.integrations.test_dask import DASK_ROWS
    from tests.integrations.test_parsl import PARSL_ROWS

    proven = [(e, m) for e, m, *_ in [*TASKVINE_ROWS, *PARSL_ROWS, *DASK_ROWS]]
    rows = [(e.name, r.module) for e in ENGINES.values() for r in e.rows]
    assert sorted(proven) == sorted(rows)


def _failures(raw: dict[str, Any]) -> str:
    """Everything the run says about what failed, as one text."""
    parts = [str(t.get("output")) + "\n" + t.get("std", "") for t in raw.get("tasks", [])]
    parts.append(str(raw.get("dask", "")))
    parts.append(raw.get("library_log", ""))
    return "\n".join(parts)


@pytest.mark.taskvine
@pytest.mark.parametrize(
    ("name", "row", "scenario", "message"),
    TASKVINE_ROWS,
    ids=[f"{e}-{m}" for e, m, *_ in TASKVINE_ROWS],
)
def test_each_row_is_needed_on_the_real_engine(
    taskvine: TaskVine,
    engine_venv: EngineVenv,
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    row: str,
    scenario: str,
    message: str,
) -> None:
    without = tuple(m for m in worker_imports(name) if m != row)
    tarball = build_engine_env(tmp_path_factory, engine_venv, name, imports=without)
    raw, log = run_engine(taskvine, engine_venv, scenario, tarball, tasks=1, timeout=30)
    assert not [t for t in raw.get("tasks", []) if t["ok"]], raw
    assert raw.get("dask", {}).get("ok") is not True, raw
    assert message in _failures(raw) + log, (raw, log[-3000:])


def test_every_engines_worker_side_analyzes_without_false_errors(
    engine_venv: EngineVenv, tmp_path: Path
) -> None:
    """Issue 8's real cases, on the real dask, distributed, parsl and ndcctools: toolz's tlz
    import hook, psutil's `elif WINDOWS:` flag from a sibling module, distributed's `with
    suppress(ImportError):`, urllib3's `if not HAS_SNI` branch, importlib_metadata's
    cross-module `with lazy_importer():`, ndcctools.taskvine's dask module without dask: no
    error, with no hint or exclusion given."""
    from envpack.analyzer.api import analyze

    every = sorted({m for name in ENGINES for m in worker_imports(name)})
    shim = write_shim(tmp_path / "all", "all", every)
    assert list(analyze([shim], python=engine_venv.python).errors) == []
    # ndcctools.taskvine without dask installed at all: its dask module, imported from a `try:
    # import dask ... except ImportError:` body, is not an error (what else this bare venv
    # lacks, packaging or cloudpickle, really is missing)
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    site = next((bare / "lib").glob("python3*/site-packages"))
    (site / "cctools.pth").write_text(f"{engine_venv.cctools.site_packages}\n")
    utils = write_shim(tmp_path / "utils", "utils", ["ndcctools.taskvine.utils"])
    bare_errors = analyze([utils], python=bare / "bin" / "python").errors
    assert [e for e in bare_errors if "cannot import 'dask" in e] == [], bare_errors
