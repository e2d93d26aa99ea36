"""Which stdlib extension modules (lib-dynload) an environment ships, imported or not.

The whole pure-Python stdlib ships (envpack.collect says why); its compiled halves live in
lib-dynload, and a pure module whose extension is missing fails only on the worker: ``import
sqlite3`` inside a function of a third-party package (a lazy import, not followed) gives "No
module named '_sqlite3'", ``tarfile.open("x.tar.xz")`` needs ``_lzma``, ``urlopen("https://…")``
needs ``_ssl``. The static walk sees none of these. So every lib-dynload module ships, reached
or not, and the native analysis resolves its libraries like any other's: the non-system ones
(libssl/libcrypto for ``_ssl``/``_hashlib``, libsqlite3, liblzma, libbz2, libffi for
``_ctypes``, libuuid, …) are bundled into ``lib/``. Measured on the pyenv 3.11 here: the whole
lib-dynload, stripped, is 2.2 MB gzip'd, those libraries 3.4 MB; a library missing on the build
machine for a module nothing imports is a warning, never an error.

Left out unless the import graph reaches them (then they ship like any other module):

- CPython's own test modules (``_testcapi``, ``xxlimited``, ``_ctypes_test``, …);
- ``_tkinter``, whose package collect leaves out, with its X11/Tcl/Tk stack;
- terminal UIs a batch task has no terminal for: ``readline``, ``_curses``, ``_curses_panel``
  (pdb and cmd import readline under ``try``);
- ``nis`` (NIS/YP lookups; deprecated, removed in 3.13; it needs libnsl2 and Kerberos).
"""

from __future__ import annotations

import os
import re

from envpack.analyzer import _resultcache
from envpack.analyzer.interpreter import Target
from envpack.spec import StdlibModule

LEFT_OUT = frozenset({"_tkinter", "readline", "_curses", "_curses_panel", "nis"})
_TEST_MODULE = re.compile(r"_test.*|_xxtestfuzz|xxlimited.*|xxsubtype|_ctypes_test")
WHY = ("lib-dynload: ships with the stdlib, imported or not",)


def is_left_out(name: str) -> bool:
    """Whether lib-dynload module ``name`` ships only when the import graph reaches it."""
    return name in LEFT_OUT or _TEST_MODULE.fullmatch(name) is not None


def unreached_extensions(target: Target, reached: set[str]) -> list[StdlibModule]:
    """The lib-dynload modules that ship although the walk did not reach them, by name."""
    dynload = target.interpreter.dynload
    _resultcache.note_dir(dynload)
    try:
        entries = sorted(os.listdir(dynload))
    except OSError:
        return []  # no lib-dynload (a static build): nothing to add
    suffixes = sorted(target.extension_suffixes, key=len, reverse=True)
    out: list[StdlibModule] = []
    for entry in entries:
        suffix = next((s for s in suffixes if entry.endswith(s)), None)
        if suffix is None:
            continue
        name = entry[: -len(suffix)]
        if name in reached or is_left_out(name) or not name.isidentifier():
            continue
        path = os.path.join(dynload, entry)
        if os.path.isfile(path):
            out.append(StdlibModule(name=name, path=path, why=WHY))
            reached = reached | {name}  # one file per module (.abi3.so and .so alike)
    return out


__all__ = ["LEFT_OUT", "WHY", "is_left_out", "unreached_extensions"]
