"""Parse results cached on disk by the content of each file, and computed on every core.

Parsing ~1,500 files is most of a cold analysis; a warm one should parse nothing, and neither
should an analysis of a fresh venv made from the same wheels, or of another user's venv at
another path: a summary is keyed on the sha256 of the bytes parsed (plus whether the file is
local code), never on where they lie. Summaries hold no paths (sites are line numbers; the walk
names the file when it reports one), so one found under another path is simply used there.

Finding a file's content key without reading it: a first-level table maps a path to the stat it
had when it was last hashed, ``(mtime_ns, size, inode, ctime_ns)``, and the digest then. Any
stat change (a rewrite, ``touch``, a rename over it, another venv) means the file is read and
hashed again, about 0.1 s for the ~1,500 files of a coffea analysis, far below a parse.

Trust model. The cache is the user's own (``$XDG_CACHE_HOME/envpack``, mode 0600 files): what
it holds is what this user's envpack computed. What it does *not* trust:

- RECORD's ``sha256=`` claims. They say what pip wrote, not what is there: an edit in place of
  an installed file (a hot fix, ``sed -i`` of ``import foo`` into ``import bar``, same size)
  leaves RECORD as it was. So a file never seen at its current stat is hashed by us, and the
  digest format is RECORD's (urlsafe base64, no padding) only so the two compare if wanted.
- mtime and size alone. Both are the file owner's to set (``os.utime``, equal-length edits); a
  path+mtime+size key served stale summaries after such an edit. The inode change time
  (ctime) is not settable by the owner: any write, ``utime`` or rename updates it to the
  clock. Forging a stat hit needs root (a clock change or raw disk writes), and root owns this
  cache anyway.
- The file between the hash and the parse: the parse hashes the bytes it parsed, and the
  summary is stored under that digest; a file that changed in between costs a re-hash next time.

One marshal file holds the summaries and the stat table, one more the call graphs; both are
written atomically (temp file + rename), so concurrent analyses never see half a file; the
last writer wins, which only costs the loser a re-parse next time.
"""

from __future__ import annotations

import base64
import concurrent.futures
import gc
import hashlib
import importlib.util
import marshal
import multiprocessing
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envpack import _cachefile
from envpack.analyzer._sites import IMPORT, NO_FACTS, Site, Summary, call_graph, summarize

# Bump when the summary format or the extraction rules change.
FORMAT = 9
_MAX_ENTRIES = 200_000  # summaries, and paths in the stat table
_POOL_THRESHOLD = 32  # below this many parses a process pool costs more than it saves

# A file's stat as the first-level key: (mtime_ns, size, inode, ctime_ns).
Stat = tuple[int, int, int, int]


@dataclass
class CacheStats:
    """What one analysis took from the cache and what it had to compute (timing-free evidence).

    ``hits``/``misses``: summaries found or not by content; ``hashed``: files read to learn
    their content key (the stat table did not know them); ``parsed``: files parsed.
    """

    hits: int = 0
    misses: int = 0
    hashed: int = 0
    parsed: int = 0


def digest(data: bytes) -> str:
    """sha256 of ``data`` as RECORD writes it (urlsafe base64, no padding)."""
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _stat_key(st: os.stat_result) -> Stat:
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)


def _content_key(content: str, local: bool) -> str:
    # Local code's summary holds more (data references, its call graph): another key.
    return content + ("/local" if local else "")


