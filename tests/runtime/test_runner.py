"""envpack-run under dash with real tar, gzip, zstd and flock, on tarballs made here."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envpack.runtime import (
    EXIT_CANT_WRITE,
    EXIT_CORRUPT,
    EXIT_LOCK_TIMEOUT,
    EXIT_NO_ENV,
    EXIT_UNSAFE,
    EXIT_USAGE,
)
from tests.runtime.envs import (
    RUNNER,
    SHELL,
    cache_entries,
    make_env,
    pack,
    rewrite_summary,
    run,
    write_tree,
)

SHOW_ENV = (
    'printf "%s\\n" "$PATH" "${PYTHONPATH-unset}" "${PYTHONHOME-unset}" '
    '"${PYTHONNOUSERSITE-unset}" "${ENVPACK_PREFIX-unset}" "${VIRTUAL_ENV-unset}"; exit 7'
)
DIRTY = {"PYTHONPATH": "/outside/path", "PYTHONHOME": "/outside/home", "VIRTUAL_ENV": "/venv"}


def test_runs_command_activated_with_its_exit_status(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    cache = tmp_path / "cache"
    res = run(
        ["-e", str(env.tarball), "--", "sh", "-c", SHOW_ENV],
        cache=cache,
        cwd=tmp_path,
        extra_env=DIRTY,
    )
    assert res.returncode == 7, res.stderr
    path, pythonpath, pythonhome, nousersite, prefix, venv = res.stdout.splitlines()
    entry = cache / env.hash
    assert path.split(":")[0] == f"{entry}/bin"
    assert (pythonpath, pythonhome, nousersite, venv) == ("unset", "unset", "1", "unset")
    assert prefix == str(entry)
    assert cache_entries(cache) == [env.hash]


def test_python_in_env_sees_no_outside_path(tmp_path: Path) -> None:
    """`python` resolves to the env's bin/python, and nothing from PYTHONPATH reaches sys.path."""
    env = make_env(tmp_path)
    code = "import os, sys; print(sys.flags.no_user_site, '/outside/path' in sys.path)"
    res = run(
        ["-e", str(env.tarball), "python", "-c", code],
        cache=tmp_path / "c",
        cwd=tmp_path,
        extra_env=DIRTY,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["1", "False"]


def test_shebang_and_long_options(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    res = subprocess.run(
        [RUNNER, "--debug", f"--environment={env.tarball}", "--wait-for-lock", "5", "--",
         "sh", "-c", "exit 3"],
        env={**os.environ, "ENVPACK_CACHE": str(tmp_path / "c")},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert res.returncode == 3, res.stderr
    assert f"unpacked {env.hash} in " in res.stderr


def test_second_run_uses_the_cache(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    cache = tmp_path / "c"
    first = run(["-d", "-e", str(env.tarball), "true"], cache=cache, cwd=tmp_path)
    second = run(["-d", "-e", str(env.tarball), "true"], cache=cache, cwd=tmp_path)
    assert first.returncode == second.returncode == 0
    assert "unpacked" in first.stderr
    assert "unpacked" not in second.stderr
    assert f"cached {env.hash}" in second.stderr


def test_unpack_to_becomes_a_link_to_the_entry(tmp_path: Path) -> None:
    """coffea 0.7 passes -u "$WORK_QUEUE_SANDBOX"/<env>-env-<pid>."""
    env = make_env(tmp_path)
    cache = tmp_path / "c"
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    link = sandbox / "env-env-1234"
    res = run(
        ["-d", "-e", str(env.tarball), "-u", str(link), "--", "true"], cache=cache, cwd=sandbox
    )
    assert res.returncode == 0, res.stderr
    assert link.is_symlink() and link.resolve() == (cache / env.hash).resolve()
    # a stale link from an earlier run is replaced; a relative -u is taken from the cwd
    link.unlink()
    link.symlink_to(tmp_path / "gone")
    res = run(["-e", str(env.tarball), "-u", "env-env-1234", "true"], cache=cache, cwd=sandbox)
    assert res.returncode == 0, res.stderr
    assert link.resolve() == (cache / env.hash).resolve()
    # a real, non-empty directory is left alone, with a warning, and the task still runs
    link.unlink()
    link.mkdir()
    (link / "keep").write_text("x")
    res = run(["-e", str(env.tarball), "-u", str(link), "true"], cache=cache, cwd=sandbox)
    assert res.returncode == 0
    assert "left alone" in res.stderr
    assert (link / "keep").read_text() == "x"


def test_env_as_unpacked_directory(tmp_path: Path) -> None:
    root = tmp_path / "env"
    write_tree(root)
    cache = tmp_path / "c"
    res = run(
        ["-e", str(root), "-u", str(root), "--", "sh", "-c", SHOW_ENV],
        cache=cache,
        cwd=tmp_path,
        extra_env=DIRTY,
    )
    assert res.returncode == 7, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split(":")[0] == f"{root.resolve()}/bin"
    assert lines[1] == "unset" and lines[4] == str(root.resolve())
    assert not cache.exists()  # a directory is used in place
    assert not root.is_symlink()
    bare = tmp_path / "notenv"
    bare.mkdir()
    res = run(["-e", str(bare), "true"], cache=cache, cwd=tmp_path)
    assert res.returncode == EXIT_NO_ENV
    assert "not an environment" in res.stderr


def test_data_links_in_the_task_cwd(tmp_path: Path) -> None:
    env = make_env(
        tmp_path,
        files={"local/corrections/sf.json": "{}", "local/top.txt": "top", "local/mine.txt": "env"},
        links=["corrections/sf.json", "top.txt", "mine.txt", "../escape.txt", "/abs.txt"],
    )
    cwd = tmp_path / "task"
    cwd.mkdir()
    (cwd / "mine.txt").write_text("the task's own")
    res = run(
        ["-e", str(env.tarball), "cat", "corrections/sf.json", "top.txt", "mine.txt"],
        cache=tmp_path / "c",
        cwd=cwd,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == "{}topthe task's own"
    assert (cwd / "corrections" / "sf.json").is_symlink()
    assert not (tmp_path / "escape.txt").exists()
    assert "ignoring" in res.stderr


def test_only_unpacking_links_nothing_into_the_cwd(tmp_path: Path) -> None:
    # `-n` (and no command at all) prepares the node cache, e.g. in a pre-stage: no task
    # runs in this directory, so none of the environment's data links may appear in it.
    env = make_env(tmp_path, files={"local/top.txt": "top"}, links=["top.txt"])
    cwd = tmp_path / "stage"
    cwd.mkdir()
    cache = tmp_path / "c"
    assert run(["-n", "-e", str(env.tarball), "true"], cache=cache, cwd=cwd).returncode == 0
    assert run(["-e", str(env.tarball)], cache=cache, cwd=cwd).returncode == 0
    assert list(cwd.iterdir()) == []
    assert cache_entries(cache) == [env.hash]


def test_zstd_tarball(tmp_path: Path) -> None:
    if shutil.which("zstd") is None:
        pytest.skip("zstd is not installed")
    root = tmp_path / "env"
    env_hash = write_tree(root)
    tarball = pack(root, tmp_path / f"envpack-{env_hash}.tar.zst", compress="zst")
    res = run(["-d", "-e", str(tarball), "sh", "-c", "exit 5"], cache=tmp_path / "c", cwd=tmp_path)
    assert res.returncode == 5, res.stderr
    assert f"unpacked {env_hash}" in res.stderr


def test_hash_from_summary_when_the_name_does_not_say(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    renamed = env.tarball.rename(tmp_path / "myenv.tar.gz")
    cache = tmp_path / "c"
    res = run(["-e", str(renamed), "true"], cache=cache, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert cache_entries(cache) == [env.hash]


def test_no_command_only_unpacks(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    cache = tmp_path / "c"
    assert run(["-e", str(env.tarball)], cache=cache, cwd=tmp_path).returncode == 0
    assert run(["-n", "-e", str(env.tarball), "false"], cache=cache, cwd=tmp_path).returncode == 0
    assert cache_entries(cache) == [env.hash]


def test_command_not_found_is_127(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    res = run(["-e", str(env.tarball), "no-such-command-xyz"], cache=tmp_path / "c", cwd=tmp_path)
    assert res.returncode == 127


@pytest.mark.parametrize(
    ("args", "extra", "code", "message"),
    [
        ([], {}, EXIT_USAGE, "no environment given"),
        (["-e"], {}, EXIT_USAGE, "needs an argument"),
        (["-x", "-e", "E"], {}, EXIT_USAGE, "unknown option -x"),
        (["-e", "E", "-w", "soon", "true"], {}, EXIT_USAGE, "-w needs a number"),
        (["-e", "E", "-w", ".", "true"], {}, EXIT_USAGE, "-w needs a number"),
        (["-e", "E", "-w", "1.2.3", "true"], {}, EXIT_USAGE, "-w needs a number"),
        (["-e", "E", "-w", "99999999999", "true"], {}, EXIT_USAGE, "-w needs a number"),
        # 16777216T is 2^64 bytes: shell arithmetic wraps it to 0, which would evict everything
        (["-e", "E", "true"], {"ENVPACK_CACHE_MAX": "16777216T"}, EXIT_USAGE, "not a size"),
        (
            ["-e", "E", "true"],
            {"ENVPACK_CACHE_MAX": "99999999999999999999"},
            EXIT_USAGE,
            "not a size",
        ),
        (["-e", "E", "-u", "F", "true"], {}, EXIT_USAGE, "is a file, not a directory"),
        (["--check", "-e", "E"], {}, EXIT_USAGE, "--check needs -e DIR"),
        (["-e", "E", "true"], {"ENVPACK_CACHE_MAX": "lots"}, EXIT_USAGE, "not a size"),
        (["-e", "missing.tar.gz", "true"], {}, EXIT_NO_ENV, "no environment at"),
    ],
)
def test_bad_input(
    tmp_path: Path, args: list[str], extra: dict[str, str], code: int, message: str
) -> None:
    env = make_env(tmp_path)
    (tmp_path / "afile").write_text("mine")
    args = [{"E": str(env.tarball), "F": str(tmp_path / "afile")}.get(a, a) for a in args]
    res = run(args, cache=tmp_path / "c", cwd=tmp_path, extra_env=extra)
    assert res.returncode == code, res.stderr
    assert message in res.stderr
    assert cache_entries(tmp_path / "c") == []


def test_help(tmp_path: Path) -> None:
    res = run(["-h"], cache=tmp_path / "c", cwd=tmp_path)
    assert res.returncode == 0
    assert "usage: envpack-run" in res.stdout


def test_unreadable_cache_dir(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    res = run(["-e", str(env.tarball), "true"], cache=blocker / "cache", cwd=tmp_path)
    assert res.returncode == EXIT_CANT_WRITE
    assert "cannot create the cache directory" in res.stderr


def run_at_once(cache: Path, runs: list[tuple[Path, str]]) -> list[tuple[int, str, str]]:
    """``envpack-run -d -e TARBALL -- cat FILE`` for every (tarball, file) at the same time,
    all on ``cache``; (exit status, stdout, stderr) of each, in order."""
    environ = {**os.environ, "ENVPACK_CACHE": str(cache)}
    procs = [
        subprocess.Popen(
            [SHELL, RUNNER, "-d", "-e", str(tarball), "--", "cat", file],
            env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for tarball, file in runs
    ]  # fmt: skip
    return [(p.wait(timeout=120), *p.communicate()) for p in procs]


def test_twenty_concurrent_runners_unpack_once(tmp_path: Path) -> None:
    env = make_env(tmp_path, files={f"lib/pkg/m{i}.py": f"x = {i}\n" * 200 for i in range(300)})
    cache = tmp_path / "c"
    results = run_at_once(
        cache, [(env.tarball, f"{cache}/{env.hash}/lib/pkg/m{i}.py") for i in range(20)]
    )
    assert [rc for rc, _, _ in results] == [0] * 20, [err for _, _, err in results]
    for i, (_, out, _) in enumerate(results):
        assert out == f"x = {i}\n" * 200
    unpacks = sum(err.count(f"unpacked {env.hash} in ") for _, _, err in results)
    assert unpacks == 1
    assert cache_entries(cache) == [env.hash]


def _assert_refused(
    res: subprocess.CompletedProcess[str], cache: Path, code: int, what: str
) -> None:
    assert res.returncode == code, (res.returncode, res.stderr)
    assert what in res.stderr
    assert "nothing was cached" in res.stderr or code != EXIT_CORRUPT
    assert cache_entries(cache) == []  # no entry, no temp dir left behind


def test_truncated_tarball_refused(tmp_path: Path) -> None:
    env = make_env(tmp_path, files={"lib/big.bin": os.urandom(200_000)})
    data = env.tarball.read_bytes()
    env.tarball.write_bytes(data[: len(data) // 2])
    cache = tmp_path / "c"
    res = run(["-e", str(env.tarball), "true"], cache=cache, cwd=tmp_path)
    _assert_refused(res, cache, EXIT_CORRUPT, "corrupt or truncated")


def test_corrupt_tarball_refused(tmp_path: Path) -> None:
    env = make_env(tmp_path, files={"lib/data.txt": "".join(f"line {i}\n" for i in range(50_000))})
    data = bytearray(env.tarball.read_bytes())
    middle = len(data) // 2
    for i in range(middle, middle + 64):
        data[i] ^= 0xFF
    env.tarball.write_bytes(bytes(data))
    cache = tmp_path / "c"
    res = run(["-e", str(env.tarball), "true"], cache=cache, cwd=tmp_path)
    _assert_refused(res, cache, EXIT_CORRUPT, "corrupt or truncated")


def test_summary_mismatch_refused(tmp_path: Path) -> None:
    """A member missing from the archive (its summary still counts it)."""
    root = tmp_path / "env"
    env_hash = write_tree(root, files={"lib/a.py": "a = 1\n", "lib/b.py": "b = 2\n"})
    (root / "lib" / "b.py").unlink()
    tarball = pack(root, tmp_path / f"envpack-{env_hash}.tar.gz")
    cache = tmp_path / "c"
    res = run(["-e", str(tarball), "true"], cache=cache, cwd=tmp_path)
    _assert_refused(res, cache, EXIT_CORRUPT, "lacks 'lib/b.py', which its manifest lists")


def test_name_and_summary_hash_disagree(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    other = env.tarball.rename(tmp_path / "envpack-0000000000000000.tar.gz")
    cache = tmp_path / "c"
    res = run(["-e", str(other), "true"], cache=cache, cwd=tmp_path)
    _assert_refused(res, cache, EXIT_CORRUPT, "its manifest is that of environment")


def test_not_an_envpack_archive(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("f")
    tarball = tmp_path / "envpack-0123456789abcdef.tar.gz"
    subprocess.run(["tar", "-czf", str(tarball), "-C", str(tmp_path / "x"), "f"], check=True)
    cache = tmp_path / "c"
    res = run(["-e", str(tarball), "true"], cache=cache, cwd=tmp_path)
    _assert_refused(res, cache, EXIT_CORRUPT, "no .envpack/manifest.json")


def test_kill9_mid_unpack_then_a_clean_run(tmp_path: Path) -> None:
    """The archive arrives through a FIFO: half of it, then the runner's group is killed."""
    env = make_env(tmp_path, files={f"lib/f{i}.bin": os.urandom(4096) for i in range(400)})
    data = env.tarball.read_bytes()
    fifo_dir = tmp_path / "fifo"
    fifo_dir.mkdir()
    fifo = fifo_dir / env.tarball.name
    os.mkfifo(fifo)
    cache = tmp_path / "c"
    proc = subprocess.Popen(
        [SHELL, RUNNER, "-e", str(fifo), "true"],
        env={**os.environ, "ENVPACK_CACHE": str(cache)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    with open(fifo, "wb") as writer:
        writer.write(data[: len(data) // 2])
        writer.flush()
        deadline = time.monotonic() + 30
        tmp_dirs: list[Path] = []
        while time.monotonic() < deadline:
            tmp_dirs = [p for p in cache.glob(".tmp-*") if p.is_dir()] if cache.exists() else []
            if tmp_dirs and any((d / "lib").is_dir() for d in tmp_dirs):
                break
            time.sleep(0.01)
        assert tmp_dirs, "the unpack never started"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert not (cache / env.hash).exists()
    # the half-unpacked tree and the runner's work dir beside it
    left = sorted(p.name for p in cache.iterdir() if p.is_dir())
    assert len(left) == 2 and all(n.startswith(f".tmp-{env.hash}-") for n in left), left
    res = run(["-d", "-e", str(env.tarball), "true"], cache=cache, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("removing stale") == 2
    assert cache_entries(cache) == [env.hash]


def test_terminated_mid_unpack_leaves_nothing(tmp_path: Path) -> None:
    """SIGTERM to the runner while tar waits for the rest of the archive: it stops tar, removes
    its temp dir and exits 143."""
    env = make_env(tmp_path, files={f"lib/f{i}.bin": os.urandom(4096) for i in range(400)})
    data = env.tarball.read_bytes()
    fifo = tmp_path / "fifo" / env.tarball.name
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    cache = tmp_path / "c"
    proc = subprocess.Popen(
        [SHELL, RUNNER, "-e", str(fifo), "true"],
        env={**os.environ, "ENVPACK_CACHE": str(cache)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    with open(fifo, "wb") as writer:
        writer.write(data[: len(data) // 2])
        writer.flush()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not list(cache.glob(".tmp-*/lib")):
            time.sleep(0.01)
        assert list(cache.glob(".tmp-*/lib")), "the unpack never started"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 143
    assert cache_entries(cache) == []


def _unsafe_tarball(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    """An otherwise valid env tarball with one unsafe member; returns it and the outside dir."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    root = tmp_path / "env"
    files: dict[str, str | bytes] = {"lib/x": "payload"}
    symlinks: dict[str, str] = {}
    transform: list[str] = []
    if kind == "dotdot":
        transform = ["-P", "--transform", "s,^lib/x$,../../outside/escaped,"]
    elif kind == "absolute":
        transform = ["-P", "--transform", f"s,^lib/x$,{outside}/escaped,"]
    elif kind == "symlink":
        symlinks = {"lib/evil": "../../outside"}
    elif kind == "absolute-symlink":
        symlinks = {"lib/evil": str(outside)}
    elif kind == "symlink-chain":
        # each link looks harmless on its own: lib/up -> .. is the root, lib/up/.. is outside
        symlinks = {"lib/up": "..", "bin/esc": "../lib/up/../outside"}
    elif kind == "hardlink":
        # lib/y is a hard link to lib/x; the transform (hard link targets only) points it outside
        transform = ["-P", "--transform", f"s,^lib/x$,{outside}/secret,RSh"]
    env_hash = write_tree(root, files=files, symlinks=symlinks)
    if kind == "hardlink":
        os.link(root / "lib" / "x", root / "lib" / "y")
        rewrite_summary(root, env_hash)
    if kind == "fifo":
        os.mkfifo(root / "lib" / "pipe")
    tarball = pack(root, tmp_path / f"envpack-{env_hash}.tar.gz", *transform)
    return tarball, outside


@pytest.mark.parametrize(
    "kind",
    ["dotdot", "absolute", "symlink", "absolute-symlink", "symlink-chain", "hardlink", "fifo"],
)
def test_unsafe_members_refused(tmp_path: Path, kind: str) -> None:
    tarball, outside = _unsafe_tarball(tmp_path, kind)
    listing = subprocess.run(
        ["tar", "-tvzf", str(tarball)], capture_output=True, text=True, check=True
    ).stdout
    # the tarball really is unsafe
    assert ("outside" in listing) or (".." in listing) or ("\np" in listing), listing
    cache = tmp_path / "c"
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    res = run(["-e", str(tarball), "true"], cache=cache, cwd=work)
    _assert_refused(res, cache, EXIT_UNSAFE, "refusing")
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_text() == "secret"
    assert not (tmp_path / "escaped").exists()


def _hold_lock(lock: Path, mode: int) -> int:
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    fcntl.flock(fd, mode)
    return fd


def test_lock_wait_is_bounded(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    cache = tmp_path / "c"
    cache.mkdir()
    fd = _hold_lock(cache / f"{env.hash}.lock", fcntl.LOCK_EX)  # an unpack that never ends
    try:
        res = run(["-w", "1", "-e", str(env.tarball), "true"], cache=cache, cwd=tmp_path)
    finally:
        os.close(fd)
    assert res.returncode == EXIT_LOCK_TIMEOUT
    assert "timed out after 1s" in res.stderr


def test_command_holds_a_shared_lock_and_gets_signals(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    cache = tmp_path / "c"
    started = tmp_path / "started"
    proc = subprocess.Popen(
        [SHELL, RUNNER, "-e", str(env.tarball), "--", sys.executable, "-c",
         f"import pathlib, time; pathlib.Path({str(started)!r}).touch(); time.sleep(60)"],
        env={**os.environ, "ENVPACK_CACHE": str(cache)},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert started.exists()
        fd = os.open(cache / f"{env.hash}.lock", os.O_WRONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # other tasks may share it
        finally:
            os.close(fd)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == -signal.SIGTERM  # the command itself got it
    finally:
        proc.kill()
        proc.wait()
    fd = _hold_lock(cache / f"{env.hash}.lock", fcntl.LOCK_EX | fcntl.LOCK_NB)  # released
    os.close(fd)


def _stamp(cache: Path, env_hash: str, when: float) -> None:
    os.utime(cache / f"{env_hash}.lock", (when, when))


def test_eviction_lru_and_never_in_use(tmp_path: Path) -> None:
    big = {"lib/blob.bin": os.urandom(1_000_000)}
    envs = [make_env(tmp_path / f"e{i}", files=big, salt=str(i)) for i in range(4)]
    for e in envs:
        e.tarball.parent.mkdir(exist_ok=True)
    cache = tmp_path / "c"
    limit = {"ENVPACK_CACHE_MAX": "2500K"}  # two of them fit (a little over 1M on disk each)
    for e in envs[:2]:
        assert run(["-e", str(e.tarball), "true"], cache=cache, cwd=tmp_path).returncode == 0
    now = time.time()
    _stamp(cache, envs[0].hash, now - 300)  # env 0 is the least recently used...
    _stamp(cache, envs[1].hash, now - 100)
    fd = _hold_lock(cache / f"{envs[0].hash}.lock", fcntl.LOCK_SH)  # ...but a task is in it
    try:
        res = run(
            ["-d", "-e", str(envs[2].tarball), "true"], cache=cache, cwd=tmp_path, extra_env=limit
        )
    finally:
        os.close(fd)
    assert res.returncode == 0, res.stderr
    assert f"kept {envs[0].hash}: in use" in res.stderr
    assert f"evicted {envs[1].hash}" in res.stderr
    assert set(cache_entries(cache)) == {envs[0].hash, envs[2].hash}
    # nothing in use now: the least recently used goes first
    _stamp(cache, envs[0].hash, now - 300)
    _stamp(cache, envs[2].hash, now - 10)
    res = run(
        ["-d", "-e", str(envs[3].tarball), "true"], cache=cache, cwd=tmp_path, extra_env=limit
    )
    assert res.returncode == 0, res.stderr
    assert set(cache_entries(cache)) == {envs[2].hash, envs[3].hash}


# A private mount namespace (as root; else as a mapped root in a user namespace).
UNSHARE = ["unshare", "--mount"] + ([] if os.geteuid() == 0 else ["--map-root-user"])


def _can_mount_tmpfs() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare is not installed"
    probe = subprocess.run(
        [*UNSHARE, "sh", "-c", "mount -t tmpfs -o size=64k none /mnt"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if probe.returncode != 0:
        return f"cannot mount a tmpfs in a mount namespace here: {probe.stderr.strip()}"
    return None


def run_on_a_full_disk(
    tmp_path: Path, tarball: Path, listing: str
) -> subprocess.CompletedProcess[str]:
    """``envpack-run -e TARBALL true`` with its cache on a 1 MiB tmpfs (in a mount namespace
    of its own), then the shell command ``listing`` (``{cache}`` is the cache dir) to see what
    was left there; skipped where no tmpfs can be mounted."""
    reason = _can_mount_tmpfs()
    if reason:
        pytest.skip(reason)
    disk = tmp_path / "small"
    disk.mkdir()
    cache = disk / "c"
    script = (
        f'mount -t tmpfs -o size=1m none "{disk}" && '
        f'ENVPACK_CACHE="{cache}" {SHELL} {RUNNER} -e "{tarball}" true; rc=$?; '
        f"{listing.format(cache=cache)}; exit $rc"
    )
    return subprocess.run([*UNSHARE, "sh", "-c", script], capture_output=True, text=True)


def test_full_disk_during_unpack(tmp_path: Path) -> None:
    env = make_env(tmp_path, files={"lib/big.bin": os.urandom(2_000_000)})
    res = run_on_a_full_disk(tmp_path, env.tarball, 'ls -A "{cache}" | grep -v "\\.lock$"')
    assert res.returncode == EXIT_CANT_WRITE, res.stderr
    assert "no space left" in res.stderr
    assert res.stdout == ""  # neither an entry nor a temp dir was left in the full cache
