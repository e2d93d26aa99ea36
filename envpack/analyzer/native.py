"""Which shared libraries the environment's ELF files need, found the way ld.so finds them.

A worker has none of the build machine's extra libraries, so every DT_NEEDED of every ELF the
environment holds is resolved here statically (nothing is loaded or executed) and classified:
already shipped inside a distribution, a system library every manylinux host has, a library to
bundle, or missing. ELF files are read through envpack.elf (the one reader); writing them is
envpack.relocate's.
"""

from __future__ import annotations

import glob
import os
import platform
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from envpack.analyzer import _resultcache
from envpack.elf import ElfInfo, NotElfError, glibc_key, is_elf, read_elf, read_header
from envpack.spec import NativeKind, NativeLib

# Libraries every manylinux host provides (auditwheel's manylinux policy lib_whitelist, plus the
# dynamic loaders and libcrypt/libexpat): never bundled, never followed. Bundling libc or a loader
# would break the worker's process; the others are ABI-stable sonames a host always has.
SYSTEM_LIBS: frozenset[str] = frozenset(
    {
        "libc.so.6",
        "libm.so.6",
        "libdl.so.2",
        "librt.so.1",
        "libpthread.so.0",
        "libgcc_s.so.1",
        "libstdc++.so.6",
        "libz.so.1",
        "libutil.so.1",
        "libresolv.so.2",
        "libnsl.so.1",
        "libexpat.so.1",
        "libcrypt.so.1",
        "libanl.so.1",
        "libatomic.so.1",
        "libX11.so.6",
        "libXext.so.6",
        "libXrender.so.1",
        "libICE.so.6",
        "libSM.so.6",
        "libGL.so.1",
        "libgobject-2.0.so.0",
        "libgthread-2.0.so.0",
        "libglib-2.0.so.0",
        "ld-linux.so.2",
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
        "ld-linux-armhf.so.3",
        "ld-linux-riscv64-lp64d.so.1",
        "ld64.so.1",
        "ld64.so.2",
        "ld.so.1",
        "linux-vdso.so.1",
        "linux-gate.so.1",
    }
)

# platform.machine() -> (e_machine, ELF class, ld.so's $PLATFORM, Debian multiarch triplet)
_MACHINES: dict[str, tuple[str, int, str, str]] = {
    "x86_64": ("EM_X86_64", 64, "x86_64", "x86_64-linux-gnu"),
    "amd64": ("EM_X86_64", 64, "x86_64", "x86_64-linux-gnu"),
    "i386": ("EM_386", 32, "i686", "i386-linux-gnu"),
    "i686": ("EM_386", 32, "i686", "i386-linux-gnu"),
    "aarch64": ("EM_AARCH64", 64, "aarch64", "aarch64-linux-gnu"),
    "arm64": ("EM_AARCH64", 64, "aarch64", "aarch64-linux-gnu"),
    "armv7l": ("EM_ARM", 32, "v7l", "arm-linux-gnueabihf"),
    "ppc64le": ("EM_PPC64", 64, "ppc64le", "powerpc64le-linux-gnu"),
    "s390x": ("EM_S390", 64, "s390x", "s390x-linux-gnu"),
    "riscv64": ("EM_RISCV", 64, "riscv64", "riscv64-linux-gnu"),
}
# (e_machine, class) -> ($PLATFORM, triplet), for expanding a needing file's own DSTs.
_BY_ELF: dict[tuple[str, int], tuple[str, str]] = {
    (m, c): (plat, trip) for m, c, plat, trip in _MACHINES.values()
}

_DST = re.compile(r"\$(ORIGIN|LIB|PLATFORM)(?=/|$)|\$\{(ORIGIN|LIB|PLATFORM)\}")


@dataclass(frozen=True)
class NativeReport:
    """The native libraries an environment needs, with the reasons, problems and ELF facts."""

    libs: tuple[NativeLib, ...]  # sorted by soname
    glibc: str | None  # highest GLIBC_x.y version needed ("2.34"), None when none is
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()  # one per missing library, naming the files that need it
    elves: tuple[ElfInfo, ...] = ()  # every ELF analyzed (inputs and followed libraries)


