"""build(): a Spec in, `envpack-<hash>.tar.gz` out. The one place collector and writer meet.

collect (envpack.collect: what goes where) -> digest every entry -> manifest and its hash ->
cache check -> write the tarball under a temporary name -> rename. Nothing half-written ever
carries the final name, so a cache hit is always a complete tarball. A temporary file is held
under an exclusive flock while it is written; one a killed build left behind has lost its lock,
and the next build into that directory removes it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys
import tempfile
import types
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from envpack import _cachefile, archive, layout, runtime
from envpack.archive import Compression, Entry, Progress
from envpack.collect import Collection, Collector
from envpack.elf import NotElfError, glibc_key, read_elf
from envpack.errors import BuildError, SpecError
from envpack.layout import LAYERS, MANIFEST, SPEC, SUMMARY, Record
from envpack.spec import SCHEMA, Spec

RUNNER_NAME = runtime.RUNNER_NAME
# What write_atomic names its temporary files: ".envpack-<hash>.tar.gz.XXXXXXXX.part" and
# ".envpack-run.XXXXXXXX.part". Only these are ever cleaned up, never another program's .part.
PART_GLOB = ".envpack-*.part"


@dataclass(frozen=True)
class GroupSize:
    """What one part of the env (a distribution, the stdlib, ...) adds: files and bytes."""

    name: str
    version: str
    files: int
    size: int


@dataclass(frozen=True)
class LayerInfo:
    """One layer of a built env: its label, hash, compressed bytes, and whether this build
    copied it from the piece cache rather than compressing it."""

    name: str
    hash: str
    size: int
    reused: bool


@dataclass(frozen=True)
class Environment:
    """A built (or cached) environment tarball."""

    path: Path
    hash: str
    size: int  # bytes of the tarball
    files: int  # regular files + symlinks in it
    cached: bool
    unpacked_size: int = 0  # bytes of its regular files once unpacked
    groups: tuple[GroupSize, ...] = ()  # per distribution, plus python/stdlib/local/native
    warnings: tuple[str, ...] = ()
    runner: Path | None = None
    dropped_files: int = 0  # distribution test-suite files left out (see keep_tests)
    dropped_size: int = 0  # their bytes on disk
    layers: tuple[LayerInfo, ...] = ()  # in file order; empty for a cached tarball


def build(
    spec: Spec,
    out_dir: str | os.PathLike[str],
    *,
    compress: Compression = "gzip",
    level: int | None = None,
    progress: Progress | None = None,
    keep_tests: bool = False,
    keep_debug: bool = False,
    digest_cache: bool = True,
    target_glibc: str | None = None,
) -> Environment:
    """Build the env for ``spec`` into ``out_dir``; instant when its hash is already there.

    ``keep_tests``: ship distributions' test-suite directories (``pkg/**/tests``), which are
    dropped by default. ``keep_debug``: keep the debug sections of ELF files, which are
    stripped by default (envpack.collect.OBJCOPY says why). ``digest_cache``: reuse file
    digests of earlier builds, kept in ``$XDG_CACHE_HOME/envpack`` and keyed by each file's
    stat, so a rebuild reads only what changed. ``target_glibc`` ("2.28"): refuse, naming
    every culprit, when a shipped ELF file needs a newer glibc than the oldest worker has.
    """
    if spec.schema > SCHEMA:
        raise SpecError(
            f"Spec schema {spec.schema} is newer than this envpack understands ({SCHEMA})"
        )
    if compress not in ("gzip", "zstd"):
        raise BuildError(f"unknown compression {compress!r} (gzip or zstd)")
    if compress == "zstd" and not archive.zstd_available():
        raise BuildError("--compress zstd needs the zstandard module or the zstd binary")
    with tempfile.TemporaryDirectory(prefix="envpack-stage-") as stage:
        out = _out_dir(Path(out_dir))
        remove_stale_parts(out)
        collector = Collector(
            spec,
            Path(stage),
            runtime.run_in_env_path(),
            keep_tests=keep_tests,
            keep_debug=keep_debug,
        )
        if target_glibc is None and not spec.interpreter.conda and _one_pass(out, compress):
            # nothing to check between collecting and writing: each layer is written as
            # soon as it is collected, while the collector goes on
            try:
                return assemble(
                    spec,
                    out,
                    collector.out,
                    compress=compress,
                    level=level,
                    progress=progress,
                    digest_cache=digest_cache,
                    groups=collector.groups(),
                )
            finally:
                collector.out.close()
        collection = collector.collect()
        try:
            if target_glibc is not None:
                check_glibc(spec, collection, target_glibc)
            if spec.interpreter.conda:
                # conda-pack backs conda envs: its package records and prefix knowledge
                from envpack.conda import add_conda_records

                add_conda_records(spec, collection)
            return assemble(
                spec,
                out,
                collection,
                compress=compress,
                level=level,
                progress=progress,
                digest_cache=digest_cache,
            )
        finally:
            collection.close()


def assemble(
    spec: Spec,
    out: Path,
    collection: Collection,
    *,
    compress: Compression = "gzip",
    level: int | None = None,
    progress: Progress | None = None,
    digest_cache: bool = True,
    groups: Iterator[list[Entry]] | None = None,
) -> Environment:
    """Digest, name, cache-check and write collected entries (shared by the conda backend).

    When no tarball of this compression is in ``out``, this env's cannot be there: the
    entries are then digested while they are written (one read of each file, see
    archive.build_layers), not in a pass of their own that only a cache hit would need.
    ``groups`` (Collector.groups, only then): the layers as they are collected, into
    ``collection``.
    """
    if groups is None:
        _refuse_duplicates(collection.entries)
    cache = archive.DigestCache(archive.DigestCache.default_file() if digest_cache else None)
    pieces_dir = archive.PieceCache.default_root() if digest_cache else None
    spec_json = spec.to_json().encode()
    runner = _copy_runner(out)
    if groups is not None or _one_pass(out, compress):
        # What the CLI shows beside the built size, measured while this build compresses
        # (not after it) and kept for the env's hash, where source_size() finds it.
        side = ThreadPoolExecutor(max_workers=1) if digest_cache else None
        walked = side.submit(_walk_size, spec) if side is not None else None
        try:
            final, entries, records, pieces = write_one_pass(
                out,
                collection.entries if groups is None else groups,
                spec_json=spec_json,
                empty_dirs=collection.empty_dirs,
                glibc=spec.glibc,
                compress=compress,
                level=level,
                progress=progress,
                pieces_dir=pieces_dir,
                digests=cache,
            )
            cache.save()
            collection.entries = entries
            env_hash = final.name.removeprefix("envpack-").removesuffix(archive.suffix(compress))
            if walked is not None:
                source_size(spec, env_hash, measured=walked.result())
        finally:
            if side is not None:
                side.shutdown(wait=True, cancel_futures=True)
    else:
        entries, records = archive.digest(collection.entries, progress, cache)
        cache.save()
        collection.entries = entries
        manifest = _manifest(records)
        env_hash = layout.manifest_hash(manifest)
        final = out / f"envpack-{env_hash}{archive.suffix(compress)}"
        if final.is_file():
            env = _environment(spec, final, env_hash, records, True, collection, runner)
            return replace(env, **_existing(final))
        pieces = write_layered(
            final,
            entries,
            records,
            spec_json=spec_json,
            empty_dirs=collection.empty_dirs,
            glibc=spec.glibc,
            compress=compress,
            level=level,
            progress=progress,
            pieces_dir=pieces_dir,
            manifest=manifest,
        )
    env = _environment(spec, final, env_hash, records, False, collection, runner)
    infos = tuple(LayerInfo(p.layer.name, p.layer.hash, p.size, p.reused) for p in pieces)
    # plus the summary, manifest, Spec, layer index and each layer's manifest
    return replace(env, layers=infos, files=len(records) + 4 + len(infos))


def _one_pass(out: Path, compress: Compression) -> bool:
    """Whether to digest while writing: no tarball of this kind in ``out`` (this env's cannot
    be there, so no cache hit needs the name before the bytes)."""
    return not any(out.glob(f"envpack-*{archive.suffix(compress)}"))


def _manifest(records: list[Record]) -> bytes:
    try:
        return layout.manifest_bytes(records)
    except layout.LayoutError as exc:
        raise BuildError(str(exc)) from None


def _temp_pieces(stack: ExitStack) -> Path:
    """A piece cache for one call (a build without caches)."""
    return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="envpack-")))


def _existing(path: Path) -> dict[str, Any]:
    """File count and layers of a tarball already built, from its head (a few kilobytes)."""
    meta = dict(archive.read_meta(path))
    out: dict[str, Any] = {}
    files = layout.parse_summary(meta.get(SUMMARY, b"")).get("files", "")
    if files.isdigit():
        out["files"] = int(files)
    if LAYERS in meta:
        index = layout.parse_index(meta[LAYERS])
        out["layers"] = tuple(LayerInfo(e.name, e.hash, e.size, True) for e in index.layers)
    return out


def write_layered(
    final: Path,
    entries: list[Entry],
    records: list[Record],
    *,
    spec_json: bytes,
    empty_dirs: Iterable[str] = (),
    glibc: str | None = None,
    compress: Compression = "gzip",
    level: int | None = None,
    progress: Progress | None = None,
    pieces_dir: Path | None = None,
    manifest: bytes | None = None,
) -> list[archive.Piece]:
    """Write the layered tarball of digested entries to ``final`` (atomically).

    The layers' compressed pieces come from (and go to) the piece cache in ``pieces_dir``;
    None compresses every layer into a temp dir of this call. ``manifest``: the records'
    manifest, when the caller made it already (to name ``final``).
    """
    with ExitStack() as stack:
        root = pieces_dir or _temp_pieces(stack)
        _, _, pieces = _compress(entries, records, root, compress, level, progress)
        if manifest is None:
            manifest = _manifest(records)
        _write_final(
            final, manifest, records, pieces, spec_json, empty_dirs, glibc, compress, level
        )
    return pieces


def write_one_pass(
    out: Path,
    entries: list[Entry] | Iterator[list[Entry]],
    *,
    spec_json: bytes,
    empty_dirs: Iterable[str] = (),
    glibc: str | None = None,
    compress: Compression = "gzip",
    level: int | None = None,
    progress: Progress | None = None,
    pieces_dir: Path | None = None,
    digests: archive.DigestCache | None = None,
) -> tuple[Path, list[Entry], list[Record], list[archive.Piece]]:
    """Write the layered tarball of undigested entries into ``out``, each file read once.

    The entries (or an iterator of layers' entries, as they are collected) are digested as
    they are written (archive.build_layers), so the tarball's name is known only at the end.
    Returns it, with the entries kept (a stale source is left out), their records and the
    layers' pieces.
    """
    with ExitStack() as stack:
        root = pieces_dir or _temp_pieces(stack)
        kept, records, pieces = _compress(entries, None, root, compress, level, progress, digests)
        _refuse_duplicates(kept)
        manifest = _manifest(records)
        final = out / f"envpack-{layout.manifest_hash(manifest)}{archive.suffix(compress)}"
        _write_final(
            final, manifest, records, pieces, spec_json, empty_dirs, glibc, compress, level
        )
    return final, kept, records, pieces


def _write_final(
    final: Path,
    manifest: bytes,
    records: list[Record],
    pieces: list[archive.Piece],
    spec_json: bytes,
    empty_dirs: Iterable[str],
    glibc: str | None,
    compress: Compression,
    level: int | None,
) -> None:
    """The head (index, summary, manifest, Spec), then the pieces and the trailer.

    ``manifest``: the records' manifest, made once by the caller (which names the tarball
    after it)."""
    env_hash = layout.manifest_hash(manifest)
    trailer = archive.trailer_piece(compress, level)
    index = layout.index_bytes(
        layout.Index(
            tuple(layout.IndexEntry(p.layer.hash, p.size, p.layer.name) for p in pieces),
            len(trailer),
        )
    )
    extra = {MANIFEST: manifest, SPEC: spec_json, LAYERS: index}
    extra.update({layout.layer_manifest(p.layer.hash): p.layer.manifest for p in pieces})
    summary = layout.summary_bytes(env_hash, records, extra, glibc)
    meta = [(SUMMARY, summary), (MANIFEST, manifest), (SPEC, spec_json), (LAYERS, index)]
    head = archive.head_piece(meta, empty_dirs, compress, level)
    write_atomic(final, lambda fh: archive.write_pieces(fh, head, pieces, trailer))


def _compress(
    entries: list[Entry] | Iterator[list[Entry]],
    records: list[Record] | None,
    root: Path,
    compress: Compression,
    level: int | None,
    progress: Progress | None,
    digests: archive.DigestCache | None = None,
) -> tuple[list[Entry], list[Record], list[archive.Piece]]:
    """archive.build_layers, its errors told as BuildErrors."""
    try:
        return archive.build_layers(
            entries,
            archive.PieceCache(root),
            compress,
            level,
            progress,
            records=records,
            digests=digests,
        )
    except archive.Stale as exc:
        raise BuildError(f"a source changed during the build: {exc}") from None
    except layout.LayoutError as exc:
        raise BuildError(str(exc)) from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise BuildError(f"no space left on device in {root}; nothing was kept") from None
        if exc.filename is not None and not str(exc.filename).startswith(str(root)):
            raise BuildError(
                f"cannot read {exc.filename}: {exc.strerror or exc} (it changed during the "
                "build? build again)"
            ) from None
        raise BuildError(f"cannot write compressed layers in {root}: {exc}") from None


def check_glibc(spec: Spec, collection: Collection, floor: str) -> None:
    """Refuse an env whose ELF files need a glibc newer than ``floor``; name every culprit.

    The build machine's glibc decides: an interpreter or library built here needs the symbol
    versions of this glibc, and a worker with an older one fails to load it deep inside a task.
    """
    key = glibc_key(floor)
    culprits: list[str] = []
    highest = spec.glibc if spec.glibc and glibc_key(spec.glibc) > key else None
    for arc, path in sorted(set(collection.elves)):
        try:
            needs = read_elf(path).glibc
        except NotElfError:
            continue  # shipped as it is; the analysis warned about it
        newer = [v for v in needs if glibc_key(v) > key]
        if newer:
            bundled = arc.startswith("lib/") and arc.count("/") == 1
            where = f" (bundled from {path})" if bundled else ""
            culprits.append(f"{arc}{where}: " + ", ".join(f"GLIBC_{v}" for v in newer))
            if highest is None or glibc_key(newer[-1]) > glibc_key(highest):
                highest = newer[-1]
    if highest is None:
        return
    listed = "\n  ".join(culprits) or f"(the Spec records glibc {spec.glibc})"
    raise BuildError(
        f"this environment needs glibc {highest}, newer than --target-glibc {floor}; "
        f"{len(culprits)} shipped ELF file(s) need newer symbol versions:\n  {listed}\n"
        f"Build on a system whose glibc is {floor} or older (EL8 has 2.28, EL9 2.34; a "
        "container will do), with the interpreter and packages installed there, or raise "
        "--target-glibc if no worker is older."
    )


def _refuse_duplicates(entries: list[Entry]) -> None:
    """One entry per archive name, or the manifest would list a file the tarball holds once.

    The collector never adds a name twice; this guards whatever adds entries after it.
    """
    owners: dict[str, list[str]] = {}
    for entry in entries:
        owners.setdefault(entry.arcname, []).append(entry.group or "?")
    clashes = [
        f"{arc} (from {' and '.join(groups)})" for arc, groups in owners.items() if len(groups) > 1
    ]
    if clashes:
        listed = "\n  ".join(sorted(clashes))
        raise BuildError(f"{len(clashes)} archive name(s) added more than once:\n  {listed}")


def write_atomic(final: Path, writer: Callable[[BinaryIO], None]) -> None:
    """Run ``writer`` on a locked temp file next to ``final``, then rename; remove it on failure."""
    try:
        with _part_file(final) as (fh, tmp):
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), 0o644)
            # Still under the lock: a clean-up never finds this name unlocked while it is ours.
            os.replace(tmp, final)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise BuildError(f"no space left on device writing {final}; nothing was kept") from None
        raise BuildError(f"cannot write {final}: {exc.strerror or exc}") from None


@contextmanager
def _part_file(final: Path) -> Iterator[tuple[BinaryIO, Path]]:
    """A new ``.part`` file next to ``final``, exclusively flocked until the block ends.

    The lock is what tells remove_stale_parts that a live build owns the file; the kernel drops
    it when the process dies, however it dies. On an exception the file is removed.
    """
    while True:
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
        fh = os.fdopen(fd, "wb")
        fcntl.flock(fh, fcntl.LOCK_EX)
        if _names_open_file(name, fh.fileno()):
            break
        # A concurrent clean-up locked and removed it between mkstemp and flock: a new name.
        fh.close()
    tmp = Path(name)
    try:
        yield fh, tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        fh.close()


def remove_stale_parts(out: Path) -> list[Path]:
    """Remove the ``.part`` files of dead builds in ``out``; those of live builds stay.

    A part file whose exclusive flock can be taken without waiting has no live writer: its
    build was killed (SIGKILL, OOM, power loss) before it could clean up. Returns what went.
    """
    removed: list[Path] = []
    for path in sorted(out.glob(PART_GLOB)):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue  # gone already (renamed by its build), a symlink, or not ours to read
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live build holds it
            if _names_open_file(str(path), fd):  # not renamed to its final name meanwhile
                path.unlink()
                removed.append(path)
        except OSError:
            continue  # unlink refused (another user's dir): leave it
        finally:
            os.close(fd)
    return removed


def _names_open_file(name: str, fd: int) -> bool:
    """Whether ``name`` still is the file open as ``fd`` (same device and inode)."""
    try:
        st = os.stat(name, follow_symlinks=False)
    except OSError:
        return False
    opened = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (opened.st_dev, opened.st_ino)


def _out_dir(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BuildError(f"cannot create output dir {out}: {exc.strerror}") from None
    if not out.is_dir() or not os.access(out, os.W_OK | os.X_OK):
        raise BuildError(f"output dir {out} is not writable")
    return out


def _copy_runner(out: Path) -> Path:
    src = runtime.runner_path()
    dst = out / RUNNER_NAME
    if dst.is_file() and dst.read_bytes() == src.read_bytes():
        return dst
    data = src.read_bytes()
    write_atomic(dst, lambda fh: _write_bytes(fh, data))
    dst.chmod(0o755)
    return dst


def _write_bytes(fh: BinaryIO, data: bytes) -> None:
    fh.write(data)


def _environment(
    spec: Spec,
    path: Path,
    env_hash: str,
    records: list[Record],
    cached: bool,
    collection: Collection,
    runner: Path | None,
) -> Environment:
    by_group: dict[str, list[Record]] = {}
    for rec in records:
        by_group.setdefault(rec.group, []).append(rec)
    versions = {d.name: d.version for d in spec.distributions}
    groups = tuple(
        GroupSize(
            name, versions.get(name, ""), len(recs), sum(r.size for r in recs if r.target is None)
        )
        for name, recs in sorted(by_group.items())
    )
    return Environment(
        path=path,
        hash=env_hash,
        size=path.stat().st_size,
        files=len(records) + 3,  # plus the summary, the manifest and the Spec (unlayered)
        cached=cached,
        unpacked_size=sum(r.size for r in records if r.target is None),
        groups=groups,
        warnings=tuple(collection.warnings),
        runner=runner,
        dropped_files=collection.dropped_files,
        dropped_size=collection.dropped_size,
    )


def source_size(
    spec: Spec, env_hash: str | None = None, *, walk: bool = True, measured: int | None = None
) -> int | None:
    """Bytes of the whole source environment (the venv or prefix, plus the base stdlib).

    What a "tar the whole env" approach ships; the CLI prints it next to the built size.
    Walking a coffea venv takes 0.2 s, most of a cached build: with ``env_hash`` the figure is
    kept in the cache directory, so a cached build shows what its real build measured.
    ``walk=False``: None rather than walk when nothing is kept for ``env_hash``.
    ``measured``: the figure, walked already (a cold build does it while it compresses).
    """
    file = _cachefile.cache_dir() / "source-sizes-v1.marshal" if env_hash else None
    kept = _cachefile.load(file)
    sizes: dict[str, int] = kept if isinstance(kept, dict) else {}
    if env_hash and isinstance(sizes.get(env_hash), int) and measured is None:
        return sizes[env_hash]
    if not walk and measured is None:
        return None
    total = _walk_size(spec) if measured is None else measured
    if env_hash:
        if len(sizes) >= _MAX_SOURCE_SIZES:
            sizes = dict(list(sizes.items())[-_MAX_SOURCE_SIZES // 2 :])
        sizes[env_hash] = total
        _cachefile.save(file, sizes)
    return total


_MAX_SOURCE_SIZES = 10_000


def _walk_size(spec: Spec) -> int:
    """The sum of the regular files' sizes under the source env's roots (links not followed).

    A cold build runs this while it compresses: in Python it is 0.16 s of CPU for a coffea
    venv alone and 0.8 s of samples beside the writer (40k lstat calls, each taking the GIL
    back from it); GNU find does it in a child process in 0.06 s. The Python walk is the
    fallback where there is no GNU find.
    """
    interp = spec.interpreter
    stdlib = Path(interp.stdlib)
    roots = {Path(interp.prefix)}
    if interp.base_prefix != interp.prefix:
        roots.add(stdlib)
        roots.add(Path(interp.real_executable))
        if interp.libpython:
            roots.add(Path(interp.libpython))
    total = 0
    for root in roots:
        # the base interpreter's own site-packages is not part of a venv's env
        skip = stdlib / "site-packages" if root == stdlib and root != Path(interp.prefix) else None
        if root.is_file():
            total += root.stat().st_size
            continue
        found = _find_size(root, skip)
        total += found if found is not None else _python_walk_size(root, skip)
    return total


def _find_size(root: Path, skip: Path | None) -> int | None:
    import subprocess

    if any(c in os.fspath(skip or "") for c in "*?[\\"):
        return None  # -path would read it as a pattern
    prune = ["-path", os.fspath(skip), "-prune", "-o"] if skip is not None else []
    cmd = ["find", os.fspath(root), *prune, "-type", "f", "-printf", "%s\\n"]
    try:
        env = {"LC_ALL": "C", "PATH": os.environ.get("PATH", os.defpath)}
        proc = subprocess.run(cmd, capture_output=True, check=False, env=env)
    except OSError:
        return None
    if proc.returncode != 0 and (not proc.stdout or b"printf" in proc.stderr):
        return None  # no GNU find (its -printf), or nothing walked: ask Python
    try:
        return sum(map(int, proc.stdout.split()))  # unreadable dirs are skipped, as os.walk does
    except ValueError:
        return None


def _python_walk_size(root: Path, skip: Path | None) -> int:
    total = 0
    for dirpath, dirs, files in os.walk(root):
        if skip is not None and Path(dirpath) == skip.parent:
            dirs[:] = [d for d in dirs if d != skip.name]
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


__all__ = [
    "PART_GLOB",
    "Environment",
    "GroupSize",
    "LayerInfo",
    "assemble",
    "build",
    "check_glibc",
    "remove_stale_parts",
    "source_size",
    "write_atomic",
    "write_layered",
    "write_one_pass",
]


class _CallableModule(types.ModuleType):
    """Let ``envpack.build(spec, out)`` work after ``import envpack.build``.

    Importing a submodule rebinds the package attribute of the same name to the module, which
    would shadow the public ``envpack.build`` function; calling the module calls the function.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Environment:
        return build(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
