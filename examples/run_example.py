"""envpack's main job: two processors, two environments, one local Work Queue worker.

1. makes two venvs (under the cache dir) that differ in one library: PyYAML 6.0.1 for
   processors/zpeak.py, PyYAML 6.0.2 for processors/leadpt.py (both use the local helper
   processors/kinematics.py);
2. writes generated dimuon events as JSON chunks;
3. analyzes each processor against its venv and builds its envpack tarball;
4. starts a Work Queue manager and one local `work_queue_worker` (no cluster needed), and runs
   one task per chunk and processor, both processors' tasks side by side on that worker;
5. prints the result, where each task ran, where the node cache is and how often each
   environment was unpacked there.

Nothing tells the runner where to cache: the worker gets your environment as it is, as a worker
you start by hand would, so the runner uses its default node cache (or $ENVPACK_CACHE if you
set one). That cache outlives the example: a second run finds both environments already in it.

Run it with `./scripts/example.sh` (which sets up .venv first) or `.venv/bin/python
examples/run_example.py [--cache DIR]`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from envpack.analyzer.api import analyze
from envpack.build import build
from envpack.integrations.workqueue import add_input_file, load_binding, runner_for, wrap

HERE = Path(__file__).resolve().parent
PROCESSORS = {  # processor module -> the one requirement its venv differs by
    "zpeak": "PyYAML==6.0.1",
    "leadpt": "PyYAML==6.0.2",
}
UNPACKED = "envpack-run: unpacked "
CACHE_LINE = re.compile(r"^envpack-run: environment \S+ from .*, cache (\S+)$", re.MULTILINE)


def say(msg: str) -> None:
    print(msg, flush=True)


def make_venv(root: Path, requirement: str) -> Path:
    """A venv holding ``requirement`` (reused when it already does)."""
    python = root / "bin" / "python"
    marker = root / ".envpack-example"
    if marker.exists() and marker.read_text() == requirement:
        return python
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    subprocess.run([*pip, "--disable-pip-version-check", requirement], check=True)
    marker.write_text(requirement)
    return python


def _muon(rng: random.Random, pt: float, charge: int) -> dict[str, float]:
    return {
        "pt": round(pt, 3),
        "eta": round(rng.uniform(-2.4, 2.4), 4),
        "phi": round(rng.uniform(-math.pi, math.pi), 4),
        "charge": charge,
    }


def generate_data(directory: Path, chunks: int, events: int, seed: int = 42) -> list[Path]:
    """JSON chunks of two-muon events: ~60% Z -> mu mu (a Breit-Wigner at 91.19 GeV smeared by
    2 GeV), the rest a falling background; written once per (chunks, events, seed)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for c in range(chunks):
        path = directory / f"chunk-{c:03d}.json"
        paths.append(path)
        out = []
        for _ in range(events):
            pt1 = rng.expovariate(1 / 30.0) + 5.0
            mu1 = _muon(rng, pt1, rng.choice((-1, 1)))
            if rng.random() < 0.6:
                gamma = 2.495
                mass = 91.19 + gamma / 2 * math.tan(math.pi * (rng.random() - 0.5))
                mass = max(mass + rng.gauss(0, 2.0), 1.0)
                mu2 = _muon(rng, 0.0, -int(mu1["charge"]))
                denom = math.cosh(mu1["eta"] - mu2["eta"]) - math.cos(mu1["phi"] - mu2["phi"])
                mu2["pt"] = round(mass * mass / (2 * mu1["pt"] * max(denom, 1e-6)), 3)
            else:
                mu2 = _muon(rng, rng.expovariate(1 / 15.0) + 3.0, rng.choice((-1, 1)))
            out.append({"muons": [mu1, mu2]})
        path.write_text(json.dumps(out))
    return paths


