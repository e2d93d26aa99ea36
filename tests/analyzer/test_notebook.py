"""analyze_notebook(): a real .ipynb, its processor cell shipped, its manager cells left home.

The notebook is written here as nbformat 4 JSON, the way Jupyter saves one: a markdown cell, a
processor cell importing fixture packages (fxcore stands for awkward: it pulls PyYAML and
fx-ensured in), a helper cell, a plotting cell with a magic (fxunused stands for matplotlib), a
cluster-client cell with a shell line (fxlazy stands for dask.distributed), a %%bash cell.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envpack.analyzer.api import analyze
from envpack.analyzer.notebook import Skipped, analyze_notebook, read_notebook
from envpack.errors import UsageError
from tests.conftest import FixtureVenv

PROCESSOR_CELL = """\
import fxcore
from fxlocal import processor


class CountProcessor(processor.ProcessorABC):
    def __init__(self, threshold):
        self.threshold = threshold

    def process(self, events):
        plt = None  # a local of the same name as the plotting import: not a global use
        return {"n": select(events), "v": fxcore.util.VALUE, "plt": plt}
"""
HELPER_CELL = """\
import fxns.a as nsa


def select(events):
    return [e for e in events if e > nsa.A]
"""
PLOT_CELL = """\
%matplotlib inline
import fxunused as plt


def plot(out):
    return plt.UNUSED, out
"""
CLIENT_CELL = """\
!echo starting the cluster
import fxlazy
import fxns.b

