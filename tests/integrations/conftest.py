"""A real Work Queue manager and real `work_queue_worker`s on localhost, and real envpack envs.

Debian's binding lives in /usr/lib/python3/dist-packages next to everything else Debian ships;
putting that whole directory on sys.path would let Debian's packages shadow the venv's, so a temp
dir holding symlinks to the binding's two files only is prepended instead.

Each test gets its own worker workdir and its own node cache (`ENVPACK_CACHE` in tmp_path), so
parallel tests never share unpacked environments; the built tarballs are shared by every xdist
worker of a session (built once, under a lock). The `fresh_node` fixture is the exception: its
workers set nothing envpack reads, so the runner picks its default cache, on a node made fresh
by an empty /var/tmp in the workers' private mount namespace.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from envpack.integrations.workqueue import binding_files, load_binding
from tests.conftest import _locked, _shared_dir
from tests.integrations.taskvine_support import (
    NO_CCTOOLS,
    Cctools,
    TaskVine,
    locate_cctools,
    netns_problem,
    run_in_netns,
)

APPS = Path(__file__).parent / "apps"
SIX_VERSIONS = ("1.16.0", "1.17.0")


@pytest.fixture(scope="session")
def wq() -> ModuleType:
    """The Work Queue binding (Debian's, exposed alone; or ndcctools); skips if there is none."""
    if shutil.which("work_queue_worker") is None:
        pytest.skip("work_queue_worker not on PATH (apt-get install coop-computing-tools)")
    try:
        return load_binding()
    except ImportError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def wq_binding_dir(wq: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding only Debian's binding (symlinks), for PYTHONPATH of other venvs."""
    try:
        files = binding_files()
    except ImportError as exc:
        pytest.skip(str(exc))
    out = tmp_path_factory.mktemp("wq-binding")
    for src in files:
        (out / src.name).symlink_to(src)
    return out


@dataclass
class Worker:
    """A running `work_queue_worker` process and where it keeps things."""

    proc: subprocess.Popen[bytes]
    workdir: Path
    cache: Path
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Node:
    """One machine's worth of workers sharing a node cache (ENVPACK_CACHE) under tmp_path.

    With ``default_cache`` the workers get no ENVPACK_* variable at all (not even one inherited
    from the test's own environment), so every task runs the runner with its defaults, and
    ``cache`` only says where the test expects the runner's default to be, as the workers see
    it. ``hide`` paths are hidden from every worker of the node (see `start_worker`).
    """

    root: Path
    cache: Path
    workers: list[Worker] = field(default_factory=list)
    default_cache: bool = False
    hide: tuple[Path, ...] = ()

    def start_worker(
        self,
        port: int,
        *,
        cores: int = 2,
        hide: Sequence[Path] = (),
        env: dict[str, str] | None = None,
    ) -> Worker:
        """Start a worker for the manager at localhost:port.

        ``hide`` paths (and the node's) are covered by empty tmpfs mounts in a private mount
        namespace (`unshare --mount`) that the worker and its tasks live in. Each worker gets a
        namespace of its own: two workers of a node that hides a path do not share what they
        write there.
        """
        hide = [*self.hide, *hide]
        n = len(self.workers)
        workdir = self.root / f"worker{n}"
        workdir.mkdir(parents=True)
        log = self.root / f"worker{n}.log"
        cmd = [
            "work_queue_worker",
            "--workdir",
            str(workdir),
            "--cores",
            str(cores),
            "--memory",
            "2000",
            "--disk",
            "4000",
            "--timeout",
            "120",  # gone on its own if a test dies without teardown
            "--parent-death",
            "localhost",
            str(port),
        ]
        if hide:
            mounts = " && ".join(f"mount -t tmpfs envpack-hide {_q(p)}" for p in hide)
            cmd = ["unshare", "--mount", "sh", "-c", f'{mounts} && exec "$@"', "sh", *cmd]
        wenv = dict(os.environ)
        for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
            wenv.pop(var, None)
        if self.default_cache:
            for var in [v for v in wenv if v.startswith("ENVPACK_")]:
                del wenv[var]
        else:
            wenv["ENVPACK_CACHE"] = str(self.cache)
        wenv.update(env or {})
        with open(log, "wb") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=wenv)
        worker = Worker(proc=proc, workdir=workdir, cache=self.cache, log=log)
        self.workers.append(worker)
        return worker


def _q(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))


