"""The archive writer: deterministic layered tar, parallel multi-member gzip, manifest, summary,
and the piece cache that lets a rebuild compress only the layers that changed."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from envpack import archive, layout
from envpack.archive import Entry, Link
from envpack.build import write_layered, write_one_pass
from envpack.errors import BuildError


def entries(tmp_path: Path) -> list[Entry]:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(300_000) * 20)  # 6 MB: more than one gzip block
    return [
        Entry("bin/tool", 0o755, b"#!/bin/sh\necho hi\n", "g"),
        Entry("bin/alias", 0o777, Link("tool"), "g"),
        Entry("data/big.bin", 0o644, big, "g"),
        Entry("data/lazy.txt", 0o644, lambda: b"made on demand\n", "h"),
    ]


def write(
    tmp_path: Path, name: str, items: list[Entry], level: int = 1, pieces: Path | None = None
) -> Path:
    kept, records = archive.digest(items)
    out = tmp_path / name
    write_layered(
        out,
        kept,
        records,
        spec_json=b"{}\n",
        empty_dirs=["empty/dir"],
        level=level,
        pieces_dir=pieces,
    )
    return out


def test_same_entries_same_bytes_and_readable(tmp_path: Path) -> None:
    items = entries(tmp_path)
    a = write(tmp_path, "a.tar.gz", items)
    b = write(tmp_path, "b.tar.gz", list(reversed(items)))  # order of entries does not matter
    assert a.read_bytes() == b.read_bytes()
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(["tar", "xzf", str(a), "-C", str(dest)], check=True)
    assert (dest / "bin" / "tool").stat().st_mode & 0o777 == 0o755
    assert os.readlink(dest / "bin" / "alias") == "tool"
    assert (dest / "data" / "lazy.txt").read_text() == "made on demand\n"
    assert (dest / "empty" / "dir").is_dir()
    with tarfile.open(a) as tar:
        names = tar.getnames()
    assert names[:5] == [".envpack", layout.SUMMARY, layout.MANIFEST, layout.SPEC, layout.LAYERS]


def test_gzip_is_multi_member_and_header_clean() -> None:
    data = os.urandom(1 << 20) * 9  # 9 MB -> three 4 MB blocks
    blob = archive.compress_bytes(data, "gzip", 1)
    assert gzip.decompress(blob) == data
    assert blob.count(b"\x1f\x8b\x08") >= 3  # one member per block
    assert blob[3] & 0x08 == 0  # FLG: no file name stored
    assert blob[4:8] == b"\0\0\0\0"  # MTIME 0
    if shutil.which("gzip"):
        res = subprocess.run(["gzip", "-dc"], input=blob, capture_output=True, check=True)
        assert res.stdout == data


def test_hash_ignores_compressor_but_not_content(tmp_path: Path) -> None:
    items = entries(tmp_path)
    h1 = layout.manifest_hash(layout.manifest_bytes(archive.digest_entries(items)))
    changed = [*items[:3], Entry("data/lazy.txt", 0o644, b"other\n", "h")]
    h2 = layout.manifest_hash(layout.manifest_bytes(archive.digest_entries(changed)))
    moded = [Entry("bin/tool", 0o644, items[0].source, "g"), *items[1:]]
    h3 = layout.manifest_hash(layout.manifest_bytes(archive.digest_entries(moded)))
    assert len({h1, h2, h3}) == 3 and len(h1) == 16
    a = write(tmp_path, "a.tar.gz", items, level=1)
    b = write(tmp_path, "b.tar.gz", items, level=9)
    assert a.read_bytes() != b.read_bytes()
    meta_a = dict(archive.read_meta(a))
    meta_b = dict(archive.read_meta(b))
    assert meta_a[layout.MANIFEST] == meta_b[layout.MANIFEST]  # the layer index holds sizes
    assert meta_a[layout.SUMMARY].split(b"\n")[0] == meta_b[layout.SUMMARY].split(b"\n")[0]


def test_manifest_and_summary(tmp_path: Path) -> None:
    path = write(tmp_path, "a.tar.gz", entries(tmp_path))
    meta = dict(archive.read_meta(path))
    manifest = json.loads(meta[layout.MANIFEST])
    by_path = {f["path"]: f for f in manifest["files"]}
    assert by_path["bin/alias"] == {"path": "bin/alias", "mode": "0777", "target": "tool"}
    assert by_path["bin/tool"]["sha256"] == hashlib.sha256(b"#!/bin/sh\necho hi\n").hexdigest()
    summary = dict(line.split("=") for line in meta[layout.SUMMARY].decode().split())
    with tarfile.open(path) as tar:
        members = [m for m in tar.getmembers() if not m.isdir()]
        total = sum(m.size for m in members if m.isfile())
    # the 4 entries; summary, manifest, spec and layer index; one manifest per layer (g and h)
    assert int(summary["files"]) == len(members) == 10
    assert int(summary["bytes"]) == total  # includes the summary's own size
    assert summary["hash"] == layout.manifest_hash(meta[layout.MANIFEST])


def test_normalize_mode() -> None:
    assert archive.normalize_mode(0o100700) == 0o755
    assert archive.normalize_mode(0o100600) == 0o644
    assert archive.normalize_mode(0o100664) == 0o644


@pytest.mark.skipif(not archive.zstd_available(), reason="no zstandard module or zstd binary")
def test_zstd(tmp_path: Path) -> None:
    blob = archive.compress_bytes(b"hello zstd\n" * 1000, "zstd", 3)
    res = subprocess.run(["zstd", "-dc"], input=blob, capture_output=True, check=True)
    assert res.stdout == b"hello zstd\n" * 1000


# -- layers and the piece cache ---------------------------------------------------------------


def _pieces_of(path: Path) -> tuple[layout.Index, bytes, dict[str, bytes]]:
    """The index, the head piece and each layer's piece, cut by the index's sizes."""
    blob = path.read_bytes()
    index = layout.parse_index(dict(archive.read_meta(path))[layout.LAYERS])
    parts = {e.hash: blob[at : at + e.size] for e, at in index.offsets(len(blob))}
    return index, blob[: index.head_size(len(blob))], parts


def test_layers_are_self_contained_pieces(tmp_path: Path) -> None:
    items = entries(tmp_path)
    path = write(tmp_path, "a.tar.gz", items)
    index, head, parts = _pieces_of(path)
    assert [e.name for e in index.layers] == ["g", "h"]
    head_tar = gzip.decompress(head)
    assert b"empty/dir" in head_tar  # the env's empty dirs travel with the head
    env_records = set(layout.manifest_bytes(archive.digest_entries(items)).splitlines())
    union: set[bytes] = set()
    for entry in index.layers:
        raw = gzip.decompress(parts[entry.hash]) + archive.TRAILER
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            names = tar.getnames()
            own = layout.layer_manifest(entry.hash)
            assert names[:3] == [".envpack", layout.LAYER_DIR, own]
            fh = tar.extractfile(own)
            assert fh is not None
            manifest = fh.read()
        assert layout.manifest_hash(manifest) == entry.hash
        lines = manifest.splitlines()[1:-1]
        union |= {line.rstrip(b",") for line in lines}
    assert union == {line.rstrip(b",") for line in env_records if line.startswith(b'{"path"')}


def test_rebuild_compresses_only_the_changed_layer(tmp_path: Path) -> None:
    pieces = tmp_path / "pieces"
    items = entries(tmp_path)
    first = write(tmp_path, "a.tar.gz", items, pieces=pieces)
    changed = [*items[:3], Entry("data/lazy.txt", 0o644, b"edited\n", "h")]
    kept, records = archive.digest(changed)
    out = tmp_path / "b.tar.gz"
    result = write_layered(
        out,
        kept,
        records,
        spec_json=b"{}\n",
        empty_dirs=["empty/dir"],
        level=1,
        pieces_dir=pieces,
    )
    assert {p.layer.name: p.reused for p in result} == {"g": True, "h": False}
    fresh = write(tmp_path, "c.tar.gz", changed)  # no cache: every layer compressed anew
    assert out.read_bytes() == fresh.read_bytes()
    assert _pieces_of(first)[2][result[0].layer.hash] == _pieces_of(out)[2][result[0].layer.hash]


def test_a_source_changed_after_digest_is_never_cached(tmp_path: Path) -> None:
    pieces = tmp_path / "pieces"
    src = tmp_path / "f.txt"
    src.write_bytes(b"before")
    items = [Entry("f.txt", 0o644, src, "g")]
    kept, records = archive.digest(items)
    src.write_bytes(b"after!")  # same size, other bytes
    with pytest.raises(BuildError, match=r"f\.txt changed since it was digested"):
        write_layered(tmp_path / "x.tar.gz", kept, records, spec_json=b"{}", pieces_dir=pieces)
    assert not list(pieces.glob("*.piece")) and not (tmp_path / "x.tar.gz").exists()


def _piece_bytes(pieces: list[archive.Piece]) -> dict[str, bytes]:
    return {p.layer.hash: p.path.read_bytes() for p in pieces}


def test_one_pass_writes_what_digest_then_write_does(tmp_path: Path) -> None:
    """Undigested entries, hashed while written, give the same records, layers and bytes."""
    items = entries(tmp_path)
    kept, records = archive.digest(items)
    _, _, digested = archive.build_layers(
        kept, archive.PieceCache(tmp_path / "a"), level=1, records=records
    )
    digests = archive.DigestCache(tmp_path / "digests.marshal")
    kept1, records1, one_pass = archive.build_layers(
        items, archive.PieceCache(tmp_path / "b"), level=1, digests=digests
    )
    assert [e.arcname for e in kept1] == [e.arcname for e in kept] and records1 == records
    assert not any(p.reused for p in one_pass)
    assert _piece_bytes(one_pass) == _piece_bytes(digested)
    final, _, records2, _ = write_one_pass(
        tmp_path, items, spec_json=b"{}\n", empty_dirs=["empty/dir"], level=1
    )
    assert records2 == records
    assert (
        final.read_bytes() == write(tmp_path, "d.tar.gz", items, pieces=tmp_path / "c").read_bytes()
    )


def test_one_pass_a_failing_source_fails_the_build_promptly(tmp_path: Path) -> None:
    """A source that fails while it is prepared (an ELF edit, a read) ends the build with its
    error while other layers are being prepared and written, and no tarball: the writer does
    not wait forever for a layer that cannot arrive."""
    import threading

    def broken() -> bytes:
        raise BuildError("cannot set the run path of lib/x.so: boom")

    items = [
        *entries(tmp_path),
        *(Entry(f"pkg{n}/m.py", 0o644, f"x = {n}\n".encode(), f"d{n}") for n in range(12)),
        Entry("lib/x.so", 0o755, broken, "d5"),
    ]
    pieces = tmp_path / "pieces"
    caught: list[BaseException] = []

    def run() -> None:
        try:
            write_one_pass(tmp_path / "out", items, spec_json=b"{}", pieces_dir=pieces, level=1)
        except BaseException as exc:
            caught.append(exc)

    (tmp_path / "out").mkdir()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(120)
    assert not thread.is_alive(), "the writer hung on a failed layer"
    assert len(caught) == 1 and isinstance(caught[0], BuildError), caught
    assert "boom" in str(caught[0])
    assert not list((tmp_path / "out").glob("envpack-*"))  # no tarball, not even a part


def test_one_pass_leaves_out_stale_sources(tmp_path: Path) -> None:
    def stale() -> bytes:
        raise archive.Stale("gone")

    items = [Entry("a", 0o644, b"x", "g"), Entry("b", 0o644, stale, "g")]
    kept, records, pieces = archive.build_layers(items, archive.PieceCache(tmp_path), level=1)
    assert [e.arcname for e in kept] == [r.path for r in records] == ["a"]
    assert [p.layer.records for p in pieces] == [tuple(records)]


def test_one_pass_fills_the_digest_cache_for_the_next_build(tmp_path: Path) -> None:
    """A cold build learns every layer's key: the next one copies every piece unread."""
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(100_000))
    os.utime(big, (1_600_000_000, 1_600_000_000))  # not racy: its digest is kept
    items = [Entry("big.bin", 0o644, big, "g"), Entry("t", 0o644, b"t", "h")]
    cache = archive.PieceCache(tmp_path / "pieces")
    file = tmp_path / "digests.marshal"
    digests = archive.DigestCache(file)
    _, records, first = archive.build_layers(items, cache, level=1, digests=digests)
    digests.save()
    warm = archive.DigestCache(file)
    _, again, second = archive.build_layers(items, cache, level=1, digests=warm)
    assert again == records and all(p.reused for p in second)
    assert [p.path for p in second] == [p.path for p in first]


