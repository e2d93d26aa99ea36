"""envpack.elf, the one ELF reader, on real gcc-built files and deliberately broken copies.

pyelftools is the oracle for what a correct reader sees; every broken input must raise
NotElfError naming the file (never a raw struct.error), or, for the lenient helpers, be "no".
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile as PyElfFile

from envpack.analyzer.interpreter import probe
from envpack.elf import ElfFile, NotElfError, has_debug, is_elf, read_elf, read_header
from envpack.errors import EnvpackError
from tests.analyzer.ccompile import compile_c, needs_gcc

pytestmark = needs_gcc


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("elf")
    bar = compile_c("bar.c", base / "libepbar.so")
    return {
        "plain": bar,
        "debug": compile_c("foo.c", base / "libdbg.so", link=[bar], extra=["-g"]),
        "exe": compile_c("main.c", base / "main", executable=True, extra=["-g"]),
        "m32": _m32(base),
    }


def _m32(base: Path) -> Path:
    """A 32-bit library when gcc can make one (multilib), else the 64-bit one again."""
    try:
        return compile_c("bar.c", base / "m32" / "libepbar.so", extra=["-m32"])
    except AssertionError:
        return base / "libepbar.so"


def _elf64_header(length: int) -> bytes:
    """The first ``length`` bytes of a little-endian ELF64 header claiming 3 section headers."""
    header = bytearray(64)
    header[:7] = b"\x7fELF\x02\x01\x01"
    struct.pack_into("<Q", header, 0x28, 4096)  # e_shoff
    struct.pack_into("<HHH", header, 0x3A, 64, 3, 2)  # e_shentsize, e_shnum, e_shstrndx
    return bytes(header[:length])


def _real_files(built: dict[str, Path]) -> list[Path]:
    dynload = Path(probe().interpreter.dynload)
    return [*built.values(), Path(os.path.realpath(sys.executable)), *sorted(dynload.glob("*.so"))]


def test_header_matches_pyelftools(built: dict[str, Path]) -> None:
    for path in _real_files(built):
        header = read_header(path)
        with open(path, "rb") as fh:
            oracle = PyElfFile(fh)
            assert header.elfclass == oracle.elfclass, path
            assert header.little_endian == oracle.little_endian, path
            assert header.machine == oracle["e_machine"], path
            assert (header.shnum, header.phnum) == (oracle["e_shnum"], oracle["e_phnum"]), path
        assert header.ident == (header.elfclass, header.machine, header.little_endian)


def test_section_names_match_pyelftools(built: dict[str, Path]) -> None:
    for path in _real_files(built):
        with ElfFile.open(path) as elf:
            names = elf.section_names()
            debug = elf.has_debug()
        with open(path, "rb") as fh:
            expected = [s.name for s in PyElfFile(fh).iter_sections()]
        assert names == expected, path
        assert debug == any(n.startswith((".debug_", ".zdebug_")) for n in expected), path


def test_has_debug_tells_gcc_g_from_plain(built: dict[str, Path], tmp_path: Path) -> None:
    assert has_debug(built["debug"]) and has_debug(built["exe"])
    assert not has_debug(built["plain"])
    text = tmp_path / "text.so"
    text.write_text("not an ELF file at all, but long enough " * 4)
    for path in (text, tmp_path / "absent", tmp_path):
        assert not has_debug(path)


@pytest.mark.parametrize("length", [0, 3, 4, 15, 16, 20, 51, 52, 56, 63])
def test_a_truncated_header_is_notelferror(tmp_path: Path, length: int) -> None:
    # 52-63 bytes with 64-bit magic was a raw struct.error in the old collect._has_debug.
    path = tmp_path / "trunc.so"
    path.write_bytes(_elf64_header(length))
    with pytest.raises(NotElfError) as excinfo:
        read_header(path)
    assert str(path) in str(excinfo.value)
    assert isinstance(excinfo.value, EnvpackError)
    assert not is_elf(path)
    assert not has_debug(path)
    if length >= 4:
        with pytest.raises(NotElfError), ElfFile.open(path) as elf:
            elf.section_names()


def test_a_whole_header_with_its_tables_missing_is_notelferror(tmp_path: Path) -> None:
    path = tmp_path / "headonly.so"
    path.write_bytes(_elf64_header(64))
    assert is_elf(path)  # the header itself is whole
    with ElfFile.open(path) as elf:
        assert elf.header.shnum == 3
        with pytest.raises(NotElfError, match="past the end"):
            elf.section_names()
        with pytest.raises(NotElfError):
            elf.info()
    assert not has_debug(path)


def test_bad_magic_class_and_encoding(built: dict[str, Path], tmp_path: Path) -> None:
    data = built["plain"].read_bytes()
    cases = {
        "magic": b"\x7fELG" + data[4:],
        "class": data[:4] + b"\x07" + data[5:],
        "encoding": data[:5] + b"\x00" + data[6:],
    }
    for name, bad in cases.items():
        path = tmp_path / f"{name}.so"
        path.write_bytes(bad)
        with pytest.raises(NotElfError) as excinfo:
            read_header(path)
        assert str(path) in str(excinfo.value), name
        assert not is_elf(path)


def test_every_prefix_is_notelferror_or_reads(built: dict[str, Path], tmp_path: Path) -> None:
    data = built["debug"].read_bytes()
    target = tmp_path / "cut.so"
    full = None
    with ElfFile.open(built["debug"]) as elf:
        full = elf.section_names()
    for length in [*range(0, 80, 5), *range(80, len(data), 211)]:
        target.write_bytes(data[:length])
        try:
            with ElfFile.open(target) as elf:
                names = elf.section_names()
        except NotElfError:
            continue
        assert names == full  # only a cut past every table may read at all


def test_corrupt_section_table_is_notelferror(built: dict[str, Path], tmp_path: Path) -> None:
    data = bytearray(built["debug"].read_bytes())
    header = read_header(built["debug"])
    struct.pack_into("<H", data, 0x3E, header.shnum + 5)  # e_shstrndx past the table
    path = tmp_path / "strndx.so"
    path.write_bytes(bytes(data))
    with pytest.raises(NotElfError, match="out of range"), ElfFile.open(path) as elf:
        elf.section_names()
    assert not has_debug(path)
    assert read_elf(path).needed == read_elf(built["debug"]).needed  # ld.so's view is intact


def test_32_bit_files_read_too(built: dict[str, Path]) -> None:
    path = built["m32"]
    if read_header(path).elfclass != 32:
        pytest.skip("gcc here cannot build 32-bit code (no multilib)")
    with ElfFile.open(path) as elf, open(path, "rb") as fh:
        assert elf.section_names() == [s.name for s in PyElfFile(fh).iter_sections()]
        assert elf.info().machine == "EM_386"


def test_run_path_prefers_runpath(tmp_path: Path) -> None:
    bar = compile_c("bar.c", tmp_path / "lib" / "libepbar.so")
    with_rpath = compile_c("ext.c", tmp_path / "r.so", link=[bar], rpath=["$ORIGIN/lib"])
    with_runpath = compile_c("ext.c", tmp_path / "u.so", link=[bar], runpath=["/x", "$ORIGIN"])
    assert read_elf(with_rpath).run_path == ("$ORIGIN/lib",)
    assert read_elf(with_runpath).run_path == ("/x", "$ORIGIN")
    assert read_elf(bar).run_path == ()


def _pyelftools_slot(path: Path) -> tuple[int, int] | None:
    """pyelftools' view of a file's one run path: (file offset of the string, its length)."""
    with open(path, "rb") as fh:
        pe = PyElfFile(fh)
        dynamic = pe.get_section_by_name(".dynamic")
        dynstr = pe.get_section_by_name(".dynstr")
        if dynamic is None or dynstr is None:
            return None
        tags = [t for t in dynamic.iter_tags() if t.entry.d_tag in ("DT_RPATH", "DT_RUNPATH")]
        if len(tags) != 1:
            return None
        value = tags[0].rpath if tags[0].entry.d_tag == "DT_RPATH" else tags[0].runpath
        return dynstr["sh_offset"] + tags[0].entry.d_val, len(value.encode())


def test_run_path_slot_is_where_pyelftools_finds_the_string(
    built: dict[str, Path], tmp_path: Path
) -> None:
    bar = compile_c("bar.c", tmp_path / "lib" / "libepbar.so")
    files = [
        compile_c("ext.c", tmp_path / "r.so", link=[bar], rpath=["/build/machine/lib"]),
        compile_c("ext.c", tmp_path / "u.so", link=[bar], runpath=["/x", "$ORIGIN"]),
        *_real_files(built),
    ]
    found = 0
    for path in files:
        with ElfFile.open(path) as elf:
            slot = elf.run_path_slot()
        if slot is None:
            continue
        found += 1
        assert (slot.string, slot.room) == _pyelftools_slot(path), path
    assert found >= 2


def test_a_run_path_sharing_bytes_with_a_symbol_has_no_slot(tmp_path: Path) -> None:
    """GNU ld stores the symbol ``foo`` (ext.c's import) in the tail of the run path
    ``…/opt/foo``."""
    bar = compile_c("bar.c", tmp_path / "lib" / "libepbar.so")
    foo = compile_c("foo.c", tmp_path / "lib" / "libfoo.so", link=[bar])
    ext = compile_c("ext.c", tmp_path / "ext.so", link=[foo], rpath=["/build/lib:/opt/foo"])
    start, length = _pyelftools_slot(ext) or (0, 0)
    with open(ext, "rb") as fh:
        pe = PyElfFile(fh)
        dynstr = pe.get_section_by_name(".dynstr")["sh_offset"]
        names = {
            s.name: dynstr + s.entry.st_name
            for s in pe.get_section_by_name(".dynsym").iter_symbols()
        }
    assert start < names["foo"] < start + length  # the linker did merge them: the case is real
    with ElfFile.open(ext) as elf:
        assert elf.run_path_slot() is None


def test_a_run_path_sharing_bytes_with_a_version_name_has_no_slot(tmp_path: Path) -> None:
    script = tmp_path / "vers.map"
    script.write_text("EPBAR_1 { global: *; };\n")
    lib = compile_c(
        "bar.c",
        tmp_path / "libv.so",
        rpath=["/opt/EPBAR_1"],
        extra=[f"-Wl,--version-script={script}"],
    )
    with ElfFile.open(lib) as elf:
        assert elf.run_path_slot() is None
    plain = compile_c("bar.c", tmp_path / "libp.so", rpath=["/opt/EPBAR_1"])
    with ElfFile.open(plain) as elf:
        assert elf.run_path_slot() is not None  # the version name alone made the difference
