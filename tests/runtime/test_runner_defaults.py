"""envpack-run with no ENVPACK_CACHE at all, as users run it: where the node cache is, and what
makes the runner refuse it.

Each test runs in a private mount namespace with an empty tmpfs over /var/tmp: that is a fresh
node (no earlier test's entries, nothing of the real /var/tmp touched), not a setting envpack
reads. The runner itself is run exactly as a task would run it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from envpack.runtime import EXIT_CANT_WRITE
from tests.runtime.envs import RUNNER, SHELL, make_env
from tests.runtime.test_runner import UNSHARE, _can_mount_tmpfs

UID = os.getuid()
DEFAULT = f"/var/tmp/envpack-{UID}"


@pytest.fixture(autouse=True)
def _fresh_node_possible() -> None:
    reason = _can_mount_tmpfs()
    if reason:
        pytest.skip(reason)


def _on_fresh_node(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` under sh with an empty /var/tmp, ENVPACK_CACHE unset."""
    environ = {k: v for k, v in os.environ.items() if k != "ENVPACK_CACHE"}
    environ.update(env)
    full = f"mount -t tmpfs -o mode=1777 fresh-node /var/tmp && {script}"
    return subprocess.run(
        [*UNSHARE, "sh", "-c", full], env=environ, capture_output=True, text=True, timeout=120
    )


def _runner(*args: str) -> str:
    return " ".join([SHELL, RUNNER, *map(shlex.quote, args)])


def test_default_cache_is_node_local_never_the_task_tmpdir(tmp_path: Path) -> None:
    """Work Queue and TaskVine give every task its own TMPDIR inside the task sandbox; the
    cache must outlive the task, so TMPDIR is never the default."""
    env = make_env(tmp_path)
    sandbox = tmp_path / "worker" / "t.5" / "cctools-temp-t.5.XXXX"
    sandbox.mkdir(parents=True)
    task = _runner("-d", "-e", str(env.tarball), "sh", "-c", 'echo "prefix=$ENVPACK_PREFIX"')
    script = (
        f"{task} && {task} && {_runner('--cache-dir')} && "
        f"stat -c 'mode=%a' {DEFAULT} && ls {DEFAULT}"
    )
    res = _on_fresh_node(script, TMPDIR=str(sandbox))
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert out.count(f"prefix={DEFAULT}/{env.hash}") == 2
    assert f"{DEFAULT}\n" in res.stdout  # --cache-dir says so
    assert "mode=700" in out
    assert res.stderr.count("envpack-run: unpacked ") == 1  # once for both tasks
    assert f"cache {DEFAULT} (default: the first writable of /var/tmp, /tmp)" in res.stderr
    assert list(sandbox.iterdir()) == []


def test_default_cache_outlives_the_task(tmp_path: Path) -> None:
    """Two separate 'nodes visits': the second run on the same node finds the entry."""
    env = make_env(tmp_path)
    task = _runner("-d", "-e", str(env.tarball), "true")
    res = _on_fresh_node(f"{task} && (cd / && {task})", TMPDIR=str(tmp_path / "t1"))
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("envpack-run: unpacked ") == 1
    assert res.stderr.count(f"envpack-run: cached {env.hash}") == 1


def test_a_symlink_planted_at_the_default_path_is_refused(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    trap = tmp_path / "attacker"
    trap.mkdir(mode=0o700)
    script = f"ln -s {trap} {DEFAULT} && {_runner('-e', str(env.tarball), 'true')}"
    res = _on_fresh_node(script)
    assert res.returncode == EXIT_CANT_WRITE, res.stderr
    assert "is a symlink; refusing it" in res.stderr
    assert list(trap.iterdir()) == []


def test_a_default_dir_writable_by_others_is_refused_and_its_python_never_runs(
    tmp_path: Path,
) -> None:
    env = make_env(tmp_path)
    marker = tmp_path / "pwned"
    plant = (
        f"mkdir -p {DEFAULT}/{env.hash}/bin && "
        f"printf '#!/bin/sh\\ntouch {marker}\\n' > {DEFAULT}/{env.hash}/bin/python && "
        f"chmod 755 {DEFAULT}/{env.hash}/bin/python && chmod 777 {DEFAULT}"
    )
    res = _on_fresh_node(f"{plant} && {_runner('-e', str(env.tarball), 'python')}")
    assert res.returncode == EXIT_CANT_WRITE, res.stderr
    assert "writable by others" in res.stderr
    assert not marker.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory another user's needs root")
def test_a_default_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    script = (
        f"mkdir -m 700 {DEFAULT} && chown 65534:65534 {DEFAULT} && "
        f"{_runner('-e', str(env.tarball), 'true')}"
    )
    res = _on_fresh_node(script)
    assert res.returncode == EXIT_CANT_WRITE, res.stderr
    assert "belongs to uid 65534" in res.stderr


def test_a_cache_swapped_for_a_symlink_while_the_task_waits_is_refused(tmp_path: Path) -> None:
    """The task waits for the lock (an unpack is in progress); meanwhile the default path is
    renamed away and replaced by a symlink to a directory holding a planted entry."""
    env = make_env(tmp_path)
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil"
    (evil / env.hash / "bin").mkdir(parents=True)
    (evil / env.hash / "bin" / "python").write_text(f"#!/bin/sh\ntouch {marker}\n")
    (evil / env.hash / "bin" / "python").chmod(0o755)
    evil.chmod(0o700)
    lock = f"{DEFAULT}/{env.hash}.lock"
    script = (
        f"mkdir -m 700 {DEFAULT} && mkdir -m 700 {DEFAULT}/{env.hash} && "
        f"(flock -x {lock} sleep 2 &) && sleep 0.3 && "
        f"({_runner('-e', str(env.tarball), 'python')}; echo rc=$? > {tmp_path}/rc) & "
        f"sleep 1 && mv {DEFAULT} /var/tmp/moved && ln -s {evil} {DEFAULT} && wait; "
        f"sleep 2; cat {tmp_path}/rc"
    )
    res = _on_fresh_node(script)
    assert f"rc={EXIT_CANT_WRITE}" in res.stdout, (res.stdout, res.stderr)
    assert "refusing it" in res.stderr
    assert not marker.exists()
