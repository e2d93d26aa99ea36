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

from envpack.spec import SCHEMA
from tests.analyzer.test_notebook import make_notebook
from tests.conftest import BareVenv, FixtureVenv


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
    assert spec["schema"] == SCHEMA


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


# --python: the target interpreter, named by a relative path, or not a Python at all


def test_python_relative_path_is_taken_from_the_cwd(bare_venv: BareVenv, tmp_path: Path) -> None:
    proc = tmp_path / "proc.py"
    proc.write_text("import json\n")
    # ./python in the venv's bin: never the `python` a PATH lookup finds
    res = run(proc, "--json", "--python", "./python", cwd=bare_venv.python.parent)
    assert res.returncode == 0, res.stderr
    interp = json.loads(res.stdout)["interpreter"]
    assert interp["prefix"] == str(bare_venv.root)
    assert interp["executable"] == str(bare_venv.python)


def test_python_sitecustomize_printing_to_stdout(bare_venv: BareVenv, tmp_path: Path) -> None:
    # What the target prints at start-up, even JSON-looking text or a replaced sys.stdout,
    # is not the probe's answer.
    (bare_venv.site_packages / "sitecustomize.py").write_text(
        "import io, sys\n"
        "print('welcome to the analysis cluster')\n"
        'print(\'{"prefix": "/nowhere"}\')\n'
        "sys.stdout.flush()\n"
        "sys.stdout = io.StringIO()\n"
    )
    proc = tmp_path / "proc.py"
    proc.write_text("import json\n")
    res = run(proc, "--json", "--python", bare_venv.python, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["interpreter"]["prefix"] == str(bare_venv.root)


def test_python_not_a_python_is_a_usage_error(proc: Path) -> None:
    res = run(proc, "--python", "/bin/true", cwd=proc.parent)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "/bin/true -I -c <envpack probe> exited with status 0" in res.stderr
    assert "printed no probe result" in res.stderr


def test_python_crashing_says_what_ran_its_status_and_stderr(proc: Path) -> None:
    fake = proc.parent / "python"
    fake.write_text("#!/bin/sh\necho 'python: cannot open shared object' >&2\nexit 127\n")
    fake.chmod(0o755)
    res = run(proc, "--python", "./python", cwd=proc.parent)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert f"{fake} -I -c <envpack probe> exited with status 127" in res.stderr
    assert "cannot open shared object" in res.stderr


def test_a_notebook_ships_its_processor_and_lists_the_manager_imports(
    fixture_venv: FixtureVenv, tmp_path: Path
) -> None:
    nb = make_notebook(tmp_path)
    res = run(nb, "--python", fixture_venv.python, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Shipped from analysis.ipynb (by value, cells 2, 3, 5): CountProcessor, select" in (
        res.stdout
    )
    assert "Manager-side imports, not shipped" in res.stdout
    assert "fxunused (cell 4), fxlazy (cell 5)" in res.stdout
    assert "analysis.ipynb, cell 4, line 1: not Python, skipped: %matplotlib inline" in res.stderr
    spec = json.loads((tmp_path / "envpack.json").read_text())
    assert "fx-unused" not in {d["name"] for d in spec["distributions"]}
    res = run(nb, "--why", "fxunused", "--python", fixture_venv.python, cwd=tmp_path)
    assert "analysis.ipynb, cell 4, line 2: import fxunused" in res.stdout
    whole = run(nb, "--all-cells", "--json", "--python", fixture_venv.python, cwd=tmp_path)
    assert "fx-unused" in {d["name"] for d in json.loads(whole.stdout)["distributions"]}
    assert "skipped: %matplotlib inline" in whole.stderr  # notes on stderr, the JSON alone


def test_notebook_options_are_refused_elsewhere(proc: Path) -> None:
    res = run(proc, "--object", "P", cwd=proc.parent)
    assert res.returncode == 2
    assert "--object and --all-cells apply to a notebook" in res.stderr
    nb = make_notebook(proc.parent)
    res = run(nb, proc, cwd=proc.parent)
    assert res.returncode == 2
    assert "give one notebook alone" in res.stderr


def test_exclude_on_the_command_line(fixture_venv: FixtureVenv, tmp_path: Path) -> None:
    proc = tmp_path / "proc.py"
    proc.write_text("import fxcore\nimport distributed\n")
    res = run(proc, "--python", fixture_venv.python, cwd=tmp_path)
    assert res.returncode == 1
    assert "--exclude distributed (or [tool.envpack] exclude)" in res.stderr
    res = run(proc, "--python", fixture_venv.python, "--exclude", "distributed", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Excluded distributed (by cli): 1 import sites" in res.stdout
    spec = json.loads((tmp_path / "envpack.json").read_text())
    assert spec["excluded"] == [{"by": ["cli"], "module": "distributed", "sites": [f"{proc}:2"]}]
    why = run(proc, "--python", fixture_venv.python, "--exclude", "distributed", "--why",
              "distributed", cwd=tmp_path)  # fmt: skip
    assert "distributed is excluded (by cli); imported at:" in why.stdout
    assert f"{proc}:2" in why.stdout


# -- a warm run, answered from the result cache ---------------------------------------------
# Runs the real CLI, then names the heavy modules the process loaded (on stderr, last line).
_REPORTING = """\
import sys
from envpack.cli.main import main
try:
    main(sys.argv[1:], prog_name="envpack")
finally:
    heavy = ("rich", "elftools", "packaging", "envpack.spec", "envpack.analyzer.imports")
    sys.stderr.write(f"\\nloaded: {[m for m in heavy if m in sys.modules]}\\n")
"""


def run_reporting(
    *args: str | os.PathLike[str], cwd: Path, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    cmd = [sys.executable, "-c", _REPORTING, *map(str, args)]
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
    head, _, report = res.stderr.rstrip("\n").rpartition("\nloaded: ")
    res.stderr = head
    return res, json.loads(report.replace("'", '"'))


@pytest.fixture
def cache_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    # Not beside the processor: a directory appearing there changes what an import may find.
    return {**os.environ, "XDG_CACHE_HOME": str(tmp_path_factory.mktemp("xdg"))}


@pytest.mark.parametrize(
    "options",
    [(), ("--json",), ("--why", "fxcore"), ("--why", "fx-unused", "--json")],
    ids=["summary", "json", "why", "why-json"],
)
def test_a_warm_run_prints_the_same_without_loading_the_analyzer(
    fixture_venv: FixtureVenv, proc: Path, cache_env: dict[str, str], options: tuple[str, ...]
) -> None:
    def args(out: str) -> list[str | os.PathLike[str]]:
        return ["analyze", proc, "--python", fixture_venv.python, "-o", out, *options]

    cold, loaded = run_reporting(*args("out.json"), cwd=proc.parent, env=cache_env)
    assert cold.returncode == 0, cold.stderr
    assert "rich" in loaded and "envpack.analyzer.imports" in loaded
    spec = (proc.parent / "out.json").read_bytes() if "--json" not in options else b""
    (proc.parent / "out.json").unlink(missing_ok=True)
    warm, loaded = run_reporting(*args("out.json"), cwd=proc.parent, env=cache_env)
    assert loaded == []
    assert (warm.returncode, warm.stdout, warm.stderr) == (
        cold.returncode,
        cold.stdout,
        cold.stderr,
    )
    if "--json" not in options:
        assert (proc.parent / "out.json").read_bytes() == spec
    # Another output path prints another line: analyzed from the cache, printed afresh (the
    # walk not loaded), then printed from the cache too.
    other, loaded = run_reporting(*args("other.json"), cwd=proc.parent, env=cache_env)
    assert other.returncode == 0, other.stderr
    assert "envpack.analyzer.imports" in loaded and "elftools" not in loaded
    again, loaded = run_reporting(*args("other.json"), cwd=proc.parent, env=cache_env)
    assert (again.stdout, again.stderr, loaded) == (other.stdout, other.stderr, [])


def test_a_warm_run_with_errors_exits_1_and_lists_them(
    fixture_venv: FixtureVenv, tmp_path: Path, cache_env: dict[str, str]
) -> None:
    proc = tmp_path / "proc.py"
    proc.write_text("import fxcore\nimport nope_zz\n")
    args = ["analyze", proc, "--python", fixture_venv.python]
    cold, _ = run_reporting(*args, cwd=tmp_path, env=cache_env)
    warm, loaded = run_reporting(*args, cwd=tmp_path, env=cache_env)
    assert loaded == []
    assert cold.returncode == warm.returncode == 1
    assert "cannot import 'nope_zz'" in warm.stderr
    assert (warm.stdout, warm.stderr) == (cold.stdout, cold.stderr)


def test_a_pth_edited_in_place_is_seen(
    bare_venv: BareVenv, tmp_path: Path, cache_env: dict[str, str]
) -> None:
    for name in ("pa", "pb"):
        (tmp_path / name).mkdir()
    (tmp_path / "pb" / "fxpth.py").write_text("X = 1\n")
    pth = bare_venv.site_packages / "extra.pth"
    pth.write_text(f"{tmp_path / 'pa'}\n")
    work = tmp_path / "work"
    work.mkdir()
    proc = work / "proc.py"
    proc.write_text("import fxpth\n")
    args = ["analyze", proc, "--python", bare_venv.python, "--json"]
    cold, _ = run_reporting(*args, cwd=work, env=cache_env)
    assert cold.returncode == 1 and "cannot import 'fxpth'" in cold.stderr
    warm, loaded = run_reporting(*args, cwd=work, env=cache_env)
    assert (warm.returncode, loaded) == (1, [])
    # Only the .pth changes (same size, same inode; no directory listing changes): what site.py
    # puts on the target's sys.path does, and the probe must be asked again.
    with open(pth, "r+") as fh:
        fh.write(f"{tmp_path / 'pb'}\n")
    edited, _ = run_reporting(*args, cwd=work, env=cache_env)
    assert edited.returncode == 0, edited.stderr
    assert str(tmp_path / "pb" / "fxpth.py") in edited.stdout
