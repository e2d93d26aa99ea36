"""Import analysis on real files: processors and fake third-party trees written in tmp_path.

The target is the running interpreter (its stdlib) with sys.path replaced by tmp site dirs, so
each test decides exactly what is "installed"; nothing analyzed is ever imported.
"""

from __future__ import annotations

import os
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from envpack.analyzer.imports import ImportGraph, find_imports
from envpack.analyzer.interpreter import Target, probe
from envpack.errors import UsageError
from tests.conftest import FixtureVenv


def make_target(
    *site_dirs: Path, version: tuple[int, int, int] | None = None, platform: str = ""
) -> Target:
    base = probe()
    stdlib = base.interpreter.stdlib
    std = tuple(p for p in base.sys_path if p.startswith(stdlib) and "-packages" not in p)
    interp = replace(
        base.interpreter,
        sys_path=std + tuple(str(d) for d in site_dirs),
        platform=platform or base.interpreter.platform,
    )
    return replace(base, interpreter=interp, version_info=version or base.version_info)


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))


def analyze(proc: Path, target: Target, tmp: Path, **kw: object) -> ImportGraph:
    kw.setdefault("cache_dir", tmp / "cache")
    return find_imports([proc], target, **kw)  # type: ignore[arg-type]


@pytest.fixture()
def site(tmp_path: Path) -> Path:
    d = tmp_path / "site-packages"
    d.mkdir()
    return d


def test_local_helpers_relative_imports_and_star(tmp_path: Path, site: Path) -> None:
    write(
        tmp_path / "ana",
        {
            "proc.py": """
                import helpers.physics
                from helpers import cuts
                """,
            "helpers/__init__.py": "from . import weights\n",
            "helpers/weights.py": "from .sub import *\n",
            "helpers/sub/__init__.py": "__all__ = ['jets', 'CONST']\nCONST = 1\n",
            "helpers/sub/jets.py": "from ..physics import mass\n",
            "helpers/physics.py": "def mass():\n    from .lazyhelper import f\n    return f\n",
            "helpers/lazyhelper.py": "f = 1\n",
            "helpers/cuts.py": "X = 1\n",
            "helpers/unused.py": "import not_there_at_all\n",
        },
    )
    g = analyze(tmp_path / "ana" / "proc.py", make_target(site), tmp_path)
    names = {n for n, m in g.modules.items() if m.kind == "local"}
    assert names == {
        "proc",
        "helpers",
        "helpers.physics",
        "helpers.cuts",
        "helpers.weights",
        "helpers.sub",
        "helpers.sub.jets",  # named by __all__, imported by the star
        "helpers.lazyhelper",  # function-level import in local code is followed
    }
    assert g.modules["helpers"].is_package and not g.modules["helpers.cuts"].is_package
    assert g.modules["helpers.sub.jets"].chain == (
        "proc",
        "helpers",
        "helpers.weights",
        "helpers.sub.jets",
    )
    assert g.modules["helpers.cuts"].site == f"{tmp_path / 'ana' / 'proc.py'}:2"
    assert g.modules["proc"].chain == ("proc",) and g.roots == ("proc",)
    assert not g.missing


def test_dynamic_literal_imports(tmp_path: Path, site: Path) -> None:
    write(
        site,
        {
            "dyn/__init__.py": """
                import importlib
                from importlib import import_module
                _hard = ("dep_a", "dep_b")
                for _d in _hard:
                    try:
                        __import__(_d)
                    except ImportError:
                        pass
                for name in ["dep_c"]:
                    import_module(name)
                importlib.import_module(".plug", package=__name__)
                import_module("dep_d.sub")
                mod = __import__("dep_e")
                importlib.import_module(compute())  # not a literal: ignored
                """,
            "dyn/plug.py": "",
            **{f"dep_{c}/__init__.py": "" for c in "abcde"},
            "dep_d/sub.py": "",
        },
    )
    write(tmp_path, {"proc.py": "import dyn\n"})
    g = analyze(tmp_path / "proc.py", make_target(site), tmp_path)
    for name in ("dep_a", "dep_b", "dep_c", "dep_d.sub", "dep_e", "dyn.plug"):
        assert g.modules[name].kind == "site", name
    assert g.modules["dep_c"].site.endswith("dyn/__init__.py:10")
    assert not g.missing


def test_optional_imports_present_and_absent(tmp_path: Path, site: Path) -> None:
    write(
        site,
        {
            "fast.py": "",
            "slowpure.py": "",
            "fallback.py": "",
        },
    )
    write(
        tmp_path,
        {
            "proc.py": """
                try:
                    import fast
                except ImportError:
                    import slowpure          # not followed: fast resolves
                try:
                    import absent_accel
                except (ModuleNotFoundError, AttributeError):
                    import fallback          # followed: absent_accel does not resolve
                else:
                    import never_else        # dead: the try failed
                try:
                    import fast
                except Exception:
                    pass
                else:
                    import slowpure as s2    # the try succeeded: else runs
                """,
        },
    )
    g = analyze(tmp_path / "proc.py", make_target(site), tmp_path)
    assert "fast" in g.modules and "fallback" in g.modules
    assert g.modules["slowpure"].site.endswith("proc.py:16")
    assert [(m.module, m.optional) for m in g.missing] == [("absent_accel", True)]
    assert not g.errors
    assert any("absent_accel" in w and "proc.py:6" in w for w in g.warnings)


