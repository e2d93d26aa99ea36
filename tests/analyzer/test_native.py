"""Native library analysis against real gcc-built ELF files, laid out the way ld.so sees them."""

from __future__ import annotations

import os
import pickle
import platform
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection

from envpack.analyzer.interpreter import probe
from envpack.analyzer.native import (
    ElfInfo,
    NativeReport,
    NotElfError,
    analyze_native,
    glibc_key,
    iter_elf_files,
    ld_so_conf_dirs,
    max_glibc,
    read_elf,
)
from envpack.errors import EnvpackError
from envpack.spec import NativeLib
from tests.analyzer.ccompile import compile_c, needs_gcc, patch_byte

pytestmark = needs_gcc

E_MACHINE = 18  # offset of e_machine in the ELF header (both classes)
EM_AARCH64 = (183).to_bytes(2, "little")
EM_X86_64 = (62).to_bytes(2, "little")


def lib(report: NativeReport, soname: str) -> NativeLib:
    found = [entry for entry in report.libs if entry.soname == soname]
    assert found, f"{soname} not in {[e.soname for e in report.libs]}"
    return found[0]


def sonames(report: NativeReport) -> set[str]:
    return {entry.soname for entry in report.libs}


@dataclass(frozen=True)
class Chain:
    """ext.so -> libepfoo.so (ext's RUNPATH $ORIGIN/../lib) -> libepbar.so (foo's RUNPATH)."""

    ext: Path
    foo: Path
    bar: Path


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    base = tmp_path_factory.mktemp("chain")
    bar = compile_c("bar.c", base / "barlib" / "libepbar.so")
    foo = compile_c(
        "foo.c",
        base / "lib" / "libepfoo.so",
        link=["epbar"],
        libdirs=[bar.parent],
        runpath=["$ORIGIN/../barlib"],
    )
    ext = compile_c(
        "ext.c",
        base / "pkg" / "ext.so",
        link=["epfoo"],
        libdirs=[foo.parent, bar.parent],
        runpath=["$ORIGIN/../lib"],
    )
    return Chain(ext=ext, foo=foo, bar=bar)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    """libepfoo without any search path of its own, next to libepbar in one dir."""
    base = tmp_path_factory.mktemp("plain")
    bar = compile_c("bar.c", base / "lib" / "libepbar.so")
    foo = compile_c("foo.c", base / "lib" / "libepfoo.so", link=["epbar"], libdirs=[bar.parent])
    return Chain(ext=Path("/nonexistent"), foo=foo, bar=bar)


# --- resolution ------------------------------------------------------------------------------


def test_runpath_origin_resolves_private_lib_and_follows_it(chain: Chain) -> None:
    report = analyze_native([chain.ext])

    foo = lib(report, "libepfoo.so")
    assert (foo.path, foo.kind, foo.needed_by) == (str(chain.foo), "bundle", (str(chain.ext),))
    bar = lib(report, "libepbar.so")  # found through libfoo's own RUNPATH, transitively
    assert (bar.path, bar.kind, bar.needed_by) == (str(chain.bar), "bundle", (str(chain.foo),))
    libc = lib(report, "libc.so.6")
    assert libc.kind == "system"
    assert set(libc.needed_by) == {str(chain.ext), str(chain.foo), str(chain.bar)}
    assert report.errors == ()
    assert report.warnings == ()
    assert [e.path for e in report.elves] == sorted(map(str, (chain.ext, chain.foo, chain.bar)))
    assert [e.soname for e in report.libs] == sorted(e.soname for e in report.libs)


def test_rpath_is_inherited_by_dependencies_runpath_is_not(plain: Chain, tmp_path: Path) -> None:
    libdir = plain.foo.parent
    with_rpath = compile_c(
        "ext.c", tmp_path / "r" / "ext.so", link=["epfoo"], libdirs=[libdir], rpath=[libdir]
    )
    with_runpath = compile_c(
        "ext.c", tmp_path / "u" / "ext.so", link=["epfoo"], libdirs=[libdir], runpath=[libdir]
    )
    assert read_elf(with_rpath).rpath == (str(libdir),)
    assert read_elf(with_runpath).runpath == (str(libdir),)

    inherited = analyze_native([with_rpath])
    assert lib(inherited, "libepbar.so").path == str(plain.bar)  # via ext's DT_RPATH
    assert inherited.errors == ()

    not_inherited = analyze_native([with_runpath])
    assert lib(not_inherited, "libepfoo.so").path == str(plain.foo)
    bar = lib(not_inherited, "libepbar.so")
    assert (bar.path, bar.kind) == (None, "missing")
    assert not_inherited.errors == (f"libepbar.so: not found, needed by {plain.foo}",)


