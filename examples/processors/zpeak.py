"""Example processor 1: the dimuon mass peak of the Z (runs with PyYAML 6.0.1).

Run as a Work Queue task: `python -m zpeak chunk.json` prints one JSON line with the
histogram of opposite-charge dimuon masses in this chunk and where it ran.
"""

from __future__ import annotations

import json
import os
import socket
import sys

import yaml  # type: ignore[import-untyped]  # no stubs in the example venvs
from kinematics import Histogram, invariant_mass

CONFIG = yaml.safe_load(
    """
    min_pt: 20.0          # GeV, both muons
    opposite_charge: true
    histogram: {bins: 30, low: 60.0, high: 120.0}
    """
)


class ZPeakProcessor:
    """Select opposite-charge muon pairs above a pt cut and histogram their mass."""

    def process(self, events: list[dict[str, list[dict[str, float]]]]) -> dict[str, object]:
        h = Histogram(**CONFIG["histogram"])
        selected = 0
        for event in events:
            mu1, mu2 = event["muons"][:2]
            if min(mu1["pt"], mu2["pt"]) < CONFIG["min_pt"]:
                continue
            if CONFIG["opposite_charge"] and mu1["charge"] == mu2["charge"]:
                continue
            selected += 1
            h.fill([invariant_mass(mu1, mu2)])
        return {"events": len(events), "selected": selected, "mass": h.to_dict()}


def main(chunk: str) -> None:
    with open(chunk) as fh:
        events = json.load(fh)
    result = ZPeakProcessor().process(events)
    where = {"host": socket.gethostname(), "prefix": sys.prefix, "pid": os.getpid()}
    print(json.dumps({"processor": "zpeak", "yaml": yaml.__version__, "result": result, **where}))


if __name__ == "__main__":
    main(sys.argv[1])