def test_type_checking_and_main_guards(tmp_path: Path, site: Path) -> None:
    write(site, {f"m{i}.py": "" for i in range(8)})
    write(tmp_path, {"main_only.json": "{}", "typing_only.json": "{}"})
    write(
        tmp_path,
        {
            "proc.py": """
                import typing
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    import m0
                if typing.TYPE_CHECKING:
                    import m1
                else:
                    import m2
                if not TYPE_CHECKING:
                    import m3
                if __name__ == "__main__":
                    import m4
                    main(open("main_only.json"))
                if TYPE_CHECKING:
                    X = open("typing_only.json")
                def main():
                    import m5
                import importlib.util
                if importlib.util.find_spec("m6") is not None:
                    import m6
                if importlib.util.find_spec("absent_mod"):
                    import absent_mod
                else:
                    import m7
                """,
        },
    )
    g = analyze(tmp_path / "proc.py", make_target(site), tmp_path)
    assert {"m2", "m3", "m5", "m6", "m7"} <= set(g.modules)  # m5: local function-level import
    assert not {"m0", "m1", "m4", "absent_mod"} & set(g.modules)
    assert not g.errors and not g.data_files  # nothing from blocks that never run
    assert "absent_mod" not in {m.module for m in g.missing}


@pytest.mark.parametrize("version", [(3, 7, 0), (3, 12, 1)])
def test_version_and_platform_dead_branches(
    tmp_path: Path, site: Path, version: tuple[int, int, int]
) -> None:
    names = ("old", "new", "ge38", "lt38", "major3", "win", "lin", "nt", "posix", "unk1", "unk2")
    # Prefixed: a fake "nt.py" would be found by the stdlib's own "import nt".
    write(site, {f"x_{n}.py": "" for n in names})
    write(
        tmp_path,
        {
            "proc.py": """
                import os, sys, platform
                if sys.version_info < (3, 8):
                    import x_old
                else:
                    import x_new
                if sys.version_info[:2] >= (3, 8):
                    import x_ge38
                elif sys.version_info.major == 3:
                    import x_lt38
                if sys.version_info[0] == 3:
                    import x_major3
                _WIN = sys.platform == "win32"
                if _WIN:
                    import x_win
                elif sys.platform.startswith(("linux", "darwin")):
                    import x_lin
                if os.name == "nt":
                    import x_nt
                if platform.system() != "Windows":
                    import x_posix
                if os.environ.get("X"):
                    import x_unk1
                else:
                    import x_unk2
                """,
        },
    )
    g = analyze(
        tmp_path / "proc.py", make_target(site, version=version, platform="linux"), tmp_path
    )
    got = {n[2:] for n in g.modules if n.startswith("x_")}
    old = version < (3, 8)
    assert ("old" in got) is old and ("new" in got) is not old
    assert ("ge38" in got) is not old and ("lt38" in got) is old
    assert {"major3", "lin", "posix", "unk1", "unk2"} <= got
    assert not {"win", "nt"} & got


def test_windows_target_flips_platform_branches(tmp_path: Path, site: Path) -> None:
    write(site, {"win.py": "", "lin.py": ""})
    write(
        tmp_path,
        {
            "proc.py": """
                import sys
                if sys.platform == 'win32':
                    import win
                else:
                    import lin
                """
        },
    )
    g = analyze(tmp_path / "proc.py", make_target(site, platform="win32"), tmp_path)
    assert "win" in g.modules and "lin" not in g.modules


def test_called_function_counts_as_module_level(tmp_path: Path, site: Path) -> None:
    write(
        site,
        {
            "numbaish/__init__.py": """
                def _ensure_critical_deps():
                    import scipyish
                    _inner()
                def _inner():
                    from . import deep
                def _not_called():
                    import lazydep
                _ensure_critical_deps()
                """,
            "numbaish/deep.py": "",
            "scipyish.py": "",
            "lazydep.py": "",
        },
    )
    write(tmp_path, {"proc.py": "import numbaish\n"})
    g = analyze(tmp_path / "proc.py", make_target(site), tmp_path)
    assert {"scipyish", "numbaish.deep"} <= set(g.modules)
    assert "lazydep" not in g.modules
    assert [(c.module, c.site.rsplit("/", 1)[1]) for c in g.lazy] == [("lazydep", "__init__.py:7")]


