"""Write small NanoAOD-like ROOT files from generated arrays (runs inside the coffea venv).

No network and no real data here, so the processor reads files uproot wrote itself: the NanoAOD
branch layout (nMuon counter, Muon_pt, ...), Drell-Yan-ish dimuons over a falling background.
One file is LZ4- and one ZSTD-compressed, as real NanoAOD is, so a run loads the decompressors
(lz4, xxhash, zstandard) that uproot imports only when it meets compressed baskets.

usage: python _data.py OUTDIR [EVENTS]
"""

from __future__ import annotations

import sys
from pathlib import Path

import awkward as ak
import numpy as np
import uproot


def events(n: int, seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    nmu = rng.poisson(1.6, n)
    total = int(nmu.sum())
    pt = np.where(rng.random(total) < 0.5, rng.normal(45, 8, total), rng.exponential(20, total))
    muons = ak.zip(
        {
            "pt": np.abs(pt).astype(np.float32) + 3,
            "eta": rng.normal(0, 1.1, total).clip(-2.4, 2.4).astype(np.float32),
            "phi": rng.uniform(-np.pi, np.pi, total).astype(np.float32),
            "mass": np.full(total, 0.10566, np.float32),
            "charge": rng.choice(np.array([-1, 1], np.int32), total),
            "pfRelIso04_all": rng.exponential(0.1, total).astype(np.float32),
            "tightId": rng.random(total) < 0.9,
            "dxy": rng.normal(0, 0.01, total).astype(np.float32),
            "dz": rng.normal(0, 0.02, total).astype(np.float32),
        }
    )
    njet = rng.poisson(3, n)
    jtotal = int(njet.sum())
    jets = ak.zip(
        {
            "pt": rng.exponential(40, jtotal).astype(np.float32) + 20,
            "eta": rng.normal(0, 2, jtotal).clip(-4.7, 4.7).astype(np.float32),
            "phi": rng.uniform(-np.pi, np.pi, jtotal).astype(np.float32),
            "mass": rng.exponential(8, jtotal).astype(np.float32),
            "btagDeepFlavB": rng.random(jtotal).astype(np.float32),
        }
    )
    return {
        "run": np.ones(n, np.uint32),
        "luminosityBlock": (np.arange(n) // 1000 + 1).astype(np.uint32),
        "event": np.arange(n, dtype=np.uint64) + seed * 10_000_000,
        "genWeight": rng.normal(1, 0.1, n).astype(np.float32),
        "HLT_IsoMu24": rng.random(n) < 0.7,
        "MET_pt": rng.exponential(30, n).astype(np.float32),
        "MET_phi": rng.uniform(-np.pi, np.pi, n).astype(np.float32),
        "Muon": ak.unflatten(muons, nmu),
        "Jet": ak.unflatten(jets, njet),
    }


def main() -> None:
    out = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 50_000
    out.mkdir(parents=True, exist_ok=True)
    for name, compression, seed in (
        ("dy_lz4.root", uproot.LZ4(1), 1),
        ("dy_zstd.root", uproot.ZSTD(1), 2),
    ):
        tmp = out / (name + ".tmp")
        with uproot.recreate(tmp, compression=compression) as f:
            f["Events"] = events(n, seed)
        tmp.replace(out / name)


if __name__ == "__main__":
    main()
