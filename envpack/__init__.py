"""envpack: ship exactly the Python environment a processor needs to remote workers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from envpack.errors import AnalysisError, BuildError, EnvpackError, SpecError, UsageError

if TYPE_CHECKING:
    from envpack.analyzer.api import analyze
    from envpack.analyzer.notebook import analyze_notebook
    from envpack.analyzer.objects import analyze_objects
    from envpack.build import Environment, build
    from envpack.spec import Spec

__all__ = [
    "AnalysisError",
    "BuildError",
    "Environment",
    "EnvpackError",
    "Spec",
    "SpecError",
    "UsageError",
    "analyze",
    "analyze_notebook",
    "analyze_objects",
    "build",
]

_LAZY = {
    "analyze": "envpack.analyzer.api",
    "analyze_notebook": "envpack.analyzer.notebook",
    "analyze_objects": "envpack.analyzer.objects",
    "build": "envpack.build",
    "Environment": "envpack.build",
    "Spec": "envpack.spec",
}


def __getattr__(name: str) -> Any:
    # analyze and build pull in pyelftools and lief, the Spec its dataclasses: load them on
    # first use only (a CLI run answered from the result cache needs none of them).
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(module), name)