def test_lazy_third_party_listed_then_followed(tmp_path: Path, site: Path) -> None:
    write(
        site,
        {
            "histish/__init__.py": """
                def plot():
                    import plotlib.pyplot
                def arrow():
                    import arrowlib
                def extra():
                    import not_installed_extra
                """,
            "plotlib/__init__.py": "import plotdep\n",
            "plotlib/pyplot.py": "",
            "plotdep.py": "",
            "arrowlib.py": "",
        },
    )
    write(tmp_path, {"proc.py": "import histish\n"})
    target = make_target(site)
    g = analyze(tmp_path / "proc.py", target, tmp_path)
    assert {c.module for c in g.lazy} == {"plotlib.pyplot", "arrowlib", "not_installed_extra"}
    assert "plotlib" not in g.modules and "arrowlib" not in g.modules

    g = analyze(tmp_path / "proc.py", target, tmp_path, include_lazy=["plotlib"])
    assert {"plotlib", "plotlib.pyplot", "plotdep"} <= set(g.modules)
    assert "arrowlib" not in g.modules
    assert [c.module for c in g.lazy] == ["arrowlib", "not_installed_extra"]
    assert g.modules["plotlib.pyplot"].chain == ("proc", "histish", "plotlib.pyplot")

    g = analyze(tmp_path / "proc.py", target, tmp_path, include_lazy="all")
    assert {"plotlib.pyplot", "arrowlib"} <= set(g.modules)
    # Lazy candidates that are not installed: a warning when asked for, never an error.
    assert not g.lazy and not g.errors
    assert [(m.module, m.optional) for m in g.missing] == [("not_installed_extra", True)]


def test_syntax_error_in_root_and_local_module(tmp_path: Path, site: Path) -> None:
    def position(text: str) -> str:
        try:
            compile(text, "x", "exec")
        except SyntaxError as exc:
            return f"{exc.lineno}:{exc.offset}"
        raise AssertionError("valid")

    root = "import ok\n\nx = [1,\n  2 3]\n"
    (tmp_path / "proc.py").write_text(root)
    (tmp_path / "ok.py").write_text("")
    assert position(root) == "4:3"
    with pytest.raises(UsageError, match=r"proc\.py:4:3: SyntaxError"):
        analyze(tmp_path / "proc.py", make_target(site), tmp_path)
    helper = "# helper\n\nif True\n    pass\n"
    (tmp_path / "proc2.py").write_text("import helper\n")
    (tmp_path / "helper.py").write_text(helper)
    with pytest.raises(UsageError, match=rf"helper\.py:{position(helper)}: SyntaxError"):
        analyze(tmp_path / "proc2.py", make_target(site), tmp_path)


def test_broken_third_party_files_warn(tmp_path: Path, site: Path) -> None:
    (site / "badenc.py").write_bytes(b"# -*- coding: utf-8 -*-\nx = '\xff\xfe'\nimport never\n")
    (site / "badsyntax.py").write_text("import os\ndef f(:\n")
    (site / "nullbytes.py").write_bytes(b"import os\x00\n")
    write(tmp_path, {"proc.py": "import badenc, badsyntax, nullbytes\n"})
    g = analyze(tmp_path / "proc.py", make_target(site), tmp_path)
    assert {"badenc", "badsyntax", "nullbytes"} <= set(g.modules)
    assert len([w for w in g.warnings if "cannot parse" in w]) == 3
    assert "never" not in g.modules and not g.missing


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.py", None, "no such file"),
        ("proc.txt", b"import os\n", "not a Python source file"),
        ("binary.py", b"\x7fELF\x02\x01\x01\x00\x00\x00", "binary"),
        ("adir.py", "dir", "is a directory"),
    ],
)
def test_bad_roots(tmp_path: Path, name: str, content: bytes | str | None, message: str) -> None:
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(UsageError, match=message):
        analyze(path, make_target(), tmp_path)


def test_all_missing_imports_reported_with_sites(tmp_path: Path, site: Path) -> None:
    write(site, {"pkg/__init__.py": "", "thirdparty.py": "import gone_too\n"})
    write(
        tmp_path,
        {
            "proc.py": """
                import nope_one
                from nope_two import x
                import pkg.nope_three
                from pkg import not_a_submodule   # a name: cannot be checked, not an error
                import helper
                import thirdparty
                """,
            "helper.py": "# a helper\n# of the processor\nimport nope_four\n",
        },
    )
    g = analyze(tmp_path / "proc.py", make_target(site), tmp_path)
    got = [(m.module, m.site.rsplit("/", 1)[1], m.optional) for m in g.missing]
    assert got == [
        ("gone_too", "thirdparty.py:1", False),
        ("nope_four", "helper.py:3", False),
        ("nope_one", "proc.py:1", False),
        ("nope_two", "proc.py:2", False),
        ("pkg.nope_three", "proc.py:3", False),
    ]
    assert g.errors == g.missing
    assert next(m for m in g.missing if m.module == "nope_four").chain == ("proc", "helper")


def test_namespace_package_over_two_path_entries(tmp_path: Path) -> None:
    a, b = tmp_path / "site-a", tmp_path / "site-b"
    write(
        a,
        {
            "mpl_toolkits/axes_grid1/__init__.py": "from . import parasite\n",
            "mpl_toolkits/axes_grid1/parasite.py": "",
        },
    )
    write(b, {"mpl_toolkits/mplot3d/__init__.py": "import mpl_toolkits.axes_grid1\n"})
    write(
        tmp_path / "ana",
        {"proc.py": "from mpl_toolkits import mplot3d\nimport mpl_toolkits.axes_grid1.parasite\n"},
    )
    g = analyze(tmp_path / "ana" / "proc.py", make_target(a, b), tmp_path)
    ns = g.modules["mpl_toolkits"]
    assert ns.is_package and ns.path is None and ns.kind == "site"
    assert ns.package_path == (str(a / "mpl_toolkits"), str(b / "mpl_toolkits"))
    assert g.modules["mpl_toolkits.mplot3d"].path == str(b / "mpl_toolkits/mplot3d/__init__.py")
    assert "mpl_toolkits.axes_grid1.parasite" in g.modules and not g.missing


