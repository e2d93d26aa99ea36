"""One exception root, so callers can catch everything envpack raises in one clause."""

from __future__ import annotations


class EnvpackError(Exception):
    """Root of every error envpack raises on purpose."""

    def __reduce__(self) -> tuple[type[EnvpackError], tuple[object, ...]]:
        # Errors may cross a process boundary (parallel analysis); keep them picklable.
        return (type(self), self.args)


class UsageError(EnvpackError):
    """Bad input from the user: no such file, not Python, a syntax error (CLI exit 2)."""


class AnalysisError(EnvpackError):
    """Analysis finished but found problems: missing imports or libraries (CLI exit 1).

    Carries every problem at once, so a user fixes them all in one round.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems)
        self.problems = problems

    def __str__(self) -> str:
        return "\n".join(self.problems)

    def __reduce__(self) -> tuple[type[AnalysisError], tuple[object, ...]]:
        return (type(self), (self.problems,))


class SpecError(EnvpackError):
    """A Spec that cannot be read: bad JSON, a newer schema, a missing field."""


class BuildError(EnvpackError):
    """The build could not produce a tarball (file gone, disk full, unwritable output)."""
