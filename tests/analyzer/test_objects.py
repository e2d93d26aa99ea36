"""find_references() / analyze_objects(): live objects, walked as cloudpickle pickles them.

The in-process tests define code in a namespace named ``__main__`` (what a script or a notebook
kernel runs in), with stdlib modules standing for the user's packages. The end-to-end test runs
a real script as ``__main__`` against the fixture venv and checks the result against what
cloudpickle itself imports when the pickled object is loaded.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap
import types
from pathlib import Path

from envpack.analyzer.objects import analyze_objects, find_references
from tests.conftest import FixtureVenv


def _main(source: str) -> dict[str, object]:
    """Run ``source`` as a notebook cell runs: in a namespace whose __name__ is __main__."""
    ns: dict[str, object] = {"__name__": "__main__"}
    exec(compile(textwrap.dedent(source), "<cell>", "exec"), ns)
    return ns


def _modules(*objects: object) -> set[str]:
    return {r.module for r in find_references(objects).references}


def test_by_value_code_ships_what_it_uses_not_what_the_program_imports() -> None:
    ns = _main(
        """
        import json, csv, xml.dom.minidom
        import email.mime.text as mt
        from statistics import mean

        def helper(x):
            return mean(x)

        class Proc:
            def process(self, events):
                import html.parser
                from urllib import parse
                return helper(events), json.dumps(events), xml.dom.minidom, mt

        def plot(out):
            return csv.writer(out)  # the manager's: never reached from Proc
        """
    )
    reach = find_references([ns["Proc"]()])
    mods = {(r.module, r.names) for r in reach.references}
    assert mods == {
        ("json", ()),
        # `xml.dom.minidom` names submodules of the global `xml`: imported too, as cloudpickle does
        ("xml", ()),
        ("xml.dom", ()),
        ("xml.dom.minidom", ()),
        ("email.mime.text", ()),
        ("statistics", ()),  # mean, by reference to its module
        ("html.parser", ()),  # the method's own imports run on the worker
        ("urllib", ("parse",)),
    }
    assert reach.by_value == ("Proc", "Proc.process", "helper")
    why = {r.module: (r.why, r.site) for r in reach.references}
    assert why["json"] == ("Proc.process", "<cell>:13")


def test_closures_defaults_partials_and_class_dicts_are_followed() -> None:
    ns = _main(
        """
        import json, decimal, fractions, ipaddress, zlib
        import collections

        def outer():
            codec = zlib
            def inner(x, scale=fractions.Fraction(1, 3)):
                return codec.compress(x), scale
            return inner

        class Base:
            pass

        class Proc(Base):
            LIMIT = decimal.Decimal("1.5")
            kind = staticmethod(lambda: ipaddress.ip_address("::1"))

            @property
            def counts(self):
                return collections.Counter()

        fn = functools_partial(outer(), b"x")
        """.replace("functools_partial", "__import__('functools').partial")
    )
    assert {"zlib", "fractions", "functools"} <= _modules(ns["fn"])
    assert "json" not in _modules(ns["fn"])
    assert {"decimal", "ipaddress", "collections"} <= _modules(ns["Proc"])


def test_instances_bring_their_attributes_types_and_graphs_their_callables() -> None:
    import decimal

    ns = _main(
        """
        import fractions

        def step(x):
            return fractions.Fraction(x)

        class Holder:
            def __init__(self, value):
                self.value = value

        class Slotted:
            __slots__ = ("item",)

        class Collection:  # a dask collection, in shape: what the scheduler gets is its graph
            def __dask_graph__(self):
                return {("a", 0): (step, 1), ("b", 0): (len, ("a", 0))}
        """
    )
    holder = ns["Holder"](decimal.Decimal(1))  # made on the manager; its type goes along
    slotted = ns["Slotted"]()
    slotted.item = types.SimpleNamespace(when=__import__("datetime").date(2024, 1, 1))
    assert "decimal" in _modules(holder)
    assert {"types", "datetime"} <= _modules(slotted)
    assert "fractions" in _modules(ns["Collection"]())


def test_objects_of_modules_go_by_reference_and_local_modules_give_their_directory(
    tmp_path: Path,
) -> None:
    (tmp_path / "mylocal_helpers_mod.py").write_text("def f():\n    return 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import mylocal_helpers_mod  # type: ignore[import-not-found]

        reach = find_references([mylocal_helpers_mod.f, json.dumps, functools.partial])
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("mylocal_helpers_mod", None)
    assert {r.module for r in reach.references} == {"mylocal_helpers_mod", "json", "functools"}
    assert reach.by_value == ()  # all importable by name
    assert reach.search_path == (str(tmp_path),)  # json's and functools' are the stdlib's


def test_a_class_of_an_unimportable_module_goes_by_value() -> None:
    ns = _main("import json\ndef run(self):\n    return json\n")
    made = type("Made", (), {"__module__": "no_such_module_anywhere", "run": ns["run"]})
    reach = find_references([made()])
    assert reach.by_value == ("no_such_module_anywhere.Made", "run")
    assert {r.module for r in reach.references} == {"json"}


SCRIPT = """\
import json
import sys

