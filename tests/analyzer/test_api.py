"""analyze() end to end on the fixture venv: the policy's hard cases, as a user meets them."""

from __future__ import annotations

import importlib.machinery
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from envpack.analyzer.api import analyze, parse_hint, project_settings
from envpack.errors import UsageError
from tests.analyzer.ccompile import compile_c, needs_gcc
from tests.conftest import FixtureVenv
from tests.wheels import build_wheel


def _proc(tmp_path: Path, body: str, name: str = "proc.py") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def _names(spec: object) -> set[str]:
    return {d.name for d in spec.distributions}  # type: ignore[attr-defined]


def test_ships_what_runs_and_nothing_else(fixture_venv: FixtureVenv, tmp_path: Path) -> None:
    proc = _proc(tmp_path, "import fxcore\nimport fxns.a\n")
    spec = analyze([proc], python=fixture_venv.python)
    assert spec.complete, spec.errors
    # yaml -> PyYAML; fxensured through a function fxcore calls at import; one namespace portion
    assert _names(spec) == {"fx-core", "PyYAML", "fx-ensured", "fx-ns-a"}
    core = spec.distribution("fx-core")
    assert core is not None
    assert core.why == ("proc", "fxcore")
    reasons = {r.name: r.reason for r in core.left_out}
    assert reasons["fx-typing-only"] == "installed, not imported"  # TYPE_CHECKING only
    assert reasons["fx-lazydep"] == "installed, not imported"  # lazy, listed below instead
    assert any(lz.module == "fxlazy" and lz.distribution == "fx-lazydep" for lz in spec.lazy)
    assert [f.arcname for f in spec.local] == ["proc.py"]


def test_include_lazy_by_distribution_name(fixture_venv: FixtureVenv, tmp_path: Path) -> None:
    proc = _proc(tmp_path, "import fxcore\n")
    spec = analyze([proc], python=fixture_venv.python, include_lazy=["fx-lazydep"])
    assert "fx-lazydep" in _names(spec)
    assert "fx-lazydep" in _names(analyze([proc], python=fixture_venv.python, include_lazy=["all"]))


def test_hint_can_name_a_distribution(fixture_venv: FixtureVenv, tmp_path: Path) -> None:
    proc = _proc(tmp_path, "import fxcore\n")
    spec = analyze([proc], python=fixture_venv.python, hints={"fxcore": ["fx-unused"]})
    assert "fx-unused" in _names(spec)
    assert "fx-unused" not in _names(analyze([proc], python=fixture_venv.python))


def test_project_settings_hints(fixture_venv: FixtureVenv, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.envpack]\nhints = { fxcore = ["fxunused"] }\ninclude-lazy = ["fxlazy"]\n'
    )
    proc = _proc(tmp_path, "import fxcore\n")
    assert {"fx-unused", "fx-lazydep"} <= _names(analyze([proc], python=fixture_venv.python))


def test_data_by_hand_from_project_settings_and_argument(
    fixture_venv: FixtureVenv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.envpack]\ndata = ["models/*.json"]\n')
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "bdt_2018.json").write_text("{}")
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "eff.csv").write_text("x")
    proc = _proc(tmp_path, "import sys\nM = open(sys.argv[1])\n")
    monkeypatch.chdir(tmp_path / "tables")  # --data is relative to the current directory
    spec = analyze([proc], python=fixture_venv.python, data=["eff.csv"])
    local = {f.arcname: (f.kind, f.why) for f in spec.local if f.kind == "data"}
    assert local == {
        "models/bdt_2018.json": ("data", f"added by {tmp_path}/pyproject.toml 'models/*.json'"),
        "tables/eff.csv": ("data", "added by --data 'eff.csv'"),
    }
    assert f"{proc}:2: open: path not resolved; add it with --data if workers need it" in (
        spec.warnings
    )
    (tmp_path / "pyproject.toml").write_text('[tool.envpack]\ndata = "models"\n')
    with pytest.raises(UsageError, match="data must be a list of paths or globs"):
        analyze([proc], python=fixture_venv.python)


def test_bad_project_settings_are_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.envpack]\nhints = { fxcore = "x" }\n')
    with pytest.raises(UsageError, match="hints must map"):
        project_settings(tmp_path)


def test_editable_install_ships_source_as_local(fixture_venv: FixtureVenv, tmp_path: Path) -> None:
    spec = analyze([_proc(tmp_path, "import fxedit\n")], python=fixture_venv.python)
    edit = spec.distribution("fx-edit")
    assert edit is not None
    assert edit.editable
    assert all(".dist-info" in f for f in edit.files)
    local = {f.arcname: f.path for f in spec.local}
    assert local["fxedit/__init__.py"] == str(fixture_venv.editable_src / "fxedit" / "__init__.py")
    assert "fx-ensured" in _names(spec)  # the editable code's own imports are followed


