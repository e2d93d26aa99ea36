"""envpack-run on layered tarballs: the node's layer store, assembly, sharing, eviction."""

from __future__ import annotations

import fcntl
import io
import os
import shutil
import signal
import subprocess
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import pytest

from envpack import layout
from envpack.analyzer.interpreter import probe
from envpack.build import build
from envpack.runtime import (
    EXIT_CANT_WRITE,
    EXIT_CORRUPT,
    EXIT_NO_ENV,
    EXIT_UNSAFE,
)
from envpack.spec import Spec
from tests.conftest import FixtureVenv
from tests.runtime.envs import (
    RUNNER,
    SHELL,
    LayeredEnv,
    cache_entries,
    head_piece,
    make_layered_env,
    run,
)
from tests.runtime.test_runner import run_at_once, run_on_a_full_disk
from tests.test_build import distributions, dynload_modules

# bin/ (the "interpreter"), lib/shared/ (a big shared distribution), lib/own/ (the one that
# differs), the rest (local: the runner, .envpack/links, lib/marker.txt)
GROUPS = {"python": ("bin/",), "shared": ("lib/shared/",), "own": ("lib/own/",)}
SHARED = {f"lib/shared/m{i}.py": f"x = {i}\n" * 300 for i in range(60)}


def _env(base: Path, which: str = "a", **kwargs: object) -> LayeredEnv:
    files = {**SHARED, f"lib/own/{which}.py": f"which = {which!r}\n" * 50}
    files.update(kwargs.pop("files", {}))  # type: ignore[arg-type]
    return make_layered_env(base / which, groups=GROUPS, files=files, **kwargs)


def _layer_lines(stderr: str, word: str) -> list[str]:
    return [
        line.split()[2] for line in stderr.splitlines() if line.startswith("envpack-run: layer ")
        and line.split()[3] == word
    ]  # fmt: skip


def _leftovers(cache: Path) -> list[str]:
    """Entries and temp dirs of the cache and of its layer store (no locks)."""
    out = [n for n in cache_entries(cache) if n != "layers"]
    store = cache / "layers"
    if store.exists():
        out += [f"layers/{p.name}" for p in store.iterdir() if not p.name.endswith(".lock")]
    return sorted(out)


