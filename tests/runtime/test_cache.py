"""envpack.runtime.cache on a real cache filled by envpack-run, with real flock holders."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from envpack.errors import UsageError
from envpack.runtime.cache import (
    CacheError,
    cache_dir,
    list_entries,
    list_layers,
    prune,
    saving,
)
from tests.runtime.envs import Env, cache_entries, make_env, make_layered_env, run


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
        self.lock = lock
        self.proc = subprocess.Popen(
            ["flock", "-s", str(lock), "sh", "-c", "echo held; exec sleep 60"],
            stdout=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline() == b"held\n"

    def release(self) -> None:
        """Kill the holders and wait until the lock is really free: reaping `flock` is not
        enough, its `sleep` child (holding the same fd) may still be dying on a loaded machine."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        deadline = time.monotonic() + 30
        fd = os.open(self.lock, os.O_RDONLY)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    assert time.monotonic() < deadline, f"{self.lock} still held"
                    time.sleep(0.01)
        finally:
            os.close(fd)


def test_cache_dir_is_the_runners(tmp_path: Path) -> None:
    """cache_dir() asks envpack-run itself, which creates the directory 0700."""
    where = tmp_path / "c"
    assert cache_dir({**os.environ, "ENVPACK_CACHE": str(where)}) == where
    assert where.stat().st_mode & 0o777 == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(CacheError, match="writable by others"):
        cache_dir({**os.environ, "ENVPACK_CACHE": str(shared)})


def test_list_entries(tmp_path: Path) -> None:
    cache, envs = _fill(tmp_path, 2)
    holder = _Holder(cache / f"{envs[1].hash}.lock")
    try:
        entries = list_entries(cache)
    finally:
        holder.release()
    assert [e.hash for e in entries] == [e.hash for e in envs]  # least recently used first
    # the size is the disk the entry really uses, as the runner recorded it in the lock file
    lock = (cache / f"{envs[0].hash}.lock").read_text()
    assert lock == f"use={entries[0].size}\n"
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
    assert result.limit == size
    assert prune(cache, 0).removed[0].hash == envs[0].hash  # free now
    assert cache_entries(cache) == []


def test_prune_bad_limit_is_a_usage_error(tmp_path: Path) -> None:
    cache, _ = _fill(tmp_path, 1)
    for bad in ("lots", "16777216T"):  # the second would wrap to 0 and evict everything
        with pytest.raises(UsageError, match="not a size"):
            prune(cache, bad)
    assert len(list_entries(cache)) == 1


def test_prune_removes_stale_temp_dirs_only(tmp_path: Path) -> None:
    cache, envs = _fill(tmp_path, 1)
    dead = cache / ".tmp-0123456789abcdef-99999"
    dead.mkdir()
    (dead / "half").write_text("x")
    busy = cache / f".tmp-{envs[0].hash}-12345"  # its hash is locked: an unpack in progress
    busy.mkdir()
    evict_list = cache / ".evict-4242"  # what an older runner killed mid-eviction left
    evict_list.write_text("1 x.lock\n")
    holder = _Holder(cache / f"{envs[0].hash}.lock")
    try:
        result = prune(cache, 1 << 40)
    finally:
        holder.release()
    assert set(result.stale_removed) == {dead, evict_list}
    assert result.removed == ()
    assert not dead.exists() and busy.exists() and not evict_list.exists()


def test_layers_are_listed_once_with_their_sharing_and_pruned_when_unused(tmp_path: Path) -> None:
    groups = {"python": ("bin/",), "shared": ("lib/shared/",)}
    shared = {"lib/shared/blob.bin": os.urandom(200_000)}
    envs = [
        make_layered_env(tmp_path / w, groups=groups, files={**shared, f"lib/{w}.py": w}, salt=w)
        for w in ("a", "b")
    ]
    cache = tmp_path / "cache"
    for e in envs:
        assert run(["-e", str(e.tarball), "true"], cache=cache, cwd=tmp_path).returncode == 0
    entries = list_entries(cache)
    assert {e.hash for e in entries} == {e.hash for e in envs}
    assert all(len(e.layers) == 3 and e.size < 50_000 for e in entries)  # their own: the head
    layers = list_layers(cache)
    by_name = {x.name: x for x in layers if x.shared_by == 2}
    assert set(by_name) == {"python", "shared"}
    assert by_name["shared"].size >= 200_000
    assert [x.shared_by for x in layers].count(1) == 2  # each env's own "local"
    assert saving(layers) == by_name["python"].size + by_name["shared"].size
    # prune to nothing: both envs go, then every layer (none listed any more)
    result = prune(cache, 0)
    assert {e.hash for e in result.removed} == {e.hash for e in envs}
    assert len(result.layers_removed) == 4
    assert {x.name for x in result.layers_removed} >= {"python", "shared"}
    assert list_layers(cache) == [] and result.size_after == 0