def test_inherited_rpath_is_ignored_by_a_dependency_with_runpath(
    plain: Chain, tmp_path: Path
) -> None:
    libdir = tmp_path / "lib"
    libdir.mkdir()
    shutil.copy(plain.bar, libdir / "libepbar.so")
    (tmp_path / "empty").mkdir()
    compile_c("foo.c", libdir / "libepfoo.so", link=[plain.bar], runpath=[tmp_path / "empty"])
    ext = compile_c("ext.c", tmp_path / "pkg" / "ext.so", link=[plain.foo], rpath=[libdir])

    report = analyze_native([ext])
    assert lib(report, "libepfoo.so").path == str(libdir / "libepfoo.so")  # via ext's RPATH
    # libepfoo has a DT_RUNPATH, so ld.so does not search the RPATH of the chain that loaded it.
    assert lib(report, "libepbar.so").kind == "missing"


def test_main_program_rpath_applies_to_what_it_loads(plain: Chain, tmp_path: Path) -> None:
    # python dlopens extensions: the main program's DT_RPATH is searched for their needs too.
    ext = compile_c("ext.c", tmp_path / "pkg" / "ext.so", link=[plain.foo])
    main = compile_c("main.c", tmp_path / "bin" / "prog", executable=True, rpath=[plain.foo.parent])
    assert read_elf(main).interpreter is not None

    alone = analyze_native([ext])
    assert lib(alone, "libepfoo.so").kind == "missing"
    with_main = analyze_native([ext, main])
    assert lib(with_main, "libepfoo.so").path == str(plain.foo)
    assert lib(with_main, "libepbar.so").path == str(plain.bar)
    assert with_main.errors == ()


def test_missing_library_is_an_error_naming_the_needing_file(tmp_path: Path) -> None:
    stub = compile_c("bar.c", tmp_path / "stub" / "libepgone.so")
    ext = compile_c("ext.c", tmp_path / "pkg" / "ext.so", link=["epgone"], libdirs=[stub.parent])
    stub.unlink()

    report = analyze_native([ext])
    gone = lib(report, "libepgone.so")
    assert (gone.path, gone.kind, gone.needed_by) == (None, "missing", (str(ext),))
    assert report.errors == (f"libepgone.so: not found, needed by {ext}",)


def test_needed_name_with_a_slash_is_a_path(tmp_path: Path) -> None:
    # Linking a library without DT_SONAME by path records that path as DT_NEEDED.
    built = compile_c("bar.c", tmp_path / "lib" / "libepnosoname.so", soname="")
    assert read_elf(built).soname is None
    ext = compile_c("ext.c", tmp_path / "pkg" / "ext.so", link=[built])
    assert str(built) in read_elf(ext).needed

    report = analyze_native([ext])
    assert lib(report, str(built)).path == str(built)
    assert lib(report, str(built)).kind == "bundle"
    built.unlink()
    assert lib(analyze_native([ext]), str(built)).kind == "missing"


def test_dst_origin_and_platform(plain: Chain, tmp_path: Path) -> None:
    machine = platform.machine()
    plat = {"amd64": "x86_64", "i386": "i686", "arm64": "aarch64"}.get(machine, machine)
    (tmp_path / "pkg" / plat).mkdir(parents=True)
    shutil.copy(plain.bar, tmp_path / "pkg" / plat / "libepbar.so")
    ext = compile_c(
        "ext.c", tmp_path / "pkg" / "ext.so", link=[plain.bar], runpath=["${ORIGIN}/$PLATFORM"]
    )
    assert read_elf(ext).runpath == ("${ORIGIN}/$PLATFORM",)
    report = analyze_native([ext])
    assert lib(report, "libepbar.so").path == str(tmp_path / "pkg" / plat / "libepbar.so")


