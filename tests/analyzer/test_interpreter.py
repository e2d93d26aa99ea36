"""probe() on real interpreters: unusual targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from envpack.analyzer.interpreter import probe
from envpack.errors import UsageError
from tests.conftest import BareVenv


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
