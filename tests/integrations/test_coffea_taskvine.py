"""coffea itself on a real TaskVine: its TaskVineExecutor, and a dask-awkward histogram through
DaskVine (marker `coffea`: full coffea venvs, made once from PyPI under ~/.cache/envpack-bench).

Each test runs its manager program on the coffea venv's Python and one vine_worker in a network
namespace of its own with an empty /var/tmp (taskvine_support.TaskVine.run_app); the worker's
tasks cannot see any Python of this machine (pyenv, this venv, the coffea venv, cctools' and
Debian's Python packages). Nothing sets ENVPACK_CACHE: TaskVine unpacks the poncho package into
its own cache, as a user's worker does.

  python -m pytest tests/integrations/test_coffea_taskvine.py -m coffea -p no:cacheprovider
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _locked, _shared_dir
from tests.integrations.conftest import APPS, can_hide
from tests.integrations.taskvine_support import Cctools, TaskVine

pytestmark = [pytest.mark.coffea, pytest.mark.taskvine]

REPO = Path(__file__).resolve().parents[2]


def _coffea_venv(which: str, cctools: Cctools) -> Path:
    """The coffea venv's python; cctools' site-packages layered on it (a .pth), so the manager
    imports ndcctools and the analysis sees what DaskVine's worker side imports."""
    from bench import _env

    venv = {"0.7.31": _env.COFFEA07, "2026.9.0": _env.DASKVINE}[which]
    with _locked(venv.root.parent / f"{venv.root.name}.lock"):
        python = _env.ensure_venv(venv)
        site = next((venv.root / "lib").glob("python3*/site-packages"))
        pth = site / "envpack-test-cctools.pth"
        if not pth.exists() or pth.read_text() != f"{cctools.site_packages}\n":
            pth.write_text(f"{cctools.site_packages}\n")
    return python


def _hide(python: Path, cctools: Cctools) -> list[Path]:
    """Every Python of this machine: pyenv (the coffea venvs' base too), this venv, the coffea
    venv, cctools' Python packages, Debian's."""
    base = Path(sys.base_prefix)
    parts = base.parts
    pyenv = Path(*parts[: parts.index("versions")]) if "versions" in parts else base
    hide = {pyenv, Path(sys.prefix), python.parent.parent, cctools.site_packages.parent}
    hide |= {p for p in Path("/usr/lib").glob("python3*") if p.is_dir()}
    return sorted(p for p in hide if not any(q != p and q in p.parents for q in hide))


def _in_env(report: dict[str, Any]) -> None:
    prefix = report["prefix"]
    assert report["envpack_prefix"] == prefix == report["poncho_prefix"], report
    assert report["executable"].startswith(prefix + os.sep), report
    assert not (prefix + os.sep).startswith(report["cwd"] + os.sep), report
    assert not [p for p in report["path"] if p.startswith((sys.base_prefix, sys.prefix))]


@pytest.mark.parametrize(
    ("coffea", "defined_in"),
    [("0.7.31", "module"), ("0.7.31", "notebook"), ("2026.9.0", "module")],
)
def test_coffeas_taskvine_executor_runs_the_processor_inside_the_environment(
    taskvine: TaskVine,
    cctools: Cctools,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    coffea: str,
    defined_in: str,
) -> None:
    """`TaskVineExecutor(**ce.taskvine(), ...)`: coffea declares the tarball with declare_poncho
    and sends PythonTasks of its own wrapper around the bench's dimuon processor (NanoEvents, a
    local helper package, a corrections file opened by a relative path, LZ4 and ZSTD files);
    the result is the IterativeExecutor's. The env is `environment_for(the processor's module)`,
    or for the notebook, what `envpack analyze dimuon_notebook.ipynb` finds."""
    from bench._env import PROCESSOR, PROCESSORS, ensure_data
    from envpack.analyzer.notebook import analyze_notebook
    from envpack.build import build
    from envpack.integrations.coffea import CoffeaEnvironment, environment_for

    reason = can_hide(tmp_path)
    if reason:
        pytest.skip(reason)
    python = _coffea_venv(coffea, cctools)
    files = ensure_data()
    notebook = PROCESSORS / "dimuon_notebook.ipynb"
    shared = _shared_dir(tmp_path_factory) / f"coffea-vine-{coffea}-{defined_in}"
    with _locked(shared.parent / f"{shared.name}.lock"):
        if defined_in == "module":
            ce = environment_for(PROCESSOR, out_dir=shared, python=python)
        else:
            spec = analyze_notebook(notebook, python=python).spec
            assert spec.complete, spec.errors
            assert "matplotlib" not in {d.name for d in spec.distributions}
            built = build(spec, shared)
            ce = CoffeaEnvironment(str(built.path), str(built.path.parent / "envpack-run"), "")
    raw, log = taskvine.run_app(
        APPS / "coffea_vine_driver.py",
        {
            "executor_args": ce.taskvine(),
            "files": [str(f) for f in files],
            "cwd": str(PROCESSORS),
            "notebook": str(notebook) if defined_in == "notebook" else None,
        },
        hide=_hide(python, cctools),
        pythonpath=[PROCESSORS, APPS],
        python=python,
        timeout=400,
    )
    vine, local = raw["taskvine"]["DYJetsToLL"], raw["local"]["DYJetsToLL"]
    assert vine["cutflow"] == local["cutflow"], log[-3000:]
    assert vine["cutflow"]["pair"] > 1000
    # the same weighted sums, added in another order (TaskVine's tree reduction)
    assert vine["mass_bins"] == pytest.approx(local["mass_bins"], rel=1e-9)
    assert vine["mass"] == pytest.approx(local["mass"], rel=1e-9)
    assert raw["worker_alive"], log[-2000:]
    # TaskVine ran every task as <its unpacked package>/bin/run_in_env python3 ...
    assert "bin/run_in_env" in log, log[-2000:]


def test_a_coffea_dask_awkward_histogram_runs_through_daskvine_inside_the_environment(
    taskvine: TaskVine, cctools: Cctools, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """coffea 2026.9.0's NanoEvents in dask mode over the bench's NanoAOD files, a hist.dask
    histogram and the user's numpy one of the selected muons' pT, computed with
    `dask.compute(..., scheduler=m.get, **ev.dask_options(f))` inside the env built for DaskVine
    from the user's module; both equal dask's synchronous scheduler's, here."""
    from bench._env import ensure_data
    from envpack.integrations import taskvine as ev

    reason = can_hide(tmp_path)
    if reason:
        pytest.skip(reason)
    python = _coffea_venv("2026.9.0", cctools)
    files = ensure_data()
    shared = _shared_dir(tmp_path_factory) / "coffea-daskvine"
    with _locked(shared.parent / f"{shared.name}.lock"):
        env = ev.environment_for(
            [APPS / "coffeadak.py"], out_dir=shared, engines=ev.DASKVINE, python=python
        )
    raw, log = taskvine.run_app(
        APPS / "dak_driver.py",
        {"mode": "coffea", "tarball": str(env.path), "files": [str(f) for f in files]},
        hide=_hide(python, cctools),
        pythonpath=[REPO, APPS],
        python=python,
        timeout=400,
    )
    vine = raw["vine"]
    assert vine["ok"], (vine, log[-3000:])
    assert vine["hist"] == raw["local"]["hist"]
    assert vine["counts"] == raw["local"]["counts"] == [int(v) for v in vine["hist"]]
    assert sum(vine["counts"]) > 1000
    _in_env(vine["where"])
