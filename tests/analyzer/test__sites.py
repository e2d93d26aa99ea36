"""Third-party summaries made with a fresh .pyc's help are exactly those of a plain parse.

Real files and real bytecode: each source is written to disk and compiled by ``py_compile``
(timestamp and hash-based .pyc), then summarized through ``_parsecache.parse_file`` as the
walk does, and compared with ``_sites.summarize`` of the same bytes without bytecode.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import py_compile
from pathlib import Path

import pytest

from envpack.analyzer import _sites
from envpack.analyzer._parsecache import fresh_code, parse_file
from tests.conftest import FixtureVenv

_TOOLS = {"pip", "setuptools", "pkg_resources", "wheel"}
TRICKY = (Path(__file__).parent / "sites_tricky.txt").read_text()


def _write(tmp_path: Path, text: str, mode: py_compile.PycInvalidationMode | None = None) -> str:
    path = tmp_path / "tricky.py"
    path.write_text(text)
    cfile = importlib.util.cache_from_source(str(path))
    py_compile.compile(str(path), cfile=cfile, doraise=True, invalidation_mode=mode)
    return str(path)


def _plain(path: str) -> _sites.Summary:
    return _sites.summarize(Path(path).read_bytes(), path, False)


def _elided(path: str) -> list[str]:
    data = Path(path).read_bytes()
    code = fresh_code(path, data, os.stat(path).st_mtime)
    assert code is not None
    text = _sites.elide(data, code, _sites._match_lines(data, _sites._IMPORT_RE))
    assert text is not None
    return text.decode().split("\n")


def _body(lines: list[str], name: str) -> list[str]:
    """The lines of ``def name``'s body from its first statement, as TRICKY's parse has it."""
    tree = ast.parse(TRICKY)
    node = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name
    )
    return lines[node.body[0].lineno - 1 : node.end_lineno]


def test_elided_bodies_give_the_same_summary(tmp_path: Path) -> None:
    path = _write(tmp_path, TRICKY)
    _, summary = parse_file((path, False))
    assert summary == _plain(path)
    assert summary[4] is None and summary[5][6]  # parsed, with its function spans
    lines = _elided(path)
    source = TRICKY.split("\n")
    assert len(lines) == len(source)
    # blanked: what the extractor never reads (one "pass" on the body's last line)
    for name in ("decorated", "coro", "method", "deep", "prop", "multi_line_header"):
        body = [t.strip() for t in _body(lines, name) if t.strip()]
        assert body == ["pass"], name
    # after a docstring that is the only place "import" is written: the rest goes
    doc = _body(lines, "doc_import")
    assert doc[:5] == _body(source, "doc_import")[:5]
    assert [t.strip() for t in doc[5:] if t.strip()] == ["pass"]
    # kept: a lazy import; module-level callers (directly, from a class body, in dropped code
    # or through another kept body); a one-line def; lines at column 0 inside the body
    for name in (
        "uses_import",
        "called_at_top",
        "helper",
        "plain",
        "never_called_but_dropped",
        "unindented_doc",
        "last_line_string",
    ):
        assert _body(lines, name) == _body(source, name), name
    assert "def one_liner(x): return x * 2" in lines


def test_stale_or_missing_pyc_is_not_used(tmp_path: Path) -> None:
    path = _write(tmp_path, TRICKY)
    data = Path(path).read_bytes()
    mtime = os.stat(path).st_mtime
    assert fresh_code(path, data, mtime) is not None
    assert fresh_code(path, data + b"\n", mtime) is None  # another size
    assert fresh_code(path, data, mtime + 5) is None  # another mtime
    os.unlink(importlib.util.cache_from_source(path))
    assert fresh_code(path, data, mtime) is None
    assert parse_file((path, False))[1] == _plain(path)


@pytest.mark.parametrize(
    "mode",
    [py_compile.PycInvalidationMode.CHECKED_HASH, py_compile.PycInvalidationMode.UNCHECKED_HASH],
)
def test_hash_based_pyc_is_checked_against_the_source(
    tmp_path: Path, mode: py_compile.PycInvalidationMode
) -> None:
    path = _write(tmp_path, TRICKY, mode)
    data = Path(path).read_bytes()
    st = os.stat(path)
    assert fresh_code(path, data, st.st_mtime) is not None
    assert parse_file((path, False))[1] == _plain(path)
    # the same size and mtime, other bytes: an unchecked .pyc is not trusted either
    edited = data.replace(b"return x * 2", b"return x * 3")
    Path(path).write_bytes(edited)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fresh_code(path, edited, st.st_mtime) is None


def test_bytecode_that_does_not_fit_falls_back_to_the_parse(tmp_path: Path) -> None:
    """A stale .pyc that passes the timestamp check (equal size and mtime, as Python trusts):
    the text its bytecode would blank does not parse, so the file is parsed as it is."""
    old = "# m\n\ndef f():\n    x = 11\n    return x\nimport os\n"
    new = "# m\n\ndef f():\n    x = (\n    1,\n    2)\nimport os\n"
    assert len(new) == len(old)
    path = _write(tmp_path, old)
    st = os.stat(path)
    Path(path).write_text(new)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    data = Path(path).read_bytes()
    code = fresh_code(path, data, os.stat(path).st_mtime)
    assert code is not None  # what Python's import would run, too
    text = _sites.elide(data, code, _sites._match_lines(data, _sites._IMPORT_RE))
    assert text is not None
    with pytest.raises(SyntaxError):
        ast.parse(text)
    summary = parse_file((path, False))[1]
    assert summary == _plain(path)
    assert summary[4] is None and [s[1] for s in summary[0]] == ["os"]


def test_local_code_is_never_elided(tmp_path: Path) -> None:
    path = _write(tmp_path, TRICKY)
    data = Path(path).read_bytes()
    code = fresh_code(path, data, os.stat(path).st_mtime)
    assert _sites.summarize(data, path, True, code) == _sites.summarize(data, path, True)
    assert parse_file((path, True))[1] == _sites.summarize(data, path, True)


def test_installed_files_summarize_the_same(fixture_venv: FixtureVenv) -> None:
    """Every .py file pip installed (and compiled) into the fixture venv, but pip's own."""
    checked = elided = 0
    for file in sorted(fixture_venv.site_packages.rglob("*.py")):
        if file.relative_to(fixture_venv.site_packages).parts[0] in _TOOLS:
            continue  # (thousands of files: bench/summaries.py reads whole venvs)
        path = str(file)
        data = file.read_bytes()
        code = fresh_code(path, data, file.stat().st_mtime)
        if code is None:
            continue
        checked += 1
        elided += _sites.elide(data, code, _sites._match_lines(data, _sites._IMPORT_RE)) is not None
        assert parse_file((path, False))[1] == _plain(path), path
    assert checked > 20 and elided > 10


def test_bytecode_of_a_longer_text_never_fails_the_summary(tmp_path: Path) -> None:
    """A stale .pyc whose def ends past the file's last line: the file is parsed as it is."""
    old = "# m\n\ndef f():\n    x = 1\n    return x\n"
    new = "# m\n\ndef f():\n    return 1"
    new += "#" * (len(old) - len(new))
    path = _write(tmp_path, old)
    st = os.stat(path)
    Path(path).write_text(new)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fresh_code(path, Path(path).read_bytes(), os.stat(path).st_mtime) is not None
    summary = parse_file((path, False))[1]
    assert summary == _plain(path) and summary[4] is None
