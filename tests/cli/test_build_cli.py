"""`envpack build`, `inspect` and `verify` through click's CliRunner, on a real project."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from envpack import _cachefile
from envpack.cli._output import human_size
from envpack.cli.main import main
from envpack.spec import Distribution
from tests.test_build import Project, make_project


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return make_project(tmp_path_factory.mktemp("cliproj"))


@pytest.fixture(scope="module")
def spec_file(project: Project) -> Path:
    path = project.root / "envpack.json"
    project.spec.write(path)
    return path


@pytest.fixture(scope="module")
def tarball(spec_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cliout")
    result = invoke("build", str(spec_file), "-o", str(out), "--level", "1")
    assert result.exit_code == 0, result.output
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path.parent == out and path.name.startswith("envpack-")
    return path


def test_build_prints_sizes_and_path_last(tarball: Path, spec_file: Path) -> None:
    result = invoke("build", str(spec_file), "-o", str(tarball.parent), "--level", "1")
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == str(tarball)
    text = result.stdout
    assert "PyYAML" in text and "6.0.2" in text and "fx-cli" in text
    assert "whole source environment" in text
    assert "cached, not rebuilt" in text


_NO_LIEF = """
import sys
from envpack.cli.main import main
assert "lief" not in sys.modules, "import envpack.cli.main loaded lief"
try:
    main(sys.argv[1:])
except SystemExit as exc:
    assert exc.code == 0, exc.code
assert "lief" not in sys.modules, "a cached build loaded lief"
"""


def test_a_cached_build_loads_no_lief_and_walks_nothing(
    tarball: Path, spec_file: Path, project: Project
) -> None:
    # lief takes 0.5 s to import: only a build that edits an ELF file may load it. The edited
    # interpreter and extension are kept from earlier builds, but only for sources older than
    # a couple of seconds, and the fixture compiled its extension just now: wait that out,
    # then one more build keeps them, as any earlier build of a real project would.
    newest = max(p.stat().st_mtime for p in project.root.rglob("*.so"))
    time.sleep(max(0.0, newest + 2.5 - time.time()))
    assert invoke("build", str(spec_file), "-o", str(tarball.parent)).exit_code == 0
    cmd = [sys.executable, "-c", _NO_LIEF, "build", str(spec_file), "-o", str(tarball.parent)]
    proc = subprocess.run([*cmd, "--level", "1"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "cached, not rebuilt" in proc.stdout and proc.stdout.splitlines()[-1] == str(tarball)
    # The source env's size is what the real build measured (kept), not walked again.
    sizes = _cachefile.load(_cachefile.cache_dir() / "source-sizes-v1.marshal")
    env_hash = tarball.name.removeprefix("envpack-").split(".")[0]
    assert isinstance(sizes, dict) and isinstance(sizes.get(env_hash), int)
    assert f"whole source environment: {human_size(sizes[env_hash])}" in proc.stdout


def test_build_reads_envpack_json_by_default(
    spec_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("build")
    assert result.exit_code == 2
    assert "no Spec at envpack.json" in result.output
    (tmp_path / "envpack.json").write_text(spec_file.read_text())
    result = invoke("build", "-o", "out", "--level", "1")
    assert result.exit_code == 0, result.output
    assert Path(result.stdout.strip().splitlines()[-1]).is_file()


def test_build_refuses_newer_schema(spec_file: Path, tmp_path: Path) -> None:
    raw = json.loads(spec_file.read_text())
    raw["schema"] = 7
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(raw))
    result = invoke("build", str(newer), "-o", str(tmp_path))
    assert result.exit_code == 2
    assert "schema 7 is newer" in result.output


def test_build_refuses_incomplete_spec(project: Project, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    replace(project.spec, errors=("proc.py:3: cannot import nosuchmod",)).write(bad)
    result = invoke("build", str(bad), "-o", str(tmp_path))
    assert result.exit_code == 2
    assert "proc.py:3: cannot import nosuchmod" in result.output


def test_build_names_vanished_file(project: Project, tmp_path: Path) -> None:
    dist = project.spec.distributions[0]
    gone = replace(dist, files=(*dist.files, "yaml/vanished.py"))
    spec = replace(project.spec, distributions=(gone, *project.spec.distributions[1:]))
    path = tmp_path / "gone.json"
    spec.write(path)
    result = invoke("build", str(path), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "yaml/vanished.py" in result.output


def test_rebuild_after_a_local_edit_compresses_only_the_local_layer(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The user's loop: edit the processor, rebuild; every other layer comes from the piece
    cache (the default one, in ~/.cache/envpack, as a user has it)."""
    project = make_project(tmp_path_factory.mktemp("editproj"))
    spec = project.root / "envpack.json"
    project.spec.write(spec)
    out = project.root / "out"
    first = invoke("build", str(spec), "-o", str(out), "--level", "1")
    assert first.exit_code == 0, first.output
    proc = Path(next(f.path for f in project.spec.local if f.arcname == "proc.py"))
    # content no earlier run made: the piece cache is the user's, and outlives this test
    proc.write_text(proc.read_text() + f"\n# tuned the cuts {uuid.uuid4()}\n")
    result = invoke("build", str(spec), "-o", str(out), "--level", "1")
    assert result.exit_code == 0, result.output
    assert "compressed (local)" in result.stdout
    layers = json.loads(invoke("inspect", "--json", result.stdout.split()[-1]).stdout)["layers"]
    assert f"{len(layers) - 1} copied from the piece cache, 1 compressed" in result.stdout
    assert {layer["name"] for layer in layers} >= {"python", "stdlib", "local", "PyYAML"}
    assert (
        Path(first.stdout.split()[-1]).read_bytes() != Path(result.stdout.split()[-1]).read_bytes()
    )


