"""What a pickled object needs on the worker: what its code reaches, not what its program imports.

cloudpickle (what coffea, TaskVine, Parsl and dask send objects with) ships the functions and
classes of ``__main__`` (a script, a notebook cell), and any it cannot find by name in an imported
module, *by value*: their code, the globals that code names, closures, defaults, class dicts.
Everything else goes *by reference*: the worker imports its module. So the worker needs the
modules the by-value code reaches, recursively, and nothing else of the program: a notebook's
plotting, executor and cluster-client imports stay on the manager unless shipped code uses them.

`find_references` walks live objects the way cloudpickle pickles them (without pickling, so no
data is copied) and returns the modules the worker imports. `analyze_objects` writes those as a
small generated root module and hands it to the analyzer, so distributions, native libraries and
local modules are found and explained exactly as for a processor file.
"""

from __future__ import annotations

import dis
import functools
import importlib.util
import os
import re
import site
import sys
import sysconfig
import tempfile
import types
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envpack.errors import UsageError

if TYPE_CHECKING:
    from envpack.analyzer.api import Hints
    from envpack.spec import Spec

ROOT_NAME = "envpack_objects"
"""The generated root module's name (never shipped: the worker gets the code by value)."""

MAX_OBJECTS = 500_000
"""Objects visited at most; past that the walk stops with a warning (a huge data structure)."""

_ATOMIC = frozenset(
    {
        type(None),
        bool,
        int,
        float,
        complex,
        str,
        bytes,
        bytearray,
        type(Ellipsis),
        type(NotImplemented),
        range,
        slice,
        memoryview,
    }
)
# Class-dict entries cloudpickle leaves out, or that hold nothing of the user's.
_CLASS_SKIP = frozenset(
    {
        "__dict__",
        "__weakref__",
        "__module__",
        "__qualname__",
        "__doc__",
        "_abc_impl",
        "_abc_registry",
        "_abc_cache",
        "_abc_negative_cache",
        "_abc_negative_cache_version",
    }
)
_OPAQUE = (
    types.MemberDescriptorType,
    types.GetSetDescriptorType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.CodeType,
    types.CellType,
)
_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL", "LOAD_NAME"})
_MAIN = frozenset({"__main__", "__mp_main__", "builtins"})


@dataclass(frozen=True)
class Reference:
    """A module the worker imports to unpickle or to run the shipped code."""

    module: str  # absolute module name
    names: tuple[str, ...]  # ``from module import names`` (by-value code's own imports); ()
    why: str  # the shipped function or class that reaches it ("DimuonProcessor.process")
    site: str  # "file:line" in that code, "" when there is none (a class attribute)


@dataclass(frozen=True)
class Reach:
    """What a set of live objects needs on the worker; every sequence sorted."""

    references: tuple[Reference, ...]
    by_value: tuple[str, ...]  # the functions and classes shipped as code
    files: tuple[str, ...]  # the source files of that code that exist on disk
    search_path: tuple[str, ...]  # directories of local modules the worker imports by name
    warnings: tuple[str, ...]


def find_references(objects: Iterable[object]) -> Reach:
    """Walk ``objects`` as cloudpickle pickles them: the modules their by-value code reaches.

    Instances contribute their class and the state in ``__dict__`` and ``__slots__`` (never
    ``__reduce__``, which may copy data); containers their items; a dask collection its graph.
    """
    walker = _Walker()
    for obj in objects:
        walker.push(obj, _label(obj), "")
    walker.run()
    return walker.result()


def analyze_objects(
    objects: Iterable[object],
    *,
    python: str | os.PathLike[str] | None = None,
    include_lazy: Collection[str] = (),
    hints: Hints | None = None,
    imports: Iterable[str] = (),
    imports_why: str = "the engine, on the worker",
    project_dir: str | os.PathLike[str] | None = None,
) -> Spec:
    """The Spec for sending ``objects`` to workers with cloudpickle: what their code reaches.

    ``imports`` are modules the engine itself imports on the worker (coffea's executor:
    cloudpickle, lz4). ``python`` is the interpreter whose packages ship (default: this one).
    ``[tool.envpack]`` settings come from ``project_dir`` (default: the current directory).
    """
    from envpack.analyzer.api import analyze

    objects = list(objects)
    if not objects:
        raise UsageError("analyze_objects: no objects given")
    reach = find_references(objects)
    engine = sorted(set(imports))
    lines: list[tuple[str, str]] = []  # (statement, why) of each generated line
    for ref in reach.references:
        names = ", ".join(ref.names)
        stmt = f"from {ref.module} import {names}" if names else f"import {ref.module}"
        lines.append((stmt, f"{ref.site}, in {ref.why}" if ref.site else ref.why))
    lines += [(f"import {name}", imports_why) for name in engine]
    heads = {ref.module: ref.why for ref in reversed(reach.references)}
    heads.update(dict.fromkeys(engine, imports_why))
    with tempfile.TemporaryDirectory(prefix="envpack-objects-") as tmp:
        root = write_root(Path(tmp), ROOT_NAME, lines)
        spec = analyze(
            [root],
            include_lazy=include_lazy,
            hints=hints,
            python=python,
            search_path=reach.search_path,
            project_dir=project_dir or os.getcwd(),
            cache=False,  # a fresh temporary root each time: never found again
        )
    sites = {i + 3: why for i, (_, why) in enumerate(lines)}
    spec = relabel(spec, root, heads=heads, sites=sites, default="the shipped objects")
    return replace(
        spec,
        roots=reach.files,
        warnings=tuple(sorted({*spec.warnings, *reach.warnings})),
    )


