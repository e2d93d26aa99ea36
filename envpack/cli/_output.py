"""Shared presentation helpers for the CLI: sizes, consoles, error exits."""

from __future__ import annotations

import sys
from typing import NoReturn

import click
from rich.console import Console

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover - the loop returns at GB


def fail(message: str, code: int = 2) -> NoReturn:
    """Print an error the way click does and exit: 2 for usage, 1 for failed checks."""
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    sys.exit(code)


def echo_json(text: str) -> None:
    click.echo(text, nl=False)
