"""Helpers of the dimuon analysis: a local package, shipped as source next to the processor."""

from dimuon_tools.corrections import muon_id_weight
from dimuon_tools.selection import dimuon_pairs, good_muons

__all__ = ["dimuon_pairs", "good_muons", "muon_id_weight"]
