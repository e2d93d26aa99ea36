"""The one ELF reader: a file's header parsed once, then only the tables a caller asks for.

Modelled on packaging's ``_elffile.py``: a small class whose constructor parses and checks the
ELF header and raises one clear error (NotElfError, naming the file) for anything that is not
ELF, is truncated or is corrupt; never a raw ``struct.error``. Everything envpack reads from ELF
files goes through here: the native analysis (dynamic segment, version needs), library search
(the header of each candidate), and the builder (is it ELF, has it debug sections, which run
paths does it carry). Nothing here writes: envpack.relocate is the only writer.

pyelftools' construct-based parsing costs ~4 ms per file (DynamicSegment alone scans every
section header), 1.8 s for the 470 ELF files of this machine's site-packages. ld.so needs only
the ELF header, the program headers, the dynamic segment and the version-needed table, all
fixed-layout records: they are read here with ``struct`` from an mmap of the file (nothing but
the touched pages is read), about 30x faster. pyelftools supplies the e_machine names and is
the oracle the tests check this reader against on every real ELF file they meet.
"""

from __future__ import annotations

import mmap
import os
import re
import stat
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from elftools.elf.enums import ENUM_E_MACHINE

from envpack.errors import EnvpackError

ELFMAG = b"\x7fELF"
_GLIBC = re.compile(r"GLIBC_(\d+(?:\.\d+)*)")
_DF_1_NODEFLIB = 0x800
_DEBUG_PREFIXES = (b".debug_", b".zdebug_")  # what `objcopy --strip-debug` removes

_PT_LOAD, _PT_DYNAMIC, _PT_INTERP = 1, 2, 3
_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_STRSZ = 0, 1, 5, 10
_DT_SONAME, _DT_RPATH, _DT_RUNPATH = 14, 15, 29
_DT_FLAGS_1, _DT_VERNEED, _DT_VERNEEDNUM = 0x6FFFFFFB, 0x6FFFFFFE, 0x6FFFFFFF
_SHN_XINDEX = 0xFFFF
_DT_SYMTAB, _DT_VERDEF, _DT_VERDEFNUM = 6, 0x6FFFFFFC, 0x6FFFFFFD
_SHT_DYNSYM = 11
# d_val is an offset in the dynamic string table: NEEDED, SONAME, RPATH, RUNPATH, CONFIG,
# DEPAUDIT, AUDIT, AUXILIARY, FILTER
_STRING_TAGS = frozenset(
    {_DT_NEEDED, _DT_SONAME, _DT_RPATH, _DT_RUNPATH}
    | {0x6FFFFEFA, 0x6FFFFEFB, 0x6FFFFEFC, 0x7FFFFFFD, 0x7FFFFFFF}
)

# The bytes a caller may hand us: a whole file's mmap, or the first bytes of one.
_Buffer = bytes | mmap.mmap


class NotElfError(EnvpackError):
    """A file that should be ELF is not, is truncated, or is corrupt."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class _Layout:
    ehdr: str  # e_type … e_shstrndx, from offset 16
    ehdr_size: int
    phdr: str
    phdr_size: int
    dyn: str
    dyn_size: int
    shdr_name_off: tuple[str, int, int]  # (format of sh_offset+sh_size, their offset, shdr size)


_LAYOUTS = {
    32: _Layout("HHIIIIIHHHHHH", 52, "IIIIIIII", 32, "iI", 8, ("II", 0x10, 40)),
    64: _Layout("HHIQQQIHHHHHH", 64, "IIQQQQQQ", 56, "qQ", 16, ("QQ", 0x18, 64)),
}


@dataclass(frozen=True)
class Header:
    """The ELF header: identity and where the program and section header tables are."""

    path: str
    elfclass: int  # 32 or 64
    little_endian: bool
    type: int  # e_type: 2 executable, 3 shared object (or PIE)
    machine_number: int  # e_machine
    phoff: int
    shoff: int
    phentsize: int
    phnum: int
    shentsize: int
    shnum: int
    shstrndx: int

    @property
    def machine(self) -> str:
        """e_machine as its EM_ name ("EM_X86_64"), one spelling for every caller."""
        return machine_name(self.machine_number)

    @property
    def ident(self) -> tuple[int, str, bool]:
        """(class, machine, little endian): what ld.so compares between a needer and a library."""
        return (self.elfclass, self.machine, self.little_endian)


@dataclass(frozen=True)
class ElfInfo:
    """What ld.so reads from an ELF file to load it: identity, dependencies, search paths."""

    path: str  # absolute, as given (not symlink-resolved: ld.so's $ORIGIN is the path's dir)
    elfclass: int  # 32 or 64
    machine: str  # e_machine, e.g. "EM_X86_64"
    soname: str | None = None
    needed: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()  # DT_RPATH entries, unexpanded
    runpath: tuple[str, ...] = ()  # DT_RUNPATH entries, unexpanded
    glibc: tuple[str, ...] = ()  # GLIBC_x.y versions needed ("2.17", …), sorted numerically
    interpreter: str | None = None  # PT_INTERP, set for executables
    little_endian: bool = True
    nodeflib: bool = False  # DF_1_NODEFLIB: skip ld.so.conf and the default dirs

    @property
    def run_path(self) -> tuple[str, ...]:
        """The file's own search path: DT_RUNPATH, else DT_RPATH (ld.so ignores RPATH then)."""
        return self.runpath or self.rpath


