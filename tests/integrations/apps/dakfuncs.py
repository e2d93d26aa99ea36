"""The user's dask-awkward analysis for the DaskVine tests: what the graph's own functions are.

``muon_pt_hist`` builds, from the muons' pT of events in memory (awkward records, in
partitions) or of NanoAOD files (coffea's NanoEvents in dask mode, coffeadak.py), the histogram
of the muons above a cut: a dask-awkward graph (selection, flatten), then one numpy histogram
per partition and their sum, this module's functions, which cloudpickle ships by reference (so
the worker imports this module).
``where`` reports the interpreter it ran on.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import dask
import dask_awkward as dak
import numpy as np
from enginefuncs import ran_in  # type: ignore[import-not-found]  # beside this module

EDGES = (0.0, 20.0, 40.0, 60.0, 80.0, 100.0)
PT_CUT = 10.0


def toy_events(n: int) -> ak.Array:
    """``n`` events with 0 to 3 muons each, pT 5, 10, ..., deterministic."""
    return ak.Array(
        [{"muon_pt": [5.0 * ((i + j) % 20 + 1) for j in range(i % 4)]} for i in range(n)]
    )


def selected_pt(pt: Any) -> Any:
    """The muons' pT above the cut, flattened (a dask-awkward Array of events' muon pT in)."""
    return dak.flatten(pt[pt > PT_CUT])


def partition_hist(pt: ak.Array) -> np.ndarray:
    counts, _ = np.histogram(ak.to_numpy(pt), bins=np.asarray(EDGES))
    return counts


def total(counts: list[np.ndarray]) -> list[int]:
    return [int(c) for c in np.sum(counts, axis=0)]


def muon_pt_hist(pt: Any) -> Any:
    """The histogram's counts, a dask.delayed over the dask-awkward graph's partitions."""
    flat = selected_pt(pt)
    return dask.delayed(total)([dask.delayed(partition_hist)(p) for p in flat.to_delayed()])


def toy_graph(n: int, partitions: int) -> Any:
    return muon_pt_hist(dak.from_awkward(toy_events(n), npartitions=partitions).muon_pt)


def where() -> dict[str, Any]:
    return {**ran_in(), "awkward": ak.__version__, "dask_awkward": dak.__version__}
