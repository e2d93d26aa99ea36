"""`envpack analyze`: what a processor needs, and why."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import click

from envpack.cli import _output
from envpack.cli._output import echo_json, err, fail, human_size, out
from envpack.errors import EnvpackError, UsageError

if TYPE_CHECKING:
    from envpack.analyzer.interpreter import Choice
    from envpack.analyzer.notebook import NotebookAnalysis
    from envpack.spec import Spec

EPILOG = """\b
Examples:
  envpack analyze myproc.py                      # summary table, writes envpack.json
  envpack analyze myproc.py --why numpy          # the import chain that pulls numpy in
  envpack analyze myproc.py --why matplotlib     # ...or why it is left out
  envpack analyze myproc.py --include-lazy hist  # also ship hist's function-level imports
  envpack analyze myproc.py --data 'models/*.json'  # files the code names only at run time
  envpack analyze myproc.py --hint uproot=zstandard --python ~/venvs/ana/bin/python
  envpack analyze analysis.ipynb                 # what its processor classes reach, not its plots
  envpack analyze analysis.ipynb --object run_chunk   # ...or what this function reaches
  envpack analyze myproc.py --exclude distributed   # never ship it; importing it is fine

\b
Exit status: 0 complete (warnings, such as an optional import that is not installed, do not
count); 1 imports or libraries missing (all listed, each with file:line and how to resolve
it); 2 usage errors.
"""


@click.command(name="analyze", epilog=EPILOG)
@click.argument("processors", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("envpack.json"),
    show_default=True,
    help="Where to write the Spec.",
)
@click.option("--json", "as_json", is_flag=True, help="Write the Spec to stdout instead.")
@click.option(
    "--include-lazy",
    multiple=True,
    metavar="NAME|all",
    help="Ship the function-level imports of this module or distribution (repeatable).",
)
@click.option(
    "--hint",
    "hints",
    multiple=True,
    metavar="MOD=NAME,...",
    help="MOD imports these modules or distributions data-dependently (repeatable).",
)
@click.option(
    "--data",
    "data",
    multiple=True,
    metavar="PATH|GLOB",
    help="Also ship these files or directories as data, where the processor's directory has "
    "them: the task's working directory (repeatable).",
)
@click.option(
    "--exclude",
    multiple=True,
    metavar="MOD",
    help="Never ship module MOD (and its submodules); importing it is not an error (repeatable).",
)
@click.option("--why", metavar="NAME", help="Explain why NAME is (or is not) in the environment.")
@click.option(
    "--object",
    "objects",
    multiple=True,
    metavar="NAME",
    help="Notebook: ship what this top-level class or function reaches (repeatable; default: "
    "its ProcessorABC subclasses).",
)
@click.option(
    "--all-cells",
    is_flag=True,
    help="Notebook: ship what every cell imports, as if the notebook were one module.",
)
@click.option(
    "--python",
    type=click.Path(path_type=Path),
    help="Analyze for this interpreter, venv or conda env (default: the active $VIRTUAL_ENV or "
    "$CONDA_PREFIX, else the one running envpack).",
)
def analyze_command(
    processors: tuple[Path, ...],
    output: Path,
    as_json: bool,
    include_lazy: tuple[str, ...],
    hints: tuple[str, ...],
    data: tuple[str, ...],
    exclude: tuple[str, ...],
    why: str | None,
    objects: tuple[str, ...],
    all_cells: bool,
    python: Path | None,
) -> None:
    """Find every import and native library PROCESSORS need, and say why.

    Walks the imports of the processor files without running them, maps them to installed
    distributions, follows the native libraries of every extension module, and writes the
    result (the Spec) for `envpack build`. A notebook (.ipynb) ships what the objects sent to
    workers reach (its processor classes, or --object NAME); its other imports stay on the
    manager, and are listed.
    """
    # Only click and the result cache's own modules are loaded before a hit is known: a warm
    # run prints what the first one printed (recorded per console) without the analyzer or rich.
    request = _Request(processors, output, as_json, why, include_lazy, hints, data, exclude, python)
    served = None if objects or all_cells else _from_cache(request)
    if served is not None:
        if served:
            raise SystemExit(served)
        return
    with _output.recording() as chunks:
        spec, notebook, choice = _run(request, objects, all_cells)
    code = 1 if spec.errors else 0
    if notebook is None:
        from envpack.analyzer import _resultcache

        key, console = _keys(request, choice)
        _resultcache.add_rendering(key, spec.to_json(), console, (chunks, code))
    if code:
        raise SystemExit(code)


class _Request(NamedTuple):
    """The options of one `envpack analyze` of .py files (what its result and output depend on)."""

    processors: tuple[Path, ...]
    output: Path
    as_json: bool
    why: str | None
    include_lazy: tuple[str, ...]
    hints: tuple[str, ...]
    data: tuple[str, ...]
    exclude: tuple[str, ...]
    python: Path | None


def _keys(request: _Request, choice: Choice) -> tuple[str | None, str]:
    """The result cache's key for this analysis, and the key of its printed form here."""
    from envpack.analyzer import _resultcache

    key = _resultcache.analysis_key(
        request.processors,
        include_lazy=request.include_lazy,
        hints=_hint_map(request.hints),
        python=choice.python,
        data=request.data,
        exclude=request.exclude,
    )
    shown = (str(request.output), request.as_json, request.why, choice.python, choice.source)
    return key, repr((_output.console_signature(), shown))


