"""analyze → build → run of the ttbar-like analysis, as a user does it, on a "worker".

A fresh venv holds stand-ins for xgboost and correctionlib (real wheels that pip installs; the
same calls open the model and correction files) and a topcoffea-like package installed
editable, whose data/ lives in its source tree. The analysis is a copy of
tests/fixtures/processors/ttbar. `envpack analyze` and `envpack build` run through the CLI; the
real envpack-run unpacks the tarball into a node cache in tmp_path and runs the processor from
an empty scratch directory, where it must find every file it reads.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from envpack.spec import Spec
from tests.runtime.envs import run
from tests.wheels import build_wheel

FIXTURES = Path(__file__).parent.parent / "fixtures"


def envpack(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI in a real process, as a user runs it."""
    cmd = [sys.executable, "-m", "envpack", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


@dataclass(frozen=True)
class Analysis:
    root: Path
    python: Path  # the venv's interpreter
    ana: Path  # the analysis directory (a copy of the fixture)
    fxtop: Path  # the editable package's source tree (its project directory)


@pytest.fixture(scope="module")
def analysis(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    root = tmp_path_factory.mktemp("ttbar")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    wheels = root / "wheels"
    for name in ("fx-xgboost-standin", "fx-correctionlib-standin"):
        build_wheel(FIXTURES / "standins" / name, wheels)
    fxtop = root / "fxtop-src"
    shutil.copytree(FIXTURES / "editable" / "fxtop", fxtop)
    # What a real source tree also holds, none of it package data.
    for junk in ("__pycache__/paths.cpython-311.pyc", "tests/big_input.json", ".git/config"):
        (fxtop / "fxtop" / junk).parent.mkdir(parents=True, exist_ok=True)
        (fxtop / "fxtop" / junk).write_text("junk\n")
    build_wheel(
        wheels,
        wheels,
        metadata="Metadata-Version: 2.1\nName: fx-top\nVersion: 0.1\n",
        extra_files={"__editable__.fx_top-0.1.pth": f"{fxtop}\n".encode()},
    )
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-index"]
    pip.append("--disable-pip-version-check")
    subprocess.run([*pip, *map(str, sorted(wheels.glob("*.whl")))], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    direct_url = {"url": fxtop.as_uri(), "dir_info": {"editable": True}}
    (site / "fx_top-0.1.dist-info" / "direct_url.json").write_text(json.dumps(direct_url))
    ana = root / "ana"
    shutil.copytree(FIXTURES / "processors" / "ttbar", ana)
    return Analysis(root, python, ana, fxtop)


@pytest.fixture(scope="module")
def spec_file(analysis: Analysis) -> Path:
    out = analysis.root / "envpack.json"
    result = envpack(
        "analyze",
        str(analysis.ana / "ttbar.py"),
        "--python",
        str(analysis.python),
        "--data",
        str(analysis.ana / "models" / "variants"),
        "-o",
        str(out),
        cwd=analysis.ana,
    )
    assert result.returncode == 0, result.stderr
    return out


def test_analyze_ships_the_data_where_the_code_keeps_it(
    analysis: Analysis, spec_file: Path
) -> None:
    spec = Spec.read(spec_file)
    local = {f.arcname: f for f in spec.local if f.kind != "module"}
    assert {a: f.kind for a, f in local.items()} == {
        "corrections.json": "data",
        "models/m.json": "data",
        "models/model_even.json": "data",
        "models/model_odd.json": "data",
        "models/variants/loose.json": "data",  # --data
        "models/variants/tight.json": "data",
        "fxtop/data/lumi.json": "resource",  # the editable package's data, all of it
        "fxtop/data/pileup/pu_2017.json": "resource",
        "fxtop/data/pileup/pu_2018.json": "resource",
    }
    assert local["models/variants/tight.json"].why.startswith("added by --data")
    lumi = analysis.fxtop / "fxtop" / "data" / "lumi.json"
    assert local["fxtop/data/lumi.json"].path == str(lumi)
    editable = spec.distribution("fx-top")
    assert editable is not None and editable.editable
    # The user's own unresolved opener is a warning with its line; the editable package's is not
    # (its data ships whole).
    data_warnings = [w for w in spec.warnings if "path not resolved" in w]
    assert data_warnings == [
        f"{analysis.ana}/utils/ml.py:21: open: path not resolved; "
        "add it with --data if workers need it"
    ]


def test_the_built_env_runs_the_processor_in_a_scratch_dir(
    analysis: Analysis, spec_file: Path, tmp_path: Path
) -> None:
    dist = tmp_path / "dist"
    result = envpack("build", str(spec_file), "-o", str(dist), "--level", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    tarball = Path(result.stdout.strip().splitlines()[-1])
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
        links = tar.extractfile(".envpack/links").read().decode().split()  # type: ignore[union-attr]
    assert "local/fxtop/data/pileup/pu_2018.json" in names
    assert not {n for n in names if "__pycache__/paths" in n or "big_input" in n or ".git" in n}
    assert "local/models/retired.json" not in names
    # Data opened from the working directory is linked there; package data is not.
    assert "models/model_even.json" in links and not any(p.startswith("fxtop/") for p in links)

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    cmd = ["-e", str(tarball), "--", "python", "-m", "ttbar", "tight", "2018"]
    res = run(cmd, cache=tmp_path / "cache", cwd=scratch)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"sf": 1.5, "trees": [2, 3, 5, 7], "lumi": 59.7, "pileup": 32}
    assert not (scratch / "fxtop").exists()


def test_build_proc_with_data_flag(tmp_path: Path) -> None:
    """`envpack build PROC.py --data GLOB` (for this interpreter): the file ships and is linked."""
    ana = tmp_path / "ana"
    (ana / "tables").mkdir(parents=True)
    (ana / "tables" / "eff_2018.csv").write_text("pt,eff\n")
    (ana / "proc.py").write_text("import sys\nTABLE = open(sys.argv[1]).read()\n")
    out = str(tmp_path / "dist")
    result = envpack("build", "proc.py", "--data", "tables/*.csv", "-o", out, "--level=1", cwd=ana)
    assert result.returncode == 0, result.stderr
    assert "proc.py:2: open: path not resolved; add it with --data" in result.stderr
    tarball = Path(result.stdout.strip().splitlines()[-1])
    with tarfile.open(tarball) as tar:
        assert "local/tables/eff_2018.csv" in tar.getnames()
        links = tar.extractfile(".envpack/links").read().decode().split()  # type: ignore[union-attr]
    assert links == ["tables/eff_2018.csv"]


def test_data_flag_errors_name_the_fix(tmp_path: Path, spec_file: Path) -> None:
    (tmp_path / "proc.py").write_text("")
    result = envpack("analyze", "proc.py", "--data", "nope/*.json", cwd=tmp_path)
    assert result.returncode == 2
    assert "--data: data 'nope/*.json' matches no file" in result.stderr
    result = envpack("build", str(spec_file), "--data", "x.json", cwd=tmp_path)
    assert result.returncode == 2
    assert "envpack build PROC.py --data" in result.stderr
