"""The whole-result cache on real venvs: a hit is the fresh Spec, and every change that could
alter the result makes the next analysis a fresh one.

Each test analyzes once (stored), checks the entry would be served, changes one thing the
analysis consulted, and checks the entry is no longer served and that the next analysis is
what ``cache=False`` (a fresh analysis) gives, and differs from the first where it should.
"""

from __future__ import annotations

import importlib.machinery
import marshal
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from envpack.analyzer import _resultcache
from envpack.analyzer.api import analyze
from envpack.spec import Spec
from tests.analyzer.ccompile import compile_c, needs_gcc
from tests.conftest import BareVenv, FixtureVenv
from tests.wheels import build_wheel


@pytest.fixture(autouse=True)
def cache_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A result cache of the test's own (the parse cache with it: the venvs are small), not
    beside the processors: a directory appearing there is a change of what an import finds."""
    home = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


def _served(paths: Sequence[Path], python: Path, **kw: object) -> bool:
    key = _resultcache.analysis_key(paths, python=python, **kw)  # type: ignore[arg-type]
    return _resultcache.lookup(key) is not None


def _fresh_after_change(paths: Sequence[Path], python: Path, **kw: object) -> Spec:
    """The analysis after a change: not served from the entry, and equal to a fresh one."""
    assert not _served(paths, python, **kw), "a stale result would have been served"
    spec = analyze(paths, python=python, **kw)  # type: ignore[arg-type]
    fresh = analyze(paths, python=python, cache=False, **kw)  # type: ignore[arg-type]
    assert spec.to_json() == fresh.to_json()
    return spec


def _stored(paths: Sequence[Path], python: Path, **kw: object) -> Spec:
    spec = analyze(paths, python=python, **kw)  # type: ignore[arg-type]
    assert _served(paths, python, **kw)
    return spec


def _names(spec: Spec) -> set[str]:
    return {d.name for d in spec.distributions}


def test_a_hit_is_the_fresh_spec_byte_for_byte(fixture_venv: FixtureVenv, tmp_path: Path) -> None:
    (tmp_path / "helper.py").write_text("import fxns.a\n")
    (tmp_path / "sf.json").write_text("{}")
    proc = tmp_path / "proc.py"
    proc.write_text('import fxcore, helper\nSF = open("sf.json")\n')
    assert not _served([proc], fixture_venv.python)
    first = _stored([proc], fixture_venv.python)
    hit = analyze([proc], python=fixture_venv.python)
    assert hit.to_json() == first.to_json()
    assert hit.to_json() == analyze([proc], python=fixture_venv.python, cache=False).to_json()
    assert {"fx-core", "fx-ns-a"} <= _names(hit)
    # Another option is another result.
    assert not _served([proc], fixture_venv.python, include_lazy=["all"])


def test_cache_false_neither_reads_nor_writes(fixture_venv: FixtureVenv, tmp_path: Path) -> None:
    proc = tmp_path / "proc.py"
    proc.write_text("import fxcore\n")
    analyze([proc], python=fixture_venv.python, cache=False)
    assert not _served([proc], fixture_venv.python)


def test_editing_a_local_module_to_import_a_dist(fixture_venv: FixtureVenv, tmp_path: Path) -> None:
    helper = tmp_path / "helper.py"
    helper.write_text("X = 1\n")
    proc = tmp_path / "proc.py"
    proc.write_text("import helper\n")
    assert "PyYAML" not in _names(_stored([proc], fixture_venv.python))
    helper.write_text("import yaml\n")  # the same size: only the stat (or content) tells
    assert "PyYAML" in _names(_fresh_after_change([proc], fixture_venv.python))


def test_a_module_dropped_beside_the_processor_shadows_a_dist(
    fixture_venv: FixtureVenv, tmp_path: Path
) -> None:
    proc = tmp_path / "proc.py"
    proc.write_text("import yaml\n")
    assert "PyYAML" in _names(_stored([proc], fixture_venv.python))
    (tmp_path / "yaml.py").write_text("LOCAL = True\n")  # the roots' dir is first on the path
    spec = _fresh_after_change([proc], fixture_venv.python)
    assert "PyYAML" not in _names(spec)
    assert "yaml.py" in {f.arcname for f in spec.local}


def test_a_module_dropped_into_site_packages(bare_venv: BareVenv, tmp_path: Path) -> None:
    proc = tmp_path / "proc.py"
    proc.write_text("import fxdropped\n")
    assert _stored([proc], bare_venv.python).errors
    (bare_venv.site_packages / "fxdropped.py").write_text("X = 1\n")
    spec = _fresh_after_change([proc], bare_venv.python)
    assert not spec.errors
    assert any("fxdropped.py: on sys.path but in no distribution" in w for w in spec.warnings)


def test_installing_and_removing_a_wheel(bare_venv: BareVenv, tmp_path: Path) -> None:
    src = tmp_path / "wheel-src"  # not beside the processor, where it would be a namespace
    (src / "src" / "fxnew").mkdir(parents=True)
    (src / "src" / "fxnew" / "__init__.py").write_text("import json\n")
    wheel = build_wheel(
        src, tmp_path / "wheels", metadata="Metadata-Version: 2.1\nName: fx-new\nVersion: 1.0\n"
    )
    proc = tmp_path / "proc.py"
    proc.write_text("import fxnew\n")
    assert _stored([proc], bare_venv.python).errors
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
    target = ["--target", str(bare_venv.site_packages)]
    subprocess.run([*pip, *target, str(wheel)], check=True, capture_output=True)
    installed = _fresh_after_change([proc], bare_venv.python)
    assert _names(installed) == {"fx-new"}
    assert _served([proc], bare_venv.python)
    # An uninstall (what pip does: the files and the .dist-info go) is a change too.
    for path in sorted(bare_venv.site_packages.rglob("*"), reverse=True):
        if path.relative_to(bare_venv.site_packages).parts[0].startswith(("fxnew", "fx_new")):
            path.rmdir() if path.is_dir() else path.unlink()
    assert _fresh_after_change([proc], bare_venv.python).errors


def test_a_distribution_rewritten_in_place(bare_venv: BareVenv, tmp_path: Path) -> None:
    meta = bare_venv.site_packages / "fx_hot-1.0.dist-info"
    meta.mkdir()
    (bare_venv.site_packages / "fxhot.py").write_text("X = 1\n")
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: fx-hot\nVersion: 1.0\n")
    (meta / "RECORD").write_text("fxhot.py,,\nfx_hot-1.0.dist-info/METADATA,,\n")
    proc = tmp_path / "proc.py"
    proc.write_text("import fxhot\n")
    analyze([proc], python=bare_venv.python, cache=False)  # the index's own cache holds it now
    first = _stored([proc], bare_venv.python)
    assert [(d.name, d.version) for d in first.distributions] == [("fx-hot", "1.0")]
    # A hot fix in place (no directory gains or loses a name): the version and RECORD change.
    with open(meta / "METADATA", "r+") as fh:
        fh.write("Metadata-Version: 2.1\nName: fx-hot\nVersion: 1.1\n")
    with open(meta / "RECORD", "a") as fh:
        fh.write("fx_hot-1.0.dist-info/RECORD,,\n")
    spec = _fresh_after_change([proc], bare_venv.python)
    assert [(d.name, d.version) for d in spec.distributions] == [("fx-hot", "1.1")]


@needs_gcc
def test_an_elf_file_rebuilt_or_a_library_earlier_on_its_rpath(
    fixture_venv: FixtureVenv, tmp_path: Path
) -> None:
    lib = compile_c("foo.c", tmp_path / "b" / "libfxfoo.so")
    (tmp_path / "a").mkdir()
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    ext = tmp_path / "work" / f"fxext{suffix}"
    rpath = [tmp_path / "a", tmp_path / "b"]
    compile_c("ext.c", ext, link=[lib], rpath=rpath)
    proc = tmp_path / "work" / "proc.py"
    proc.write_text("import fxext\n")

    def foo(spec: Spec) -> str | None:
        return next((n.path for n in spec.native if n.soname == "libfxfoo.so"), "not needed")

    assert foo(_stored([proc], fixture_venv.python)) == str(lib)
    shutil.copy(lib, tmp_path / "a")  # found first now, as ld.so would
    assert foo(_fresh_after_change([proc], fixture_venv.python)) == str(tmp_path / "a" / lib.name)
    compile_c("ext.c", ext, rpath=rpath)  # rebuilt without it
    assert foo(_fresh_after_change([proc], fixture_venv.python)) == "not needed"


def test_a_data_file_named_in_a_config_module(fixture_venv: FixtureVenv, tmp_path: Path) -> None:
    (tmp_path / "config.py").write_text('CFG = {"model": "models/m.json"}\n')
    (tmp_path / "models").mkdir()  # (a new directory beside the processor is a change anyway)
    proc = tmp_path / "proc.py"
    proc.write_text("import json\nfrom config import CFG\nM = json.load(open(CFG['model']))\n")
    first = _stored([proc], fixture_venv.python)
    assert "models/m.json" not in {f.arcname for f in first.local}
    (tmp_path / "models" / "m.json").write_text("{}")  # the file the config names appears
    assert "models/m.json" in {
        f.arcname for f in _fresh_after_change([proc], fixture_venv.python).local
    }


def test_a_file_added_to_a_shipped_data_directory(
    fixture_venv: FixtureVenv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "corrections" / "sub").mkdir(parents=True)
    (tmp_path / "corrections" / "a.json").write_text("{}")
    proc = tmp_path / "proc.py"
    proc.write_text("import fxcore\n")
    data = ["corrections"]
    monkeypatch.chdir(tmp_path)  # --data is relative to the current directory
    first = _stored([proc], fixture_venv.python, data=data)
    assert {"corrections/a.json"} <= {f.arcname for f in first.local}
    (tmp_path / "corrections" / "sub" / "b.json").write_text("{}")  # two levels down
    spec = _fresh_after_change([proc], fixture_venv.python, data=data)
    assert "corrections/sub/b.json" in {f.arcname for f in spec.local}


def test_project_settings_are_consulted(fixture_venv: FixtureVenv, tmp_path: Path) -> None:
    proc = tmp_path / "proc.py"
    proc.write_text("import fxcore\n")
    assert "fx-unused" not in _names(_stored([proc], fixture_venv.python))
    (tmp_path / "pyproject.toml").write_text('[tool.envpack]\nhints = { fxcore = ["fxunused"] }\n')
    assert "fx-unused" in _names(_fresh_after_change([proc], fixture_venv.python))


def test_the_environment_is_part_of_the_key(
    fixture_venv: FixtureVenv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = tmp_path / "proc.py"
    proc.write_text("import fxcore\n")
    spec = _stored([proc], fixture_venv.python)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    # The probe runs -I (PYTHONPATH is not the target's path), so the Spec stays; a target
    # that is a wrapper script could read it, so the stored result is not assumed to.
    assert _fresh_after_change([proc], fixture_venv.python).to_json() == spec.to_json()
    monkeypatch.chdir(tmp_path.parent)
    assert not _served([proc], fixture_venv.python)  # relative data paths mean another thing


def test_a_racy_stat_is_checked_by_content(fixture_venv: FixtureVenv, tmp_path: Path) -> None:
    helper = tmp_path / "helper.py"
    helper.write_text("X = 1\n")
    proc = tmp_path / "proc.py"
    proc.write_text("import helper\n")
    _stored([proc], fixture_venv.python)
    key = _resultcache.analysis_key([proc], python=fixture_venv.python)
    assert key is not None
    entry_file = _resultcache._entry_file(key)
    # A second write within the clock tick of the first leaves the stat as it was: make the
    # stored stat the edited file's own, as such a write would, and only the fingerprint that
    # a just-written file carries can tell.
    helper.write_text("import yaml\n")
    entry = marshal.loads(entry_file.read_bytes())
    now = _resultcache._stat(str(helper))
    rows = {row[0]: row for row in entry["paths"]}
    assert rows[str(helper)][3] is not None, "a just-written file carries its fingerprint"
    entry["paths"] = [
        (p, k, now, fp, racy) if p == str(helper) else (p, k, st, fp, racy)
        for p, k, st, fp, racy in entry["paths"]
    ]
    entry_file.write_bytes(marshal.dumps(entry))
    assert _resultcache.lookup(key) is None
    assert "PyYAML" in _names(_fresh_after_change([proc], fixture_venv.python))
