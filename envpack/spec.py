"""The Spec: what an environment must hold, and why each piece is in.

The analyzer writes it, the builder reads it; it is the only thing they share. The JSON carries
``"schema": SCHEMA`` and is written with sorted keys and sorted lists, so two analyses of the
same code give byte-identical files. An older schema is read (what it lacks takes its default)
and comes back as the current one; a newer one is refused.

Schema history: 1, the first; 2 adds ``excluded``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

from envpack.errors import SpecError

SCHEMA = 2

NativeKind = Literal["system", "bundle", "distribution", "missing"]
# data: opened by a path relative to the working directory (linked into it on the worker);
# resource: read relative to its package's directory (editable package data), only shipped.
LocalKind = Literal["module", "data", "resource"]


@dataclass(frozen=True)
class Interpreter:
    """The target interpreter, as it reported itself (possibly another Python than ours)."""

    implementation: str  # "cpython"
    version: str  # "3.11.7"
    executable: str  # sys.executable as the user named it (may be a venv symlink)
    real_executable: str  # the binary behind it, resolved
    prefix: str  # sys.prefix (the venv, if any)
    base_prefix: str  # sys.base_prefix (where the stdlib lives)
    stdlib: str  # sysconfig "stdlib"
    platstdlib: str  # sysconfig "platstdlib"
    dynload: str  # the lib-dynload directory
    libpython: str | None  # the shared libpython the binary loads, if built shared
    platform: str  # sys.platform
    machine: str  # platform.machine()
    conda: bool  # the prefix is a conda environment (conda-meta/ present)
    sys_path: tuple[str, ...] = ()  # sys.path of the target, without the script dir
    # The target's pyc naming and format (a Spec made for 3.9 by envpack on 3.11 ships 3.9's
    # pycs): sys.implementation.cache_tag ("cpython-39") and importlib's MAGIC_NUMBER, in hex.
    # None in Specs written before they were probed: then no pycs are shipped.
    cache_tag: str | None = None
    pyc_magic: str | None = None


@dataclass(frozen=True)
class LocalFile:
    """A file of the user's own code or data, shipped as is."""

    path: str  # absolute path on the build machine
    arcname: str  # path relative to the env's local root (its import root for modules)
    kind: LocalKind
    why: str  # "imported by proc (proc.py:3)" / "opened at proc.py:12"


@dataclass(frozen=True)
class LeftOut:
    """A declared requirement of a shipped distribution that nothing imports."""

    name: str
    requirement: str  # the Requires-Dist line
    reason: str  # "not imported", "marker false for target", "extra not requested"


@dataclass(frozen=True)
class Distribution:
    """An installed distribution shipped whole (files from RECORD)."""

    name: str
    version: str
    location: str  # the sys.path entry it is installed in
    files: tuple[str, ...]  # paths relative to location, sorted, .dist-info included
    size: int  # bytes, sum of files
    modules: tuple[str, ...]  # top-level modules of it that the import graph reaches
    why: tuple[str, ...]  # one import chain that pulls it in: ("proc", "coffea", "numpy")
    editable: bool = False  # an editable install: its source is shipped as local code
    left_out: tuple[LeftOut, ...] = ()


@dataclass(frozen=True)
class StdlibModule:
    """A stdlib module in use; the builder adds what Python needs to start."""

    name: str
    path: str | None  # None for builtins
    why: tuple[str, ...]


@dataclass(frozen=True)
class NativeLib:
    """A shared library some ELF of the environment needs."""

    soname: str
    path: str | None  # resolved path, None when missing
    kind: NativeKind
    needed_by: tuple[str, ...]  # absolute paths of the ELF files that need it


@dataclass(frozen=True)
class LazyImport:
    """A function-level import in third-party code: listed, not shipped unless asked for."""

    module: str
    site: str  # "path/to/file.py:LINE"
    distribution: str | None  # the installed distribution that would provide it


@dataclass(frozen=True)
class Excluded:
    """A module the user excluded: never shipped, with its submodules; importing it is no error."""

    module: str
    by: tuple[str, ...]  # "cli" (the command line, or analyze()'s caller), or a pyproject.toml
    sites: tuple[str, ...]  # every "file:line" that imports it


@dataclass(frozen=True)
class Spec:
    """Everything the builder needs, and the reasons."""

    interpreter: Interpreter
    roots: tuple[str, ...]  # the analyzed processor files (absolute)
    local: tuple[LocalFile, ...] = ()
    distributions: tuple[Distribution, ...] = ()
    stdlib: tuple[StdlibModule, ...] = ()
    native: tuple[NativeLib, ...] = ()
    glibc: str | None = None  # highest GLIBC_x.y any ELF needs
    lazy: tuple[LazyImport, ...] = ()
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()  # missing imports/libraries, each with file:line
    excluded: tuple[Excluded, ...] = ()
    schema: int = SCHEMA

    @property
    def complete(self) -> bool:
        return not self.errors

    def distribution(self, name: str) -> Distribution | None:
        key = _norm(name)
        return next((d for d in self.distributions if _norm(d.name) == key), None)

    def to_json(self) -> str:
        """The canonical JSON, made once (80 ms for a coffea Spec): a frozen Spec cannot change,
        and analyze() (for its result cache), the CLI and digest() all want it."""
        text = self.__dict__.get("_json")
        if text is None:
            text = json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"
            object.__setattr__(self, "_json", text)  # not a field: eq, repr and asdict skip it
        return text

    def digest(self) -> str:
        """A hash of the Spec's content, stable across runs (the JSON is canonical)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def write(self, path: Path) -> None:
        path.write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def from_json(cls, text: str, *, source: str = "<spec>") -> Spec:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"{source}: not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise SpecError(f"{source}: expected a JSON object")
        schema = raw.get("schema")
        if not isinstance(schema, int):
            raise SpecError(f"{source}: no integer 'schema' field; is this an envpack Spec?")
        if schema > SCHEMA:
            raise SpecError(
                f"{source}: schema {schema} is newer than this envpack understands ({SCHEMA}); "
                "upgrade envpack"
            )
        try:
            return _build(cls, {**raw, "schema": SCHEMA})
        except (KeyError, TypeError, ValueError) as exc:
            raise SpecError(f"{source}: malformed Spec ({exc})") from None

    @classmethod
    def read(cls, path: Path) -> Spec:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError(f"cannot read Spec {path}: {exc.strerror}") from None
        return cls.from_json(text, source=str(path))


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


_T = TypeVar("_T")

_NESTED: dict[str, type[Any]] = {
    "interpreter": Interpreter,
    "local": LocalFile,
    "distributions": Distribution,
    "left_out": LeftOut,
    "stdlib": StdlibModule,
    "native": NativeLib,
    "lazy": LazyImport,
    "excluded": Excluded,
}


def _build(cls: type[_T], raw: dict[str, Any]) -> _T:
    """Rebuild frozen dataclasses from their ``asdict`` form, lists back into tuples."""
    kwargs: dict[str, Any] = {}
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(raw) - names
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)} in {cls.__name__}")
    for key, value in raw.items():
        sub = _NESTED.get(key)
        if sub is not None and isinstance(value, dict):
            kwargs[key] = _build(sub, value)
        elif sub is not None and isinstance(value, list):
            kwargs[key] = tuple(_build(sub, v) for v in value)
        elif isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


__all__ = [
    "SCHEMA",
    "Distribution",
    "Excluded",
    "Interpreter",
    "LazyImport",
    "LeftOut",
    "LocalFile",
    "NativeLib",
    "Spec",
    "StdlibModule",
]