def test_a_layered_env_is_assembled_from_its_layers_once(tmp_path: Path) -> None:
    env = _env(tmp_path, files={"lib/own/run.py": "import sys; print(sys.argv[1])\n"})
    res = run(
        [
            "-d",
            "-e",
            str(env.tarball),
            "sh",
            "-c",
            'cd "$ENVPACK_PREFIX" && python lib/own/run.py hi',
        ],
        cache=tmp_path / "c2",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == "hi\n"
    assert res.stderr.count(f"unpacked {env.hash} in ") == 1
    assert sorted(_layer_lines(res.stderr, "unpacked")) == sorted(x.hash for x in env.layers)
    cache = tmp_path / "c2"
    entry = cache / env.hash
    # the env is hard links of the store's files, which are read-only
    for layer in env.layers:
        for rel in layer.paths:
            stored = cache / "layers" / layer.hash / rel
            assert os.lstat(entry / rel).st_ino == os.lstat(stored).st_ino, rel
            if not stored.is_symlink():
                assert stored.stat().st_mode & 0o222 == 0, rel
    # the same tree `tar xzf` gives, nothing more
    plain = tmp_path / "plain"
    plain.mkdir()
    subprocess.run(["tar", "-xzf", str(env.tarball), "-C", str(plain)], check=True)
    listing = sorted(p.relative_to(plain).as_posix() for p in plain.rglob("*"))
    assert sorted(p.relative_to(entry).as_posix() for p in entry.rglob("*")) == listing
    # both verify in full
    for tree in (entry, plain):
        res = run(["--check", "-e", str(tree)], cache=cache, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
    again = run(["-d", "-e", str(env.tarball), "true"], cache=cache, cwd=tmp_path)
    assert again.returncode == 0 and "unpacked" not in again.stderr and "layer " not in again.stderr
    assert _leftovers(cache) == sorted([env.hash, *(f"layers/{x.hash}" for x in env.layers)])


def _du(path: Path) -> int:
    return int(subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])  # fmt: skip


def test_two_envs_sharing_all_but_one_layer_take_one_env_plus_that_layer(tmp_path: Path) -> None:
    big = {f"lib/shared/blob{i}.bin": os.urandom(200_000) for i in range(5)}
    a = _env(tmp_path, "a", files=big)
    b = _env(tmp_path, "b", files=big)
    differ = {x.hash for x in b.layers} - {x.hash for x in a.layers}
    assert len(differ) == 1 and len(b.layers) == len(a.layers) == 4
    cache = tmp_path / "c"
    first = run(["-d", "-e", str(a.tarball), "true"], cache=cache, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    one = _du(cache)
    second = run(["-d", "-e", str(b.tarball), "true"], cache=cache, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert _layer_lines(second.stderr, "unpacked") == sorted(differ)
    assert len(_layer_lines(second.stderr, "present")) == 3
    assert f"unpacked {b.hash} in " in second.stderr
    both = _du(cache)
    own = _du(cache / "layers" / differ.pop())
    # the second env costs its own layer, its head and its directories: far from a copy
    assert both - one <= own + 64, (one, both, own)
    assert one > 1000  # the 1 MB of shared blobs is in there once
    plain = tmp_path / "plain"
    for env in (a, b):
        dest = plain / env.hash
        dest.mkdir(parents=True)
        subprocess.run(["tar", "-xzf", str(env.tarball), "-C", str(dest)], check=True)
    assert _du(plain) > 1.8 * one  # unpacked separately, they would take twice


def test_split_form_needs_only_the_layers_the_store_lacks(tmp_path: Path) -> None:
    a = _env(tmp_path, "a")
    b = _env(tmp_path, "b")
    cache = tmp_path / "c"
    sandbox = tmp_path / "sb-a"
    head = a.split(sandbox)
    res = run(["-d", "-e", str(head), "true"], cache=cache, cwd=sandbox)
    assert res.returncode == 0, res.stderr
    assert len(_layer_lines(res.stderr, "unpacked")) == 4
    assert f"unpacked {a.hash} in " in res.stderr
    # b's sandbox holds its head and its own layer only: the store has the rest
    own = b.layer("own")
    head = b.split(tmp_path / "sb-b", skip=tuple(x.hash for x in b.layers if x is not own))
    res = run(["-d", "-e", str(head), "true"], cache=cache, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert _layer_lines(res.stderr, "unpacked") == [own.hash]
    # with the store emptied, a missing layer file is named, and nothing is cached
    cache2 = tmp_path / "c2"
    res = run(["-e", str(head), "true"], cache=cache2, cwd=tmp_path)
    assert res.returncode == EXIT_NO_ENV, res.stderr
    assert "envpack-layer-" in res.stderr and "is missing" in res.stderr
    assert [n for n in _leftovers(cache2) if not n.startswith("layers/")] == []
    assert all(not n.startswith("layers/.tmp") for n in _leftovers(cache2))
    # a layer file of the wrong size is refused before it is read
    head = b.split(tmp_path / "sb-c")
    layer_file = head.parent / layout.layer_file(own.hash, len(own.piece), ".tar.gz")
    layer_file.write_bytes(own.piece + b"\0")
    res = run(["-e", str(head), "true"], cache=tmp_path / "c3", cwd=tmp_path)
    assert res.returncode == EXIT_CORRUPT, res.stderr
    assert f"not the {len(own.piece)} its index says" in res.stderr


def test_concurrent_runners_unpack_the_env_and_each_shared_layer_once(tmp_path: Path) -> None:
    envs = [_env(tmp_path, w) for w in ("a", "b")]
    cache = tmp_path / "c"
    pick = [envs[i % 2] for i in range(16)]
    results = run_at_once(
        cache, [(e.tarball, f"{cache}/{e.hash}/lib/shared/m{i}.py") for i, e in enumerate(pick)]
    )
    assert [rc for rc, _, _ in results] == [0] * 16, [err for _, _, err in results]
    for i, (_, out, _) in enumerate(results):
        assert out == f"x = {i}\n" * 300
    err = "".join(e for _, _, e in results)
    for env in envs:
        assert err.count(f"unpacked {env.hash} in ") == 1
    unpacked = _layer_lines(err, "unpacked")
    every = {x.hash for e in envs for x in e.layers}
    assert sorted(unpacked) == sorted(every)  # the 3 shared ones once, not twice
    assert len(every) == 5
    assert _leftovers(cache) == sorted([*(e.hash for e in envs), *(f"layers/{h}" for h in every)])


def _wait_for(pred: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not pred():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_kill9_mid_layer_and_mid_assembly_then_a_clean_run(tmp_path: Path) -> None:
    """The store has the env's other layers; its own arrives through a FIFO, half of it, and
    the runner's group is killed: a layer half unpacked, an env half assembled."""
    big = {f"lib/own/f{i}.bin": os.urandom(4096) for i in range(300)}
    a = _env(tmp_path, "a")
    b = _env(tmp_path, "b", files=big)
    cache = tmp_path / "c"
    assert run(["-e", str(a.tarball), "true"], cache=cache, cwd=tmp_path).returncode == 0
    own = b.layer("own")
    sandbox = tmp_path / "sb"
    head = b.split(sandbox, skip=(own.hash,))
    fifo = sandbox / layout.layer_file(own.hash, len(own.piece), ".tar.gz")
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [SHELL, RUNNER, "-e", str(head), "true"],
        env={**os.environ, "ENVPACK_CACHE": str(cache)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    ltmp = f".tmp-{own.hash}-"
    with open(fifo, "wb") as writer:
        writer.write(own.piece[: len(own.piece) // 2])
        writer.flush()
        _wait_for(
            lambda: any((d / "lib" / "own").is_dir() for d in (cache / "layers").glob(ltmp + "*")),
            "the layer unpack never started",
        )
        assembling = list(cache.glob(f".tmp-{b.hash}-*"))
        assert any((d / "bin" / "python").exists() for d in assembling)  # a layer linked
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert not (cache / b.hash).exists()
    assert not (cache / "layers" / own.hash).exists()
    left = _leftovers(cache)
    assert sum(n.startswith(f".tmp-{b.hash}-") for n in left) == 2, left
    assert sum(n.startswith(f"layers/{ltmp}") for n in left) == 2, left
    fifo.unlink()
    fifo.write_bytes(own.piece)
    res = run(["-d", "-e", str(head), "true"], cache=cache, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("removing stale") == 4
    assert _layer_lines(res.stderr, "unpacked") == [own.hash]
    assert not [n for n in _leftovers(cache) if ".tmp-" in n]
    assert run(["--check", "-e", str(cache / b.hash)], cache=cache, cwd=tmp_path).returncode == 0


def test_terminated_mid_layer_leaves_only_verified_layers(tmp_path: Path) -> None:
    """SIGTERM while a layer worker's tar waits for the rest of its piece: the worker and the
    runner remove their temp dirs and the runner exits 143; the layers done stay."""
    a = _env(tmp_path, "a")
    b = _env(tmp_path, "b", files={f"lib/own/f{i}.bin": os.urandom(4096) for i in range(300)})
    cache = tmp_path / "c"
    assert run(["-e", str(a.tarball), "true"], cache=cache, cwd=tmp_path).returncode == 0
    before = _leftovers(cache)
    own = b.layer("own")
    head = b.split(tmp_path / "sb", skip=(own.hash,))
    fifo = head.parent / layout.layer_file(own.hash, len(own.piece), ".tar.gz")
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [SHELL, RUNNER, "-e", str(head), "true"],
        env={**os.environ, "ENVPACK_CACHE": str(cache)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    with open(fifo, "wb") as writer:
        writer.write(own.piece[: len(own.piece) // 2])
        writer.flush()
        _wait_for(
            lambda: any((d / "lib" / "own").is_dir() for d in (cache / "layers").glob(".tmp-*")),
            "the layer unpack never started",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 143
    _wait_for(lambda: _leftovers(cache) == before, f"left behind: {_leftovers(cache)}", 10)


def _assert_refused(
    res: subprocess.CompletedProcess[str], cache: Path, code: int, what: str
) -> None:
    assert res.returncode == code, (res.returncode, res.stderr)
    assert what in res.stderr, res.stderr
    assert "nothing was cached" in res.stderr
    assert [n for n in _leftovers(cache) if ".tmp-" in n or layout.is_hash(n)] == []


def _flip(data: bytes, at: int, n: int = 16) -> bytes:
    out = bytearray(data)
    for i in range(at, at + n):
        out[i] ^= 0xFF
    return bytes(out)


@pytest.mark.parametrize("how", ["layer-bytes", "truncated", "index-csize", "index-format"])
def test_corrupt_layers_or_index_are_65(tmp_path: Path, how: str) -> None:
    env = _env(tmp_path, files={"lib/own/data.txt": "".join(f"l {i}\n" for i in range(20_000))})
    data = env.tarball.read_bytes()
    own = env.layer("own")
    start = data.index(own.piece)
    if how == "layer-bytes":
        data = _flip(data, start + len(own.piece) // 2)
        what = "corrupt or truncated"
    elif how == "truncated":
        data = data[: start + len(own.piece) // 2]
        what = "corrupt or truncated"
    else:
        # a new head whose index lies: its layer's csize off by one, or a line that is no line
        root = env.root
        index = (root / ".envpack/layers").read_text()
        if how == "index-csize":
            index = index.replace(
                f"{own.hash} {len(own.piece)} ", f"{own.hash} {len(own.piece) - 1} "
            )
            what = "corrupt or truncated"
        else:
            index = index.replace(
                f"{own.hash} {len(own.piece)} own", f"{own.hash} {len(own.piece)} o/wn"
            )
            what = "bad line"
        (root / ".envpack/layers").write_text(index)
        head = head_piece(root)
        data = head + data[len(env.head) :]
    env.tarball.write_bytes(data)
    cache = tmp_path / "c"
    res = run(["-e", str(env.tarball), "true"], cache=cache, cwd=tmp_path)
    _assert_refused(res, cache, EXIT_CORRUPT, what)


def _unsafe_hook(kind: str, outside: Path) -> object:
    def hook(name: str, tar: tarfile.TarFile) -> None:
        if name != "own":
            return
        info = tarfile.TarInfo()
        if kind == "unlisted":  # a member another layer owns: it would land in every env
            info.name = "bin/python"
            data = b"#!/bin/sh\necho pwned\n"
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
        elif kind == "dotdot":
            info.name = "../../escaped"
            tar.addfile(info, io.BytesIO(b""))
        elif kind == "absolute":
            info.name = f"{outside}/escaped"
            tar.addfile(info, io.BytesIO(b""))

    return hook


@pytest.mark.parametrize("kind", ["unlisted", "dotdot", "absolute", "symlink"])
def test_unsafe_members_in_a_layer_are_67(tmp_path: Path, kind: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    if kind == "symlink":  # listed in its layer's manifest, and escaping
        env = _env(tmp_path, symlinks={"lib/own/evil": "../../../outside"})
    else:
        env = _env(tmp_path, hook=_unsafe_hook(kind, outside))  # type: ignore[arg-type]
    cache = tmp_path / "c"
    work = tmp_path / "w1" / "w2"
    work.mkdir(parents=True)
    res = run(["-e", str(env.tarball), "true"], cache=cache, cwd=work)
    _assert_refused(res, cache, EXIT_UNSAFE, "refusing")
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert not (tmp_path / "escaped").exists()
    # the layers that were fine stay in the store, verified
    stored = {p.name for p in (cache / "layers").iterdir() if layout.is_hash(p.name)}
    assert env.layer("own").hash not in stored


def test_full_disk_during_a_layer_unpack_is_73(tmp_path: Path) -> None:
    env = _env(tmp_path, files={"lib/own/big.bin": os.urandom(2_000_000)})
    listing = 'ls -A "{cache}" "{cache}/layers" | grep -e "^\\.tmp" -e "^[0-9a-f]\\{{16\\}}$"'
    res = run_on_a_full_disk(tmp_path, env.tarball, listing)
    assert res.returncode == EXIT_CANT_WRITE, res.stderr
    assert "no space left" in res.stderr
    # the layers before it may stay (verified); no env, no temp dir
    names = res.stdout.split()
    assert env.hash not in names and not [n for n in names if n.startswith(".tmp")], names
    assert env.layer("own").hash not in names


def test_a_layered_stream_takes_the_plain_path(tmp_path: Path) -> None:
    """Through a pipe the file cannot be read by ranges: it unpacks whole, verified in full."""
    env = _env(tmp_path)
    fifo = tmp_path / "fifo" / env.tarball.name
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    cache = tmp_path / "c"
    proc = subprocess.Popen(
        [SHELL, RUNNER, "-d", "-e", str(fifo), "true"],
        env={**os.environ, "ENVPACK_CACHE": str(cache)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    with open(fifo, "wb") as writer:
        writer.write(env.tarball.read_bytes())
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"unpacked {env.hash} in " in err and "layer " not in err
    assert cache_entries(cache) == [env.hash]


def test_zstd_layered(tmp_path: Path) -> None:
    if shutil.which("zstd") is None:
        pytest.skip("zstd is not installed")
    env = _env(tmp_path, compress="zst")
    res = run(["-d", "-e", str(env.tarball), "true"], cache=tmp_path / "c", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert len(_layer_lines(res.stderr, "unpacked")) == 4


@pytest.mark.parametrize("how", ["layer-manifest", "layer-record"])
def test_check_refuses_a_tree_whose_layers_do_not_add_up(tmp_path: Path, how: str) -> None:
    env = _env(tmp_path)
    own = env.layer("own")
    lm = env.root / ".envpack" / "layer" / f"{own.hash}.json"
    if how == "layer-manifest":
        lm.write_bytes(lm.read_bytes().replace(b'"schema": 2', b'"schema":  2'))
        what = f"the manifest of layer {own.hash} is that of layer"
    else:
        (env.root / ".envpack" / "layer" / f"{env.layer('shared').hash}.json").unlink()
        what = "lacks the manifest of its layer"
    res = run(["--check", "-e", str(env.root)], cache=tmp_path / "c", cwd=tmp_path)
    assert res.returncode == EXIT_CORRUPT, res.stderr
    assert what in res.stderr


def _hold(lock: Path, mode: int) -> int:
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    fcntl.flock(fd, mode)
    return fd


def _stamp(cache: Path, env_hash: str, when: float) -> None:
    os.utime(cache / f"{env_hash}.lock", (when, when))


def test_eviction_counts_a_shared_layer_once_and_keeps_what_an_env_in_use_needs(
    tmp_path: Path,
) -> None:
    big = {f"lib/shared/blob{i}.bin": os.urandom(300_000) for i in range(4)}  # 1.2 MB shared
    envs = [_env(tmp_path, w, files={**big, f"lib/own/{w}.bin": os.urandom(300_000)})
            for w in ("a", "b", "c")]  # fmt: skip
    cache = tmp_path / "c"
    for env in envs:
        assert run(["-e", str(env.tarball), "true"], cache=cache, cwd=tmp_path).returncode == 0
    # all three fit in 3M: the shared 1.2M counts once (plain copies would need 4.5M)
    res = run(["--evict", "3M"], cache=cache, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert not [line for line in res.stdout.splitlines() if line.startswith("evicted")]
    total = int(res.stdout.splitlines()[-1].split()[1])
    assert total < 3 * 1024**2
    now = time.time()
    for i, env in enumerate(envs):
        _stamp(cache, env.hash, now - 300 + 100 * i)  # a is the least recently used
    own = {e.hash: e.layer("own").hash for e in envs}
    shared = envs[0].layer("shared").hash
    # a is in use: b goes (and its own layer), a's and the shared layer stay
    fd = _hold(cache / f"{envs[0].hash}.lock", fcntl.LOCK_SH)
    try:
        res = run(["--evict", str(total - 100_000)], cache=cache, cwd=tmp_path)
    finally:
        os.close(fd)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert f"in-use {envs[0].hash}" in "\n".join(lines)
    assert any(line.startswith(f"evicted {envs[1].hash} ") for line in lines), lines
    assert any(line.startswith(f"evicted-layer {own[envs[1].hash]} ") for line in lines), lines
    store = {p.name for p in (cache / "layers").iterdir() if layout.is_hash(p.name)}
    assert shared in store and own[envs[0].hash] in store and own[envs[1].hash] not in store
    # while an env is being assembled (layers.lock shared), layers are never removed
    fd = _hold(cache / "layers.lock", fcntl.LOCK_SH)
    try:
        res = run(["--evict", "0"], cache=cache, cwd=tmp_path)
    finally:
        os.close(fd)
    assert res.returncode == 0, res.stderr
    assert not [line for line in res.stdout.splitlines() if line.startswith("evicted-layer")]
    assert not [n for n in cache_entries(cache) if layout.is_hash(n)]  # the envs went
    res = run(["--evict", "0"], cache=cache, cwd=tmp_path)
    # python, shared, local, and a's and c's own
    assert sum(line.startswith("evicted-layer") for line in res.stdout.splitlines()) == 5
    assert not [p for p in (cache / "layers").iterdir() if not p.name.endswith(".lock")]
    assert res.stdout.splitlines()[-1].endswith(" 0 0")


def test_the_head_s_empty_dirs_are_the_env_s(tmp_path: Path) -> None:
    env = _env(tmp_path, empty_dirs=("lib/empty", "lib/shared/none"))
    cache = tmp_path / "c"
    res = run(["-e", str(env.tarball), "true"], cache=cache, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    for rel in ("lib/empty", "lib/shared/none"):
        assert (cache / env.hash / rel).is_dir()
        assert (env.root / rel).is_dir()  # as plain tar gives it


def test_a_layered_tarball_without_its_suffix_unpacks(tmp_path: Path) -> None:
    """coffea's WorkQueueExecutor sends environment_file= under the remote name "env_file": the
    runner tells gzip by its magic bytes, since a layer's piece reaches tar through a pipe."""
    a = _env(tmp_path, "a")
    bare = tmp_path / "env_file"
    shutil.copy(a.tarball, bare)
    res = run(["-d", "-e", str(bare), "true"], cache=tmp_path / "c", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert len(_layer_lines(res.stderr, "unpacked")) == len(a.layers)


def test_real_builds_differing_in_one_distribution_share_the_rest(
    tmp_path: Path, fixture_venv: FixtureVenv
) -> None:
    """envpack.build of a real Spec (the session's venv with PyYAML and fixture wheels), and
    of the same Spec with one more distribution: the second env, on a node that has the
    first, unpacks that distribution's layer only, and both run."""
    site = fixture_venv.site_packages
    base = {"PyYAML": ("yaml",)}
    spec = Spec(
        interpreter=probe(fixture_venv.python).interpreter,
        roots=(),
        distributions=tuple(distributions(site, base)),
        stdlib=tuple(dynload_modules(fixture_venv.python, ["yaml", "datetime"])),
    )
    fewer = build(spec, tmp_path / "out-fewer", level=1)
    extra = distributions(site, {**base, "fx-toolz": ("toolz", "tlz")})
    more = replace(spec, distributions=tuple(extra))
    full = build(more, tmp_path / "out-full", level=1)
    cache = tmp_path / "c"
    code = "import yaml; print(yaml.safe_load('a: 1'))"
    first = run(["-d", "-e", str(fewer.path), "python", "-c", code], cache=cache, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "{'a': 1}\n"
    second = run(["-d", "-e", str(full.path), "python", "-c", code], cache=cache, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    res = run(["-e", str(full.path), "python", "-c", "import toolz"], cache=cache, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    unpacked = _layer_lines(second.stderr, "unpacked")
    assert len(unpacked) == 1, second.stderr
    assert len(_layer_lines(second.stderr, "present")) == len(full.layers) - 1
    assert {x.name for x in full.layers if x.hash in unpacked} == {"fx-toolz"}
    for env in (fewer, full):
        res = run(["--check", "-e", str(cache / env.hash)], cache=cache, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