def test_dst_lib_follows_the_roots_layout(plain: Chain, tmp_path: Path) -> None:
    triplet = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}.get(platform.machine())
    if triplet is None:
        pytest.skip(f"no multiarch triplet known for {platform.machine()}")
    ext = compile_c(
        "ext.c", tmp_path / "pkg" / "ext.so", link=[plain.bar], runpath=["$ORIGIN/$LIB"]
    )
    multiarch = tmp_path / "pkg" / "lib" / triplet / "libepbar.so"
    lib64 = tmp_path / "pkg" / "lib64" / "libepbar.so"
    for target in (multiarch, lib64):
        target.parent.mkdir(parents=True)
        shutil.copy(plain.bar, target)

    debian = tmp_path / "debian"
    (debian / "usr" / "lib" / triplet).mkdir(parents=True)
    redhat = tmp_path / "redhat"
    (redhat / "usr" / "lib64").mkdir(parents=True)
    assert lib(analyze_native([ext], root=str(debian)), "libepbar.so").path == str(multiarch)
    assert lib(analyze_native([ext], root=str(redhat)), "libepbar.so").path == str(lib64)


def test_ld_library_path_is_a_parameter_and_ordered_before_runpath(
    plain: Chain, tmp_path: Path
) -> None:
    runpath_dir = tmp_path / "runpath"
    llp_dir = tmp_path / "llp"
    for d in (runpath_dir, llp_dir):
        d.mkdir()
        shutil.copy(plain.bar, d / "libepbar.so")
    only_llp = compile_c("ext.c", tmp_path / "a" / "ext.so", link=[plain.bar])
    with_runpath = compile_c(
        "ext.c", tmp_path / "b" / "ext.so", link=[plain.bar], runpath=[runpath_dir]
    )
    with_rpath = compile_c(
        "ext.c", tmp_path / "c" / "ext.so", link=[plain.bar], rpath=[runpath_dir]
    )

    # The caller's environment never leaks in: LD_LIBRARY_PATH only when passed.
    assert lib(analyze_native([only_llp]), "libepbar.so").kind == "missing"
    found = analyze_native([only_llp], ld_library_path=[str(llp_dir)])
    assert lib(found, "libepbar.so").path == str(llp_dir / "libepbar.so")
    # ld.so order: DT_RPATH, LD_LIBRARY_PATH, DT_RUNPATH.
    report = analyze_native([with_runpath], ld_library_path=[str(llp_dir)])
    assert lib(report, "libepbar.so").path == str(llp_dir / "libepbar.so")
    report = analyze_native([with_rpath], ld_library_path=[str(llp_dir)])
    assert lib(report, "libepbar.so").path == str(runpath_dir / "libepbar.so")


def test_foreign_machine_and_class_candidates_are_skipped(plain: Chain, tmp_path: Path) -> None:
    arm_dir, class32_dir, good_dir = tmp_path / "arm", tmp_path / "c32", tmp_path / "good"
    patch_byte(plain.bar, arm_dir / "libepbar.so", E_MACHINE, EM_AARCH64)
    patch_byte(plain.bar, class32_dir / "libepbar.so", 4, b"\x01")  # EI_CLASS = ELFCLASS32
    good_dir.mkdir()
    shutil.copy(plain.bar, good_dir / "libepbar.so")
    ext = compile_c(
        "ext.c",
        tmp_path / "pkg" / "ext.so",
        link=[plain.bar],
        runpath=[arm_dir, class32_dir, good_dir],
    )
    report = analyze_native([ext])
    assert lib(report, "libepbar.so").path == str(good_dir / "libepbar.so")

    (good_dir / "libepbar.so").unlink()
    report = analyze_native([ext])
    assert lib(report, "libepbar.so").kind == "missing"


def test_foreign_machine_input_is_skipped_with_a_warning(plain: Chain, tmp_path: Path) -> None:
    arm = patch_byte(plain.bar, tmp_path / "arm.so", E_MACHINE, EM_AARCH64)
    assert read_elf(arm).machine == "EM_AARCH64"
    report = analyze_native([arm, plain.bar])
    assert len(report.warnings) == 1
    assert str(arm) in report.warnings[0]
    assert "EM_AARCH64" in report.warnings[0]
    assert [e.path for e in report.elves] == [str(plain.bar)]
    # Analyzing for that machine instead accepts it (and skips ours).
    report = analyze_native([arm, plain.bar], machine="aarch64")
    assert [e.path for e in report.elves] == [str(arm)]


