"""build(): a real venv (PyYAML from PyPI, a console script, a gcc-built extension linking a
private library) turned into a tarball, unpacked elsewhere and run with the build interpreter
hidden. Specs are made by hand from the real venv (probe + importlib.metadata), so these tests
depend on the analyzer's data model only, not on its walk.
"""

from __future__ import annotations

import errno
import fnmatch
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from envpack.analyzer.interpreter import probe
from envpack.archive import Entry
from envpack.build import PART_GLOB, Environment, assemble, build, source_size
from envpack.collect import collect
from envpack.elf import has_debug, read_elf
from envpack.errors import BuildError, SpecError
from envpack.layout import MANIFEST, SUMMARY
from envpack.spec import SCHEMA, Distribution, LocalFile, NativeLib, Spec, StdlibModule
from tests.wheels import build_wheel

PYYAML = "PyYAML==6.0.2"
PY = f"python{sys.version_info.major}.{sys.version_info.minor}"
SYSTEM_LIBPYTHON = Path(f"/usr/lib/x86_64-linux-gnu/lib{PY}.so.1.0")

LIBFOO_C = "int foo_answer(void) { return 42; }\n"
EXT_C = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
int foo_answer(void);
static PyObject *answer(PyObject *self, PyObject *args) { return PyLong_FromLong(foo_answer()); }
static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "fxnative", NULL, -1, methods};
PyMODINIT_FUNC PyInit_fxnative(void) { return PyModule_Create(&mod); }
"""


@dataclass(frozen=True)
class Project:
    """A real venv plus the user's code, and the Spec a build needs for it."""

    root: Path
    venv: Path
    python: Path
    site: Path
    libdir: Path  # where the private libfoo.so lives on the build machine
    spec: Spec


def _run(*cmd: str | Path, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, **kw)  # type: ignore[call-overload, no-any-return]


def compile_native(root: Path) -> tuple[Path, Path]:
    """libfoo.so and an extension module linking it through an absolute RUNPATH, with gcc."""
    libdir = root / "privlib"
    libdir.mkdir(parents=True)
    (root / "foo.c").write_text(LIBFOO_C)
    (root / "ext.c").write_text(EXT_C)
    libfoo = libdir / "libfoo.so"
    _run("gcc", "-shared", "-fPIC", "-o", libfoo, root / "foo.c")
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    ext = root / f"fxnative{suffix}"
    include = sysconfig.get_paths()["include"]
    _run(
        "gcc", "-shared", "-fPIC", f"-I{include}", "-o", ext, root / "ext.c",
        f"-L{libdir}", "-lfoo", f"-Wl,-rpath,{libdir}",
    )  # fmt: skip
    return libfoo, ext


def dynload_modules(python: Path, modules: list[str]) -> list[StdlibModule]:
    """The lib-dynload extension modules that importing ``modules`` really loads."""
    code = (
        "import sys, json, os\n"
        f"for m in {modules!r}: __import__(m)\n"
        "print(json.dumps(sorted((n, m.__file__) for n, m in list(sys.modules.items())"
        " if '/lib-dynload/' in (getattr(m, '__file__', None) or ''))))"
    )
    out = json.loads(_run(python, "-I", "-c", code).stdout)
    return [StdlibModule(name=n, path=p, why=("test",)) for n, p in out]


def distributions(site: Path, names: dict[str, tuple[str, ...]]) -> list[Distribution]:
    """Distribution entries read with importlib.metadata from the venv's site-packages."""
    out = []
    for dist in importlib.metadata.distributions(path=[str(site)]):
        name = dist.metadata["Name"]
        if name not in names:
            continue
        files = tuple(sorted(str(f) for f in dist.files or ()))
        size = sum((site / f).stat().st_size for f in files if (site / f).is_file())
        out.append(
            Distribution(
                name=name,
                version=dist.version,
                location=str(site),
                files=files,
                size=size,
                modules=names[name],
                why=("proc", names[name][0]),
            )
        )
    return sorted(out, key=lambda d: d.name)


