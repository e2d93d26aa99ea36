"""The parse cache is keyed on content: another venv made from the same wheels analyzes warm.

Two real venvs at different paths, the same fixture wheels installed into each by pip; the
evidence is the cache's own counters (files parsed, files hashed), never a timing.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from envpack.analyzer._parsecache import digest
from envpack.analyzer.imports import ImportGraph, find_imports
from envpack.analyzer.interpreter import probe
from tests.conftest import FixtureVenv

WHEELS = ("fx_psutil", "fx_taskvine", "fx_ensured", "fx_validators")
PROC = "import fxpsutil\nimport fxtaskvine\nimport fxvalidators\nimport fxensured\n"


def _venv(root: Path, fixture_venv: FixtureVenv) -> Path:
    """A fresh venv at ``root`` with the fixture wheels of WHEELS installed by pip."""
    wheels = fixture_venv.root.parent / f"{fixture_venv.root.name}-wheels"
    chosen = sorted(str(w) for w in wheels.glob("*.whl") if w.name.startswith(WHEELS))
    assert len(chosen) == len(WHEELS)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    pip = [str(fixture_venv.python), "-m", "pip", "--python", str(python), "install", "-q"]
    subprocess.run(
        [*pip, "--no-index", "--no-deps", "--disable-pip-version-check", *chosen], check=True
    )
    return python


def _analyze(tmp_path: Path, python: Path) -> ImportGraph:
    proc = tmp_path / "proc" / "proc.py"
    if not proc.exists():
        proc.parent.mkdir()
        proc.write_text(PROC)
    return find_imports([proc], probe(python), cache_dir=tmp_path / "cache")


def _site_files(graph: ImportGraph) -> dict[str, str]:
    return {n: m.path for n, m in graph.modules.items() if m.kind == "site" and m.path}


@pytest.fixture(scope="module")
def two_venvs(
    tmp_path_factory: pytest.TempPathFactory, fixture_venv: FixtureVenv
) -> tuple[Path, Path]:
    """Made once for the module (2 s each); a test that edits one puts the file back."""
    tmp = tmp_path_factory.mktemp("two-venvs")
    return _venv(tmp / "alice" / "venv", fixture_venv), _venv(
        tmp / "bob" / "elsewhere", fixture_venv
    )


def test_a_second_venv_from_the_same_wheels_analyzes_warm(
    tmp_path: Path, two_venvs: tuple[Path, Path]
) -> None:
    first_py, second_py = two_venvs
    first = _analyze(tmp_path, first_py)
    files = _site_files(first)
    assert {"fxpsutil._pslinux", "fxtaskvine", "fxvalidators"} <= files.keys()
    assert first.parse_stats.parsed >= len(files)

    second = _analyze(tmp_path, second_py)
    # Nothing parsed: every summary came from the first venv's files, found by content. The
    # files were read once to learn that (the stat table knows only the first venv's paths).
    assert second.parse_stats.parsed == 0
    assert second.parse_stats.misses == 0 and second.parse_stats.hits >= len(files)
    # Read to hash: the second venv's files only (the stdlib and proc.py are known by stat).
    assert second.parse_stats.hashed == len(_site_files(second)) == len(files)
    # The same result, bound to the second venv's paths.
    assert second.modules.keys() == first.modules.keys()
    second_root = str(second_py.parent.parent)
    assert all(p.startswith(second_root) for p in _site_files(second).values())
    assert [(m.module, m.optional) for m in second.missing] == [
        (m.module, m.optional) for m in first.missing
    ]
    for m in second.missing:
        if "/site-packages/" in m.site:
            assert m.site.startswith(second_root), m.site

    # And the second run of the second venv reads nothing: its stats are known now.
    again = _analyze(tmp_path, second_py)
    assert again.parse_stats.parsed == 0 and again.parse_stats.hashed == 0
    assert again == second


def test_an_edit_record_does_not_know_of_is_seen(
    tmp_path: Path, two_venvs: tuple[Path, Path]
) -> None:
    first_py, second_py = two_venvs
    first = _analyze(tmp_path, first_py)
    assert "ssl" not in first.modules
    before = _analyze(tmp_path, second_py)  # now known by path and by content
    assert "ssl" not in before.modules
    (second_site,) = second_py.parent.parent.glob("lib/python*/site-packages")
    common = second_site / "fxpsutil" / "_common.py"
    # What RECORD lists is the digest the cache uses, before the edit.
    record = next(second_site.glob("fx_psutil-*.dist-info")) / "RECORD"
    rows = {row[0]: row[1] for row in csv.reader(record.read_text().splitlines()) if row}
    assert rows["fxpsutil/_common.py"] == "sha256=" + digest(common.read_bytes())

    # An edit in place of an installed file, same size, mtime put back: RECORD still lists the
    # old hash and the stat table the old mtime and size, so a cache trusting RECORD, or
    # path, mtime and size, would serve the old summary. The content key sees the new import.
    st = common.stat()
    text = common.read_text()
    assert "import sys\n" in text
    common.write_text(text.replace("import sys\n", "import ssl\n", 1))
    os.utime(common, ns=(st.st_atime_ns, st.st_mtime_ns))
    try:
        assert common.stat().st_size == st.st_size and common.stat().st_mtime_ns == st.st_mtime_ns
        assert rows["fxpsutil/_common.py"] != "sha256=" + digest(common.read_bytes())

        second = _analyze(tmp_path, second_py)
        assert "ssl" in second.modules
        assert second.modules["ssl"].chain[-2:] == ("fxpsutil._common", "ssl")
        # Read: _common.py (its ctime moved) and the stdlib modules ssl brings, new to the walk.
        new = {n for n, m in second.modules.items() if n not in before.modules and m.path}
        new = {n for n in new if (second.modules[n].path or "").endswith(".py")}
        assert second.parse_stats.hashed == 1 + len(new)
        # The first venv's file is untouched and still served from the cache.
        assert "ssl" not in _analyze(tmp_path, first_py).modules
    finally:
        common.write_text(text)  # the venvs are the module's


def test_an_older_formats_cache_file_is_removed_by_the_first_write(tmp_path: Path) -> None:
    from envpack.analyzer._parsecache import FORMAT, ParseCache, Parser

    cache = tmp_path / "cache"
    cache.mkdir()
    tag = f"py{sys.version_info[0]}{sys.version_info[1]}"
    old = [cache / f"imports-v{FORMAT - 1}-{tag}.marshal", cache / f"callgraphs-v1-{tag}.marshal"]
    for path in old:
        path.write_bytes(b"\0" * 1000)  # what an envpack before an upgrade left
    src = tmp_path / "m.py"
    src.write_text("import json\n")
    pc = ParseCache(cache)
    Parser(pc, jobs=1).get(str(src), local=False)
    pc.save()
    assert not any(path.exists() for path in old)
    assert (cache / f"imports-v{FORMAT}-{tag}.marshal").exists()
