"""A coffea 0.7 dimuon processor, written as an analysis group writes one: the benchmark workload.

NanoEvents in, awkward selections, hist out; object selection and scale factors live in the
local package dimuon_tools, and the scale factors come from a correctionlib JSON file opened by a
relative path. This module is what `envpack analyze` is pointed at.
"""

from __future__ import annotations

import awkward as ak
import hist
import numpy as np
from coffea import processor
from coffea.analysis_tools import PackedSelection, Weights
from coffea.nanoevents.methods import candidate
from dimuon_tools import dimuon_pairs, good_muons, muon_id_weight
from dimuon_tools.selection import delta_phi

ak.behavior.update(candidate.behavior)


class DimuonProcessor(processor.ProcessorABC):
    """Z -> mu mu: the dimuon mass spectrum, weighted, with a cutflow."""

    def __init__(self, mass_range: tuple[float, float] = (60.0, 120.0)) -> None:
        self.mass_range = mass_range

    def process(self, events: ak.Array) -> dict[str, object]:
        dataset = events.metadata["dataset"]
        muons = good_muons(events.Muon)

        selection = PackedSelection()
        selection.add("trigger", ak.to_numpy(events.HLT.IsoMu24))
        selection.add("twomuons", ak.to_numpy(ak.num(muons) >= 2))
        cut = selection.all("trigger", "twomuons")

        weights = Weights(len(events))
        weights.add("genWeight", ak.to_numpy(events.genWeight))
        weights.add(
            "muonID",
            muon_id_weight(muons),
            muon_id_weight(muons, "up"),
            muon_id_weight(muons, "down"),
        )

        pairs = dimuon_pairs(muons[cut])
        first = ak.firsts(pairs)
        has_pair = ~ak.is_none(first)
        dimuon = first[has_pair].mu1 + first[has_pair].mu2
        w = weights.weight()[cut][ak.to_numpy(has_pair)]

        h_mass = (
            hist.Hist.new.StrCat([], name="dataset", growth=True)
            .Reg(60, *self.mass_range, name="mass", label=r"$m_{\mu\mu}$ [GeV]")
            .Weight()
        )
        h_mass.fill(dataset=dataset, mass=ak.to_numpy(dimuon.mass), weight=w)

        h_dphi = (
            hist.Hist.new.StrCat([], name="dataset", growth=True)
            .Reg(32, -np.pi, np.pi, name="dphi", label=r"$\Delta\phi_{\mu\mu}$")
            .Double()
        )
        h_dphi.fill(
            dataset=dataset, dphi=delta_phi(first[has_pair].mu1.phi, first[has_pair].mu2.phi)
        )

        return {
            dataset: {
                "mass": h_mass,
                "dphi": h_dphi,
                "cutflow": {
                    "all": len(events),
                    "trigger": int(selection.all("trigger").sum()),
                    "twomuons": int(cut.sum()),
                    "pair": int(ak.sum(has_pair)),
                },
            }
        }

    def postprocess(self, accumulator: dict[str, object]) -> dict[str, object]:
        return accumulator
