"""What a real run of a processor loads: the ground truth the analyzer and the build are held to.

`trace()` runs a script once in the target interpreter under an audit hook (_trace_run.py) and
maps every file it used to its owner: a distribution (by the RECORD files of the target's
site-packages), the interpreter (binary, libpython, stdlib), local code and data (the work dir),
or the system. From it come (a) the distributions a real run loads and (b) the "traced lower
bound": those files, tarred and gzipped as users do, which no environment that runs the
processor can undercut by much.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "_trace_run.py"

# Libraries every Linux worker has (the manylinux policy's allowlist): never part of an env.
SYSTEM_LIBS = (
    "ld-linux",
    "libc.so",
    "libm.so",
    "libdl.so",
    "librt.so",
    "libpthread.so",
    "libgcc_s.so",
    "libstdc++.so",
    "libz.so",
    "libutil.so",
    "libresolv.so",
    "libnsl.so",
    "libexpat.so",
    "libcrypt.so",
    "linux-vdso",
)


@dataclass(frozen=True)
class Owner:
    kind: str  # "dist", "metadata", "interpreter", "local", "bundle", "system", "other"
    name: str = ""  # the distribution, for "dist" and "metadata"


@dataclass
class Trace:
    """One traced run: the files it used and who owns each."""

    python: str
    record: dict[str, object]
    owners: dict[str, Owner] = field(default_factory=dict)  # realpath -> owner
    versions: dict[str, str] = field(default_factory=dict)  # dist name -> version

    def files(self, *kinds: str) -> list[str]:
        return sorted(p for p, o in self.owners.items() if not kinds or o.kind in kinds)

    def dists(self) -> dict[str, list[str]]:
        """Distributions whose code or data the run used (metadata reads alone do not count)."""
        out: dict[str, list[str]] = {}
        for path, owner in self.owners.items():
            if owner.kind == "dist":
                out.setdefault(owner.name, []).append(path)
        return out

    def metadata_only(self) -> set[str]:
        """Distributions whose .dist-info was read (entry points, versions) but nothing else."""
        meta = {o.name for o in self.owners.values() if o.kind == "metadata"}
        return meta - set(self.dists())

    def lower_bound_files(self) -> list[str]:
        """What an environment must hold to repeat this run: everything but system and data."""
        return self.files("dist", "metadata", "interpreter", "local", "bundle")

    def modules(self) -> dict[str, str]:
        mods = self.record.get("modules", {})
        assert isinstance(mods, dict)
        return mods


def _record_index(site_dirs: Iterable[str]) -> tuple[dict[str, Owner], dict[str, str]]:
    """realpath -> owning distribution, for every file any RECORD lists."""
    index: dict[str, Owner] = {}
    versions: dict[str, str] = {}
    for dist in metadata.distributions(path=list(site_dirs)):
        name = dist.metadata["Name"]
        versions[name] = dist.version
        # realpath once per distribution, not per file: 46k realpath calls take seconds.
        base = os.path.realpath(str(dist.locate_file("")))
        record = dist.read_text("RECORD") or ""
        for row in csv.reader(record.splitlines()):
            if not row:
                continue
            rel = row[0]
            real = os.path.normpath(os.path.join(base, rel))
            in_meta = ".dist-info/" in rel
            index[real] = Owner("metadata" if in_meta else "dist", name)
    return index, versions


def _pyc_source(path: str) -> str | None:
    """The .py a __pycache__/*.pyc was compiled from (shipped with it: tracebacks, numba)."""
    p = Path(path)
    if p.suffix != ".pyc" or p.parent.name != "__pycache__":
        return None
    src = p.parent.parent / (p.name.split(".", 1)[0] + ".py")
    return str(src) if src.exists() else None


def classify(record: dict[str, object], site_dirs: Sequence[str]) -> Trace:
    index, versions = _record_index(site_dirs)
    prefix = os.path.realpath(str(record["base_prefix"]))
    venv = os.path.realpath(str(record["prefix"]))
    workdir = os.path.realpath(str(record["workdir"]))
    script = os.path.realpath(str(record["script"]))
    modules = record["modules"]
    mapped = record["mapped"]
    opened = record["opened"]
    assert isinstance(modules, dict) and isinstance(mapped, list) and isinstance(opened, list)
    candidates = {os.path.realpath(p) for p in [*opened, *mapped, *modules.values()]}
    candidates |= {s for p in list(candidates) if (s := _pyc_source(p))}
    owners: dict[str, Owner] = {}
    for path in candidates:
        if path == script or path.startswith(("/proc/", "/dev/", "/sys/")):
            continue
        if not os.path.isfile(path):
            continue
        owner = index.get(path)
        if owner is None:
            name = os.path.basename(path)
            if path.startswith(workdir + os.sep):
                ext = os.path.splitext(path)[1]
                owner = Owner("local") if ext in (".py", ".pyc", ".json", ".gz") else Owner("other")
            elif path.startswith((prefix + os.sep, venv + os.sep)):
                owner = Owner("interpreter")
            elif ".so" in name and name.startswith(SYSTEM_LIBS):
                owner = Owner("system")
            elif ".so" in name:
                owner = Owner("bundle")  # a non-allowlisted native library: an env must carry it
            else:
                owner = Owner("other")  # /etc files, fonts, the input data
        owners[path] = owner
    return Trace(python=str(record["executable"]), record=record, owners=owners, versions=versions)


def site_dirs_of(python: str | os.PathLike[str]) -> list[str]:
    out = subprocess.run(
        [str(python), "-I", "-c", "import site, sys; print('\\n'.join(site.getsitepackages()))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if Path(line).is_dir()]


def trace(
    python: str | os.PathLike[str],
    workdir: Path,
    script: Path,
    args: Sequence[str] = (),
    *,
    env: dict[str, str] | None = None,
) -> Trace:
    """Run ``script`` once in ``python`` (cwd ``workdir``) and classify what it used."""
    with tempfile.TemporaryDirectory(prefix="envpack-trace-") as tmp:
        out = Path(tmp) / "trace.json"
        proc = subprocess.run(
            [str(python), str(RUNNER), str(out), str(workdir), str(script), *args],
            capture_output=True,
            text=True,
            env=env,
        )
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"traced run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        record = json.loads(out.read_text())
    return classify(record, site_dirs_of(python))


def startup_trace(python: str | os.PathLike[str]) -> Trace:
    """What the bare interpreter loads (site, .pth hooks): subtracted from a run's record."""
    with tempfile.TemporaryDirectory(prefix="envpack-trace-") as tmp:
        empty = Path(tmp) / "empty.py"
        empty.write_text("")
        return trace(python, Path(tmp), empty)


def needed_dists(run: Trace, startup: Trace) -> set[str]:
    """Distributions the run used beyond what bare start-up touches (e.g. setuptools' .pth)."""
    base = startup.dists()
    return {d for d, files in run.dists().items() if not set(files) <= set(base.get(d, ()))}


def tar_lower_bound(run: Trace, out: Path, kinds: Sequence[str] = ()) -> tuple[int, float]:
    """tar czf of the lower-bound files (or only those of ``kinds``); (bytes, seconds)."""
    files = run.files(*kinds) if kinds else run.lower_bound_files()
    members = [p.lstrip("/") for p in files]
    listing = out.with_suffix(".list")
    listing.write_text("".join(m + "\n" for m in members))
    t0 = time.perf_counter()
    subprocess.run(["tar", "czf", str(out), "-C", "/", "-T", str(listing)], check=True)
    return out.stat().st_size, time.perf_counter() - t0


def import_time(
    python: str | os.PathLike[str], workdir: Path, module: str, n: int = 5
) -> tuple[float, float]:
    """Best-of-n wall time of `python -c 'import module'` and of `python -c pass` (start-up)."""

    # As for envpack itself (_env.envpack_env): the processor's own modules get their .pyc.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def best(code: str) -> float:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            subprocess.run([str(python), "-c", code], cwd=workdir, check=True, env=env)
            times.append(time.perf_counter() - t0)
        return min(times)

    best(f"import {module}")  # warm the page cache and any .pyc writes
    return best(f"import {module}"), best("pass")


def summary(run: Trace, needed: set[str]) -> str:
    sizes = {k: sum(os.path.getsize(p) for p in run.files(k)) for k in ("dist", "interpreter")}
    return (
        f"{len(needed)} distributions loaded, {len(run.files('dist'))} of their files "
        f"({sizes['dist'] / 1e6:.1f} MB); interpreter files {len(run.files('interpreter'))} "
        f"({sizes['interpreter'] / 1e6:.1f} MB); local {len(run.files('local'))}; "
        f"native to bundle {len(run.files('bundle'))}"
    )


if __name__ == "__main__":  # python3 bench/_trace.py PYTHON WORKDIR SCRIPT [ARGS]
    t = trace(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:])
    s = startup_trace(sys.argv[1])
    print(summary(t, needed_dists(t, s)))
    print(sorted(needed_dists(t, s)))
