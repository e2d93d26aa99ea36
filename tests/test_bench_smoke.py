"""The benchmarks' ground truth (bench/_trace.py) must see what a real run uses, or every figure
derived from it is wrong: trace a tiny processor with the test interpreter and check the record."""

from __future__ import annotations

import py_compile
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import _env, _trace  # noqa: E402  (bench/ is not an installed package)

PROC = """\
import json
import packaging.version
from helper import scale

with open("data/sf.json") as f:
    SF = json.load(f)

def main():
    return scale(SF["k"]) * packaging.version.Version("1.2").major

if __name__ == "__main__":
    print(main())
"""


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    work = tmp_path / "proc"
    (work / "data").mkdir(parents=True)
    (work / "proc.py").write_text(PROC)
    (work / "helper.py").write_text("def scale(x):\n    return 2 * x\n")
    (work / "data" / "sf.json").write_text('{"k": 21}')
    (work / "unused.py").write_text("import click\n")
    return work


def test_trace_sees_local_code_data_and_distributions(tiny: Path, tmp_path: Path) -> None:
    run = _trace.trace(sys.executable, tiny, tiny / "proc.py")
    startup = _trace.startup_trace(sys.executable)

    local = {Path(p).relative_to(tiny).as_posix() for p in run.files("local")}
    assert {"helper.py", "data/sf.json"} <= local
    assert "unused.py" not in local
    assert "proc.py" not in local  # the driver script itself is not part of the env

    needed = _trace.needed_dists(run, startup)
    assert "packaging" in needed
    assert "click" not in run.dists()  # installed, never imported

    interp = run.files("interpreter")
    assert any(Path(p).name.startswith(("python3", "libpython3")) for p in interp)
    assert any(p.endswith("/json/__init__.py") for p in interp)
    assert not any(Path(p).name.startswith("libc.so") for p in run.lower_bound_files())

    out = tmp_path / "lb.tar.gz"
    size, _ = _trace.tar_lower_bound(run, out, kinds=("local", "dist"))  # libpython: slow
    assert size == out.stat().st_size > 0
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
    assert (str(tiny / "data" / "sf.json")).lstrip("/") in names


def test_trace_reports_a_failing_run(tiny: Path) -> None:
    (tiny / "proc.py").write_text("raise SystemExit(3)\n")
    with pytest.raises(RuntimeError, match="traced run failed"):
        _trace.trace(sys.executable, tiny, tiny / "proc.py")


def test_import_time_and_pyc_source(tiny: Path) -> None:
    t_import, t_start = _trace.import_time(sys.executable, tiny, "helper", n=1)
    assert t_import > 0 and t_start > 0
    compiled = py_compile.compile(str(tiny / "helper.py"), doraise=True)
    assert compiled is not None
    pyc = Path(compiled)
    assert _trace._pyc_source(str(pyc)) == str(tiny / "helper.py")
    assert _trace._pyc_source(str(tiny / "helper.py")) is None


def test_env_helpers() -> None:
    assert _env.PROCESSOR.is_file() and _env.DRIVER.is_file()
    assert _env.verdict("x", True, "d").startswith("MET")
    assert _env.verdict("x", False, "d").startswith("MISS")
    pins = [line for line in _env.PINS.read_text().splitlines() if not line.startswith("#")]
    assert any(line.startswith("coffea==0.7.") for line in pins)


def test_the_bench_notebook_holds_the_bench_processor() -> None:
    """bench/notebook.py compares the notebook with dimuon_processor.py: the processor cell
    must stay that module's code (its docstring and __future__ import aside)."""
    import json

    nb = json.loads((_env.PROCESSORS / "dimuon_notebook.ipynb").read_text())
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    module = _env.PROCESSOR.read_text().split('"""', 2)[2]
    module = module.replace("from __future__ import annotations\n", "")
    assert cells[0].strip() == module.strip()
