"""A user's Parsl program for tests/integrations/test_parsl.py; prints one JSON line.

Run by the test inside a network namespace of its own (loopback only), with envpack, the apps
directory and (for TaskVine) cctools' site-packages on PYTHONPATH. Runs python_app(enginefuncs
.where) on ``tasks`` inputs with one executor, its workers inside the envpack environment and
unable to see the manager's Python:

- ``htex``: HighThroughputExecutor + LocalProvider, launch_cmd from
  envpack.integrations.parsl.htex_launch_cmd behind a mount namespace that hides ``hide``
- ``taskvine``: TaskVineExecutor(env_pack=the tarball), one vine_worker started by hand
  (vine_driver.start_worker, which hides ``hide``)

Usage: parsl_driver.py CONFIG.json
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import enginefuncs  # type: ignore[import-not-found]  # the user's module, next to this script
import parsl
from parsl.config import Config
from parsl.providers import LocalProvider

from envpack.integrations import parsl as ep


def hidden(hide: list[str]) -> str:
    """A command prefix: a private mount namespace without ``hide`` and without the manager's
    Python variables (LocalProvider passes its own environment on)."""
    mounts = " && ".join(f"mount -t tmpfs envpack-hide {shlex.quote(p)}" for p in hide)
    inner = shlex.quote(f'{mounts} && exec "$@"')
    unset = "env -u PYTHONPATH -u VIRTUAL_ENV -u PYTHONHOME"
    return f"unshare --mount sh -c {inner} sh {unset} "


def config(cfg: dict[str, Any]) -> tuple[Config, Any]:
    run_dir = str(Path(cfg["dir"]) / "runinfo")
    if cfg["scenario"] == "htex":
        from parsl.executors import HighThroughputExecutor

        launch = hidden(cfg["hide"]) + ep.htex_launch_cmd(cfg["tarball"], runner=cfg["runner"])
        htex = HighThroughputExecutor(
            label="htex",
            address="127.0.0.1",
            max_workers_per_node=1,
            launch_cmd=launch,  # no braces in the hiding prefix: parsl formats the whole line
            interchange_launch_cmd=[
                sys.executable,
                "-m",
                "parsl.executors.high_throughput.interchange",
            ],
            provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1),
        )
        return Config(executors=[htex], run_dir=run_dir, strategy="none"), None
    from parsl.executors.taskvine import TaskVineExecutor, TaskVineManagerConfig
    from vine_driver import start_worker  # type: ignore[import-not-found]

    tv = TaskVineExecutor(
        label="taskvine",
        worker_launch_method="manual",
        manager_config=TaskVineManagerConfig(
            port=cfg["port"], address="127.0.0.1", env_pack=ep.taskvine_env_pack(cfg["tarball"])
        ),
    )
    return Config(executors=[tv], run_dir=run_dir, strategy="none"), start_worker


def logs(directory: Path) -> str:
    """What the pools, the interchange and the executors wrote (where a failure shows)."""
    out = []
    for p in sorted(directory.rglob("*")):
        if not p.is_file() or not p.stat().st_size:
            continue
        if p.suffix in (".stdout", ".stderr", ".log"):
            out.append(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}")
        elif p.name == "worker.debug":  # a task's traceback lands here, among much else
            lines = p.read_text(errors="replace").splitlines()
            errors = [ln for ln in lines if "Error" in ln or "Traceback" in ln]
            out.append(f"== {p.name} (errors)\n" + "\n".join(errors[-30:]))
    return "\n".join(out)


def main(argv: list[str]) -> int:
    cfg: dict[str, Any] = json.loads(Path(argv[0]).read_text())
    conf, start_worker = config(cfg)
    worker = None
    res: dict[str, Any] = {"results": [], "error": None}
    dfk = parsl.load(conf)
    try:
        if start_worker is not None:
            worker = start_worker(cfg)
        where = parsl.python_app(enginefuncs.where)
        futures = [where(i) for i in range(cfg["tasks"])]
        for f in futures:
            try:
                res["results"].append(f.result(timeout=cfg["timeout"]))
            except Exception as exc:
                res["error"] = f"{type(exc).__name__}: {exc}"
                break
    finally:
        dfk.cleanup()
        parsl.clear()
        if worker is not None:  # only on TaskVine, whose manager side has ndcctools
            from vine_driver import stop_worker  # type: ignore[import-not-found]

            stop_worker(worker)
    res["logs"] = logs(Path(cfg["dir"]))[-12000:]
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
