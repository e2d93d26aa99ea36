"""`envpack runner` and `envpack cache ls|prune` through click's CliRunner on a real cache."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from click.testing import CliRunner

from envpack.cli.main import main
from envpack.runtime import runner_path
from envpack.runtime.cache import list_entries
from tests.runtime.envs import cache_entries, make_env, make_layered_env, run


def _cache_with(tmp_path: Path, n: int) -> tuple[Path, list[str]]:
    cache = tmp_path / "cache"
    hashes = []
    for i in range(n):
        env = make_env(tmp_path / f"e{i}", files={"lib/blob.bin": b"\0" * 30_000}, salt=str(i))
        assert run(["-e", str(env.tarball), "true"], cache=cache, cwd=tmp_path).returncode == 0
        os.utime(cache / f"{env.hash}.lock", (time.time() - 100 + i,) * 2)
        hashes.append(env.hash)
    return cache, hashes


def test_runner_prints_the_script_path() -> None:
    res = CliRunner().invoke(main, ["runner"])
    assert res.exit_code == 0
    path = Path(res.output.strip())
    assert path == runner_path()
    assert os.access(path, os.X_OK)
    assert path.read_text().startswith("#!/bin/sh\n")


def test_cache_ls(tmp_path: Path) -> None:
    cache, hashes = _cache_with(tmp_path, 2)
    res = CliRunner().invoke(main, ["cache", "ls", "--cache", str(cache)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == f"cache {cache}"
    assert [line.split()[0] for line in lines[2:4]] == hashes
    assert "2 entries" in lines[-1]
    res = CliRunner().invoke(main, ["cache", "ls", "--cache", str(cache), "--json"])
    doc = json.loads(res.output)
    assert doc["schema"] == 1
    assert [e["hash"] for e in doc["entries"]] == hashes
    assert all(e["size"] > 30_000 and e["in_use"] is False for e in doc["entries"])
    empty = CliRunner().invoke(main, ["cache", "ls", "--cache", str(tmp_path / "none")])
    assert empty.exit_code == 0 and "empty" in empty.output


def test_cache_ls_default_dir_from_environment(tmp_path: Path) -> None:
    cache, hashes = _cache_with(tmp_path, 1)
    res = CliRunner().invoke(main, ["cache", "ls"], env={"ENVPACK_CACHE": str(cache)})
    assert res.exit_code == 0
    assert hashes[0] in res.output
    assert f"cache {cache} (the runner's default on this node)" in res.output


def test_cache_prune(tmp_path: Path) -> None:
    cache, hashes = _cache_with(tmp_path, 3)
    two = sum(e.size for e in list_entries(cache)[1:])  # room for the two most recent
    res = CliRunner().invoke(main, ["cache", "prune", "--cache", str(cache), "--max", str(two)])
    assert res.exit_code == 0, res.output
    assert f"removed {hashes[0]}" in res.output
    assert cache_entries(cache) == sorted(hashes[1:])
    res = CliRunner().invoke(
        main, ["cache", "prune", "--cache", str(cache)], env={"ENVPACK_CACHE_MAX": "0"}
    )
    assert res.exit_code == 0
    assert cache_entries(cache) == []


def test_cache_prune_bad_size(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["cache", "prune", "--cache", str(tmp_path), "--max", "big"])
    assert res.exit_code == 2
    assert "not a size" in res.output


def test_cache_ls_and_prune_show_layers(tmp_path: Path) -> None:
    groups = {"python": ("bin/",)}
    envs = [make_layered_env(tmp_path / w, groups=groups, salt=w) for w in ("a", "b")]
    cache = tmp_path / "cache"
    for e in envs:
        assert run(["-e", str(e.tarball), "true"], cache=cache, cwd=tmp_path).returncode == 0
    res = CliRunner().invoke(main, ["cache", "ls", "--cache", str(cache)])
    assert res.exit_code == 0, res.output
    python = envs[0].layer("python")
    assert any(
        line.startswith(python.hash) and line.endswith("2 envs  python")
        for line in res.output.splitlines()
    ), res.output
    assert "3 layers" in res.output and "sharing saves" in res.output
    doc = json.loads(
        CliRunner().invoke(main, ["cache", "ls", "--cache", str(cache), "--json"]).output
    )
    assert {x["hash"]: x["shared_by"] for x in doc["layers"]}[python.hash] == 2
    assert doc["saving"] > 0 and all(len(e["layers"]) == 2 for e in doc["entries"])
    res = CliRunner().invoke(main, ["cache", "prune", "--cache", str(cache), "--max", "0"])
    assert res.exit_code == 0, res.output
    assert f"removed layer {python.hash} python" in res.output
