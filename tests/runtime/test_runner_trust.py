"""envpack-run trusts an entry only when its content proves its name, and a cache only when it is
the user's own. Each case here was reproduced by hand against an earlier runner.

Every test gives the runner its own ENVPACK_CACHE under tmp_path so parallel tests never share
entries; what the runner does with no ENVPACK_CACHE at all is tests/runtime/test_runner_defaults.py.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envpack import layout
from envpack.runtime import EXIT_CANT_WRITE, EXIT_CORRUPT, EXIT_GLIBC, EXIT_UNSAFE
from tests.runtime.envs import (
    RUNNER,
    SHELL,
    cache_entries,
    make_env,
    pack,
    rewrite_meta,
    rewrite_summary,
    run,
    write_tree,
)
from tests.runtime.test_runner import UNSHARE, _can_mount_tmpfs


def _refused(res: subprocess.CompletedProcess[str], cache: Path, code: int, text: str) -> None:
    assert res.returncode == code, res.stderr
    assert text in res.stderr, res.stderr
    assert "nothing was cached" in res.stderr
    assert [n for n in cache_entries(cache) if not n.endswith(".lock")] == []


def _marker_script(marker: Path) -> str:
    """Python source that leaves a trace if it ever runs."""
    return f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"


def _path_without_openssl(tmp_path: Path) -> str:
    """A PATH with every tool of /usr/bin but openssl: a worker where only coreutils hash."""
    bindir = tmp_path / "no-openssl-bin"
    bindir.mkdir()
    for tool in Path("/usr/bin").iterdir():
        if tool.name != "openssl":
            (bindir / tool.name).symlink_to(tool)
    return str(bindir)


@pytest.mark.parametrize("hasher", ["openssl", "sha256sum"])
def test_same_size_change_is_refused(tmp_path: Path, hasher: str) -> None:
    """Count and bytes match; only the sha256 can tell (with either hasher the runner uses)."""
    extra = {} if hasher == "openssl" else {"PATH": _path_without_openssl(tmp_path)}
    root = tmp_path / "env"
    env_hash = write_tree(root, files={"lib/a.py": "a = 1\n", "lib/b c.py": "b = 1\n"})
    (tmp_path / "good").mkdir()
    good = pack(root, tmp_path / "good" / f"envpack-{env_hash}.tar.gz")
    (root / "lib" / "a.py").write_text("a = 2\n")
    tarball = pack(root, tmp_path / f"envpack-{env_hash}.tar.gz")
    cache = tmp_path / "c"
    res = run(["-d", "-e", str(tarball), "true"], cache=cache, cwd=tmp_path, extra_env=extra)
    _refused(res, cache, EXIT_CORRUPT, "'lib/a.py' differs from its manifest (sha256)")
    res = run(["-d", "-e", str(good), "true"], cache=cache, cwd=tmp_path, extra_env=extra)
    assert res.returncode == 0, res.stderr
    assert "verified" in res.stderr


def test_a_file_swapped_for_a_same_size_sitecustomize_is_refused(tmp_path: Path) -> None:
    evil = _marker_script(tmp_path / "pwned")
    root = tmp_path / "env"
    env_hash = write_tree(root, files={"lib/pad.txt": "x" * len(evil)})
    (root / "lib" / "pad.txt").unlink()
    (root / "lib" / "sitecustomize.py").write_text(evil)  # same count, same bytes
    rewrite_summary(root, env_hash)
    tarball = pack(root, tmp_path / f"envpack-{env_hash}.tar.gz")
    cache = tmp_path / "c"
    res = run(["-e", str(tarball), "true"], cache=cache, cwd=tmp_path)
    _refused(res, cache, EXIT_CORRUPT, "holds 'lib/sitecustomize.py', which its manifest does not")


def test_a_relabelled_tarball_cannot_poison_the_real_entry(tmp_path: Path) -> None:
    real = make_env(tmp_path / "real", salt="real")
    root = tmp_path / "evil"
    write_tree(root, files={"lib/evil.py": "x = 1\n"}, salt="evil")
    rewrite_summary(root, real.hash)  # says it is the real env
    fake = pack(root, tmp_path / f"envpack-{real.hash}.tar.gz")
    cache = tmp_path / "c"
    res = run(["-e", str(fake), "true"], cache=cache, cwd=tmp_path)
    _refused(res, cache, EXIT_CORRUPT, f"not of {real.hash}")
    # the env that really has this hash still gets its entry, and it is the real content
    res = run(["-e", str(real.tarball), "cat", "lib/marker.txt"], cache=cache, cwd=real.root)
    assert res.returncode == 0, res.stderr
    assert (cache / real.hash / "lib" / "marker.txt").read_text() == "env real\n"
    assert not (cache / real.hash / "lib" / "evil.py").exists()


@pytest.mark.parametrize(
    "bad", ["0123", "../../../../tmp/x", "0123456789ABCDEF", "0123456789abcdefab"]
)
def test_a_hash_of_the_wrong_length_or_alphabet_is_refused(tmp_path: Path, bad: str) -> None:
    root = tmp_path / "env"
    write_tree(root)
    rewrite_summary(root, bad)
    tarball = pack(root, tmp_path / "myenv.tar.gz")  # no hash in the name: the summary says
    cache = tmp_path / "c"
    res = run(["-e", str(tarball), "true"], cache=cache, cwd=tmp_path)
    assert res.returncode == EXIT_CORRUPT, res.stderr
    assert "not an envpack environment" in res.stderr
    assert cache_entries(cache) == []


def test_modes_are_normalised_on_unpack(tmp_path: Path) -> None:
    """set-id bits and group/other write from the archive never reach the cache (as root, tar
    would otherwise keep them)."""
    root = tmp_path / "env"
    env_hash = write_tree(root, files={"lib/tool.sh": "#!/bin/sh\necho hi\n"})
    os.chmod(root / "lib" / "tool.sh", 0o755)
    env_hash = rewrite_meta(root)
    tarball = pack(root, tmp_path / f"envpack-{env_hash}.tar.gz", "--mode=u+s,g+ws,o+w")
    listing = subprocess.run(
        ["tar", "-tvzf", str(tarball)], capture_output=True, text=True, check=True
    ).stdout
    assert "rwsrwsrwx" in listing  # the archive really carries them
    cache = tmp_path / "c"
    res = run(["-e", str(tarball), "true"], cache=cache, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    for path in [cache / env_hash, *(cache / env_hash).rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        assert mode & 0o7022 == 0, (path, oct(mode))
    assert (cache / env_hash / "lib" / "tool.sh").stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("where", ["name", "link-target"])
def test_control_characters_are_refused(tmp_path: Path, where: str) -> None:
    """A TAB in a member name or link target would split the runner's path<TAB>target lines."""
    root = tmp_path / "env"
    env_hash = write_tree(root)
    if where == "name":
        (root / "lib" / "a\tb").write_text("x")
    else:
        os.symlink("marker.txt\t../../..", root / "lib" / "link")
    tarball = pack(root, tmp_path / f"envpack-{env_hash}.tar.gz")
    cache = tmp_path / "c"
    res = run(["-e", str(tarball), "true"], cache=cache, cwd=tmp_path)
    _refused(res, cache, EXIT_UNSAFE, "control character")


