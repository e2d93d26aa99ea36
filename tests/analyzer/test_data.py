"""Data references on real files: what local code opens, found where the code keeps it.

Each test writes a small analysis into tmp_path (or reads the ttbar-like fixture under
tests/fixtures/processors/ttbar) and walks it with the import walk, as `envpack analyze` does;
nothing analyzed is run. Third-party modules the code calls need not be installed: an opener is
known by its qualified name, as the code spells it through its imports.
"""

from __future__ import annotations

import ast
import marshal
import os
from pathlib import Path

import pytest

from envpack.analyzer import data
from envpack.analyzer.imports import ImportGraph, find_imports
from envpack.errors import UsageError
from tests.analyzer.test_imports import make_target, write

FIXTURES = Path(__file__).parent.parent / "fixtures"
TTBAR = FIXTURES / "processors" / "ttbar"
STANDINS = [
    FIXTURES / "standins" / n / "src" for n in ("fx-xgboost-standin", "fx-correctionlib-standin")
]
FXTOP = FIXTURES / "editable" / "fxtop"


def walk(proc: Path, tmp: Path, *site: Path, **kw: object) -> ImportGraph:
    return find_imports([proc], make_target(*site), cache_dir=tmp / "cache", **kw)  # type: ignore[arg-type]


def arcs(g: ImportGraph) -> set[str]:
    return {d.arcname for d in g.data_files}


def warnings(g: ImportGraph) -> list[str]:
    return [str(w) for w in g.data_warnings]


# -- 1. paths named in configuration: constants across local modules --------------------------
def test_ttbar_models_named_in_the_config_dict_ship(tmp_path: Path) -> None:
    g = walk(TTBAR / "ttbar.py", tmp_path, *STANDINS, extra_paths=[FXTOP])
    got = {(d.arcname, d.base, os.path.basename(d.site)) for d in g.data_files}
    assert got == {
        # CorrectionSet.from_file(c.config["global"]["CORRECTIONS"]): `import utils.config as c`
        ("corrections.json", "cwd", "ttbar.py:25"),
        # load_model(CFG["ml"]["MODEL"]): `from utils.config import CFG`, through a parameter
        ("models/m.json", "cwd", "ttbar.py:19"),
        # XGBClassifier().load_model(config["ml"][...]) in utils/ml.py (`from .config import
        # config`), an f-string of a constant; Booster(model_file=os.path.join(MODEL_DIR, ...))
        ("models/model_even.json", "cwd", "ml.py:15"),
        ("models/model_odd.json", "cwd", "ml.py:16"),
        # importlib.resources.files("fxtop").joinpath("data", "lumi.json").read_text()
        ("fxtop/data/lumi.json", "file", "corrections.py:8"),
    }
    assert all(Path(d.path).is_file() for d in g.data_files)
    # A name known only at run time is a warning at its line, never a guess.
    assert warnings(g) == [
        f"{FXTOP}/fxtop/corrections.py:13: open: path not resolved; "
        "add it with --data if workers need it",
        f"{TTBAR}/utils/ml.py:21: open: path not resolved; add it with --data if workers need it",
    ]


