"""The worker side: ``envpack-run`` (POSIX sh), ``bin/run_in_env`` and the node cache.

The two scripts ship as files next to the tarball and inside it; they need no Python on the
worker. This module only says where they are, and the exit statuses they share, so the builder
and the integrations never hard-code paths or numbers.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent

RUNNER_NAME = "envpack-run"
"""File name of the runner, as `envpack build` writes it next to the tarball."""

RUN_IN_ENV_ARCNAME = "bin/run_in_env"
"""Where the builder puts :func:`run_in_env_path` inside every environment (mode 0755)."""

# Exit statuses of envpack-run and run_in_env when they fail before the command runs
# (sysexits.h numbers, so they rarely collide with a command's own).
EXIT_USAGE = 64  # bad option, bad ENVPACK_CACHE_MAX
EXIT_CORRUPT = 65  # archive corrupt, truncated, or not matching its .envpack/summary
EXIT_NO_ENV = 66  # ENV missing, unreadable, or not an environment
EXIT_UNSAFE = 67  # archive refused: '..', absolute, or escaping link members
EXIT_NO_TOOL = 69  # flock or zstd missing on the worker
EXIT_GLIBC = 70  # the worker's glibc is older than the environment's ELF files need
EXIT_CANT_WRITE = 73  # cache not writable, disk full during unpack
EXIT_LOCK_TIMEOUT = 75  # -w expired waiting for a lock


def runner_path() -> Path:
    """The ``envpack-run`` script (coffea's ``wrapper=``, ``envpack runner``)."""
    return _HERE / RUNNER_NAME


def run_in_env_path() -> Path:
    """The ``run_in_env`` script the builder copies to ``bin/run_in_env`` (TaskVine's face)."""
    return _HERE / "run_in_env.sh"


def poncho_scripts() -> dict[str, Path]:
    """``bin/activate`` and ``bin/conda-unpack``, which poncho_package_run and
    python_package_run call on every package: both delegate to the runner."""
    return {"bin/activate": _HERE / "activate.sh", "bin/conda-unpack": _HERE / "conda-unpack.sh"}


__all__ = [
    "EXIT_CANT_WRITE",
    "EXIT_CORRUPT",
    "EXIT_GLIBC",
    "EXIT_LOCK_TIMEOUT",
    "EXIT_NO_ENV",
    "EXIT_NO_TOOL",
    "EXIT_UNSAFE",
    "EXIT_USAGE",
    "RUNNER_NAME",
    "RUN_IN_ENV_ARCNAME",
    "poncho_scripts",
    "run_in_env_path",
    "runner_path",
]
