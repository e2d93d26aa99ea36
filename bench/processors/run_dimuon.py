"""Run the dimuon processor once over local files, as a worker would: the traced "real run".

Not analyzed by envpack (it is the manager-side driver); the processor is pickled with
cloudpickle and lz4 and back, as coffea's Work Queue executor ships it, then run over every chunk
with the iterative executor and the NanoAOD schema.

usage: python run_dimuon.py FILE.root [FILE.root...]
"""

from __future__ import annotations

import sys
import warnings

import cloudpickle
import lz4.frame
from coffea import processor
from coffea.nanoevents import NanoAODSchema
from dimuon_processor import DimuonProcessor


def run(*files: str) -> dict[str, object]:
    # Our generated files have only Muon and Jet: silence NanoAOD's missing cross-references.
    warnings.filterwarnings("ignore", "Missing cross-reference", RuntimeWarning)
    shipped = lz4.frame.compress(cloudpickle.dumps(DimuonProcessor()))
    instance = cloudpickle.loads(lz4.frame.decompress(shipped))
    fileset = {"DYJetsToLL": list(files)}
    runner = processor.Runner(
        executor=processor.IterativeExecutor(status=False),
        schema=NanoAODSchema,
        chunksize=25_000,
    )
    result: dict[str, object] = runner(fileset, "Events", processor_instance=instance)
    return result


if __name__ == "__main__":
    out = run(*sys.argv[1:])
    for dataset, hists in out.items():
        print(dataset, hists["cutflow"], f"mass entries: {hists['mass'].sum().value:.1f}")
