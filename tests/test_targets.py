"""Every target interpreter the field uses, 3.8 to 3.13, from analyze through build to a run.

For each pyenv CPython on this machine: a small real venv, a processor importing a stdlib
module and a local helper, analyzed and built by envpack (running on its own Python), then run
on a "worker" by envpack-run (the cache in tmp_path). The run must report the target's version
and load the target's own pycs, shipped unchecked-hash (a pyc Python wrote itself on the
worker would be a timestamp one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from envpack.analyzer.api import analyze
from envpack.archive import read_meta
from envpack.build import build
from envpack.layout import MANIFEST, parse_manifest
from envpack.runtime import runner_path

PYENV = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"
VERSIONS = ["3.8.18", "3.9.18", "3.10.13", "3.11.7", "3.12.1", "3.13.0"]

PROC = """\
import importlib.util, json, sys
import helper

with open(json.__cached__, "rb") as fh:
    head = fh.read(16)
print(json.dumps({
    "version": sys.version.split()[0],
    "helper": helper.double(21),
    "pyc_magic_ok": head[:4] == importlib.util.MAGIC_NUMBER,
    "pyc_flags": int.from_bytes(head[4:8], "little"),
    "prefix": sys.prefix,
}))
"""


def _python(version: str) -> Path:
    exe = PYENV / version / "bin" / f"python{version.rsplit('.', 1)[0]}"
    if not exe.is_file():
        pytest.skip(f"no {exe} on this machine")
    return exe


@pytest.mark.parametrize("version", VERSIONS)
def test_analyze_build_run_for_each_target(
    version: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    base = tmp_path_factory.mktemp(f"target-{version}")
    venv = base / "venv"
    subprocess.run([str(_python(version)), "-m", "venv", "--without-pip", str(venv)], check=True)
    proj = base / "proj"
    proj.mkdir()
    (proj / "proc.py").write_text(PROC)
    (proj / "helper.py").write_text("def double(x):\n    return 2 * x\n")

    spec = analyze([proj / "proc.py"], python=venv / "bin" / "python")
    assert spec.complete, spec.errors
    assert spec.interpreter.version == version
    assert {f.arcname for f in spec.local} == {"proc.py", "helper.py"}
    env = build(spec, base / "out", level=1)

    tag = f"cpython-{version.rsplit('.', 1)[0].replace('.', '')}"
    manifest = parse_manifest(dict(read_meta(env.path))[MANIFEST])
    pycs = [r.path for r in manifest if r.path.endswith(".pyc")]
    assert len(pycs) > 300 and all(f".{tag}.pyc" in n for n in pycs), pycs[:3]

    worker = base / "worker"
    worker.mkdir()
    environ = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(worker),
        "ENVPACK_CACHE": str(base / "cache"),
    }
    res = subprocess.run(
        ["sh", str(runner_path()), "-e", str(env.path), "--", "python", "-m", "proc"],
        cwd=worker, env=environ, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["version"] == version
    assert out["helper"] == 42
    assert out["pyc_magic_ok"] and out["pyc_flags"] == 1  # ours, unchecked-hash
    assert out["prefix"].startswith(str(base / "cache"))
    assert sys.version.split()[0] != version or version == "3.11.7"