def _hint_map(hints: tuple[str, ...]) -> dict[str, list[str]]:
    from envpack.analyzer.hints import parse_hint

    hint_map: dict[str, list[str]] = {}
    for text in hints:
        mod, names = parse_hint(text)
        hint_map.setdefault(mod, []).extend(names)
    return hint_map


def _from_cache(request: _Request) -> int | None:
    """Serve the command from the result cache: the exit status, or None when it cannot (a
    notebook, a usage error, no valid entry, or none printed for this console yet)."""
    from envpack.analyzer import _resultcache
    from envpack.analyzer.interpreter import choose

    if any(p.suffix == ".ipynb" for p in request.processors):
        return None
    try:
        choice = choose(request.python)
        key, console = _keys(request, choice)
    except UsageError:
        return None  # the full path says it, where and as it always has
    entry = _resultcache.lookup(key)
    printed = _resultcache.rendering(entry, console) if entry is not None else None
    if entry is None or printed is None:
        return None
    chunks, code = printed
    spec_json = entry["spec"]
    if not request.as_json:
        try:
            request.output.write_text(spec_json, encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {request.output}: {exc.strerror}", 2)
    _output.replay(chunks, spec_json)
    return int(code)


def _run(
    request: _Request, objects: tuple[str, ...], all_cells: bool
) -> tuple[Spec, NotebookAnalysis | None, Choice]:
    """Analyze and print; errors of the Spec are printed, the exit status is the caller's."""
    from rich.markup import escape

    from envpack.analyzer.api import analyze
    from envpack.analyzer.interpreter import choose

    processors, output, as_json, why, include_lazy, hints, data, exclude, python = request
    notebook: NotebookAnalysis | None = None
    try:
        choice = choose(python)
        err.print(f"target interpreter: {choice.python} ({choice.reason})", markup=False)
        hint_map = _hint_map(hints)
        notebooks = [p for p in processors if p.suffix == ".ipynb"]
        if notebooks and len(processors) > 1:
            raise UsageError("give one notebook alone, or processor .py files")
        if (objects or all_cells) and not notebooks:
            raise UsageError("--object and --all-cells apply to a notebook (.ipynb)")
        if objects and all_cells:
            raise UsageError("--object and --all-cells exclude each other")
        with _output.unrecorded(), err.status("analyzing imports and native libraries…"):
            if notebooks:
                from envpack.analyzer.notebook import analyze_notebook

                notebook = analyze_notebook(
                    notebooks[0],
                    objects=objects,
                    all_cells=all_cells,
                    include_lazy=include_lazy,
                    hints=hint_map,
                    python=choice.python,
                )
                spec = notebook.spec
            else:
                spec = analyze(
                    processors,
                    include_lazy=include_lazy,
                    hints=hint_map,
                    python=choice.python,
                    data=data,
                    exclude=exclude,
                )
    except UsageError as exc:
        fail(str(exc), 2)
    except EnvpackError as exc:
        fail(str(exc), 1)

    if as_json:
        echo_json(spec.to_json())
    else:
        try:
            spec.write(output)  # (the JSON is made once, for this and the result cache)
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror}", 2)
    if notebook is not None:
        notebook_notes(notebook)
    if why:
        explain(spec, why, notebook)
    elif not as_json:
        summarize(spec)
        if notebook is not None:
            summarize_notebook(notebook)
        out.print(f"Spec written to [bold]{output}[/]")
    for line in spec.errors:
        err.print(f"[bold red]error:[/] {escape(line)}")
    return spec, notebook, choice