def test_pkgutil_namespace_and_local_dir_without_init(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    init = "__path__ = __import__('pkgutil').extend_path(__path__, __name__)\n"
    write(a, {"zope/__init__.py": init, "zope/interface.py": ""})
    write(b, {"zope/__init__.py": init, "zope/event.py": ""})
    write(
        tmp_path / "ana",
        {
            "proc.py": "import zope.interface, zope.event\nfrom helpers import cuts\n",
            "helpers/cuts.py": "",
        },
    )
    g = analyze(tmp_path / "ana" / "proc.py", make_target(a, b), tmp_path)
    assert g.modules["zope"].package_path == (str(a / "zope"), str(b / "zope"))
    assert g.modules["zope.event"].path == str(b / "zope" / "event.py")
    helpers = g.modules["helpers"]
    assert helpers.kind == "local" and helpers.is_package and helpers.path is None
    assert g.modules["helpers.cuts"].kind == "local" and not g.errors


def test_setuptools_editable_finder_mapping(tmp_path: Path, site: Path) -> None:
    src = tmp_path / "project"
    write(src, {"edpkg/__init__.py": "from . import sub\n", "edpkg/sub.py": "", "edmod.py": ""})
    mapping = {"edpkg": str(src / "edpkg"), "edmod": str(src / "edmod")}
    write(
        site,
        {
            "__editable__.ed-0.1.pth": "import __editable___ed_0_1_finder; ...\n",
            "__editable___ed_0_1_finder.py": f"MAPPING: dict[str, str] = {mapping!r}\n",
        },
    )
    write(tmp_path / "ana", {"proc.py": "import edpkg, edmod\n"})
    g = analyze(tmp_path / "ana" / "proc.py", make_target(site), tmp_path)
    assert g.modules["edpkg.sub"].path == str(src / "edpkg" / "sub.py")
    assert g.modules["edmod"].path == str(src / "edmod.py")
    assert g.modules["edpkg"].kind == "local"  # editable source ships as local code
    assert not g.missing


def test_regular_package_wins_over_namespace_portion(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "thing").mkdir(parents=True)  # a bare directory, earlier on the path
    write(b, {"thing.py": "", "pkg/__init__.py": ""})
    (a / "pkg").mkdir()
    write(tmp_path / "ana", {"proc.py": "import thing, pkg\n"})
    g = analyze(tmp_path / "ana" / "proc.py", make_target(a, b), tmp_path)
    assert g.modules["thing"].path == str(b / "thing.py")
    assert g.modules["pkg"].path == str(b / "pkg" / "__init__.py")


def test_deep_chain_does_not_recurse(tmp_path: Path, site: Path) -> None:
    n = 3000
    for i in range(n):
        (site / f"chain{i}.py").write_text(f"import chain{i + 1}\n" if i + 1 < n else "")
    write(tmp_path, {"proc.py": "import chain0\n"})
    g = analyze(tmp_path / "proc.py", make_target(site), tmp_path, jobs=1)
    assert f"chain{n - 1}" in g.modules
    assert len(g.modules[f"chain{n - 1}"].chain) == n + 1


def test_data_files_opened_by_literal_paths(
    tmp_path: Path, site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ana = tmp_path / "ana"
    write(
        ana,
        {
            "proc.py": """
                import json, os
                from pathlib import Path
                import correctionlib
                import helpers.sf, helpers.tables
                SF = json.load(open("data/sf.json"))
                CSET = correctionlib.CorrectionSet.from_file("corrections/sf.json.gz")
                LUMI = Path(__file__).parent / "lumi" / "golden.txt"
                TREE = os.path.join(os.path.dirname(__file__), "tables")
                NOPE = open("does/not/exist.json")
                OUT = "data/sf.json"                 # a bare string is not a use
                """,
            "data/sf.json": "{}",
            "corrections/sf.json.gz": "x",
            "lumi/golden.txt": "x",
            "tables/a.csv": "x",
            "helpers/__init__.py": "",
            "helpers/sf.py": """
                import numpy as np
                class P:
                    def __init__(self):
                        self.w = np.load('weights.npy')
                """,
            "helpers/weights.npy": "x",
            "helpers/tables.py": """
                import pathlib
                T = pathlib.Path(__file__).parent / 'pt' / 'bins.csv'
                """,
            "helpers/pt/bins.csv": "x",
        },
    )
    write(site, {"correctionlib.py": "", "numpy.py": "def load(p): pass\n"})
    write(tmp_path / "cwd", {"cwd_only.txt": "x"})
    monkeypatch.chdir(tmp_path / "cwd")
    (ana / "helpers" / "late.py").write_text("open('cwd_only.txt')\n")
    (ana / "proc.py").write_text((ana / "proc.py").read_text() + "import helpers.late\n")
    g = analyze(ana / "proc.py", make_target(site), tmp_path)
    got = {(d.relpath, d.base, d.arcname, d.is_dir, d.site.rsplit("/", 1)[1]) for d in g.data_files}
    assert got == {
        ("data/sf.json", "cwd", "data/sf.json", False, "proc.py:5"),
        ("corrections/sf.json.gz", "cwd", "corrections/sf.json.gz", False, "proc.py:6"),
        ("lumi/golden.txt", "file", "lumi/golden.txt", False, "proc.py:7"),
        ("tables", "file", "tables", True, "proc.py:8"),
        # found next to helpers/sf.py, but a bare path is opened from the working directory
        ("weights.npy", "cwd", "weights.npy", False, "sf.py:4"),
        ("pt/bins.csv", "file", "helpers/pt/bins.csv", False, "tables.py:2"),
        ("cwd_only.txt", "cwd", "cwd_only.txt", False, "late.py:1"),
    }
    assert all(os.path.isabs(d.path) and os.path.exists(d.path) for d in g.data_files)


def test_several_roots_and_relative_import_beyond_top_level(tmp_path: Path, site: Path) -> None:
    write(
        tmp_path,
        {
            "one.py": "import two\nfrom . import sibling\n",
            "two.py": "",
            "three.py": "import json\n",
        },
    )
    g = find_imports(
        [tmp_path / "one.py", tmp_path / "three.py"], make_target(site), cache_dir=False
    )
    assert g.roots == ("one", "three") and g.modules["two"].chain == ("one", "two")
    assert [(m.module, m.site.rsplit("/", 1)[1]) for m in g.errors] == [(".sibling", "one.py:2")]


def test_pyc_only_and_extension_modules(tmp_path: Path, site: Path) -> None:
    src = tmp_path / "compiled_src.py"
    src.write_text("import json\nimport behind_pyc\n")
    import py_compile

    py_compile.compile(str(src), cfile=str(site / "compiled.pyc"))
    write(site, {"behind_pyc.py": ""})
    suffix = make_target().extension_suffixes[0]
    (site / f"fastext{suffix}").write_bytes(b"\x7fELF not really, never read")
    write(tmp_path / "ana", {"proc.py": "import compiled, fastext\n"})
    g = analyze(tmp_path / "ana" / "proc.py", make_target(site), tmp_path)
    assert g.modules["compiled"].path == str(site / "compiled.pyc")
    assert "behind_pyc" in g.modules and g.modules["json"].kind == "stdlib"
    assert g.modules["fastext"].path == str(site / f"fastext{suffix}")
    assert not g.warnings
    # Bytecode of another Python version cannot be read: a warning naming it, not a crash.
    data = (site / "compiled.pyc").read_bytes()
    (site / "compiled.pyc").write_bytes(b"\x00\x00\r\n" + data[4:])
    g = analyze(tmp_path / "ana" / "proc.py", make_target(site), tmp_path)
    assert "compiled" in g.modules and "behind_pyc" not in g.modules
    assert [w for w in g.warnings if "compiled.pyc" in w and "another Python version" in w]


def test_stdlib_and_builtin_classification(tmp_path: Path, site: Path) -> None:
    write(tmp_path, {"proc.py": "import sys, json, math, os.path\n"})
    g = analyze(tmp_path / "proc.py", make_target(site), tmp_path)
    assert g.modules["sys"].kind == "builtin" and g.modules["sys"].path is None
    assert g.modules["json"].kind == "stdlib" and g.modules["json"].is_package
    assert g.modules["posixpath"].kind == "stdlib"
    assert g.modules["math"].kind in ("builtin", "stdlib")
    assert not g.errors


def test_parse_cache_reused_and_invalidated(tmp_path: Path, site: Path) -> None:
    write(site, {"alpha.py": "", "omega.py": "", "gamma.py": ""})
    helper = tmp_path / "helper.py"
    write(tmp_path, {"proc.py": "import helper\n", "helper.py": "import alpha\n"})
    target = make_target(site)
    first = analyze(tmp_path / "proc.py", target, tmp_path)
    assert "alpha" in first.modules
    assert list((tmp_path / "cache").iterdir())
    warm = analyze(tmp_path / "proc.py", target, tmp_path)
    assert warm == first and warm.parse_stats.parsed == 0 and warm.parse_stats.hashed == 0
    # Same size, same mtime, other content: the cache is keyed on content (and the stat that
    # says a file is unchanged includes the ctime, which utime cannot set back).
    st = helper.stat()
    helper.write_text("import omega\n")
    assert helper.stat().st_size == st.st_size
    os.utime(helper, ns=(st.st_atime_ns, st.st_mtime_ns))
    edited = analyze(tmp_path / "proc.py", target, tmp_path)
    assert "omega" in edited.modules and "alpha" not in edited.modules
    # Read: helper.py, and omega.py, new to the walk; parsed: only helper.py, for omega.py is
    # empty, as alpha.py is: the same content, already summarized.
    assert edited.parse_stats.hashed == 2 and edited.parse_stats.parsed == 1
    # Back to the first content: known by its digest, read but not parsed again.
    helper.write_text("import alpha\n")
    back = analyze(tmp_path / "proc.py", target, tmp_path)
    assert back == first and back.parse_stats.hashed == 1 and back.parse_stats.parsed == 0
    # No cache at all: always the file's current content.
    helper.write_text("import gamma  # edited\n")
    assert "gamma" in analyze(tmp_path / "proc.py", target, tmp_path, cache_dir=False).modules


def test_parallel_parse_matches_serial_and_is_stable(tmp_path: Path, site: Path) -> None:
    for i in range(80):
        body = "\n".join(f"import leaf{i}_{j}" for j in range(3))
        (site / f"mid{i}.py").write_text(
            f"try:\n    import opt{i}\nexcept ImportError:\n    pass\n{body}\n"
        )
        for j in range(3):
            (site / f"leaf{i}_{j}.py").write_text("import json\n")
    write(tmp_path, {"proc.py": "\n".join(f"import mid{i}" for i in range(80)) + "\n"})
    target = make_target(site)
    serial = analyze(tmp_path / "proc.py", target, tmp_path, cache_dir=False, jobs=1)
    parallel = analyze(tmp_path / "proc.py", target, tmp_path, cache_dir=False, jobs=2)
    cached = analyze(tmp_path / "proc.py", target, tmp_path, jobs=2)
    again = analyze(tmp_path / "proc.py", target, tmp_path, jobs=2)
    assert serial == parallel == cached == again
    assert len([m for m in serial.modules if m.startswith("leaf")]) == 240
    assert len(serial.missing) == 80 and all(m.optional for m in serial.missing)


def test_vendored_extern_and_plain_module_submodules(tmp_path: Path, site: Path) -> None:
    write(
        site,
        {
            "pkg_resources/__init__.py": """
                import pkg_resources.extern.packaging
                from pkg_resources.extern.jaraco import text
                """,
            "pkg_resources/extern/__init__.py": "",
            "pkg_resources/_vendor/packaging/__init__.py": "",
            "jaraco/__init__.py": "",
            "six.py": "",
            "uses_six.py": "from six.moves import urllib\nimport os.path\n",
        },
    )
    write(tmp_path, {"proc.py": "import pkg_resources, uses_six\n"})
    g = analyze(tmp_path / "proc.py", make_target(site), tmp_path)
    assert {"pkg_resources._vendor.packaging", "jaraco", "six", "posixpath"} <= set(g.modules)
    assert not g.errors
    assert all(m.site.startswith(make_target().interpreter.stdlib) for m in g.missing)


def test_unknown_condition_in_third_party_is_optional(tmp_path: Path, site: Path) -> None:
    write(
        site,
        {
            "lieflike/__init__.py": "from ._core import ext\nif ext:\n    from ._ext import v\n",
            "lieflike/_core.py": "ext = False\n",
        },
    )
    write(tmp_path, {"proc.py": "import lieflike\nif UNKNOWN:\n    import local_missing\n"})
    g = analyze(tmp_path / "proc.py", make_target(site), tmp_path)
    assert [(m.module, m.optional) for m in g.missing] == [
        ("lieflike._ext", True),
        ("local_missing", False),
    ]


FIXTURE_PROC = Path(__file__).parent.parent / "fixtures" / "processors" / "dimuon" / "proc.py"


def test_fixture_processor_in_fixture_venv(tmp_path: Path, fixture_venv: object) -> None:
    python = fixture_venv.python  # type: ignore[attr-defined]
    g = find_imports([FIXTURE_PROC], probe(python), cache_dir=tmp_path / "cache")
    assert {"yaml", "fxcore", "fxcore.util", "fxensured", "fxns.a", "fxns.b"} <= set(g.modules)
    assert g.modules["yaml"].kind == "site" and g.modules["fxns"].path is None
    assert not {"fxtyping", "fxlazy", "fxunused"} & set(g.modules)
    assert [c.module for c in g.lazy if c.module.startswith("fx")] == ["fxlazy"]
    assert g.modules["fxensured"].chain == ("proc", "fxcore", "fxensured")
    local = {n for n, m in g.modules.items() if m.kind == "local"}
    assert local == {"proc", "tools", "tools.select", "tools.weights"}
    assert [(d.arcname, d.base) for d in g.data_files] == [("corrections/sf.json", "file")]
    assert not g.errors and not g.warnings
    # What is missing is the stdlib's own platform fallbacks (ntpath's _winapi), all optional.
    assert all(m.site.startswith(probe(python).interpreter.stdlib) for m in g.missing)


def test_does_not_execute_analyzed_code(tmp_path: Path, site: Path) -> None:
    marker = tmp_path / "executed"
    write(site, {"evil.py": f"open({str(marker)!r}, 'w').write('x')\n"})
    write(tmp_path, {"proc.py": f"import evil\nopen({str(marker)!r}, 'w')\n"})
    analyze(tmp_path / "proc.py", make_target(site), tmp_path)
    assert not marker.exists()
    assert "evil" not in sys.modules


# -- no dead ends: real-world patterns, each a fixture package installed in the fixture venv ---


def _graph(tmp_path: Path, fixture_venv: FixtureVenv, body: str, **kw: Any) -> ImportGraph:
    proc = tmp_path / "proc.py"
    proc.write_text(textwrap.dedent(body).lstrip("\n"))
    kw.setdefault("target", probe(fixture_venv.python))
    return find_imports([proc], kw.pop("target"), cache_dir=tmp_path / "cache", **kw)


def _optional(g: ImportGraph) -> dict[str, bool]:
    return {m.module: m.optional for m in g.missing if not m.site.startswith(_STDLIB)}


_STDLIB = probe().interpreter.stdlib


def test_contextlib_suppress_import_error_is_optional(
    tmp_path: Path, fixture_venv: FixtureVenv
) -> None:
    # A validator library imports 8 optional modules this way; under every alias of suppress.
    g = _graph(
        tmp_path,
        fixture_venv,
        """
        import fxvalidators
        from contextlib import suppress
        with suppress(ImportError):
            import fx_absent_local_accel
        """,
    )
    assert _optional(g) == {
        "fx_absent_email": True,  # contextlib.suppress(ImportError)
        "fx_absent_idna": True,  # suppress(ImportError, OSError)
        "fx_absent_phone": True,  # suppress(ModuleNotFoundError)
        "fx_absent_iban": True,  # import contextlib as cl; cl.suppress(...)
        "fx_absent_card": True,  # from contextlib import suppress as ignored; ignored(Exception)
        "fx_absent_local_accel": True,  # in the user's own code too
    }
    assert "fxensured" in g.modules  # what is installed is followed as usual
    assert any("fx_absent_local_accel" in w and "proc.py:4" in w for w in g.warnings)
    # suppress() of another exception, or of none, does not guard an import.
    strict = _graph(tmp_path, fixture_venv, "import fxvalidators.strict\n")
    assert sorted(m.module for m in strict.errors) == ["fx_absent_nothing", "fx_absent_really"]


@pytest.mark.parametrize(
    ("platform", "chosen"),
    [("linux", "_pslinux"), ("win32", "_pswindows"), ("darwin", "_psosx"), ("freebsd14", "_psbsd")],
)
def test_platform_flags_imported_from_a_sibling_module(
    tmp_path: Path, fixture_venv: FixtureVenv, platform: str, chosen: str
) -> None:
    # psutil: ``from ._common import WINDOWS`` then ``elif WINDOWS:``; also ``_common.MACOS``
    # and ``BSD = FREEBSD or OPENBSD or NETBSD`` in the sibling.
    base = probe(fixture_venv.python)
    target = replace(base, interpreter=replace(base.interpreter, platform=platform))
    g = _graph(tmp_path, fixture_venv, "import fxpsutil\n", target=target)
    platform_modules = {n for n in g.modules if n.startswith("fxpsutil._ps")}
    assert platform_modules == {f"fxpsutil.{chosen}"}
    if platform == "linux":
        assert "fxpsutil._fxpsutil_linux" in g.modules and not _optional(g)
    else:
        # A Linux wheel lacks the other platforms' extension: for that target, an error.
        assert [m.module for m in g.errors] == [f"fxpsutil._fxpsutil_{chosen[3:]}"]


def test_toolz_tlz_import_hook_and_distributed_suppress(
    tmp_path: Path, fixture_venv: FixtureVenv
) -> None:
    # dask and distributed import tlz.curried, tlz.functoolz: modules that toolz's meta-path
    # hook (tlz._build_tlz) makes from toolz.X; and distributed's optional snappy.
    g = _graph(tmp_path, fixture_venv, "import fxdistributed\n")
    assert {"tlz", "tlz._build_tlz", "toolz.curried", "toolz.curried.operator"} <= set(g.modules)
    assert {"toolz.functoolz", "fxpsutil._pslinux"} <= set(g.modules)
    assert _optional(g) == {"fx_absent_snappy": True}
    assert not g.errors


def test_run_time_condition_in_third_party_code_warns(
    tmp_path: Path, fixture_venv: FixtureVenv
) -> None:
    # requests: ``if not HAS_SNI: from urllib3.contrib import pyopenssl``, whose module needs
    # pyOpenSSL (not installed): the walk follows it, but its failure cannot be an error.
    g = _graph(tmp_path, fixture_venv, "import fxrequests\n")
    assert "fxurllib3.contrib.pyopenssl" in g.modules
    assert _optional(g) == {"OpenSSL": True, "fx_absent_cryptography": True}
    opener = next(m for m in g.missing if m.module == "OpenSSL")
    assert "fxurllib3.contrib.pyopenssl itself is imported only where" in opener.reason


def test_function_called_at_top_level_of_another_module(
    tmp_path: Path, fixture_venv: FixtureVenv
) -> None:
    # importlib_metadata 10.x: ``with lazy_importer():`` at module level, lazy_importer imported
    # from compat.py314, where it is ``nothing if PY315 else backport`` and backport() does
    # ``from lazy_importer import lazy_importer``. Also through ``import … as deferred``.
    g = _graph(tmp_path, fixture_venv, "import fxmetadata\n")
    assert "fxlazyimporter" in g.modules
    assert g.modules["fxlazyimporter"].site.endswith("fxmetadata/compat/py314.py:16")
    assert not [c for c in g.lazy if c.module == "fxlazyimporter"]
    assert {"csv", "locale", "fxmetadata._adapters"} <= set(g.modules)
    assert not g.errors


def test_except_import_error_fallback_when_the_body_may_fail(
    tmp_path: Path, fixture_venv: FixtureVenv
) -> None:
    # ndcctools.taskvine: ``try: import dask; if too old: raise ImportError; from
    # .dask_executor import DaskVine / except ImportError: from .compat import DaskVine``; and a
    # ``try: from ._cvine import Queue`` whose module imports what is not installed.
    g = _graph(tmp_path, fixture_venv, "import fxtaskvine\n")
    assert {"fxdask", "fxtaskvine.dask_executor"} <= set(g.modules)  # the first branch, shipped
    assert {"fxtaskvine.compat.dask_executor", "fxunused"} <= set(g.modules)  # may raise
    assert {"fxtaskvine._cvine", "fxtaskvine._purequeue", "fxlazy"} <= set(g.modules)  # fails
    # What fails inside the first branch is caught by the importer: warnings, not errors (a
    # handler that re-raises, ``except ModuleNotFoundError: print(…); raise``, guards nothing).
    assert _optional(g) == {"fxdask._task_spec": True, "fx_absent_cvine_ext": True}


def test_unreached_local_functions_make_missing_imports_warnings(
    tmp_path: Path, site: Path
) -> None:
    write(
        tmp_path,
        {
            "proc.py": """
                import helpers
                from helpers import make_cluster
                from registry import register

                class Processor(ProcessorABC):
                    def process(self, events):
                        if events.get("debug"):
                            import fx_debug_dep     # a run-time branch of process(): error
                        return self.accumulate(events)

                    def accumulate(self, events):
                        return helpers.scale(events)

                def get_client():
                    from fx_cluster import Client   # only start() calls it: a warning
                    return Client()

                def start():
                    return get_client()

                def main():
                    import fx_cli                   # only __main__ calls it: a warning

                def orphan():
                    import fx_orphan                # nothing calls it: a warning

                @register
                def task():
                    import fx_task_dep              # a decorator may call it: error

                if __name__ == "__main__":
                    main()
                """,
            "helpers.py": """
                def scale(x):
                    return _inner(x)

                def _inner(x):
                    import fx_scale_dep   # process -> accumulate -> helpers.scale -> _inner
                    return x

                def make_cluster():
                    import fx_cluster_helper   # imported by proc, never called: a warning

                def at_import():
                    import fx_top_dep          # called at helpers' top level: error

                at_import()
                """,
            "registry.py": "def register(f):\n    return f\n",
        },
    )
    g = analyze(tmp_path / "proc.py", make_target(site), tmp_path)
    assert sorted(m.module for m in g.errors) == [
        "fx_debug_dep",
        "fx_scale_dep",
        "fx_task_dep",
        "fx_top_dep",
    ]
    warned = {m.module: (m.function, m.reason) for m in g.missing if m.optional}
    assert warned["fx_cluster"] == (
        "get_client",
        "in get_client(), which the worker never runs: it is called only from start(), "
        "which never run either",
    )
    assert warned["fx_orphan"][1].endswith(
        "nothing calls it (not the processor's methods, the classes defined in proc.py, "
        "nor any module's top level)"
    )
    assert warned["fx_cluster_helper"][0] == "make_cluster"
    proc = tmp_path / "proc.py"
    assert any(w.startswith(f"{proc}:15: optional import 'fx_cluster'") for w in g.warnings)
    assert warned["fx_cli"][1].endswith('called only under if __name__ == "__main__":')


def test_exclude_is_never_followed_and_lists_its_sites(tmp_path: Path, site: Path) -> None:
    write(site, {"cluster/__init__.py": "import cluster.sub\n", "cluster/sub.py": ""})
    write(
        tmp_path,
        {
            "proc.py": """
                import cluster
                from distributed import Client
                import distributed.deploy
                try:
                    import fast_excluded
                except ImportError:
                    import fallback_mod
                """,
            "fallback_mod.py": "",
        },
    )
    g = analyze(
        tmp_path / "proc.py",
        make_target(site),
        tmp_path,
        exclude=["cluster", "distributed", "fast_excluded"],
    )
    assert not {"cluster", "cluster.sub", "distributed"} & set(g.modules)
    assert "fallback_mod" in g.modules  # an excluded import fails on the worker
    assert not g.missing
    sites = {e.module: [s.rsplit("/", 1)[1] for s in e.sites] for e in g.excluded}
    assert sites == {
        "cluster": ["proc.py:1"],
        "distributed": ["proc.py:2", "proc.py:3"],
        "fast_excluded": ["proc.py:5"],
    }
