"""A driver whose processor class is defined in ``__main__``, as in a notebook cell.

usage: python mainproc.py OUT_DIR WORKER_PYTHON STAGING

Runs with envpack's own Python (it calls executor_args), not the worker's: cloudpickle ships
MeanProcessor by value, so the environment holds only what its code reaches. The ``rich`` import
is the manager's (say, a progress display): the worker's Python does not have it, so shipping it
would fail the analysis.
"""

from __future__ import annotations

import functools
import json
import statistics
import sys
from pathlib import Path

import cloudpickle
import rich  # noqa: F401  # the manager's only

from envpack.integrations.coffea import executor_args


class MeanProcessor:
    """The mean of a chunk and how many items are above a threshold."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold

    def process(self, chunk: list[int]) -> dict[str, object]:
        above = sum(1 for x in chunk if x > self.threshold)
        return {"n": len(chunk), "above": above, "mean": statistics.fmean(chunk)}


def work(processor: MeanProcessor, chunk: list[int]) -> bytes:
    """What coffea's fn_wrapper calls: the result as bytes, plus where it ran."""
    out = processor.process(chunk)
    out["python"] = sys.executable
    return json.dumps(out).encode()


def main() -> None:
    out_dir, python, staging = sys.argv[1:]
    env = executor_args(
        MeanProcessor(10), out_dir=out_dir, python=python, executor_imports=("cloudpickle",)
    )
    stage = Path(staging)
    stage.joinpath("function.p").write_bytes(
        cloudpickle.dumps(functools.partial(work, MeanProcessor(10)))
    )
    for i, chunk in enumerate([list(range(20)), [50, 60, 1]]):
        stage.joinpath(f"args_{i}.p").write_bytes(cloudpickle.dumps([chunk]))
    print(json.dumps({"environment_file": env.environment_file, "wrapper": env.wrapper}))


if __name__ == "__main__":
    main()
