from __future__ import annotations

import time
import zipfile
from pathlib import Path

from envpack.analyzer.distributions import DistIndex, left_out, marker_environment
from envpack.analyzer.interpreter import probe
from tests.conftest import FixtureVenv
from tests.wheels import FIXTURES, build_wheel


def _index(venv: FixtureVenv) -> DistIndex:
    return DistIndex([str(venv.site_packages)])


def test_module_file_maps_to_distribution_of_another_name(fixture_venv: FixtureVenv) -> None:
    index = _index(fixture_venv)
    owner = index.owner(fixture_venv.site_packages / "yaml" / "__init__.py")
    assert owner is not None
    assert owner.name == "PyYAML"
    assert set(owner.top_level) >= {"yaml", "_yaml"}
    assert any(f.endswith(".so") for f in owner.files)  # the C extension is part of it


def test_namespace_portions_map_to_their_own_distributions(fixture_venv: FixtureVenv) -> None:
    index = _index(fixture_venv)
    a = index.owner(fixture_venv.site_packages / "fxns" / "a.py")
    b = index.owner(fixture_venv.site_packages / "fxns" / "b.py")
    assert (a and a.name, b and b.name) == ("fx-ns-a", "fx-ns-b")
    assert index.owner(fixture_venv.site_packages / "fxns") is None  # the shared dir is nobody's


def test_editable_install_owns_its_source_tree(fixture_venv: FixtureVenv) -> None:
    index = _index(fixture_venv)
    owner = index.owner(fixture_venv.editable_src / "fxedit" / "__init__.py")
    assert owner is not None
    assert owner.name == "fx-edit"
    assert owner.editable_roots == (str(fixture_venv.editable_src),)


def test_file_recorded_outside_site_packages_is_owned(fixture_venv: FixtureVenv) -> None:
    # pip records the scripts it writes as ../../../bin/NAME, relative to site-packages
    pip = _index(fixture_venv).owner(fixture_venv.root / "bin" / "pip")
    assert pip is not None and pip.key == "pip"
    assert any(f.startswith("..") and f.endswith("/bin/pip") for f in pip.files)


def test_file_outside_every_distribution_has_no_owner(
    fixture_venv: FixtureVenv, tmp_path: Path
) -> None:
    stray = tmp_path / "mine.py"
    stray.write_text("")
    assert _index(fixture_venv).owner(stray) is None


def test_sizes_and_files_come_from_record(fixture_venv: FixtureVenv) -> None:
    dist = _index(fixture_venv).get("fx_core")  # lookups normalize names
    assert dist is not None
    assert dist.version == "1.2.0"
    assert "fxcore/__init__.py" in dist.files
    on_disk = sum((Path(dist.location) / f).stat().st_size for f in dist.files)
    assert dist.size == on_disk > 0


def test_left_out_requirements_say_why(fixture_venv: FixtureVenv) -> None:
    index = _index(fixture_venv)
    core = index.get("fx-core")
    assert core is not None
    env = marker_environment(probe().interpreter)
    shipped = {
        "fx-core": core,
        "pyyaml": index.get("pyyaml"),
        "fx-ensured": index.get("fx-ensured"),
    }
    reasons = {r.name: r.reason for r in left_out(core, shipped, index, env)}
    assert set(reasons) == {"fx-lazydep", "fx-typing-only", "fx-winonly", "fx-plot"}
    assert reasons["fx-lazydep"] == "installed, not imported"
    assert reasons["fx-winonly"].startswith("marker false for the target")
    assert reasons["fx-plot"].startswith("extra not requested")


def test_marker_environment_describes_the_target_not_us() -> None:
    interp = probe().interpreter
    other = interp.__class__(**{**interp.__dict__, "version": "3.9.18", "platform": "darwin"})
    env = marker_environment(other)
    assert env["python_version"] == "3.9"
    assert env["sys_platform"] == "darwin"
    assert env["platform_system"] == "Darwin"


def _install(wheel: Path, site: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)


def test_cache_reuses_scans_and_sees_new_installs(tmp_path: Path) -> None:
    site, cache = tmp_path / "site", tmp_path / "cache"
    site.mkdir()
    wheels = tmp_path / "wheels"
    _install(build_wheel(FIXTURES / "fx-ensured", wheels), site)
    first = DistIndex([str(site)], cache_dir=cache)
    assert [d.name for d in first] == ["fx-ensured"]
    assert list(cache.glob("dists-v*.marshal"))

    # A warm index answers from the cache: same distributions, same owners.
    warm = DistIndex([str(site)], cache_dir=cache)
    assert list(warm) == list(first)
    assert warm.owner(site / "fxensured.py") == first.owner(site / "fxensured.py")

    # Installing another distribution changes the location's stamp: it is rescanned.
    time.sleep(0.01)  # a distinct directory mtime even on coarse-timestamp filesystems
    _install(build_wheel(FIXTURES / "fx-unused", wheels), site)
    again = DistIndex([str(site)], cache_dir=cache)
    assert [d.name for d in again] == ["fx-ensured", "fx-unused"]


def test_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    site, cache = tmp_path / "site", tmp_path / "cache"
    site.mkdir()
    _install(build_wheel(FIXTURES / "fx-ensured", tmp_path / "w"), site)
    cache.mkdir()
    (cache / "dists-v1.marshal").write_bytes(b"\x00garbage")
    assert [d.name for d in DistIndex([str(site)], cache_dir=cache)] == ["fx-ensured"]
