"""`envpack inspect`: what an environment tarball holds, read from its first few members only."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from envpack.archive import read_meta
from envpack.cli._output import human_size
from envpack.errors import SpecError
from envpack.layout import (
    LAYERS,
    MANIFEST,
    SPEC,
    SUMMARY,
    Index,
    LayoutError,
    Record,
    parse_index,
    parse_manifest,
    parse_summary,
)
from envpack.spec import Spec


def read_head(path: Path) -> dict[str, bytes]:
    """The `.envpack/` members of a tarball's head; ValueError if it cannot be read."""
    try:
        return dict(read_meta(path))
    except (OSError, tarfile.TarError, EOFError, RuntimeError) as exc:
        raise ValueError(f"{path}: not a readable tarball ({exc})") from None


def load_layers(path: Path) -> Index | None:
    """The layer index of a tarball (None for an unlayered one)."""
    meta = read_head(path)
    if LAYERS not in meta:
        return None
    try:
        return parse_index(meta[LAYERS])
    except LayoutError as exc:
        raise ValueError(f"{path}: {exc}") from None


def load_meta(path: Path) -> tuple[dict[str, str], list[Record], Spec]:
    """summary, manifest records and Spec of a tarball; ValueError if it is not an envpack one."""
    meta = read_head(path)
    missing = [m for m in (SUMMARY, MANIFEST, SPEC) if m not in meta]
    if missing:
        raise ValueError(f"{path}: not an envpack environment (no {', '.join(missing)})")
    summary = parse_summary(meta[SUMMARY])
    try:
        manifest = parse_manifest(meta[MANIFEST])
    except LayoutError as exc:
        raise ValueError(f"{path}: {exc}") from None
    try:
        spec = Spec.from_json(meta[SPEC].decode(), source=f"{path}:{SPEC}")
    except SpecError as exc:
        raise ValueError(str(exc)) from None
    return summary, manifest, spec


@click.command("inspect")
@click.argument("tarball", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the summary and Spec as JSON.")
def inspect_command(tarball: Path, as_json: bool) -> None:
    """Show what ENV.tar.gz holds (without unpacking it)."""
    try:
        summary, _records, spec = load_meta(tarball)
        index = load_layers(tarball)
    except ValueError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {exc}")
        raise SystemExit(2) from None
    if as_json:
        layers = [
            {"hash": e.hash, "name": e.name, "size": e.size}
            for e in (index.layers if index is not None else ())
        ]
        doc = {
            "schema": 1,
            "summary": summary,
            "layers": layers,
            "spec": json.loads(spec.to_json()),
        }
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
        return
    out = Console()
    interp = spec.interpreter
    bundled = [n for n in spec.native if n.kind == "bundle"]
    out.print(f"[bold]{tarball.name}[/]  hash {summary.get('hash', '?')}")
    out.print(
        f"  {interp.implementation} {interp.version} ({interp.machine})"
        f"{', conda' if interp.conda else ''}; glibc floor {spec.glibc or 'unknown'}"
    )
    out.print(
        f"  {summary.get('files', '?')} files, "
        f"{human_size(int(summary.get('bytes', 0)))} unpacked, "
        f"{human_size(tarball.stat().st_size)} compressed"
    )
    table = Table(show_edge=False)
    table.add_column("distribution")
    table.add_column("version")
    table.add_column("size", justify="right")
    for dist in spec.distributions:
        table.add_row(dist.name, dist.version, human_size(dist.size))
    out.print(table)
    if bundled:
        out.print("  bundled libraries: " + ", ".join(n.soname for n in bundled))
    local = [f.arcname for f in spec.local]
    if local:
        more = ", ..." if len(local) > 5 else ""
        out.print(f"  local files: {len(local)} ({', '.join(local[:5])}{more})")
    if index is not None:
        top = sorted(index.layers, key=lambda e: -e.size)[:5]
        biggest = ", ".join(f"{e.name} {human_size(e.size)}" for e in top)
        out.print(f"  {len(index.layers)} layers, each unpacked once per node (largest: {biggest})")
