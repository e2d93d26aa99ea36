"""The conda backend against a conda-style prefix made here from real files and conda-meta
records (no conda channel is reachable): selection through conda-pack, envpack's layout,
prefix-holding text files reported. Not tested: a real conda-built interpreter and packages
from a channel.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from envpack.analyzer.interpreter import probe
from envpack.build import build
from envpack.conda import conda_env
from envpack.spec import Distribution, Spec

pytest.importorskip("conda_pack")


def conda_prefix(root: Path) -> tuple[Path, Distribution]:
    """prefix/ with one conda package (cached in pkgs/) holding a prefix-embedding text file."""
    prefix = root / "prefix"
    site = prefix / "lib" / "python3.11" / "site-packages"
    (site / "cpkg" / "tests").mkdir(parents=True)
    (site / "cpkg-1.0.dist-info").mkdir()
    files = {
        "lib/python3.11/site-packages/cpkg/__init__.py": "VALUE = 3\n",
        "lib/python3.11/site-packages/cpkg/paths.txt": f"data={prefix}/share/cpkg\n",
        "lib/python3.11/site-packages/cpkg-1.0.dist-info/METADATA": "Name: cpkg\nVersion: 1.0\n",
        "lib/python3.11/site-packages/cpkg/unused.txt": "not in the Spec\n",
        "lib/python3.11/site-packages/cpkg/tests/test_cpkg.py": "def test(): pass\n",
    }
    pkg = root / "pkgs" / "cpkg-1.0-0"
    paths = []
    for rel, text in files.items():
        (prefix / rel).write_text(text)
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text.replace(str(prefix), "/opt/placeholder_prefix"))
        entry: dict[str, object] = {"_path": rel, "path_type": "hardlink"}
        if "paths.txt" in rel:
            entry.update(file_mode="text", prefix_placeholder="/opt/placeholder_prefix")
        paths.append(entry)
    (pkg / "info").mkdir()
    (pkg / "info" / "paths.json").write_text(json.dumps({"paths": paths, "paths_version": 1}))
    (prefix / "conda-meta").mkdir()
    record = {
        "name": "cpkg",
        "version": "1.0",
        "url": "https://example.invalid/cpkg-1.0-0.tar.bz2",
        "files": list(files),
        "link": {"source": str(pkg), "type": 1},
        "extracted_package_dir": str(pkg),
        "package_tarball_full_path": str(pkg) + ".tar.bz2",
    }
    (prefix / "conda-meta" / "cpkg-1.0-0.json").write_text(json.dumps(record))
    dist_files = tuple(sorted(f.split("site-packages/")[1] for f in files if "unused" not in f))
    dist = Distribution(
        name="cpkg",
        version="1.0",
        location=str(site),
        files=dist_files,
        size=0,
        modules=("cpkg",),
        why=("proc", "cpkg"),
    )
    return prefix, dist


def test_conda_env_selects_exactly(tmp_path: Path) -> None:
    prefix, _ = conda_prefix(tmp_path)
    wanted = {"lib/python3.11/site-packages/cpkg/__init__.py"}
    files = conda_env(prefix, wanted)
    targets = {f.target for f in files}  # type: ignore[attr-defined]
    assert targets == wanted | {"conda-meta/cpkg-1.0-0.json"}


def test_build_conda(tmp_path: Path) -> None:
    prefix, dist = conda_prefix(tmp_path)
    interp = replace(probe().interpreter, prefix=str(prefix), conda=True)
    spec = Spec(interpreter=interp, roots=(), distributions=(dist,))
    env = build(spec, tmp_path / "out", level=1)
    assert env.path.name == f"envpack-{env.hash}.tar.gz"
    with tarfile.open(env.path) as tar:
        names = set(tar.getnames())
        record = json.loads(tar.extractfile("conda-meta/cpkg-1.0-0.json").read())  # type: ignore[union-attr]
    assert "lib/python3.11/site-packages/cpkg/__init__.py" in names
    assert "lib/python3.11/site-packages/cpkg/unused.txt" not in names
    assert "bin/python3.11" in names and ".envpack/manifest.json" in names
    assert str(tmp_path / "pkgs") not in json.dumps(record)  # conda-pack stripped local paths
    assert any("cpkg/paths.txt" in w and "build prefix" in w for w in env.warnings)
    again = build(spec, tmp_path / "out", level=1)
    assert again.cached and again.hash == env.hash


def test_build_passes_keep_tests_to_the_conda_backend(tmp_path: Path) -> None:
    prefix, dist = conda_prefix(tmp_path)
    interp = replace(probe().interpreter, prefix=str(prefix), conda=True)
    spec = Spec(interpreter=interp, roots=(), distributions=(dist,))
    test_file = "lib/python3.11/site-packages/cpkg/tests/test_cpkg.py"
    for keep, out in ((False, "dropped"), (True, "kept")):
        env = build(spec, tmp_path / out, level=1, keep_tests=keep, digest_cache=False)
        with tarfile.open(env.path) as tar:
            assert (test_file in tar.getnames()) is keep