client = fxlazy.LAZY
THRESHOLD = fxns.b.B
out = run(fileset, processor_instance=CountProcessor(THRESHOLD), client=client)
plot(out)
"""
BASH_CELL = """\
%%bash
pip install something-else
"""


def _cell(source: str, kind: str = "code") -> dict[str, object]:
    cell: dict[str, object] = {
        "cell_type": kind,
        "metadata": {},
        "source": source.splitlines(keepends=True),
    }
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def write_notebook(path: Path, cells: list[dict[str, object]]) -> Path:
    nb = {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb, indent=1))
    return path


def make_notebook(directory: Path) -> Path:
    """analysis.ipynb next to a local package fxlocal (coffea's processor module in shape)."""
    (directory / "fxlocal").mkdir()
    (directory / "fxlocal" / "__init__.py").write_text("")
    (directory / "fxlocal" / "processor.py").write_text("class ProcessorABC:\n    pass\n")
    cells = [
        _cell("# A dimuon-style analysis\n", "markdown"),
        _cell(PROCESSOR_CELL),
        _cell(HELPER_CELL),
        _cell(PLOT_CELL),
        _cell(CLIENT_CELL),
        _cell(BASH_CELL),
    ]
    return write_notebook(directory / "analysis.ipynb", cells)


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    return make_notebook(tmp_path)


def _names(spec: object) -> set[str]:
    return {d.name for d in spec.distributions}  # type: ignore[attr-defined]


def test_ships_what_the_processor_reaches_not_the_manager_cells(
    fixture_venv: FixtureVenv, notebook: Path
) -> None:
    result = analyze_notebook(notebook, python=fixture_venv.python)
    spec = result.spec
    assert spec.complete, spec.errors
    # fxcore (+ what it pulls in) from the processor cell, fxns.a through select(), fxns.b
    # through the constructor's argument; never the plotting or the client package
    assert _names(spec) == {"fx-core", "PyYAML", "fx-ensured", "fx-ns-a", "fx-ns-b"}
    assert result.shipped == ("CountProcessor", "select")
    assert result.cells == (2, 3, 5)  # cell 5 only for THRESHOLD (and its import)
    assert [(m.module, m.cell) for m in result.manager_imports] == [
        ("fxunused", 4),
        ("fxlazy", 5),
    ]
    # the local package the processor derives from ships as source; the generated module not
    assert sorted(f.arcname for f in spec.local) == ["fxlocal/__init__.py", "fxlocal/processor.py"]
    assert spec.roots == (str(notebook),)
    core = spec.distribution("fx-core")
    assert core is not None and core.why == ("analysis.ipynb cell 2", "fxcore")
    assert result.skipped == (
        Skipped(4, 1, "%matplotlib inline"),
        Skipped(5, 1, "!echo starting the cluster"),
        Skipped(6, 1, "%%bash (the whole cell)"),
    )


def test_whole_notebook_as_a_module_ships_the_manager_imports_too(
    fixture_venv: FixtureVenv, notebook: Path
) -> None:
    shipped = _names(analyze_notebook(notebook, python=fixture_venv.python).spec)
    whole = analyze_notebook(notebook, python=fixture_venv.python, all_cells=True)
    assert _names(whole.spec) == shipped | {"fx-unused", "fx-lazydep"}
    assert whole.manager_imports == ()
    # the same as converting the notebook to a script by hand and analyzing that
    script = notebook.with_name("analysis_script.py")
    stmts, _ = read_notebook(notebook)
    script.write_text("\n".join(s.text for s in stmts) + "\n")
    assert _names(analyze([script], python=fixture_venv.python)) == _names(whole.spec)


def test_object_names_what_is_shipped(fixture_venv: FixtureVenv, notebook: Path) -> None:
    result = analyze_notebook(notebook, python=fixture_venv.python, objects=["select"])
    assert _names(result.spec) == {"fx-ns-a"}
    assert result.shipped == ("select",)
    assert {m.module for m in result.manager_imports} == {
        "fxcore",
        "fxlocal",
        "fxunused",
        "fxlazy",
        "fxns.b",
    }
    with pytest.raises(UsageError, match=r"no top-level 'nope'.*CountProcessor, plot, select"):
        analyze_notebook(notebook, python=fixture_venv.python, objects=["nope"])


def test_a_missing_import_names_the_cell_and_line(
    fixture_venv: FixtureVenv, tmp_path: Path
) -> None:
    body = (
        "class P(ProcessorABC):\n"
        "    def process(self, events):\n"
        "        import fx_not_installed\n"
        "        return fx_not_installed\n"
    )
    nb = write_notebook(tmp_path / "ana.ipynb", [_cell("x = 1\n"), _cell(body)])
    spec = analyze_notebook(nb, python=fixture_venv.python).spec
    assert len(spec.errors) == 1
    assert spec.errors[0].startswith(f"{nb}, cell 2, line 3: cannot import 'fx_not_installed'")


def test_refusals_say_where_and_what_to_do(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "plain.ipynb", [_cell("def f():\n    return 1\n")])
    with pytest.raises(UsageError, match=r"no processor class.*--object NAME.*defined: f"):
        analyze_notebook(nb)
    bad = write_notebook(tmp_path / "bad.ipynb", [_cell("x = 1\n"), _cell("def f(:\n")])
    with pytest.raises(UsageError, match=r"bad\.ipynb, cell 2, line 1, column \d+: SyntaxError"):
        analyze_notebook(bad, objects=["f"])
    (tmp_path / "junk.ipynb").write_text("{not json")
    with pytest.raises(UsageError, match="not a readable notebook"):
        analyze_notebook(tmp_path / "junk.ipynb")


def test_percent_in_a_string_is_not_a_magic(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "s.ipynb", [_cell('TEXT = """\n%d events\n!done\n"""\n')])
    stmts, skipped = read_notebook(nb)
    assert skipped == []
    assert stmts[0].text == 'TEXT = """\n%d events\n!done\n"""'


def test_data_the_shipped_code_opens_is_found_next_to_the_notebook(
    fixture_venv: FixtureVenv, tmp_path: Path
) -> None:
    """A kernel runs in the notebook's directory: a bare relative path resolves there, wherever
    envpack runs from (here, the test's own working directory)."""
    (tmp_path / "corrections").mkdir()
    (tmp_path / "corrections" / "sf.json").write_text("{}")
    body = (
        "class P(ProcessorABC):\n"
        "    def process(self, events):\n"
        "        return open('corrections/sf.json').read()\n"
    )
    nb = write_notebook(tmp_path / "ana.ipynb", [_cell(body)])
    assert Path.cwd() != tmp_path
    spec = analyze_notebook(nb, python=fixture_venv.python).spec
    data = [(f.arcname, f.why) for f in spec.local if f.kind == "data"]
    assert data == [("corrections/sf.json", f"opened at {nb}, cell 1, line 3")]


def test_an_object_changed_in_place_ships_as_changed_a_module_does_not(
    fixture_venv: FixtureVenv, tmp_path: Path
) -> None:
    cells = [
        _cell("import fxcore\nimport fxns.b\nimport fxunused\nCONFIG = {}\n"),
        _cell('CONFIG["b"] = fxns.b.B\nfxcore.util.VALUE = fxunused.UNUSED\n'),
        _cell("class P(ProcessorABC):\n    def process(self, e):\n        return CONFIG, fxcore\n"),
    ]
    nb = write_notebook(tmp_path / "ana.ipynb", cells)
    result = analyze_notebook(nb, python=fixture_venv.python)
    # CONFIG is pickled with the item cell 2 put in; fxcore goes by reference, unchanged
    assert {"fx-ns-b", "fx-core"} <= _names(result.spec)
    assert "fx-unused" not in _names(result.spec)
    assert [m.module for m in result.manager_imports] == ["fxunused"]
