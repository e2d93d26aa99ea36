"""envpack environments on a real TaskVine (vine_worker, ndcctools.taskvine), with the runner's
default node cache: nothing here sets ENVPACK_CACHE.

Each test runs one vine_worker that serves two managers in turn on one port (a manager run ends,
the next begins on the same node), inside a network namespace of its own (a TaskVine manager
listens on all interfaces) whose /var/tmp is a private, empty tmpfs: a node that has never run
this environment, made without setting anything envpack reads. The worker's tasks cannot see
the manager's Python (this venv, its base interpreter, the apps' venvs, Debian's Python
libraries), hidden as in test_workqueue. See taskvine_support.py and apps/vine_driver.py.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integrations.conftest import (
    BuiltEnv,
    EngineVenv,
    build_engine_env,
    can_hide,
    engine_hide_list,
    unpack_count,
)
from tests.integrations.taskvine_support import TaskVine, VineRun, VineTask
from tests.integrations.test_workqueue import _hide_list

pytestmark = pytest.mark.taskvine

N = 6  # tasks per manager: 2 cores, so three rounds of concurrent tasks per manager


def _hidden(six_envs: dict[str, BuiltEnv], tmp_path: Path) -> list[Path]:
    reason = can_hide(tmp_path)
    if reason:
        pytest.skip(reason)
    return _hide_list(six_envs)


def _all_ok(run: VineRun, managers: int = 2) -> list[VineTask]:
    """Every task of every manager ran and succeeded; returns them all."""
    assert [len(m) for m in run.managers] == [N] * managers, run.worker_log[-2000:]
    bad = [t for t in run.tasks if not t.ok]
    assert not bad, [(t.id, t.result, t.exit_code, t.output[-1500:]) for t in bad[:2]]
    assert run.worker_alive, run.worker_log[-2000:]
    return run.tasks


def _check_reports(tasks: list[VineTask]) -> None:
    """Each task ran in its own sandbox (its cwd, TaskVine's task.<id>) with its own TMPDIR
    inside it; the environment each one ran in lies outside every one of them."""
    reports = [t.report for t in tasks]
    sandboxes = {r["cwd"] for r in reports}
    for r in reports:
        # TaskVine sets TMPDIR per task, inside the sandbox (vine_process.c): why the runner's
        # default cache never follows TMPDIR.
        assert r["tmpdir"].startswith(r["cwd"] + os.sep), r
        inside = [s for s in sandboxes if (r["prefix"] + os.sep).startswith(s + os.sep)]
        assert not inside, f"environment {r['prefix']} lies inside the task sandbox {inside[0]}"
        assert r["envpack_prefix"] == r["prefix"], r
        assert r["executable"].startswith(r["prefix"] + os.sep), r
        assert r["six"] == "1.16.0"
        # the worker's tasks never saw the manager's interpreter
        own = (sys.base_prefix, sys.prefix)
        assert not [p for p in r["path"] if p.startswith(own)], r["path"]


def test_plain_tasks_under_two_managers_unpack_once_into_the_default_cache(
    taskvine: TaskVine, six_envs: dict[str, BuiltEnv], tmp_path: Path
) -> None:
    """Tarball and runner as worker-cached plain files, `sh envpack-run -d -e ENV -- CMD`: one
    unpack for the node, in the default cache outside the worker's workspace, for both runs."""
    env = six_envs["1.16.0"]
    run = taskvine.run(
        "file", env.tarball, cache="worker", tasks=N, managers=2, hide=_hidden(six_envs, tmp_path)
    )
    tasks = _all_ok(run)
    prefixes = sorted({t.report["prefix"] for t in tasks})
    unpacks = sum(unpack_count(t.output) for t in tasks)
    assert unpacks == 1, f"{unpacks} unpacks for {len(tasks)} tasks, into {prefixes}"
    _check_reports(tasks)
    workspace = str(run.workspace) + os.sep
    assert not [p for p in prefixes if (p + os.sep).startswith(workspace)], prefixes
    # The runner's default, the first usable of /var/tmp/envpack-<uid> and /tmp/envpack-<uid>:
    # this run's /var/tmp is an empty tmpfs of its own (taskvine_support), so the node is fresh
    # and its one unpack above is this test's, without setting ENVPACK_CACHE.
    assert prefixes == [f"/var/tmp/envpack-{os.getuid()}/{env.hash}"]


# TaskVine unpacks a poncho package itself, once per worker and cache entry: a mini task runs
# `mkdir output && tar xf package.tar.gz -C output && output/bin/run_in_env` (vine_file.c,
# vine_file_poncho) in a sandbox of its own, and the worker moves `output` into its cache
# (workspace/cache/task-md5-<digest>); each task gets a symlink __vine_env_<name> to it in its
# sandbox and runs as `__vine_env_<name>/bin/run_in_env CMD` (vine_task_add_execution_context).
# How long that unpacked tree lives is the cache level's business, not envpack's: when the
# worker connects to a new manager it re-reads its cache and deletes every entry below
# "forever" (vine_cache_load in vine_cache.c, f4e3b63), so a "worker"-level package is unpacked
# again for each manager (same path, a new inode), and a "forever" one once per worker.
@pytest.mark.parametrize(
    ("cache", "unpacks"),
    [
        pytest.param("worker", 2, id="worker-once-per-manager"),
        pytest.param("forever", 1, id="forever"),
    ],
)
def test_poncho_package_runs_through_run_in_env_outside_every_sandbox(
    taskvine: TaskVine,
    six_envs: dict[str, BuiltEnv],
    tmp_path: Path,
    cache: str,
    unpacks: int,
) -> None:
    """`declare_poncho` + `add_environment`: TaskVine calls the env's bin/run_in_env."""
    env = six_envs["1.16.0"]
    run = taskvine.run(
        "poncho", env.tarball, cache=cache, tasks=N, managers=2, hide=_hidden(six_envs, tmp_path)
    )
    tasks = _all_ok(run)
    assert all("/bin/run_in_env python -m sixapp" in t.command for t in tasks)
    _check_reports(tasks)
    per_manager = [
        {(t.report["prefix"], t.report["prefix_inode"]) for t in m} for m in run.managers
    ]
    assert [len(dirs) for dirs in per_manager] == [1, 1], per_manager
    distinct = set().union(*per_manager)
    assert len(distinct) == unpacks, (distinct, run.cache_events)
    # run_in_env activates the tree in place: nothing for envpack-run to unpack.
    assert sum(unpack_count(t.output) for t in tasks) == 0
    # the poncho name for the same prefix, which poncho-aware code reads
    assert {t.report["poncho_prefix"] for t in tasks} == {t.report["prefix"] for t in tasks}


# --- envpack.integrations.taskvine: what a user's manager program does ---------------------

ENGINE_DRIVER = Path(__file__).parent / "apps" / "engine_driver.py"
APPS_DIR = Path(__file__).parent / "apps"


def run_engine(
    taskvine: TaskVine,
    venv: EngineVenv,
    scenario: str,
    tarball: Path,
    *,
    tasks: int = 4,
    timeout: float = 60,
) -> tuple[dict[str, Any], str]:
    """One run of apps/engine_driver.py: ``scenario`` on ``tarball``, the worker's Python hidden."""
    repo = Path(__file__).resolve().parents[2]
    return taskvine.run_app(
        ENGINE_DRIVER,
        {"scenario": scenario, "tarball": str(tarball), "tasks": tasks},
        hide=engine_hide_list(venv),
        pythonpath=[repo, APPS_DIR],
        timeout=timeout,
    )


def _in_env(report: dict[str, Any]) -> None:
    """The function ran on the env's own Python, outside its task's sandbox, and none of the
    manager's Python was on its path."""
    prefix = report["prefix"]
    assert report["envpack_prefix"] == prefix == report["poncho_prefix"], report
    assert report["executable"].startswith(prefix + os.sep), report
    assert not (prefix + os.sep).startswith(report["cwd"] + os.sep), report
    own = (sys.base_prefix, sys.prefix)
    assert not [p for p in report["path"] if p.startswith(own)], report["path"]


def test_python_tasks_run_inside_the_declared_environment(
    taskvine: TaskVine, engine_venv: EngineVenv, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`declare` + `python_task`: a PythonTask of a module's function, nothing hand-written."""
    tarball = build_engine_env(tmp_path_factory, engine_venv, "taskvine-python-task")
    raw, log = run_engine(taskvine, engine_venv, "python-task", tarball)
    tasks = raw["tasks"]
    assert len(tasks) == 4 and all(t["ok"] for t in tasks), (tasks[:1], log[-2000:])
    assert sorted(t["output"]["value"] for t in tasks) == [0, 1, 4, 9]
    for t in tasks:
        _in_env(t["output"])
    # one unpacked tree for all the tasks: the worker's, from declare_poncho
    assert len({t["output"]["prefix"] for t in tasks}) == 1


def test_a_library_from_functions_serves_function_calls_inside_the_environment(
    taskvine: TaskVine, engine_venv: EngineVenv, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tarball = build_engine_env(tmp_path_factory, engine_venv, "taskvine-library")
    raw, log = run_engine(taskvine, engine_venv, "library", tarball)
    tasks = raw["tasks"]
    assert len(tasks) == 4 and all(t["ok"] for t in tasks), (tasks[:1], log[-2000:])
    assert sorted(t["output"]["value"] for t in tasks) == [0, 1, 4, 9]
    for t in tasks:
        _in_env(t["output"])


@pytest.mark.parametrize("scenario", ["task", "runner-task"])
def test_plain_tasks_through_run_in_env_or_the_runner(
    taskvine: TaskVine,
    engine_venv: EngineVenv,
    tmp_path_factory: pytest.TempPathFactory,
    scenario: str,
) -> None:
    tarball = build_engine_env(tmp_path_factory, engine_venv, "taskvine-python-task")
    raw, log = run_engine(taskvine, engine_venv, scenario, tarball, tasks=2)
    tasks = raw["tasks"]
    assert len(tasks) == 2 and all(t["ok"] for t in tasks), (tasks[:1], log[-2000:])
    reports = [json.loads(t["output"].strip().splitlines()[-1]) for t in tasks]
    for r in reports:
        _in_env(r)
    if scenario == "runner-task":  # the runner's node cache, its default (a fresh /var/tmp)
        digest = tarball.name.removeprefix("envpack-").removesuffix(".tar.gz")
        assert {r["prefix"] for r in reports} == {f"/var/tmp/envpack-{os.getuid()}/{digest}"}
        assert sum(unpack_count(t["std"]) for t in tasks) == 1


def test_a_dask_graph_runs_through_daskvine_inside_the_environment(
    taskvine: TaskVine, engine_venv: EngineVenv, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`dask.compute(..., scheduler=m.get, **dask_options(env_file))`: every vertex a
    PythonTask in the env (dask pinned in [test] to a version DaskVine accepts)."""
    tarball = build_engine_env(tmp_path_factory, engine_venv, "daskvine")
    raw, log = run_engine(taskvine, engine_venv, "daskvine", tarball)
    assert raw["dask"]["ok"], (raw["dask"], log[-3000:])
    assert raw["dask"]["total"] == 0 + 1 + 4 + 9
    _in_env(raw["dask"]["where"])


LAYERS_DRIVER = APPS_DIR / "layers_driver.py"


def test_a_second_application_under_a_new_manager_is_sent_only_its_own_layers(
    taskvine: TaskVine, six_envs: dict[str, BuiltEnv], tmp_path: Path
) -> None:
    """runner_task declares each layer at cache="forever": a worker keeps them across managers,
    so the app with six 1.17.0, under a manager of its own after the one with 1.16.0, is sent
    only its head and six's layer, and the node unpacks only that layer."""
    from envpack.split import split

    a, b = six_envs["1.16.0"], six_envs["1.17.0"]
    repo = Path(__file__).resolve().parents[2]
    raw, log = taskvine.run_app(
        LAYERS_DRIVER,
        {"tarballs": [str(a.tarball), str(b.tarball)]},
        hide=_hidden(six_envs, tmp_path),
        pythonpath=[repo, APPS_DIR],
    )
    first, second = raw["runs"]
    assert first["ok"] and second["ok"], (first["output"], second["output"], log[-2000:])
    assert '"six": "1.17.0"' in second["output"]
    parts_a, parts_b = split(a.tarball), split(b.tarball)
    assert parts_a is not None and parts_b is not None
    names_a = {p.name for p in parts_a.files}
    own = sum(p.stat().st_size for p in parts_b.files if p.name not in names_a)
    assert own <= second["bytes_sent"] < own + 64 * 1024, (second["bytes_sent"], own)
    assert first["bytes_sent"] > 10 * second["bytes_sent"]
    assert len(re.findall(r"envpack-run: layer [0-9a-f]{16} unpacked", second["output"])) == 1
