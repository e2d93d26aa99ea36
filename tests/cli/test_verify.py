"""`envpack verify` judges a failed import against the same import on the build interpreter."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from envpack.analyzer.api import analyze
from envpack.build import build
from envpack.cli.main import main
from tests.conftest import FixtureVenv


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def broken_env(fixture_venv: FixtureVenv, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # fxbroken raises ImportError on import everywhere (it needs a newer numpy than there is);
    # its users import it under try/except ImportError, so it is shipped and never works.
    root = tmp_path_factory.mktemp("broken")
    proc = root / "proc.py"
    proc.write_text(
        "import yaml\n\ntry:\n    import fxbroken\nexcept ImportError:\n    fxbroken = None\n"
    )
    spec = analyze([proc], python=fixture_venv.python)
    assert spec.complete, spec.errors
    assert spec.distribution("fx-broken") is not None
    return build(spec, root / "out", level=1).path


@pytest.mark.parametrize("isolated", [True, False], ids=["isolated", "plain"])
def test_a_module_failing_on_the_build_interpreter_too_is_a_note(
    broken_env: Path, isolated: bool
) -> None:
    result = invoke("verify", *(["--isolated"] if isolated else []), str(broken_env))
    if isolated and "mount" in result.output and result.exit_code != 0:
        pytest.skip(f"unshare not permitted: {result.output}")
    assert result.exit_code == 0, result.output
    assert (
        "note: import fxbroken fails on the build interpreter too (ImportError: fxbroken needs "
        "numpy >= 99 (this machine's is older)): not a packaging problem"
    ) in result.output
    assert "1 fail on the build interpreter too, noted" in result.output
    assert "FAIL" not in result.output