def test_the_builder_refuses_names_no_worker_would_take() -> None:
    with pytest.raises(layout.LayoutError, match="control character"):
        layout.manifest_bytes([layout.Record("lib/a\tb", 0o644, 0, "0" * 64, None)])


def test_a_disk_that_fills_during_verification_is_73(tmp_path: Path) -> None:
    """Thousands of empty files unpack into no blocks; the runner's lists of them do not fit."""
    reason = _can_mount_tmpfs()
    if reason:
        pytest.skip(reason)
    env = make_env(tmp_path, files={f"lib/e/{i:05d}.py": "" for i in range(6000)})
    manifest = (env.root / layout.MANIFEST).stat().st_size
    disk = tmp_path / "small"
    disk.mkdir()
    cache = disk / "c"
    size_kb = (manifest + 400_000) // 1024  # the tree fits; its verification lists do not
    script = (
        f'mount -t tmpfs -o size={size_kb}k none "{disk}" && '
        f'ENVPACK_CACHE="{cache}" {SHELL} {RUNNER} -d -e "{env.tarball}" true; rc=$?; '
        f'ls -A "{cache}" | grep -v "\\.lock$"; exit $rc'
    )
    res = subprocess.run([*UNSHARE, "sh", "-c", script], capture_output=True, text=True)
    assert "untarred" in res.stderr, res.stderr  # the unpack itself got through
    assert res.returncode == EXIT_CANT_WRITE, res.stderr
    assert "no space left" in res.stderr
    assert res.stdout == ""


