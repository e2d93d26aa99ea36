"""A processor in coffea's shape for the wrapper tests: stdlib only, so the test process can
import it, while its worker side (cloudpickle, via the executor) comes from the test venv.

cloudpickle pickles `CountProcessor` by reference to this module, as coffea pickles a user's
processor, so the environment must make `countproc` importable by that name.
"""

from __future__ import annotations

import json
import os
import sys


class CountProcessor:
    """Counts the items of a chunk above a threshold."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold

    def process(self, chunk: list[int]) -> dict[str, object]:
        return {"n": len(chunk), "above": sum(1 for x in chunk if x > self.threshold)}


def work(processor: CountProcessor, chunk: list[int]) -> bytes:
    """What coffea's fn_wrapper calls: the result as bytes, plus where it ran."""
    out = processor.process(chunk)
    out["python"] = sys.executable
    out["prefix"] = sys.prefix
    out["cwd"] = os.getcwd()
    out["sandbox"] = os.environ.get("WORK_QUEUE_SANDBOX")
    return json.dumps(out).encode()