def max_glibc(versions: Iterable[str]) -> str | None:
    """The highest of some glibc versions, compared numerically (a lexical max gets 2.9 > 2.17)."""
    return max(versions, key=glibc_key, default=None)


# ---------------------------------------------------------------------------------------------
# ld.so.conf


def ld_so_conf_dirs(root: str = "/") -> tuple[str, ...]:
    """The directories /etc/ld.so.conf lists (with `include` globs), as paths under ``root``."""
    dirs: list[str] = []
    _read_conf(root, "/etc/ld.so.conf", dirs, set())
    return tuple(dict.fromkeys(dirs))


def _read_conf(root: str, conf: str, dirs: list[str], visited: set[str]) -> None:
    real = _under(root, conf)
    if real in visited:
        return
    visited.add(real)
    _resultcache.note_file(real)
    try:
        with open(real, encoding="utf-8", errors="surrogateescape") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return  # ldconfig ignores a missing or unreadable conf file too
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if words[0] == "include" and len(words) > 1:
            for pattern in words[1:]:
                if not pattern.startswith("/"):  # relative to the including file, as ldconfig
                    pattern = os.path.join(os.path.dirname(conf), pattern)
                _resultcache.note_glob(_under(root, pattern))
                for match in sorted(glob.glob(_under(root, pattern))):
                    inner = "/" + os.path.relpath(match, root) if root != "/" else match
                    _read_conf(root, inner, dirs, visited)
        elif words[0] == "hwcap":
            continue  # an obsolete directive ldconfig skips as well
        else:
            dirs.append(_under(root, line.rstrip("/") or "/"))


def _under(root: str, path: str) -> str:
    if root in ("", "/"):
        return path
    return os.path.join(root, path.lstrip("/"))


# ---------------------------------------------------------------------------------------------
# Resolution


@dataclass
class _Lib:
    path: str | None
    kind: NativeKind
    needed_by: set[str] = field(default_factory=set)


