"""Run the fit workload once over local files, as a worker would: its traced "real run".

usage: python run_fit.py FILE.root [FILE.root...]
"""

from __future__ import annotations

import sys

import cloudpickle
from fit_processor import LeadingMuonFit

if __name__ == "__main__":
    job = cloudpickle.loads(cloudpickle.dumps(LeadingMuonFit()))
    for path in sys.argv[1:]:
        print(path, job.process(path))
