"""Shared presentation helpers for the CLI: sizes, consoles, error exits, recorded output.

rich is imported when a console first prints: `envpack --help` needs click alone, and an
`envpack analyze` answered from the result cache writes the output it recorded the first time
(``recording``, ``replay``), byte for byte, for the same console (``console_signature``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, NoReturn, cast

import click

if TYPE_CHECKING:
    from rich.console import Console

# A recorded write: (stream, text); SPEC_JSON stands for the Spec's JSON echoed to stdout.
Chunk = tuple[int, str]
STDOUT, STDERR, SPEC_JSON = 1, 2, 3

# Everything rich's Console reads from the environment to decide colours, width and height.
_RICH_ENV = (
    "COLORTERM",
    "COLUMNS",
    "FORCE_COLOR",
    "JUPYTER_COLUMNS",
    "JUPYTER_LINES",
    "LINES",
    "NO_COLOR",
    "TERM",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
)

_consoles: dict[bool, Console] = {}
_chunks: list[Chunk] | None = None  # the recording under way, if any


def _console(stderr: bool) -> Console:
    console = _consoles.get(stderr)
    if console is None:
        from rich.console import Console

        console = _consoles[stderr] = Console(stderr=stderr, highlight=False, soft_wrap=True)
    return console


class _LazyConsole:
    """A rich Console made on first use."""

    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr

    def __getattr__(self, name: str) -> Any:
        return getattr(_console(self._stderr), name)


out = cast("Console", _LazyConsole(False))
err = cast("Console", _LazyConsole(True))


class _Tee:
    """A console's stream that also appends what is written to the recording."""

    def __init__(self, stream: IO[str], number: int) -> None:
        self._stream = stream
        self._number = number

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        if _chunks is not None:
            _chunks.append((self._number, text))
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)  # isatty, encoding, flush: the stream's own


@contextmanager
def recording() -> Iterator[list[Chunk]]:
    """Keep every write of ``out``, ``err`` and ``echo_json`` made inside, in order."""
    global _chunks
    chunks: list[Chunk] = []
    consoles = [(_console(False), sys.stdout, STDOUT), (_console(True), sys.stderr, STDERR)]
    for console, stream, number in consoles:
        console.file = cast("IO[str]", _Tee(stream, number))
    _chunks = chunks
    try:
        yield chunks
    finally:
        _chunks = None
        for console, _, _ in consoles:
            console.file = None  # type: ignore[assignment]  # back to the current sys streams


@contextmanager
def unrecorded() -> Iterator[None]:
    """Leave out of the recording what is written inside (a transient spinner)."""
    global _chunks
    saved, _chunks = _chunks, None
    try:
        yield
    finally:
        _chunks = saved


def replay(chunks: Sequence[Chunk], spec_json: str) -> None:
    """Write recorded output again, as it was written."""
    for number, text in chunks:
        if number == SPEC_JSON:
            echo_json(spec_json)
            continue
        stream = sys.stdout if number == STDOUT else sys.stderr
        stream.write(text)
        stream.flush()


def console_signature() -> tuple[Any, ...]:
    """What rich's output depends on besides what is printed: the streams (terminal or not,
    encoding), the terminal's size, the environment rich reads, rich's and click's code."""
    from envpack.analyzer._resultcache import module_stats

    size = None
    for fd in (0, 1, 2):
        try:
            size = tuple(os.get_terminal_size(fd))
            break
        except (OSError, ValueError):
            continue
    streams = [(_isatty(s), getattr(s, "encoding", None)) for s in (sys.stdout, sys.stderr)]
    env = [os.environ.get(k) for k in _RICH_ENV]
    return (streams, size, env, module_stats(("rich", "click")))


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


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
    if _chunks is not None:
        _chunks.append((SPEC_JSON, ""))
    click.echo(text, nl=False)
