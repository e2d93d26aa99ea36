"""Object selection, kept apart from the processor as analysis groups do."""

from __future__ import annotations

import awkward as ak
import numba
import numpy as np


def good_muons(muons: ak.Array) -> ak.Array:
    """Tight, isolated, prompt muons above the trigger plateau."""
    mask = (
        (muons.pt > 26)
        & (abs(muons.eta) < 2.4)
        & muons.tightId
        & (muons.pfRelIso04_all < 0.15)
        & (abs(muons.dxy) < 0.05)
        & (abs(muons.dz) < 0.1)
    )
    return muons[mask]


def dimuon_pairs(muons: ak.Array) -> ak.Array:
    """Opposite-sign pairs; their four-vector sum carries the dimuon mass."""
    pairs = ak.combinations(muons, 2, fields=["mu1", "mu2"])
    return pairs[pairs.mu1.charge != pairs.mu2.charge]


@numba.njit(cache=False)
def _delta_phi(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # pragma: no cover - jitted
    out = np.empty_like(a)
    for i in range(a.size):
        d = a[i] - b[i]
        while d > np.pi:
            d -= 2 * np.pi
        while d < -np.pi:
            d += 2 * np.pi
        out[i] = d
    return out


def delta_phi(a: ak.Array, b: ak.Array) -> np.ndarray:
    """Signed azimuthal distance, jitted with numba as many analyses do for hot loops."""
    return _delta_phi(
        np.asarray(ak.to_numpy(a), dtype=np.float64), np.asarray(ak.to_numpy(b), dtype=np.float64)
    )