class _Resolver:
    """One analysis: caches of candidate headers and directory lists, shared by every lookup."""

    def __init__(self, *, ld_library_path: tuple[str, ...], root: str) -> None:
        self.root = root
        self.ld_library_path = ld_library_path
        self.conf_dirs = ld_so_conf_dirs(root)
        self.idents: dict[str, tuple[int, str, bool] | None] = {}
        self.lib_dirs: dict[tuple[str, int], str] = {}
        self.realpaths: dict[str, str] = {}
        self.dir_lists: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
        self.main: ElfInfo | None = None
        self.main_origin = ""

    def ident(self, path: str) -> tuple[int, str, bool] | None:
        """(class, machine, little endian) of a candidate, None if it is no ELF ld.so could load."""
        if path in self.idents:
            return self.idents[path]
        _resultcache.note_file(path)
        try:
            result: tuple[int, str, bool] | None = read_header(path).ident
        except NotElfError:
            result = None
        self.idents[path] = result
        return result

    def lib_dir(self, info: ElfInfo) -> str:
        """ld.so's $LIB: "lib/<triplet>" on a multiarch (Debian) root, else lib64 or lib."""
        key = (info.machine, info.elfclass)
        if key not in self.lib_dirs:
            _, triplet = _BY_ELF.get(key, ("", ""))
            _resultcache.note_path(_under(self.root, f"/usr/lib/{triplet}"))
            if triplet and os.path.isdir(_under(self.root, f"/usr/lib/{triplet}")):
                self.lib_dirs[key] = f"lib/{triplet}"
            else:
                self.lib_dirs[key] = "lib64" if info.elfclass == 64 else "lib"
        return self.lib_dirs[key]

    def expand(self, entries: Iterable[str], info: ElfInfo, origin: str) -> list[str]:
        """Expand $ORIGIN, $LIB and $PLATFORM in search-path entries as ld.so does."""
        platform_name, _ = _BY_ELF.get((info.machine, info.elfclass), ("", ""))
        values = {"ORIGIN": origin, "LIB": self.lib_dir(info), "PLATFORM": platform_name}
        out: list[str] = []
        for entry in entries:
            expanded = _DST.sub(lambda m: values[m.group(1) or m.group(2)], entry)
            if expanded and os.path.isabs(expanded):
                out.append(os.path.normpath(expanded))
        return out

    def realpath(self, path: str) -> str:
        real = self.realpaths.get(path)
        if real is None:
            real = self.realpaths[path] = os.path.realpath(path)
        return real

    def search_dirs(self, info: ElfInfo, origin: str, inherited: tuple[str, ...]) -> list[str]:
        """The directories ld.so tries for a needed name of ``info``, in order, without repeats."""
        key = (info.path, origin, inherited)
        cached = self.dir_lists.get(key)
        if cached is None:
            cached = self.dir_lists[key] = list(dict.fromkeys(self._dirs(info, origin, inherited)))
        return cached

    def _dirs(self, info: ElfInfo, origin: str, inherited: tuple[str, ...]) -> list[str]:
        dirs: list[str] = []
        if not info.runpath:
            # DT_RPATH of the needing object and of the chain that loaded it, then the main
            # program's; all ignored when the needing object has a DT_RUNPATH.
            dirs += self.expand(info.rpath, info, origin)
            dirs += inherited
            if self.main is not None and not self.main.runpath:
                dirs += self.expand(self.main.rpath, self.main, self.main_origin)
        if self.ld_library_path:
            main = self.main or info
            llp_origin = self.main_origin if self.main is not None else origin
            dirs += self.expand(self.ld_library_path, main, llp_origin)
        dirs += self.expand(info.runpath, info, origin)
        if not info.nodeflib:
            dirs += self.conf_dirs
            _, triplet = _BY_ELF.get((info.machine, info.elfclass), ("", ""))
            defaults = [f"/lib/{triplet}", f"/usr/lib/{triplet}"] if triplet else []
            defaults += ["/lib64", "/usr/lib64", "/lib", "/usr/lib"]
            dirs += [_under(self.root, d) for d in defaults]
        return dirs

    def find(self, name: str, info: ElfInfo, origin: str, inherited: tuple[str, ...]) -> str | None:
        """The file ld.so would load for DT_NEEDED ``name`` of ``info``, or None."""
        want = (info.elfclass, info.machine, info.little_endian)
        if "/" in name:
            expanded = self.expand([name], info, origin) if "$" in name else [name]
            candidates = [os.path.abspath(c) for c in expanded]
        else:
            candidates = [f"{d}/{name}" for d in self.search_dirs(info, origin, inherited)]
        for candidate in candidates:
            if self.ident(candidate) == want:
                return candidate
        return None


def _origin(info: ElfInfo) -> str:
    # The main program's $ORIGIN comes from /proc/self/exe (symlinks resolved); a library's
    # from the path it was loaded by.
    if info.interpreter:
        return os.path.dirname(os.path.realpath(info.path))
    return os.path.dirname(info.path)


