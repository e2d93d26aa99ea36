"""Benchmark `envpack analyze` on a coffea 0.7 processor (issue 2's targets), all in one run.

Measures, against baselines taken in the same run:
  * wall time of `envpack analyze` cold (empty parse cache) and warm (cache filled), next to the
    time Python itself takes to import the processor (best of N, `python -c "import ..."`);
  * the distributions the Spec ships vs those a real run of the processor loads (traced once
    with an audit hook): recall, and distributions found that the run never loads.
Targets: recall 100% and none never-loaded; cold <= 2x the import; warm <= 0.3x the import
(issue 2); cold <= 1.0x, warm <= 0.2x (issue 10).

usage: python3 bench/analyze.py [--repeat N] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _env, _trace


def _canon(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def analyze_once(
    python: Path, work: _env.Workload, out: Path, cache_home: Path, *extra: str
) -> tuple[float, int]:
    """One `envpack analyze` of the workload's processor; (seconds, exit status)."""
    env = _env.envpack_env()
    env["XDG_CACHE_HOME"] = str(cache_home)
    cmd = [
        *_env.envpack_cmd(),
        "analyze",
        str(work.processor),
        "-o",
        str(out),
        "--python",
        str(python),
        *extra,
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=_env.PROCESSORS, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode not in (0, 1) or not out.exists():
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"[bench] envpack analyze failed ({proc.returncode})")
    return dt, proc.returncode


def profile_cold(python: Path, work: _env.Workload, tmp: Path) -> str:
    """cProfile of one cold analysis, in process (pool workers are not profiled)."""
    os.environ["XDG_CACHE_HOME"] = str(tmp / "prof-cache")
    sys.path.insert(0, str(_env.REPO))
    from envpack.analyzer.api import analyze

    return _env.profile(lambda: analyze([work.processor], python=str(python)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per timing (best is kept)")
    ap.add_argument("--profile", action="store_true", help="also print a cProfile of a cold run")
    ap.add_argument("--workload", nargs="*", default=["all"], help="dimuon, fit or all")
    args = ap.parse_args()
    python = _env.ensure_venv()
    for work in _env.workloads(args.workload):
        bench_workload(work, python, args)
        print()


def bench_workload(work: _env.Workload, python: Path, args: argparse.Namespace) -> None:
    data = _env.ensure_data()
    _env.log("tracing one real run of the processor")
    run = _trace.trace(python, _env.PROCESSORS, work.driver, [str(f) for f in data])
    startup = _trace.startup_trace(python)
    needed = {_canon(d) for d in _trace.needed_dists(run, startup)}
    loaded = {_canon(d) for d in run.dists()}
    meta_only = {_canon(d) for d in run.metadata_only()}

    _env.log("timing python's own import of the processor")
    t_import, t_start = _trace.import_time(python, _env.PROCESSORS, work.module, n=5)

    with tempfile.TemporaryDirectory(prefix="envpack-bench-") as tmpdir:
        tmp = Path(tmpdir)
        spec_path = tmp / "envpack.json"
        _env.log(f"envpack analyze, cold x{args.repeat}")
        colds = []
        status = 0
        for i in range(args.repeat):
            cache = tmp / f"cold-{i}"
            dt, status = analyze_once(python, work, spec_path, cache)
            colds.append(dt)
        _env.log(f"envpack analyze, warm x{args.repeat}")
        warms = [analyze_once(python, work, spec_path, cache)[0] for _ in range(args.repeat)]
        spec = json.loads(spec_path.read_text())
        prof = profile_cold(python, work, tmp) if args.profile else ""

    found = {_canon(d["name"]): d for d in spec["distributions"]}
    hit = needed & set(found)
    recall = len(hit) / len(needed) if needed else 1.0
    never = sorted(set(found) - loaded)
    missed = sorted(needed - set(found))
    cold, warm = min(colds), min(warms)
    # The processor's own bytecode (written once Python may write .pyc files) is not data.
    local_traced = {Path(p).name for p in run.files("local") if "__pycache__" not in p}
    local_found = {Path(e["path"]).name for e in spec.get("local", [])}

    print(f"## envpack analyze: workload {work.name} ({work.processor.name})")
    print(f"machine: {_env.machine()}")
    print(f"venv: {_env.VENV} ({len(run.versions)} distributions installed)")
    print(f"python import of the processor: {t_import:.3f} s (bare start-up {t_start:.3f} s)")
    print(
        f"envpack analyze cold: {cold:.3f} s = {cold / t_import:.2f}x import (runs: "
        + ", ".join(f"{c:.2f}" for c in colds)
        + ")"
    )
    print(
        f"envpack analyze warm: {warm:.3f} s = {warm / t_import:.2f}x import (runs: "
        + ", ".join(f"{w:.2f}" for w in warms)
        + ")"
    )
    print(f"exit status: {status}; errors in Spec: {len(spec.get('errors', []))}")
    for e in spec.get("errors", [])[:10]:
        print(f"  error: {e}")
    print(f"distributions a real run loads: {len(needed)}: {', '.join(sorted(needed))}")
    print(f"  (metadata read only, not loaded: {', '.join(sorted(meta_only)) or '-'})")
    print(f"distributions in the Spec: {len(found)}: {', '.join(sorted(found))}")
    print(f"recall: {len(hit)}/{len(needed)} = {recall:.0%}; missed: {', '.join(missed) or '-'}")
    print(f"found but never loaded: {len(never)}: {', '.join(never) or '-'}")
    shipped = sum(d["size"] for d in found.values())
    print(
        f"Spec distribution bytes: {_env.mb(shipped)}; lazy candidates listed: "
        f"{len(spec.get('lazy', []))}"
    )
    print(f"local files traced: {sorted(local_traced)}; in the Spec: {sorted(local_found)}")
    print()
    print(
        _env.verdict(
            "recall 100%", recall == 1.0, f"{recall:.0%} ({', '.join(missed) or 'none missed'})"
        )
    )
    print(_env.verdict("no never-loaded distribution", not never, ", ".join(never) or "none"))
    print(_env.verdict("cold <= 2x import", cold <= 2 * t_import, f"{cold / t_import:.2f}x"))
    print(_env.verdict("warm <= 0.3x import", warm <= 0.3 * t_import, f"{warm / t_import:.2f}x"))
    # issue 10's goals
    print(_env.verdict("cold <= 1.0x import", cold <= t_import, f"{cold / t_import:.2f}x"))
    print(_env.verdict("warm <= 0.2x import", warm <= 0.2 * t_import, f"{warm / t_import:.2f}x"))
    print(
        _env.verdict(
            "local data file found",
            local_traced <= local_found,
            f"missing {sorted(local_traced - local_found) or 'none'}",
        )
    )
    if prof:
        print("\n## cProfile of one cold analysis (cumulative)\n" + prof)


if __name__ == "__main__":
    main()
