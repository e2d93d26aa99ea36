"""A user's TaskVine manager program for tests/integrations/test_engines.py; prints one JSON line.

Run by the test inside a network namespace of its own (taskvine_support.TaskVine.run_app), with
envpack, ndcctools (cctools' site-packages) and the apps directory on PYTHONPATH. It does what a
user's program does with envpack.integrations.taskvine: declare the built environment, then send
work of one ``scenario`` to one vine_worker whose tasks cannot see the manager's Python (the
worker is vine_driver.start_worker's):

- ``python-task``: PythonTask(enginefuncs.where, i) for each i
- ``library``: a function-call library of enginefuncs.where, then FunctionCall(..., i)
- ``daskvine``: a dask.delayed graph over enginefuncs, computed with scheduler=DaskVine.get
- ``task``: a plain Task run by the env's bin/run_in_env; ``runner-task``: through envpack-run

Usage: engine_driver.py CONFIG.json
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import enginefuncs  # type: ignore[import-not-found]  # the user's module, next to this script
import ndcctools.taskvine as vine
from vine_driver import start_worker, stop_worker  # type: ignore[import-not-found]

from envpack.integrations import taskvine as ev

CMD = "python -c 'import enginefuncs, json; print(json.dumps(enginefuncs.where(3)))'"


def _finish(t: Any, output: Any) -> dict[str, Any]:
    return {
        "ok": bool(t.successful()),
        "result": str(t.result),
        "exit_code": t.exit_code,
        "output": output,
        "std": (t.std_output or "")[-3000:],
    }


def _wait_all(
    m: Any, n: int, deadline: float, worker: subprocess.Popen[bytes], debug: str | None = None
) -> list[Any]:
    """Up to ``n`` finished tasks; with ``debug`` (the worker's debug log), stop early once the
    worker says the library failed: its function calls would wait for it forever."""
    done: list[Any] = []
    failed_at = None
    while len(done) < n and time.monotonic() < deadline and worker.poll() is None:
        t = m.wait(1)
        if t is not None:
            done.append(t)
        if debug and failed_at is None and LIBRARY_FAILED in _read(debug):
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() > failed_at + 2:
            break  # its traceback is in the log by now
    return done


LIBRARY_FAILED = "is detected to be failed"


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _value(t: Any) -> Any:
    out = t.output
    return out if isinstance(out, dict | int | list) else f"{type(out).__name__}: {out}"


def scenario(cfg: dict[str, Any], worker: subprocess.Popen[bytes]) -> dict[str, Any]:
    n, deadline = cfg["tasks"], time.monotonic() + cfg["timeout"]
    kind = cfg["scenario"]
    if kind == "daskvine":
        import dask

        m = vine.DaskVine(port=cfg["port"], run_info_path=cfg["run_info"])
    else:
        m = vine.Manager(port=cfg["port"], run_info_path=cfg["run_info"])
    env_file = ev.declare(m, cfg["tarball"])
    res: dict[str, Any] = {"tasks": []}
    try:
        if kind in ("python-task", "task", "runner-task"):
            for i in range(n):
                if kind == "python-task":
                    t = ev.python_task(env_file, enginefuncs.where, i)
                elif kind == "task":
                    t = ev.task(env_file, CMD)
                else:
                    t = ev.runner_task(m, cfg["tarball"], CMD, debug=True)
                t.set_retries(1)
                m.submit(t)
            for t in _wait_all(m, n, deadline, worker):
                out = _value(t) if kind == "python-task" else t.std_output
                res["tasks"].append(_finish(t, out))
        elif kind == "library":
            lib = ev.library(m, cfg["tarball"], "envpack-lib", enginefuncs.where, env_file=env_file)
            lib.set_cores(1)
            lib.set_function_slots(1)
            m.install_library(lib)
            for i in range(n):
                call = vine.FunctionCall("envpack-lib", "where", i)
                call.set_retries(1)
                m.submit(call)
            for t in _wait_all(m, n, deadline, worker, cfg["worker_debug"]):
                res["tasks"].append(_finish(t, _value(t)))
        elif kind == "daskvine":
            sq = [dask.delayed(enginefuncs.square)(i) for i in range(n)]
            total = dask.delayed(sum)(sq)
            info = dask.delayed(enginefuncs.where)(2)
            try:
                got = dask.compute(
                    total, info, scheduler=m.get, **ev.dask_options(env_file, retries=1)
                )
                res["dask"] = {"ok": True, "total": got[0], "where": got[1]}
            except Exception as exc:
                res["dask"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        else:
            raise SystemExit(f"unknown scenario {kind!r}")
    finally:
        m._free()  # now, not at garbage collection: the worker must see this manager go
    return res


def main(argv: list[str]) -> int:
    cfg: dict[str, Any] = json.loads(Path(argv[0]).read_text())
    worker = start_worker(cfg)
    try:
        res = scenario(cfg, worker)
    finally:
        alive = stop_worker(worker)
    res["worker_alive"] = alive
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
