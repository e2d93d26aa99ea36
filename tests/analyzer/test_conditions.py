"""The condition language: read from real expressions, evaluated for a target."""

from __future__ import annotations

import ast

import pytest

from envpack.analyzer.conditions import UNKNOWN, Cond, Evaluator, condition


def cond(text: str, flags: dict[str, Cond] | None = None) -> Cond:
    known = flags or {}
    return condition(ast.parse(text, mode="eval").body, lambda n: known.get(n, UNKNOWN))


def value(text: str, platform: str = "linux", version: tuple[int, ...] = (3, 11, 7)) -> object:
    return Evaluator(platform, version, lambda top: top == "json").value(cond(text), {})


@pytest.mark.parametrize(
    ("text", "linux", "win32"),
    [
        ("sys.platform == 'win32'", False, True),
        ("sys.platform.startswith(('linux', 'darwin'))", True, False),
        ("os.name == 'nt'", False, True),
        ("platform.system() != 'Windows'", True, False),
        ("sys.platform in ('win32', 'cygwin')", False, True),
        ("not (os.name == 'posix' and sys.version_info >= (3, 8))", False, True),
        ("os.environ.get('X')", None, None),
        ("importlib.util.find_spec('json') is not None", True, True),
        ("find_spec('yaml')", False, False),
        ("__name__ == '__main__'", False, False),
        ("TYPE_CHECKING", False, False),
    ],
)
def test_conditions_for_two_platforms(text: str, linux: object, win32: object) -> None:
    assert value(text, "linux") is linux
    assert value(text, "win32") is win32


def test_version_comparisons() -> None:
    assert value("sys.version_info >= (3, 12)", version=(3, 11, 7)) is False
    assert value("sys.version_info[:2] == (3, 11)", version=(3, 11, 7)) is True
    assert value("sys.version_info.minor > 8", version=(3, 9, 0)) is True


def test_imported_flags_are_evaluated_where_they_are_defined() -> None:
    # psutil: ``from ._common import WINDOWS`` -> ("flag", "_common", 1, "WINDOWS"), which the
    # walk looks up in that module: there WINDOWS is ``os.name == "nt"``, and BSD an ``or`` of
    # flags that are themselves imported there (re-exports are followed, cycles are not).
    here = cond(
        "WINDOWS or BSD",
        {"WINDOWS": ("flag", "_common", 1, "WINDOWS"), "BSD": ("flag", "_common", 1, "BSD")},
    )
    defined: dict[tuple[str, str], tuple[Cond, str]] = {
        ("pkg._common", "WINDOWS"): (cond("os.name == 'nt'"), "pkg._common"),
        ("pkg._common", "BSD"): (("flag", "_bsd", 1, "FREEBSD"), "pkg._common"),
        ("pkg._bsd", "FREEBSD"): (cond("sys.platform.startswith('freebsd')"), "pkg._bsd"),
        ("pkg._loop", "X"): (("flag", "_loop", 1, "X"), "pkg._loop"),
    }

    def lookup(where: str, module: str, level: int, name: str) -> tuple[Cond, str] | None:
        package = where.rpartition(".")[0] if level else ""
        return defined.get((f"{package}.{module}" if package else module, name))

    def evaluate(c: Cond, platform: str) -> bool | None:
        return Evaluator(platform, (3, 11), lambda _: False, lookup).value(c, {}, "pkg.__init__")

    assert evaluate(here, "linux") is False
    assert evaluate(here, "win32") is True
    assert evaluate(here, "freebsd14") is True
    assert evaluate(("flag", "_missing", 1, "X"), "linux") is None  # unknown module: run time
    assert evaluate(("flag", "_loop", 1, "X"), "linux") is None  # a cycle ends, undecided
