"""`envpack build`: a Spec (or processor files, analyzed on the way) in, a tarball path out."""

from __future__ import annotations

import re
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from envpack.cli._output import human_size
from envpack.errors import AnalysisError, EnvpackError, SpecError, UsageError
from envpack.spec import Spec


def _load_spec(
    inputs: tuple[Path, ...],
    python: Path | None,
    err: Console,
    data: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
) -> Spec:
    if not inputs:
        inputs = (Path("envpack.json"),)
    py = [p for p in inputs if p.suffix == ".py"]
    other = [p for p in inputs if p.suffix != ".py"]
    notebook = len(inputs) == 1 and inputs[0].suffix == ".ipynb"
    if py and other and not notebook:
        raise UsageError("give either processor .py files or one Spec file, not both")
    if py or notebook:
        from envpack.analyzer.api import analyze
        from envpack.analyzer.interpreter import choose

        choice = choose(python)
        err.print(f"target interpreter: {choice.python} ({choice.reason})", markup=False)
        if notebook:
            from envpack.analyzer.notebook import analyze_notebook

            return analyze_notebook(inputs[0], python=choice.python).spec
        return analyze(py, python=choice.python, data=data, exclude=exclude)
    if python is not None:
        raise UsageError(
            "--python applies to processor files; a Spec names its interpreter already "
            "(analyze again with `envpack analyze PROC.py --python ...`, or build PROC.py)"
        )
    if data:
        raise UsageError(
            "--data is part of the analysis: give it with the processor files "
            "(envpack build PROC.py --data ...), or to `envpack analyze`"
        )
    if exclude:
        raise UsageError("--exclude is for analyzing PROC.py files; re-analyze to change a Spec")
    if len(other) > 1:
        raise UsageError("give one Spec file")
    if not other[0].exists():
        raise UsageError(f"no Spec at {other[0]} (run `envpack analyze PROC.py` first)")
    spec = Spec.read(other[0])
    err.print(
        f"target interpreter: {spec.interpreter.executable} (from the Spec {other[0]})",
        markup=False,
    )
    return spec


def _glibc_version(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"\d+\.\d+(\.\d+)?", value):
        raise click.BadParameter(f"{value!r} is not a glibc version such as 2.28")
    return value


BUILD_EPILOG = """\b
Examples:
  envpack build                          # from ./envpack.json, into .
  envpack build myproc.py -o dist        # analyze and build in one step
  envpack build analysis.ipynb -o dist   # what the notebook's processor classes reach
  envpack build myproc.py --python ~/venvs/ana/bin/python
  envpack build --target-glibc 2.28      # refuse unless EL8-era workers can run it
  envpack build myproc.py --data 'models/*.json'  # also ship files the code names at run time
  envpack build myproc.py --exclude distributed   # ...never shipping distributed
  envpack build -o dist --compress zstd  # smaller and faster; workers then need zstd

\b
The name is envpack-<hash>.tar.gz, the hash over the contents: the same Spec gives the same
bytes, and a build whose tarball is already in the output directory is skipped. By default
test suites inside distributions are left out and ELF debug sections stripped (gzip level 5).
The target interpreter (for PROC.py inputs) is --python, else the active $VIRTUAL_ENV or
$CONDA_PREFIX, else the one running envpack; the chosen one is printed.
Exit status: 0 built or cached, 1 build failed, 2 bad input (no Spec, newer schema, a Spec that
still lists missing imports).
"""


@click.command("build", epilog=BUILD_EPILOG)
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option("-o", "--out", "out_dir", default=".", type=click.Path(path_type=Path),
              show_default=True, help="Directory for the tarball and envpack-run.")  # fmt: skip
@click.option("--compress", type=click.Choice(["gzip", "zstd"]), default="gzip", show_default=True)
@click.option("--level", type=click.IntRange(1, 22), default=None, help="Compression level.")
@click.option("--keep-tests", is_flag=True,
              help="Ship the test suites inside distributions.")  # fmt: skip
@click.option("--keep-debug", is_flag=True,
              help="Keep the debug sections (DWARF) of ELF files.")  # fmt: skip
@click.option("--python", type=click.Path(path_type=Path),
              help="Analyze PROC.py files for this interpreter, venv or conda env (default: "
              "the active $VIRTUAL_ENV or $CONDA_PREFIX, else envpack's own).")  # fmt: skip
