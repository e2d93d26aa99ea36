"""An envpack tarball run by poncho's own runners, unchanged: Debian's python_package_run
(cctools 9.9, what coffea 0.7's default wrapper and Work Queue's PythonTask call) and the current
poncho_package_run (vine_factory --poncho-env, Parsl's Work Queue pack=True)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.runtime.envs import SHELL, make_env, pack

CURRENT = "f4e3b63-py3.11"


def _runners() -> list[tuple[str, str | None]]:
    cctools = os.environ.get("ENVPACK_CCTOOLS") or str(
        Path.home() / ".cache" / "envpack-cctools" / CURRENT
    )
    poncho = Path(cctools) / "bin" / "poncho_package_run"
    return [
        ("python_package_run", shutil.which("python_package_run")),
        ("poncho_package_run", str(poncho) if poncho.is_file() else None),
    ]


RUNNERS = _runners()
SHOW = (
    'echo "prefix=$ENVPACK_PREFIX poncho=$PONCHO_PREFIX python=$(command -v python)"; cat sf.json'
)


@pytest.fixture(params=[name for name, _ in RUNNERS])
def poncho(request: pytest.FixtureRequest) -> str:
    path = dict(RUNNERS)[request.param]
    if path is None:
        pytest.skip(
            f"{request.param} not installed (apt-get install coop-computing-tools; the current "
            "one comes from scripts/cctools.sh, or set ENVPACK_CCTOOLS)"
        )
    return path


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENVPACK_", "PONCHO_"))}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("unpack_to", [False, True])
def test_poncho_runs_an_envpack_tarball(tmp_path: Path, poncho: str, unpack_to: bool) -> None:
    env = make_env(tmp_path, files={"local/sf.json": '{"k": 1}'}, links=["sf.json"])
    task = tmp_path / "task"
    task.mkdir()
    where = ["-u", str(tmp_path / "unpacked")] if unpack_to else []
    res = _run([poncho, *where, "-e", str(env.tarball), "--", "sh", "-c", SHOW], task)
    assert res.returncode == 0, res.stdout + res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("prefix="))
    prefix = line.split()[0].removeprefix("prefix=")
    assert f"poncho={prefix}" in line  # TaskVine's PythonTask runs $PONCHO_PREFIX/bin/python3
    assert f"python={prefix}/bin/python" in line
    assert '{"k": 1}' in res.stdout  # the data file the processor opens by relative path
    if unpack_to:
        assert Path(prefix) == (tmp_path / "unpacked").resolve()


def test_poncho_refuses_a_tampered_tarball(tmp_path: Path, poncho: str) -> None:
    """Its untar checks nothing; our bin/conda-unpack checks the tree against the manifest."""
    env = make_env(tmp_path, files={"lib/a.py": "a = 1\n"})
    (env.root / "lib" / "a.py").write_text("a = 2\n")
    (tmp_path / "bad").mkdir()
    bad = pack(env.root, tmp_path / "bad" / env.tarball.name)
    res = _run([poncho, "-e", str(bad), "--", "true"], tmp_path)
    assert res.returncode != 0
    assert "differs from its manifest" in res.stdout + res.stderr


def test_activate_sourced_by_bash_and_a_plain_sh(tmp_path: Path) -> None:
    env = make_env(tmp_path, files={"local/sf.json": "[]", "lib/x'y.txt": "q"}, links=["sf.json"])
    task = tmp_path / "task"
    task.mkdir()
    bash = _run(["bash", "-c", f'source "{env.root}/bin/activate" "" && {SHOW}'], task)
    assert bash.returncode == 0, bash.stderr
    assert f"prefix={env.root.resolve()}" in bash.stdout
    plain = _run(
        [SHELL, "-c", f'ENVPACK_PREFIX="{env.root}" && . "{env.root}/bin/activate" && {SHOW}'],
        task,
    )
    assert plain.returncode == 0, plain.stderr
    assert f"python={env.root.resolve()}/bin/python" in plain.stdout
