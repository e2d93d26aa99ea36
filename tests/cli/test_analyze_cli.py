"""`envpack analyze` as a user runs it: exit codes, files written, explanations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest

from tests.conftest import FixtureVenv


def run(*args: str | os.PathLike[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # A real process, as a user runs it: exit codes and stdout/stderr separation are the contract.
    cmd = [sys.executable, "-m", "envpack", "analyze", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    path = tmp_path / "proc.py"
    path.write_text("import fxcore\nimport fxns.a\n")
    return path


def test_writes_spec_and_summary(fixture_venv: FixtureVenv, proc: Path) -> None:
    res = run(proc, "--python", fixture_venv.python, cwd=proc.parent)
    assert res.returncode == 0, res.stderr
    assert "PyYAML" in res.stdout
    assert "Lazy imports not shipped" in res.stdout
    spec = json.loads((proc.parent / "envpack.json").read_text())
    assert spec["schema"] == 1


def test_json_to_stdout_validates_and_is_stable(fixture_venv: FixtureVenv, proc: Path) -> None:
    first = run(proc, "--json", "--python", fixture_venv.python, cwd=proc.parent)
    second = run(proc, "--json", "--python", fixture_venv.python, cwd=proc.parent)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    schema = json.loads(files("envpack").joinpath("spec.schema.json").read_text())
    jsonschema.validate(json.loads(first.stdout), schema)
    assert not (proc.parent / "envpack.json").exists()


def test_python_accepts_a_venv_directory(fixture_venv: FixtureVenv, proc: Path) -> None:
    res = run(proc, "--json", "--python", fixture_venv.root, cwd=proc.parent)
    assert res.returncode == 0, res.stderr
    assert "fx-core" in res.stdout


def test_why_explains_in_and_out(fixture_venv: FixtureVenv, proc: Path) -> None:
    res = run(proc, "--why", "PyYAML", "--python", fixture_venv.python, cwd=proc.parent)
    assert "proc -> fxcore -> yaml" in res.stdout
    res = run(proc, "--why", "fx-winonly", "--python", fixture_venv.python, cwd=proc.parent)
    assert "marker false for the target" in res.stdout
    res = run(proc, "--why", "fxlazy", "--python", fixture_venv.python, cwd=proc.parent)
    assert "imported lazily" in res.stdout
    assert "fxcore/__init__.py:" in res.stdout


def test_missing_imports_exit_1_listing_all(fixture_venv: FixtureVenv, tmp_path: Path) -> None:
    proc = tmp_path / "proc.py"
    proc.write_text("import nope_a\nimport nope_b\n")
    res = run(proc, "--python", fixture_venv.python, cwd=tmp_path)
    assert res.returncode == 1
    assert f"{proc}:1:" in res.stderr
    assert f"{proc}:2:" in res.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [("def f(:\n", ":1:"), (None, "no such file")],
)
def test_usage_errors_exit_2(tmp_path: Path, content: str | None, message: str) -> None:
    proc = tmp_path / "proc.py"
    if content is not None:
        proc.write_text(content)
    res = run(proc, cwd=tmp_path)
    assert res.returncode == 2
    assert message in res.stderr


def test_bad_hint_is_a_usage_error(proc: Path) -> None:
    res = run(proc, "--hint", "nonsense", cwd=proc.parent)
    assert res.returncode == 2
    assert "MODULE=NAME" in res.stderr


def test_help_teaches(tmp_path: Path) -> None:
    res = run("--help", cwd=tmp_path)
    assert res.returncode == 0
    assert "--why" in res.stdout
    assert "Exit status" in res.stdout
