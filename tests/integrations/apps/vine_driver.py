"""One real TaskVine run for tests/integrations/test_taskvine.py; prints one JSON result.

Started by the test inside a network namespace of its own (`unshare --net --mount`, loopback up):
a TaskVine manager listens on all interfaces, and a private namespace keeps it, its fixed port and
its worker off the machine's network and away from parallel tests. One `vine_worker` serves
``managers`` managers in turn on that port, each running ``tasks`` tasks of sixapp inside an
envpack environment, declared either as plain cached files run through envpack-run (``file``) or
as a poncho package (``poncho``, run through the environment's own bin/run_in_env).

Usage: vine_driver.py CONFIG.json (written by taskvine_support.TaskVine.run). Needs only the
stdlib and ndcctools.taskvine (cctools' site-packages on PYTHONPATH); never imports envpack.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import ndcctools.taskvine as vine  # from cctools' site-packages, on PYTHONPATH

# Set by the manager process for itself (ndcctools' set_port_range) or by the caller; a worker
# inheriting TCP_LOW_PORT/TCP_HIGH_PORT would try to bind its transfer server to the manager's
# own port. The Python variables would let the worker's tasks see the manager's interpreter.
_NOT_FOR_THE_WORKER = ("TCP_LOW_PORT", "TCP_HIGH_PORT", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")


def start_worker(cfg: dict[str, Any]) -> subprocess.Popen[bytes]:
    """A vine_worker in its own mount namespace, with ``hide`` paths under empty tmpfs mounts
    (its tasks cannot see the manager's Python), that reconnects to each manager in turn."""
    cmd = [
        cfg["vine_worker"],
        "--workspace",
        cfg["workspace"],
        "--cores",
        "2",
        "--memory",
        "2000",
        "--disk",
        "4000",
        # Idle and connect timeout: it must outlive the gap between two managers, and go on its
        # own if the driver dies without stopping it (with --parent-death, at once).
        "--timeout",
        "60",
        "--parent-death",
        # Retry a lost manager every second, not up to the default 8 s back-off.
        "--min-backoff",
        "1",
        "--max-backoff",
        "1",
        "--debug",
        "all",
        "--debug-file",
        cfg["worker_debug"],
        "localhost",
        str(cfg["port"]),
    ]
    hide = cfg.get("hide") or []
    if hide:
        mounts = " && ".join(f"mount -t tmpfs envpack-hide {shlex.quote(p)}" for p in hide)
        cmd = ["unshare", "--mount", "sh", "-c", f'{mounts} && exec "$@"', "sh", *cmd]
    env = {k: v for k, v in os.environ.items() if k not in _NOT_FOR_THE_WORKER}
    with open(cfg["worker_log"], "wb") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def stop_worker(worker: subprocess.Popen[bytes]) -> bool:
    """Stop ``worker`` (TERM, then KILL after 15 s); whether it was still alive to be stopped."""
    alive = worker.poll() is None
    if alive:
        worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=15)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
    return alive


def make_tasks(m: Any, cfg: dict[str, Any]) -> list[Any]:
    """``tasks`` sixapp tasks for manager ``m``, the environment declared as ``mode`` says."""
    tarball = cfg["tarball"]  # cfg["cache"]: the TaskVine cache level of what is declared
    name = os.path.basename(tarball)
    tasks = []
    if cfg["mode"] == "file":
        env_file = m.declare_file(tarball, cache=cfg["cache"])
        runner = m.declare_file(cfg["runner"], cache=cfg["cache"])
        for _ in range(cfg["tasks"]):
            t = vine.Task(f"sh envpack-run -d -e {shlex.quote(name)} -- python -m sixapp 2>&1")
            t.add_input(env_file, name)
            t.add_input(runner, "envpack-run")
            tasks.append(t)
    elif cfg["mode"] == "poncho":
        # TaskVine unpacks the package itself, with a mini task (`mkdir output && tar xf
        # package.tar.gz -C output && output/bin/run_in_env`, vine_file.c) into its cache, links
        # it into each task's sandbox as __vine_env_<name> and runs `<link>/bin/run_in_env CMD`.
        poncho = m.declare_poncho(tarball, cache=cfg["cache"])
        for _ in range(cfg["tasks"]):
            t = vine.Task("python -m sixapp 2>&1")
            t.add_environment(poncho)
            tasks.append(t)
    else:
        raise SystemExit(f"unknown mode {cfg['mode']!r}")
    for t in tasks:
        t.set_cores(1)
        t.set_memory(100)
        t.set_disk(200)
        t.set_retries(1)  # bounded: a task that keeps failing comes back, not retried forever
    return tasks


def run_manager(cfg: dict[str, Any], index: int, worker: subprocess.Popen[bytes]) -> dict[str, Any]:
    """One manager's whole life: listen, run its tasks to completion, go away."""
    info = os.path.join(cfg["run_info"], f"manager{index}")
    m = vine.Manager(port=cfg["port"], run_info_path=info)
    t0 = time.monotonic()
    submitted = {m.submit(t): t for t in make_tasks(m, cfg)}
    done: list[dict[str, Any]] = []
    deadline = t0 + cfg["timeout"]
    while len(done) < len(submitted) and time.monotonic() < deadline:
        if worker.poll() is not None:
            break
        t = m.wait(1)
        if t is not None:
            done.append(
                {
                    "id": t.id,
                    "result": t.result,
                    "exit_code": t.exit_code,
                    "output": t.output or "",
                    "command": t.command,
                }
            )
    m._free()  # now, not at garbage collection: the worker must see this manager go
    return {"port": cfg["port"], "seconds": round(time.monotonic() - t0, 2), "tasks": done}


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def main(argv: list[str]) -> int:
    cfg: dict[str, Any] = json.loads(Path(argv[0]).read_text())
    worker = start_worker(cfg)
    runs = []
    try:
        for i in range(cfg["managers"]):
            runs.append(run_manager(cfg, i, worker))
    finally:
        alive = stop_worker(worker)
    # What the worker did with its cache when a new manager came (kept or deleted, by level).
    debug = Path(cfg["worker_debug"])
    levels = [ln.split("vine: ", 1)[-1] for ln in _lines(debug) if "has cache-level" in ln]
    print(json.dumps({"managers": runs, "worker_alive": alive, "cache_events": levels}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
