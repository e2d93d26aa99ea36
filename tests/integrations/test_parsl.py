"""envpack.integrations.parsl: Parsl apps on a HighThroughputExecutor whose worker pool runs
inside the environment, and on a TaskVineExecutor with env_pack= the envpack tarball; the
workers' own Python hidden, each run in a network namespace of its own (loopback only)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from envpack.integrations.parsl import htex_launch_cmd
from tests.integrations.conftest import EngineVenv, build_engine_env, run_engine_driver
from tests.integrations.taskvine_support import PORT

DRIVER = Path(__file__).parent / "apps" / "parsl_driver.py"


def run_parsl(
    tmp_path: Path,
    venv: EngineVenv,
    scenario: str,
    tarball: Path,
    *,
    tasks: int = 3,
    timeout: float = 40,
) -> dict[str, Any]:
    here = tmp_path / f"parsl-{scenario}"
    cfg = {
        "scenario": scenario,
        "port": PORT,
        "tasks": tasks,
        "timeout": timeout,
        # for vine_driver.start_worker (the taskvine scenario)
        "vine_worker": str(venv.cctools.vine_worker),
        "workspace": str(here / "workspace"),
        "worker_log": str(here / "worker.log"),
        "worker_debug": str(here / "worker.debug"),
    }
    paths = [venv.cctools.site_packages]
    return run_engine_driver(DRIVER, here, venv, tarball, cfg, paths=paths, timeout=150)


def test_the_launch_command_keeps_parsls_placeholders_and_our_braces(tmp_path: Path) -> None:
    odd = tmp_path / "a{b}"
    odd.mkdir()
    tarball = odd / "envpack-0123.tar.gz"
    tarball.write_bytes(b"")
    (odd / "envpack-run").write_text("")
    cmd = htex_launch_cmd(tarball, launch_cmd="process_worker_pool.py {debug} -a {addresses}")
    filled = cmd.format(debug="-d", addresses="127.0.0.1")
    runner, env = shlex.quote(f"{odd}/envpack-run"), shlex.quote(str(tarball))
    assert filled == f"{runner} -e {env} -- process_worker_pool.py -d -a 127.0.0.1"


def _in_env(results: list[dict[str, Any]]) -> None:
    for r in results:
        assert r["envpack_prefix"] == r["prefix"] == r["poncho_prefix"], r
        assert r["executable"].startswith(r["prefix"] + os.sep), r
        assert not [p for p in r["path"] if p.startswith((sys.base_prefix, sys.prefix))], r


def test_htex_worker_pool_runs_inside_the_environment(
    tmp_path: Path, engine_venv: EngineVenv, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tarball = build_engine_env(tmp_path_factory, engine_venv, "parsl-htex")
    raw = run_parsl(tmp_path, engine_venv, "htex", tarball)
    assert raw["error"] is None, raw["error"] + "\n" + raw["logs"]
    assert [r["value"] for r in raw["results"]] == [0, 1, 4]
    _in_env(raw["results"])
    digest = tarball.name.removeprefix("envpack-").removesuffix(".tar.gz")
    assert {r["prefix"] for r in raw["results"]} == {f"/var/tmp/envpack-{os.getuid()}/{digest}"}


def test_taskvine_executor_with_env_pack_runs_inside_the_environment(
    tmp_path: Path, engine_venv: EngineVenv, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tarball = build_engine_env(tmp_path_factory, engine_venv, "parsl-taskvine")
    raw = run_parsl(tmp_path, engine_venv, "taskvine", tarball)
    assert raw["error"] is None, raw["error"] + "\n" + raw["logs"]
    assert [r["value"] for r in raw["results"]] == [0, 1, 4]
    _in_env(raw["results"])


# The engine table's Parsl rows, proven: (engine, row, scenario, what the run says without it)
PARSL_ROWS = [
    (
        "parsl-htex",
        "parsl.executors.high_throughput.process_worker_pool",
        "htex",
        "process_worker_pool.py: not found",
    ),
    (
        "parsl-taskvine",
        "parsl.executors.taskvine.exec_parsl_function",
        "taskvine",
        "No module named 'parsl'",
    ),
]


@pytest.mark.parametrize(
    ("name", "row", "scenario", "message"), PARSL_ROWS, ids=[r[0] for r in PARSL_ROWS]
)
def test_without_its_table_row_a_parsl_executor_fails_on_the_worker(
    tmp_path: Path,
    engine_venv: EngineVenv,
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    row: str,
    scenario: str,
    message: str,
) -> None:
    from envpack.integrations.engines import worker_imports

    without = tuple(m for m in worker_imports(name) if m != row)
    tarball = build_engine_env(tmp_path_factory, engine_venv, name, imports=without)
    raw = run_parsl(tmp_path, engine_venv, scenario, tarball, tasks=1, timeout=15)
    assert raw["results"] == [] and raw["error"], raw
    assert message in raw["error"] + raw["logs"], raw["error"] + "\n" + raw["logs"]
