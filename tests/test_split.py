"""The split form: the head and each layer as files, cut from the single file byte for byte."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from envpack import archive, layout
from envpack.archive import Entry
from envpack.build import write_layered
from envpack.errors import UsageError
from envpack.split import default_dir, split


def _tarball(tmp_path: Path, name: str, extra: bytes) -> Path:
    items = [
        Entry("bin/tool", 0o755, b"#!/bin/sh\necho hi\n", "python"),
        Entry("lib/big.bin", 0o644, bytes(range(256)) * 40_000, "numpy"),
        Entry("local/proc.py", 0o644, extra, "local"),
    ]
    kept, records = archive.digest(items)
    out = tmp_path / name
    out.parent.mkdir(parents=True, exist_ok=True)
    write_layered(out, kept, records, spec_json=b"{}\n", level=1)
    return out


def test_split_cuts_the_file_where_its_index_says(tmp_path: Path) -> None:
    tarball = _tarball(tmp_path, "envpack-a.tar.gz", b"x = 1\n")
    parts = split(tarball)
    assert parts is not None
    assert parts.head.parent == default_dir()
    index = layout.parse_index(dict(archive.read_meta(tarball))[layout.LAYERS])
    assert [p.name for p in parts.layers] == [
        layout.layer_file(e.hash, e.size, ".tar.gz") for e in index.layers
    ]
    blob = tarball.read_bytes()
    head = parts.head.read_bytes()
    body = b"".join(p.read_bytes() for p in parts.layers)
    assert head[: len(head) - index.trailer] + body + head[len(head) - index.trailer :] == blob
    # the head file alone is a tarball of the meta members
    listing = subprocess.run(
        ["tar", "tzf", str(parts.head)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert listing == [".envpack/", layout.SUMMARY, layout.MANIFEST, layout.SPEC, layout.LAYERS]


def test_two_envs_share_their_common_layer_files(tmp_path: Path) -> None:
    a = split(_tarball(tmp_path, "envpack-a.tar.gz", b"x = 1\n"), tmp_path / "split")
    b = split(_tarball(tmp_path / "other", "envpack-b.tar.gz", b"x = 2\n"), tmp_path / "split")
    assert a is not None and b is not None
    shared = set(a.layers) & set(b.layers)
    assert len(shared) == 2 and len(set(a.layers) | set(b.layers)) == 4  # only local differs
    again = split(tmp_path / "envpack-a.tar.gz", tmp_path / "split")
    assert again == a


def test_a_truncated_tarball_is_refused(tmp_path: Path) -> None:
    tarball = _tarball(tmp_path, "envpack-a.tar.gz", b"x = 1\n")
    cut = tmp_path / "envpack-cut.tar.gz"
    cut.write_bytes(tarball.read_bytes()[:2000])
    with pytest.raises(UsageError, match="truncated"):
        split(cut, tmp_path / "out")
    junk = tmp_path / "envpack-junk.tar.gz"
    junk.write_bytes(b"not a tarball\n" * 50)
    with pytest.raises(UsageError, match="not a readable envpack tarball"):
        split(junk, tmp_path / "out")