def test_ld_so_conf_with_include_globs_under_a_fake_root(plain: Chain, tmp_path: Path) -> None:
    root = tmp_path / "root"
    etc = root / "etc"
    (etc / "ld.so.conf.d" / "extra").mkdir(parents=True)
    (etc / "ld.so.conf").write_text(
        "include /etc/ld.so.conf.d/*.conf\n# a comment\n/opt/last/ # trailing\nhwcap 0 nosegneg\n"
    )
    (etc / "ld.so.conf.d" / "b.conf").write_text("/opt/blib\ninclude extra/*.conf\n")
    (etc / "ld.so.conf.d" / "a.conf").write_text("/opt/alib\ninclude /etc/ld.so.conf\n")
    (etc / "ld.so.conf.d" / "extra" / "c.conf").write_text("/opt/clib\n")
    (etc / "ld.so.conf.d" / "ignored.txt").write_text("/opt/never\n")

    dirs = ld_so_conf_dirs(str(root))
    assert dirs == tuple(str(root / "opt" / d) for d in ("alib", "blib", "clib", "last"))

    (root / "opt" / "clib").mkdir(parents=True)
    shutil.copy(plain.bar, root / "opt" / "clib" / "libepbar.so")
    ext = compile_c("ext.c", tmp_path / "pkg" / "ext.so", link=[plain.bar])
    report = analyze_native([ext], root=str(root))
    assert lib(report, "libepbar.so").path == str(root / "opt" / "clib" / "libepbar.so")
    # Nothing of the real machine is used under a fake root: libc is not there.
    libc = lib(report, "libc.so.6")
    assert (libc.path, libc.kind) == (None, "system")
    # The real root knows nothing of /opt/clib.
    assert lib(analyze_native([ext]), "libepbar.so").kind == "missing"