def make_project(root: Path) -> Project:
    """A venv with PyYAML, a console-script distribution and a native one, plus local code."""
    venv = root / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = Path(
        _run(
            python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        ).stdout.strip()
    )
    libfoo, ext = compile_native(root / "native")
    wheels = root / "wheels"
    cli_src = root / "fxcli-src"
    (cli_src / "src" / "fxcli").mkdir(parents=True)
    (cli_src / "src" / "fxcli" / "__init__.py").write_text(
        "def main():\n    import yaml, sys\n    print('fxcli', yaml.__version__, sys.prefix)\n"
    )
    build_wheel(
        cli_src,
        wheels,
        metadata="Metadata-Version: 2.1\nName: fx-cli\nVersion: 1.0\n",
        extra_files={
            "fx_cli-1.0.dist-info/entry_points.txt": b"[console_scripts]\nfxcli = fxcli:main\n"
        },
    )
    build_wheel(
        root / "nothing",
        wheels,
        metadata="Metadata-Version: 2.1\nName: fx-native\nVersion: 2.0\n",
        extra_files={ext.name: ext.read_bytes()},
    )
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    _run(*pip, "--disable-pip-version-check", PYYAML)
    _run(*pip, "--disable-pip-version-check", "--no-index", *sorted(wheels.glob("*.whl")))
    ext_installed = site / ext.name
    os.chmod(ext_installed, 0o755)

    proj = root / "proj"
    (proj / "helpers").mkdir(parents=True)
    (proj / "helpers" / "__init__.py").write_text("")
    (proj / "helpers" / "util.py").write_text("SCALE = 2\n")
    (proj / "proc.py").write_text(
        "import yaml, fxcli, fxnative\nfrom helpers.util import SCALE\n"
        "class Proc:\n    pass\n"
        "def run():\n    return fxnative.answer() * SCALE\n"
    )
    (proj / "corrections").mkdir()
    (proj / "corrections" / "sf.json").write_text('{"sf": 1.5}\n')

    target = probe(python).interpreter
    local = (
        LocalFile(str(proj / "proc.py"), "proc.py", "module", "root"),
        LocalFile(str(proj / "helpers" / "__init__.py"), "helpers/__init__.py", "module", "pkg"),
        LocalFile(str(proj / "helpers" / "util.py"), "helpers/util.py", "module", "proc.py:2"),
        LocalFile(str(proj / "corrections" / "sf.json"), "corrections/sf.json", "data", "open"),
    )
    dists = distributions(
        site, {"PyYAML": ("yaml",), "fx-cli": ("fxcli",), "fx-native": ("fxnative",)}
    )
    spec = Spec(
        interpreter=target,
        roots=(str(proj / "proc.py"),),
        local=local,
        distributions=tuple(dists),
        stdlib=tuple(dynload_modules(python, ["yaml", "json", "tarfile"])),
        native=(
            NativeLib("libfoo.so", str(libfoo), "bundle", (str(ext_installed),)),
            NativeLib("libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6", "system", ()),
        ),
    )
    return Project(root, venv, python, site, libfoo.parent, spec)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return make_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def built(project: Project, tmp_path_factory: pytest.TempPathFactory) -> Environment:
    return build(project.spec, tmp_path_factory.mktemp("out"), level=1)


