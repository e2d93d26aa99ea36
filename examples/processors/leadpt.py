"""Example processor 2: the leading muon's transverse momentum (runs with PyYAML 6.0.2).

Run as a Work Queue task: `python -m leadpt chunk.json` prints one JSON line with the histogram
of the leading muon pt per charge in this chunk and where it ran.
"""

from __future__ import annotations

import json
import os
import socket
import sys

import yaml  # type: ignore[import-untyped]  # no stubs in the example venvs
from kinematics import Histogram

CONFIG = yaml.safe_load(
    """
    histogram: {bins: 20, low: 0.0, high: 100.0}
    """
)


class LeadingPtProcessor:
    """Histogram the leading muon pt, separately for each charge."""

    def process(self, events: list[dict[str, list[dict[str, float]]]]) -> dict[str, object]:
        hists = {"+": Histogram(**CONFIG["histogram"]), "-": Histogram(**CONFIG["histogram"])}
        for event in events:
            lead = max(event["muons"], key=lambda mu: mu["pt"])
            hists["+" if lead["charge"] > 0 else "-"].fill([lead["pt"]])
        return {"events": len(events), "pt": {k: h.to_dict() for k, h in hists.items()}}


def main(chunk: str) -> None:
    with open(chunk) as fh:
        events = json.load(fh)
    result = LeadingPtProcessor().process(events)
    where = {"host": socket.gethostname(), "prefix": sys.prefix, "pid": os.getpid()}
    print(json.dumps({"processor": "leadpt", "yaml": yaml.__version__, "result": result, **where}))


if __name__ == "__main__":
    main(sys.argv[1])
