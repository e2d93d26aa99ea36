"""envpack.integrations.dask: a real Dask scheduler on loopback and a `dask worker` running
inside the environment, the worker's own Python hidden; the client submits the user's function.

Each run lives in a network namespace of its own (as the TaskVine tests do), so the scheduler's
fixed port meets no other test and nothing leaves loopback. The `jobqueue` run executes the
exact shape of an HTCondorCluster job (`/bin/sh -c "{python} -m distributed.cli.dask_worker
..."` in a scratch directory holding the transferred files), with python= from jobqueue_options.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from envpack.integrations.dask import jobqueue_options, worker_command
from envpack.integrations.engines import worker_imports
from tests.integrations.conftest import EngineVenv, build_engine_env, run_engine_driver

DRIVER = Path(__file__).parent / "apps" / "dask_driver.py"


def run_dask(
    tmp_path: Path, venv: EngineVenv, mode: str, tarball: Path, *, tasks: int = 3
) -> dict[str, Any]:
    cfg = {"mode": mode, "port": 8786, "tasks": tasks, "timeout": 40}
    return run_engine_driver(DRIVER, tmp_path / f"dask-{mode}", venv, tarball, cfg)


def test_worker_command_and_jobqueue_options(tmp_path: Path) -> None:
    tarball = tmp_path / "envpack-0123abcd.tar.gz"
    tarball.write_bytes(b"")
    runner = tmp_path / "envpack-run"
    runner.write_text("")
    argv = worker_command(tarball, "tcp://h:1", "--nthreads", "1")
    assert argv[:4] == [str(runner), "-e", str(tarball), "--"]
    assert argv[4:] == ["dask", "worker", "tcp://h:1", "--nthreads", "1"]
    opts = jobqueue_options(tarball)
    assert opts["python"] == "sh envpack-run -e envpack-0123abcd.tar.gz -- python"
    extra = opts["job_extra_directives"]
    assert isinstance(extra, dict)
    assert extra["transfer_input_files"] == f"{runner},{tarball}"


@pytest.mark.parametrize("mode", ["runner", "jobqueue"])
def test_a_dask_worker_inside_the_environment_runs_the_users_functions(
    tmp_path: Path,
    engine_venv: EngineVenv,
    tmp_path_factory: pytest.TempPathFactory,
    mode: str,
) -> None:
    tarball = build_engine_env(tmp_path_factory, engine_venv, "dask-worker")
    raw = run_dask(tmp_path, engine_venv, mode, tarball)
    assert raw["error"] is None, raw
    results = raw["results"]
    assert [r["value"] for r in results] == [0, 1, 4]
    digest = tarball.name.removeprefix("envpack-").removesuffix(".tar.gz")
    for r in results:
        # the runner's default node cache (a fresh /var/tmp in the namespace), not the host
        assert r["prefix"] == f"/var/tmp/envpack-{os.getuid()}/{digest}", r
        assert r["executable"].startswith(r["prefix"] + os.sep), r
        assert not [p for p in r["path"] if p.startswith((sys.base_prefix, sys.prefix))], r


DASK_ROWS = [("dask-worker", "distributed.cli.dask_worker")]


def test_without_the_table_row_the_dask_worker_does_not_start(
    tmp_path: Path, engine_venv: EngineVenv, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The engines table's dask-worker row, proven: without it, no `dask` in the env."""
    [(name, row)] = DASK_ROWS
    without = tuple(m for m in worker_imports(name) if m != row)
    tarball = build_engine_env(tmp_path_factory, engine_venv, name, imports=without)
    raw = run_dask(tmp_path, engine_venv, "runner", tarball, tasks=1)
    assert raw["results"] == [] and raw["error"], raw
    assert "exec: dask: not found" in raw["worker_log"], raw
