"""The manager side of the coffea end-to-end test; runs in the coffea venv, not envpack's.

usage: python coffea_driver.py [--notebook NB.ipynb] ENV_FILE WRAPPER PORT_FILE FILE.root [...]

Runs bench/processors/dimuon_processor.py with coffea 0.7's WorkQueueExecutor (environment_file
and wrapper from envpack) and, for reference, with the IterativeExecutor in this process; prints
both results as one JSON line.

Adapted here, on the manager side only, for Debian's Work Queue binding (cctools 8/9 era):
coffea 0.7.31 passes `status_display_interval=` and `ssl=` to WorkQueue(...), which that binding
rejects (TypeError), and may call `cancel_by_category`, which it lacks. The worker side is not
adapted: it runs coffea's own py_wrapper command line with envpack-run as py_wrapper.
"""

from __future__ import annotations

import json
import socket
import sys
import warnings
from pathlib import Path
from typing import Any

import work_queue

_init = work_queue.WorkQueue.__init__


def _adapted_init(self: Any, *args: Any, **kwargs: Any) -> None:
    kwargs.pop("status_display_interval", None)
    kwargs.pop("ssl", None)
    _init(self, *args, **kwargs)
    Path(sys.argv[3]).write_text(str(self.port))  # the test starts its worker on this port


work_queue.WorkQueue.__init__ = _adapted_init
if not hasattr(work_queue.WorkQueue, "cancel_by_category"):
    work_queue.WorkQueue.cancel_by_category = lambda self, category: None

# after the adaptation, as coffea binds WorkQueue at import; coffea lives in the coffea venv only
from coffea import processor  # type: ignore[import-not-found]  # noqa: E402
from coffea.nanoevents import NanoAODSchema  # type: ignore[import-not-found]  # noqa: E402

if len(sys.argv) > 5 and sys.argv[1] == "--notebook":
    # The processor as a notebook defines it: its cell run in __main__ (what a kernel does), so
    # cloudpickle ships DimuonProcessor by value and the env is the notebook analysis's.
    _nb = json.loads(Path(sys.argv.pop(2)).read_text())
    sys.argv.pop(1)
    _cell = next(
        "".join(c["source"])
        for c in _nb["cells"]
        if c["cell_type"] == "code" and "class DimuonProcessor" in "".join(c["source"])
    )
    exec(compile(_cell, "dimuon_notebook.ipynb", "exec"))
else:
    from dimuon_processor import DimuonProcessor  # type: ignore[import-not-found]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        port: int = s.getsockname()[1]
        return port


def summary(out: dict[str, Any]) -> dict[str, Any]:
    return {
        ds: {"cutflow": dict(h["cutflow"]), "mass": float(h["mass"].sum().value)}
        for ds, h in out.items()
    }


def main() -> None:
    env_file, wrapper, _, *files = sys.argv[1:]
    warnings.filterwarnings("ignore", "Missing cross-reference", RuntimeWarning)
    fileset = {"DYJetsToLL": files}
    executor = processor.WorkQueueExecutor(
        environment_file=env_file,
        wrapper=wrapper,
        port=_free_port(),  # coffea takes port=0 for its default, 9123: shared by parallel tests
        status=False,
        cores=1,
        memory=1500,
        disk=2000,
        retries=0,
        filepath=str(Path(sys.argv[3]).parent),
    )
    wq_out = processor.Runner(executor=executor, schema=NanoAODSchema, chunksize=25_000)(
        fileset, "Events", processor_instance=DimuonProcessor()
    )
    local = processor.Runner(
        executor=processor.IterativeExecutor(status=False), schema=NanoAODSchema, chunksize=25_000
    )(fileset, "Events", processor_instance=DimuonProcessor())
    print(json.dumps({"workqueue": summary(wq_out), "local": summary(local)}))


if __name__ == "__main__":
    main()