class ParseCache:
    """Summaries by content key; paths map to content keys while their stat is unchanged.

    ``directory=None`` keeps nothing on disk (every file is hashed and parsed each time).
    """

    def __init__(self, directory: Path | None) -> None:
        self.file = (
            None
            if directory is None
            else directory
            / f"imports-v{FORMAT}-py{sys.version_info[0]}{sys.version_info[1]}.marshal"
        )
        self.summaries: dict[str, Summary] = {}
        self.paths: dict[str, tuple[Stat, str]] = {}
        self.stats = CacheStats()
        self.dirty = False
        self._used: set[str] = set()
        self._seen: dict[str, str] = {}  # path -> content digest, this run
        loaded = _cachefile.load(self.file)
        self._fresh_file = loaded is None  # its first write retires the older formats' files
        if isinstance(loaded, tuple) and len(loaded) == 2:
            summaries, paths = loaded
            if isinstance(summaries, dict) and isinstance(paths, dict):
                self.summaries, self.paths = summaries, paths
        # Third-party call graphs, for the few modules whose functions others call at import.
        self.graph_file = (
            None
            if self.file is None
            else self.file.with_name(self.file.name.replace("imports-", "callgraphs-"))
        )
        self.graphs: dict[str, dict[str, tuple[str, ...]]] = {}
        self.graphs_dirty = False
        graphs = _cachefile.load(self.graph_file)
        if isinstance(graphs, dict):
            self.graphs = graphs

    def content(self, path: str) -> str | None:
        """The content digest of the file at ``path`` (from the stat table, else hashed)."""
        known = self._seen.get(path)
        if known is not None:
            return known
        try:
            key = _stat_key(os.stat(path))
            entry = self.paths.get(path)
            if entry is not None and entry[0] == key:
                found = entry[1]
            else:
                with open(path, "rb") as fh:
                    found = digest(fh.read())
                self.stats.hashed += 1
                self.paths[path] = (key, found)
                self.dirty = True
        except OSError:
            return None
        self._seen[path] = found
        return found

    def get(self, path: str, local: bool) -> tuple[Summary | None, str | None]:
        """(the cached summary or None, the content digest or None when unreadable)."""
        content = self.content(path)
        if content is None:
            return None, None
        ckey = _content_key(content, local)
        summary = self.summaries.get(ckey)
        if summary is not None:
            self.stats.hits += 1
            self._used.add(ckey)
            return summary, content
        self.stats.misses += 1
        return None, content

    def put(
        self, path: str, local: bool, content: str | None, parsed: str, summary: Summary
    ) -> None:
        """Keep ``summary`` of the bytes whose digest is ``parsed`` (``content``: as hashed)."""
        self.stats.parsed += 1
        if content is not None and content != parsed:
            # Changed between the hash and the parse: the stat entry may name the old bytes.
            self.paths.pop(path, None)
            self._seen[path] = parsed
        ckey = _content_key(parsed, local)
        self.summaries[ckey] = summary
        self._used.add(ckey)
        self.dirty = True

    def call_graph(self, path: str, summary: Summary) -> dict[str, tuple[str, ...]]:
        """``_sites.call_graph`` of the file at ``path``, reused while its content is unchanged."""
        try:
            data = None
            content = self._seen.get(path)
            if content is None:
                data = Path(path).read_bytes()
                content = digest(data)
            graph = self.graphs.get(content)
            if graph is not None:
                return graph
            if data is None:
                data = Path(path).read_bytes()
                if digest(data) != content:
                    return {}  # changed since it was summarized: the summary is not its own
            facts = summary[5]
            graph = call_graph(data, facts[6], facts[2])
        except OSError:
            return {}
        self.graphs[content] = graph
        self.graphs_dirty = True
        return graph

    def save(self) -> None:
        if self.graphs_dirty:
            graphs = _bounded(self.graphs, set())
            if _cachefile.save(self.graph_file, graphs):
                self.graphs_dirty = False
        if self.file is None or not self.dirty:
            return
        value = (_bounded(self.summaries, self._used), _bounded(self.paths, set(self._seen)))
        if _cachefile.save(self.file, value):
            self.dirty = False
            if self._fresh_file:
                self._fresh_file = False
                _cachefile.retire_other_formats(self.file)
                if self.graph_file is not None:
                    _cachefile.retire_other_formats(self.graph_file)