def test_constants_follow_imports_literals_and_path_arithmetic(tmp_path: Path) -> None:
    files = {
        "proc.py": """
            import json, os, pickle
            from pathlib import Path
            import cfg.paths as p
            from cfg import paths, SETTINGS
            from cfg.paths import *
            from cfg.tables import TABLES, YEARS

            open(p.CFG["sf"]["muon"])                      # module alias, nested dict
            open(paths.PAIR[1])                            # `from pkg import submodule`, tuple
            open(SETTINGS["lumi"])                         # a name the package's __init__ binds
            open(f"{p.BASE}/{p.NAME}.json")                # f-string of constants
            open(os.path.join(p.BASE, "joined.json"))      # os.path.join of a constant
            open(Path(p.BASE) / "div.json")                # pathlib's /
            open(STAR)                                     # from a star import
            open(p.BASE + "/plus.json")                    # concatenation
            open("{}/{}.json".format(p.BASE, "fmt"))       # str.format
            open("%s/pct.json" % p.BASE)                   # %-formatting
            open(p.CFG.get("missing", "data/default.json"))  # dict.get's default
            pickle.load(open(p.PICKLED, "rb"))             # read in binary, not written
            for year in YEARS:                             # a loop over a literal list
                open(TABLES[year])
            for name, path in p.CFG["by_name"].items():    # dict.items()
                open(path)
            """,
        "cfg/__init__.py": "from .settings import SETTINGS\n",
        "cfg/settings.py": 'SETTINGS = {"lumi": "data/lumi.json"}\n',
        "cfg/paths.py": """
            BASE = "data"
            NAME = "fstring"
            CFG = {"sf": {"muon": "data/muon.json"}, "by_name": {"a": "data/item_a.json"}}
            PAIR = ("data/first.json", "data/second.json")
            STAR = BASE + "/star.json"
            PICKLED = "data/pickled.json"
            """,
        "cfg/tables.py": """
            YEARS = ["2017", "2018"]
            TABLES = {year: f"data/table_{year}.json" for year in YEARS}
            TABLES = {"2017": "data/table_2017.json", "2018": "data/table_2018.json"}
            """,
    }
    names = [
        "muon",
        "second",
        "lumi",
        "fstring",
        "joined",
        "div",
        "star",
        "plus",
        "fmt",
        "pct",
        "default",
        "pickled",
        "table_2017",
        "table_2018",
        "item_a",
    ]
    for name in [*names, "first", "unused"]:
        files[f"data/{name}.json"] = "{}"
    write(tmp_path, files)
    g = walk(tmp_path / "proc.py", tmp_path)
    assert arcs(g) == {f"data/{n}.json" for n in names}
    assert not warnings(g)


def test_parameters_returns_and_attributes_carry_paths(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "proc.py": """
                import json
                from tools.paths import tool_path, DataReader

                def read(path, mode="r"):
                    with open(path, mode) as fh:
                        return json.load(fh)

                class Proc:
                    FALLBACK = "data/fallback.json"

                    def __init__(self, model="data/model.json", *, table=None):
                        self.model = model
                        self.table = table
                        self.reader = DataReader("data/reader.json")

                    def process(self, events):
                        read(self.model)
                        read(self.table)
                        read(self.FALLBACK)
                        read(tool_path("sf.json"))
                        return self.reader.load()

                proc = Proc(table="data/table.json")
                """,
            "tools/__init__.py": "",
            "tools/paths.py": """
                import os
                import tools

                def tool_path(rel):
                    return os.path.join(tools.__path__[0], "data", rel)

                class DataReader:
                    def __init__(self, source):
                        self.source = source

                    def load(self):
                        return open(self.source).read()
                """,
            "tools/data/sf.json": "{}",
            **{f"data/{n}.json": "{}" for n in ("model", "table", "fallback", "reader")},
        },
    )
    g = walk(tmp_path / "proc.py", tmp_path)
    assert arcs(g) == {
        "data/model.json",  # a default
        "data/table.json",  # a keyword argument at the call site
        "data/fallback.json",  # a class attribute, through self
        "data/reader.json",  # a constructor's argument, kept on self, opened by a method
        "tools/data/sf.json",  # what a helper returns: topcoffea's topcoffea_path()
    }
    sf = next(d for d in g.data_files if d.arcname == "tools/data/sf.json")
    assert sf.base == "file" and sf.path == str(tmp_path / "tools" / "data" / "sf.json")


