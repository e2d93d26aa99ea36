"""The conda backend: the Spec's files, selected and classified through conda-pack's API.

conda-pack knows, for every file a conda package installed, whether it embeds the build prefix
(``prefix_placeholder``, ``file_mode`` text/binary) and how to strip local paths from the
``conda-meta`` records. We reuse that knowledge and its include/exclude filters, but write the
tarball with envpack's own deterministic writer and layout (same name scheme, same manifest),
because conda-pack's archives keep each file's on-disk metadata and so are not reproducible,
and its answer to embedded prefixes (a `conda-unpack` script run after unpacking) is exactly
the post-unpack rewriting envpack avoids.

What happens to prefix-embedding files: Python scripts in bin/ become trampolines (as for any
env); ELF files get `$ORIGIN` run paths where the Spec bundles libraries (conda's own are
`$ORIGIN`-relative already); any other *text* file that still holds the build prefix is shipped
as is and reported in the build's warnings, by name.
"""

from __future__ import annotations

from pathlib import Path

from envpack.archive import Entry
from envpack.collect import Collection
from envpack.errors import BuildError
from envpack.spec import Spec


def conda_env(prefix: Path, targets: set[str]) -> list[object]:
    """conda-pack's File records for exactly ``targets`` (prefix-relative), plus conda-meta."""
    try:
        from conda_pack import CondaEnv
        from conda_pack.core import CondaPackException
    except ImportError:
        raise BuildError(
            "building from a conda env needs conda-pack (pip install envpack[conda])"
        ) from None
    try:
        env = CondaEnv.from_prefix(
            str(prefix),
            on_missing_cache="ignore",
            ignore_editable_packages=True,
            ignore_missing_files=True,
        )
    except CondaPackException as exc:
        raise BuildError(f"conda-pack cannot read {prefix}: {exc}") from None
    # Exclude everything, then include back: the Spec's files and the package records.
    env = env.exclude("*")
    env = env.include("conda-meta/*.json")
    # One include() per file would cost files x files fnmatch calls; one per directory is
    # enough, and the exact set is then taken from what those filters let through.
    for pattern in sorted(_patterns(targets)):
        env = env.include(pattern)
    return [f for f in env.files if f.target in targets or f.target.startswith("conda-meta/")]


def _patterns(targets: set[str]) -> set[str]:
    """fnmatch patterns, one per directory holding a target (names escaped)."""

    def escape(text: str) -> str:
        return "".join(f"[{c}]" if c in "*?[]" else c for c in text)

    out = set()
    for target in targets:
        parent = target.rpartition("/")[0]
        out.add(f"{escape(parent)}/*" if parent else escape(target))
    return out


def add_conda_records(spec: Spec, collection: Collection) -> None:
    """Add the conda-meta records of the packages the collection draws from, and warn about
    text files still holding the build prefix: conda-pack's knowledge of the prefix, in
    envpack's layout (which mirrors a conda prefix, so an arcname is also a prefix path)."""
    prefix = Path(spec.interpreter.prefix)
    staged = {e.arcname: e for e in collection.entries}
    files = conda_env(prefix, {arc for arc in staged if (prefix / arc).exists()})
    for f in files:
        target = str(getattr(f, "target", ""))
        if target.startswith("conda-meta/"):
            meta = _conda_meta(Path(str(getattr(f, "source", ""))))
            if meta is not None and target not in staged:
                collection.entries.append(Entry(target, 0o644, meta, "conda"))
            continue
        mode = getattr(f, "file_mode", None)
        placeholder = getattr(f, "prefix_placeholder", None)
        entry = staged.get(target)
        if (
            mode == "text" and placeholder and entry is not None and isinstance(entry.source, Path)
        ) and str(prefix).encode() in entry.source.read_bytes():
            collection.warnings.append(
                f"{target}: a text file holding the build prefix {prefix}; shipped as is"
            )
    collection.entries.sort(key=lambda e: e.arcname)


def _conda_meta(path: Path) -> bytes | None:
    """A conda-meta record with local paths removed, by conda-pack's own rewriting."""
    try:
        from conda_pack.core import rewrite_conda_meta
    except ImportError:
        return None
    try:
        out, _data = rewrite_conda_meta(str(path))
    except (OSError, ValueError, KeyError):
        return None
    return out if isinstance(out, bytes) else str(out).encode()


__all__ = ["add_conda_records", "conda_env"]