def can_hide(tmp_path: Path) -> str | None:
    """None if `Node.start_worker` can hide paths here, else why not (a skip reason)."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not on PATH"
    probe = tmp_path / "hide-probe"
    probe.mkdir(exist_ok=True)
    res = subprocess.run(
        ["unshare", "--mount", "sh", "-c", f"mount -t tmpfs x {_q(probe)} && true"],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        return f"unshare --mount with a tmpfs is not allowed here: {res.stderr.strip()}"
    return None


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    """Workers on this machine with a node cache of their own; all stopped at teardown."""
    cache = tmp_path / "node-cache"
    cache.mkdir()
    n = Node(root=tmp_path / "node", cache=cache)
    yield n
    for w in n.workers:
        w.stop()


class Manager:
    """A Work Queue manager on a free port, with helpers to run tasks to completion."""

    def __init__(self, wq: ModuleType, port: int = 0) -> None:
        self.wq = wq
        self.queue: Any = wq.WorkQueue(port=port)
        self.port: int = self.queue.port

    def task(self, command: str, *, cores: int = 1) -> Any:
        t = self.wq.Task(command)
        t.specify_cores(cores)
        t.specify_memory(100)
        t.specify_disk(100)
        return t

    def run(self, tasks: Sequence[Any], *, timeout: float = 120) -> list[Any]:
        """Submit ``tasks`` and wait for all of them; returns them in completion order."""
        for t in tasks:
            self.queue.submit(t)
        done: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(done) < len(tasks):
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(done)} of {len(tasks)} tasks done in {timeout}s")
            t = self.queue.wait(1)
            if t is not None:
                done.append(t)
        return done

    def close(self) -> None:
        """Shut the manager down now (its workers see a disconnect), not at garbage collection."""
        if self.queue is not None:
            free = getattr(self.queue, "_free_queue", None)
            if free is not None:
                free()
            self.queue = None


VAR_TMP = Path("/var/tmp")
DEFAULT_CACHE = VAR_TMP / f"envpack-{os.getuid()}"
"""Where the runner keeps its node cache when nothing says otherwise (/var/tmp is usable)."""


@pytest.fixture
def fresh_node(tmp_path: Path) -> Iterator[Node]:
    """A node that has never run an envpack environment, whose workers use the runner's
    defaults: no ENVPACK_CACHE (nor any other ENVPACK_* variable) in their environment.

    Fresh by construction, not by a setting: every worker lives in a private mount namespace
    with an empty tmpfs over /var/tmp, where the runner's default cache is, so no earlier run on
    this machine (a test, the example, a user) is visible and nothing written there outlives the
    worker. /tmp stays visible (the worker's workdir is under tmp_path). A second worker on this
    node would get its own empty /var/tmp: reconnect the same worker to a new manager instead.
    """
    reason = can_hide(tmp_path)
    if reason:
        pytest.skip(reason)
    n = Node(root=tmp_path / "node", cache=DEFAULT_CACHE, default_cache=True, hide=(VAR_TMP,))
    yield n
    for w in n.workers:
        w.stop()


@pytest.fixture
def manager(wq: ModuleType) -> Iterator[Manager]:
    m = Manager(wq)
    yield m
    m.close()


# --- environments --------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltEnv:
    """A built envpack tarball and the venv it was analyzed from."""

    tarball: Path
    hash: str
    venv: Path
    six: str


def _venv_with_six(root: Path, version: str) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--disable-pip-version-check",
            f"six=={version}",
        ],
        check=True,
    )
    return python


def build_app(python: Path, out: Path) -> tuple[Path, str]:
    """Analyze apps/sixapp.py for ``python`` and build its tarball into ``out``."""
    from envpack.analyzer.api import analyze
    from envpack.build import build

    spec = analyze([APPS / "sixapp.py"], python=str(python))
    assert spec.complete, spec.errors
    env = build(spec, out)
    return Path(env.path), env.hash


@pytest.fixture(scope="session")
def six_envs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuiltEnv]:
    """Two tarballs of apps/sixapp.py: one from a venv with six 1.16.0, one with 1.17.0."""
    shared = _shared_dir(tmp_path_factory) / "wq-six-envs"
    with _locked(shared.parent / "wq-six-envs.lock"):
        ready = shared / "ready.json"
        if ready.exists():
            raw = json.loads(ready.read_text())
            return {
                k: BuiltEnv(Path(v["tarball"]), v["hash"], Path(v["venv"]), v["six"])
                for k, v in raw.items()
            }
        envs: dict[str, BuiltEnv] = {}
        for version in SIX_VERSIONS:
            venv = shared / f"venv-six-{version}"
            python = _venv_with_six(venv, version)
            tarball, digest = build_app(python, shared / f"out-six-{version}")
            envs[version] = BuiltEnv(tarball, digest, venv, version)
        ready.write_text(
            json.dumps(
                {
                    k: {"tarball": str(e.tarball), "hash": e.hash, "venv": str(e.venv), "six": k}
                    for k, e in envs.items()
                }
            )
        )
        return envs


def unpack_count(text: str) -> int:
    """How many times the runner's -d log says it unpacked an environment."""
    return sum(1 for line in text.splitlines() if line.startswith("envpack-run: unpacked "))


# "envpack-run: environment <hash> from <tarball>, cache <dir> (<why>)"
_CACHE_LINE = re.compile(
    r"^envpack-run: environment \S+ from .*, cache (\S+)(?: \(.*\))?$", re.MULTILINE
)


def logged_caches(text: str) -> set[str]:
    """The cache directories the runner's -d log says it used."""
    return set(_CACHE_LINE.findall(text))


def default_cache_problems(
    reports: Sequence[Mapping[str, Any]], logs: Sequence[str], *, workdir: Path, env_hash: str
) -> list[str]:
    """What is wrong with tasks that ran one environment with the runner's default cache on one
    fresh node: ``reports`` say where each task's Python was (``executable``, ``prefix``) and
    ran (``sandbox``), ``logs`` are the runner's -d output of each task.

    Right is: one cache directory, DEFAULT_CACHE, for every task; every task's prefix the one
    entry DEFAULT_CACHE/<hash> and its executable inside it, outside the worker's workdir and
    every task sandbox; exactly one unpack for all the tasks.
    """
    problems = []
    expected = DEFAULT_CACHE / env_hash
    caches = sorted(set().union(*map(logged_caches, logs)))
    if caches != [str(DEFAULT_CACHE)]:
        problems.append(
            f"the runner logged {len(caches)} cache dir(s), not just {DEFAULT_CACHE}, "
            f"e.g. {caches[0] if caches else 'none'}"
        )
    sandboxes = {Path(str(r["sandbox"])) for r in reports if r.get("sandbox")}
    for key in ("prefix", "executable"):
        where = [Path(str(r[key])) for r in reports]
        inside = [p for p in where if p.is_relative_to(workdir)]
        in_sandbox = [p for p in where if any(p.is_relative_to(s) for s in sandboxes)]
        if key == "prefix":
            wrong = [p for p in where if p != expected]
        else:
            wrong = [p for p in where if expected not in p.parents]
        if inside or in_sandbox or wrong:
            problems.append(
                f"{key} not in {expected} in {len(wrong)} of {len(where)} tasks ({len(inside)} "
                f"inside the worker's workdir, {len(in_sandbox)} inside a task sandbox), "
                f"e.g. {(inside or wrong)[0]}"
            )
    unpacks = sum(map(unpack_count, logs))
    if unpacks != 1:
        problems.append(f"{unpacks} unpacks for {len(reports)} tasks, not exactly one")
    return problems


# --- TaskVine ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cctools(tmp_path_factory: pytest.TempPathFactory) -> Cctools:
    """A real TaskVine install (taskvine_support); skips without one, fails on a broken one."""
    # One xdist worker builds from ../shared (minutes, the first time); the others wait for it.
    with _locked(_shared_dir(tmp_path_factory) / "cctools.lock"):
        try:
            found = locate_cctools()
        except RuntimeError as exc:
            pytest.fail(str(exc))
    if found is None:
        pytest.skip(NO_CCTOOLS)
    problem = found.problem()
    if problem:
        pytest.fail(f"TaskVine at {found.prefix} is not usable: {problem}")
    return found


@pytest.fixture
def taskvine(cctools: Cctools, tmp_path: Path) -> TaskVine:
    """Runs of a real TaskVine manager and worker, each in a network namespace of its own."""
    problem = netns_problem()
    if problem:
        pytest.skip(problem)
    return TaskVine(cctools=cctools, root=tmp_path / "taskvine")


# --- engines (envpack.integrations.engines / taskvine) ----------------------------------------


@dataclass(frozen=True)
class EngineVenv:
    """The user's venv for the engine tests: this test venv's packages (dask, distributed,
    parsl, cloudpickle, threadpoolctl from the [test] extra) and cctools' ndcctools, both
    through a .pth file, as a venv layered on others sees them; no copy, no download."""

    root: Path
    python: Path
    cctools: Cctools


@pytest.fixture(scope="session")
def engine_venv(tmp_path_factory: pytest.TempPathFactory, cctools: Cctools) -> EngineVenv:
    import sysconfig

    shared = _shared_dir(tmp_path_factory)
    root = shared / "engine-venv"
    with _locked(shared / "engine-venv.lock"):
        python = root / "bin" / "python"
        if not (root / ".ready").exists():
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
            v = sys.version_info
            site = root / "lib" / f"python{v.major}.{v.minor}" / "site-packages"
            ours = sysconfig.get_paths()["purelib"]
            (site / "envpack-test-layers.pth").write_text(f"{ours}\n{cctools.site_packages}\n")
            (root / ".ready").write_text("")
        return EngineVenv(root=root, python=python, cctools=cctools)


def engine_hide_list(venv: EngineVenv) -> list[Path]:
    """What the engine tests' workers must not see: our interpreter's install, this venv, the
    layered user venv, cctools' Python packages and Debian's Python libraries."""
    base = Path(sys.base_prefix)
    parts = base.parts
    pyenv = Path(*parts[: parts.index("versions")]) if "versions" in parts else base
    hide = {pyenv, Path(sys.prefix), venv.root, venv.cctools.site_packages.parent}
    hide |= {p for p in Path("/usr/lib").glob("python3*") if p.is_dir()}
    return sorted(p for p in hide if not any(q != p and q in p.parents for q in hide))


def run_engine_driver(
    driver: Path,
    here: Path,
    venv: EngineVenv,
    tarball: Path,
    cfg: Mapping[str, Any],
    *,
    paths: Sequence[Path] = (),
    timeout: float = 120,
) -> dict[str, Any]:
    """Run an engine's driver app (tests/integrations/apps) in a network namespace of its own,
    with ``cfg`` plus what every driver reads (its dir, the tarball and runner, the paths to
    hide from workers) in ``here/driver.json``; its last stdout line, as JSON.

    The driver sees no ENVPACK_CACHE (the runner's default is what users get) and imports
    envpack and the apps from this checkout (plus ``paths``)."""
    problem = netns_problem()
    if problem:
        pytest.skip(problem)
    here.mkdir()
    full = {
        "dir": str(here),
        "tarball": str(tarball),
        "runner": str(tarball.parent / "envpack-run"),
        "hide": [str(p) for p in engine_hide_list(venv)],
        **cfg,
    }
    config = here / "driver.json"
    config.write_text(json.dumps(full))
    env = {k: v for k, v in os.environ.items() if k not in ("ENVPACK_CACHE", "VIRTUAL_ENV")}
    repo = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join(map(str, [repo, APPS, *paths]))
    res = run_in_netns([sys.executable, str(driver), str(config)], env=env, timeout=timeout)
    assert res.returncode == 0 and res.stdout.strip(), res.stderr[-4000:]
    raw: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return raw


def build_engine_env(
    tmp_path_factory: pytest.TempPathFactory,
    venv: EngineVenv,
    engines: str | tuple[str, ...],
    imports: tuple[str, ...] | None = None,
) -> Path:
    """The tarball of apps/enginefuncs.py for ``engines`` (with ``imports`` instead of the
    table's rows when given), built once per session and key under a lock."""
    from envpack.integrations.engines import environment_for

    names = (engines,) if isinstance(engines, str) else engines
    key = "+".join(names) + ("" if imports is None else "-only-" + "+".join(imports or ("none",)))
    shared = _shared_dir(tmp_path_factory) / "engine-envs"
    with _locked(shared / f"{key}.lock"):
        ready = shared / f"{key}.json"
        if ready.exists():
            return Path(json.loads(ready.read_text())["tarball"])
        env = environment_for(
            names,
            [APPS / "enginefuncs.py"],
            out_dir=shared / key,
            python=venv.python,
            imports=imports,
        )
        ready.write_text(json.dumps({"tarball": str(env.path)}))
        return Path(env.path)


# --- dask-awkward through DaskVine (the default suite's light stack) --------------------------

DAK_PINS = ("awkward==2.14.0", "awkward_cpp==57", "numpy==2.4.6", "dask-awkward==2025.5.0",
            "cachetools==8.0.2")  # fmt: skip
"""dask-awkward without coffea, next to the [test] extra's dask 2025.3.0 (which DaskVine
accepts): dask-awkward 2025.5.0 declares dask<2025.4.0; awkward, numpy as coffea 2026.9.0
resolves them (bench/requirements-coffea2026.txt)."""

DAK_VENV = (
    Path(os.environ.get("ENVPACK_BENCH_CACHE", Path.home() / ".cache" / "envpack-bench"))
    / "dask-awkward-venv"
)


@pytest.fixture(scope="session")
def dak_venv(cctools: Cctools) -> EngineVenv:
    """The engine venv plus awkward and dask-awkward of its own: the user's venv for the light
    DaskVine test. Installed from PyPI once (about 30 MB of wheels, no resolution: exact pins,
    --no-deps) under ~/.cache/envpack-bench, not into the test venv, so no other test analyzes
    numpy; layered on this venv and cctools' site-packages like `engine_venv`."""
    import sysconfig

    root = DAK_VENV
    with _locked(root.parent / "dask-awkward-venv.lock"):
        python = root / "bin" / "python"
        stamp = root / ".envpack-pins"
        v = sys.version_info
        site = root / "lib" / f"python{v.major}.{v.minor}" / "site-packages"
        if not stamp.exists() or stamp.read_text() != "\n".join(DAK_PINS):
            if root.exists():
                shutil.rmtree(root)
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
            pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
            subprocess.run([*pip, "--disable-pip-version-check", "--no-deps", *DAK_PINS],
                           check=True)  # fmt: skip
            stamp.write_text("\n".join(DAK_PINS))
        layers = f"{sysconfig.get_paths()['purelib']}\n{cctools.site_packages}\n"
        pth = site / "envpack-test-layers.pth"
        if not pth.exists() or pth.read_text() != layers:
            pth.write_text(layers)
        return EngineVenv(root=root, python=python, cctools=cctools)