def summarize(spec: Spec) -> None:
    from rich.markup import escape
    from rich.table import Table

    interp = spec.interpreter
    out.print(
        f"[bold]Interpreter[/] {interp.implementation} {interp.version} ({interp.executable})"
        + (f", glibc >= {spec.glibc}" if spec.glibc else "")
    )
    table = Table(title="Distributions shipped", title_justify="left")
    table.add_column("name")
    table.add_column("version")
    table.add_column("size", justify="right")
    table.add_column("files", justify="right")
    table.add_column("why")
    for d in spec.distributions:
        table.add_row(
            d.name + (" (editable)" if d.editable else ""),
            d.version,
            human_size(d.size),
            str(len(d.files)),
            " -> ".join(d.why),
        )
    out.print(table)
    total = sum(d.size for d in spec.distributions)
    modules = sum(1 for f in spec.local if f.kind == "module")
    data = sum(1 for f in spec.local if f.kind != "module")
    out.print(
        f"{len(spec.distributions)} distributions, {human_size(total)}; "
        f"{len(spec.stdlib)} stdlib modules; {modules} local modules, {data} data files"
    )
    bundle = [n for n in spec.native if n.kind == "bundle"]
    if bundle:
        out.print("[bold]Native libraries to bundle[/]")
        for lib in bundle:
            out.print(f"  {lib.soname}  {lib.path}  (needed by {len(lib.needed_by)} files)")
    if spec.lazy:
        by_module: dict[str, int] = {}
        for lazy in spec.lazy:
            by_module[lazy.module] = by_module.get(lazy.module, 0) + 1
        shown = ", ".join(f"{m} ({n})" for m, n in sorted(by_module.items())[:12])
        more = f", … {len(by_module) - 12} more" if len(by_module) > 12 else ""
        out.print(
            f"[bold]Lazy imports not shipped[/] ({len(spec.lazy)} sites): {shown}{more}\n"
            "  ship one with --include-lazy NAME; see where with --why NAME"
        )
    for ex in spec.excluded:
        where = f"{len(ex.sites)} import sites" if ex.sites else "nothing imports it"
        out.print(f"[bold]Excluded[/] {ex.module} (by {', '.join(ex.by)}): {where}")
    for line in spec.warnings:
        err.print(f"[yellow]warning:[/] {escape(line)}")


def summarize_notebook(nb: NotebookAnalysis) -> None:
    """What of the notebook ships, and which of its imports stay on the manager."""
    from envpack.analyzer.notebook import manager_summary

    name = Path(nb.notebook).name
    cells = ", ".join(map(str, nb.cells))
    if nb.all_cells:
        out.print(f"[bold]Analyzed from {name}[/]: every code cell, as one module (--all-cells)")
    else:
        out.print(
            f"[bold]Shipped from {name}[/] (by value, cells {cells}): {', '.join(nb.shipped)}"
        )
    if nb.manager_imports:
        out.print(
            "[bold]Manager-side imports, not shipped[/] (the shipped code does not reach them): "
            + ", ".join(manager_summary(nb.manager_imports))
        )


def notebook_notes(nb: NotebookAnalysis) -> None:
    """The lines of the notebook not read as Python (on stderr, so --json stays clean)."""
    from envpack.analyzer.notebook import cell_site

    name = Path(nb.notebook).name
    for skip in nb.skipped:
        where = cell_site(name, skip.cell, skip.line)
        err.print(f"note: {where}: not Python, skipped: {skip.text}", markup=False)


def explain(spec: Spec, name: str, notebook: NotebookAnalysis | None = None) -> None:
    """Print every reason NAME is in the environment, or why it is not."""
    from packaging.utils import canonicalize_name

    key = canonicalize_name(name)
    found = False
    dist = spec.distribution(name)
    if dist is not None:
        found = True
        out.print(f"{dist.name} {dist.version} is shipped: " + " -> ".join(dist.why))
        out.print(f"  modules imported from it: {', '.join(dist.modules)}")
    for mod in spec.stdlib:
        if mod.name == name:
            found = True
            out.print(f"{name} (stdlib) is shipped: " + " -> ".join(mod.why))
    for f in spec.local:
        if f.arcname == name or Path(f.arcname).stem == name:
            found = True
            out.print(f"{f.arcname} ({f.kind}) is shipped: {f.why}")
    for lib in spec.native:
        if lib.soname == name or lib.soname.startswith(name + "."):
            found = True
            out.print(f"{lib.soname} ({lib.kind}, {lib.path}) is needed by:")
            for needer in lib.needed_by:
                out.print(f"  {needer}")
    for d in spec.distributions:
        for lo in d.left_out:
            if canonicalize_name(lo.name) == key:
                found = True
                out.print(
                    f"{lo.name} is not shipped: {d.name} requires '{lo.requirement}', {lo.reason}"
                )
    sites = [lz for lz in spec.lazy if lz.module.split(".")[0] == name or lz.distribution == name]
    if sites:
        found = True
        out.print(
            f"{name} is imported lazily (inside functions), not shipped; --include-lazy to ship:"
        )
        for lz in sites[:20]:
            out.print(f"  {lz.site}: import {lz.module}")
        if len(sites) > 20:
            out.print(f"  … {len(sites) - 20} more")
    manager = [
        m for m in (notebook.manager_imports if notebook else ()) if m.module.split(".")[0] == name
    ]
    if manager and notebook is not None:
        found = True
        from envpack.analyzer.notebook import cell_site

        nb = Path(notebook.notebook).name
        out.print(f"{name} is imported by manager-side code only, not shipped:")
        for m in manager:
            out.print(f"  {cell_site(nb, m.cell, m.line)}: import {m.module}")
    for ex in spec.excluded:
        if name == ex.module or name.startswith(ex.module + "."):
            found = True
            out.print(f"{name} is excluded (by {', '.join(ex.by)}); imported at:")
            for where in ex.sites:
                out.print(f"  {where}")
    if not found:
        out.print(f"{name}: not in the environment, and nothing analyzed imports or requires it")
