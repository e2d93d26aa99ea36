"""The user's coffea analysis for the DaskVine test: NanoEvents in dask mode, a hist.dask
histogram and dakfuncs' numpy one, of the same selected muons (a current coffea, dask-awkward).
"""

from __future__ import annotations

from typing import Any

import dakfuncs  # type: ignore[import-not-found]
import hist.dask as hda
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory


def graphs(files: list[str]) -> tuple[Any, Any]:
    """The hist.dask histogram of the selected muons' pT, and dakfuncs' counts of them."""
    events = NanoEventsFactory.from_root(
        dict.fromkeys(files, "Events"), schemaclass=NanoAODSchema, mode="dask"
    ).events()
    pt = events.Muon.pt
    h = hda.Hist.new.Var(list(dakfuncs.EDGES), name="pt").Double().fill(pt=dakfuncs.selected_pt(pt))
    return h, dakfuncs.muon_pt_hist(pt)