def write_root(directory: Path, name: str, lines: Sequence[tuple[str, str]]) -> Path:
    """A generated root module: one import per line from line 3, each with its reason."""
    body = "".join(f"{stmt}  # {why}\n" for stmt, why in lines)
    root = directory / f"{name}.py"
    root.write_text(f'"""Generated by envpack: what the shipped objects import."""\n\n{body}')
    return root


def relabel(
    spec: Spec,
    root: Path,
    *,
    heads: Mapping[str, str],
    sites: Mapping[int, str],
    default: str,
) -> Spec:
    """The Spec of a generated root told in the user's terms, without the root itself.

    Import chains start at what was shipped (``heads``: first module -> who reaches it) instead
    of the generated module; ``root:LINE`` sites become the user's ``sites[LINE]``.
    """
    name = root.stem
    root = root.resolve()
    pattern = re.compile(re.escape(str(root)) + r":(\d+)")

    def site(text: str) -> str:
        text = pattern.sub(lambda m: sites.get(int(m.group(1)), default), text)
        return text.replace(name, default)

    def chain(c: tuple[str, ...]) -> tuple[str, ...]:
        if not c or c[0] != name:
            return c
        if len(c) == 1:
            return (default,)
        top = c[1].split(".")[0]
        head = heads.get(c[1]) or next(
            (why for mod, why in heads.items() if mod.split(".")[0] == top), default
        )
        return (head, *c[1:])

    return replace(
        spec,
        local=tuple(
            replace(f, why=site(f.why)) for f in spec.local if os.path.realpath(f.path) != str(root)
        ),
        distributions=tuple(replace(d, why=chain(d.why)) for d in spec.distributions),
        stdlib=tuple(replace(s, why=chain(s.why)) for s in spec.stdlib),
        warnings=tuple(sorted({site(w) for w in spec.warnings})),
        errors=tuple(sorted({site(e) for e in spec.errors})),
    )


