"""Session fixtures shared by every test module: a real venv with real wheels installed.

Built once per test session (xdist workers share it through a lock in the session's base temp
dir), with pip, from wheels made of tests/fixtures/packages plus PyYAML from PyPI.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.wheels import build_wheel, fixture_wheels

PYYAML = "PyYAML==6.0.2"


@dataclass(frozen=True)
class FixtureVenv:
    root: Path
    python: Path
    site_packages: Path
    editable_src: Path  # source tree of the editable fixture install (module fxedit)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The parent of the base temp is common to all xdist workers of one session.
    base = tmp_path_factory.getbasetemp()
    return base.parent if base.name.startswith("popen-gw") else base


def _make_venv(root: Path) -> FixtureVenv:
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    python = root / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    wheels = root.parent / f"{root.name}-wheels"
    fixture_wheels(wheels)
    # An editable install as pip's PEP 660 path does it: a .pth naming the source tree.
    src = root.parent / f"{root.name}-editable-src"
    (src / "fxedit").mkdir(parents=True, exist_ok=True)
    (src / "fxedit" / "__init__.py").write_text("import fxensured\nEDIT = True\n")
    direct_url = {"url": src.as_uri(), "dir_info": {"editable": True}}
    build_wheel(
        wheels,
        wheels,
        metadata="Metadata-Version: 2.1\nName: fx-edit\nVersion: 0.0.1\n",
        extra_files={
            "__editable__.fx_edit-0.0.1.pth": f"{src}\n".encode(),
        },
    )
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, PYYAML], check=True)
    subprocess.run([*pip, "--no-index", *map(str, sorted(wheels.glob("*.whl")))], check=True)
    # pip records a local wheel as an archive; say what `pip install -e` would have said.
    (site / "fx_edit-0.0.1.dist-info" / "direct_url.json").write_text(json.dumps(direct_url))
    return FixtureVenv(root=root, python=python, site_packages=site, editable_src=src)


@pytest.fixture(scope="session")
def fixture_venv(tmp_path_factory: pytest.TempPathFactory) -> FixtureVenv:
    """A real venv holding PyYAML and the fx-* fixture distributions (see tests/fixtures)."""
    shared = _shared_dir(tmp_path_factory)
    root = shared / "fixture-venv"
    with _locked(shared / "fixture-venv.lock"):
        done = root / ".envpack-test-ready"
        if done.exists():
            info = json.loads(done.read_text())
            return FixtureVenv(**{k: Path(v) for k, v in info.items()})
        venv = _make_venv(root)
        done.write_text(json.dumps({k: str(v) for k, v in venv.__dict__.items()}))
        return venv


@dataclass(frozen=True)
class BareVenv:
    root: Path
    python: Path  # bin/python: the symlink venv makes, which is what marks it the venv's
    site_packages: Path


@pytest.fixture
def bare_venv(tmp_path: Path) -> BareVenv:
    """A fresh real venv of the running Python, without pip: for tests that change it."""
    root = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    assert python.is_symlink()
    (site,) = root.glob("lib/python*/site-packages")
    return BareVenv(root=root, python=python, site_packages=site)
