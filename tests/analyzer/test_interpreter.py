"""probe() on real interpreters: every CPython the probe supports, and unusual targets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from envpack.analyzer.interpreter import choose, probe
from envpack.errors import UsageError
from tests.conftest import BareVenv, FixtureVenv

PYENV = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"


@pytest.mark.parametrize("version", ["3.8.18", "3.9.18", "3.10.13", "3.12.1", "3.13.0"])
def test_probe_each_cpython(version: str) -> None:
    major_minor = version.rsplit(".", 1)[0]
    exe = PYENV / version / "bin" / f"python{major_minor}"
    if not exe.is_file():
        pytest.skip(f"no {exe} on this machine")
    target = probe(exe)
    assert target.version_info == tuple(int(p) for p in version.split("."))
    interp = target.interpreter
    assert interp.implementation == "cpython"
    assert interp.version == version
    assert Path(interp.stdlib, "os.py").is_file()
    assert Path(interp.dynload).is_dir()
    names = target.stdlib_module_names
    # pure Python, a package, compiled into the binary, in lib-dynload, another platform's
    assert {"os", "json", "sys", "posix", "math", "winreg", "_winapi"} <= names
    assert not {"site-packages", "lib-dynload", "__pycache__"} & names
    assert "sys" in target.builtin_module_names
    assert ".so" in target.extension_suffixes
    # the target's pyc naming and format, not those of the Python running envpack
    assert interp.cache_tag == f"cpython-{major_minor.replace('.', '')}"
    pyc = next(Path(interp.stdlib, "__pycache__").glob(f"os.{interp.cache_tag}.pyc"))
    assert interp.pyc_magic == pyc.read_bytes()[:4].hex()


def test_probe_relative_path_not_path_lookup(
    bare_venv: BareVenv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(bare_venv.python.parent)
    target = probe("./python")
    assert target.interpreter.prefix == str(bare_venv.root)
    assert target.interpreter.executable == str(bare_venv.python)


def test_probe_a_directory_without_python(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no bin/python"):
        probe(tmp_path)


def test_probe_killed_target_names_the_signal(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'about to die' >&2\nkill -9 $$\n")
    fake.chmod(0o755)
    with pytest.raises(
        UsageError, match=r"was killed by SIGKILL\n  its stderr ends with:\n    about"
    ):
        probe(fake)


# -- which interpreter is the target -----------------------------------------------------------


def test_choose_python_wins_over_the_active_env(bare_venv: BareVenv) -> None:
    environ = {"VIRTUAL_ENV": "/nonexistent", "CONDA_PREFIX": "/nonexistent"}
    choice = choose(bare_venv.root, environ)
    assert (choice.python, choice.source) == (str(bare_venv.root / "bin" / "python3"), "--python")
    assert choice.reason == "from --python"


def test_choose_the_active_venv_then_conda(bare_venv: BareVenv, fixture_venv: FixtureVenv) -> None:
    venv, conda = str(bare_venv.root), str(fixture_venv.root)
    choice = choose(None, {"VIRTUAL_ENV": venv, "CONDA_PREFIX": conda})
    assert (choice.python, choice.source) == (
        str(bare_venv.root / "bin" / "python3"),
        "$VIRTUAL_ENV",
    )
    assert choice.reason == "the active $VIRTUAL_ENV"
    choice = choose(None, {"CONDA_PREFIX": conda})
    assert (choice.python, choice.source) == (
        str(fixture_venv.root / "bin" / "python3"),
        "$CONDA_PREFIX",
    )
    assert probe(choice.python).interpreter.prefix == conda


def test_choose_envpacks_own_when_it_runs_in_the_active_env(fixture_venv: FixtureVenv) -> None:
    own = {"VIRTUAL_ENV": sys.prefix, "CONDA_PREFIX": str(fixture_venv.root)}
    # The innermost activation is envpack's own venv: a conda env under it is not the target.
    assert choose(None, own) == choose(None, {})
    assert choose(None, {}).python == sys.executable
    assert choose(None, {}).source == "envpack's own"
    assert choose(None, {"CONDA_PREFIX": sys.prefix}).source == "envpack's own"
    assert choose(None, {"VIRTUAL_ENV": ""}).source == "envpack's own"


def test_choose_an_active_env_without_python_says_which(tmp_path: Path) -> None:
    for var in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        with pytest.raises(UsageError, match=rf"\${var} is {tmp_path}, which holds no bin/python"):
            choose(None, {var: str(tmp_path)})
