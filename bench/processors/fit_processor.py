"""A second benchmark workload, not tuned for: a plain uproot + pandas + scipy analysis.

No coffea: the muons are read with uproot into awkward arrays, the leading-muon pT spectrum is
binned with a numba kernel, summarised in a pandas table and fitted with scipy.optimize. Other
imports than the dimuon processor's, so the figures are not about one processor only.
"""

from __future__ import annotations

import awkward as ak
import numba
import numpy as np
import pandas as pd
import uproot
from scipy.optimize import curve_fit

EDGES = np.linspace(20.0, 200.0, 46)


@numba.njit(cache=False)
def _histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.zeros(len(edges) - 1)
    for v in values:
        if edges[0] <= v < edges[-1]:
            counts[np.searchsorted(edges, v, side="right") - 1] += 1.0
    return counts


def _falling(x: np.ndarray, norm: float, slope: float) -> np.ndarray:
    return norm * np.exp(-slope * x)


class LeadingMuonFit:
    """Leading-muon pT spectrum of every file, fitted with a falling exponential."""

    def process(self, path: str) -> dict[str, float]:
        with uproot.open(path) as f:
            muons = f["Events"].arrays(["Muon_pt", "Muon_eta"])
        good = muons.Muon_pt[np.abs(muons.Muon_eta) < 2.4]
        lead = ak.to_numpy(ak.fill_none(ak.max(good, axis=1), -1.0)).astype(np.float64)
        counts = _histogram(lead, EDGES)
        table = pd.DataFrame({"pt": 0.5 * (EDGES[1:] + EDGES[:-1]), "n": counts})
        table = table[table.n > 0]
        (norm, slope), _ = curve_fit(
            _falling, table.pt.to_numpy(), table.n.to_numpy(), p0=(table.n.max(), 0.02)
        )
        return {"events": float(len(lead)), "norm": float(norm), "slope": float(slope)}
