"""Which interpreter the CLI targets, and the glibc floor: `build PROC.py --python`, the active
$VIRTUAL_ENV / $CONDA_PREFIX as default, `build --target-glibc`, the floor in `inspect`.

Real processes as a user runs them, a real venv (not the one running envpack) as the target.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from envpack.elf import glibc_key


@dataclass(frozen=True)
class Case:
    venv: Path
    proc: Path
    tarball: Path
    spec: dict[str, object]  # the Spec inside the tarball, from `inspect --json`


def envpack(*args: str | Path, cwd: Path, **env: str | None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    environ.update({k: v for k, v in env.items() if v is not None})
    cmd = [sys.executable, "-m", "envpack", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=environ, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    base = tmp_path_factory.mktemp("targets")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    proc = base / "proj" / "proc.py"
    proc.parent.mkdir()
    proc.write_text("import json\nimport helper\nprint(json.dumps(helper.X))\n")
    (proc.parent / "helper.py").write_text("X = [1, 2]\n")
    python = venv / "bin" / "python"
    res = envpack("build", proc, "--python", python, "-o", base / "out", "--level", "1", cwd=base)
    assert res.returncode == 0, res.stderr
    assert f"target interpreter: {python} (from --python)" in res.stderr
    tarball = Path(res.stdout.strip().splitlines()[-1])
    shown = envpack("inspect", "--json", tarball, cwd=base)
    assert shown.returncode == 0, shown.stderr
    return Case(venv, proc, tarball, json.loads(shown.stdout)["spec"])


def test_build_proc_with_python_targets_that_venv(case: Case) -> None:
    interp = case.spec["interpreter"]
    assert isinstance(interp, dict)
    assert interp["prefix"] == str(case.venv) != sys.prefix
    assert {f["arcname"] for f in case.spec["local"]} == {"proc.py", "helper.py"}  # type: ignore[attr-defined]


def test_the_active_virtual_env_is_the_default_target(case: Case, tmp_path: Path) -> None:
    res = envpack("build", case.proc, "-o", tmp_path, "--level", "1", cwd=tmp_path,
                  VIRTUAL_ENV=str(case.venv))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert f"target interpreter: {case.venv}/bin/python3 (the active $VIRTUAL_ENV)" in res.stderr
    built = Path(res.stdout.strip().splitlines()[-1])
    shown = envpack("inspect", "--json", built, cwd=tmp_path)
    assert json.loads(shown.stdout)["spec"]["interpreter"]["prefix"] == str(case.venv)
    assert built.name == case.tarball.name  # the same files as the --python build


def test_the_active_conda_prefix_is_the_default_for_analyze(case: Case, tmp_path: Path) -> None:
    # Any prefix with bin/python stands in for a conda env here: the choice is what is tested.
    res = envpack("analyze", case.proc, "-o", tmp_path / "s.json", cwd=tmp_path,
                  CONDA_PREFIX=str(case.venv))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "(the active $CONDA_PREFIX)" in res.stderr
    spec = json.loads((tmp_path / "s.json").read_text())
    assert spec["interpreter"]["prefix"] == str(case.venv)


def test_envpacks_own_interpreter_when_nothing_is_active(case: Case, tmp_path: Path) -> None:
    res = envpack("analyze", case.proc, "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"target interpreter: {sys.executable} (envpack's own" in res.stderr
    assert json.loads(res.stdout)["interpreter"]["prefix"] == sys.prefix


def test_an_active_env_without_python_is_a_usage_error(case: Case, tmp_path: Path) -> None:
    res = envpack("build", case.proc, cwd=tmp_path, VIRTUAL_ENV=str(tmp_path))
    assert res.returncode == 2
    assert f"$VIRTUAL_ENV is {tmp_path}, which holds no bin/python" in res.stderr


def test_python_with_a_spec_file_is_a_usage_error(case: Case, tmp_path: Path) -> None:
    spec = tmp_path / "envpack.json"
    spec.write_text(json.dumps(case.spec))
    res = envpack("build", spec, "--python", case.venv, cwd=tmp_path)
    assert res.returncode == 2
    assert "--python applies to processor files" in res.stderr


# -- the glibc floor ---------------------------------------------------------------------------


def test_inspect_shows_the_glibc_floor(case: Case, tmp_path: Path) -> None:
    floor = case.spec["glibc"]
    assert isinstance(floor, str) and glibc_key(floor) >= (2, 17)
    res = envpack("inspect", case.tarball, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"glibc floor {floor}" in res.stdout


def test_target_glibc_refuses_and_names_the_culprits(case: Case, tmp_path: Path) -> None:
    floor = case.spec["glibc"]
    assert isinstance(floor, str)
    res = envpack("build", case.proc, "--python", case.venv / "bin" / "python", "-o", tmp_path,
                  "--target-glibc", "2.17", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 1, res.stdout
    assert f"needs glibc {floor}, newer than --target-glibc 2.17" in res.stderr
    interp = case.spec["interpreter"]
    assert isinstance(interp, dict)
    py = "python" + ".".join(interp["version"].split(".")[:2])
    lines = [line.strip() for line in res.stderr.splitlines()]
    assert any(line.startswith(f"bin/{py}: GLIBC_") for line in lines), res.stderr
    assert any(f"GLIBC_{floor}" in line for line in lines)
    assert not list(tmp_path.glob("envpack-*.tar.gz"))
    # (That a floor at or above every need builds: tests/test_build.py, through the library.)


def test_target_glibc_must_be_a_version(case: Case, tmp_path: Path) -> None:
    res = envpack("build", case.proc, "--target-glibc", "2.x", cwd=tmp_path)
    assert res.returncode == 2
    assert "'2.x' is not a glibc version" in res.stderr