def test_one_pass_a_file_changed_while_written_is_never_cached(tmp_path: Path) -> None:
    """A file that grew after its tar header was made: the build fails, nothing is kept."""
    src = tmp_path / "b.txt"
    src.write_bytes(b"before")

    def grow() -> bytes:  # made after b.txt was sized, before it is written
        with open(src, "ab") as fh:
            fh.write(b" and after")
        return b"c"

    items = [Entry("b.txt", 0o644, src, "g"), Entry("c", 0o644, grow, "g")]
    pieces = tmp_path / "pieces"
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BuildError, match=r"b\.txt changed while it was written \(6 bytes"):
        write_one_pass(out, items, spec_json=b"{}", pieces_dir=pieces)
    assert not list(pieces.glob("*.piece")) and not list(out.iterdir())


def test_held_blocks_are_patched_across_block_boundaries(tmp_path: Path) -> None:
    """A held prefix longer than a block: every block it touches waits and is patched."""
    pool = archive._Pool("gzip", 1)
    try:
        hold = archive.BLOCK + 1000
        head = os.urandom(hold)
        tail = os.urandom(archive.BLOCK)
        sink = archive._Sink(pool, hold)
        sink.write(b"\0" * hold)
        sink.write(tail)
        sink.finish(head)
        out = io.BytesIO()
        sink.drain(out)
    finally:
        pool.close()
    assert gzip.decompress(out.getvalue()) == head + tail


