"""relocate.py on real gcc-built ELF files, real pip-style scripts, the real sysconfigdata."""

from __future__ import annotations

import _imp
import importlib.util
import os
import py_compile
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from envpack import relocate
from envpack.elf import has_debug, read_elf
from envpack.errors import BuildError


def _gcc(*args: str | Path) -> None:
    subprocess.run(["gcc", *map(str, args)], check=True, capture_output=True)


def _program(tmp_path: Path, libdir: Path, *link: str) -> Path:
    """``build/main`` (exits with bar()'s 7), needing ``libdir``/libbar.so; ``link``: how the
    run path is written."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    (tmp_path / "bar.c").write_text("int bar(void) { return 7; }\n")
    (tmp_path / "main.c").write_text("int bar(void);\nint main(void) { return bar(); }\n")
    libdir.mkdir(parents=True)
    _gcc("-shared", "-fPIC", "-o", libdir / "libbar.so", tmp_path / "bar.c")
    exe = tmp_path / "build" / "main"
    _gcc("-o", exe, tmp_path / "main.c", f"-L{libdir}", "-lbar", *link)
    return exe


@pytest.fixture
def elf_pair(tmp_path: Path) -> tuple[Path, Path]:
    """An executable needing libbar.so through an absolute RPATH plus an $ORIGIN one."""
    libdir = tmp_path / "build" / "libs"
    exe = _program(
        tmp_path, libdir, f"-Wl,-rpath,{libdir}:$ORIGIN/../extra", "-Wl,--disable-new-dtags"
    )
    return exe, libdir / "libbar.so"


def _edit_and_run(exe: Path, libdir: Path, tmp_path: Path) -> Path:
    """``exe`` edited into env/bin with env/lib as its run path, run there once the build
    machine's dir is gone (it must exit with 7); the edited file."""
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "lib").mkdir()
    relocate.apply(exe, env / "bin" / "main", relocate.ElfEdits(rpath=("$ORIGIN/../lib",)))
    (env / "bin" / "main").chmod(0o755)
    shutil.copy(libdir / "libbar.so", env / "lib")
    shutil.rmtree(tmp_path / "build")  # the build machine's dir is gone
    assert subprocess.run([str(env / "bin" / "main")], env={}).returncode == 7
    return env / "bin" / "main"


def test_set_rpath_makes_it_relocatable(elf_pair: tuple[Path, Path], tmp_path: Path) -> None:
    exe, lib = elf_pair
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "lib").mkdir()
    edits = relocate.ElfEdits(rpath=(relocate.origin_runpath("bin/main"),))
    relocate.apply(exe, env / "bin" / "main", edits)
    (env / "bin" / "main").chmod(0o755)
    shutil.copy(lib, env / "lib" / "libbar.so")
    shutil.rmtree(lib.parent)  # the build machine's dir is gone
    # the absolute entry is dropped, the $ORIGIN one kept after ours; written as DT_RPATH
    assert read_elf(env / "bin" / "main").rpath == ("$ORIGIN/../lib", "$ORIGIN/../extra")
    res = subprocess.run([str(env / "bin" / "main")], env={})
    assert res.returncode == 7
    out = subprocess.run(
        ["readelf", "-d", str(env / "bin" / "main")], capture_output=True, text=True
    )
    if out.returncode == 0:
        assert "(RPATH)" in out.stdout and "RUNPATH" not in out.stdout


