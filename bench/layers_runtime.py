"""Benchmark the runner's layer store (issue 10, "on the node, each layer once"), in one run.

Two envs of the coffea dimuon processor's Spec (the bench venv), built by the real layered
writer: A without one distribution X, B = A plus X (so they differ in X's layer only). On a
fresh node cache:
  * first env: `envpack-run -n -e A` (head, every layer into the store, assembly, verification)
    vs plain `tar xzf` of the same file (best of N each);
  * second env: B on a cache that holds A (only X's layer is unpacked) vs the first;
  * disk: `du` of the cache holding A and B vs A alone, vs two plain unpacks;
  * the runner's layer debug lines: how many layers each unpack extracted.
Targets: second <= 0.3x first; first <= ~1.2x tar xzf; disk for A+B ~ A + X's layer.

usage: python3 bench/layers_runtime.py [--runs N] [--package NAME]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _env
from envpack import archive, build, layout, runtime
from envpack.collect import collect
from envpack.spec import Spec


def _du(path: Path) -> int:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0]) * 1024


def _runner(env: Path, cache: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    res = subprocess.run(
        ["sh", str(runtime.runner_path()), "-d", "-n", "-e", str(env)],
        env={"PATH": "/usr/bin:/bin", "ENVPACK_CACHE": str(cache)},
        cwd=cache.parent,  # the runner links the env's data files into its cwd, even with -n
        capture_output=True,
        text=True,
    )
    took = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"envpack-run failed on {env}:\n{res.stderr}")
    return took, res.stderr


def _count(stderr: str, word: str) -> int:
    return sum(
        1
        for line in stderr.splitlines()
        if line.startswith("envpack-run: layer ") and line.split()[3] == word
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--package", default="", help="the distribution B adds (default: a mid one)")
    args = ap.parse_args()
    spec_path = _env.CACHE / "env-out-dimuon" / "envpack.json"
    if not spec_path.is_file():
        raise SystemExit(f"{spec_path} is missing: run bench/runtime.py once (it builds it)")
    spec = Spec.from_json(spec_path.read_text())
    work = Path(tempfile.mkdtemp(prefix="envpack-bench-layers-", dir="/var/tmp"))
    try:
        _env.log(f"collecting the dimuon env from {spec_path}")
        with tempfile.TemporaryDirectory(prefix="envpack-stage-") as stage:
            coll = collect(spec, Path(stage), runtime.run_in_env_path())
            try:
                kept, records = archive.digest(coll.entries)
                sizes: dict[str, int] = {}
                for e, r in zip(kept, records, strict=True):
                    sizes[e.group] = sizes.get(e.group, 0) + r.size
                groups = sorted(g for g in sizes if g not in ("python", "stdlib", "local",
                                                              "native", "envpack", ""))  # fmt: skip
                package = args.package or min(
                    groups, key=lambda g: abs(sizes[g] - 2_000_000)
                )  # a package of a couple of MB
                pairs = list(zip(kept, records, strict=True))
                without = [p for p in pairs if p[0].group != package]
                paths: dict[str, Path] = {}
                for name, chosen in (("A", without), ("B", pairs)):
                    out = work / name
                    out.mkdir()
                    final = out / "envpack-tmp.tar.gz"
                    recs = [r for _, r in chosen]
                    build.write_layered(
                        final,
                        [e for e, _ in chosen],
                        recs,
                        spec_json=spec.to_json().encode(),
                        empty_dirs=coll.empty_dirs,
                    )

                    env_hash = layout.manifest_hash(layout.manifest_bytes(recs))
                    paths[name] = final.rename(out / f"envpack-{env_hash}.tar.gz")
            finally:
                coll.close()
        a, b = paths["A"], paths["B"]
        n_layers = len(groups) + 4
        print(f"machine: {_env.machine()}")
        print(
            f"env A: {_env.mb(a.stat().st_size)} compressed, {_env.mb(sum(sizes.values()))}"
            f" of files, ~{n_layers} layers; B = A + {package} ({_env.mb(sizes[package])})"
        )
        tar_t, first_t, second_t = [], [], []
        disk_a = disk_ab = 0
        first_err = second_err = ""
        for i in range(args.runs):
            dest = work / f"tar{i}"
            dest.mkdir()
            t0 = time.perf_counter()
            subprocess.run(["tar", "xzf", str(a), "-C", str(dest)], check=True)
            tar_t.append(time.perf_counter() - t0)
            shutil.rmtree(dest)
            cache = work / f"cache{i}"
            took, first_err = _runner(a, cache)
            first_t.append(took)
            disk_a = _du(cache)
            took, second_err = _runner(b, cache)
            second_t.append(took)
            disk_ab = _du(cache)
            subprocess.run(["chmod", "-R", "u+w", str(cache)], check=True)
            shutil.rmtree(cache)
        plain = work / "plain"
        for env in (a, b):
            (plain / env.name).mkdir(parents=True)
            subprocess.run(["tar", "xzf", str(env), "-C", str(plain / env.name)], check=True)
        disk_plain = _du(plain)
        tar_b, first_b, second_b = min(tar_t), min(first_t), min(second_t)
        print(f"tar xzf A:             {tar_b:6.2f} s  (best of {args.runs})")
        print(
            f"first env (A, empty):  {first_b:6.2f} s  = {first_b / tar_b:.2f}x tar xzf;"
            f" layers unpacked {_count(first_err, 'unpacked')}"
        )
        print(
            f"second env (B, A in):  {second_b:6.2f} s  = {second_b / first_b:.2f}x the first;"
            f" layers unpacked {_count(second_err, 'unpacked')},"
            f" present {_count(second_err, 'present')}"
        )
        print(
            f"disk: A {_env.mb(disk_a)}, A+B {_env.mb(disk_ab)} (+{_env.mb(disk_ab - disk_a)});"
            f" two plain unpacks {_env.mb(disk_plain)}"
        )
        print(
            _env.verdict(
                "second <= 0.3x first", second_b <= 0.3 * first_b, f"{second_b / first_b:.2f}x"
            )
        )
        print(
            _env.verdict("first <= 1.2x tar xzf", first_b <= 1.2 * tar_b, f"{first_b / tar_b:.2f}x")
        )
        for line in first_err.splitlines():
            if "after" in line and "layer " not in line:
                print(f"  first: {line.removeprefix('envpack-run: ')}")
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(work)], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
