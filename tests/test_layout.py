"""envpack.layout: the worker contract, written here and read by envpack-run (sh) and envpack."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from envpack import layout
from tests.runtime.envs import make_env, run


def _rec(path: str, data: bytes = b"x", mode: int = 0o644) -> layout.Record:
    return layout.Record(path, mode, len(data), hashlib.sha256(data).hexdigest(), None)


def test_manifest_is_json_one_record_per_line() -> None:
    records = [_rec("b"), _rec("a", mode=0o755), layout.Record("c", 0o777, 0, None, "a")]
    data = layout.manifest_bytes(records)
    lines = data.decode().splitlines()
    assert lines[0] == '{"schema": 2, "files": ['
    assert lines[-1] == "]}"
    assert [json.loads(line.rstrip(","))["path"] for line in lines[1:-1]] == ["a", "b", "c"]
    assert json.loads(data)["schema"] == layout.MANIFEST_SCHEMA
    assert layout.parse_manifest(data) == sorted(records, key=lambda r: r.path)
    assert layout.manifest_hash(data) == hashlib.sha256(data).hexdigest()[:16]


@pytest.mark.parametrize(
    "record",
    [
        _rec("site-packages/a b/\u00e9t\u00e9 \u2028 \U0001f600.py"),
        _rec('odd/"quoted"\\back/slash.py', mode=0o4755),
        layout.Record("bin/python", 0o777, 0, None, "python3.11"),
        layout.Record("lib/l\u00efnk", 0o777, 0, None, '../"t\u00e4rget"\\'),
        layout.Record("big.bin", 0o644, 10**12, "f" * 64, None),
        layout.Record("unhashed", 0o600, 0, None, None),
    ],
)
def test_manifest_lines_are_what_json_dumps_writes(record: layout.Record) -> None:
    """The fast line writer must not change one byte: the env's name is the manifest's hash."""
    data = layout.manifest_bytes([record])
    line = data.decode().split("\n")[1]  # not splitlines(): U+2028 is not a line break here
    assert line == json.dumps(record.to_json(), ensure_ascii=False)


def test_empty_manifest() -> None:
    assert layout.parse_manifest(layout.manifest_bytes([])) == []


def test_duplicates_and_control_characters_are_refused() -> None:
    with pytest.raises(layout.LayoutError, match="listed twice"):
        layout.manifest_bytes([_rec("a"), _rec("a")])
    with pytest.raises(layout.LayoutError, match="control character"):
        layout.manifest_bytes([layout.Record("a", 0o777, 0, None, "x\ny")])
    with pytest.raises(layout.LayoutError, match="control character"):
        layout.links_bytes(["data\rfile"])


def test_summary_and_lock_round_trip() -> None:
    text = layout.summary_bytes("0123456789abcdef", [_rec("a")], {layout.MANIFEST: b"m"})
    summary = layout.parse_summary(text)
    assert summary["hash"] == "0123456789abcdef"
    assert int(summary["bytes"]) == 1 + 1 + len(text)  # a, the manifest, itself
    assert layout.lock_use(b"use=4096\n") == 4096
    assert layout.lock_use(b"") is None
    assert layout.is_hash("0123456789abcdef") and not layout.is_hash("0123456789ABCDEF")


def test_the_runner_reads_what_layout_writes(tmp_path: Path) -> None:
    """Names JSON escapes (quote, backslash), spaces and non-ASCII: the runner's sed must
    recover each exactly, or it would refuse a real environment."""
    odd = {
        'lib/say "hi".txt': "quoted",
        "lib/back\\slash.txt": "backslash",
        "lib/with space/ü.py": "x = 'ü'\n",
    }
    env = make_env(tmp_path, files=odd, symlinks={"lib/alias ü": "with space/ü.py"})
    manifest = (env.root / layout.MANIFEST).read_text(encoding="utf-8")
    assert '\\"hi\\"' in manifest and "back\\\\slash" in manifest and "ü" in manifest
    cache = tmp_path / "c"
    res = run(
        ["-e", str(env.tarball), "sh", "-c", 'cat "$ENVPACK_PREFIX/lib/alias ü"'],
        cache=cache, cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout == "x = 'ü'\n"
    assert (cache / env.hash / 'lib/say "hi".txt').read_text() == "quoted"
    res = run(["-e", str(env.tarball), "true"], cache=tmp_path / "c2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
