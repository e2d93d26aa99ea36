"""The user's code for the engine tests: functions sent to workers by TaskVine, DaskVine,
Parsl and Dask. Each reports where it ran, so a test sees the environment, not the host."""

from __future__ import annotations

import os
import sys
from typing import Any


def where(x: int) -> dict[str, Any]:
    """``x`` squared, and the interpreter and environment that computed it."""
    return {"value": x * x, **ran_in()}


def ran_in() -> dict[str, Any]:
    """The interpreter and environment this runs in (what the tests check of a worker)."""
    return {
        "executable": sys.executable,
        "prefix": sys.prefix,
        "envpack_prefix": os.environ.get("ENVPACK_PREFIX"),
        "poncho_prefix": os.environ.get("PONCHO_PREFIX"),
        "cwd": os.getcwd(),
        "path": [p for p in sys.path if p],
    }


def square(x: int) -> int:
    return x * x


def add(a: int, b: int) -> int:
    return a + b
