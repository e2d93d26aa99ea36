"""Two applications on one vine_worker, one manager each, through envpack's runner_task with
the environment's layers as ``cache="forever"`` inputs; prints one JSON line.

Run by tests/integrations/test_taskvine.py inside a network namespace of its own
(taskvine_support.TaskVine.run_app), with envpack and ndcctools on PYTHONPATH. Manager i runs
one task of sixapp in ``tarballs[i]`` and goes away; what each manager sent is the sum of the
TRANSFER INPUT lines of its transaction log (``stats.bytes_sent`` stays 0 in this TaskVine).

Usage: layers_driver.py CONFIG.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import ndcctools.taskvine as vine
from vine_driver import start_worker, stop_worker  # type: ignore[import-not-found]

from envpack.integrations import taskvine as ev


def sent(run_info: str) -> int:
    """Bytes the last manager sent to workers, from its transaction log: lines
    ``time pid WORKER id TRANSFER INPUT cachename size wall start``."""
    log = Path(run_info) / "most-recent" / "vine-logs" / "transactions"
    total = 0
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 8 and parts[4:6] == ["TRANSFER", "INPUT"]:
            total += int(parts[7])
    return total


def main(argv: list[str]) -> int:
    cfg: dict[str, Any] = json.loads(Path(argv[0]).read_text())
    worker = start_worker(cfg)
    runs = []
    try:
        for tarball in cfg["tarballs"]:
            m = vine.Manager(port=cfg["port"], run_info_path=cfg["run_info"])
            t = ev.runner_task(m, tarball, "python -m sixapp 2>&1", debug=True)
            t.set_cores(1)
            m.submit(t)
            deadline = time.monotonic() + cfg["timeout"]
            done = None
            while done is None and time.monotonic() < deadline and worker.poll() is None:
                done = m.wait(1)
            ok = bool(done is not None and done.successful())
            output = (done.output or "") if done is not None else ""
            m._free()  # the worker must see this manager go; flushes its logs
            runs.append({"ok": ok, "output": output, "bytes_sent": sent(cfg["run_info"])})
    finally:
        stop_worker(worker)
    print(json.dumps({"runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