def _held(lock: Path) -> bool:
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_an_entry_dir_given_as_env_is_locked_while_its_task_runs(tmp_path: Path) -> None:
    """`-e <cache>/<hash>` holds the shared lock too, so eviction cannot pull the env away."""
    env = make_env(tmp_path, files={"lib/blob.bin": os.urandom(100_000)})
    cache = tmp_path / "c"
    assert run(["-e", str(env.tarball), "true"], cache=cache, cwd=tmp_path).returncode == 0
    started = tmp_path / "started"
    proc = subprocess.Popen(
        [SHELL, RUNNER, "-e", str(cache / env.hash), "--", sys.executable, "-c",
         f"import pathlib, time; pathlib.Path({str(started)!r}).touch(); time.sleep(60)"],
    )  # fmt: skip
    try:
        _wait_for(started)
        assert _held(cache / f"{env.hash}.lock")
        res = run(["--evict", "0"], cache=cache, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert f"in-use {env.hash}" in res.stdout
        assert (cache / env.hash / "bin").is_dir()
    finally:
        proc.kill()
        proc.wait()


def _children(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    ).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def test_term_while_waiting_for_the_lock_leaves_no_flock_behind(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    cache = tmp_path / "c"
    cache.mkdir(mode=0o700)
    lock = cache / f"{env.hash}.lock"
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    fcntl.flock(fd, fcntl.LOCK_EX)  # an unpack that takes forever
    try:
        proc = subprocess.Popen(
            [SHELL, RUNNER, "-w", "120", "-e", str(env.tarball), "true"],
            env={**os.environ, "ENVPACK_CACHE": str(cache)}, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        waiting: list[int] = []
        while not waiting and time.monotonic() < deadline:
            waiting = _children(proc.pid)
            time.sleep(0.02)
        assert waiting, "the runner never started waiting for the lock"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 143
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in waiting) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not any(_alive(p) for p in waiting), "an orphaned flock is still waiting"
    finally:
        os.close(fd)


def test_sparse_files_count_by_their_real_use(tmp_path: Path) -> None:
    """64 MiB of holes take almost no disk: eviction and `cache ls` count what is used."""
    root = tmp_path / "env"
    write_tree(root)
    with open(root / "lib" / "holes.bin", "wb") as fh:
        fh.truncate(64 << 20)
    env_hash = rewrite_meta(root)
    tarball = pack(root, tmp_path / f"envpack-{env_hash}.tar.gz", "--sparse")
    cache = tmp_path / "c"
    res = run(["-e", str(tarball), "true"], cache=cache, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    use = layout.lock_use((cache / f"{env_hash}.lock").read_bytes())
    assert use is not None and use < 8 << 20, use
    summary = layout.parse_summary((cache / env_hash / layout.SUMMARY).read_bytes())
    assert int(summary["bytes"]) > 64 << 20


def test_a_cache_writable_by_others_is_refused_and_nothing_planted_runs(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    cache = tmp_path / "c"
    planted = cache / env.hash / "bin"
    planted.mkdir(parents=True)
    marker = tmp_path / "pwned"
    (planted / "python").write_text(f"#!/bin/sh\ntouch {marker}\n")
    (planted / "python").chmod(0o755)
    cache.chmod(0o777)
    res = run(["-e", str(env.tarball), "python", "-c", "pass"], cache=cache, cwd=tmp_path)
    assert res.returncode == EXIT_CANT_WRITE, res.stderr
    assert "writable by others (mode 777)" in res.stderr
    assert not marker.exists()


@pytest.mark.parametrize("how", ["symlink", "writable", "foreign"])
def test_an_unsafe_entry_is_refused(tmp_path: Path, how: str) -> None:
    env = make_env(tmp_path)
    cache = tmp_path / "c"
    assert run(["-e", str(env.tarball), "true"], cache=cache, cwd=tmp_path).returncode == 0
    entry = cache / env.hash
    if how == "symlink":
        elsewhere = tmp_path / "elsewhere"
        entry.rename(elsewhere)
        entry.symlink_to(elsewhere)
    elif how == "writable":
        entry.chmod(0o777)
    else:
        if os.geteuid() != 0:
            pytest.skip("giving a directory to another user needs root")
        os.chown(entry, 65534, 65534)
    res = run(["-e", str(env.tarball), "true"], cache=cache, cwd=tmp_path)
    assert res.returncode == EXIT_CANT_WRITE, res.stderr
    assert "the cache entry" in res.stderr and "refusing it" in res.stderr


def _worker_glibc() -> str:
    out = subprocess.run(["getconf", "GNU_LIBC_VERSION"], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("this machine has no glibc to compare with")
    return out.stdout.split()[-1]


def test_a_worker_with_an_older_glibc_is_told_before_anything_unpacks(tmp_path: Path) -> None:
    have = _worker_glibc()
    major, minor = (int(x) for x in have.split(".")[:2])
    newer = make_env(tmp_path / "newer", glibc=f"{major}.{minor + 1}", salt="newer")
    cache = tmp_path / "c"
    res = run(["-e", str(newer.tarball), "true"], cache=cache, cwd=tmp_path)
    assert res.returncode == EXIT_GLIBC, res.stderr
    assert f"needs glibc {major}.{minor + 1} or newer" in res.stderr
    assert f"has glibc {have}" in res.stderr
    assert not [p for p in cache.iterdir() if not p.name.endswith(".lock")]
    # numeric, not lexical: 2.9 is older than 2.17 (and than this worker's)
    for floor in (have, f"{major}.9" if minor > 9 else f"{major}.{minor}", "2.2.5"):
        older = make_env(tmp_path / f"o{floor}", glibc=floor, salt=floor)
        res = run(["-e", str(older.tarball), "true"], cache=cache, cwd=tmp_path)
        assert res.returncode == 0, (floor, res.stderr)
    # TaskVine's untarred copy is checked on its initializing call too
    res = subprocess.run(
        [SHELL, RUNNER, "--check", "-e", str(newer.root)], capture_output=True, text=True
    )
    assert res.returncode == EXIT_GLIBC, res.stderr
