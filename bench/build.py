"""Benchmark `envpack build` on the coffea 0.7 processor (issue 3's targets), all in one run.

Measures, against baselines taken in the same run:
  * size and time of `envpack build` vs `tar czf` of the whole venv (what conda-pack and
    python_package_create users ship today, without the interpreter);
  * the "traced lower bound": the files one real run of the processor used (interpreter,
    stdlib, distributions, local code and data, non-system native libraries), tar czf'd;
  * a warm rebuild (the tarball is already in the output dir: a cache hit);
  * whether two cold builds are byte-identical;
  * a rebuild after an edit to one local file (the piece cache of the cold build is warm: only
    the local layer is compressed again);
  * the cold build against its own compressor on the same bytes: the built tarball's
    uncompressed tar stream, read from a file, compressed by envpack's block compressor at the
    same level on every core and written to a file (what the build would cost if collecting,
    hashing and tar-writing were free); three pairs, each compressor run right after its build,
    the median ratio reported.
Targets: tarball <= 1.3x the lower bound; build <= 25% of tar czf of the venv; warm < 2 s;
edit-and-rebuild <= 2 s; cold build <= 1.1x its own compressor.

usage: python3 bench/build.py [--profile]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _env, _trace

PAIRS = 3  # cold builds, each paired with a compressor run


def _canon(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def envpack(args: list[str], cache_home: Path) -> tuple[float, str]:
    env = _env.envpack_env()
    env["XDG_CACHE_HOME"] = str(cache_home)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [*_env.envpack_cmd(), *args], cwd=_env.PROCESSORS, env=env, capture_output=True, text=True
    )
    dt = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"[bench] envpack {args[0]} failed ({proc.returncode})")
    return dt, proc.stdout


def tarball(out: Path) -> Path:
    found = sorted(out.glob("envpack-*.tar*"))
    if len(found) != 1:
        raise SystemExit(f"[bench] expected one tarball in {out}, found {found}")
    return found[0]


def sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def edit_rebuilds(spec_path: Path, tmp: Path, cache_home: Path, level: list[str]) -> list[float]:
    """Times of rebuilds after an edit to the processor (a copy, so the repo stays as it is)."""
    raw = json.loads(spec_path.read_text())
    local = next(f for f in raw["local"] if f["kind"] == "module")
    copy = tmp / "edited" / Path(local["path"]).name
    copy.parent.mkdir(exist_ok=True)
    copy.write_bytes(Path(local["path"]).read_bytes())
    local["path"] = str(copy)
    edited = tmp / "envpack-edited.json"
    edited.write_text(json.dumps(raw))
    times = []
    for i in range(3):
        copy.write_text(copy.read_text() + f"\n# edit {i}\n")
        times.append(
            envpack(["build", str(edited), "-o", str(tmp / "out1"), *level], cache_home)[0]
        )
    return times


def raw_stream(tarball: Path) -> Path:
    """The tarball's uncompressed tar stream, in a file beside it (the compressor's input)."""
    raw = tarball.with_suffix(".raw")
    with open(raw, "wb") as fh:
        subprocess.run(["gzip", "-dc", str(tarball)], stdout=fh, check=True)
    return raw


def children_cpu() -> float:
    """User + system CPU seconds of this process's waited-for children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_compressor(raw: Path, level: int | None, out: Path | None) -> tuple[float, float]:
    """(seconds, CPU seconds) envpack's block compressor takes on the tar stream: read from a
    file (as the build reads its sources), compressed on every core, and written to ``out`` (as
    the build writes its tarball; None: not written, the figure of earlier rounds)."""
    sys.path.insert(0, str(_env.REPO))
    from envpack import archive

    pool = archive._Pool("gzip", archive.default_level("gzip") if level is None else level)
    c0 = time.process_time()
    t0 = time.perf_counter()
    futures = []
    with open(raw, "rb") as fh:
        while block := fh.read(archive.BLOCK):
            futures.append(pool.submit(block))
    if out is None:
        size = sum(len(f.result()) for f in futures)
    else:
        with open(out, "wb") as dst:
            size = sum(dst.write(f.result()) for f in futures)
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    pool.close()
    assert size > 0
    if out is not None:
        out.unlink()
    return dt, cpu