@click.option("--target-glibc", metavar="X.Y", callback=_glibc_version,
              help="Refuse to build if a shipped ELF file needs a newer glibc (e.g. 2.28 for "
              "EL8 workers, 2.34 for EL9); the culprits are named.")  # fmt: skip
@click.option("--data", "data", multiple=True, metavar="PATH|GLOB",
              help="With PROC.py: ship these files as data too (repeatable).")  # fmt: skip
@click.option("--exclude", multiple=True, metavar="MOD",
              help="With PROC.py: never ship module MOD; importing it is no error.")  # fmt: skip
def build_command(
    inputs: tuple[Path, ...],
    out_dir: Path,
    compress: str,
    level: int | None,
    keep_tests: bool,
    keep_debug: bool,
    python: Path | None,
    target_glibc: str | None,
    data: tuple[str, ...],
    exclude: tuple[str, ...],
) -> None:
    """Build envpack-<hash>.tar.gz from SPEC (default ./envpack.json) or from PROC.py files.

    The tarball holds the interpreter, the stdlib, the Spec's distributions, your local modules
    and data files and the native libraries they need, relocatable anywhere; envpack-run is
    written next to it for the workers.
    """
    from envpack.build import build, source_size

    err = Console(stderr=True, soft_wrap=True)
    try:
        spec = _load_spec(inputs, python, err, data, exclude)
    except (UsageError, SpecError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise SystemExit(2) from None
    except AnalysisError as exc:
        err.print(f"[red]analysis found problems:[/]\n{exc}")
        raise SystemExit(2) from None
    if any(p.suffix == ".py" for p in inputs):
        for line in spec.warnings:  # what `envpack analyze` would have said
            err.print(f"[yellow]warning:[/] {line}")
    if spec.errors:
        err.print("[red]the Spec is incomplete; fix these and re-analyze:[/]")
        for problem in spec.errors:
            err.print(f"  {escape(problem)}")
        raise SystemExit(2)
    if compress == "gzip" and level is not None and level > 9:
        err.print("[red]error:[/] gzip levels are 1-9")
        raise SystemExit(2)

    with Progress(
        TextColumn("{task.description:8}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=True,
    ) as bar:  # fmt: skip
        tasks: dict[str, object] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)  # type: ignore[arg-type]

        try:
            env = build(
                spec,
                out_dir,
                compress=compress,  # type: ignore[arg-type]
                level=level,
                progress=progress,
                keep_tests=keep_tests,
                keep_debug=keep_debug,
                target_glibc=target_glibc,
            )
        except SpecError as exc:
            err.print(f"[red]error:[/] {exc}")
            raise SystemExit(2) from None
        except EnvpackError as exc:
            err.print(f"[red]build failed:[/] {exc}")
            raise SystemExit(1) from None

    out = Console()
    table = Table(title="envpack build", show_edge=False)
    for col in ("part", "version", "files", "size"):
        table.add_column(col, justify="right" if col in ("files", "size") else "left")
    for group in sorted(env.groups, key=lambda g: -g.size):
        table.add_row(group.name, group.version, str(group.files), human_size(group.size))
    table.add_row("total", "", str(env.files), human_size(env.unpacked_size), style="bold")
    out.print(table)
    # A cached build does not walk the source env again: it shows what its build measured.
    whole = source_size(spec, env.hash, walk=not env.cached)
    state = "cached, not rebuilt" if env.cached else "built"
    source = f"; whole source environment: {human_size(whole)}" if whole is not None else ""
    out.print(
        f"{state}: {human_size(env.size)} compressed, {human_size(env.unpacked_size)} unpacked, "
        f"{env.files} files{source}",
        soft_wrap=True,
    )
    if env.layers and not env.cached:
        made = [layer for layer in env.layers if not layer.reused]
        named = ", ".join(layer.name for layer in made[:6]) + (", ..." if len(made) > 6 else "")
        out.print(
            f"layers: {len(env.layers)}; {len(env.layers) - len(made)} copied from the piece "
            f"cache, {len(made)} compressed{f' ({named})' if made else ''}",
            soft_wrap=True,
        )
    if env.dropped_files:
        out.print(
            f"dropped {env.dropped_files} test-suite files ({human_size(env.dropped_size)}) "
            "inside distributions (--keep-tests keeps them)",
            soft_wrap=True,
        )
    for warning in env.warnings:
        err.print(f"[yellow]warning:[/] {warning}")
    if env.runner is not None:
        out.print(f"runner: {env.runner}", soft_wrap=True)
    click.echo(str(env.path))