def test_every_missing_import_reported_with_location(
    fixture_venv: FixtureVenv, tmp_path: Path
) -> None:
    body = "import json\nimport nope_a\n\nclass P:\n    def process(self):\n        import nope_b\n"
    proc = _proc(tmp_path, body)
    spec = analyze([proc], python=fixture_venv.python)
    assert not spec.complete
    assert any(f"{proc}:2:" in e and "nope_a" in e for e in spec.errors)
    assert any(f"{proc}:6:" in e and "nope_b" in e for e in spec.errors)


def test_optional_absent_import_is_a_warning(fixture_venv: FixtureVenv, tmp_path: Path) -> None:
    body = "try:\n    import nope_fast\nexcept ImportError:\n    nope_fast = None\n"
    spec = analyze([_proc(tmp_path, body)], python=fixture_venv.python)
    assert spec.complete
    assert len([w for w in spec.warnings if "nope_fast" in w and "optional" in w]) == 1
    assert not any("'nt'" in w for w in spec.warnings)  # the stdlib's own fallbacks stay quiet


def test_local_helpers_and_data_files(fixture_venv: FixtureVenv, tmp_path: Path) -> None:
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers" / "__init__.py").write_text("from .calib import K\n")
    (tmp_path / "helpers" / "calib.py").write_text("K = 2\n")
    (tmp_path / "corrections").mkdir()
    (tmp_path / "corrections" / "sf.json").write_text("{}")
    body = 'import json\nfrom helpers import K\nSF = json.load(open("corrections/sf.json"))\n'
    spec = analyze([_proc(tmp_path, body)], python=fixture_venv.python)
    kinds = {f.arcname: f.kind for f in spec.local}
    assert kinds == {
        "proc.py": "module",
        "helpers/__init__.py": "module",
        "helpers/calib.py": "module",
        "corrections/sf.json": "data",
    }


def test_native_libraries_of_shipped_extensions(fixture_venv: FixtureVenv, tmp_path: Path) -> None:
    spec = analyze([_proc(tmp_path, "import yaml\n")], python=fixture_venv.python)
    kinds = {n.soname: n.kind for n in spec.native}
    assert kinds.get("libc.so.6") == "system"
    assert spec.glibc is not None
    libpython = [n for n in spec.native if n.soname.startswith("libpython")]
    if spec.interpreter.libpython:  # built shared, as the pyenv Python here is
        assert libpython
        assert libpython[0].kind == "bundle"


def test_two_analyses_are_byte_identical(fixture_venv: FixtureVenv, tmp_path: Path) -> None:
    proc = _proc(tmp_path, "import fxcore\nimport fxns.a\n")
    first = analyze([proc], python=fixture_venv.python).to_json()
    assert analyze([proc], python=fixture_venv.python).to_json() == first


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("proc.py", None, "no such file"),
        ("data.txt", "x", "not a Python source file"),
    ],
)
def test_bad_paths_are_usage_errors(
    tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError, match=message):
        analyze([path])


def test_syntax_error_names_file_line_col(tmp_path: Path) -> None:
    proc = _proc(tmp_path, "import json\n\ndef f(:\n    pass\n")
    with pytest.raises(UsageError, match=rf"{proc}:3:\d+"):
        analyze([proc])