def test_default_dirs_and_nodeflib(plain: Chain, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr" / "lib").mkdir(parents=True)
    shutil.copy(plain.bar, root / "usr" / "lib" / "libepbar.so")
    ext = compile_c("ext.c", tmp_path / "a" / "ext.so", link=[plain.bar])
    nodeflib = compile_c(
        "ext.c", tmp_path / "b" / "ext.so", link=[plain.bar], extra=["-Wl,-z,nodefaultlib"]
    )
    assert read_elf(nodeflib).nodeflib and not read_elf(ext).nodeflib

    report = analyze_native([ext], root=str(root))
    assert lib(report, "libepbar.so").path == str(root / "usr" / "lib" / "libepbar.so")
    assert lib(analyze_native([nodeflib], root=str(root)), "libepbar.so").kind == "missing"


@pytest.mark.parametrize("rpath", [False, True], ids=["runpath", "rpath"])
def test_dependency_cycle_terminates(tmp_path: Path, rpath: bool) -> None:
    # liba (in a/) needs libb (in b/) and back; with DT_RPATH each hop inherits the other's dir.
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"

    def build(src: str, out: Path, link: str, sibling: Path) -> Path:
        paths: list[str | Path] = [f"$ORIGIN/../{sibling.name}"]
        return compile_c(
            src,
            out,
            link=[link],
            libdirs=[sibling],
            rpath=paths if rpath else (),
            runpath=() if rpath else paths,
        )

    compile_c("bar.c", b_dir / "libepcb.so")
    a = build("foo.c", a_dir / "libepca.so", "epcb", b_dir)
    b = build("bar.c", b_dir / "libepcb.so", "epca", a_dir)
    report = analyze_native([a])
    assert lib(report, "libepcb.so").needed_by == (str(a),)
    assert lib(report, "libepca.so").needed_by == (str(b),)
    assert report.errors == ()


# --- classification --------------------------------------------------------------------------


def test_shipped_library_is_distribution_and_still_followed(chain: Chain) -> None:
    report = analyze_native([chain.ext], shipped=frozenset({os.path.realpath(chain.foo)}))
    assert lib(report, "libepfoo.so").kind == "distribution"
    assert lib(report, "libepbar.so").kind == "bundle"  # its needs are followed


def test_system_libraries_are_never_followed(chain: Chain) -> None:
    report = analyze_native([chain.ext])
    libc = lib(report, "libc.so.6")
    assert libc.kind == "system"
    assert libc.path is not None
    # libc needs the dynamic loader; following libc would have listed it.
    assert not any(name.startswith("ld-linux") for name in sonames(report))
    assert libc.path not in {e.path for e in report.elves}
    assert {e.kind for e in report.libs} == {"system", "bundle"}


def test_same_soname_in_two_distributions_is_not_a_conflict(plain: Chain, tmp_path: Path) -> None:
    a_libs, b_libs = tmp_path / "a.libs", tmp_path / "b.libs"
    for d in (a_libs, b_libs):
        d.mkdir()
        shutil.copy(plain.bar, d / "libepbar.so")
    ext_a = compile_c("ext.c", tmp_path / "a" / "ext.so", link=[plain.bar], runpath=[a_libs])
    ext_b = compile_c("ext.c", tmp_path / "b" / "ext.so", link=[plain.bar], runpath=[b_libs])
    shipped = frozenset(str(d / "libepbar.so") for d in (a_libs, b_libs))
    report = analyze_native([ext_a, ext_b], shipped=shipped)
    assert report.warnings == ()
    assert lib(report, "libepbar.so").kind == "distribution"
    assert {e.path for e in report.elves} >= shipped  # both copies are analyzed
    # Not shipped: the builder can bundle only one file per soname, so that is a warning.
    report = analyze_native([ext_a, ext_b])
    assert len(report.warnings) == 1
    assert "libepbar.so resolves to both" in report.warnings[0]


# --- glibc -----------------------------------------------------------------------------------


def test_glibc_floor_is_compared_numerically(tmp_path: Path) -> None:
    old = compile_c("uses_pipe2.c", tmp_path / "libeppipe.so")
    new = compile_c("uses_getrandom.c", tmp_path / "libeprandom.so")
    assert "2.9" in read_elf(old).glibc
    assert "2.25" in read_elf(new).glibc
    assert max(read_elf(old).glibc) == "2.9"  # what a lexical compare would pick

    report = analyze_native([old, new])
    assert report.glibc == max_glibc([*read_elf(old).glibc, *read_elf(new).glibc])
    assert glibc_key(report.glibc or "") >= glibc_key("2.25")
    assert analyze_native([old]).glibc == max_glibc(read_elf(old).glibc)


def test_glibc_floor_includes_bundled_libraries(tmp_path: Path) -> None:
    dep = compile_c("uses_getrandom.c", tmp_path / "lib" / "libeprandom.so")
    ext = compile_c("ext.c", tmp_path / "pkg" / "ext.so", link=[dep], runpath=["$ORIGIN/../lib"])
    assert "2.25" not in read_elf(ext).glibc
    assert glibc_key(analyze_native([ext]).glibc or "") >= glibc_key("2.25")


def test_max_glibc_and_key() -> None:
    assert max_glibc(["2.9", "2.17", "2.2.5"]) == "2.17"
    assert max_glibc(["2.34", "2.17", "2.9"]) == "2.34"
    assert max(["2.9", "2.17"]) == "2.9"  # the lexical trap max_glibc avoids
    assert max_glibc([]) is None
    assert glibc_key("2.2.5") < glibc_key("2.3") < glibc_key("2.10")


# --- bad input -------------------------------------------------------------------------------


def test_truncated_and_non_elf_inputs_are_warnings(chain: Chain, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.so"
    truncated.write_bytes(chain.bar.read_bytes()[:100])
    text = tmp_path / "x.so"
    text.write_text("INPUT(libc.so.6)\n")  # a linker script, as /usr/lib/…/libc.so is
    empty = tmp_path / "empty.so"
    empty.write_bytes(b"")

    report = analyze_native([truncated, text, empty, chain.ext])
    assert len(report.warnings) == 3
    for path, warning in zip(sorted([empty, truncated, text]), report.warnings, strict=True):
        assert str(path) in warning
    assert "truncated" in report.warnings[1]
    assert "not an ELF" in report.warnings[2]
    assert lib(report, "libepfoo.so").kind == "bundle"  # the good input is still analyzed

    for bad in (truncated, text, empty, tmp_path / "missing.so", tmp_path):
        with pytest.raises(NotElfError) as excinfo:
            read_elf(bad)
        assert str(bad) in str(excinfo.value)
        assert isinstance(excinfo.value, EnvpackError)


def test_every_prefix_and_corruption_is_notelferror_or_parses(chain: Chain, tmp_path: Path) -> None:
    data = chain.foo.read_bytes()
    target = tmp_path / "cut.so"
    for length in [*range(0, 80, 3), *range(80, len(data), 97)]:
        target.write_bytes(data[:length])
        with pytest.raises(NotElfError):
            read_elf(target)
    # Byte flips in the headers and the dynamic segment: never anything but NotElfError.
    full = read_elf(chain.foo)
    for offset in range(4, 1200, 7):
        corrupt = bytearray(data)
        corrupt[offset] ^= 0xFF
        target.write_bytes(bytes(corrupt))
        os.utime(target, ns=(offset, offset))  # a new stamp: no cache hit
        try:
            info = read_elf(target)
        except NotElfError:
            continue
        assert isinstance(info, ElfInfo)
    assert read_elf(chain.foo) == full


def test_truncated_candidate_is_skipped_by_resolution(plain: Chain, tmp_path: Path) -> None:
    bad_dir, good_dir = tmp_path / "bad", tmp_path / "good"
    bad_dir.mkdir()
    good_dir.mkdir()
    (bad_dir / "libepbar.so").write_text("INPUT(-lepbar)\n")
    shutil.copy(plain.bar, good_dir / "libepbar.so")
    ext = compile_c(
        "ext.c", tmp_path / "e" / "ext.so", link=[plain.bar], runpath=[bad_dir, good_dir]
    )
    assert lib(analyze_native([ext]), "libepbar.so").path == str(good_dir / "libepbar.so")


def test_notelferror_pickles() -> None:
    err = NotElfError("/x/y.so", "not an ELF file")
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, back.reason, str(back)) == (err.path, err.reason, "/x/y.so: not an ELF file")


def test_iter_elf_files(chain: Chain, tmp_path: Path) -> None:
    text = tmp_path / "x.so"
    text.write_text("not elf")
    paths = [str(chain.ext), str(text), str(tmp_path / "gone.so")]
    assert list(iter_elf_files(paths)) == [str(chain.ext)]


# --- against real files ----------------------------------------------------------------------


def _oracle(path: Path) -> dict[str, object]:
    """What pyelftools (section-based, construct-parsed) reads from the same file."""
    with open(path, "rb") as fh:
        elf = ELFFile(fh)
        out: dict[str, object] = {"needed": [], "rpath": [], "runpath": [], "soname": None}
        glibc: set[str] = set()
        for section in elf.iter_sections():
            if isinstance(section, DynamicSection):
                for tag in section.iter_tags():
                    kind = tag.entry.d_tag
                    if kind == "DT_NEEDED":
                        out["needed"].append(tag.needed)  # type: ignore[attr-defined]
                    elif kind == "DT_SONAME":
                        out["soname"] = tag.soname  # type: ignore[attr-defined]
                    elif kind in ("DT_RPATH", "DT_RUNPATH"):
                        key = kind[3:].lower()
                        out[key].extend(  # type: ignore[attr-defined]
                            p for p in getattr(tag, key).split(":") if p
                        )
            elif isinstance(section, GNUVerNeedSection):
                for _, auxes in section.iter_versions():
                    for aux in auxes:
                        if aux.name.startswith("GLIBC_") and aux.name[6:7].isdigit():
                            glibc.add(aux.name[6:])
        out["glibc"] = sorted(glibc, key=glibc_key)
        out["machine"] = elf["e_machine"]
        out["elfclass"] = elf.elfclass
        return out


def test_reader_agrees_with_pyelftools_on_real_files(chain: Chain) -> None:
    # The base interpreter's lib-dynload: in a venv (as CI runs), platstdlib points into it.
    dynload = Path(probe().interpreter.dynload)
    files = [
        chain.ext,
        chain.foo,
        Path(os.path.realpath(sys.executable)),
        *sorted(dynload.glob("*.so")),
    ]
    libpython = sysconfig.get_config_var("LDLIBRARY")
    libdir = sysconfig.get_config_var("LIBDIR")
    if libpython and libdir and (Path(libdir) / libpython).exists():
        files.append(Path(libdir) / libpython)
    assert len(files) > 20
    for path in files:
        info = read_elf(path)
        expected = _oracle(path)
        got = {
            "needed": list(info.needed),
            "rpath": list(info.rpath),
            "runpath": list(info.runpath),
            "soname": info.soname,
            "glibc": list(info.glibc),
            "machine": info.machine,
            "elfclass": info.elfclass,
        }
        assert got == expected, path


def test_real_interpreter_needs_its_libpython_through_runpath() -> None:
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        pytest.skip("this Python is not built with a shared libpython")
    exe = os.path.realpath(sys.executable)
    soname = sysconfig.get_config_var("INSTSONAME")
    libdir = sysconfig.get_config_var("LIBDIR")
    info = read_elf(exe)
    assert soname in info.needed
    assert info.interpreter is not None

    report = analyze_native([exe])
    libpython = lib(report, soname)
    assert libpython.kind == "bundle"
    assert libpython.path is not None
    assert os.path.realpath(libpython.path) == os.path.realpath(os.path.join(libdir, soname))
    assert libpython.needed_by == (exe,)
    assert lib(report, "libc.so.6").kind == "system"
    assert report.errors == ()
    assert report.glibc is not None
    assert glibc_key(report.glibc) >= max(glibc_key(v) for v in info.glibc)
