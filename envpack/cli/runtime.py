"""`envpack runner` and `envpack cache ls|prune`: the worker-side commands.

Kept to click and the stdlib (no rich, no lief): operators run these on worker nodes.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

import click

from envpack.cli._output import human_size
from envpack.errors import EnvpackError, UsageError
from envpack.runtime import runner_path
from envpack.runtime.cache import (
    CacheEntry,
    LayerEntry,
    cache_dir,
    list_entries,
    list_layers,
    prune,
    saving,
)

_CACHE_HELP = (
    "The node cache (default: what envpack-run uses: $ENVPACK_CACHE, else /var/tmp/envpack-<uid>,"
    " else /tmp/envpack-<uid>; never $TMPDIR)."
)


@click.command(name="runner")
def runner_command() -> None:
    """Print the path of envpack-run (for coffea's wrapper= or a shell)."""
    click.echo(str(runner_path()))


# Cache limits are K/M/G of 1024 (ENVPACK_CACHE_MAX), so sizes here are binary too.
_size = functools.partial(human_size, binary=True)


@click.group(name="cache")
def cache_command() -> None:
    """Inspect or prune this node's cache of unpacked environments."""


def _ago(stamp: float) -> str:
    seconds = max(0, int(time.time() - stamp))
    for unit, width in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= width:
            return f"{seconds // width}{unit} ago"
    return f"{seconds}s ago"


def _row(entry: CacheEntry) -> str:
    state = "in use" if entry.in_use else ""
    if entry.layers:
        state = f"{state}, {len(entry.layers)} layers".lstrip(", ")
    return f"{entry.hash}  {_size(entry.size):>10}  {_ago(entry.last_use):>9}  {state}".rstrip()


def _layer_row(layer: LayerEntry) -> str:
    users = f"{layer.shared_by} env" + ("" if layer.shared_by == 1 else "s")
    return f"{layer.hash}  {_size(layer.size):>10}  {users:>9}  {layer.name}".rstrip()


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@cache_command.command(name="ls")
@click.option("--cache", "cache", type=click.Path(path_type=Path), help=_CACHE_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
def cache_ls(cache: Path | None, as_json: bool) -> None:
    """List entries, least recently used first: hash, size on disk, last use, whether in use;
    then the layer store: each layer's size, how many entries share it, and what sharing saves.

    The first line says which cache this is and why (the runner's own choice). A layered
    entry's size is what it alone holds; its layers are counted once, in the store.
    """
    try:
        where = cache or cache_dir()
        entries = list_entries(where)
        layers = list_layers(where)
    except EnvpackError as exc:
        _fail(str(exc))
        return
    if as_json:
        doc = {
            "schema": 1,
            "cache": str(where),
            "entries": [
                {"hash": e.hash, "size": e.size, "last_use": e.last_use, "in_use": e.in_use,
                 "layers": list(e.layers)}
                for e in entries
            ],
            "layers": [
                {"hash": x.hash, "name": x.name, "size": x.size, "shared_by": x.shared_by}
                for x in layers
            ],
            "saving": saving(layers),
        }  # fmt: skip
        click.echo(json.dumps(doc, indent=1))
        return
    click.echo(f"cache {where}" + ("" if cache else " (the runner's default on this node)"))
    if not entries and not layers:
        click.echo("empty")
        return
    if entries:
        click.echo(f"{'hash':16}  {'size':>10}  {'last use':>9}")
        for entry in entries:
            click.echo(_row(entry))
    if layers:
        click.echo(f"{'layer':16}  {'size':>10}  {'shared by':>9}  name")
        for layer in layers:
            click.echo(_layer_row(layer))
    total = sum(e.size for e in entries) + sum(x.size for x in layers)
    click.echo(f"{len(entries)} entries, {_size(total)} in {where}")
    if layers:
        click.echo(
            f"{len(layers)} layers, {_size(sum(x.size for x in layers))}, each stored once:"
            f" sharing saves {_size(saving(layers))}"
        )


@cache_command.command(name="prune")
@click.option("--cache", "cache", type=click.Path(path_type=Path), help=_CACHE_HELP)
@click.option(
    "--max",
    "max_text",
    metavar="SIZE",
    help="Size to prune to: bytes or K/M/G/T (default: $ENVPACK_CACHE_MAX, else 20G; 0 empties).",
)
def cache_prune(cache: Path | None, max_text: str | None) -> None:
    """Remove least recently used entries until the cache fits; entries in use are kept, and
    so are the layers they use (a layer goes when no remaining entry lists it)."""
    try:
        where = cache or cache_dir()
        result = prune(where, max_text)
    except UsageError as exc:
        raise click.BadParameter(str(exc), param_hint="--max") from None
    except EnvpackError as exc:
        _fail(str(exc))
        return
    for entry in result.removed:
        click.echo(f"removed {entry.hash} ({_size(entry.size)})")
    for entry in result.kept_in_use:
        click.echo(f"kept    {entry.hash} ({_size(entry.size)}): in use")
    for layer in result.layers_removed:
        label = f" {layer.name}" if layer.name else ""
        click.echo(f"removed layer {layer.hash}{label} ({_size(layer.size)}): no entry uses it")
    for path in result.stale_removed:
        click.echo(f"removed stale {path.name}")
    click.echo(
        f"{_size(result.size_before)} -> {_size(result.size_after)} (limit {_size(result.limit)})"
    )
