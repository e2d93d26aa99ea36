"""Curated hints: modules that import others depending on the data they meet.

The import walk follows module-level imports only (the "what runs" policy). Some libraries
import a dependency inside a function that every real processor calls, depending on the input
data rather than on the code — the role PyInstaller's hooks play for frozen apps. A hint says:
"when module K is reached, treat these modules as module-level imports of K". Targets that are
not installed are reported (``ImportGraph.hint_misses``), never errors: most are optional.

Only entries that a real coffea run is known to hit belong here; each carries its reason and
has a test (tests/analyzer/test_hints.py) that rebuilds the lazy import in a fake package.
Distributions are shipped whole, so only imports that cross a distribution boundary matter.

Looked at and left out: coffea 0.7's executors import ``cloudpickle`` and ``lz4.frame`` at module
level of coffea/processor/executor.py (reached through ``coffea.processor``), so the walk finds
them without a hint; matplotlib (hist's plotting) and pyarrow are driver-side, not worker-side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from envpack.errors import UsageError

HINTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        # uproot decompresses TBaskets through functions of uproot.extras that import the codec
        # on first use (uproot 4/5.0: ``lz4_block()``, ``xxhash()``, ``zstandard()``; uproot
        # >= 5.3 moved LZ4/ZSTD to ``cramjam()``). Real NanoAOD files are always compressed
        # (LZMA/ZLIB/LZ4/ZSTD; LZ4 baskets carry an xxhash checksum), and uproot's default
        # ``library="ak"`` goes through ``uproot.extras.awkward()``. Whichever of these is not
        # installed for the uproot at hand lands in hint_misses.
        "uproot.extras": ("lz4", "xxhash", "zstandard", "cramjam", "awkward"),
        # uproot opens ``root://`` URLs (how grid workers read NanoAOD) through
        # ``uproot.extras.XRootD_client()``, which imports the XRootD bindings only then; the
        # XRootD source module itself is imported by uproot at module level.
        "uproot.source.xrootd": ("XRootD",),
    }
)


def merged(user: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    """The table with ``user`` hints added; a user entry with no targets removes that key."""
    out = {k: tuple(v) for k, v in HINTS.items()}
    for key, targets in (user or {}).items():
        if not targets:
            out.pop(key, None)
            continue
        have = out.get(key, ())
        out[key] = have + tuple(t for t in targets if t not in have)
    return out


def parse_hint(text: str) -> tuple[str, tuple[str, ...]]:
    """``MOD=NAME[,NAME…]`` from the command line."""
    mod, sep, rest = text.partition("=")
    names = tuple(n.strip() for n in rest.split(",") if n.strip())
    if not sep or not mod.strip() or not names:
        raise UsageError(f"--hint {text!r}: expected MODULE=NAME[,NAME...]")
    return mod.strip(), names


__all__ = ["HINTS", "merged", "parse_hint"]