def glibc_key(version: str) -> tuple[int, ...]:
    """Numeric sort key for "2.17"-style versions: "2.9" < "2.17" < "2.34"."""
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def machine_name(number: int) -> str:
    """e_machine number to its EM_ name (pyelftools' table), "EM_<n>" when it has none."""
    return _EM_NAMES.get(number, f"EM_{number}")


def _em_names() -> dict[int, str]:
    names: dict[int, str] = {}
    for key, value in ENUM_E_MACHINE.items():
        if isinstance(value, int) and key.startswith("EM_"):
            names.setdefault(value, key)
    return names


_EM_NAMES = _em_names()

_T = TypeVar("_T")


def _guarded(path: str, read: Callable[[], _T]) -> _T:
    """Run ``read``; a struct or offset error there means a corrupt or truncated file."""
    try:
        return read()
    except NotElfError:
        raise
    except (struct.error, ValueError, IndexError, OverflowError) as exc:
        raise NotElfError(path, f"corrupt or truncated ELF ({exc})") from None


def _parse_header(path: str, data: _Buffer) -> Header:
    if len(data) < 4 or data[:4] != ELFMAG:
        raise NotElfError(path, "not an ELF file")
    if len(data) < 16 or data[4] not in (1, 2) or data[5] not in (1, 2):
        raise NotElfError(path, "corrupt ELF header (bad class or data encoding)")
    elfclass = 32 if data[4] == 1 else 64
    little = data[5] == 1
    lay = _LAYOUTS[elfclass]
    if len(data) < lay.ehdr_size:
        raise NotElfError(path, f"truncated (shorter than its {elfclass}-bit ELF header)")
    fields_ = struct.unpack_from(("<" if little else ">") + lay.ehdr, data, 16)
    e_type, e_machine, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, shstrndx = (
        fields_
    )
    return Header(
        path=path,
        elfclass=elfclass,
        little_endian=little,
        type=e_type,
        machine_number=e_machine,
        phoff=phoff,
        shoff=shoff,
        phentsize=phentsize,
        phnum=phnum,
        shentsize=shentsize,
        shnum=shnum,
        shstrndx=shstrndx,
    )


