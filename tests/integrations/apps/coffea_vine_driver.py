"""coffea's TaskVineExecutor on a real vine_worker, for the `coffea`-marked tests; one JSON line.

Runs in a coffea venv (not envpack's), inside the test's network namespace
(taskvine_support.TaskVine.run_app), with cctools' site-packages, the bench's processors and this
directory on PYTHONPATH; never imports envpack. Its config (CONFIG.json) holds, besides what
vine_driver.start_worker reads, ``executor_args`` (CoffeaEnvironment.taskvine(), made by the
test: the environment envpack built), ``files`` (the ROOT files), ``cwd`` (the analysis
directory) and ``notebook`` (when set, the processor's class is that notebook's cell, run in
__main__ as a kernel runs it, so cloudpickle ships it by value).

Does what a user's coffea script does: TaskVineExecutor(**ce.taskvine(), ...) and a Runner over
the files, the processor shipped to the worker; then the same with the IterativeExecutor here,
for reference. The worker (start_worker's) cannot see any Python of this machine.

Usage: coffea_vine_driver.py CONFIG.json
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from coffea import processor  # type: ignore[import-not-found]
from coffea.nanoevents import NanoAODSchema  # type: ignore[import-not-found]
from vine_driver import start_worker, stop_worker  # type: ignore[import-not-found]

CFG: dict[str, Any] = json.loads(Path(sys.argv[1]).read_text())

if CFG.get("notebook"):
    _nb = json.loads(Path(CFG["notebook"]).read_text())
    _cell = next(
        "".join(c["source"])
        for c in _nb["cells"]
        if c["cell_type"] == "code" and "class DimuonProcessor" in "".join(c["source"])
    )
    exec(compile(_cell, Path(CFG["notebook"]).name, "exec"))
else:
    from dimuon_processor import DimuonProcessor  # type: ignore[import-not-found]


def summary(out: dict[str, Any]) -> dict[str, Any]:
    return {
        ds: {
            "cutflow": dict(h["cutflow"]),
            "mass": float(h["mass"].sum().value),
            "mass_bins": [float(v) for v in h["mass"].values().ravel()],
        }
        for ds, h in out.items()
    }


def run(executor: Any) -> dict[str, Any]:
    runner = processor.Runner(executor=executor, schema=NanoAODSchema, chunksize=25_000)
    fileset = {"DYJetsToLL": CFG["files"]}
    # by keyword: coffea 0.7 takes (fileset, treename, processor_instance), 2025.7
    # (fileset, processor_instance, treename)
    out = runner(fileset, treename="Events", processor_instance=DimuonProcessor())
    return summary(out)


def main() -> int:
    warnings.filterwarnings("ignore", "Missing cross-reference", RuntimeWarning)
    # coffea's manager writes vine-run-info/ into the current directory: the run's own here
    os.makedirs(CFG["run_info"], exist_ok=True)
    os.chdir(CFG["run_info"])
    worker = start_worker(CFG)
    res: dict[str, Any] = {}
    try:
        executor = processor.TaskVineExecutor(
            **CFG["executor_args"],  # environment_file=: the envpack tarball, a poncho package
            port=CFG["port"],
            manager_name=None,
            filepath=str(Path(CFG["workspace"]).parent / "coffea"),
            status=False,
            cores=1,
            memory=1500,
            disk=2000,
            retries=0,
            resources_mode="fixed",
        )
        res["taskvine"] = run(executor)
    finally:
        alive = stop_worker(worker)
    res["worker_alive"] = alive
    # where the user runs the analysis: the processor opens corrections/ relative to it (the
    # worker's copy ships in the env, linked into each task's directory by run_in_env)
    os.chdir(CFG["cwd"])
    res["local"] = run(processor.IterativeExecutor(status=False))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
