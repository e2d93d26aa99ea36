"""A user's dask-awkward histogram through TaskVine's DaskVine scheduler; prints one JSON line.

Run by tests/integrations/test_taskvine.py (``toy``: dakfuncs' in-memory events, awkward and
dask-awkward only) and test_coffea_taskvine.py (``coffea``: NanoEvents over ROOT files, a
hist.dask histogram too), inside a network namespace of its own (taskvine_support run_app), with
envpack, cctools' site-packages and the apps directory on PYTHONPATH. It declares the envpack
environment and computes with ``dask.compute(..., scheduler=m.get, **ev.dask_options(f))``,
then the same graphs with dask's synchronous scheduler here, for reference. The worker
(vine_driver.start_worker's) cannot see any Python of this machine.

Usage: dak_driver.py CONFIG.json
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import dakfuncs  # type: ignore[import-not-found]
import dask
import ndcctools.taskvine as vine
from vine_driver import start_worker, stop_worker  # type: ignore[import-not-found]

from envpack.integrations import taskvine as ev


def graphs(cfg: dict[str, Any]) -> dict[str, Any]:
    """What the user computes, by name: dask collections."""
    if cfg["mode"] == "toy":
        return {"counts": dakfuncs.toy_graph(cfg["events"], cfg["partitions"])}
    import coffeadak  # type: ignore[import-not-found]

    h, counts = coffeadak.graphs(cfg["files"])
    return {"hist": h, "counts": counts}


def plain(value: Any) -> Any:
    """A JSON form of a computed value (a hist.Hist: its bin values)."""
    if hasattr(value, "values") and hasattr(value, "axes"):
        return [float(v) for v in value.values()]
    return value


def main(argv: list[str]) -> int:
    cfg: dict[str, Any] = json.loads(Path(argv[0]).read_text())
    warnings.filterwarnings("ignore", "Missing cross-reference", RuntimeWarning)
    worker = start_worker(cfg)
    res: dict[str, Any] = {}
    m = vine.DaskVine(port=cfg["port"], run_info_path=cfg["run_info"])
    try:
        env_file = ev.declare(m, cfg["tarball"])
        g = graphs(cfg)
        names = [*g, "where"]
        todo = [*g.values(), dask.delayed(dakfuncs.where)()]
        try:
            got = dask.compute(*todo, scheduler=m.get, **ev.dask_options(env_file, retries=1))
            res["vine"] = {"ok": True, **{n: plain(v) for n, v in zip(names, got, strict=True)}}
        except Exception as exc:
            res["vine"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        m._free()  # now, not at garbage collection: the worker must see this manager go
        alive = stop_worker(worker)
    res["worker_alive"] = alive
    local = dask.compute(*graphs(cfg).values(), scheduler="sync")
    res["local"] = {n: plain(v) for n, v in zip(graphs(cfg), local, strict=True)}
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