# -- 2. the openers physicists use: one case per entry of OPENERS -----------------------------
# (opener name, code, the file it opens); "{f}" is the file's path, relative to the cwd.
CASES: list[tuple[str, str, str]] = [
    ("open", "SF = json.load(open({f}))", "sf.json"),
    ("gzip.open", "import gzip\nT = gzip.open({f})", "table.json.gz"),
    ("Path.open", "T = Path({f}).read_text()", "table.txt"),
    ("numpy.load", "import numpy as np\nW = np.load({f})", "weights.npy"),
    ("numpy.loadtxt", "import numpy as np\nW = np.loadtxt({f})", "weights.txt"),
    ("numpy.genfromtxt", "import numpy\nW = numpy.genfromtxt({f})", "weights.csv"),
    ("numpy.fromfile", "from numpy import fromfile\nW = fromfile({f})", "weights.bin"),
    ("pandas.read_*", "import pandas as pd\nDF = pd.read_csv({f})", "xsec.csv"),
    ("joblib.load", "import joblib\nM = joblib.load({f})", "model.joblib"),
    ("torch.load", "import torch\nM = torch.load({f})", "model.pt"),
    (
        "onnxruntime.InferenceSession",
        "import onnxruntime as ort\nS = ort.InferenceSession({f})",
        "model.onnx",
    ),
    ("xgboost.Booster", "import xgboost as xgb\nB = xgb.Booster(model_file={f})", "bdt.json"),
    ("load_model", "from xgboost import XGBClassifier\nXGBClassifier().load_model({f})", "bdt.ubj"),
    ("uproot.open", "import uproot\nT = uproot.open({f} + ':Events')", "nano.root"),
    (
        "correctionlib.CorrectionSet.from_file",
        "import correctionlib\nC = correctionlib.CorrectionSet.from_file({f})",
        "sf.json.gz",
    ),
    (
        "coffea extractor.add_weight_sets",
        "from coffea.lookup_tools import extractor\next = extractor()\n"
        "ext.add_weight_sets([f'* * {D}/' + {f}])\nD = '.'",
        "Summer19UL18_V5_MC_L2Relative_AK4PFchs.jec.txt",
    ),
    (
        "coffea lookup_tools converters",
        "from coffea.lookup_tools import txt_converters\n"
        "R = txt_converters.convert_rochester_file({f}, loaduncs=True)",
        "RoccoR2018UL.txt",
    ),
    (
        "coffea LumiMask/LumiData",
        "from coffea.lumi_tools import LumiMask\nL = LumiMask({f})",
        "golden.json",
    ),
    (
        "coffea BTagScaleFactor",
        "from coffea.btag_tools import BTagScaleFactor\nB = BTagScaleFactor({f}, 'medium')",
        "DeepCSV.csv",
    ),
    ("h5py.File", "import h5py\nH = h5py.File({f})", "store.h5"),
    ("zipfile/tarfile", "import tarfile\nT = tarfile.open({f})", "bundle.tar"),
    ("importlib.resources", "import importlib.resources as r\nT = r.read_text('helpers', {f})", ""),
    ("pkgutil.get_data", "import pkgutil\nT = pkgutil.get_data(__name__, {f})", ""),
    ("glob.glob", "import glob\nFILES = [open(p) for p in glob.glob({f})]", "*.tab"),
    ("Path.glob", "T = sorted(Path(__file__).parent.glob({f}))", "*.dat"),
]


@pytest.mark.parametrize(("opener", "code", "rel"), CASES, ids=[c[0] for c in CASES])
def test_each_opener_ships_its_file(tmp_path: Path, opener: str, code: str, rel: str) -> None:
    if opener in ("importlib.resources", "pkgutil.get_data"):
        # Relative to a local package: read from helpers/, as helpers/ ships beside the code.
        write(tmp_path, {"helpers/__init__.py": "", "helpers/res.txt": "x"})
        write(tmp_path, {"proc.py": "import helpers.use\n"})
        module = code.replace("{f}", "'res.txt'")
        write(tmp_path, {"helpers/use.py": module + "\n"})
        expected = {"helpers/res.txt"}
    else:
        name = rel.replace("*", "a")
        head = "import json\nfrom pathlib import Path\n"
        write(tmp_path, {"proc.py": head + code.replace("{f}", repr(rel)) + "\n", name: "x"})
        if "*" in rel:
            write(tmp_path, {rel.replace("*", "b"): "x", "other.txt": "x"})
            expected = {name, rel.replace("*", "b")}
        else:
            expected = {name}
    g = walk(tmp_path / "proc.py", tmp_path)
    assert arcs(g) == expected
    assert not warnings(g)


