"""The curated hints table: each entry rebuilt as a fake package tree whose import is lazy."""

from __future__ import annotations

from pathlib import Path

import pytest

from envpack.analyzer.hints import HINTS, merged
from envpack.analyzer.imports import HintMiss, find_imports
from tests.analyzer.test_imports import make_target, write


def _fake_tree(site: Path, hinted: str, targets: tuple[str, ...]) -> None:
    """``hinted`` imports every target only inside a function, as uproot.extras does."""
    parts = hinted.split(".")
    files: dict[str, str] = {}
    for i in range(1, len(parts)):
        files["/".join(parts[:i]) + "/__init__.py"] = ""
    body = "".join(
        f"def load_{n}():\n    try:\n        import {t}\n    except ModuleNotFoundError as err:\n"
        f"        raise ModuleNotFoundError('install {t}') from err\n    return {t}\n\n"
        for n, t in enumerate(targets)
    )
    files["/".join(parts) + ".py"] = body
    for t in targets:
        files["/".join(t.split(".")) + "/__init__.py"] = "from . import _core\n"
        files["/".join(t.split(".")) + "/_core.py"] = ""
    write(site, files)


@pytest.mark.parametrize("hinted", sorted(HINTS))
def test_each_hint_makes_its_lazy_import_followed(tmp_path: Path, hinted: str) -> None:
    targets = HINTS[hinted]
    site = tmp_path / "site-packages"
    _fake_tree(site, hinted, targets)
    write(tmp_path, {"proc.py": f"import {hinted}\n"})
    target = make_target(site)
    cache = tmp_path / "cache"

    g = find_imports([tmp_path / "proc.py"], target, cache_dir=cache)
    for t in targets:
        assert g.modules[t].kind == "site"
        assert g.modules[f"{t}._core"].chain == ("proc", hinted, t, f"{t}._core")
        assert g.modules[t].site == f"hint:{hinted}"
    assert not g.lazy and not g.hint_misses

    # Without the hint the same imports are only lazy candidates: the hint is what ships them.
    off = find_imports([tmp_path / "proc.py"], target, cache_dir=cache, hints={hinted: ()})
    assert not set(targets) & set(off.modules)
    assert {c.module for c in off.lazy} == set(targets)


def test_uproot_extras_targets() -> None:
    assert set(HINTS["uproot.extras"]) >= {"lz4", "xxhash", "zstandard"}


def test_missing_hint_targets_are_reported_not_errors(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    write(
        site,
        {
            "uproot/__init__.py": "from . import extras\n",
            "uproot/extras.py": "",
            "lz4/__init__.py": "",
        },
    )
    write(tmp_path, {"proc.py": "import uproot\n"})
    g = find_imports(
        [tmp_path / "proc.py"],
        make_target(site),
        cache_dir=tmp_path / "cache",
        hints={"uproot.extras": ["python-xxhash-dist"], "proc": ["helper_dist"]},
    )
    assert "lz4" in g.modules and not g.errors
    misses = set(g.hint_misses)
    assert HintMiss("uproot.extras", "python-xxhash-dist") in misses
    assert HintMiss("proc", "helper_dist") in misses  # hints apply to local modules too
    assert HintMiss("uproot.extras", "zstandard") in misses
    assert list(g.hint_misses) == sorted(g.hint_misses, key=lambda h: (h.hinted, h.target))


def test_merged_adds_user_hints_and_clears_on_empty() -> None:
    table = merged({"uproot.extras": ["cramjam", "isal"], "mypkg.io": ("myplugin",)})
    assert table["uproot.extras"][: len(HINTS["uproot.extras"])] == HINTS["uproot.extras"]
    assert table["uproot.extras"].count("cramjam") == 1 and "isal" in table["uproot.extras"]
    assert table["mypkg.io"] == ("myplugin",)
    assert "uproot.extras" not in merged({"uproot.extras": []})
    assert merged(None) == {k: tuple(v) for k, v in HINTS.items()}