def profile_build(spec_path: Path, tmp: Path) -> str:
    """cProfile of one cold build, in process (compression threads are not profiled)."""
    sys.path.insert(0, str(_env.REPO))
    from envpack.build import build
    from envpack.spec import Spec

    spec = Spec.read(spec_path)
    return _env.profile(lambda: build(spec, tmp / "prof-out"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", action="store_true", help="also print a cProfile of a build")
    ap.add_argument("--level", type=int, help="passed to envpack build --level")
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

    with tempfile.TemporaryDirectory(prefix="envpack-bench-") as tmpdir:
        tmp = Path(tmpdir)
        _env.log("tar czf of the traced lower bound")
        lb_size, lb_time = _trace.tar_lower_bound(run, tmp / "lower-bound.tar.gz")

        spec_path = tmp / "envpack.json"
        _env.log("envpack analyze (to get the Spec)")
        envpack(
            ["analyze", str(work.processor), "-o", str(spec_path), "--python", str(python)],
            tmp / "xdg-analyze",
        )
        accepted = _env.accept_optional_native(spec_path)
        spec = json.loads(spec_path.read_text())

        _env.log(f"envpack build, cold, {PAIRS} times (fresh dirs), each paired with its own")
        _env.log("compressor on the same tar stream, run right after it (this VM's speed drifts")
        _env.log("by 15% between minutes: a ratio of neighbours is stable, one of bests is not)")
        builds = []
        pairs: list[tuple[float, float]] = []
        cpus: list[tuple[float, float]] = []  # (build, compressor) CPU seconds, pair by pair
        level = ["--level", str(args.level)] if args.level else []
        raw: Path | None = None
        for i in range(1, PAIRS + 1):
            out = tmp / f"out{i}"
            c0 = children_cpu()
            dt, stdout = envpack(
                ["build", str(spec_path), "-o", str(out), *level], tmp / f"xdg-build{i}"
            )
            build_cpu = children_cpu() - c0
            builds.append((dt, tarball(out), stdout))
            if raw is None:
                raw = raw_stream(builds[0][1])
            own, own_cpu = own_compressor(raw, args.level, tmp / "own.gz")
            pairs.append((dt, own))
            cpus.append((build_cpu, own_cpu))
        assert raw is not None
        unwritten, _ = own_compressor(raw, args.level, None)
        raw_size = raw.stat().st_size
        raw.unlink()
        _env.log("envpack build, warm (cache hit)")
        warm = min(
            envpack(["build", str(spec_path), "-o", str(tmp / "out1"), *level], tmp / "xdg-build1")[
                0
            ]
            for _ in range(3)
        )

        _env.log("edit one local file, rebuild (three times)")
        edits = edit_rebuilds(spec_path, tmp, tmp / "xdg-build1", level)

        _env.log(f"tar czf of the whole venv ({_env.VENV})")
        venv_tar = tmp / "venv.tar.gz"
        venv_time = _env.tar_czf(_env.VENV, None, venv_tar)
        venv_size = venv_tar.stat().st_size
        venv_bytes = sum(
            (Path(d) / f).stat().st_size
            for d, _, fs in os.walk(_env.VENV)
            for f in fs
            if not (Path(d) / f).is_symlink()
        )
        prof = profile_build(spec_path, tmp) if args.profile else ""

        cold = min(b[0] for b in builds)  # the figures against tar czf: the best build
        env_tar = builds[0][1]
        env_size = env_tar.stat().st_size
        identical = len({sha(b[1]) for b in builds}) == 1
        build_stdout = builds[0][2]

    # Where the bytes go: shipped (Spec) vs traced, per distribution, uncompressed.
    traced = {_canon(d): sum(os.path.getsize(p) for p in fs) for d, fs in run.dists().items()}
    rows = sorted(
        (
            (d["size"] - traced.get(_canon(d["name"]), 0), d["name"], d["size"])
            for d in spec["distributions"]
        ),
        reverse=True,
    )

    print(f"## envpack build: workload {work.name} ({work.processor.name})")
    print(f"machine: {_env.machine()}")
    print(
        f"whole venv: {_env.mb(venv_bytes)} on disk; tar czf {_env.mb(venv_size)} "
        f"in {venv_time:.1f} s"
    )
    print(
        f"traced lower bound: {len(run.lower_bound_files())} files, tar czf {_env.mb(lb_size)} "
        f"in {lb_time:.1f} s"
    )
    print(
        f"envpack build (cold, best of {len(builds)}): {cold:.1f} s "
        f"({', '.join(f'{b[0]:.1f}' for b in builds)}); tarball {env_tar.name}: {_env.mb(env_size)}"
    )
    print(
        f"  = {env_size / lb_size:.2f}x the lower bound, {env_size / venv_size:.2f}x the venv "
        f"tar.gz; time {cold / venv_time:.0%} of tar czf of the venv"
    )
    print(f"envpack build (warm, cache hit, best of 3): {warm:.2f} s")
    print(f"two cold builds byte-identical: {identical}")
    edit = min(edits)
    print(
        f"edit one local file and rebuild (best of {len(edits)}): {edit:.2f} s "
        f"({', '.join(f'{t:.2f}' for t in edits)})"
    )
    ratio = statistics.median_high(b / o for b, o in pairs)
    print(
        f"own compressor on the same {_env.mb(raw_size)} tar stream, file to file, right after "
        f"each cold build: " + ", ".join(f"{b:.1f} s / {o:.1f} s = {b / o:.2f}x" for b, o in pairs)
    )
    print(
        f"cold build = {ratio:.2f}x its own compressor (median of {len(pairs)} pairs); "
        f"the compressor not writing its output: {unwritten:.1f} s "
        f"(best build {cold / unwritten:.2f}x it)"
    )
    # The floor two cores allow: with the compressor keeping every core busy, a build that
    # spends r times its CPU cannot take less than r times its time. CPU time drifts on this
    # VM too (the compressor's by up to 29% between pairs): the ratio is taken pair by pair.
    cores = len(os.sched_getaffinity(0))
    busy = [o / (t * cores) for (_, t), (_, o) in zip(pairs, cpus, strict=True)]
    print(
        "CPU (user + system) of each cold build and its compressor: "
        + ", ".join(f"{b:.1f} s / {o:.1f} s = {b / o:.2f}x" for b, o in cpus)
        + f"; the compressor kept {min(busy):.0%}-{max(busy):.0%} of the cores busy"
    )
    floor = statistics.median_high(b / o for b, o in cpus)
    print(
        f"floor of the cold build on these cores: {floor:.2f}x its "
        "own compressor (median CPU ratio; the build's children, objcopy, lief, find, included)"
    )
    for e in accepted:
        print(f"note: Spec error accepted as optional by the bench: {e}")
    print("largest shipped-but-untraced bytes per distribution (uncompressed):")
    for extra, name, size in rows[:8]:
        print(f"  {name:<20} shipped {_env.mb(size):>10}  not used by the run {_env.mb(extra):>10}")
    tail = [line for line in build_stdout.splitlines() if line.strip()][-3:]
    print("envpack build said (last lines): " + " | ".join(tail))
    print()
    print(
        _env.verdict(
            "tarball <= 1.3x traced lower bound",
            env_size <= 1.3 * lb_size,
            f"{env_size / lb_size:.2f}x ({_env.mb(env_size)} vs {_env.mb(lb_size)})",
        )
    )
    print(
        _env.verdict(
            "build <= 25% of tar czf of the venv",
            cold <= 0.25 * venv_time,
            f"{cold / venv_time:.0%} ({cold:.1f} s vs {venv_time:.1f} s)",
        )
    )
    print(_env.verdict("warm rebuild < 2 s", warm < 2.0, f"{warm:.2f} s"))
    print(_env.verdict("deterministic", identical, "byte-identical" if identical else "differ"))
    print(_env.verdict("edit one local file, rebuild <= 2 s", edit <= 2.0, f"{edit:.2f} s"))
    print(
        _env.verdict(
            "cold build <= 1.1x its own compressor",
            ratio <= 1.1,
            f"{ratio:.2f}x (median of {len(pairs)} pairs)",
        )
    )
    if prof:
        print("\n## cProfile of one build (cumulative)\n" + prof)


if __name__ == "__main__":
    main()