sys.path.append({site!r})
import cloudpickle
import fxcore            # the processor's: ships
import fxns.a            # reached through a helper: ships
import fxunused as plt   # plotting, on the manager only
import fxlazy            # the cluster client, on the manager only
import yaml

import envpack


def select(events):
    return [e for e in events if e > fxns.a.A]


class Proc:
    def __init__(self, tag):
        self.tag = tag

    def process(self, events):
        return select(events), fxcore.util.VALUE


def plot(out):
    return plt.UNUSED, out


client = fxlazy.LAZY
# made on the manager with a package the processor's code never names: its type goes along
proc = Proc(yaml.nodes.ScalarNode("tag", "v"))
spec = envpack.analyze_objects([proc], python={python!r})
open({pickle!r}, "wb").write(cloudpickle.dumps(proc))
print(spec.to_json())
"""

LOADER = """\
import sys

sys.path.append({site!r})
import cloudpickle

before = set(sys.modules)
data = open({pickle!r}, "rb").read()
cloudpickle.loads(data)
print(" ".join(sorted({{m.split(".")[0] for m in set(sys.modules) - before}})))
"""


def test_analyze_objects_covers_what_cloudpickle_imports_on_load(
    fixture_venv: FixtureVenv, tmp_path: Path
) -> None:
    """A script's __main__ processor: what the Spec ships is what loading its pickle imports,
    and the manager's plotting and client packages are left out."""
    site, pickle = str(fixture_venv.site_packages), str(tmp_path / "proc.pkl")
    script = tmp_path / "driver.py"
    script.write_text(SCRIPT.format(site=site, python=str(fixture_venv.python), pickle=pickle))
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    spec = json.loads(run.stdout)
    assert not spec["errors"], spec["errors"]
    dists = {d["name"]: d for d in spec["distributions"]}
    assert set(dists) == {"fx-core", "PyYAML", "fx-ensured", "fx-ns-a"}
    assert dists["fx-ns-a"]["why"] == ["select", "fxns.a"]
    assert spec["roots"] == [str(script)]
    assert spec["local"] == []  # nothing imported by name from the script's directory
    load = tmp_path / "load.py"
    load.write_text(LOADER.format(site=site, pickle=pickle))
    loaded = subprocess.run(
        [sys.executable, str(load)], capture_output=True, text=True, check=True
    ).stdout.split()
    shipped = {m for d in spec["distributions"] for m in d["modules"]}
    # the stdlib ships whole; Cython's runtime modules are made by yaml's extension module
    stdlib = {*sys.stdlib_module_names, "cython_runtime"}
    loaded = [m for m in loaded if not m.startswith("_cython_")]
    assert {"fxcore", "fxns", "yaml"} <= set(loaded)
    assert set(loaded) - stdlib - {"cloudpickle"} <= shipped


def test_analyze_objects_reports_a_missing_module_at_the_code_that_uses_it(
    fixture_venv: FixtureVenv,
) -> None:
    # json is on this interpreter; a fake module object stands for a package the target lacks
    fake = types.ModuleType("fx_manager_only_pkg")
    sys.modules["fx_manager_only_pkg"] = fake
    try:
        ns = _main("def work(x):\n    return pkg.thing(x)\n")
        ns["pkg"] = fake
        spec = analyze_objects([ns["work"]], python=fixture_venv.python)
    finally:
        del sys.modules["fx_manager_only_pkg"]
    assert len(spec.errors) == 1
    assert spec.errors[0].startswith(
        f"<cell>:2, in work: cannot import 'fx_manager_only_pkg': not installed for "
        f"{fixture_venv.python}; to resolve: "
    )
