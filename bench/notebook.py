"""Benchmark a notebook-defined processor: what the live-object analysis saves (issue 9).

bench/processors/dimuon_notebook.ipynb holds the dimuon processor as a notebook cell, a cell
building coffea's executor, and a plotting cell (matplotlib, mplhep, a pandas cutflow table).
Compares, on the coffea venv:
  * `envpack analyze dimuon_notebook.ipynb`: what the processor class reaches (what cloudpickle
    sends by value, and the modules it references);
  * `envpack analyze dimuon_notebook.ipynb --all-cells`: the whole notebook as one module (what
    a tool that exports the notebook to a script and packages its imports ships);
  * `envpack analyze dimuon_processor.py`: the same processor written as a module (reference).
Prints distributions and shipped bytes (uncompressed, from the Spec) of each, the tarball of the
first two (unless --no-build), and what the notebook analysis leaves on the manager.

usage: python3 bench/notebook.py [--no-build] [--level N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _env
from bench.build import envpack, tarball

NOTEBOOK = _env.PROCESSORS / "dimuon_notebook.ipynb"


def shipped_bytes(spec: dict[str, Any]) -> int:
    """What the Spec ships besides the interpreter and stdlib: distributions and local files."""
    local = sum(Path(f["path"]).stat().st_size for f in spec["local"])
    return sum(d["size"] for d in spec["distributions"]) + local


def analyze(name: str, args: list[str], tmp: Path) -> tuple[dict[str, Any], float, str, Path]:
    spec_path = tmp / f"{name}.json"
    cmd = ["analyze", *args, "-o", str(spec_path), "--python", str(_env.venv_python())]
    envpack(cmd, tmp / "xdg")  # warm the parse cache: time the analysis, not the first parse
    seconds, stdout = envpack(cmd, tmp / "xdg")
    _env.accept_optional_native(spec_path)
    return json.loads(spec_path.read_text()), seconds, stdout, spec_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-build", action="store_true", help="compare the Specs only")
    ap.add_argument("--level", type=int, help="passed to envpack build --level")
    args = ap.parse_args()
    _env.ensure_venv()
    with tempfile.TemporaryDirectory(prefix="envpack-bench-nb-") as tmpdir:
        tmp = Path(tmpdir)
        _env.log("envpack analyze: the notebook, the notebook --all-cells, the module")
        runs = {
            "notebook": analyze("notebook", [str(NOTEBOOK)], tmp),
            "all-cells": analyze("all-cells", [str(NOTEBOOK), "--all-cells"], tmp),
            "module": analyze("module", [str(_env.PROCESSOR)], tmp),
        }
        sizes: dict[str, int] = {}
        if not args.no_build:
            for name in ("notebook", "all-cells"):
                _env.log(f"envpack build of the {name} Spec")
                level = ["--level", str(args.level)] if args.level else []
                out = tmp / f"out-{name}"
                t0 = time.perf_counter()
                envpack(["build", str(runs[name][3]), "-o", str(out), *level], tmp / "xdg")
                _env.log(f"  {time.perf_counter() - t0:.1f} s")
                sizes[name] = tarball(out).stat().st_size

    dists = {name: {d["name"] for d in run[0]["distributions"]} for name, run in runs.items()}
    total = {name: shipped_bytes(run[0]) for name, run in runs.items()}
    print(f"## A notebook-defined processor: {NOTEBOOK.name}")
    print(f"machine: {_env.machine()}")
    print(f"{'analysis':<34} {'dists':>5} {'shipped (Spec)':>15} {'tarball':>10} {'analyze':>8}")
    labels = {
        "notebook": "envpack analyze NB.ipynb",
        "all-cells": "  ... --all-cells (as a module)",
        "module": "envpack analyze dimuon_processor.py",
    }
    for name, (_, seconds, _, _) in runs.items():
        tar = _env.mb(sizes[name]) if name in sizes else "-"
        print(
            f"{labels[name]:<34} {len(dists[name]):>5} {_env.mb(total[name]):>15} {tar:>10} "
            f"{seconds:>7.1f}s"
        )
    left = sorted(dists["all-cells"] - dists["notebook"], key=str.lower)
    saved = total["all-cells"] - total["notebook"]
    print(
        f"the live-object analysis leaves {len(left)} distributions on the manager, "
        f"{_env.mb(saved)} uncompressed ({saved / total['all-cells']:.0%} of the whole notebook's)"
        + (
            f", {_env.mb(sizes['all-cells'] - sizes['notebook'])} of tarball"
            if len(sizes) == 2
            else ""
        )
        + ": "
        + ", ".join(left)
    )
    said = [ln for ln in runs["notebook"][2].splitlines() if ln.startswith(("Shipped", "Manager"))]
    print("envpack analyze NB.ipynb said: " + " | ".join(said))
    print()
    print(
        _env.verdict(
            "notebook ships what the processor's module ships",
            dists["notebook"] == dists["module"],
            "same distributions"
            if dists["notebook"] == dists["module"]
            else f"differ: {sorted(dists['notebook'] ^ dists['module'])}",
        )
    )
    plotting = {"matplotlib", "mplhep", "pandas"}
    print(
        _env.verdict(
            "plotting and tables stay on the manager",
            not plotting & dists["notebook"] and plotting <= dists["all-cells"],
            f"{sorted(plotting & dists['notebook']) or 'none'} shipped by the notebook analysis, "
            f"{sorted(plotting & dists['all-cells'])} by --all-cells",
        )
    )


if __name__ == "__main__":
    main()