def build_envs(cache: Path) -> dict[str, Any]:
    envs = {}
    for name, requirement in PROCESSORS.items():
        t0 = time.monotonic()
        python = make_venv(cache / f"venv-{name}", requirement)
        spec = analyze([HERE / "processors" / f"{name}.py"], python=python)
        if not spec.complete:
            raise SystemExit(f"{name}: analysis found problems:\n" + "\n".join(spec.errors))
        env = build(spec, cache / "dist")
        dists = ", ".join(f"{d.name} {d.version}" for d in spec.distributions)
        say(
            f"  {name:7s} {env.path.name}  {env.size / 1e6:5.1f} MB  [{dists}]"
            f"  ({'cached' if env.cached else 'built'} in {time.monotonic() - t0:.1f} s)"
        )
        envs[name] = env
    return envs


def worker_environment() -> dict[str, str]:
    """The local worker's environment: yours, minus the Python paths of this process."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def node_cache_dir(runner: Path, env: dict[str, str]) -> str | None:
    """Where ``runner`` unpacks on this node with ``env`` (`envpack-run --cache-dir`); None when
    this runner cannot say (older runners have no --cache-dir)."""
    try:
        res = subprocess.run(
            ["sh", str(runner), "--cache-dir"], env=env, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = res.stdout.strip()
    return out if res.returncode == 0 and out and "\n" not in out else None


def start_worker(port: int, workdir: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """One local worker with 2 cores, so a task of each processor can run at once."""
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = ["work_queue_worker", "--workdir", str(workdir), "--cores", "2", "--memory", "2000"]
    cmd += ["--disk", "8000", "--timeout", "300", "--parent-death", "localhost", str(port)]
    log = open(workdir.parent / "worker.log", "wb")  # noqa: SIM115  # lives as long as the worker
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def run_tasks(
    wq: Any, envs: dict[str, Any], chunks: list[Path], cache: Path, worker_env: dict[str, str]
) -> list[dict[str, Any]]:
    queue = wq.WorkQueue(port=0)
    worker = start_worker(queue.port, cache / "node" / "worker", worker_env)
    say(f"  manager on port {queue.port}; a local worker started (pid {worker.pid})")
    submitted: dict[int, tuple[str, str]] = {}
    try:
        for chunk in chunks:  # interleaved, so both environments are in use at the same time
            for name, env in envs.items():
                task = wq.Task(f"python -m {name} {chunk.name} 2>&1")
                add_input_file(task, chunk, chunk.name, cache=False)
                task.specify_cores(1)
                task.specify_memory(200)
                task.specify_disk(200)
                wrap(task, env, debug=True)
                submitted[queue.submit(task)] = (name, chunk.name)
        results: list[dict[str, Any]] = []
        deadline = time.monotonic() + 600
        while len(results) < len(submitted):
            if time.monotonic() > deadline:
                raise SystemExit("tasks did not finish in 10 minutes; see worker.log")
            task = queue.wait(5)
            if task is None:
                continue
            name, chunk_name = submitted[task.id]
            output = task.output or ""
            lines = [ln for ln in output.splitlines() if ln.startswith("{")]
            if task.result != 0 or task.return_status != 0 or not lines:
                raise SystemExit(f"task {task.id} ({name} {chunk_name}) failed:\n{output}")
            report = json.loads(lines[-1])
            report.update(
                id=task.id,
                chunk=chunk_name,
                worker=task.hostname,
                unpacked=sum(ln.startswith(UNPACKED) for ln in output.splitlines()),
                cache=next(iter(CACHE_LINE.findall(output)), None),
            )
            results.append(report)
        return results
    finally:
        del queue
        worker.terminate()
        worker.wait(timeout=30)


def _bar(count: int, top: int, width: int = 40) -> str:
    return "#" * round(width * count / top) if top else ""


def summarize(results: list[dict[str, Any]], envs: dict[str, Any], node_cache: str | None) -> None:
    say("\nWhere each task ran:")
    head = f"  {'task':>4}  {'processor':9s} {'chunk':15s} {'worker':10s} {'PyYAML':7s}"
    say(head + " env (on the node)")
    for r in sorted(results, key=lambda r: r["id"]):
        unpack = "  <- unpacked here" if r["unpacked"] else ""
        say(
            f"  {r['id']:>4}  {r['processor']:9s} {r['chunk']:15s} {r['worker']:10s} "
            f"{r['yaml']:7s} {r['prefix']}{unpack}"
        )

    z = [r for r in results if r["processor"] == "zpeak"]
    counts = [sum(c) for c in zip(*(r["result"]["mass"]["counts"] for r in z), strict=True)]
    h = z[0]["result"]["mass"]
    width = (h["high"] - h["low"]) / h["bins"]
    say(
        f"\nzpeak: {sum(r['result']['selected'] for r in z)} of "
        f"{sum(r['result']['events'] for r in z)} events selected; dimuon mass:"
    )
    for i, c in enumerate(counts):
        say(f"  {h['low'] + i * width:6.1f} GeV {c:6d} {_bar(c, max(counts))}")
    peak = counts.index(max(counts))
    say(f"  peak at {h['low'] + (peak + 0.5) * width:.1f} GeV (the Z is at 91.2)")

    lead = [r for r in results if r["processor"] == "leadpt"]
    for charge in ("+", "-"):
        total = sum(sum(r["result"]["pt"][charge]["counts"]) for r in lead)
        say(f"leadpt: {total} events with a leading mu{charge}")

    say("\nThe node cache (the example sets nothing; the runner chooses):")
    override = os.environ.get("ENVPACK_CACHE")
    how = f"ENVPACK_CACHE={override} in your environment" if override else "envpack-run --cache-dir"
    if node_cache:
        say(f"  {node_cache}  ({how})")
    else:
        say("  this envpack-run cannot say where (no --cache-dir); the tasks' logs do:")
    used = sorted({r["cache"] for r in results if r["cache"]})
    if len(used) == 1 and used[0] != node_cache:
        say(f"  the tasks used {used[0]}")
    elif len(used) > 1:
        say(f"  warning: the tasks used {len(used)} cache dirs, one per task, e.g. {used[0]}")

    say("\nUnpacks per environment on this node (once each, however many tasks; none on a rerun):")
    for name, env in envs.items():
        mine = [r for r in results if r["processor"] == name]
        versions = sorted({r["yaml"] for r in mine})
        unpacks = sum(r["unpacked"] for r in mine)
        how = f"unpacked {unpacks} time(s)" if unpacks else "already in the node cache"
        say(f"  {name:7s} {env.path.name}: {len(mine)} tasks, PyYAML {', '.join(versions)}, {how}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_cache = (
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "envpack-example"
    )
    parser.add_argument("--cache", type=Path, default=default_cache, help="venvs, data, builds")
    parser.add_argument("--chunks", type=int, default=6, help="data chunks (tasks per processor)")
    parser.add_argument("--events", type=int, default=5000, help="events per chunk")
    args = parser.parse_args(argv)
    cache: Path = args.cache.resolve()
    t0 = time.monotonic()

    say(f"envpack example (cache: {cache})")
    say("1. generating data")
    chunks = generate_data(
        cache / "data" / f"{args.chunks}x{args.events}", args.chunks, args.events
    )
    say(f"  {len(chunks)} chunks x {args.events} events in {chunks[0].parent}")
    say("2. analyzing and building one environment per processor")
    envs = build_envs(cache)
    say("3. running on a local Work Queue worker")
    # The worker's workdir and log of an earlier run; the node cache is the runner's, and stays.
    shutil.rmtree(cache / "node", ignore_errors=True)
    worker_env = worker_environment()
    runner = runner_for(next(iter(envs.values())).path)  # what wrap() ships with the tasks
    node_cache = node_cache_dir(runner, worker_env)
    results = run_tasks(load_binding(), envs, chunks, cache, worker_env)
    summarize(results, envs, node_cache)
    say(f"\ndone in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