def test_every_opener_has_a_case() -> None:
    assert {c[0] for c in CASES} == {op.name for op in data.OPENERS}


def test_importlib_resources_files_of_a_local_package(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "proc.py": """
                from importlib.resources import files
                import helpers
                BINS = (files("helpers") / "bins" / "pt.csv").read_text()
                ETA = files(helpers).joinpath("bins", "eta.csv").read_bytes()
                """,
            "helpers/__init__.py": "",
            "helpers/bins/pt.csv": "x",
            "helpers/bins/eta.csv": "x",
        },
    )
    g = walk(tmp_path / "proc.py", tmp_path)
    assert arcs(g) == {"helpers/bins/pt.csv", "helpers/bins/eta.csv"}
    assert {d.base for d in g.data_files} == {"file"}


# -- 3. what cannot be resolved, or is not there, is a warning at its line ---------------------
def test_unresolved_and_missing_paths_warn_with_file_and_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "proc.py": """
                import sys, json
                import correctionlib
                CSET = correctionlib.CorrectionSet.from_file(sys.argv[1])
                MISSING = open("corrections/gone.json")
                OUT = open("results.json", "w")            # written, not read
                json.load(OBJ.handle)                       # json.load reads an open file
                unknown_reader().load("whatever.bin")       # an unknown object's .load

                def summarize(path):
                    return open(path).read()

                if __name__ == "__main__":
                    open("manager_only.json")               # never on a worker
                    summarize("summary.json")                # but what it passes on is
                """,
            "manager_only.json": "{}",
            "summary.json": "{}",
            "results.json": "{}",
            "whatever.bin": "x",
        },
    )
    g = walk(tmp_path / "proc.py", tmp_path)
    proc = tmp_path / "proc.py"
    assert warnings(g) == [
        f"{proc}:3: correctionlib.CorrectionSet.from_file: path not resolved; "
        "add it with --data if workers need it",
        f"{proc}:4: open: 'corrections/gone.json' not found in {tmp_path}, {os.getcwd()}; "
        "not shipped (add it with --data if workers need it)",
    ]
    # An unknown object's .load(...) is matched by name: shipped if found, never a warning.
    assert arcs(g) == {"summary.json", "whatever.bin"}


def test_paths_outside_the_local_root_are_refused_with_advice(tmp_path: Path) -> None:
    ana = tmp_path / "ana"
    code = "import os\nT = open(os.path.join(os.path.dirname(__file__), '..', 'shared.json'))\n"
    write(ana, {"proc.py": code})
    write(tmp_path, {"shared.json": "{}"})
    g = walk(ana / "proc.py", tmp_path)
    assert not g.data_files
    (warning,) = warnings(g)
    assert warning.startswith(f"{ana / 'proc.py'}:2: {tmp_path / 'shared.json'} is outside")
    assert "move it beside the code" in warning