@pytest.mark.parametrize("bad", ["x", "=a", "x=", "x=,"])
def test_parse_hint_rejects_malformed(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_hint(bad)


def test_parse_hint() -> None:
    assert parse_hint("uproot.extras=lz4, zstandard") == ("uproot.extras", ("lz4", "zstandard"))


@needs_gcc
def test_missing_library_fails_only_for_modules_that_are_imported(tmp_path: Path) -> None:
    # Two distributions ship an extension linked to a library that no longer exists. One of
    # them imports it at module level (an error); the other never does (numba's tbbpool
    # case: a warning), though both are shipped whole.
    gone = compile_c("foo.c", tmp_path / "gone" / "libgone.so")
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    files: dict[str, dict[str, bytes]] = {}
    for pkg, init in (("fxnatused", "from . import _ext\n"), ("fxnatidle", "")):
        ext = compile_c("ext.c", tmp_path / pkg / f"_ext{suffix}", link=[gone])
        files[pkg] = {f"{pkg}/__init__.py": init.encode(), f"{pkg}/_ext{suffix}": ext.read_bytes()}
    shutil.rmtree(gone.parent)
    wheels = tmp_path / "wheels"
    for pkg, extra in files.items():
        meta = f"Metadata-Version: 2.1\nName: {pkg}\nVersion: 1.0\n"
        build_wheel(tmp_path, wheels, metadata=meta, extra_files=extra)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--target", str(site)]
    subprocess.run([*pip, *map(str, sorted(wheels.glob("*.whl")))], check=True)

    idle = analyze([_proc(tmp_path, "import fxnatidle\n")], python=venv / "bin" / "python")
    assert idle.complete, idle.errors
    assert any("libgone.so" in w and "never imported" in w for w in idle.warnings)

    used = analyze([_proc(tmp_path, "import fxnatused\n")], python=venv / "bin" / "python")
    assert any(e.startswith("libgone.so: not found") for e in used.errors)


def test_exclude_from_the_caller_and_pyproject(fixture_venv: FixtureVenv, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.envpack]\nexclude = ["fxpsutil._pswindows", "fx_cluster"]\n'
    )
    body = (
        "import fxpsutil\n"
        "import distributed\n"  # not installed: a dead end without --exclude
        "from distributed.deploy import LocalCluster\n"
        "class Processor:\n"
        "    def process(self, events):\n"
        "        from fx_cluster import Client\n"
        "        return Client\n"
    )
    proc = _proc(tmp_path, body)
    refused = analyze([proc], python=fixture_venv.python)
    assert [e.split(": ")[1] for e in refused.errors] == ["cannot import 'distributed'"] * 2
    spec = analyze([proc], python=fixture_venv.python, exclude=["distributed"])
    assert spec.complete, spec.errors
    pyproject = str(tmp_path / "pyproject.toml")
    got = {e.module: (e.by, [s.rsplit("/", 1)[1] for s in e.sites]) for e in spec.excluded}
    assert got == {
        "distributed": (("cli",), ["proc.py:2", "proc.py:3"]),
        "fx_cluster": ((pyproject,), ["proc.py:6"]),
        "fxpsutil._pswindows": ((pyproject,), []),
    }
    # Never shipped, even inside a distribution that ships whole.
    psutil = spec.distribution("fx-psutil")
    assert psutil is not None and "fxpsutil/_pslinux.py" in psutil.files
    assert not [f for f in psutil.files if "_pswindows" in f]
    assert psutil.size == sum((Path(psutil.location) / f).stat().st_size for f in psutil.files)
    with pytest.raises(UsageError, match="expected a module name"):
        analyze([proc], python=fixture_venv.python, exclude=["not a module"])


def test_every_missing_import_error_says_how_to_resolve_it(
    fixture_venv: FixtureVenv, tmp_path: Path
) -> None:
    body = "import fxcore\nimport OpenSSL.SSL\nimport fx_winonly\nimport nope_zz.sub\n"
    spec = analyze([_proc(tmp_path, body)], python=fixture_venv.python)
    python = spec.interpreter.executable
    by_module = {e.split("'")[1]: e for e in spec.errors}
    assert set(by_module) == {"OpenSSL", "fx_winonly", "nope_zz"}
    # install: the distribution, when the import name is known to map to one (a curated
    # table; the Requires-Dist of what is shipped: fx-core requires fx-winonly), else the module
    assert f"to resolve: {python} -m pip install pyOpenSSL;" in by_module["OpenSSL"]
    assert f"to resolve: {python} -m pip install fx-winonly;" in by_module["fx_winonly"]
    assert "install the distribution that provides 'nope_zz' into" in by_module["nope_zz"]
    for module, error in by_module.items():
        assert f"--exclude {module} (or [tool.envpack] exclude)" in error
        assert f"--hint {module}=PROVIDER" in error


def test_hint_resolves_a_missing_import_to_its_provider(
    fixture_venv: FixtureVenv, tmp_path: Path
) -> None:
    # Something provides the module at run time (an import hook): say what ships for it.
    proc = _proc(tmp_path, "import hooked_mod.sub\n")
    assert not analyze([proc], python=fixture_venv.python).complete
    spec = analyze([proc], python=fixture_venv.python, hints={"hooked_mod": ["fx-unused"]})
    assert spec.complete, spec.errors
    assert "fx-unused" in _names(spec)


def test_dead_ends_of_dask_style_programs(fixture_venv: FixtureVenv, tmp_path: Path) -> None:
    # The four patterns of issue 8 together, end to end: no errors, and what runs is shipped.
    body = "import fxdistributed\nimport fxrequests\nimport fxmetadata\nimport fxtaskvine\n"
    spec = analyze([_proc(tmp_path, body)], python=fixture_venv.python)
    assert spec.complete, spec.errors
    assert {"fx-toolz", "fx-psutil", "fx-lazy-importer", "fx-unused", "fx-dask"} <= _names(spec)
    warned = " ".join(spec.warnings)
    for module in ("fx_absent_snappy", "OpenSSL", "fx_absent_cvine_ext", "fxdask._task_spec"):
        assert f"optional import '{module}' is not installed" in warned