def _bounded(entries: dict[str, Any], keep: set[str]) -> dict[str, Any]:
    """At most ``_MAX_ENTRIES``: what this run used, then the newest others (insertion order)."""
    if len(entries) <= _MAX_ENTRIES:
        return entries
    room = max(0, _MAX_ENTRIES // 2 - len(keep))
    others = [k for k in entries if k not in keep]
    chosen = set(others[len(others) - room :]) if room else set()
    return {k: v for k, v in entries.items() if k in keep or k in chosen}


def parse_file(item: tuple[str, bool]) -> tuple[str, Summary]:
    """Read and summarize one file (runs in pool workers too): (digest of what was read, it)."""
    path, local = item
    try:
        with open(path, "rb") as fh:
            data = fh.read()
            mtime = os.fstat(fh.fileno()).st_mtime
    except OSError as exc:
        return "", ((), None, False, (), (f"cannot read: {exc.strerror}", 0, 0), NO_FACTS)
    code = None if local or not path.endswith(".py") else fresh_code(path, data, mtime)
    return digest(data), summarize_bytes(data, path, local, code)


def fresh_code(path: str, source: bytes, mtime: float) -> types.CodeType | None:
    """The code object of ``path``'s .pyc when it was compiled from ``source``, else None.

    What Python's import checks: a timestamp .pyc names the source's mtime and size; a
    hash-based one the source's hash, checked here whatever its check_source flag says. Only
    .pyc files of this interpreter's version are read (the bytecode is version-specific).

    Weaker than the cache's own trust model (module docstring): an edit that keeps the
    source's size and whole-second mtime leaves a timestamp .pyc looking fresh, as it does for
    Python itself. The code only says where function bodies lie; elide() blanks nothing but
    lines inside a ``def`` of the current text that mention no import, and a result that does
    not parse is parsed whole, so such a .pyc costs at worst a full parse, not a lost import.
    """
    try:
        cached = importlib.util.cache_from_source(path)
        with open(cached, "rb") as fh:
            data = fh.read()
    except (OSError, ValueError, NotImplementedError):
        return None
    if len(data) < 16 or data[:4] != importlib.util.MAGIC_NUMBER:
        return None
    flags = int.from_bytes(data[4:8], "little")
    if flags & 0b1:
        if data[8:16] != importlib.util.source_hash(source):
            return None
    elif flags or (
        int.from_bytes(data[8:12], "little") != int(mtime) & 0xFFFFFFFF
        or int.from_bytes(data[12:16], "little") != len(source) & 0xFFFFFFFF
    ):
        return None
    try:
        code = marshal.loads(memoryview(data)[16:])
    except (EOFError, ValueError, TypeError, RecursionError, MemoryError):
        return None
    return code if isinstance(code, types.CodeType) else None


def summarize_bytes(
    data: bytes, path: str, local: bool, code: types.CodeType | None = None
) -> Summary:
    """The summary of one file's bytes (``path`` names it in parse errors and says .pyc).

    ``code``: the file's code when a fresh .pyc holds it (see ``_sites.summarize``).
    """
    if path.endswith(".pyc"):
        return pyc_summary(data)
    # An AST is millions of short-lived objects that hold no cycles; the cyclic GC would only
    # rescan them over and over (a third of the parse time).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return summarize(data, path, local, code)
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
        self._pending: dict[str, tuple[Any, bool, str | None]] = {}
        self._misses = 0

    def prefetch(self, path: str, local: bool) -> None:
        if path in self._pending:
            return
        summary, content = self.cache.get(path, local)
        if summary is not None:
            self._pending[path] = (summary, local, content)
            return
        self._misses += 1
        if self._pool is None and self.jobs > 1 and self._misses >= _POOL_THRESHOLD:
            ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
            self._pool = concurrent.futures.ProcessPoolExecutor(self.jobs, mp_context=ctx)
            # The misses before it were left to this process: hand them to the pool too, or
            # they are parsed one by one while the walk waits for each.
            for ahead, (work, was_local, known) in list(self._pending.items()):
                if work is None:
                    job = self._pool.submit(parse_file, (ahead, was_local))
                    self._pending[ahead] = (job, was_local, known)
        if self._pool is not None:
            self._pending[path] = (self._pool.submit(parse_file, (path, local)), local, content)
        else:
            self._pending[path] = (None, local, content)

    def get(self, path: str, local: bool) -> Summary:
        self.prefetch(path, local)
        work, was_local, content = self._pending.pop(path)
        if isinstance(work, tuple):
            return work
        if work is None:
            parsed, summary = parse_file((path, local))
        else:
            try:
                parsed, summary = work.result()
            except (concurrent.futures.process.BrokenProcessPool, OSError):
                parsed, summary = parse_file((path, local))  # a dead worker only costs speed
        if parsed:  # "": the file could not be read; nothing to key it on
            self.cache.put(path, was_local, content, parsed, summary)
        return summary

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending.clear()
        self.cache.save()


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
