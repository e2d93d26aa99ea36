"""Scale factors from a correctionlib JSON file opened by a relative path, as users write it."""

from __future__ import annotations

import functools

import awkward as ak
import correctionlib
import numpy as np


@functools.cache
def _corrections() -> correctionlib.CorrectionSet:
    # The forgotten-file classic: this path is relative to the working directory.
    return correctionlib.CorrectionSet.from_file("corrections/muon_sf.json")


def muon_id_weight(muons: ak.Array, variation: str = "nominal") -> np.ndarray:
    """Per-event product of the muons' ID scale factors."""
    sf = _corrections()["muon_id_sf"]
    flat = ak.flatten(muons)
    values = sf.evaluate(
        variation,
        np.abs(ak.to_numpy(flat.eta)).astype(np.float64),
        ak.to_numpy(flat.pt).astype(np.float64),
    )
    return ak.to_numpy(ak.prod(ak.unflatten(values, ak.num(muons)), axis=1))
