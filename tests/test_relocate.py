"""relocate.py on real gcc-built ELF files, real pip-style scripts, the real sysconfigdata."""

from __future__ import annotations

import importlib.util
import py_compile
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from envpack import relocate


def _gcc(*args: str | Path) -> None:
    subprocess.run(["gcc", *map(str, args)], check=True, capture_output=True)


@pytest.fixture
def elf_pair(tmp_path: Path) -> tuple[Path, Path]:
    """An executable needing libbar.so through an absolute RPATH plus an $ORIGIN one."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    (tmp_path / "bar.c").write_text("int bar(void) { return 7; }\n")
    (tmp_path / "main.c").write_text("int bar(void);\nint main(void) { return bar(); }\n")
    libdir = tmp_path / "build" / "libs"
    libdir.mkdir(parents=True)
    _gcc("-shared", "-fPIC", "-o", libdir / "libbar.so", tmp_path / "bar.c")
    exe = tmp_path / "build" / "main"
    _gcc(
        "-o", exe, tmp_path / "main.c", f"-L{libdir}", "-lbar",
        f"-Wl,-rpath,{libdir}:$ORIGIN/../extra", "-Wl,--disable-new-dtags",
    )  # fmt: skip
    return exe, libdir / "libbar.so"


def test_set_rpath_makes_it_relocatable(elf_pair: tuple[Path, Path], tmp_path: Path) -> None:
    exe, lib = elf_pair
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "lib").mkdir()
    relocate.set_rpath(exe, env / "bin" / "main", [relocate.origin_runpath("bin/main")])
    (env / "bin" / "main").chmod(0o755)
    shutil.copy(lib, env / "lib" / "libbar.so")
    shutil.rmtree(lib.parent)  # the build machine's dir is gone
    # the absolute entry is dropped, the $ORIGIN one kept after ours; written as DT_RPATH
    assert relocate.runpath_of(env / "bin" / "main") == ["$ORIGIN/../lib", "$ORIGIN/../extra"]
    res = subprocess.run([str(env / "bin" / "main")], env={})
    assert res.returncode == 7
    out = subprocess.run(
        ["readelf", "-d", str(env / "bin" / "main")], capture_output=True, text=True
    )
    if out.returncode == 0:
        assert "(RPATH)" in out.stdout and "RUNPATH" not in out.stdout


def test_set_rpath_is_deterministic(elf_pair: tuple[Path, Path], tmp_path: Path) -> None:
    exe, _ = elf_pair
    relocate.set_rpath(exe, tmp_path / "a", ["$ORIGIN"])
    relocate.set_rpath(exe, tmp_path / "b", ["$ORIGIN"])
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_set_rpath_refuses_non_elf(tmp_path: Path) -> None:
    fake = tmp_path / "fake.so"
    fake.write_bytes(b"not an elf file at all")
    with pytest.raises(ValueError, match="not an ELF"):
        relocate.set_rpath(fake, tmp_path / "out.so", ["$ORIGIN"])
    assert relocate.runpath_of(fake) == []


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
