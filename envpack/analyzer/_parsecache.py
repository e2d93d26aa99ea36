"""Parse results cached on disk and computed on every core.

Parsing ~1,500 files is most of a cold analysis; a warm one should parse nothing. One marshal
file holds every summary keyed by path, valid while the file's mtime and size are unchanged.
It is written atomically (temp file + rename), so concurrent analyses never see half a file;
the last writer wins, which only costs the loser a re-parse next time.
"""

from __future__ import annotations

import concurrent.futures
import gc
import importlib.util
import marshal
import multiprocessing
import os
import sys
from pathlib import Path
from typing import Any

from envpack import _cachefile
from envpack.analyzer._sites import IMPORT, NO_FACTS, Site, Summary, call_graph, summarize

# Bump when the summary format or the extraction rules change.
FORMAT = 8
_MAX_ENTRIES = 200_000
_POOL_THRESHOLD = 32  # below this many parses a process pool costs more than it saves


class ParseCache:
    """Summaries by path, reused while (mtime_ns, size) match; ``directory=None`` keeps none."""

    def __init__(self, directory: Path | None) -> None:
        self.file = (
            None
            if directory is None
            else directory
            / f"imports-v{FORMAT}-py{sys.version_info[0]}{sys.version_info[1]}.marshal"
        )
        self.entries: dict[str, tuple[int, int, bool, Summary]] = {}
        self.dirty = False
        self.hits = 0
        self.misses = 0
        loaded = _cachefile.load(self.file)
        if isinstance(loaded, dict):
            self.entries = loaded
        # Third-party call graphs, for the few modules whose functions others call at import.
        self.graph_file = (
            None
            if self.file is None
            else self.file.with_name(self.file.name.replace("imports-", "callgraphs-"))
        )
        self.graphs: dict[str, tuple[int, int, dict[str, tuple[str, ...]]]] = {}
        self.graphs_dirty = False
        graphs = _cachefile.load(self.graph_file)
        if isinstance(graphs, dict):
            self.graphs = graphs

    def get(self, path: str, local: bool) -> tuple[Summary | None, tuple[int, int]]:
        try:
            st = os.stat(path)
        except OSError:
            return None, (0, -1)
        key = (st.st_mtime_ns, st.st_size)
        entry = self.entries.get(path)
        if entry is not None and (entry[0], entry[1]) == key and entry[2] == local:
            self.hits += 1
            return entry[3], key
        self.misses += 1
        return None, key

    def put(self, path: str, local: bool, key: tuple[int, int], summary: Summary) -> None:
        if key[1] < 0:
            return
        self.entries[path] = (key[0], key[1], local, summary)
        self.dirty = True

    def call_graph(self, path: str, summary: Summary) -> dict[str, tuple[str, ...]]:
        """``_sites.call_graph`` of the file at ``path``, reused while it is unchanged."""
        try:
            st = os.stat(path)
            entry = self.graphs.get(path)
            if entry is not None and (entry[0], entry[1]) == (st.st_mtime_ns, st.st_size):
                return entry[2]
            facts = summary[5]
            graph = call_graph(Path(path).read_bytes(), facts[6], facts[2])
        except OSError:
            return {}
        self.graphs[path] = (st.st_mtime_ns, st.st_size, graph)
        self.graphs_dirty = True
        return graph

    def save(self) -> None:
        if self.graphs_dirty and _cachefile.save(self.graph_file, self.graphs):
            self.graphs_dirty = False
        if self.file is None or not self.dirty:
            return
        entries = self.entries
        if len(entries) > _MAX_ENTRIES:
            entries = dict(list(entries.items())[-_MAX_ENTRIES // 2 :])
        if _cachefile.save(self.file, entries):
            self.dirty = False


def parse_file(item: tuple[str, bool]) -> Summary:
    """Read and summarize one file (runs in pool workers too)."""
    path, local = item
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return (), None, False, (), (f"cannot read: {exc.strerror}", 0, 0), NO_FACTS
    if path.endswith(".pyc"):
        return pyc_summary(data)
    # An AST is millions of short-lived objects that hold no cycles; the cyclic GC would only
    # rescan them over and over (a third of the parse time).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return summarize(data, path, local)
    finally:
        if enabled:
            gc.enable()


def pyc_summary(data: bytes) -> Summary:
    """Module-level imports of a sourceless .pyc written by our own Python version."""
    if data[:4] != importlib.util.MAGIC_NUMBER:
        error = ("bytecode of another Python version; imports not read", 0, 0)
        return (), None, False, (), error, NO_FACTS
    try:
        code = marshal.loads(memoryview(data)[16:])
    except (EOFError, ValueError, TypeError) as exc:
        return (), None, False, (), (f"unreadable bytecode: {exc}", 0, 0), NO_FACTS
    import dis

    sites: list[Site] = []
    consts: list[Any] = []
    line = 0
    for ins in dis.get_instructions(code):
        if ins.positions is not None and ins.positions.lineno:
            line = ins.positions.lineno
        if ins.opname == "LOAD_CONST":
            consts.append(ins.argval)
        elif ins.opname == "IMPORT_NAME":
            level = consts[-2] if len(consts) >= 2 and isinstance(consts[-2], int) else 0
            fromlist = consts[-1] if consts and isinstance(consts[-1], tuple) else None
            kind = IMPORT if not fromlist else 1
            names = tuple(str(n) for n in fromlist) if fromlist else ()
            sites.append((kind, str(ins.argval), level, names, line, "", (), (), None))
    return tuple(sites), None, False, (), None, NO_FACTS


class Parser:
    """Summaries for the walk: from the cache, else parsed ahead on every core.

    The walk announces each file as soon as it finds the module (``prefetch``) and asks for its
    summary only when its breadth-first turn comes (``get``), so workers parse the next levels
    while the walk resolves this one. Small analyses (tests, a processor with few imports) never
    start a pool: below ``_POOL_THRESHOLD`` misses everything is parsed in-process.
    """

    def __init__(self, cache: ParseCache, jobs: int | None = None) -> None:
        self.cache = cache
        self.jobs = jobs if jobs is not None else _cores()
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._pending: dict[str, tuple[Any, bool, tuple[int, int]]] = {}
        self._misses = 0

    def prefetch(self, path: str, local: bool) -> None:
        if path in self._pending:
            return
        summary, key = self.cache.get(path, local)
        if summary is not None:
            self._pending[path] = (summary, local, key)
            return
        self._misses += 1
        if self._pool is None and self.jobs > 1 and self._misses >= _POOL_THRESHOLD:
            ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
            self._pool = concurrent.futures.ProcessPoolExecutor(self.jobs, mp_context=ctx)
        if self._pool is not None:
            self._pending[path] = (self._pool.submit(parse_file, (path, local)), local, key)
        else:
            self._pending[path] = (None, local, key)

    def get(self, path: str, local: bool) -> Summary:
        self.prefetch(path, local)
        work, was_local, key = self._pending.pop(path)
        if isinstance(work, tuple):
            return work
        if work is None:
            summary = parse_file((path, local))
        else:
            try:
                summary = work.result()
            except (concurrent.futures.process.BrokenProcessPool, OSError):
                summary = parse_file((path, local))  # a dead worker only costs speed
        self.cache.put(path, was_local, key, summary)
        return summary

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending.clear()
        self.cache.save()


def _parse_chunk(items: list[tuple[str, bool]]) -> list[Summary]:
    return [parse_file(item) for item in items]


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
