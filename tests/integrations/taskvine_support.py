"""A real TaskVine for the tests: where its install is, and how one run of it is isolated.

The install (vine_worker and ndcctools.taskvine: conda-forge ships them, PyPI and Debian do not)
is $ENVPACK_CCTOOLS, else what scripts/cctools.sh builds from ../shared. A TaskVine manager listens
on all interfaces, so each run (manager and worker both, in apps/vine_driver.py) lives in a network
namespace of its own, `unshare --net --mount` with only loopback up, and with a private empty tmpfs
on /var/tmp: a fresh node for the runner's default cache, made without setting anything envpack
reads. /tmp stays as it is: pytest's tmp_path, the worker's workspace, lives there.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).parent / "apps" / "vine_driver.py"
CCTOOLS_VAR = "ENVPACK_CCTOOLS"
NO_CCTOOLS = (
    "../shared absent: run scripts/cctools.sh, or install ndcctools from conda-forge and set "
    "ENVPACK_CCTOOLS"
)
PORT = 9123  # any port will do: the namespace has no other listener


@dataclass(frozen=True)
class Cctools:
    """A cctools install prefix holding vine_worker and ndcctools for this interpreter."""

    prefix: Path

    @property
    def vine_worker(self) -> Path:
        return self.prefix / "bin" / "vine_worker"

    @property
    def site_packages(self) -> Path:
        v = sys.version_info
        return self.prefix / "lib" / f"python{v.major}.{v.minor}" / "site-packages"

    def problem(self) -> str | None:
        """Why this prefix cannot run a TaskVine manager and worker here (None when it can)."""
        if not os.access(self.vine_worker, os.X_OK):
            return f"no executable {self.vine_worker}"
        res = subprocess.run(
            [sys.executable, "-c", "import ndcctools.taskvine"],
            env={**os.environ, "PYTHONPATH": str(self.site_packages)},
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode != 0:
            tail = res.stderr.strip().splitlines()[-1:] or ["no message"]
            return f"cannot import ndcctools.taskvine from {self.site_packages}: {tail[0]}"
        return None


def locate_cctools() -> Cctools | None:
    """$ENVPACK_CCTOOLS, else the prefix scripts/cctools.sh prints (building it from ../shared
    the first time), else None. A failing build raises: it must not pass for a skip."""
    given = os.environ.get(CCTOOLS_VAR, "").strip()
    if given:
        return Cctools(Path(given))
    if not (REPO.parent / "shared").is_dir():
        return None
    res = subprocess.run(
        ["bash", str(REPO / "scripts" / "cctools.sh")], capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        raise RuntimeError(f"scripts/cctools.sh failed ({res.returncode}):\n{res.stderr[-3000:]}")
    lines = res.stdout.strip().splitlines()
    return Cctools(Path(lines[-1])) if lines else None


def ip_tool() -> str | None:
    """`ip` (iproute2), which lives in sbin: not on every user's PATH."""
    return shutil.which("ip", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin:/sbin"]))


def _netns_script(ip: str) -> str:
    """What runs first inside the new namespaces: a fresh /var/tmp, loopback up, then "$@"."""
    fresh = "mount -t tmpfs envpack-fresh-node /var/tmp"
    return f'{fresh} && {shlex.quote(ip)} link set lo up && exec "$@"'


def netns_problem() -> str | None:
    """Why a network namespace with a private /var/tmp cannot be made here (None if it can)."""
    ip = ip_tool()
    if shutil.which("unshare") is None:
        return "unshare not found (apt-get install util-linux)"
    if ip is None:
        return "ip not found (apt-get install iproute2)"
    res = subprocess.run(
        ["unshare", "--net", "--mount", "sh", "-c", _netns_script(ip), "sh", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        return f"unshare --net --mount is not permitted here: {res.stderr.strip()}"
    return None


def run_in_netns(
    argv: Sequence[str], *, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in a network namespace of its own (loopback only) with a fresh /var/tmp."""
    ip = ip_tool()
    assert ip is not None
    cmd = ["unshare", "--net", "--mount", "sh", "-c", _netns_script(ip), "sh", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


@dataclass(frozen=True)
class VineTask:
    """One finished TaskVine task as the driver saw it; `report` is sixapp's JSON line."""

    id: int
    result: str
    exit_code: int
    output: str
    command: str

    @property
    def ok(self) -> bool:
        return self.result == "success" and self.exit_code == 0

    @property
    def report(self) -> dict[str, Any]:
        lines = [ln for ln in self.output.splitlines() if ln.startswith("{")]
        assert lines, f"task {self.id} printed no report: {self.output!r}"
        report: dict[str, Any] = json.loads(lines[-1])
        return report


@dataclass
class VineRun:
    """What one driver run did: the tasks of each manager in turn, and the worker's workspace."""

    workspace: Path
    managers: list[list[VineTask]]
    worker_alive: bool
    cache_events: list[str] = field(default_factory=list)
    worker_log: str = ""

    @property
    def tasks(self) -> list[VineTask]:
        return [t for m in self.managers for t in m]


@dataclass
class TaskVine:
    """Runs apps/vine_driver.py in a network namespace of its own, with a fresh /var/tmp."""

    cctools: Cctools
    root: Path
    runs: int = 0

    def run(
        self,
        mode: str,
        tarball: Path,
        *,
        cache: str,
        tasks: int,
        managers: int,
        hide: Sequence[Path] = (),
        timeout: float = 60,
    ) -> VineRun:
        """``managers`` managers one after another on one port, ``tasks`` tasks each, all served
        by one vine_worker whose tasks cannot see ``hide``; see apps/vine_driver.py for ``mode``."""
        raw, log = self.run_app(
            DRIVER,
            {
                "mode": mode,
                "cache": cache,
                "tarball": str(tarball),
                "runner": str(tarball.parent / "envpack-run"),
                "tasks": tasks,
                "managers": managers,
            },
            hide=hide,
            timeout=timeout,
            limit=managers * timeout + 60,
        )
        return VineRun(
            workspace=Path(raw["workspace"]),
            managers=[[VineTask(**t) for t in m["tasks"]] for m in raw["managers"]],
            worker_alive=raw["worker_alive"],
            cache_events=raw["cache_events"],
            worker_log=log,
        )

    def run_app(
        self,
        driver: Path,
        config: dict[str, Any],
        *,
        hide: Sequence[Path] = (),
        pythonpath: Sequence[Path] = (),
        timeout: float = 60,
        python: Path | None = None,
        limit: float | None = None,
    ) -> tuple[dict[str, Any], str]:
        """Run a manager program ``driver`` (which starts its worker with vine_driver's
        start_worker) in a network namespace of its own, on ``python`` (default: this one);
        returns its JSON line (plus the worker's workspace) and the worker's log and debug log.
        ``pythonpath`` precedes cctools' site-packages, for the manager only. ``timeout`` is
        the driver's own bound
        (its config's), ``limit`` the whole run's (default: ``timeout`` + 90 s)."""
        here = self.root / f"app{self.runs}"
        self.runs += 1
        here.mkdir(parents=True)
        cfg: dict[str, object] = {
            "vine_worker": str(self.cctools.vine_worker),
            "workspace": str(here / "workspace"),
            "worker_log": str(here / "worker.log"),
            "worker_debug": str(here / "worker.debug"),
            "run_info": str(here / "run-info"),
            "hide": [str(p) for p in hide],
            "port": PORT,
            "timeout": timeout,
            **config,
        }
        path = here / "driver.json"
        path.write_text(json.dumps(cfg, indent=1))
        env = dict(os.environ)
        for var in ("ENVPACK_CACHE", "PYTHONHOME", "VIRTUAL_ENV"):
            env.pop(var, None)
        env["PYTHONPATH"] = os.pathsep.join(
            [*map(str, pythonpath), str(self.cctools.site_packages)]
        )
        argv = [str(python or sys.executable), str(driver), str(path)]
        res = run_in_netns(argv, env=env, timeout=limit or timeout + 90)
        # the worker's output, then its debug log (where a failed library's traceback goes)
        log = "\n".join(
            p.read_text(errors="replace")
            for p in (here / "worker.log", here / "worker.debug")
            if p.exists()
        )
        assert res.returncode == 0 and res.stdout.strip(), (
            f"{driver.name} exited {res.returncode}\nstderr:\n{res.stderr[-4000:]}\n"
            f"worker log:\n{log[-2000:]}"
        )
        raw: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
        raw.setdefault("workspace", cfg["workspace"])  # where the worker kept its cache
        return raw, log