@pytest.fixture(scope="module")
def unpacked(built: Environment, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("unpacked") / "somewhere" / "else"
    dest.mkdir(parents=True)
    _run("tar", "xzf", built.path, "-C", dest)
    return dest


def _can_hide() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare not installed"
    probe_run = subprocess.run(
        ["unshare", "--mount", "sh", "-c", "mount -t tmpfs none /mnt"], capture_output=True
    )
    if probe_run.returncode != 0:
        return f"unshare --mount with tmpfs not permitted here: {probe_run.stderr.decode().strip()}"
    return None


def run_hidden(
    hide: list[Path], cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` with tmpfs mounted over every dir in ``hide`` (a private mount namespace)."""
    reason = _can_hide()
    if reason:
        pytest.skip(reason)
    mounts = " && ".join(f"mount -t tmpfs none '{d}'" for d in hide)
    script = f'{mounts} && exec "$@"'
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, "sh", *cmd],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **(env or {})},
    )


def build_prefixes(project: Project) -> list[Path]:
    interp = project.spec.interpreter
    return [Path(interp.base_prefix), project.venv, project.libdir]


# -- layout -----------------------------------------------------------------------------------


def test_layout_and_meta_first(built: Environment, unpacked: Path) -> None:
    with tarfile.open(built.path) as tar:
        names = tar.getnames()
    assert names[:5] == [".envpack", SUMMARY, MANIFEST, ".envpack/spec.json", ".envpack/layers"]
    # then one fragment per layer: its manifest first, then its members sorted by path
    starts = [i for i, n in enumerate(names) if n.startswith(".envpack/layer/")]
    assert len(starts) == len(built.layers) > 3
    for a, b in zip(starts, [*starts[1:], len(names) + 2], strict=True):
        members = names[a + 1 : b - 2]
        assert members == sorted(members)
    assert {".envpack/envpack-run", ".envpack/links"} <= set(names)
    for name in ("python", "python3"):
        assert os.readlink(unpacked / "bin" / name) == PY
    assert (unpacked / "bin" / PY).is_file()
    assert (unpacked / "lib" / f"lib{PY}.so.1.0").is_file()
    assert (unpacked / "lib" / "libfoo.so").is_file()
    assert (unpacked / "lib" / PY / "os.py").is_file()
    assert not (unpacked / "lib" / PY / "test").exists()
    assert (unpacked / "lib" / PY / "lib-dynload").is_dir()
    assert (unpacked / "local" / "proc.py").is_file()
    links = (unpacked / ".envpack" / "links").read_text().split()
    assert links == ["corrections/sf.json"]  # relative to local/, as envpack-run links it


def test_summary_and_manifest_match_contents(built: Environment, unpacked: Path) -> None:
    summary = dict(line.split("=", 1) for line in (unpacked / SUMMARY).read_text().splitlines())
    files = [p for p in unpacked.rglob("*") if p.is_file() or p.is_symlink()]
    size = sum(p.stat().st_size for p in files if p.is_file() and not p.is_symlink())
    assert summary["hash"] == built.hash
    assert int(summary["files"]) == len(files) == built.files
    assert int(summary["bytes"]) == size
    manifest = json.loads((unpacked / MANIFEST).read_text())
    assert manifest["schema"] == 2
    # all but the summary, manifest, Spec, layer index and the layers' own manifests
    assert len(manifest["files"]) == len(files) - 4 - len(built.layers)
    assert built.path.name == f"envpack-{built.hash}.tar.gz"


def test_modes_and_owners_are_normalized(built: Environment) -> None:
    with tarfile.open(built.path) as tar:
        for m in tar.getmembers():
            assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "")
            assert m.mtime == 946684800
            if m.isdir():
                assert m.mode == 0o755
            elif m.isfile():
                assert m.mode in (0o644, 0o755), m.name


def test_only_the_spec_distributions_ship(built: Environment, unpacked: Path) -> None:
    site = unpacked / "lib" / PY / "site-packages"
    tops = sorted(p.name for p in site.iterdir())
    assert "pip" not in tops and "_distutils_hack" not in tops
    assert "yaml" in tops and "fxcli" in tops
    groups = {g.name: g for g in built.groups}
    assert groups["PyYAML"].version == "6.0.2" and groups["PyYAML"].files > 10


def test_only_the_spec_lib_dynload_modules_ship(
    project: Project, built: Environment, unpacked: Path
) -> None:
    """lib-dynload is the Spec's list (the analysis decides), each file gone through the writer.

    It once shipped whole, unstripped and unpatched, as part of the pure-Python stdlib walk.
    """
    listed = {Path(m.path).name for m in project.spec.stdlib if m.path}
    shipped = {p.name for p in (unpacked / "lib" / PY / "lib-dynload").iterdir()}
    assert shipped == listed
    assert not any(n.startswith("_testcapi") for n in shipped)
    if shutil.which("objcopy"):
        for name in shipped:
            assert not has_debug(unpacked / "lib" / PY / "lib-dynload" / name), name


# -- self-contained and relocatable ------------------------------------------------------------


def test_runs_with_build_interpreter_hidden(project: Project, unpacked: Path) -> None:
    """Every shipped top-level module imports, with pyenv, the venv and libfoo's dir hidden."""
    python = unpacked / "bin" / "python"
    code = (
        "import yaml, fxcli, fxnative, proc, helpers.util, json, tarfile, sys;"
        "print(proc.run(), yaml.safe_load('a: 1'), sys.prefix)"
    )
    res = run_hidden(build_prefixes(project), [str(python), "-I", "-c", code])
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["84", "{'a':", "1}", str(unpacked)]


def test_shipped_libpython_is_loaded_not_the_system_one(project: Project, unpacked: Path) -> None:
    if not SYSTEM_LIBPYTHON.exists():
        pytest.skip(f"no system {SYSTEM_LIBPYTHON.name} to be confused with")
    code = "print(open('/proc/self/maps').read())"
    # A worker that exports LD_LIBRARY_PATH naming the system libpython's dir must not win.
    env = {"LD_LIBRARY_PATH": str(SYSTEM_LIBPYTHON.parent)}
    cmd = [str(unpacked / "bin" / PY), "-I", "-c", code]
    res = run_hidden(build_prefixes(project), cmd, env=env)
    assert res.returncode == 0, res.stderr
    maps = {line.split()[-1] for line in res.stdout.splitlines() if "libpython" in line}
    assert maps == {str(unpacked / "lib" / f"lib{PY}.so.1.0")}


def test_elf_run_paths_are_origin_relative(unpacked: Path) -> None:
    assert read_elf(unpacked / "bin" / PY).run_path == ("$ORIGIN/../lib",)
    ext = next((unpacked / "lib" / PY / "site-packages").glob("fxnative*.so"))
    assert read_elf(ext).run_path == ("$ORIGIN/../..",)  # site-packages -> lib/


def test_console_script_trampoline_after_moving(
    project: Project, unpacked: Path, tmp_path: Path
) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(unpacked, moved, symlinks=True)
    script = moved / "bin" / "fxcli"
    assert str(project.venv) not in script.read_text()
    res = run_hidden(build_prefixes(project), [str(script)])
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["fxcli", "6.0.2", str(moved)]


def test_no_build_path_in_startup_text_files(project: Project, unpacked: Path) -> None:
    interp = project.spec.interpreter
    needles = {interp.base_prefix, str(project.venv), str(project.root)}
    startup = list(unpacked.glob(f"lib/{PY}/site-packages/*.pth"))
    startup += list(unpacked.glob(f"lib/{PY}/_sysconfigdata_*.py"))
    startup += list(unpacked.glob("pyvenv.cfg"))
    assert len(startup) >= 2
    for path in startup:
        text = path.read_text()
        assert not [n for n in needles if n in text], path
    # sysconfig still answers, with the env's own prefix
    code = "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"
    res = _run(unpacked / "bin" / "python", "-I", "-c", code)
    assert res.stdout.strip() == str(unpacked / "lib")


def test_pycs_are_used_not_rewritten(unpacked: Path, tmp_path: Path) -> None:
    """Shipped pycs are unchecked-hash: valid at any mtime, so nothing is recompiled."""
    moved = tmp_path / "ro"
    shutil.copytree(unpacked, moved, symlinks=True)
    before = sorted(p.name for p in moved.rglob("*.pyc"))
    assert any(name.startswith("__init__.cpython") for name in before)
    _run(moved / "bin" / "python", "-I", "-c", "import yaml, json, tarfile")
    after = sorted(p.name for p in moved.rglob("*.pyc"))
    assert after == before


# -- determinism and cache --------------------------------------------------------------------


def test_same_spec_twice_is_byte_identical(
    project: Project, built: Environment, tmp_path: Path
) -> None:
    again = build(project.spec, tmp_path, level=1)
    assert not again.cached
    assert again.path.read_bytes() == built.path.read_bytes()


def test_digest_first_and_one_pass_builds_are_byte_identical(
    project: Project, built: Environment, tmp_path: Path
) -> None:
    """Another tarball in the output dir: this one may be there, so the build digests first
    (a hit would need no compression) and writes the same bytes as the one-pass build."""
    (tmp_path / "envpack-0123456789abcdef.tar.gz").write_bytes(b"another env")
    again = build(project.spec, tmp_path, level=1)
    assert not again.cached and again.hash == built.hash
    assert again.path.read_bytes() == built.path.read_bytes()


def test_a_cold_build_measures_the_source_size_while_it_compresses(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the CLI shows after a build needs no walk of the source env after it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    env = build(project.spec, tmp_path / "out", level=1)
    assert source_size(project.spec, env.hash, walk=False) == source_size(project.spec)


def test_the_source_size_by_find_is_the_python_walks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GNU find (in a child, off the GIL) and the Python fallback sum the same bytes: regular
    files only, links not followed, the pruned directory left out."""
    from envpack import build as build_mod

    root = tmp_path / "lib"
    (root / "site-packages" / "big").mkdir(parents=True)
    (root / "site-packages" / "big" / "x.so").write_bytes(b"x" * 5000)
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "m.py").write_bytes(b"m" * 123)
    (root / "os.py").write_bytes(b"o" * 77)
    (root / "link.py").symlink_to(root / "os.py")
    (root / "dirlink").symlink_to(root / "a")
    skip = root / "site-packages"
    by_find = build_mod._find_size(root, skip)
    assert by_find == build_mod._python_walk_size(root, skip) == 200
    assert build_mod._find_size(root, None) == build_mod._python_walk_size(root, None) == 5200
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools-here"))  # a machine without find
    assert build_mod._find_size(root, skip) is None


def test_timestamps_do_not_leak(project: Project, built: Environment, tmp_path: Path) -> None:
    """Touching every shipped local file changes nothing: no mtime reaches the tarball."""
    for item in project.spec.local:
        os.utime(item.path, (1_700_000_000, 1_700_000_000))
    again = build(project.spec, tmp_path, level=1)
    assert again.path.read_bytes() == built.path.read_bytes()


def test_content_change_changes_the_hash(
    project: Project, built: Environment, tmp_path: Path
) -> None:
    src = tmp_path / "proc2.py"
    src.write_text("VALUE = 2\n")
    spec = replace(
        project.spec, local=(*project.spec.local, LocalFile(str(src), "proc2.py", "module", "t"))
    )
    env = build(spec, tmp_path / "out", level=1)
    assert env.hash != built.hash


def test_build_cache_hit(project: Project, built: Environment) -> None:
    stamp = built.path.stat().st_mtime_ns
    again = build(project.spec, built.path.parent)
    assert again.cached and again.path == built.path and again.hash == built.hash
    assert built.path.stat().st_mtime_ns == stamp


def test_source_date_epoch_is_honoured(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234567890")
    env = build(project.spec, tmp_path, level=1)
    with tarfile.open(env.path) as tar:
        assert {m.mtime for m in tar.getmembers()} == {1234567890}


# -- errors -----------------------------------------------------------------------------------


def test_newer_schema_is_refused(project: Project, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="newer"):
        build(replace(project.spec, schema=99), tmp_path)
    raw = json.loads(project.spec.to_json())
    raw["schema"] = SCHEMA + 1
    with pytest.raises(SpecError, match=f"schema {SCHEMA + 1} is newer"):
        Spec.from_json(json.dumps(raw))


def test_vanished_files_are_all_named(project: Project, tmp_path: Path) -> None:
    gone_a = tmp_path / "gone_a.py"
    gone_b = tmp_path / "gone_b.json"
    spec = replace(
        project.spec,
        local=(
            *project.spec.local,
            LocalFile(str(gone_a), "gone_a.py", "module", "t"),
            LocalFile(str(gone_b), "gone_b.json", "data", "t"),
        ),
    )
    with pytest.raises(BuildError) as info:
        build(spec, tmp_path / "out")
    assert str(gone_a) in str(info.value) and str(gone_b) in str(info.value)
    assert "2 file(s)" in str(info.value)
    assert not list((tmp_path / "out").glob("envpack-*.tar.gz"))


def test_unwritable_output_dir(project: Project, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BuildError, match="cannot create output dir"):
        build(project.spec, blocker / "sub")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):  # root ignores modes: a read-only bind mount instead
            res = subprocess.run(
                [
                    "unshare",
                    "--mount",
                    "sh",
                    "-c",
                    f"mount --bind -o ro '{ro}' '{ro}' && touch '{ro}/x'",
                ],
                capture_output=True,
            )
            assert res.returncode != 0
        else:
            with pytest.raises(BuildError, match="not writable"):
                build(project.spec, ro)
    finally:
        ro.chmod(0o755)


def test_disk_full_leaves_nothing(project: Project, tmp_path: Path) -> None:
    """A 2 MB tmpfs: the build fails with a clear error and no partial file is left behind."""
    reason = _can_hide()
    if reason:
        pytest.skip(reason)
    small = tmp_path / "small"
    small.mkdir()
    spec_file = tmp_path / "spec.json"
    project.spec.write(spec_file)
    code = (
        "import sys, os\n"
        "from pathlib import Path\n"
        "from envpack.build import build\n"
        "from envpack.errors import BuildError\n"
        "from envpack.spec import Spec\n"
        f"try:\n    build(Spec.read(Path({str(spec_file)!r})), {str(small)!r}, level=1)\n"
        "except BuildError as e:\n    print('ERR', e)\n"
        f"print('LEFT', sorted(os.listdir({str(small)!r})))\n"
    )
    script = f"mount -t tmpfs -o size=2m none '{small}' && exec \"$@\""
    res = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, "sh", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    assert res.returncode == 0, res.stderr
    assert "ERR no space left on device" in res.stdout
    left = res.stdout.split("LEFT", 1)[1].strip()
    assert ".part" not in left and ".tar.gz" not in left
    assert errno.ENOSPC  # the errno the builder maps to this message


def test_an_archive_name_added_twice_is_refused(project: Project, tmp_path: Path) -> None:
    # What adds entries after the collector (the conda backend) must not list a file twice.
    collection = collect(project.spec, tmp_path / "stage")
    arc = next(e.arcname for e in collection.entries if e.group == "PyYAML")
    collection.entries.append(Entry(arc, 0o644, b"other bytes", "conda"))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BuildError, match=r"1 archive name\(s\) added more than once") as info:
        assemble(project.spec, out, collection, level=1, digest_cache=False)
    assert f"{arc} (from PyYAML and conda)" in str(info.value)
    assert list(out.iterdir()) == []


# -- temporary files of killed builds ---------------------------------------------------------

# A child that opens a part file with the builder's own helper, half-writes it, says its name
# and holds its lock until killed: a build in progress, without timing a real one.
_HOLD_PART = """
import sys, time
from pathlib import Path
from envpack.build import _part_file
with _part_file(Path(sys.argv[1])) as (fh, tmp):
    fh.write(b"half a tarball")
    fh.flush()
    print(tmp, flush=True)
    time.sleep(600)
"""


def _hold_part(out: Path) -> tuple[subprocess.Popen[str], Path]:
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD_PART, str(out / "envpack-0123456789abcdef.tar.gz")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    assert child.stdout is not None
    part = Path(child.stdout.readline().strip())
    assert part.parent == out and part.is_file(), part
    assert fnmatch.fnmatch(part.name, PART_GLOB)
    return child, part


def test_a_killed_builds_part_is_removed_by_the_next_build(
    project: Project, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    child, part = _hold_part(out)
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    assert part.is_file()  # SIGKILL ran no clean-up; the lock died with the process
    other = out / ".download.part"  # not envpack's: never touched
    other.write_text("x")
    env = build(project.spec, out, level=1)
    assert not part.exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [env.path.name, "envpack-run", other.name]
    )


def test_a_live_builds_part_is_kept(project: Project, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    child, part = _hold_part(out)
    try:
        build(project.spec, out, level=1)
        assert part.read_bytes() == b"half a tarball"  # its lock is held: a concurrent build's
    finally:
        child.kill()
        child.wait()
    again = build(project.spec, out, level=1)  # a cache hit cleans up too
    assert again.cached
    assert not part.exists()


# -- test suites inside distributions ---------------------------------------------------------


def _with_test_suites(project: Project, root: Path, modules: tuple[str, ...]) -> Spec:
    """The project's Spec plus a distribution holding test suites at several depths."""
    site = root / "site"
    files = {
        "pkgt/__init__.py": "from pkgt.testing import helper\n",
        "pkgt/testing/__init__.py": "def helper():\n    return 1\n",
        "pkgt/tests/__init__.py": "",
        "pkgt/tests/test_a.py": "def test_a():\n    assert True\n",
        "pkgt/core/__init__.py": "",
        "pkgt/core/test/data.bin": "x" * 500,
        "tests/__init__.py": "TOP = 1\n",  # a top-level package named tests: never dropped
        "pkgt-1.0.dist-info/RECORD": "",
        "pkgt-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: pkgt\nVersion: 1.0\n",
    }
    for rel, text in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    dist = Distribution(
        name="pkgt",
        version="1.0",
        location=str(site),
        files=tuple(sorted(files)),
        size=sum(len(t) for t in files.values()),
        modules=modules,
        why=("proc", "pkgt"),
    )
    return replace(project.spec, distributions=(*project.spec.distributions, dist))


def _members(env: Environment) -> set[str]:
    with tarfile.open(env.path) as tar:
        return set(tar.getnames())


def test_test_suites_dropped_by_default_kept_on_request(project: Project, tmp_path: Path) -> None:
    spec = _with_test_suites(project, tmp_path, ("pkgt", "tests"))
    site = "lib/python3.11/site-packages"
    dropped = build(spec, tmp_path / "drop", level=1)
    names = _members(dropped)
    assert f"{site}/pkgt/__init__.py" in names
    assert f"{site}/pkgt/testing/__init__.py" in names
    assert f"{site}/tests/__init__.py" in names
    assert f"{site}/pkgt-1.0.dist-info/METADATA" in names
    assert not any(n.startswith((f"{site}/pkgt/tests", f"{site}/pkgt/core/test")) for n in names)
    assert dropped.dropped_files == 3
    assert dropped.dropped_size == 500 + len("def test_a():\n    assert True\n")

    kept = build(spec, tmp_path / "keep", level=1, keep_tests=True)
    names = _members(kept)
    assert f"{site}/pkgt/tests/test_a.py" in names and f"{site}/pkgt/core/test/data.bin" in names
    assert kept.dropped_files == 0 and kept.hash != dropped.hash


def test_test_suite_reached_by_name_is_kept(project: Project, tmp_path: Path) -> None:
    spec = _with_test_suites(project, tmp_path, ("pkgt", "pkgt.tests.test_a"))
    env = build(spec, tmp_path / "out", level=1)
    names = _members(env)
    assert "lib/python3.11/site-packages/pkgt/tests/test_a.py" in names
    assert "lib/python3.11/site-packages/pkgt/core/test/data.bin" not in names
    assert env.dropped_files == 1


# -- digest cache ------------------------------------------------------------------------------


def test_digest_cache_rebuild_sees_every_change(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache hit names the same tarball; content, size or mtime changes give a new one."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    data = tmp_path / "table.json"
    data.write_text('{"v": 1}\n')
    os.utime(data, (1_600_000_000, 1_600_000_000))
    item = LocalFile(str(data), "table.json", "data", "open")
    spec = replace(project.spec, local=(*project.spec.local, item))
    first = build(spec, tmp_path / "a", level=1)
    assert list((tmp_path / "xdg" / "envpack").glob("digests-*.marshal"))
    hit = build(spec, tmp_path / "a", level=1)
    assert hit.cached and hit.hash == first.hash
    seen = {first.hash}

    def rebuilt() -> Environment:
        env = build(spec, tmp_path / "a", level=1)
        assert not env.cached and env.hash not in seen
        seen.add(env.hash)
        with tarfile.open(env.path) as tar:
            member = tar.extractfile("local/table.json")
            assert member is not None and member.read() == data.read_bytes()
        return env

    data.write_text('{"v": 2}\n')  # same size, mtime put back
    os.utime(data, (1_600_000_000, 1_600_000_000))
    rebuilt()
    data.write_text('{"v": 22}\n')  # size
    os.utime(data, (1_600_000_000, 1_600_000_000))
    rebuilt()
    os.utime(data, (1_600_000_100, 1_600_000_100))  # mtime only: same content, same hash
    again = build(spec, tmp_path / "a", level=1)
    assert again.cached and again.hash in seen


# -- debug sections ----------------------------------------------------------------------------


def _debug_sections(data: bytes) -> list[str]:
    import io

    from elftools.elf.elffile import ELFFile

    elf = ELFFile(io.BytesIO(data))
    return [s.name for s in elf.iter_sections() if s.name.startswith(".debug_")]


def _debug_build(project: Project, root: Path) -> Spec:
    """The project's Spec plus a distribution whose extension module has DWARF (gcc -g)."""
    site = root / "site"
    (site / "dbgmod").mkdir(parents=True)
    src = root / "dbg.c"
    src.write_text(
        "#include <Python.h>\n"
        'static struct PyModuleDef m = {PyModuleDef_HEAD_INIT, "_dbg", 0, -1, 0};\n'
        "PyMODINIT_FUNC PyInit__dbg(void) { return PyModule_Create(&m); }\n"
    )
    so = site / "dbgmod" / "_dbg.so"
    include = sysconfig.get_paths()["include"]
    _run("gcc", "-g", "-shared", "-fPIC", f"-I{include}", "-o", so, src)
    (site / "dbgmod" / "__init__.py").write_text("from dbgmod import _dbg\n")
    files = ("dbgmod/__init__.py", "dbgmod/_dbg.so")
    dist = Distribution(
        name="dbgmod",
        version="1.0",
        location=str(site),
        files=files,
        size=sum((site / f).stat().st_size for f in files),
        modules=("dbgmod",),
        why=("proc", "dbgmod"),
    )
    return replace(project.spec, distributions=(*project.spec.distributions, dist))


@pytest.mark.skipif(shutil.which("objcopy") is None, reason="needs binutils' objcopy")
def test_debug_sections_stripped_unless_kept(project: Project, tmp_path: Path) -> None:
    spec = _debug_build(project, tmp_path)
    member = "lib/python3.11/site-packages/dbgmod/_dbg.so"
    original = (tmp_path / "site" / "dbgmod" / "_dbg.so").read_bytes()
    assert _debug_sections(original)

    env = build(spec, tmp_path / "strip", level=1)
    root = tmp_path / "env"
    root.mkdir()
    with tarfile.open(env.path) as tar:
        tar.extractall(root, filter="tar")
    stripped = (root / member).read_bytes()
    assert not _debug_sections(stripped) and len(stripped) < len(original)
    manifest = json.loads((root / MANIFEST).read_text())
    (entry,) = [f for f in manifest["files"] if f["path"] == member]
    assert entry["size"] == len(stripped)
    # still a loadable extension module, from the unpacked env
    proc = _run(root / "bin" / "python", "-I", "-c", "import dbgmod._dbg as m; print(m.__name__)")
    assert proc.stdout.strip() == "dbgmod._dbg"

    kept = build(spec, tmp_path / "keep", level=1, keep_debug=True)
    with tarfile.open(kept.path) as tar:
        fh = tar.extractfile(member)
        assert fh is not None and fh.read() == original
    assert kept.hash != env.hash


def test_two_builds_with_a_warm_digest_cache_are_byte_identical(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stripped and pyc entries come from the digest cache the second time: same bytes."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    spec = _debug_build(project, tmp_path)
    old = 1_600_000_000
    for path in (tmp_path / "site").rglob("*"):
        os.utime(path, (old, old))
    first = build(spec, tmp_path / "a", level=1)
    second = build(spec, tmp_path / "b", level=1)
    assert not second.cached
    assert first.path.read_bytes() == second.path.read_bytes()


def test_has_debug_reads_section_headers(project: Project, tmp_path: Path) -> None:
    spec = _debug_build(project, tmp_path)
    so = tmp_path / "site" / "dbgmod" / "_dbg.so"
    assert has_debug(so)
    plain = tmp_path / "plain.so"
    _run(
        "gcc",
        "-shared",
        "-fPIC",
        "-o",
        plain,
        tmp_path / "dbg.c",
        f"-I{sysconfig.get_paths()['include']}",
    )
    assert not has_debug(plain)
    (tmp_path / "text.so").write_text("not an ELF file at all, but long enough " * 4)
    assert not has_debug(tmp_path / "text.so")
    (tmp_path / "short").write_bytes(b"\x7fELF\x02\x01")
    assert not has_debug(tmp_path / "short")
    assert not has_debug(tmp_path / "absent")
    assert spec.distributions[-1].name == "dbgmod"


def test_the_name_is_the_content_not_how_the_build_was_invoked(
    project: Project, built: Environment, tmp_path: Path
) -> None:
    """`envpack build proc.py` and `analyze --python VENV/bin/python` + `build SPEC` name the
    interpreter differently in the Spec; the same files must still give the same name."""
    interp = replace(project.spec.interpreter, executable=project.spec.interpreter.executable + "3")
    other = replace(project.spec, interpreter=interp, warnings=("analyzed another way",))
    assert other.to_json() != project.spec.to_json()
    again = build(other, tmp_path, level=1)
    assert again.hash == built.hash
    with tarfile.open(again.path) as tar:
        member = tar.extractfile(".envpack/spec.json")
        assert member is not None and b"analyzed another way" in member.read()


# -- the glibc floor ---------------------------------------------------------------------------


def test_target_glibc_names_every_culprit(project: Project, tmp_path: Path) -> None:
    """A distribution's library needing GLIBC_2.25 (getrandom) and the interpreter itself."""
    from tests.analyzer.ccompile import compile_c

    site = tmp_path / "site"
    so = compile_c("uses_getrandom.c", site / "grmod" / "_gr.so")
    (site / "grmod" / "__init__.py").write_text("")
    files = ("grmod/__init__.py", "grmod/_gr.so")
    dist = Distribution(
        name="grmod", version="1.0", location=str(site), files=files,
        size=sum((site / f).stat().st_size for f in files), modules=("grmod",), why=("proc",),
    )  # fmt: skip
    spec = replace(project.spec, distributions=(*project.spec.distributions, dist))
    arc = f"lib/{PY}/site-packages/grmod/_gr.so"
    assert "2.25" in read_elf(so).glibc
    with pytest.raises(BuildError) as excinfo:
        build(spec, tmp_path / "old", level=1, target_glibc="2.24")
    message = str(excinfo.value)
    assert "newer than --target-glibc 2.24" in message
    lines = [line.strip() for line in message.splitlines()]
    assert f"{arc}: GLIBC_2.25" in lines
    needs = read_elf(os.path.realpath(project.spec.interpreter.real_executable)).glibc
    newer = [v for v in needs if tuple(map(int, v.split("."))) > (2, 24)]
    assert f"bin/{PY}: " + ", ".join(f"GLIBC_{v}" for v in newer) in lines
    assert not list((tmp_path / "old").glob("envpack-*"))
    # Floors at or above every need build; without one nothing is checked.
    highest = max(
        (v for a, p in collect(spec, tmp_path / "stage").elves for v in read_elf(p).glibc),
        key=lambda v: tuple(map(int, v.split("."))),
    )
    assert build(spec, tmp_path / "ok", level=1, target_glibc=highest).path.is_file()
