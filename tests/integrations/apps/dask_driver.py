"""A Dask distributed run for tests/integrations/test_dask.py; prints one JSON line.

Run by the test inside a network namespace of its own (loopback only). Starts a real scheduler
(`python -m distributed.cli.dask_scheduler` of the test's venv) on 127.0.0.1, one worker inside
the envpack environment in a mount namespace that hides the manager's Python, then a Client
that submits enginefuncs.where(i) and gathers the results. ``mode`` says how the worker starts:

- ``runner``: envpack.integrations.dask.worker_command, `envpack-run -e ENV -- dask worker ...`
- ``jobqueue``: what an HTCondorCluster job runs, `/bin/sh -c "{python} -m
  distributed.cli.dask_worker ... --nanny --death-timeout 60"` in a scratch directory holding
  the two transferred files, with python= from jobqueue_options

Usage: dask_driver.py CONFIG.json
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import enginefuncs  # type: ignore[import-not-found]  # the user's module, next to this script
from distributed import Client

from envpack.integrations import dask as ed

_NOT_FOR_THE_WORKER = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")


def start(
    cmd: list[str], log: Path, hide: list[str], cwd: str | None = None, *, worker: bool = True
) -> Any:
    """Start ``cmd``; a worker loses the manager's Python variables and cannot see ``hide``."""
    if hide:
        mounts = " && ".join(f"mount -t tmpfs envpack-hide {shlex.quote(p)}" for p in hide)
        cmd = ["unshare", "--mount", "sh", "-c", f'{mounts} && exec "$@"', "sh", *cmd]
    env = {k: v for k, v in os.environ.items() if not worker or k not in _NOT_FOR_THE_WORKER}
    with open(log, "wb") as fh:
        return subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )


def stop(proc: Any) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def worker_argv(cfg: dict[str, Any], address: str, here: Path) -> tuple[list[str], str | None]:
    opts = ["--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"]
    if cfg["mode"] == "runner":
        return ed.worker_command(cfg["tarball"], address, *opts, runner=cfg["runner"]), None
    # an HTCondor job's scratch directory, as file transfer leaves it
    scratch = here / "scratch"
    scratch.mkdir()
    options = ed.jobqueue_options(cfg["tarball"], runner=cfg["runner"])
    extra = options["job_extra_directives"]
    assert isinstance(extra, dict)
    for f in extra["transfer_input_files"].split(","):
        shutil.copy(f, scratch / os.path.basename(f))
    command = (
        f"{options['python']} -m distributed.cli.dask_worker {address} --name htcondor--1-- "
        "--nthreads 1 --memory-limit 1.00GiB --nanny --death-timeout 60 --no-dashboard "
        "--host 127.0.0.1"
    )
    return ["/bin/sh", "-c", command], str(scratch)


def main(argv: list[str]) -> int:
    cfg: dict[str, Any] = json.loads(Path(argv[0]).read_text())
    here = Path(cfg["dir"])
    address = f"tcp://127.0.0.1:{cfg['port']}"
    sched = start(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(cfg["port"]),
            "--no-dashboard",
        ],
        here / "scheduler.log",
        [],
        worker=False,  # the scheduler unpickles the graph: it imports enginefuncs as the client
    )
    cmd, cwd = worker_argv(cfg, address, here)
    worker = start(cmd, here / "worker.log", cfg["hide"], cwd)
    res: dict[str, Any] = {"results": [], "error": None}
    try:
        with Client(address, timeout=30) as client:
            deadline = time.monotonic() + cfg["timeout"]
            while not client.scheduler_info()["workers"]:
                if worker.poll() is not None or time.monotonic() > deadline:
                    res["error"] = f"no worker (exit status {worker.poll()})"
                    break
                time.sleep(0.2)
            else:
                futures = client.map(enginefuncs.where, range(cfg["tasks"]))
                res["results"] = client.gather(futures)
    except Exception as exc:
        res["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        stop(worker)
        stop(sched)
    res["worker_log"] = (here / "worker.log").read_text(errors="replace")[-4000:]
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
