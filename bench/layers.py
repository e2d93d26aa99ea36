"""Benchmark layered environments (issue 10): five applications sharing a stack, on one node.

Five real venvs, each the bench venv plus one different small package, each with its own
processor (the workload's processor plus an import of that package). Each app's environment
is analyzed and built with envpack (the piece cache shared, as on one build machine), then the
five apps run one after another on one node with a real `work_queue_worker`, each under its
own manager (independent applications), every task wrapped with `wrap()`:
  * layered: `wrap(task, env)` (the default: each layer a cached input of its own);
  * single: `wrap(task, env, layers=False)` (the one-file tarball, as before layers), on a
    node cache of its own.
  * before: the single file with the runner as it was before the layer store (each
    environment unpacked whole), the baseline.
Printed for each: node disk after one app and after five (du of the node cache, which counts
hard links once), bytes the manager sent for each app, unpack counts (envs and layers, from
the runner's -d log), the first task's time of each app; then the same five apps under ONE
manager (where Work Queue's worker cache lasts: a Work Queue worker drops its cache when its
manager goes, so across managers every layer is sent again; TaskVine's cache="forever" keeps
them). Every figure for each workload (--workload, default all).
Targets: disk for 5 apps <= 1.3x one; apps 2-5 send only their own layers (within a manager);
first task of a 2nd app <= 0.3x the 1st app's.

The node cache is a directory of this run (ENVPACK_CACHE): a benchmark must not touch the
machine's own cache, and the runner's default location is tested elsewhere.

usage: python3 bench/layers.py [--workload dimuon|fit|all ...]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _env

# One small pure-Python package per app, none of them in the bench venv.
EXTRA = ("tabulate", "humanize", "termcolor", "colorama", "more-itertools")
MODULE = {"more-itertools": "more_itertools"}


@dataclass(frozen=True)
class App:
    name: str
    tarball: Path
    build_time: float


def app_venv(base: Path, package: str) -> Path:
    """The bench venv plus ``package``: a copy made once under the bench cache."""
    root = _env.CACHE / "apps" / f"venv-{package}"
    stamp = root / ".envpack-bench-app"
    want = f"{_env._pins_digest()} {package}"
    if stamp.exists() and stamp.read_text() == want:
        return root / "bin" / "python"
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    _env.log(f"making {root} (the bench venv plus {package}; once)")
    subprocess.run(["cp", "-a", str(base.parent.parent), str(root)], check=True)
    for script in (root / "bin").iterdir():  # a copied venv's scripts name the old prefix
        if script.is_file() and not script.is_symlink():
            text = script.read_bytes()
            if text.startswith(b"#!") and str(base.parent.parent).encode() in text:
                script.write_bytes(
                    text.replace(str(base.parent.parent).encode(), str(root).encode())
                )
    pip = [sys.executable, "-m", "pip", "--python", str(root / "bin" / "python")]
    subprocess.run([*pip, "install", "-q", "--disable-pip-version-check", package], check=True)
    stamp.write_text(want)
    return root / "bin" / "python"


def build_app(work: _env.Workload, package: str, python: Path, tmp: Path, xdg: Path) -> App:
    src = tmp / f"app-{package}"  # the bench processors (a copy) plus this app's module
    shutil.copytree(_env.PROCESSORS, src, ignore=shutil.ignore_patterns("__pycache__", "*.ipynb"))
    mod = MODULE.get(package, package)
    proc = src / f"app_{mod}.py"
    proc.write_text(
        f"import {mod}\nimport {work.module}\n\n"
        f"print('app', {package!r}, {mod}.__name__, {work.module}.__name__)\n"
    )
    env = _env.envpack_env()
    env["XDG_CACHE_HOME"] = str(xdg)
    spec = src / "envpack.json"
    cmd = _env.envpack_cmd()
    res = subprocess.run(
        [*cmd, "analyze", str(proc), "-o", str(spec), "--python", str(python)],
        cwd=src, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if not spec.exists():
        sys.stderr.write(res.stdout[-2000:] + res.stderr[-2000:])
        raise SystemExit(f"[bench] envpack analyze of {proc} failed")
    _env.accept_optional_native(spec)
    t0 = time.perf_counter()
    res = _env.run([*cmd, "build", str(spec), "-o", str(tmp / "out")], cwd=src, env=env)
    dt = time.perf_counter() - t0
    return App(package, Path(res.stdout.strip().splitlines()[-1]), dt)


def du(path: Path) -> int:
    if not path.exists():
        return 0
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


@dataclass
class AppRun:
    sent: int
    first: float
    env_unpacks: int
    layer_unpacks: int
    disk: int


class Node:
    """A real work_queue_worker per manager, all sharing one node cache (and one workdir)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache = root / "cache"
        self.workdir = root / "work"
        self.workdir.mkdir(parents=True)

    def worker(self, port: int) -> subprocess.Popen[bytes]:
        env = dict(os.environ, ENVPACK_CACHE=str(self.cache))
        return subprocess.Popen(
            ["work_queue_worker", "--single-shot", "-t", "30", "-s", str(self.workdir),
             "--cores", "1", "--memory", "2000", "--disk", "20000", "localhost", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip


# The runner as it was before the layer store (it reads a layered tarball as one tar stream):
# the baseline for node disk and first-task times.
BEFORE_LAYERS = "70b1c02"


def old_runner(tmp: Path) -> Path:
    out = tmp / "envpack-run-before-layers"
    text = _env.run(
        ["git", "-C", str(_env.REPO), "show", f"{BEFORE_LAYERS}:envpack/runtime/envpack-run"]
    )
    out.write_text(text.stdout)
    out.chmod(0o755)
    return out


def run_apps(
    wq: Any,
    apps: list[App],
    node: Node,
    *,
    layers: bool,
    one_manager: bool,
    runner: Path | None = None,
) -> list[AppRun]:
    from envpack.integrations.workqueue import wrap

    runs: list[AppRun] = []
    q = wq.WorkQueue(port=0) if one_manager else None
    worker = node.worker(q.port) if q is not None else None
    try:
        for app in apps:
            queue = q if q is not None else wq.WorkQueue(port=0)
            w = worker if worker is not None else node.worker(queue.port)
            before = queue.stats.bytes_sent
            t = wq.Task("python -c 'import sys; print(sys.prefix)'")
            wrap(t, app.tarball, debug=True, layers=layers, runner=runner)
            t0 = time.perf_counter()
            queue.submit(t)
            done = None
            while done is None:
                done = queue.wait(5)
                if time.perf_counter() - t0 > 600:
                    raise SystemExit("[bench] a task took over 10 minutes")
            first = time.perf_counter() - t0
            out = done.output or ""
            if done.return_status != 0:
                raise SystemExit(f"[bench] task of {app.name} failed: {out[-2000:]}")
            runs.append(
                AppRun(
                    sent=queue.stats.bytes_sent - before,
                    first=first,
                    env_unpacks=len(re.findall(r"envpack-run: unpacked [0-9a-f]{16}", out)),
                    layer_unpacks=len(re.findall(r"envpack-run: layer [0-9a-f]{16} unpacked", out)),
                    disk=du(node.cache),
                )
            )
            if q is None:
                _free(queue)
                w.wait(timeout=60)
    finally:
        if q is not None:
            _free(q)
        if worker is not None:
            worker.wait(timeout=60)
    return runs


def _free(queue: Any) -> None:
    free = getattr(queue, "_free_queue", None)
    if free is not None:
        free()


def report(label: str, runs: list[AppRun]) -> None:
    print(f"{label}:")
    print("  app  sent        first task  env unpacks  layer unpacks  node disk")
    for i, r in enumerate(runs, 1):
        print(
            f"  {i}    {_env.mb(r.sent):>10}  {r.first:7.2f} s  {r.env_unpacks:>11}  "
            f"{r.layer_unpacks:>13}  {_env.mb(r.disk):>10}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", nargs="*", default=["all"], help="dimuon, fit or all")
    args = ap.parse_args()
    python = _env.ensure_venv()
    for work in _env.workloads(args.workload):
        bench_workload(work, python)
        print()


def bench_workload(work: _env.Workload, python: Path) -> None:
    from envpack.integrations.workqueue import load_binding

    wq = load_binding()
    with tempfile.TemporaryDirectory(prefix="envpack-bench-layers-") as tmpdir:
        tmp = Path(tmpdir)
        xdg = tmp / "xdg"
        apps = []
        for package in EXTRA:
            venv = app_venv(python, package)
            _env.log(f"analyze + build app {package}")
            apps.append(build_app(work, package, venv, tmp, xdg))
        _env.log("five apps, five managers, layered")
        layered = run_apps(wq, apps, Node(tmp / "node-layered"), layers=True, one_manager=False)
        _env.log("five apps, five managers, single file")
        single = run_apps(wq, apps, Node(tmp / "node-single"), layers=False, one_manager=False)
        _env.log(f"five apps, five managers, single file, the runner of {BEFORE_LAYERS}")
        before = run_apps(
            wq, apps, Node(tmp / "node-before"), layers=False, one_manager=False,
            runner=old_runner(tmp),
        )  # fmt: skip
        _env.log("five apps, one manager, layered")
        shared = run_apps(wq, apps, Node(tmp / "node-one"), layers=True, one_manager=True)
        _env.log("five apps, one manager, single file")
        shared1 = run_apps(wq, apps, Node(tmp / "node-one1"), layers=False, one_manager=True)
        sizes = [a.tarball.stat().st_size for a in apps]

    print(f"## layered environments: workload {work.name} + one package each ({', '.join(EXTRA)})")
    print(f"machine: {_env.machine()}")
    print(
        "builds (piece cache shared): "
        + ", ".join(f"{a.name} {a.build_time:.1f} s" for a in apps)
        + f"; tarballs {', '.join(_env.mb(s) for s in sizes)}"
    )
    report("five managers, layered (wrap default)", layered)
    report("five managers, single file (layers=False)", single)
    report(f"five managers, single file, runner without a layer store ({BEFORE_LAYERS})", before)
    report("one manager, layered", shared)
    report("one manager, single file", shared1)
    disk_ratio = layered[-1].disk / layered[0].disk
    before_ratio = before[-1].disk / before[0].disk
    second = sum(r.first for r in layered[1:]) / 4
    first_ratio = second / layered[0].first
    sent_later = sum(r.sent for r in shared[1:])
    sent_later1 = sum(r.sent for r in shared1[1:])
    print()
    print(
        _env.verdict(
            "node disk for 5 apps <= 1.3x one",
            disk_ratio <= 1.3,
            f"{disk_ratio:.2f}x ({_env.mb(layered[-1].disk)}); without the layer store "
            f"{before_ratio:.2f}x ({_env.mb(before[-1].disk)})",
        )
    )
    print(
        _env.verdict(
            "apps 2-5 send only their own layers (one manager)",
            sent_later < 0.2 * sent_later1,
            f"{_env.mb(sent_later)} layered vs {_env.mb(sent_later1)} single file; across "
            f"managers {_env.mb(sum(r.sent for r in layered[1:]))} (Work Queue drops its cache)",
        )
    )
    print(
        _env.verdict(
            "first task of apps 2-5 <= 0.3x the 1st app's",
            first_ratio <= 0.3,
            f"{first_ratio:.2f}x ({second:.2f} s mean vs {layered[0].first:.2f} s); without the "
            f"layer store {sum(r.first for r in before[1:]) / 4 / before[0].first:.2f}x "
            f"({sum(r.first for r in before[1:]) / 4:.2f} s vs {before[0].first:.2f} s)",
        )
    )


if __name__ == "__main__":
    main()
