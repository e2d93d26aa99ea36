"""The collector on real files: what it makes of odd inputs, seen in the built tarball."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from envpack.analyzer.api import analyze
from envpack.build import build
from envpack.collect import Collector, collect, layout
from envpack.elf import has_debug
from envpack.layout import MANIFEST
from envpack.spec import Distribution
from tests.test_build import Project, make_project
from tests.wheels import build_wheel


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return make_project(tmp_path_factory.mktemp("collectproj"))


# -- truncated ELF files -----------------------------------------------------------------------


def _elf64_header(length: int) -> bytes:
    """The first ``length`` bytes of a little-endian ELF64 header claiming 3 section headers."""
    header = bytearray(64)
    header[:7] = b"\x7fELF\x02\x01\x01"
    struct.pack_into("<Q", header, 0x28, 4096)  # e_shoff
    struct.pack_into("<HHH", header, 0x3A, 64, 3, 2)  # e_shentsize, e_shnum, e_shstrndx
    return bytes(header[:length])


@pytest.mark.parametrize("length", [52, 56, 63])
def test_truncated_elf64_header_is_not_strippable(tmp_path: Path, length: int) -> None:
    path = tmp_path / "trunc.so"
    path.write_bytes(_elf64_header(length))
    assert not has_debug(path)


@pytest.mark.skipif(shutil.which("objcopy") is None, reason="needs binutils' objcopy")
def test_truncated_elf_in_a_distribution_ships_unchanged(project: Project, tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "trunc").mkdir(parents=True)
    (site / "trunc" / "__init__.py").write_text("")
    data = _elf64_header(60)
    (site / "trunc" / "_broken.so").write_bytes(data)
    files = ("trunc/__init__.py", "trunc/_broken.so")
    dist = Distribution(
        name="trunc",
        version="1.0",
        location=str(site),
        files=files,
        size=sum((site / f).stat().st_size for f in files),
        modules=("trunc",),
        why=("proc", "trunc"),
    )
    spec = replace(project.spec, distributions=(*project.spec.distributions, dist))
    env = build(spec, tmp_path / "out", level=1, digest_cache=False)
    site_arc = layout(spec)[2]
    with tarfile.open(env.path) as tar:
        fh = tar.extractfile(f"{site_arc}/trunc/_broken.so")
        assert fh is not None and fh.read() == data


# -- one file listed by two distributions ------------------------------------------------------

PKGUTIL_INIT = b"__path__ = __import__('pkgutil').extend_path(__path__, __name__)\n"


@pytest.fixture(scope="module")
def shared_init_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with two real wheels whose RECORDs both list fxpk/__init__.py (pkgutil-style)."""
    root = tmp_path_factory.mktemp("sharedinit")
    wheels = root / "wheels"
    for part in ("a", "b"):
        build_wheel(
            root / "nothing",
            wheels,
            metadata=f"Metadata-Version: 2.1\nName: fx-pk-{part}\nVersion: 1.0\n",
            extra_files={
                "fxpk/__init__.py": PKGUTIL_INIT,
                f"fxpk/{part}.py": f"PART = {part!r}\n".encode(),
            },
        )
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    subprocess.run(
        [
            *pip,
            "--disable-pip-version-check",
            "--no-index",
            *map(str, sorted(wheels.glob("*.whl"))),
        ],
        check=True,
    )
    return python


def test_a_file_of_two_distributions_ships_once_with_its_pyc(
    shared_init_venv: Path, tmp_path: Path
) -> None:
    proc = tmp_path / "proc.py"
    proc.write_text("import fxpk.a\nimport fxpk.b\nprint(fxpk.a.PART + fxpk.b.PART)\n")
    spec = analyze([proc], python=shared_init_venv)
    assert spec.complete, spec.errors
    assert {"fx-pk-a", "fx-pk-b"} <= {d.name for d in spec.distributions}
    for dist in spec.distributions:
        if dist.name.startswith("fx-pk-"):
            assert "fxpk/__init__.py" in dist.files
    site_arc = layout(spec)[2]
    source = f"{site_arc}/fxpk/__init__.py"
    pyc = f"{site_arc}/fxpk/__pycache__/__init__.{spec.interpreter.cache_tag}.pyc"

    env = build(spec, tmp_path / "out", level=1, digest_cache=False)
    with tarfile.open(env.path) as tar:
        names = [m.name for m in tar.getmembers() if not m.isdir()]
        manifest = json.loads(tar.extractfile(MANIFEST).read())  # type: ignore[union-attr]
    listed = [f["path"] for f in manifest["files"]]
    for arc in (source, pyc):
        assert names.count(arc) == 1, arc
        assert listed.count(arc) == 1, arc
    assert len(listed) == len(set(listed))
    assert env.files == len(names)

    root = tmp_path / "env"
    root.mkdir()
    subprocess.run(["tar", "xzf", str(env.path), "-C", str(root)], check=True)
    run = subprocess.run(
        [str(root / "bin" / "python"), "-I", str(root / "local" / "proc.py")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "ab\n"


# -- pycs of the target ------------------------------------------------------------------------


def test_a_spec_without_the_pyc_format_ships_pycs_only_for_this_python(
    project: Project, tmp_path: Path
) -> None:
    """Specs written before the probe reported cache_tag and pyc_magic still read."""
    from envpack.collect import collect

    interp = project.spec.interpreter
    assert interp.cache_tag and interp.pyc_magic
    old = replace(interp, cache_tag=None, pyc_magic=None)

    def pycs(spec_interp: object) -> list[str]:
        spec = replace(project.spec, interpreter=spec_interp)
        stage = tmp_path / str(len(list(tmp_path.iterdir())))
        return [e.arcname for e in collect(spec, stage).entries if e.arcname.endswith(".pyc")]

    now = pycs(interp)
    assert len(now) > 300 and all(f".{interp.cache_tag}.pyc" in n for n in now)
    assert pycs(old) == now  # its own version: this Python's format is the target's
    other = replace(old, version="3.9.18")
    assert pycs(other) == []  # another version, format unknown: none rather than wrong ones


# -- layers as they are collected --------------------------------------------------------------


def test_groups_yield_each_layer_once_as_it_is_collected(project: Project, tmp_path: Path) -> None:
    """Collector.groups: one list per layer, each yielded once, together what collect() gives;
    a distribution named like a later step's layer ("local") comes out merged, at the end."""
    whole = collect(project.spec, tmp_path / "a")
    whole.close()
    collector = Collector(project.spec, tmp_path / "b")
    groups = list(collector.groups())
    collector.out.close()
    names = [g[0].group for g in groups]
    assert len(names) == len(set(names)) and all(len({e.group for e in g}) == 1 for g in groups)
    assert names[:2] == ["python", "stdlib"] and names[-2:] == ["local", "envpack"]
    assert sorted(e.arcname for g in groups for e in g) == [e.arcname for e in whole.entries]

    dists = tuple(
        replace(d, name="local") if d.name == "PyYAML" else d for d in project.spec.distributions
    )
    clashing = Collector(replace(project.spec, distributions=dists), tmp_path / "c")
    merged = list(clashing.groups())
    clashing.out.close()
    assert [g[0].group for g in merged].count("local") == 1
    local = next(g for g in merged if g[0].group == "local")
    assert merged[-1] is local
    assert any(e.arcname.startswith("local/") for e in local)
    assert any("/yaml/" in e.arcname for e in local)
