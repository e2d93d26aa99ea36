"""The on-disk caches' shared ground: one directory, one safe format, atomic writes.

Parse results, scanned distributions and file digests are all marshal files (loading one never
runs code, unlike pickle) in ``$XDG_CACHE_HOME/envpack``. A cache is only ever a speed-up: an
unreadable file reads as nothing, and a write that fails leaves the old file and no temp file.
"""

from __future__ import annotations

import contextlib
import marshal
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO  # marshal's own bound (_Marshallable) is private


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/envpack``, else ``~/.cache/envpack``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "envpack"


def load(path: Path | None) -> object:
    """The value marshalled at ``path``; None when there is none or it cannot be read."""
    if path is None:
        return None
    try:
        return marshal.loads(path.read_bytes())
    except (OSError, EOFError, ValueError, TypeError):
        return None


def write_atomic(
    path: Path, writer: Callable[[BinaryIO], object], *, suffix: str = "", mode: int | None = None
) -> None:
    """Write ``path`` through ``writer`` on a temp file beside it (``.<name>.XXXX<suffix>``),
    then rename: concurrent readers never see half. On any failure the temp file is removed and
    the error raised; ``mode`` replaces mkstemp's 0600."""
    import tempfile  # (with shutil: not for the readers, such as a warm `envpack analyze`)

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(path: Path | None, value: Any) -> bool:
    """Write ``value`` atomically (temp file + rename): concurrent readers never see half.

    False when it could not be written."""
    if path is None:
        return False
    try:
        write_atomic(path, lambda fh: marshal.dump(value, fh))
        return True
    except (OSError, ValueError):
        return False  # a cache that cannot be written is only a slower next run


def retire_other_formats(path: Path) -> None:
    """Remove the files beside ``path`` whose names differ from its name only in the format
    number (``imports-v8-py311.marshal`` beside ``imports-v9-py311.marshal``): after an upgrade
    no envpack reads them again, and each can be tens of MB."""
    import re

    found = re.search(r"-v\d+", path.name)
    if found is None:
        return
    head, tail = path.name[: found.start()] + "-v", path.name[found.end() :]
    try:
        names = os.listdir(path.parent)
    except OSError:
        return
    for name in names:
        number = name[len(head) : len(name) - len(tail)]
        if name != path.name and name.startswith(head) and name.endswith(tail) and number.isdigit():
            with contextlib.suppress(OSError):  # gone already, or not ours: only space
                (path.parent / name).unlink()