class _Walker:
    """An explicit-stack walk over live objects (no recursion: graphs may be deep)."""

    def __init__(self) -> None:
        self.stack: list[tuple[object, str, str]] = []
        self.seen: set[int] = set()
        self.alive: list[object] = []  # keeps ids unique while walking
        self.refs: dict[tuple[str, tuple[str, ...]], Reference] = {}
        self.by_value: set[str] = set()
        self.files: set[str] = set()
        self.paths: set[str] = set()
        self.warnings: set[str] = set()
        self.system = _system_dirs()

    def push(self, obj: object, why: str, site: str) -> None:
        if type(obj) not in _ATOMIC and id(obj) not in self.seen:
            self.stack.append((obj, why, site))

    def run(self) -> None:
        while self.stack:
            obj, why, site = self.stack.pop()
            if id(obj) in self.seen:
                continue
            self.seen.add(id(obj))
            self.alive.append(obj)
            if len(self.seen) > MAX_OBJECTS:
                self.warnings.add(
                    f"stopped after {MAX_OBJECTS} objects (in {why}): a large data structure "
                    "is part of what is shipped; modules it alone reaches may be missed"
                )
                return
            self.visit(obj, why, site)

    def result(self) -> Reach:
        return Reach(
            references=tuple(self.refs[k] for k in sorted(self.refs)),
            by_value=tuple(sorted(self.by_value)),
            files=tuple(sorted(self.files)),
            search_path=tuple(sorted(self.paths)),
            warnings=tuple(sorted(self.warnings)),
        )

    # -- one object -------------------------------------------------------------------------------
    def visit(self, obj: object, why: str, site: str) -> None:
        if isinstance(obj, types.ModuleType):
            self.module(obj, why, site)
        elif isinstance(obj, types.FunctionType):
            module = _by_reference(obj)
            if module is None:
                self.function(obj)
            else:
                self.ref(module, (), why, site)
        elif isinstance(obj, type):
            module = _by_reference(obj)
            if module is None:
                self.klass(obj)
            else:
                self.ref(module, (), why, site)
        elif isinstance(obj, types.BuiltinFunctionType):
            owner = obj.__self__
            if isinstance(owner, types.ModuleType):
                self.module(owner, why, site)
            elif owner is not None:
                self.push(owner, why, site)
            elif obj.__module__:
                self.ref(obj.__module__, (), why, site)
        elif isinstance(obj, types.MethodType):
            self.push(obj.__func__, why, site)
            self.push(obj.__self__, why, site)
        elif isinstance(obj, staticmethod | classmethod):
            self.push(obj.__func__, why, site)
        elif isinstance(obj, property):
            for part in (obj.fget, obj.fset, obj.fdel):
                self.push(part, why, site)
        elif isinstance(obj, functools.partial):
            self.push(type(obj), why, site)
            self.push(obj.func, why, site)
            self.push(obj.args, why, site)
            self.push(obj.keywords, why, site)
        elif isinstance(obj, _OPAQUE):
            pass  # made by the class or function that holds it
        else:
            self.instance(obj, why, site)

    def module(self, module: types.ModuleType, why: str, site: str) -> None:
        name = module.__name__
        if name in _MAIN:
            return
        if _pickled_by_value(module) or name not in sys.modules:
            # cloudpickle ships a module made at run time (types.ModuleType) with its contents.
            self.warnings.add(f"module {name} (in {why}) is not importable; it ships by value")
            for value in list(vars(module).values()):
                self.push(value, why, site)
            return
        self.ref(name, (), why, site)

    def function(self, func: types.FunctionType) -> None:
        label = _label(func)
        self.by_value.add(label)
        code = func.__code__
        if os.path.isfile(code.co_filename):
            self.files.add(os.path.abspath(code.co_filename))
        globs = func.__globals__
        modules: list[types.ModuleType] = []
        for name, line in _global_names(code):
            if name in globs:
                value = globs[name]
                self.push(value, label, f"{code.co_filename}:{line}")
                if isinstance(value, types.ModuleType):
                    modules.append(value)
        here = f"{code.co_filename}:{code.co_firstlineno}"
        for cell in func.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell: a variable assigned after the def
                continue
            self.push(value, label, here)
            if isinstance(value, types.ModuleType):
                modules.append(value)
        for part in (func.__defaults__, func.__kwdefaults__, func.__annotations__, func.__dict__):
            self.push(part, label, here)
        package = globs.get("__package__") or ""
        for module, names, level, line in _import_ops(code):
            where = f"{code.co_filename}:{line}"
            if level:
                if not package:
                    self.warnings.add(f"{where}: relative import in {label} outside a package")
                    continue
                module = importlib.util.resolve_name("." * level + module, package).rstrip(".")
            self.ref(module, tuple(n for n in names if n != "*"), label, where)
        # cloudpickle's _find_imported_submodules: `pkg.sub.f()` needs pkg.sub imported.
        names_used = set(_co_names(code))
        for mod in modules:
            prefix = mod.__name__ + "."
            if not getattr(mod, "__package__", None):
                continue
            for name in [n for n in list(sys.modules) if n and n.startswith(prefix)]:
                if set(name[len(prefix) :].split(".")) <= names_used:
                    self.ref(name, (), label, here)

    def klass(self, cls: type) -> None:
        label = _label(cls)
        self.by_value.add(label)
        for base in cls.__bases__:
            self.push(base, label, "")
        self.push(type(cls), label, "")  # the metaclass
        for key, value in list(cls.__dict__.items()):
            if key not in _CLASS_SKIP:
                self.push(value, label, "")

    def instance(self, obj: object, why: str, site: str) -> None:
        kind = type(obj)
        if kind not in (dict, list, tuple, set, frozenset):
            self.push(kind, why, site)
        items: Iterable[object] = ()
        if isinstance(obj, dict):
            items = _flatten(obj.items())
        elif isinstance(obj, list | tuple | set | frozenset):
            items = list(obj)
        elif isinstance(obj, Mapping):
            mapping: Mapping[object, object] = obj
            items = _safe(lambda: list(_flatten(mapping.items()))) or ()
        for item in items:
            self.push(item, why, site)
        state = _safe(lambda: vars(obj))
        if isinstance(state, dict):
            for value in list(state.values()):
                self.push(value, why, site)
        for slot in _slots(kind):
            self.push(getattr(obj, slot, None), why, site)
        graph = getattr(kind, "__dask_graph__", None)
        if callable(graph):
            # What DaskVine and dask's schedulers send: the graph's tasks and their callables.
            self.push(_safe(lambda: graph(obj)), why, site)

    def ref(self, module: str, names: tuple[str, ...], why: str, site: str) -> None:
        if not module or module.split(".")[0] in _MAIN:
            return
        self.refs.setdefault((module, names), Reference(module, names, why, site))
        mod = sys.modules.get(module)
        path = getattr(mod, "__file__", None)
        if isinstance(path, str) and not path.startswith(self.system):
            entry = _import_root(path, module)
            if entry:
                self.paths.add(entry)


