"""Shared presentation helpers for the CLI: sizes, consoles, error exits."""

from __future__ import annotations

import sys
from typing import NoReturn

import click
from rich.console import Console

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def human_size(n: float, *, binary: bool = False) -> str:
    """1.2 MB (decimal, as du -h --si and pip show sizes) or 1.2 MiB (binary: the node cache,
    whose limits are given in K/M/G of 1024)."""
    step, units = (
        (1024, ("B", "KiB", "MiB", "GiB", "TiB"))
        if binary
        else (
            1000,
            ("B", "kB", "MB", "GB", "TB"),
        )
    )
    for unit in units:
        if abs(n) < step or unit == units[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= step
    raise AssertionError("unreachable: the loop returns at the last unit")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print an error the way click does and exit: 2 for usage, 1 for failed checks."""
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    sys.exit(code)


def echo_json(text: str) -> None:
    click.echo(text, nl=False)
