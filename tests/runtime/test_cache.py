"""envpack.runtime.cache on a real cache filled by envpack-run, with real flock holders."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from envpack.errors import UsageError
from envpack.runtime.cache import cache_dir, list_entries, max_size, parse_size, prune, stale_dirs
from tests.runtime.envs import Env, cache_entries, make_env, run


def _fill(tmp_path: Path, n: int) -> tuple[Path, list[Env]]:
    cache = tmp_path / "cache"
    envs = [
        make_env(tmp_path / f"e{i}", files={"lib/blob.bin": b"\0" * 50_000}, salt=str(i))
        for i in range(n)
    ]
    for e in envs:
        assert run(["-e", str(e.tarball), "true"], cache=cache, cwd=tmp_path).returncode == 0
    now = time.time()
    for i, e in enumerate(envs):  # env 0 least recently used
        os.utime(cache / f"{e.hash}.lock", (now - 1000 + i, now - 1000 + i))
    return cache, envs


class _Holder:
    """A real `flock -s` holding the lock, as a running task does (its own process group:
    the lock lives as long as any process holding the fd, the shell's child included)."""

    def __init__(self, lock: Path) -> None:
        self.proc = subprocess.Popen(
            ["flock", "-s", str(lock), "sh", "-c", "echo held; exec sleep 60"],
            stdout=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline() == b"held\n"

    def release(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", 0), ("123", 123), ("4K", 4096), ("2m", 2 << 20), ("20G", 20 << 30), ("1T", 1 << 40)],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "1.5G", "-1", "10KB", "G"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="not a size"):
        parse_size(text)


def test_defaults_follow_the_runner() -> None:
    assert cache_dir({"ENVPACK_CACHE": "/x/c"}) == Path("/x/c")
    assert cache_dir({"TMPDIR": "/scratch"}) == Path(f"/scratch/envpack-{os.getuid()}")
    assert cache_dir({}) == Path(f"/tmp/envpack-{os.getuid()}")
    assert max_size({}) == 20 << 30
    assert max_size({"ENVPACK_CACHE_MAX": "3M"}) == 3 << 20


def test_list_entries(tmp_path: Path) -> None:
    cache, envs = _fill(tmp_path, 2)
    holder = _Holder(cache / f"{envs[1].hash}.lock")
    try:
        entries = list_entries(cache)
    finally:
        holder.release()
    assert [e.hash for e in entries] == [e.hash for e in envs]  # least recently used first
    summary = (cache / envs[0].hash / ".envpack" / "summary").read_text()
    assert f"bytes={entries[0].size}" in summary
    assert entries[0].size > 50_000
    assert [e.in_use for e in entries] == [False, True]
    assert entries[0].last_use < entries[1].last_use
    assert list_entries(tmp_path / "nothing-here") == []


def test_prune_lru_keeps_entries_in_use(tmp_path: Path) -> None:
    cache, envs = _fill(tmp_path, 3)
    size = list_entries(cache)[0].size
    holder = _Holder(cache / f"{envs[0].hash}.lock")  # the oldest is in use
    try:
        result = prune(cache, size)  # room for one
    finally:
        holder.release()
    assert [e.hash for e in result.kept_in_use] == [envs[0].hash]
    assert [e.hash for e in result.removed] == [envs[1].hash, envs[2].hash]
    assert cache_entries(cache) == [envs[0].hash]
    assert result.size_before == 3 * size and result.size_after == size
    assert prune(cache, 0).removed[0].hash == envs[0].hash  # free now
    assert cache_entries(cache) == []


def test_prune_removes_stale_temp_dirs_only(tmp_path: Path) -> None:
    cache, envs = _fill(tmp_path, 1)
    dead = cache / ".tmp-0123456789abcdef-99999"
    dead.mkdir()
    (dead / "half").write_text("x")
    busy = cache / f".tmp-{envs[0].hash}-12345"  # its hash is locked: an unpack in progress
    busy.mkdir()
    holder = _Holder(cache / f"{envs[0].hash}.lock")
    try:
        assert stale_dirs(cache) == [dead]
        result = prune(cache, 1 << 40)
    finally:
        holder.release()
    assert result.stale_removed == (dead,)
    assert result.removed == ()
    assert not dead.exists() and busy.exists()
