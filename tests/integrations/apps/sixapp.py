"""A tiny application for the Work Queue tests: reports the six and the Python it runs with.

`python -m sixapp` prints one JSON line. With `--barrier DIR`, it first waits until a task of an
application with another six version has also reached DIR, which proves both ran at once.
"""

from __future__ import annotations

import json
import os
import sys
import time

import six  # type: ignore[import-untyped]  # no stubs; the test venvs hold two versions
from sixhelper import where  # type: ignore[import-not-found]  # found next to this script


def _barrier(directory: str, timeout: float = 60.0) -> bool:
    mine = f"{six.__version__}.{os.getpid()}"
    with open(os.path.join(directory, mine), "w"):
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        others = [n for n in os.listdir(directory) if not n.startswith(six.__version__ + ".")]
        if others:
            return True
        time.sleep(0.05)
    return False


def main(argv: list[str]) -> int:
    met = None
    if argv[:1] == ["--barrier"]:
        met = _barrier(argv[1])
    report = {"six": six.__version__, "six_file": six.__file__, "met_other": met, **where()}
    print(json.dumps(report))
    return 0 if met is not False else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