def analyze_native(
    elf_paths: Iterable[str | os.PathLike[str]],
    *,
    shipped: frozenset[str] = frozenset(),
    ld_library_path: Iterable[str] = (),
    root: str = "/",
    machine: str | None = None,
) -> NativeReport:
    """Resolve and classify every library the given ELF files need, transitively.

    ``shipped``: realpaths of files the environment holds anyway (a library resolved into it is
    "distribution"). ``ld_library_path``: directories searched as LD_LIBRARY_PATH (default none:
    the result does not depend on the caller's shell). ``root``: where /etc/ld.so.conf and the
    default library dirs live. ``machine``: the target's platform.machine() (default: this
    host's); inputs of another machine are skipped with a warning.
    """
    resolver = _Resolver(ld_library_path=tuple(ld_library_path), root=root)
    target = _MACHINES.get(machine or platform.machine())
    warnings: list[str] = []
    errors: list[str] = []
    libs: dict[str, _Lib] = {}
    elves: dict[str, ElfInfo] = {}

    inputs: list[ElfInfo] = []
    for raw in sorted({os.path.abspath(os.fspath(p)) for p in elf_paths}):
        _resultcache.note_file(raw)
        try:
            info = read_elf(raw)
        except NotElfError as exc:
            warnings.append(f"skipped {exc.path}: {exc.reason}")
            continue
        if target is not None and (info.machine, info.elfclass) != target[:2]:
            warnings.append(
                f"skipped {raw}: built for {info.machine} ({info.elfclass}-bit), "
                f"not {target[0]} ({target[1]}-bit)"
            )
            continue
        inputs.append(info)
        elves[info.path] = info
    executables = [i for i in inputs if i.interpreter]
    if len(executables) == 1:
        # Python dlopens extension modules: the main program's DT_RPATH applies to their needs.
        resolver.main = executables[0]
        resolver.main_origin = _origin(executables[0])

    # Work list of (ELF, its $ORIGIN, DT_RPATH dirs inherited from the chain that loaded it).
    todo: list[tuple[ElfInfo, str, tuple[str, ...]]] = [(i, _origin(i), ()) for i in inputs]
    visited: set[tuple[str, tuple[str, ...]]] = set()
    while todo:
        info, origin, inherited = todo.pop()
        key = (resolver.realpath(info.path), inherited)
        if key in visited:
            continue
        visited.add(key)
        chain = inherited
        if not info.runpath:
            # Repeats dropped: a DT_RPATH dependency cycle must not grow the chain forever.
            chain = tuple(dict.fromkeys([*resolver.expand(info.rpath, info, origin), *inherited]))
        for name in info.needed:
            found = resolver.find(name, info, origin, inherited)
            in_shipped = found is not None and resolver.realpath(found) in shipped
            lib, follow = _classify(name, found, in_shipped, libs, warnings)
            lib.needed_by.add(info.path)
            if follow and found is not None:
                _resultcache.note_file(found)
                try:
                    dep = read_elf(found)
                except NotElfError as exc:
                    warnings.append(f"cannot read {name} ({exc}), needed by {info.path}")
                    continue
                elves.setdefault(dep.path, dep)
                todo.append((dep, os.path.dirname(dep.path), chain))

    for soname, lib in sorted(libs.items()):
        if lib.kind == "missing":
            errors.append(f"{soname}: not found, needed by {', '.join(sorted(lib.needed_by))}")
    report_libs = tuple(
        NativeLib(soname=s, path=lib.path, kind=lib.kind, needed_by=tuple(sorted(lib.needed_by)))
        for s, lib in sorted(libs.items())
    )
    glibc = max_glibc(v for e in elves.values() for v in e.glibc)
    return NativeReport(
        libs=report_libs,
        glibc=glibc,
        warnings=tuple(dict.fromkeys(warnings)),
        errors=tuple(errors),
        elves=tuple(elves[p] for p in sorted(elves)),
    )


def _classify(
    name: str,
    found: str | None,
    in_shipped: bool,
    libs: dict[str, _Lib],
    warnings: list[str],
) -> tuple[_Lib, bool]:
    """Record one resolution of ``name``; return its entry and whether to follow its needs."""
    if in_shipped:
        kind: NativeKind = "distribution"
    elif os.path.basename(name) in SYSTEM_LIBS:
        kind = "system"
    elif found is not None:
        kind = "bundle"
    else:
        kind = "missing"
    lib = libs.get(name)
    if lib is None or (lib.path is None and found is not None):
        # First sighting, or found now through a search path another needing file lacked.
        lib = libs[name] = _Lib(found, kind, lib.needed_by if lib is not None else set())
    elif found is not None and found != lib.path:
        if in_shipped and lib.kind == "distribution":
            # Two distributions vendor the same library (numpy.libs, scipy.libs): both ship.
            return lib, True
        # A process loads one library per name: the first one found wins, as in ld.so.
        warnings.append(f"{name} resolves to both {lib.path} and {found}; using {lib.path}")
        return lib, False
    return lib, lib.kind in ("distribution", "bundle")


def iter_elf_files(paths: Iterable[str]) -> Iterator[str]:
    """The files among ``paths`` with a valid ELF header (a cheap pre-filter for callers)."""
    for path in paths:
        if is_elf(path):
            yield path


__all__ = [
    "SYSTEM_LIBS",
    "ElfInfo",
    "NativeReport",
    "NotElfError",
    "analyze_native",
    "glibc_key",
    "iter_elf_files",
    "ld_so_conf_dirs",
    "max_glibc",
    "read_elf",
]
