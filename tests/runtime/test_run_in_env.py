"""bin/run_in_env as TaskVine drives it: `tar xf` the package, call it bare, then prefix tasks."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from envpack.runtime import EXIT_CORRUPT
from tests.runtime.envs import SHELL, make_env


def _taskvine_unpack(tarball: Path, where: Path) -> subprocess.CompletedProcess[str]:
    """TaskVine's poncho mini task: `mkdir output && tar xf package.tar.gz -C output &&
    output/bin/run_in_env`, run with the shell from the package's directory."""
    (where / "package.tar.gz").symlink_to(tarball)
    return subprocess.run(
        [SHELL, "-c", "mkdir output && tar xf package.tar.gz -C output && output/bin/run_in_env"],
        cwd=where, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_no_arguments_only_initializes(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    res = _taskvine_unpack(env.tarball, tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    assert os.access(tmp_path / "output" / "bin" / "run_in_env", os.X_OK)


def test_initialize_refuses_an_incomplete_tree(tmp_path: Path) -> None:
    env = make_env(tmp_path, files={"lib/a.py": "a = 1\n"})
    assert _taskvine_unpack(env.tarball, tmp_path).returncode == 0
    (tmp_path / "output" / "lib" / "a.py").unlink()
    res = subprocess.run(
        ["output/bin/run_in_env"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert res.returncode == EXIT_CORRUPT
    assert "lacks 'lib/a.py', which its manifest lists" in res.stderr


def test_initialize_refuses_a_changed_file(tmp_path: Path) -> None:
    """Same size, other bytes: only the digest can tell, and the bare call checks it."""
    env = make_env(tmp_path, files={"lib/a.py": "a = 1\n"})
    assert _taskvine_unpack(env.tarball, tmp_path).returncode == 0
    (tmp_path / "output" / "lib" / "a.py").write_text("a = 2\n")
    res = subprocess.run(
        ["output/bin/run_in_env"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert res.returncode == EXIT_CORRUPT
    assert "'lib/a.py' differs from its manifest" in res.stderr


def test_runs_arguments_activated_from_anywhere(tmp_path: Path) -> None:
    env = make_env(tmp_path, files={"local/sf/a.json": "[1]"}, links=["sf/a.json"])
    assert _taskvine_unpack(env.tarball, tmp_path).returncode == 0
    sandbox = tmp_path / "task"
    sandbox.mkdir()
    (sandbox / "env").symlink_to(tmp_path / "output")  # TaskVine mounts it as __vine_env_<id>
    script = 'echo "$PATH"; echo "${PYTHONPATH-unset}"; echo "$ENVPACK_PREFIX"; cat sf/a.json'
    res = subprocess.run(
        ["env/bin/run_in_env", "sh", "-c", script + "; exit 9"],
        cwd=sandbox, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": "/outside", "PYTHONHOME": "/outside"},
    )  # fmt: skip
    assert res.returncode == 9, res.stderr
    path, pythonpath, prefix, data = res.stdout.splitlines()
    root = (tmp_path / "output").resolve()
    assert path.split(":")[0] == f"{root}/bin"
    assert pythonpath == "unset"
    assert prefix == str(root)
    assert data == "[1]"
    code = "import sys; print(sys.flags.no_user_site, '/outside' in sys.path)"
    res = subprocess.run(
        ["env/bin/run_in_env", "python", "-c", code],
        cwd=sandbox, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": "/outside"},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["1", "False"]
