"""Benchmark a notebook-defined processor: what the live-object analysis saves (issue 9).

Two notebooks (--workload): bench/processors/dimuon_notebook.ipynb holds the dimuon processor as
a notebook cell, a cell building coffea's executor, and a plotting cell (matplotlib, mplhep, a
pandas cutflow table); fit_notebook.ipynb holds the fit workload as a plain function, fit_file,
mapped over the files by coffea's futures pool, then a pandas table and a plot. Compares, on the
coffea venv:
  * `envpack analyze NB.ipynb [--object NAME]`: what the processor class (or the function)
    reaches (what cloudpickle sends by value, and the modules it references);
  * `envpack analyze NB.ipynb --all-cells`: the whole notebook as one module (what
    a tool that exports the notebook to a script and packages its imports ships);
  * `envpack analyze dimuon_processor.py` (fit_processor.py): the same work as a module (reference).
Prints distributions and shipped bytes (uncompressed, from the Spec) of each, the tarball of the
first two (unless --no-build), and what the notebook analysis leaves on the manager.

usage: python3 bench/notebook.py [--no-build] [--level N] [--workload dimuon|fit|all]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _env
from bench.build import envpack, tarball

NOTEBOOK = _env.PROCESSORS / "dimuon_notebook.ipynb"


@dataclass(frozen=True)
class NotebookWorkload:
    """A notebook, what it sends to workers (None: its ProcessorABC classes), and the same
    worker code written as a module (the reference)."""

    name: str
    notebook: Path
    objects: tuple[str, ...]
    module: Path
    plotting: frozenset[str]
    like_module: bool = True  # the notebook's worker code imports what the module's does


NOTEBOOKS = {
    "dimuon": NotebookWorkload(
        "dimuon", NOTEBOOK, (), _env.PROCESSOR, frozenset({"matplotlib", "mplhep", "pandas"})
    ),
    # a plain function (fit_processor.py's work) sent with cloudpickle; pandas is only the
    # summary cell's here, while the module's processor tabulates with it
    "fit": NotebookWorkload(
        "fit",
        _env.PROCESSORS / "fit_notebook.ipynb",
        ("fit_file",),
        _env.PROCESSORS / "fit_processor.py",
        frozenset({"matplotlib", "mplhep", "coffea"}),
        like_module=False,
    ),
}


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
    ap.add_argument("--workload", action="append", choices=[*NOTEBOOKS, "all"], help="default: all")
    args = ap.parse_args()
    _env.ensure_venv()
    names = args.workload or ["all"]
    for w in NOTEBOOKS.values():
        if "all" in names or w.name in names:
            report(w, args)
            print()


def report(w: NotebookWorkload, args: argparse.Namespace) -> None:
    nb = str(w.notebook)
    objects = [a for o in w.objects for a in ("--object", o)]
    with tempfile.TemporaryDirectory(prefix="envpack-bench-nb-") as tmpdir:
        tmp = Path(tmpdir)
        _env.log(f"{w.name}: envpack analyze the notebook, the notebook --all-cells, the module")
        runs = {
            "notebook": analyze("notebook", [nb, *objects], tmp),
            "all-cells": analyze("all-cells", [nb, "--all-cells"], tmp),
            "module": analyze("module", [str(w.module)], tmp),
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
    print(f"## A notebook's worker code: {w.notebook.name} ({w.name})")
    print(f"machine: {_env.machine()}")
    print(f"{'analysis':<44} {'dists':>5} {'shipped (Spec)':>15} {'tarball':>10} {'analyze':>8}")
    labels = {
        "notebook": "envpack analyze NB.ipynb" + "".join(f" --object {o}" for o in w.objects),
        "all-cells": "  ... --all-cells (as a module)",
        "module": f"envpack analyze {w.module.name}",
    }
    for name, (_, seconds, _, _) in runs.items():
        tar = _env.mb(sizes[name]) if name in sizes else "-"
        print(
            f"{labels[name]:<44} {len(dists[name]):>5} {_env.mb(total[name]):>15} {tar:>10} "
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
    if w.like_module:
        print(
            _env.verdict(
                "notebook ships what the module ships",
                dists["notebook"] == dists["module"],
                "same distributions"
                if dists["notebook"] == dists["module"]
                else f"differ: {sorted(dists['notebook'] ^ dists['module'])}",
            )
        )
    else:
        extra = sorted(dists["module"] - dists["notebook"])
        print(f"the module's code also tabulates with pandas, so it ships besides: {extra}")
    plotting = set(w.plotting)
    print(
        _env.verdict(
            f"{', '.join(sorted(plotting))} stay on the manager",
            not plotting & dists["notebook"] and plotting <= dists["all-cells"],
            f"{sorted(plotting & dists['notebook']) or 'none'} shipped by the notebook analysis, "
            f"{sorted(plotting & dists['all-cells'])} by --all-cells",
        )
    )


if __name__ == "__main__":
    main()
