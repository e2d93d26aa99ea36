"""lib-dynload modules ship whether the walk reaches them or not, with their libraries bundled.

Checked on the real interpreter running the tests: analyze a processor whose imports the walk
cannot see, build, unpack elsewhere and import them with this machine's copies of those
libraries hidden (bind-mounted /dev/null, in a private mount namespace).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from envpack.analyzer.api import analyze
from envpack.analyzer.native import analyze_native
from envpack.analyzer.stdlib import WHY, is_left_out
from envpack.build import build
from envpack.elf import read_elf
from envpack.spec import Spec

PY = f"python{sys.version_info.major}.{sys.version_info.minor}"
# module -> a line that really uses its extension, and the libraries it needs here
USES = {
    "ssl": "ssl.create_default_context()",
    "sqlite3": "sqlite3.connect(':memory:').execute('select 1').fetchone()",
    "lzma": "lzma.decompress(lzma.compress(b'x'))",
    "bz2": "bz2.decompress(bz2.compress(b'x'))",
    "ctypes": "ctypes.CDLL(None)",
    "uuid": "uuid.uuid4()",
    "hashlib": "hashlib.sha3_256(b'x').hexdigest()",
}
PROC = """\
import importlib, sys
# Which modules is data: the walk cannot know, as with any lazy import.
for name in sys.argv[1:]:
    globals()[name] = importlib.import_module(name)
USES = {uses!r}
for name in sys.argv[1:]:
    eval(USES[name])
    print(name, "ok")
"""


@dataclass(frozen=True)
class Built:
    spec: Spec
    root: Path  # the unpacked env


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    base = tmp_path_factory.mktemp("stdlibext")
    proc = base / "proc.py"
    proc.write_text(PROC.format(uses=USES))
    spec = analyze([proc])
    assert spec.complete, spec.errors
    env = build(spec, base / "out", level=1)
    root = base / "elsewhere" / "env"
    root.mkdir(parents=True)
    with tarfile.open(env.path) as tar:
        tar.extractall(root, filter="tar")
    return Built(spec, root)


def _ext(spec: Spec, name: str) -> str | None:
    return next((m.path for m in spec.stdlib if m.name == name), None)


def test_unreached_lib_dynload_modules_are_in_the_spec(built: Built) -> None:
    spec = built.spec
    names = {m.name: m for m in spec.stdlib}
    for name in ("_ssl", "_sqlite3", "_lzma", "_bz2", "_ctypes", "_hashlib", "_uuid"):
        if name in sys.builtin_module_names:
            continue
        assert name in names, name
        assert names[name].why == WHY
    assert names["importlib"].why[:2] == ("proc", "importlib")  # reached: its own chain
    for name in ("_testcapi", "readline", "_curses", "_tkinter", "nis", "xxlimited"):
        assert name not in names, name
        assert is_left_out(name)


def test_their_libraries_are_bundled(built: Built) -> None:
    bundled = {n.soname: n for n in built.spec.native if n.kind == "bundle"}
    checked = 0
    for name in ("_ssl", "_sqlite3", "_lzma", "_bz2", "_ctypes", "_uuid"):
        path = _ext(built.spec, name)
        assert path is not None, name
        for needed in read_elf(path).needed:
            lib = next((n for n in built.spec.native if n.soname == needed), None)
            assert lib is not None, needed
            if lib.kind == "bundle":
                assert path in lib.needed_by
                checked += 1
    assert "libssl.so.3" in bundled or "libssl.so.1.1" in bundled
    assert checked >= 5


def test_bundled_libraries_resolve_through_origin_in_the_unpacked_env(built: Built) -> None:
    dynload = built.root / "lib" / PY / "lib-dynload"
    ssl_ext = next(dynload.glob("_ssl.*.so"))
    lib = built.root / "lib"
    report = analyze_native([ssl_ext], ld_library_path=())
    found = {n.soname: n.path for n in report.libs if n.kind == "bundle"}
    assert found, report.libs
    for soname, path in found.items():
        assert path is not None and Path(path).parent == lib, (soname, path)
    if shutil.which("ldd"):
        out = subprocess.run(["ldd", str(ssl_ext)], capture_output=True, text=True).stdout
        loaded = {
            words[0]: os.path.normpath(words[2])
            for words in (line.split() for line in out.splitlines())
            if len(words) > 2 and words[1] == "=>"
        }
        for soname in found:
            assert loaded.get(soname) == str(lib / soname), out


def _hide_libs(libs: list[str], cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` with each library in ``libs`` replaced by /dev/null (private mounts)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare not installed")
    binds = " && ".join(f"mount --bind /dev/null '{p}'" for p in libs)
    result = subprocess.run(
        ["unshare", "--mount", "sh", "-c", f'{binds} && exec "$@"', "sh", *cmd],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
    )
    if "mount:" in result.stderr and "permission denied" in result.stderr.lower():
        pytest.skip(f"bind mounts not permitted here: {result.stderr.strip()}")
    return result


def test_lazily_imported_extensions_run_with_the_system_libraries_hidden(built: Built) -> None:
    system = {
        os.path.realpath(n.path)
        for n in built.spec.native
        if n.kind == "bundle" and n.path and n.path.startswith(("/lib/", "/usr/lib"))
    }
    assert system, "nothing of this machine's libraries is bundled"
    python = built.root / "bin" / "python"
    proc = built.root / "local" / "proc.py"
    names = [m for m in USES if f"_{m}" not in sys.builtin_module_names]
    hidden = sorted(system)
    # The build machine's interpreter fails with them hidden: the test can tell.
    plain = _hide_libs(hidden, [sys.executable, "-I", "-c", "import ssl"])
    assert plain.returncode != 0, plain.stdout
    result = _hide_libs(hidden, [str(python), "-I", str(proc), *names])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:-1] == [f"{n} ok" for n in names]
