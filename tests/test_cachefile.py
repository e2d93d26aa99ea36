from __future__ import annotations

from pathlib import Path

import pytest

from envpack import _cachefile


def test_round_trip_and_unreadable_files_read_as_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "c.marshal"
    assert _cachefile.load(path) is None  # absent
    assert _cachefile.save(path, {"a": (1, b"x")})
    assert _cachefile.load(path) == {"a": (1, b"x")}
    path.write_bytes(b"\x00not marshal")
    assert _cachefile.load(path) is None
    assert _cachefile.load(None) is None


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "c.marshal"
    assert _cachefile.save(path, [1, 2])
    assert not _cachefile.save(path, object())  # not marshallable: ValueError inside
    assert _cachefile.load(path) == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["c.marshal"]


def test_cache_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _cachefile.cache_dir() == tmp_path / "envpack"


def test_older_formats_are_retired_not_other_caches(tmp_path: Path) -> None:
    names = ["imports-v8-py311.marshal", "imports-v10-py311.marshal", "imports-v9-py310.marshal"]
    names += ["callgraphs-v8-py311.marshal", "imports-vx-py311.marshal", "digests-v1.marshal"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    current = tmp_path / "imports-v9-py311.marshal"
    assert _cachefile.save(current, {})
    _cachefile.retire_other_formats(current)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "callgraphs-v8-py311.marshal",
        "digests-v1.marshal",
        "imports-v9-py310.marshal",  # another Python's: still read by envpack there
        "imports-v9-py311.marshal",
        "imports-vx-py311.marshal",
    ]
