"""probe() on real interpreters: every CPython the probe supports, and unusual targets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from envpack.analyzer.interpreter import probe
from envpack.errors import UsageError
from tests.conftest import BareVenv

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
