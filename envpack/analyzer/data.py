"""Data files local code opens: where the code names them, and where they are on this machine.

Detection reads one local file's AST (``scan``), in the marshal-able form the parse cache keeps:
``(relpath, anchor, line)`` with anchor ``"file"`` (relative to the file's directory only) or
``"either"`` (the file's directory, then the cwd). Blocks that never run on a worker
(``if __name__ == "__main__":``, ``if TYPE_CHECKING:``) name no data.

Resolution (``resolve``) finds each reference on this machine and says where it must be at
run time; ``data_tree`` expands a directory into its files.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

DataRef = tuple[str, str, int]

# Callables whose first argument is a path to read: open(), pathlib, numpy/pandas/uproot
# readers, correctionlib's CorrectionSet.from_file, h5py.File, coffea's LumiMask.
_DATA_FUNCS = frozenset(
    {
        "open",
        "Path",
        "PurePath",
        "PosixPath",
        "from_file",
        "load",
        "loadtxt",
        "genfromtxt",
        "fromfile",
        "read_csv",
        "read_json",
        "read_parquet",
        "read_pickle",
        "read_hdf",
        "read_table",
        "read_feather",
        "File",
        "LumiMask",
        "ZipFile",
        "TarFile",
    }
)


@dataclass(frozen=True)
class DataFile:
    """A file or directory that local code opens by a literal relative path."""

    path: str  # absolute, on this machine
    relpath: str  # as written in the code
    # What relpath is relative to at run time: the referencing module's directory (written
    # as ``Path(__file__).parent / …``), or the working directory (a bare literal path).
    base: Literal["file", "cwd"]
    site: str
    is_dir: bool
    # Where it must be at run time, relative to the root local modules are imported from
    # (which is also the job's working directory): relpath, or the module's package dir + relpath.
    arcname: str = ""


# -- detection ------------------------------------------------------------------------------
def scan(tree: ast.Module) -> tuple[DataRef, ...]:
    """The data references of one local module, in source order of discovery."""
    scanner = _Scanner()
    scanner.body(tree.body)
    return tuple(scanner.refs)


class _Scanner:
    def __init__(self) -> None:
        self.refs: list[DataRef] = []

    def body(self, stmts: list[ast.stmt]) -> None:
        for stmt in stmts:
            self.stmt(stmt)

    def stmt(self, node: ast.stmt) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            return
        if isinstance(node, ast.If):
            self.exprs([node.test])
            if not _never_runs(node.test):
                self.body(node.body)
            self.body(node.orelse)
        elif isinstance(node, ast.Try | ast.TryStar):
            self.body(node.body)
            for handler in node.handlers:
                self.body(handler.body)
            self.body(node.orelse)
            self.body(node.finalbody)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            self.exprs(node.decorator_list)
            self.exprs([*node.args.defaults, *(d for d in node.args.kw_defaults if d)])
            self.body(node.body)
        elif isinstance(node, ast.ClassDef):
            self.exprs([*node.decorator_list, *node.bases, *(k.value for k in node.keywords)])
            self.body(node.body)
        elif isinstance(node, ast.For | ast.AsyncFor):
            self.exprs([node.iter])
            self.body(node.body)
            self.body(node.orelse)
        elif isinstance(node, ast.While):
            self.exprs([node.test])
            self.body(node.body)
            self.body(node.orelse)
        elif isinstance(node, ast.With | ast.AsyncWith):
            self.exprs([item.context_expr for item in node.items])
            self.body(node.body)
        elif isinstance(node, ast.Match):
            self.exprs([node.subject])
            for case in node.cases:
                self.body(case.body)
        else:
            self.exprs([node])

    def exprs(self, nodes: Sequence[ast.AST]) -> None:
        stack = list(nodes)
        consumed: set[int] = set()
        while stack:
            node = stack.pop()
            if isinstance(node, ast.Lambda):
                continue
            if isinstance(node, ast.Call):
                self.call(node, consumed)
            elif isinstance(node, ast.BinOp) and id(node) not in consumed:
                joined = path_div(node, consumed)
                if joined is not None:
                    self.refs.append((joined[0], joined[1], node.lineno))
            stack.extend(ast.iter_child_nodes(node))

    def call(self, node: ast.Call, consumed: set[int]) -> None:
        if id(node) in consumed:
            return
        name = _callee(node)
        if name == "join":
            ref = path_expr(node)
            if ref is not None and ref[1] == "file":  # os.path.join(os.path.dirname(__file__), …)
                self.refs.append((ref[0], ref[1], node.lineno))
        if name in _DATA_FUNCS and node.args:
            ref = path_expr(node.args[0])
            if ref is not None:
                self.refs.append((ref[0], ref[1], node.lineno))
        elif name == "add_weight_sets" and node.args:
            # coffea extractor: "local_name hist_name path/to/file.root" entries.
            for entry in _str_seq(node.args[0]) or ():
                parts = entry.split()
                if parts:
                    self.refs.append((parts[-1], "either", node.lineno))


def path_expr(node: ast.expr) -> tuple[str, str] | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return (node.value, "either") if node.value else None
    if isinstance(node, ast.Call):
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "join"
            and _dotted(func.value) in ("os.path", "path", "osp")
            and node.args
        ):
            first = node.args[0]
            parts = [_str(a) for a in node.args[1:]]
            if any(p is None for p in parts):
                return None
            rest = "/".join(p for p in parts if p)
            if _is_file_dir(first):
                return (rest, "file") if rest else None
            head = _str(first)
            if head is None:
                return None
            return ("/".join(p for p in (head, rest) if p), "either")
    return None


def path_div(node: ast.BinOp, consumed: set[int]) -> tuple[str, str] | None:
    """``Path("a") / "b"`` and ``Path(__file__).parent / "b"`` chains of literals."""
    parts: list[str] = []
    cur: ast.expr = node
    inner: list[ast.AST] = []
    while isinstance(cur, ast.BinOp) and isinstance(cur.op, ast.Div):
        piece = _str(cur.right)
        if piece is None:
            return None
        parts.append(piece)
        inner.append(cur)
        cur = cur.left
    parts.reverse()
    if _is_file_dir(cur):
        anchor = "file"
    elif (
        isinstance(cur, ast.Call)
        and _callee(cur) in ("Path", "PurePath", "PosixPath")
        and len(cur.args) == 1
        and _str(cur.args[0]) is not None
    ):
        parts.insert(0, _str(cur.args[0]) or "")
        anchor = "either"
        inner.append(cur)
    else:
        return None
    consumed.update(id(n) for n in inner)
    rel = "/".join(p for p in parts if p)
    return (rel, anchor) if rel else None


def _never_runs(test: ast.expr) -> bool:
    """``__name__ == "__main__"`` or ``TYPE_CHECKING``: a body no worker runs."""
    if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
        return True
    if isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING":
        return True
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
        left, right = test.left, test.comparators[0]
        return (_dotted(left) == "__name__" and _str(right) == "__main__") or (
            _str(left) == "__main__" and _dotted(right) == "__name__"
        )
    return False


def _is_file_dir(node: ast.AST) -> bool:
    """``os.path.dirname(__file__)`` (optionally of abspath/realpath), ``Path(__file__).parent``."""
    if isinstance(node, ast.Call) and _dotted(node.func) in ("os.path.dirname", "path.dirname"):
        if len(node.args) != 1:
            return False
        arg = node.args[0]
        if isinstance(arg, ast.Call) and _dotted(arg.func) in (
            "os.path.abspath",
            "os.path.realpath",
        ):
            arg = arg.args[0] if arg.args else arg
        return isinstance(arg, ast.Name) and arg.id == "__file__"
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        inner = node.value
        if (
            isinstance(inner, ast.Call)
            and isinstance(inner.func, ast.Attribute)
            and inner.func.attr in ("resolve", "absolute")
            and not inner.args
        ):
            inner = inner.func.value
        return (
            isinstance(inner, ast.Call)
            and _callee(inner) in ("Path", "PurePath", "PosixPath")
            and len(inner.args) == 1
            and isinstance(inner.args[0], ast.Name)
            and inner.args[0].id == "__file__"
        )
    return False


# Small AST readers; _sites.py has its own for the import walk, so either module can change
# without the other.
def _dotted(node: ast.AST) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _callee(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _str(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _str_seq(node: ast.AST) -> tuple[str, ...] | None:
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        out = tuple(_str(e) for e in node.elts)
        if all(s is not None for s in out):
            return tuple(s for s in out if s is not None)
    return None


# -- resolution -----------------------------------------------------------------------------
def resolve(
    module_file: str,
    package: list[str],
    refs: tuple[DataRef, ...],
    workdirs: list[str],
    found: dict[tuple[str, str], DataFile],
) -> None:
    """Add to ``found`` the references of one module that exist on this machine.

    A bare literal path resolves against the job's working directory; on this machine it is
    looked for next to the file and in ``workdirs`` (the current directory, the processors').
    """
    here = os.path.dirname(module_file)
    for rel, anchor, line in refs:
        if not rel or os.path.isabs(rel) or "://" in rel:
            continue
        base: Literal["file", "cwd"] = "file" if anchor == "file" else "cwd"
        for directory in [here] if base == "file" else [here, *workdirs]:
            full = os.path.normpath(os.path.join(directory, rel))
            if os.path.exists(full) and full != module_file:
                where = f"{module_file}:{line}"
                arc = os.path.normpath(os.path.join(*package, rel) if base == "file" else rel)
                key = (full, rel)
                if key not in found:
                    found[key] = DataFile(
                        full, rel, base, where, os.path.isdir(full), arc.replace(os.sep, "/")
                    )
                break


def data_tree(path: str, relpath: str, is_dir: bool) -> list[tuple[str, str]]:
    """A data file as (source, arcname); a directory as every file under it, in sorted order."""
    rel = os.path.normpath(relpath)
    if not is_dir:
        return [(path, rel)]
    out: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            out.append((full, os.path.join(rel, os.path.relpath(full, path))))
    return out


__all__ = ["DataFile", "DataRef", "data_tree", "resolve", "scan"]