@pytest.mark.parametrize(
    ("name", "kind", "size", "target"),
    [
        ("lib/python3.11/os.py", tarfile.REGTYPE, 12345, ""),
        ("lib/python3.11", tarfile.DIRTYPE, 0, ""),
        ("a" * 100, tarfile.REGTYPE, 1, ""),
        ("a" * 101, tarfile.REGTYPE, 1, ""),
        ("d" * 99, tarfile.DIRTYPE, 0, ""),  # 100 with the slash
        ("d" * 100, tarfile.DIRTYPE, 0, ""),  # 101 with the slash: a pax path
        ("bin/python", tarfile.SYMTYPE, 0, "python3.11"),
        ("bin/x", tarfile.SYMTYPE, 0, "t" * 101),
        ("caf\u00e9.txt", tarfile.REGTYPE, 3, ""),
        ("big.bin", tarfile.REGTYPE, 8**11, ""),
        ("big.bin", tarfile.REGTYPE, 8**11 - 1, ""),
    ],
)
def test_fast_tar_headers_are_tarfiles(name: str, kind: bytes, size: int, target: str) -> None:
    headers = archive._HeaderFactory(archive.DEFAULT_MTIME)
    for mode in (0o644, 0o755, 0o777):
        fast = headers.make(name, kind, mode, size, target)
        assert fast == headers.slow(name, kind, mode, size, target)