def _by_reference(obj: types.FunctionType | type) -> str | None:
    """The module cloudpickle pickles ``obj`` by reference to, or None when it goes by value."""
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    module_name = getattr(obj, "__module__", None)
    if not isinstance(qualname, str) or not isinstance(module_name, str):
        return None
    if module_name in ("__main__", "__mp_main__"):
        return None
    module = sys.modules.get(module_name)
    if module is None or _pickled_by_value(module):
        return None
    found: Any = module
    for part in qualname.split("."):
        found = getattr(found, part, _MISSING)
        if found is _MISSING:
            return None
    return module_name if found is obj else None


_MISSING = object()


def _pickled_by_value(module: types.ModuleType) -> bool:
    """cloudpickle.register_pickle_by_value(module) or a parent package was called."""
    registry = getattr(sys.modules.get("cloudpickle.cloudpickle"), "_PICKLE_BY_VALUE_MODULES", ())
    parts = module.__name__.split(".")
    return any(".".join(parts[:i]) in registry for i in range(1, len(parts) + 1))


def _label(obj: object) -> str:
    if isinstance(obj, types.FunctionType | type):
        module = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", repr(obj))
        return qualname if module in ("__main__", None) else f"{module}.{qualname}"
    return f"{_label(type(obj))} instance"


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    """``code`` and every code object nested in it (inner functions, classes, comprehensions)."""
    todo = [code]
    while todo:
        current = todo.pop()
        yield current
        todo.extend(c for c in current.co_consts if isinstance(c, types.CodeType))


def _co_names(code: types.CodeType) -> Iterator[str]:
    for c in _codes(code):
        yield from c.co_names


def _line(ins: dis.Instruction, code: types.CodeType) -> int:
    pos = ins.positions
    return pos.lineno if pos is not None and pos.lineno else code.co_firstlineno


def _global_names(code: types.CodeType) -> list[tuple[str, int]]:
    """The global names the code reads or writes, each with the first line that does."""
    found: dict[str, int] = {}
    for c in _codes(code):
        for ins in dis.get_instructions(c):
            if ins.opname in _GLOBAL_OPS and isinstance(ins.argval, str):
                found.setdefault(ins.argval, _line(ins, c))
    return sorted(found.items())


def _import_ops(code: types.CodeType) -> Iterator[tuple[str, tuple[str, ...], int, int]]:
    """The code's own import statements: (module, fromlist, level, line)."""
    for c in _codes(code):
        consts: list[object] = []
        for ins in dis.get_instructions(c):
            if ins.opname == "LOAD_CONST":
                consts = [*consts[-1:], ins.argval]
            elif ins.opname == "IMPORT_NAME" and len(consts) == 2:
                level, fromlist = consts
                names = tuple(fromlist) if isinstance(fromlist, tuple) else ()
                lvl = level if isinstance(level, int) else 0
                yield str(ins.argval), tuple(str(n) for n in names), lvl, _line(ins, c)
                consts = []
            else:
                consts = []


def _flatten(pairs: Iterable[tuple[object, object]]) -> Iterator[object]:
    for key, value in pairs:
        yield key
        yield value


def _slots(kind: type) -> list[str]:
    names: list[str] = []
    for klass in kind.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if isinstance(name, str) and name not in ("__dict__", "__weakref__"):
                names.append(name)
    return names


def _safe(get: Any) -> Any:
    """An attribute of a foreign object, or None when reading it raises (proxies, lazy state)."""
    try:
        return get()
    except Exception:
        return None


def _system_dirs() -> tuple[str, ...]:
    """Where this interpreter keeps the stdlib and installed packages: modules there are not
    local code, and their directories must not shadow the target interpreter's."""
    dirs = {sysconfig.get_path(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs.update(site.getsitepackages())
    dirs.add(site.getusersitepackages())
    return tuple(os.path.realpath(d) + os.sep for d in dirs if d) + tuple(
        os.path.abspath(d) + os.sep for d in dirs if d
    )


def _import_root(path: str, module: str) -> str | None:
    """The sys.path entry ``module`` (defined in ``path``) is imported from."""
    parts = module.split(".")
    here = os.path.dirname(os.path.abspath(path))
    up = len(parts) if os.path.basename(path).startswith("__init__.") else len(parts) - 1
    for _ in range(up):
        here = os.path.dirname(here)
    return here if os.path.isdir(here) else None


__all__ = [
    "ROOT_NAME",
    "Reach",
    "Reference",
    "analyze_objects",
    "find_references",
    "relabel",
    "write_root",
]