def test_manual_data_is_placed_relative_to_the_processor(tmp_path: Path) -> None:
    ana = tmp_path / "ana"
    write(
        ana,
        {
            "proc.py": "",
            "models/variants/tight.json": "{}",
            "models/variants/loose.json": "{}",
            "models/variants/__pycache__/x.pyc": "",
            "tables/eff_2018.csv": "x",
            "tables/eff_2017.csv": "x",
            "tables/notes.txt": "x",
        },
    )
    got = data.manual_data(
        [
            ("ana/models/variants", str(tmp_path), "--data"),  # a directory, from the cwd
            ("tables/eff_*.csv", str(ana), "pyproject.toml"),  # a glob, from the project
        ],
        str(ana),
    )
    assert [(arc, why) for _, arc, why in got] == [
        ("models/variants/loose.json", "added by --data 'ana/models/variants'"),
        ("models/variants/tight.json", "added by --data 'ana/models/variants'"),
        ("tables/eff_2017.csv", "added by pyproject.toml 'tables/eff_*.csv'"),
        ("tables/eff_2018.csv", "added by pyproject.toml 'tables/eff_*.csv'"),
    ]
    assert all(Path(p).is_file() for p, _, _ in got)
    with pytest.raises(UsageError, match=r"--data: data 'nope/\*.json' matches no file"):
        data.manual_data([("nope/*.json", str(ana), "--data")], str(ana))
    write(tmp_path, {"elsewhere.json": "{}"})
    with pytest.raises(UsageError, match=r"outside .*ana, the processor's directory.*move"):
        data.manual_data([("elsewhere.json", str(tmp_path), "--data")], str(ana))


# -- 4. an editable package's data ------------------------------------------------------------
def test_package_data_is_everything_but_code_caches_and_tests(tmp_path: Path) -> None:
    pkg = tmp_path / "src" / "fxtop"
    write(
        pkg,
        {
            "__init__.py": "",
            "paths.py": "",
            "types.pyi": "",
            "py.typed": "",
            "_fast.cpython-311-x86_64-linux-gnu.so": "",
            "data/lumi.json": "{}",
            "data/pileup/pu_2018.root": "x",
            "data/README.md": "x",
            "params/params.json": "{}",
            "__pycache__/paths.cpython-311.pyc": "",
            ".ipynb_checkpoints/lumi-checkpoint.json": "{}",
            ".DS_Store": "",
            "tests/big_input.root": "x",
            "data/test/fixture.json": "{}",
            "fxtop.egg-info/PKG-INFO": "",
        },
    )
    got = data.package_data(str(pkg), "fxtop")
    assert [arc for _, arc in got] == [
        "fxtop/py.typed",
        "fxtop/data/README.md",
        "fxtop/data/lumi.json",
        "fxtop/data/pileup/pu_2018.root",
        "fxtop/params/params.json",
    ]
    assert all(Path(path).is_file() and path.startswith(str(pkg)) for path, _ in got)


# -- the summary is what the parse cache keeps ----------------------------------------------
def test_scan_is_marshalable_and_cached(tmp_path: Path) -> None:
    for path in [TTBAR / "ttbar.py", TTBAR / "utils" / "ml.py", TTBAR / "utils" / "config.py"]:
        summary = data.scan(ast.parse(path.read_bytes()))
        assert marshal.loads(marshal.dumps(summary)) == summary
    first = walk(TTBAR / "ttbar.py", tmp_path, *STANDINS, extra_paths=[FXTOP])
    again = walk(TTBAR / "ttbar.py", tmp_path, *STANDINS, extra_paths=[FXTOP])  # from the cache
    assert again.data_files == first.data_files and again.data_warnings == first.data_warnings


def test_the_code_itself_is_not_data(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "proc.py": "import helpers.sub\n",
            "helpers/__init__.py": "",
            "helpers/sub.py": """
                import os
                HERE = os.path.dirname(__file__)
                ROOT = os.path.join(HERE, "..")                   # the tree the code ships in
                SOURCE = open(os.path.join(HERE, "__init__.py"))  # a module: ships as one
                SCRIPT = os.path.join(HERE, "runner_script.py")   # a file it runs: data
                """,
            "helpers/runner_script.py": "",
        },
    )
    g = walk(tmp_path / "proc.py", tmp_path)
    assert arcs(g) == {"helpers/runner_script.py"}
