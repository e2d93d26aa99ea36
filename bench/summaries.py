"""Check that summaries made with a fresh .pyc's help are those of a plain parse, file by file.

For every .py file under the given roots (default: the bench venv's site-packages and this
interpreter's stdlib), the third-party summary is computed twice: by ``ast.parse`` of the
file as it is, and with its fresh ``.pyc`` (``_parsecache.fresh_code``), which blanks the
function bodies the extractor never reads (``_sites.elide``). Prints the counts (files, with a
fresh .pyc, elided, elided text that failed to parse and fell back) and the CPU seconds of
each way, and every mismatch; exits 1 on any.

usage: python3 bench/summaries.py [ROOT ...]
"""

from __future__ import annotations

import argparse
import ast
import gc
import os
import sys
import sysconfig
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _env
from envpack.analyzer import _sites
from envpack.analyzer._parsecache import fresh_code


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("roots", nargs="*", type=Path)
    args = ap.parse_args()
    roots = args.roots or [_env.site_packages(), Path(sysconfig.get_paths()["stdlib"])]
    files = fresh = elided = fallback = mismatched = 0
    plain_cpu = pyc_cpu = 0.0
    gc.disable()  # as the parser runs (see _parsecache.summarize_bytes)
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if "site-packages" in path.parts and root.name != "site-packages":
                continue  # the stdlib's root holds the interpreter's own site-packages
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
                    mtime = os.fstat(fh.fileno()).st_mtime
            except OSError:
                continue
            files += 1
            t0 = time.process_time()
            plain = _sites.summarize(data, str(path), False)
            t1 = time.process_time()
            code = fresh_code(str(path), data, mtime)
            new = _sites.summarize(data, str(path), False, code)
            t2 = time.process_time()
            plain_cpu += t1 - t0
            pyc_cpu += t2 - t1
            if code is not None:
                fresh += 1
                text = _sites.elide(data, code, _sites._match_lines(data, _sites._IMPORT_RE))
                if text is not None:
                    elided += 1
                    try:
                        ast.parse(text)
                    except (SyntaxError, ValueError):
                        fallback += 1
                        print(f"fallback: {path}")
            if new != plain:
                mismatched += 1
                print(f"MISMATCH: {path}")
    print(
        f"{files} files, {fresh} with a fresh .pyc, {elided} elided, {fallback} fell back; "
        f"{mismatched} mismatches"
    )
    print(f"CPU: plain parse {plain_cpu:.2f} s, with the .pyc {pyc_cpu:.2f} s")
    sys.exit(1 if mismatched else 0)


if __name__ == "__main__":
    main()
