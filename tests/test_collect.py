"""The collector on real files: what it makes of odd inputs, seen in the built tarball."""

from __future__ import annotations

import shutil
import struct
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from envpack.build import build
from envpack.collect import _has_debug, layout
from envpack.spec import Distribution
from tests.test_build import Project, make_project


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
    assert not _has_debug(path)


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