def test_inspect(tarball: Path) -> None:
    result = invoke("inspect", str(tarball))
    assert result.exit_code == 0, result.output
    assert "PyYAML" in result.stdout and "6.0.2" in result.stdout
    assert "libfoo.so" in result.stdout
    assert "cpython 3.11" in result.stdout
    as_json = json.loads(invoke("inspect", "--json", str(tarball)).stdout)
    assert as_json["summary"]["hash"] in tarball.name


def test_inspect_reads_only_the_head(tarball: Path, tmp_path: Path) -> None:
    """A tarball cut after its first megabyte still inspects: .envpack/ comes first."""
    head = tmp_path / tarball.name
    head.write_bytes(tarball.read_bytes()[: 1 << 20])
    result = invoke("inspect", str(head))
    assert result.exit_code == 0, result.output
    assert "PyYAML" in result.stdout


def test_inspect_refuses_other_tarballs(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        tar.add(tmp_path / "a.txt", "a.txt")
    result = invoke("inspect", str(other))
    assert result.exit_code == 2
    assert "not an envpack environment" in result.output
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball at all")
    assert invoke("inspect", str(junk)).exit_code == 2


def test_verify_ok_isolated(tarball: Path) -> None:
    result = invoke("verify", "--isolated", str(tarball))
    if "mount" in result.output and result.exit_code != 0:
        pytest.skip(f"unshare not permitted: {result.output}")
    assert result.exit_code == 0, result.output
    assert "modules import (build interpreter hidden)" in result.stdout


def test_verify_catches_tampering(tarball: Path, tmp_path: Path) -> None:
    root = tmp_path / "x"
    root.mkdir()
    subprocess.run(["tar", "xzf", str(tarball), "-C", str(root)], check=True)
    target = next(root.glob("lib/python3.*/site-packages/yaml/__init__.py"))
    target.write_text(target.read_text() + "\n# changed\n")
    bad = tmp_path / tarball.name
    subprocess.run(
        ["tar", "czf", str(bad), "-C", str(root), ".envpack", "bin", "lib", "local"], check=True
    )
    result = invoke("verify", str(bad))
    assert result.exit_code == 1
    assert "yaml/__init__.py: content differs" in result.output


def test_verify_reports_failed_import(project: Project, tmp_path: Path) -> None:
    # fxcli imports on the build interpreter but is not shipped (fx-cli left out): a failure.
    # no_such_module fails on the build interpreter too: a note (see tests/cli/test_verify.py).
    dists = {d.name: d for d in project.spec.distributions}
    yaml = replace(dists["PyYAML"], modules=(*dists["PyYAML"].modules, "no_such_module", "fxcli"))
    spec = replace(project.spec, distributions=(yaml, dists["fx-native"]))
    path = tmp_path / "spec.json"
    spec.write(path)
    built = invoke("build", str(path), "-o", str(tmp_path), "--level", "1")
    tar = built.stdout.strip().splitlines()[-1]
    result = invoke("verify", tar)
    assert result.exit_code == 1
    assert "FAIL import fxcli: ModuleNotFoundError" in result.output
    assert "FAIL import no_such_module" not in result.output
    assert "note: import no_such_module fails on the build interpreter too" in result.output
    assert isinstance(spec.distributions[0], Distribution)


def test_build_reports_dropped_test_suites_and_keep_tests(project: Project, tmp_path: Path) -> None:
    from tests.test_build import _with_test_suites

    spec_path = tmp_path / "envpack.json"
    _with_test_suites(project, tmp_path, ("pkgt",)).write(spec_path)
    dropped = invoke("build", str(spec_path), "-o", str(tmp_path / "a"), "--level", "1")
    assert dropped.exit_code == 0, dropped.output
    assert "dropped 3 test-suite files" in dropped.stdout
    kept = invoke(
        "build", str(spec_path), "-o", str(tmp_path / "b"), "--level", "1", "--keep-tests"
    )
    assert kept.exit_code == 0, kept.output
    assert "test-suite" not in kept.stdout
    with tarfile.open(kept.stdout.strip().splitlines()[-1]) as tar:
        assert "lib/python3.11/site-packages/pkgt/tests/test_a.py" in tar.getnames()


def test_build_takes_a_notebook(tmp_path: Path) -> None:
    from tests.analyzer.test_notebook import _cell, write_notebook

    cells = [
        _cell("import json\nimport fx_manager_only_client\n"),
        _cell("class P(ProcessorABC):\n    def process(self, e):\n        return json.dumps(e)\n"),
    ]
    nb = write_notebook(tmp_path / "ana.ipynb", cells)
    result = invoke("build", str(nb), "-o", str(tmp_path / "out"), "--level", "1")
    assert result.exit_code == 0, result.output  # the client, not installed here, stays home
    assert Path(result.stdout.strip().splitlines()[-1]).name.startswith("envpack-")


def test_build_of_processor_files_with_exclude(tmp_path: Path) -> None:
    # `envpack build PROC.py` analyzes on the way: a missing import refuses the build, with
    # how to resolve it; --exclude resolves it, and the Spec inside says so.
    proc = tmp_path / "proc.py"
    proc.write_text("import json\n\n\ndef submit():\n    import fx_cluster_zz\n\n\nsubmit()\n")
    refused = invoke("build", str(proc), "-o", str(tmp_path / "out"))
    assert refused.exit_code == 2
    assert f"{proc}:5: cannot import 'fx_cluster_zz'" in refused.output
    assert "--exclude fx_cluster_zz (or [tool.envpack] exclude)" in refused.output
    built = invoke(
        "build",
        str(proc),
        "--exclude",
        "fx_cluster_zz",
        "-o",
        str(tmp_path / "out"),
        "--level",
        "1",
    )
    assert built.exit_code == 0, built.output
    with tarfile.open(built.stdout.strip().splitlines()[-1]) as tar:
        member = tar.extractfile(".envpack/spec.json")
        assert member is not None
        spec = json.loads(member.read())
    assert spec["excluded"] == [{"by": ["cli"], "module": "fx_cluster_zz", "sites": [f"{proc}:5"]}]
    spec_file = tmp_path / "envpack.json"
    spec_file.write_text(json.dumps(spec))
    misuse = invoke("build", str(spec_file), "--exclude", "x", "-o", str(tmp_path / "out"))
    assert misuse.exit_code == 2
    assert "--exclude is for analyzing PROC.py files" in misuse.output
