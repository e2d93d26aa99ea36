"""Local helper of sixapp: shipped as source, found on the worker by its module name."""

from __future__ import annotations

import os
import sys


def where() -> dict[str, object]:
    """Where this process's Python and its modules come from, and where the task itself runs.

    The prefix's inode tells two unpacks of one environment apart even at the same path (an
    engine that re-creates its cache entry); cwd, TMPDIR and the sandbox show the task's own.
    """
    return {
        "executable": sys.executable,
        "prefix": sys.prefix,
        "prefix_inode": os.stat(sys.prefix).st_ino,
        "base_prefix": sys.base_prefix,
        "helper": __file__,
        "path": sys.path,
        "envpack_prefix": os.environ.get("ENVPACK_PREFIX"),
        "poncho_prefix": os.environ.get("PONCHO_PREFIX"),
        "cwd": os.getcwd(),
        "tmpdir": os.environ.get("TMPDIR"),
        "sandbox": os.environ.get("WORK_QUEUE_SANDBOX"),
    }
