from __future__ import annotations

import dataclasses
import json
import typing
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest

from envpack.analyzer.interpreter import probe
from envpack.errors import SpecError
from envpack.spec import (
    SCHEMA,
    Distribution,
    Excluded,
    LazyImport,
    LeftOut,
    LocalFile,
    LocalKind,
    NativeLib,
    Spec,
    StdlibModule,
)


def _schema() -> dict[str, object]:
    return json.loads(files("envpack").joinpath("spec.schema.json").read_text())


def sample() -> Spec:
    return Spec(
        interpreter=probe().interpreter,
        roots=("/ana/proc.py",),
        local=(LocalFile("/ana/proc.py", "proc.py", "module", "a processor file"),),
        distributions=(
            Distribution(
                name="PyYAML",
                version="6.0.2",
                location="/venv/site-packages",
                files=("yaml/__init__.py",),
                size=12,
                modules=("yaml",),
                why=("proc", "yaml"),
                left_out=(LeftOut("x", "x; extra == 'y'", "extra not requested"),),
            ),
        ),
        stdlib=(StdlibModule("json", "/py/json/__init__.py", ("proc", "json")),),
        native=(NativeLib("libfoo.so", "/lib/libfoo.so", "bundle", ("/x/_ext.so",)),),
        glibc="2.17",
        lazy=(LazyImport("matplotlib", "/venv/hist/plot.py:12", "matplotlib"),),
        warnings=("w",),
        excluded=(Excluded("distributed", ("cli", "/ana/pyproject.toml"), ("/ana/proc.py:7",)),),
    )


def test_json_round_trip_is_lossless_and_byte_stable() -> None:
    spec = sample()
    again = Spec.from_json(spec.to_json())
    assert again == spec
    assert again.to_json() == spec.to_json()
    assert again.digest() == spec.digest()


def test_json_validates_against_the_published_schema() -> None:
    jsonschema.validate(json.loads(sample().to_json()), _schema())


def test_schema_file_names_every_field_of_the_model() -> None:
    schema = _schema()
    assert set(schema["properties"]) == {f.name for f in dataclasses.fields(Spec)}  # type: ignore[call-overload]
    defs = schema["$defs"]
    for cls in (Distribution, LocalFile, LeftOut, NativeLib, StdlibModule, LazyImport, Excluded):
        assert set(defs[cls.__name__]["properties"]) == {f.name for f in dataclasses.fields(cls)}  # type: ignore[index]


def test_schema_enums_are_the_models_literals() -> None:
    defs = _schema()["$defs"]
    assert defs["LocalFile"]["properties"]["kind"]["enum"] == list(typing.get_args(LocalKind))  # type: ignore[index]


def test_schema_rejects_an_unknown_kind() -> None:
    raw = json.loads(sample().to_json())
    raw["native"][0]["kind"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(raw, _schema())


def test_schema_1_spec_is_read_as_the_current_schema() -> None:
    # What envpack wrote before ``excluded`` existed: read, and written back as schema 2.
    raw = json.loads(sample().to_json())
    del raw["excluded"]
    raw["schema"] = 1
    old = Spec.from_json(json.dumps(raw))
    assert old.excluded == () and old.schema == SCHEMA == 2
    assert old == dataclasses.replace(sample(), excluded=())
    jsonschema.validate(json.loads(old.to_json()), _schema())


def test_newer_schema_is_refused_with_advice() -> None:
    raw = json.loads(sample().to_json())
    raw["schema"] = SCHEMA + 1
    with pytest.raises(SpecError, match="newer than this envpack understands"):
        Spec.from_json(json.dumps(raw))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"interpreter": {}}', "no integer 'schema'"),
        ('{"schema": 1, "roots": []}', "malformed Spec"),
        ('{"schema": 1, "bogus": 1}', "unknown fields"),
    ],
)
def test_malformed_specs_get_clear_errors(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        Spec.from_json(text, source="envpack.json")


def test_read_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read Spec"):
        Spec.read(tmp_path / "nope.json")


def test_errors_make_a_spec_incomplete() -> None:
    assert sample().complete
    assert not dataclasses.replace(sample(), errors=("proc.py:3: cannot import 'x'",)).complete
