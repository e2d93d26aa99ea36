"""envpack.integrations.workqueue against a real manager and real `work_queue_worker`s."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from envpack.errors import UsageError
from envpack.integrations.workqueue import RUNNER_NAME, runner_command, wrap
from tests.integrations.conftest import (
    BuiltEnv,
    Manager,
    Node,
    can_hide,
    default_cache_problems,
    unpack_count,
)

pytestmark = pytest.mark.workqueue

APP = "python -m sixapp"


def _report(task: Any) -> dict[str, Any]:
    """The JSON line sixapp printed (the runner's -d lines are on the same output)."""
    lines = [ln for ln in (task.output or "").splitlines() if ln.startswith("{")]
    assert lines, f"task {task.id} printed no report: {task.output!r}"
    report: dict[str, Any] = json.loads(lines[-1])
    return report


def _ok(task: Any) -> bool:
    return bool(task.result == 0 and task.return_status == 0)


def _hide_list(envs: dict[str, BuiltEnv]) -> list[Path]:
    """What the worker must not see: our interpreter's install, this venv, the apps' venvs,
    and Debian's own Python libraries."""
    base = Path(sys.base_prefix)
    parts = base.parts
    # a pyenv install: hide the whole pyenv root (/root/.pyenv), not just this version
    pyenv = Path(*parts[: parts.index("versions")]) if "versions" in parts else base
    hide = {pyenv, Path(sys.prefix), *(e.venv for e in envs.values())}
    hide |= {p for p in Path("/usr/lib").glob("python3*") if p.is_dir()}
    # nested paths: mounting over the outer one hides the inner one already
    return sorted(p for p in hide if not any(q != p and q in p.parents for q in hide))


def test_task_runs_inside_its_env_with_the_workers_python_hidden(
    manager: Manager, node: Node, six_envs: dict[str, BuiltEnv], tmp_path: Path
) -> None:
    reason = can_hide(tmp_path)
    if reason:
        pytest.skip(reason)
    hidden = _hide_list(six_envs)
    node.start_worker(manager.port, hide=hidden)
    env = six_envs["1.17.0"]
    probe = manager.task(
        " ; ".join(f'[ -n "$(ls -A {p})" ] && echo VISIBLE {p}' for p in hidden) + " ; echo probed"
    )
    probe_python = manager.task("command -v python3 python || echo no-python-on-worker")
    task = wrap(manager.task(APP), env.tarball)
    done = {t.id: t for t in manager.run([probe, probe_python, task])}

    # The worker really cannot see our interpreter, the venvs or Debian's Python libraries.
    assert "VISIBLE" not in done[probe.id].output, done[probe.id].output
    assert _ok(done[task.id]), done[task.id].output
    report = _report(done[task.id])
    assert report["six"] == "1.17.0"
    cache = str(node.cache) + os.sep
    for key in ("executable", "prefix", "base_prefix", "six_file", "helper"):
        assert str(report[key]).startswith(cache), (key, report[key])
    assert all(not p.startswith(str(Path(sys.base_prefix))) for p in report["path"])


def test_fifty_tasks_on_one_worker_unpack_once(
    manager: Manager, node: Node, six_envs: dict[str, BuiltEnv]
) -> None:
    worker = node.start_worker(manager.port, cores=2)
    env = six_envs["1.16.0"]
    tasks = [wrap(manager.task(APP), env.tarball, debug=True) for _ in range(50)]
    done = manager.run(tasks, timeout=300)
    assert all(_ok(t) for t in done), [t.output for t in done if not _ok(t)][:2]
    assert {_report(t)["six"] for t in done} == {"1.16.0"}
    assert {t.hostname for t in done} == {done[0].hostname}
    assert sum(unpack_count(t.output) for t in done) == 1
    assert worker.alive()


def test_two_versions_of_a_library_side_by_side_on_one_worker(
    manager: Manager, node: Node, six_envs: dict[str, BuiltEnv], tmp_path: Path
) -> None:
    node.start_worker(manager.port, cores=2)
    rendezvous = tmp_path / "rendezvous"
    rendezvous.mkdir()
    tasks = {
        version: wrap(manager.task(f"{APP} --barrier {rendezvous}"), env.tarball)
        for version, env in six_envs.items()
    }
    done = {t.id: t for t in manager.run(list(tasks.values()))}
    for version, task in tasks.items():
        t = done[task.id]
        assert _ok(t), t.output
        report = _report(t)
        # each saw its own six, and the other application's task was running at the same time
        assert report["six"] == version
        assert report["met_other"] is True
    assert len({t.hostname for t in done.values()}) == 1


def test_a_second_manager_run_reuses_the_node_cache(
    wq: ModuleType, node: Node, six_envs: dict[str, BuiltEnv]
) -> None:
    env = six_envs["1.16.0"]
    first = Manager(wq)
    node.start_worker(first.port)
    run1 = first.run([wrap(first.task(APP), env.tarball, debug=True) for _ in range(3)])
    assert all(_ok(t) for t in run1)
    assert sum(unpack_count(t.output) for t in run1) == 1
    first.close()  # the worker wipes its workspace, cached inputs included

    # A new manager run on the same node: a new worker process, same node cache.
    second = Manager(wq)
    try:
        node.start_worker(second.port)
        run2 = second.run([wrap(second.task(APP), env.tarball, debug=True) for _ in range(3)])
    finally:
        second.close()
    assert all(_ok(t) for t in run2), [t.output for t in run2]
    assert sum(unpack_count(t.output) for t in run2) == 0
    assert {_report(t)["six"] for t in run2} == {"1.16.0"}


PER_MANAGER = 8


def test_with_the_runners_defaults_two_managers_on_a_fresh_node_unpack_once(
    wq: ModuleType, fresh_node: Node, six_envs: dict[str, BuiltEnv]
) -> None:
    """Issue 7: nothing set but what a user sets (wrap() and a worker), N tasks under one
    manager, then N more under a second one, unpack the environment once for the node, into
    the runner's default cache outside every task sandbox.

    No ENVPACK_CACHE anywhere: the default is under test. The node is made fresh by an empty
    tmpfs over /var/tmp in the worker's private mount namespace (`fresh_node`): that is the
    node, not a setting envpack reads. One worker serves both managers (it reconnects to the
    same port), so both runs see the same /var/tmp.
    """
    env = six_envs["1.16.0"]
    first = Manager(wq)
    port = first.port
    try:
        worker = fresh_node.start_worker(port, cores=2)
        (probe,) = first.run([first.task("ls -A /var/tmp; echo probed")])
        assert probe.output.splitlines() == ["probed"], probe.output  # the node is fresh
        tasks = [wrap(first.task(APP), env.tarball, debug=True) for _ in range(PER_MANAGER)]
        run1 = first.run(tasks)
    finally:
        first.close()  # the worker wipes its workspace and reconnects to the port
    second = Manager(wq, port=port)
    try:
        tasks = [wrap(second.task(APP), env.tarball, debug=True) for _ in range(PER_MANAGER)]
        run2 = second.run(tasks)
    finally:
        second.close()
    done = [*run1, *run2]
    assert all(_ok(t) for t in done), [t.output for t in done if not _ok(t)][:2]
    assert len(fresh_node.workers) == 1  # both managers' tasks ran on that one worker
    reports = [_report(t) for t in done]
    assert {r["six"] for r in reports} == {"1.16.0"}
    problems = default_cache_problems(
        reports, [t.output for t in done], workdir=worker.workdir, env_hash=env.hash
    )
    assert not problems, "\n".join(problems)
    assert worker.alive()


def test_a_corrupt_tarball_fails_its_tasks_and_the_worker_serves_on(
    manager: Manager, node: Node, six_envs: dict[str, BuiltEnv], tmp_path: Path
) -> None:
    good = six_envs["1.16.0"]
    data = good.tarball.read_bytes()
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad_hash = "0" * len(good.hash)
    truncated = bad_dir / f"envpack-{bad_hash}.tar.gz"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = bad_dir / f"envpack-{'1' * len(good.hash)}.tar.gz"
    garbage.write_bytes(b"this is not a tarball\n" * 100)
    shutil.copy(good.tarball.parent / RUNNER_NAME, bad_dir / RUNNER_NAME)

    for path in (truncated, garbage):  # the manager reads the layer index: refused up front
        with pytest.raises(UsageError, match=r"truncated|not a readable envpack tarball"):
            wrap(manager.task(APP), path)
    worker = node.start_worker(manager.port)
    # Sent as single files, as a tarball damaged in transit or on the worker's disk would be.
    bad = [
        wrap(manager.task(APP), p, debug=True, layers=False)
        for p in (truncated, garbage, truncated)
    ]
    fine = [wrap(manager.task(APP), good.tarball) for _ in range(3)]
    done = {t.id: t for t in manager.run([*bad, *fine])}
    for t in bad:
        out = done[t.id].output
        assert done[t.id].return_status != 0, out
        assert "envpack-run:" in out and "Traceback" not in out, out
    for t in fine:
        assert _ok(done[t.id]), done[t.id].output
        assert _report(done[t.id])["six"] == "1.16.0"
    assert worker.alive()
    assert not any(bad_hash in p.name and p.is_dir() for p in node.cache.iterdir())
    assert not any("1" * len(good.hash) in p.name and p.is_dir() for p in node.cache.iterdir())


def test_a_command_with_shell_operators_runs_whole_inside_the_env(
    manager: Manager, node: Node, six_envs: dict[str, BuiltEnv]
) -> None:
    node.start_worker(manager.port)
    env = six_envs["1.17.0"]
    cmd = f"{APP} > first.json && python -c 'import six; print(six.__version__)'; cat first.json"
    task = wrap(manager.task(cmd), env.tarball)
    (t,) = manager.run([task])
    assert _ok(t), t.output
    assert t.output.splitlines()[0] == "1.17.0"
    assert _report(t)["six"] == "1.17.0"


def test_runner_command_shapes() -> None:
    assert runner_command("envpack-ab.tar.gz", "python x.py > o 2>&1") == (
        "./envpack-run -e envpack-ab.tar.gz -- python x.py > o 2>&1"
    )
    assert runner_command("e.tar.gz", "a; b", debug=True) == (
        "./envpack-run -d -e e.tar.gz -- sh -c 'a; b'"
    )


def test_wrap_refuses_bad_inputs(wq: ModuleType, tmp_path: Path) -> None:
    tarball = tmp_path / "envpack-x.tar.gz"
    with pytest.raises(UsageError, match="no environment tarball"):
        wrap(wq.Task("true"), tarball)
    tarball.write_bytes(b"x")
    with pytest.raises(UsageError, match="no runner"):
        wrap(wq.Task("true"), tarball, runner=tmp_path / "missing-runner")
    runner = tmp_path / RUNNER_NAME
    runner.write_text("#!/bin/sh\n")
    with pytest.raises(UsageError, match="no command"):
        wrap(wq.Task(""), tarball)
    with pytest.raises(UsageError, match="not a Work Queue task"):
        wrap(type("NotATask", (), {"command": "true"})(), tarball)
    with pytest.raises(UsageError, match="not a readable envpack tarball"):
        wrap(wq.Task("echo hi"), tarball)  # the layers are read on the manager
    task = wrap(wq.Task("echo hi"), tarball, layers=False)  # the runner beside it is used
    assert task.command == "./envpack-run -e envpack-x.tar.gz -- echo hi"


def test_a_second_env_of_the_same_manager_is_sent_only_the_layers_it_does_not_share(
    manager: Manager, node: Node, six_envs: dict[str, BuiltEnv]
) -> None:
    """wrap()'s default sends each layer as a cached input named after its content: the env
    with six 1.17.0 shares every layer but six's with the one with 1.16.0, so the worker is sent
    only that layer and the new head, and the node unpacks only that layer."""
    from envpack.split import split

    node.start_worker(manager.port)
    a, b = six_envs["1.16.0"], six_envs["1.17.0"]
    first = manager.run([wrap(manager.task(APP), a.tarball, debug=True)])
    sent_a = manager.queue.stats.bytes_sent  # .stats is a snapshot: read it anew each time
    second = manager.run([wrap(manager.task(APP), b.tarball, debug=True)])
    sent_b = manager.queue.stats.bytes_sent - sent_a
    assert all(_ok(t) for t in first + second), [t.output for t in first + second]
    assert _report(second[0])["six"] == "1.17.0"
    parts_a, parts_b = split(a.tarball), split(b.tarball)
    assert parts_a is not None and parts_b is not None
    names_a = {p.name for p in parts_a.files}
    own = [p for p in parts_b.files if p.name not in names_a]
    assert len(own) == 2  # the head and six's layer
    own_bytes = sum(p.stat().st_size for p in own)
    assert own_bytes <= sent_b < own_bytes + 64 * 1024, (sent_b, own_bytes)  # + protocol
    assert sent_a > 10 * sent_b
    log_b = second[0].output
    assert unpack_count(log_b) == 1
    assert len(re.findall(r"envpack-run: layer [0-9a-f]{16} unpacked", log_b)) == 1
    present = set(re.findall(r"envpack-run: layer ([0-9a-f]{16}) present", log_b))
    assert len(present) == len(parts_b.layers) - 1  # every other layer, from the first env