def read_header(path: str | os.PathLike[str]) -> Header:
    """The ELF header of ``path`` from its first 64 bytes (a cheap look at a library candidate)."""
    p = os.fspath(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise NotElfError(p, f"cannot read ({exc.strerror})") from None
    return _parse_header(p, head)


def is_elf(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a readable file with a whole, valid ELF header."""
    try:
        read_header(path)
    except NotElfError:
        return False
    return True


@dataclass(frozen=True)
class RunPathSlot:
    """A run path string that may be overwritten in place (ElfFile.run_path_slot)."""

    entry: int  # file offset of its dynamic entry (d_tag first)
    string: int  # file offset of the string
    room: int  # its length in bytes, without the NUL
    tag_format: str  # struct format of d_tag, byte order first

    def patches(self, value: bytes) -> list[tuple[int, bytes]]:
        """(file offset, bytes) that make the entry DT_RPATH ``value`` (at most ``room``
        bytes; the rest of the old string is zeroed)."""
        if len(value) > self.room or b"\0" in value:
            raise ValueError(f"a run path of {len(value)} bytes in a slot of {self.room}")
        return [
            (self.string, value.ljust(self.room, b"\0")),
            (self.entry, struct.pack(self.tag_format, _DT_RPATH)),
        ]


class ElfFile:
    """One ELF file's bytes, its header parsed (and checked) on construction.

    Tables are read when asked for, each checked against the file's size, so a truncated or
    corrupt file raises NotElfError from whichever method reads past its end.
    """

    def __init__(self, path: str, data: _Buffer) -> None:
        self.path = path
        self.data = data
        self.header = _parse_header(path, data)
        self._end = "<" if self.header.little_endian else ">"
        self._layout = _LAYOUTS[self.header.elfclass]

    @classmethod
    @contextmanager
    def open(cls, path: str | os.PathLike[str]) -> Iterator[ElfFile]:
        """Map ``path`` read-only (only the pages touched are read) and parse its header."""
        p = os.fspath(path)
        try:
            st = os.stat(p)
            if not stat.S_ISREG(st.st_mode):
                raise NotElfError(p, "not a regular file")
            if st.st_size < 4:
                raise NotElfError(p, "not an ELF file (empty or tiny)")
            fh = open(p, "rb")  # noqa: SIM115  (closed below, after the mmap)
        except OSError as exc:
            raise NotElfError(p, f"cannot read ({exc.strerror})") from None
        try:
            with fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
                yield cls(p, data)
        except OSError as exc:
            raise NotElfError(p, f"cannot read ({exc.strerror or exc})") from None

    def _error(self, reason: str) -> NotElfError:
        return NotElfError(self.path, reason)

    # -- program headers and the dynamic segment ----------------------------------------------

    def segments(self) -> list[tuple[int, int, int, int]]:
        """(p_type, p_offset, p_vaddr, p_filesz) of every program header."""
        return _guarded(self.path, self._segments)

    def _segments(self) -> list[tuple[int, int, int, int]]:
        h, lay, size = self.header, self._layout, len(self.data)
        if h.phnum and (h.phentsize < lay.phdr_size or h.phnum == 0xFFFF):
            raise self._error("corrupt ELF (bad program header table)")
        if h.phoff + h.phnum * h.phentsize > size:
            raise NotElfError(
                self.path, "truncated (program header table past the end of the file)"
            )
        if h.shoff and h.shoff + h.shnum * h.shentsize > size:
            raise NotElfError(
                self.path, "truncated (section header table past the end of the file)"
            )
        out = []
        for i in range(h.phnum):
            fields_ = struct.unpack_from(self._end + lay.phdr, self.data, h.phoff + i * h.phentsize)
            if h.elfclass == 64:
                p_type, _, p_offset, p_vaddr, _, p_filesz = fields_[:6]
            else:
                p_type, p_offset, p_vaddr, _, p_filesz = fields_[:5]
            if p_type in (_PT_LOAD, _PT_DYNAMIC, _PT_INTERP) and p_offset + p_filesz > size:
                raise NotElfError(
                    self.path, "truncated (a segment extends past the end of the file)"
                )
            out.append((p_type, p_offset, p_vaddr, p_filesz))
        return out

    def info(self) -> ElfInfo:
        """The dynamic-linking facts ld.so reads: needed, soname, search paths, glibc needs."""
        return _guarded(self.path, self._info)

    def _info(self) -> ElfInfo:
        data, path = self.data, self.path
        size = len(data)
        loads, dynamic, interp = self._dynamic_segments()
        interpreter = None if interp is None else _cstring(data, interp[0], interp[0] + interp[1])
        tags = [(tag, value) for _, tag, value in self._tags(dynamic)]

        def address(vaddr: int) -> int:
            offset = _file_offset(loads, vaddr)
            if offset is None:
                raise NotElfError(path, f"corrupt ELF (address {vaddr:#x} is in no loaded segment)")
            return offset

        values = dict(tags)  # single-valued tags; the last wins, as in ld.so
        strings: tuple[int, int] | None = None
        if _DT_STRTAB in values:
            strtab = address(values[_DT_STRTAB])
            strings = (strtab, min(size, strtab + values.get(_DT_STRSZ, size)))

        def string(offset: int) -> str:
            if strings is None:
                raise NotElfError(path, "corrupt ELF (dynamic strings but no DT_STRTAB)")
            return _cstring(data, strings[0] + offset, strings[1])

        soname: str | None = None
        needed: list[str] = []
        rpath: list[str] = []
        runpath: list[str] = []
        for tag, value in tags:
            if tag == _DT_NEEDED:
                needed.append(string(value))
            elif tag == _DT_SONAME:
                soname = string(value)
            elif tag == _DT_RPATH:
                rpath.extend(_split_path(string(value)))
            elif tag == _DT_RUNPATH:
                runpath.extend(_split_path(string(value)))

        glibc: set[str] = set()
        if _DT_VERNEED in values:
            glibc = self._glibc_needed(
                address(values[_DT_VERNEED]), values.get(_DT_VERNEEDNUM, 0), string
            )
        return ElfInfo(
            path=path,
            elfclass=self.header.elfclass,
            machine=self.header.machine,
            soname=soname,
            needed=tuple(needed),
            rpath=tuple(rpath),
            runpath=tuple(runpath),
            glibc=tuple(sorted(glibc, key=glibc_key)),
            interpreter=interpreter,
            little_endian=self.header.little_endian,
            nodeflib=bool(values.get(_DT_FLAGS_1, 0) & _DF_1_NODEFLIB),
        )

    def _dynamic_segments(
        self,
    ) -> tuple[list[tuple[int, int, int]], tuple[int, int] | None, tuple[int, int] | None]:
        """(vaddr, offset, filesz) of each PT_LOAD; (offset, filesz) of PT_DYNAMIC and of
        PT_INTERP, or None."""
        loads: list[tuple[int, int, int]] = []
        dynamic = interp = None
        for p_type, p_offset, p_vaddr, p_filesz in self._segments():
            if p_type == _PT_LOAD:
                loads.append((p_vaddr, p_offset, p_filesz))
            elif p_type == _PT_DYNAMIC:
                dynamic = (p_offset, p_filesz)
            elif p_type == _PT_INTERP:
                interp = (p_offset, p_filesz)
        return loads, dynamic, interp

    def _tags(self, dynamic: tuple[int, int] | None) -> list[tuple[int, int, int]]:
        """(file offset, d_tag, d_val) of each dynamic entry before DT_NULL."""
        if dynamic is None:
            return []
        lay, out = self._layout, []
        offset, length = dynamic
        length -= length % lay.dyn_size
        view = self.data[offset : offset + length]
        for i, (tag, value) in enumerate(struct.iter_unpack(self._end + lay.dyn, view)):
            if tag == _DT_NULL:
                break
            out.append((offset + i * lay.dyn_size, tag, value))
        return out

    def run_path_slot(self) -> RunPathSlot | None:
        """Where the file's one DT_RPATH or DT_RUNPATH string lies, when it can be overwritten
        in place; None when not (none or several, or another name shares its bytes).

        Linkers merge string tails: GNU ld stores a symbol ``mylib_func`` inside a run path
        ``/opt/build/mylib_func``. Every reference into the dynamic string table (dynamic
        entries, dynamic symbols, version needs and definitions) is checked, so one found
        inside the run path's bytes refuses the slot; so does a file whose dynamic symbols
        cannot be counted (no section table).
        """
        return _guarded(self.path, self._run_path_slot)

    def _run_path_slot(self) -> RunPathSlot | None:
        data, end = self.data, self._end
        loads, dynamic, _ = self._dynamic_segments()
        tags = self._tags(dynamic)
        paths = [(at, value) for at, tag, value in tags if tag in (_DT_RPATH, _DT_RUNPATH)]
        values = {tag: value for _, tag, value in tags}
        if len(paths) != 1 or _DT_STRTAB not in values:
            return None
        entry, start = paths[0]
        strtab = _file_offset(loads, values[_DT_STRTAB])
        if strtab is None:
            return None
        strsz = values.get(_DT_STRSZ, len(data) - strtab)
        nul = data.find(b"\0", strtab + start, strtab + strsz)
        if nul < 0:
            return None
        room = nul - strtab - start
        refs = [v for at, tag, v in tags if tag in _STRING_TAGS and at != entry]
        dynsym = [(o, n, e) for kind, o, n, e in self._sections() if kind == _SHT_DYNSYM]
        if _DT_SYMTAB in values and not dynsym:
            return None
        for off, size, ent in dynsym:
            if ent < 4 or off + size > len(data):
                return None
            # st_name is the first word of an Elf32_Sym and of an Elf64_Sym
            names = struct.iter_unpack(f"{end}I{ent - 4}x", data[off : off + size - size % ent])
            refs.extend(name for (name,) in names)

        if _DT_VERNEED in values:
            at = _file_offset(loads, values[_DT_VERNEED])
            if at is None:
                return None
            refs.extend(self._verneed_names(at, values.get(_DT_VERNEEDNUM, 0)))
        if _DT_VERDEF in values:
            at = _file_offset(loads, values[_DT_VERDEF])
            if at is None:
                return None
            refs.extend(self._verdef_names(at, values.get(_DT_VERDEFNUM, 0)))
        if any(start <= ref < start + room for ref in refs):
            return None
        return RunPathSlot(entry, strtab + start, room, end + self._layout.dyn[0])

    def _sections(self) -> list[tuple[int, int, int, int]]:
        """(sh_type, sh_offset, sh_size, sh_entsize) of every section (none: no table)."""
        h, data = self.header, self.data
        if not h.shoff or not h.shnum:
            return []
        fmt = "IIIIIIIIII" if h.elfclass == 32 else "IIQQQQIIQQ"
        if h.shentsize < struct.calcsize(fmt) or h.shoff + h.shnum * h.shentsize > len(data):
            raise self._error("corrupt ELF (bad section header table)")
        out = []
        for i in range(h.shnum):
            f = struct.unpack_from(self._end + fmt, data, h.shoff + i * h.shentsize)
            out.append((f[1], f[4], f[5], f[9]))
        return out

    def _verneed_names(self, offset: int, count: int) -> list[int]:
        """Names of the version-needed table (Elf_Verneed, Elf_Vernaux; same in 32/64): the
        libraries' and their versions' (a corrupt count cannot loop for long)."""
        data, end, names = self.data, self._end, []
        for _ in range(min(count, len(data) // 16)):
            _, vn_cnt, vn_file, vn_aux, vn_next = struct.unpack_from(end + "HHIII", data, offset)
            names.append(vn_file)
            aux = offset + vn_aux
            for _ in range(vn_cnt):
                _, _, _, vna_name, vna_next = struct.unpack_from(end + "IHHII", data, aux)
                names.append(vna_name)
                if not vna_next:
                    break
                aux += vna_next
            if not vn_next:
                break
            offset += vn_next
        return names

    def _verdef_names(self, offset: int, count: int) -> list[int]:
        """Names of the version-definition table (Elf_Verdef, Elf_Verdaux; same in 32/64)."""
        data, end, names = self.data, self._end, []
        for _ in range(min(count, len(data) // 20)):
            _, _, _, vd_cnt, _, vd_aux, vd_next = struct.unpack_from(end + "HHHHIII", data, offset)
            aux = offset + vd_aux
            for _ in range(vd_cnt):
                vda_name, vda_next = struct.unpack_from(end + "II", data, aux)
                names.append(vda_name)
                if not vda_next:
                    break
                aux += vda_next
            if not vd_next:
                break
            offset += vd_next
        return names

    def _glibc_needed(self, offset: int, count: int, string: Callable[[int], str]) -> set[str]:
        """GLIBC_x.y names in the version-needed table."""
        names = (_GLIBC.fullmatch(string(n)) for n in self._verneed_names(offset, count))
        return {match.group(1) for match in names if match}

    # -- sections -------------------------------------------------------------------------------

    def section_names(self) -> list[str]:
        """The names of every section, in table order (empty when the file has no table)."""
        return [n.decode("utf-8", "surrogateescape") for n in _guarded(self.path, self._names)]

    def has_debug(self) -> bool:
        """Whether the file has debug sections (.debug_*, .zdebug_*) that objcopy would strip."""
        return any(n.startswith(_DEBUG_PREFIXES) for n in _guarded(self.path, self._names))

    def _names(self) -> list[bytes]:
        h, data, end = self.header, self.data, self._end
        if not h.shoff:
            return []
        fmt, off_at, min_size = self._layout.shdr_name_off
        if h.shentsize < min_size:
            raise self._error("corrupt ELF (bad section header size)")
        num, strndx = h.shnum, h.shstrndx
        if num == 0 or strndx == _SHN_XINDEX:
            # Extended numbering: the real values sit in section 0 (sh_size, sh_link).
            word = 8 if h.elfclass == 64 else 4
            (size0,) = struct.unpack_from(end + fmt[1], data, h.shoff + off_at + word)
            (link0,) = struct.unpack_from(end + "I", data, h.shoff + off_at + 2 * word)
            num = num or size0
            strndx = link0 if strndx == _SHN_XINDEX else strndx
        if h.shoff + num * h.shentsize > len(data):
            raise NotElfError(
                self.path, "truncated (section header table past the end of the file)"
            )
        if strndx >= num:
            raise self._error("corrupt ELF (section name table index out of range)")
        str_off, str_size = struct.unpack_from(
            end + fmt, data, h.shoff + strndx * h.shentsize + off_at
        )
        if str_off + str_size > len(data):
            raise self._error("truncated (section names past the end of the file)")
        names: list[bytes] = []
        for i in range(num):
            (name,) = struct.unpack_from(end + "I", data, h.shoff + i * h.shentsize)
            if name >= str_size and str_size:
                raise self._error("corrupt ELF (a section name outside its table)")
            nul = data.find(b"\0", str_off + name, str_off + str_size)
            names.append(data[str_off + name : nul if nul >= 0 else str_off + str_size])
        return names


def _file_offset(loads: list[tuple[int, int, int]], vaddr: int) -> int | None:
    """Where address ``vaddr`` lies in the file, through the PT_LOAD segment holding it."""
    for start, offset, filesz in loads:
        if start <= vaddr < start + filesz:
            return vaddr - start + offset
    return None


def _cstring(data: _Buffer, start: int, stop: int) -> str:
    """The NUL-terminated string at ``start``, which must end before ``stop``."""
    nul = data.find(b"\0", start, stop)
    if start >= stop or nul < 0:
        raise ValueError(f"unterminated string at offset {start}")
    return data[start:nul].decode("utf-8", "surrogateescape")


def _split_path(value: str) -> list[str]:
    # Empty entries mean the process's cwd to ld.so: meaningless for a shipped env, dropped.
    return [entry for entry in value.split(":") if entry]


_cache: dict[str, tuple[tuple[int, int, int], ElfInfo]] = {}


def read_elf(path: str | os.PathLike[str]) -> ElfInfo:
    """The dynamic-linking facts of one ELF file; NotElfError for anything unusable.

    Cached by path, inode, size and mtime, so each file is parsed once per process.
    """
    p = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(p)
    except OSError as exc:
        raise NotElfError(p, f"cannot read ({exc.strerror})") from None
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _cache.get(p)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    with ElfFile.open(p) as elf:
        info = elf.info()
    _cache[p] = (stamp, info)
    return info


def has_debug(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an ELF file with debug sections; False for anything unreadable.

    A file whose section table cannot be read has nothing objcopy could strip safely.
    """
    try:
        with ElfFile.open(path) as elf:
            return elf.has_debug()
    except NotElfError:
        return False


__all__ = [
    "ELFMAG",
    "ElfFile",
    "ElfInfo",
    "Header",
    "NotElfError",
    "glibc_key",
    "has_debug",
    "is_elf",
    "machine_name",
    "read_elf",
    "read_header",
]
