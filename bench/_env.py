"""Shared plumbing for the benchmarks: the cached coffea venv, the generated data, timing.

The venv is slow to make (about a gigabyte of wheels), so it is made once, from the pins in
requirements-coffea.txt, under ~/.cache/envpack-bench (override with $ENVPACK_BENCH_CACHE), and
reused by every script; a stamp file holding the pins' hash says whether it is current.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
PROCESSORS = BENCH / "processors"
PROCESSOR = PROCESSORS / "dimuon_processor.py"
DRIVER = PROCESSORS / "run_dimuon.py"


@dataclass(frozen=True)
class Workload:
    """A processor the benchmarks run on: what envpack analyzes, the driver that runs it for
    real (traced), and its import name (for Python's own import time)."""

    name: str
    processor: Path
    driver: Path
    module: str


WORKLOADS = {
    # the coffea 0.7 dimuon processor the targets were set on
    "dimuon": Workload("dimuon", PROCESSOR, DRIVER, "dimuon_processor"),
    # not tuned for: uproot + numba + pandas + scipy, no coffea
    "fit": Workload(
        "fit", PROCESSORS / "fit_processor.py", PROCESSORS / "run_fit.py", "fit_processor"
    ),
}


def workloads(names: Sequence[str]) -> list[Workload]:
    """The workloads named on a benchmark's command line ("all" for every one)."""
    if not names or "all" in names:
        return list(WORKLOADS.values())
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise SystemExit(f"[bench] unknown workload {', '.join(unknown)}: {', '.join(WORKLOADS)}")
    return [WORKLOADS[n] for n in names]


PINS = BENCH / "requirements-coffea.txt"

CACHE = Path(os.environ.get("ENVPACK_BENCH_CACHE", Path.home() / ".cache" / "envpack-bench"))
VENV = CACHE / "coffea-venv"
DATA = CACHE / "data"
# The interpreter the venv is made with: the pyenv 3.11 this project targets.
BASE_PYTHON = os.environ.get("ENVPACK_BENCH_PYTHON") or shutil.which("python3.11") or "python3"


def log(msg: str) -> None:
    """Progress on stderr, so stdout holds only the figures."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def venv_python() -> Path:
    return VENV / "bin" / "python"


def site_packages() -> Path:
    return next((VENV / "lib").glob("python3*/site-packages"))


def _pins_digest() -> str:
    return hashlib.sha256(PINS.read_bytes()).hexdigest()[:16]


def ensure_venv() -> Path:
    """The coffea venv's python, created from the pins if missing or stale."""
    stamp = VENV / ".envpack-bench-pins"
    if stamp.exists() and stamp.read_text().strip() == _pins_digest():
        return venv_python()
    log(f"creating the coffea venv at {VENV} (once; a few minutes)")
    if VENV.exists():
        shutil.rmtree(VENV)
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run([BASE_PYTHON, "-m", "venv", str(VENV)], check=True)
    pip = [str(venv_python()), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(PINS)], check=True)
    stamp.write_text(_pins_digest() + "\n")
    return venv_python()


def ensure_data() -> list[Path]:
    """Small NanoAOD-like ROOT files (one LZ4, one ZSTD), generated once with the venv's uproot."""
    python = ensure_venv()
    files = [DATA / "dy_lz4.root", DATA / "dy_zstd.root"]
    if not all(f.exists() for f in files):
        log(f"generating NanoAOD-like data in {DATA}")
        DATA.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(python), str(BENCH / "_data.py"), str(DATA)], check=True)
    return files


def envpack_cmd() -> list[str]:
    """How to call the envpack CLI from this checkout, installed or not."""
    exe = REPO / ".venv" / "bin" / "envpack"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "import sys; from envpack.cli.main import main; sys.exit(main())"]


def envpack_env() -> dict[str, str]:
    """The environment for envpack subprocesses: this checkout importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    # An installed envpack has its .pyc files; with PYTHONDONTWRITEBYTECODE set (some CI and
    # sandbox shells do), a checkout would compile its own 10k lines on every run (0.1-0.3 s),
    # a cost no user pays.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run(cmd: Sequence[str | os.PathLike[str]], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, failing loudly with its output: a benchmark of a broken tool means nothing."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"[bench] failed ({proc.returncode}): {' '.join(map(str, cmd))}")
    return proc


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def best_of(n: int, fn: Callable[[], object]) -> float:
    return min(timed(fn) for _ in range(n))


def median_of(n: int, fn: Callable[[], object]) -> float:
    return statistics.median(timed(fn) for _ in range(n))


def profile(fn: Callable[[], object], top: int = 30) -> str:
    """cProfile of one in-process call, cumulative order: where a missed target's time goes."""
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.runcall(fn)
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(top)
    return buf.getvalue()


def machine() -> str:
    """One line describing where the figures were measured."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load average {load} at the end"
    )


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def verdict(name: str, ok: bool, detail: str) -> str:
    return f"{'MET ' if ok else 'MISS'}  {name}: {detail}"


def tar_czf(src_root: Path, members: Sequence[str] | None, out: Path) -> float:
    """`tar czf` (gzip -6, one core, as users do it) of members under src_root; seconds taken."""
    if members is None:
        cmd = ["tar", "czf", str(out), "-C", str(src_root.parent), src_root.name]
        return timed(lambda: run(cmd))
    listing = out.with_suffix(".list")
    listing.write_text("".join(m + "\n" for m in members))
    cmd = ["tar", "czf", str(out), "-C", str(src_root), "--no-recursion", "-T", str(listing)]
    return timed(lambda: run(cmd))


# numba ships an optional TBB threading layer (numba/np/ufunc/tbbpool*.so) linked against
# libtbb.so.12, which only the separate `tbb` wheel provides; numba loads it only when asked for
# that layer. Until the analyzer treats it as optional, the benchmarks accept exactly that error
# (and say so) so the build can be measured.
OPTIONAL_NATIVE = ("/numba/np/ufunc/tbbpool",)


def accept_optional_native(spec_path: Path) -> list[str]:
    """Turn the Spec's missing-library errors of known-optional ELF files into warnings."""
    import json

    spec = json.loads(spec_path.read_text())
    accepted = [e for e in spec.get("errors", []) if any(m in e for m in OPTIONAL_NATIVE)]
    if accepted:
        spec["errors"] = [e for e in spec["errors"] if e not in accepted]
        spec["warnings"] = sorted([*spec.get("warnings", []), *accepted])
        spec_path.write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
        for e in accepted:
            log(f"accepted as optional (bench workaround): {e}")
    return accepted
