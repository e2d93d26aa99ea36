"""Local helper of sixapp: shipped as source, found on the worker by its module name."""

from __future__ import annotations

import os
import sys


def where() -> dict[str, object]:
    """Where this process's Python and its modules come from, and where the task ran."""
    return {
        "executable": sys.executable,
        "prefix": sys.prefix,
        "base_prefix": sys.base_prefix,
        "helper": __file__,
        "path": sys.path,
        "cwd": os.getcwd(),
        "sandbox": os.environ.get("WORK_QUEUE_SANDBOX"),
    }