def test_lief_helper_ignores_modules_in_the_current_directory(
    elf_pair: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build runs where the user's processor lies; a local ``enum.py`` (any stdlib name) must
    not be what the lief helper process imports."""
    exe, _ = elf_pair
    project = tmp_path / "project"
    project.mkdir()
    (project / "enum.py").write_text("raise SystemExit('the project's enum.py was imported')\n")
    monkeypatch.chdir(project)
    relocate._LIEF.close()  # a helper started elsewhere by another test would hide it
    longer = "$ORIGIN/" + "x" * len(str(exe))  # longer than the file's run path: lief's job
    relocate.apply(exe, tmp_path / "edited", relocate.ElfEdits(rpath=(longer,)))
    assert relocate._LIEF._proc is not None, "the helper was not used"
    assert read_elf(tmp_path / "edited").rpath[0] == longer


@pytest.mark.parametrize("dtags", ["--disable-new-dtags", "--enable-new-dtags"])
def test_a_run_path_that_fits_is_overwritten_in_place(tmp_path: Path, dtags: str) -> None:
    """The build machine's absolute run path (DT_RPATH or DT_RUNPATH) is longer than the
    `$ORIGIN` one: it is overwritten where it lies, made DT_RPATH, and lief is never started."""
    libdir = tmp_path / "build" / "machine" / "lib"
    exe = _program(tmp_path, libdir, f"-Wl,-rpath,{libdir}", f"-Wl,{dtags}")
    needed, before = read_elf(exe).needed, exe.read_bytes()
    relocate._LIEF.close()
    edited = _edit_and_run(exe, libdir, tmp_path)
    assert relocate._LIEF._proc is None, "lief's helper was started for an edit that fits"
    after = edited.read_bytes()
    assert len(before) == len(after)
    assert sum(a != b for a, b in zip(before, after, strict=True)) <= len(str(libdir)) + 1
    info = read_elf(edited)
    assert (info.rpath, info.runpath, info.needed) == (("$ORIGIN/../lib",), (), needed)


def test_a_broken_section_table_leaves_the_edit_to_lief(tmp_path: Path) -> None:
    """ld.so never reads section headers; a file whose table is broken still loads, and its
    run path edit goes to lief instead of failing the build."""
    libdir = tmp_path / "build" / "machine" / "lib"
    exe = _program(tmp_path, libdir, f"-Wl,-rpath,{libdir}")
    data = bytearray(exe.read_bytes())
    data[0x3A:0x3C] = (16).to_bytes(2, "little")  # e_shentsize: too small for a section header
    exe.write_bytes(bytes(data))
    relocate._LIEF.close()
    _edit_and_run(exe, libdir, tmp_path)
    assert relocate._LIEF._proc is not None


def test_a_run_path_sharing_its_bytes_goes_through_lief(tmp_path: Path) -> None:
    """GNU ld keeps the symbol ``bar`` in the run path's tail (``…/opt/bar``): zeroing that
    tail would unlink the symbol, so the edit is lief's and the program still runs."""
    libdir = tmp_path / "build" / "lib"
    exe = _program(tmp_path, libdir, f"-Wl,-rpath,{libdir}:/opt/bar")
    relocate._LIEF.close()
    _edit_and_run(exe, libdir, tmp_path)
    assert relocate._LIEF._proc is not None, "the shared run path was overwritten in place"


def test_set_rpath_is_deterministic(elf_pair: tuple[Path, Path], tmp_path: Path) -> None:
    exe, _ = elf_pair
    relocate.apply(exe, tmp_path / "a", relocate.ElfEdits(rpath=("$ORIGIN",)))
    relocate.apply(exe, tmp_path / "b", relocate.ElfEdits(rpath=("$ORIGIN",)))
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_set_rpath_refuses_non_elf(tmp_path: Path) -> None:
    fake = tmp_path / "fake.so"
    fake.write_bytes(b"not an elf file at all")
    with pytest.raises(BuildError, match=f"{fake}.*not an ELF"):
        relocate.apply(fake, tmp_path / "out.so", relocate.ElfEdits(rpath=("$ORIGIN",)))
    assert not (tmp_path / "out.so").exists()


def test_origin_runpath() -> None:
    assert relocate.origin_runpath("bin/python3.11") == "$ORIGIN/../lib"
    assert relocate.origin_runpath("lib/libfoo.so") == "$ORIGIN"
    assert relocate.origin_runpath("lib/python3.11/lib-dynload/_ssl.so") == "$ORIGIN/../.."


def test_trampoline_runs_the_python_next_to_it(tmp_path: Path) -> None:
    body = b"import sys\nprint('ran', sys.argv[1:])\n"
    for header in (
        b"#!/build/venv/bin/python3\n",
        b"#!/bin/sh\n'''exec' /very/long/build/venv/bin/python \"$0\" \"$@\"\n' '''\n",
    ):
        out = relocate.relocate_script(header + body, "python3.11")
        assert out is not None and b"/build" not in out and b"/very" not in out
        bindir = tmp_path / "env" / "bin"
        bindir.mkdir(parents=True, exist_ok=True)
        (bindir / "python3.11").unlink(missing_ok=True)
        (bindir / "python3.11").symlink_to(sys.executable)
        script = bindir / "tool"
        script.write_bytes(out)
        script.chmod(0o755)
        res = subprocess.run([str(script), "a b", "c"], capture_output=True, text=True, check=True)
        assert res.stdout == "ran ['a b', 'c']\n"
    assert relocate.relocate_script(b"#!/bin/sh\necho hi\n", "python3.11") is None
    assert relocate.relocate_script(b"\x7fELF...", "python3.11") is None


def test_sysconfigdata_rewritten_to_the_env(tmp_path: Path) -> None:
    name = sysconfig._get_sysconfigdata_name()  # type: ignore[attr-defined]  # stdlib helper
    src = Path(sysconfig.get_paths()["stdlib"]) / f"{name}.py"
    text = relocate.sysconfigdata(src.read_text(), [sys.base_prefix])
    assert sys.base_prefix not in text
    ns: dict[str, object] = {}
    exec(compile(text, "x", "exec"), ns)
    fixed = ns["build_time_vars"]
    assert isinstance(fixed, dict)
    assert fixed["LIBDIR"] == sysconfig.get_config_var("LIBDIR")  # same prefix here
    assert fixed["VERSION"] == sysconfig.get_config_var("VERSION")


def test_pyc_unchecked(tmp_path: Path) -> None:
    src = tmp_path / "mod.py"
    src.write_text("X = 1\n")
    compiled = py_compile.compile(str(src))
    assert compiled is not None
    pyc = Path(compiled)
    data = pyc.read_bytes()
    mtime = int(src.stat().st_mtime)
    out = relocate.pyc_unchecked(data, src.read_bytes(), mtime)
    assert out is not None
    assert out[4:8] == b"\x01\0\0\0" and out[8:16] == importlib.util.source_hash(src.read_bytes())
    assert out[16:] == data[16:]
    assert relocate.pyc_unchecked(data, b"X = 22\n", mtime) is None  # size differs: stale
    assert relocate.pyc_unchecked(data, src.read_bytes(), mtime + 5) is None  # mtime differs
    assert relocate.pyc_unchecked(b"junk", b"", None) is None


# -- the one ELF writer: queued edits, applied together ----------------------------------------


@pytest.fixture
def debug_exe(elf_pair: tuple[Path, Path], tmp_path: Path) -> Path:
    """``main`` again, built with -g (DWARF sections) and the same two RPATH entries."""
    if shutil.which("objcopy") is None:
        pytest.skip("needs binutils' objcopy")
    _, lib = elf_pair
    out = tmp_path / "build" / "main-g"
    _gcc(
        "-g", "-o", out, tmp_path / "main.c", f"-L{lib.parent}", "-lbar",
        f"-Wl,-rpath,{lib.parent}:$ORIGIN/../extra", "-Wl,--disable-new-dtags",
    )  # fmt: skip
    assert has_debug(out)
    return out


def test_apply_sets_the_run_path_and_strips_in_one_go(
    debug_exe: Path, elf_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    objcopy = Path(shutil.which("objcopy") or "objcopy")
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "lib").mkdir()
    edits = relocate.ElfEdits(rpath=("$ORIGIN/../lib",), strip_debug=objcopy)
    relocate.apply(debug_exe, env / "bin" / "main", edits)
    out = env / "bin" / "main"
    assert read_elf(out).rpath == ("$ORIGIN/../lib", "$ORIGIN/../extra")
    assert not has_debug(out) and out.stat().st_size < debug_exe.stat().st_size
    shutil.copy(elf_pair[1], env / "lib" / "libbar.so")
    out.chmod(0o755)
    assert subprocess.run([str(out)], env={}).returncode == 7
    # The same edits made on demand, in memory, give the same bytes.
    edited = relocate.EditedElf(debug_exe, edits)
    assert edited() == out.read_bytes()
    assert edited.inputs == (debug_exe, objcopy)
    # Kept in the staging dir: made once (digest), then read back (write).
    kept = relocate.EditedElf(debug_exe, edits, tmp_path / "stage" / "bin" / "main")
    assert kept() == out.read_bytes() == (tmp_path / "stage" / "bin" / "main").read_bytes()
    os.utime(kept.keep, ns=(1, 1))  # type: ignore[arg-type]
    assert kept() == out.read_bytes() and kept.keep.stat().st_mtime_ns == 1  # type: ignore[union-attr]


def test_kept_edits_are_reused_and_bounded(
    elf_pair: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cache of our own (not the user's) and a bound of one file's size, to see eviction.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    exe, lib = elf_pair
    edits = relocate.ElfEdits(rpath=("$ORIGIN",))
    for src in (exe, lib):
        os.utime(src, ns=(10**18, 10**18))  # old enough to be kept (not written this second)
    relocate.apply_kept(exe, tmp_path / "a", edits)
    kept_dir = tmp_path / "cache" / "envpack" / "edited-elf"
    (first,) = kept_dir.iterdir()
    os.utime(first, ns=(1, 1))  # a hit marks it used again
    relocate.apply_kept(exe, tmp_path / "b", edits)
    assert first.stat().st_mtime_ns > 1
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    monkeypatch.setenv("ENVPACK_PIECE_CACHE_MAX", str(first.stat().st_size))
    os.utime(first, ns=(1, 1))
    relocate.apply_kept(lib, tmp_path / "c", edits)
    (survivor,) = kept_dir.iterdir()  # the least recently used one went
    assert survivor != first and survivor.read_bytes() == (tmp_path / "c").read_bytes()


def test_edited_elf_with_nothing_to_strip_is_the_file(elf_pair: tuple[Path, Path]) -> None:
    exe, _ = elf_pair
    objcopy = Path(shutil.which("objcopy") or "/nonexistent/objcopy")
    assert not has_debug(exe)
    assert relocate.EditedElf(exe, relocate.ElfEdits(strip_debug=objcopy))() == exe.read_bytes()
    assert not relocate.ElfEdits()


def test_apply_names_the_file_when_objcopy_fails(debug_exe: Path, tmp_path: Path) -> None:
    false = Path(shutil.which("false") or "/bin/false")
    with pytest.raises(BuildError, match=f"cannot strip the debug sections of {debug_exe}"):
        relocate.apply(debug_exe, tmp_path / "out", relocate.ElfEdits(strip_debug=false))


# -- pycs of another Python ------------------------------------------------------------------

PYENV = Path("/root/.pyenv/versions")


def _pyenv(minor: int) -> Path:
    found = sorted(PYENV.glob(f"3.{minor}.*/bin/python3"))
    if not found:
        pytest.skip(f"no Python 3.{minor} under {PYENV}")
    return found[-1]


def _target_facts(python: Path, source: bytes) -> tuple[bytes, bytes]:
    code = (
        "import importlib.util, sys\n"
        "src = sys.stdin.buffer.read()\n"
        "sys.stdout.write(importlib.util.MAGIC_NUMBER.hex() + ' ' + "
        "importlib.util.source_hash(src).hex())\n"
    )
    out = subprocess.run(
        [str(python), "-I", "-c", code], input=source, capture_output=True, check=True
    ).stdout.split()
    return bytes.fromhex(out[0].decode()), bytes.fromhex(out[1].decode())


@pytest.mark.parametrize("minor", [8, 12])
def test_source_hasher_gives_the_targets_hash(minor: int) -> None:
    python = _pyenv(minor)
    source = b"X = 1\n" * 100
    magic, expected = _target_facts(python, source)
    hasher = relocate.SourceHasher(magic, str(python))
    try:
        assert hasher(source) == expected
        assert hasher(b"") == _target_facts(python, b"")[1]
        if minor < 11:
            # SipHash-2-4 before 3.11: this Python's own keyed hash would be wrong.
            assert _imp.source_hash(int.from_bytes(magic, "little"), source) != expected
    finally:
        hasher.close()


def test_source_hasher_without_a_target_fails_clearly() -> None:
    hasher = relocate.SourceHasher(bytes.fromhex("550d0d0a"), None)
    with pytest.raises(OSError, match="no target interpreter"):
        hasher(b"x")


def test_pyc_unchecked_for_another_python(tmp_path: Path) -> None:
    python = _pyenv(8)
    src = tmp_path / "mod.py"
    src.write_text("X = 1\n")
    subprocess.run([str(python), "-m", "py_compile", str(src)], check=True)
    (pyc,) = (tmp_path / "__pycache__").glob("mod.cpython-38.pyc")
    magic, expected = _target_facts(python, src.read_bytes())
    hasher = relocate.SourceHasher(magic, str(python))
    try:
        data = pyc.read_bytes()
        mtime = int(src.stat().st_mtime)
        assert relocate.pyc_unchecked(data, src.read_bytes(), mtime) is None  # not our magic
        out = relocate.pyc_unchecked(data, src.read_bytes(), mtime, magic=magic, source_hash=hasher)
    finally:
        hasher.close()
    assert out is not None and out[8:16] == expected and out[16:] == data[16:]
    cached = tmp_path / "__pycache__" / "mod.cpython-38.pyc"
    check = "import sys; sys.path.insert(0, '.'); import mod; print(mod.X)"
    cmd = [str(python), "-I", "--check-hash-based-pycs", "always", "-c", check]
    # A wrong hash is noticed under "always": Python recompiles and rewrites the pyc...
    wrong = out[:8] + bytes(8) + out[16:]
    cached.write_bytes(wrong)
    subprocess.run(cmd, cwd=tmp_path, capture_output=True, check=True)
    assert cached.read_bytes() != wrong
    # ...ours is accepted as it is.
    cached.write_bytes(out)
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert res.stdout == "1\n"
    assert cached.read_bytes() == out


def test_run_path_edits_never_import_lief_here(elf_pair: tuple[Path, Path], tmp_path: Path) -> None:
    """lief runs in a helper process: its import (0.5 s, holding the GIL) would stall a
    build's writer threads."""
    exe, _ = elf_pair
    code = (
        "import sys\nfrom pathlib import Path\nfrom envpack import relocate\n"
        f"relocate.apply(Path({str(exe)!r}), Path({str(tmp_path / 'out')!r}), "
        "relocate.ElfEdits(rpath=('$ORIGIN',)))\n"
        "print('lief' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"
    assert read_elf(tmp_path / "out").rpath == ("$ORIGIN", "$ORIGIN/../extra")