def test_piece_cache_is_bounded_least_recently_used_first(tmp_path: Path) -> None:
    cache = archive.PieceCache(tmp_path, max_bytes=250)
    for i, key in enumerate(["a", "b", "c"]):
        cache.put(key, lambda fh: fh.write(b"x" * 100))
        os.utime(cache.path(key), (1000 + i, 1000 + i))
    assert cache.get("a") is not None  # used now: the most recent
    assert cache.prune() == 100
    assert [p.stem for p in sorted(tmp_path.glob("*.piece"))] == ["a", "c"]


# -- digest cache ------------------------------------------------------------------------------


def _old(path: Path, when: int = 1_600_000_000) -> None:
    os.utime(path, (when, when))


def test_digest_cache_hit_and_invalidation(tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(b"a" * 1000)
    _old(data)
    cache_file = tmp_path / "cache" / "digests.marshal"
    entry = Entry("data.bin", 0o644, data, "g")

    first = archive.DigestCache(cache_file)
    rec = archive.record_of(entry, first)
    first.save()
    assert cache_file.is_file()
    warm = archive.DigestCache(cache_file)
    key = warm.key((data,))
    assert warm.get(key) == (1000, bytes.fromhex(rec.sha256 or ""))

    # Same size, mtime put back: the ctime still moves, so the old digest is not reused.
    data.write_bytes(b"b" * 1000)
    _old(data)
    changed = archive.record_of(entry, archive.DigestCache(cache_file))
    assert changed.sha256 == hashlib.sha256(b"b" * 1000).hexdigest() != rec.sha256

    # A size change alone, too.
    data.write_bytes(b"b" * 999)
    _old(data)
    assert archive.record_of(entry, archive.DigestCache(cache_file)).size == 999


def test_digest_cache_skips_racy_files_and_survives_corruption(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.txt"
    fresh.write_bytes(b"just written")
    cache_file = tmp_path / "digests.marshal"
    cache = archive.DigestCache(cache_file)
    assert cache.key((fresh,)) is None  # modified within RACY seconds: never cached
    assert cache.key((tmp_path / "absent",)) is None
    for junk in (b"", b"\x00garbage", b"\xe9\x02\x00\x00\x00"):
        cache_file.write_bytes(junk)
        corrupt = archive.DigestCache(cache_file)
        rec = archive.record_of(Entry("fresh.txt", 0o644, fresh, "g"), corrupt)
        assert rec.sha256 == hashlib.sha256(b"just written").hexdigest()


def test_callable_source_cached_by_its_inputs(tmp_path: Path) -> None:
    src = tmp_path / "src.txt"
    src.write_bytes(b"one")
    _old(src)
    calls: list[int] = []

    def make() -> bytes:
        calls.append(1)
        return src.read_bytes().upper()

    cache = archive.DigestCache(tmp_path / "c.marshal")
    entry = Entry("out.txt", 0o644, make, "g", (src,))
    a = archive.record_of(entry, cache)
    b = archive.record_of(entry, cache)
    assert a == b and len(calls) == 1
    src.write_bytes(b"two")
    _old(src)
    assert archive.record_of(entry, cache).sha256 == hashlib.sha256(b"TWO").hexdigest()
    assert len(calls) == 2


def test_stale_source_is_left_out(tmp_path: Path) -> None:
    def stale() -> bytes:
        raise archive.Stale("gone")

    items = [Entry("a", 0o644, b"x", "g"), Entry("b", 0o644, stale, "g")]
    kept, records = archive.digest(items)
    assert [e.arcname for e in kept] == [r.path for r in records] == ["a"]
    with pytest.raises(archive.Stale):
        archive.digest_entries(items)


def test_a_layers_elf_edits_are_spread_over_the_preparing_threads() -> None:
    class Edited:  # a source naming its file, as relocate.EditedElf does
        def __call__(self) -> bytes:
            return b""

        def file(self) -> Path | None:
            return None

    plan: list[tuple[Entry, None, None]] = [
        (Entry(f"lib/m{i}.so", 0o755, Edited(), "g"), None, None) for i in range(12)
    ]
    plan += [(Entry(f"f{i}", 0o644, b"x", "g"), None, None) for i in range(600)]
    chunks = archive._chunks(plan)
    assert [len(c) for c in chunks[:3]] == [4, 4, 4]
    assert sum(len(c) for c in chunks) == len(plan) and all(len(c) <= 256 for c in chunks)


def test_the_switch_interval_is_restored(tmp_path: Path) -> None:
    before = sys.getswitchinterval()
    archive.build_layers(entries(tmp_path), archive.PieceCache(tmp_path / "p"), level=1)
    assert sys.getswitchinterval() == before
