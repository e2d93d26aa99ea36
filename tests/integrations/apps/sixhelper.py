"""Local helper of sixapp: shipped as source, found on the worker by its module name."""

from __future__ import annotations

import sys


def where() -> dict[str, object]:
    """Where this process's Python and its modules come from."""
    return {
        "executable": sys.executable,
        "prefix": sys.prefix,
        "base_prefix": sys.base_prefix,
        "helper": __file__,
        "path": sys.path,
    }
