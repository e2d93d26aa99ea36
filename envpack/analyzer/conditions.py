"""The condition language of import sites: read from the AST, evaluated for a target.

An import under ``if sys.platform == "win32":`` runs on some targets and not on others; the
site extractor (_sites.py) records each guard as a condition in the marshal-able form below, and
the walk (imports.py) evaluates it for the target interpreter. Both halves live here, so the
language has one definition.

- ``("tc",)`` TYPE_CHECKING; ``("main",)`` ``__name__ == "__main__"``;
- ``("ver", op, rhs, sub)`` a ``sys.version_info`` comparison (``sub``: ``("all", 0)``,
  ``("slice", n)`` or ``("idx", n)``);
- ``("plat", op, rhs)`` ``sys.platform``, ``("platsw", prefixes)`` ``sys.platform.startswith``,
  ``("osname", op, rhs)`` ``os.name``, ``("platsys", op, rhs)`` ``platform.system()``;
- ``("spec", name)`` ``importlib.util.find_spec("name")`` (true when it resolves);
- ``("flag", module, level, name)`` a name the module imports (``from ._common import
  WINDOWS``, ``_common.WINDOWS``): the condition that module binds it to, evaluated there;
- ``("const", bool)``; ``("fail", gid)`` (the ``try`` body ``gid`` had an import that did not
  resolve); ``("and", …)``, ``("or", …)``, ``("not", c)``; ``("?",)`` anything else.

The evaluator answers True, False or None (cannot tell: a run-time condition).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from typing import Any

Cond = tuple[Any, ...]
Guard = tuple[Cond, bool]

UNKNOWN: Cond = ("?",)

_CMP_OPS: dict[type[ast.cmpop], str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
}


# -- reading conditions from the AST -------------------------------------------------------------
def condition(node: ast.expr, flags: Callable[[str], Cond]) -> Cond:
    """The condition ``node`` tests; ``flags`` gives what a (dotted) name of the module means."""
    if isinstance(node, ast.BoolOp):
        op = "and" if isinstance(node.op, ast.And) else "or"
        return (op, *(condition(v, flags) for v in node.values))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return ("not", condition(node.operand, flags))
    if isinstance(node, ast.Name):
        if node.id == "TYPE_CHECKING":
            return ("tc",)
        return flags(node.id)
    if isinstance(node, ast.Attribute):
        if node.attr == "TYPE_CHECKING":
            return ("tc",)
        name = dotted(node)
        return flags(name) if name is not None else UNKNOWN
    if isinstance(node, ast.Constant) and isinstance(node.value, bool | int):
        return ("const", bool(node.value))
    if isinstance(node, ast.Call):
        func = node.func
        spec = _spec_probe(node)
        if spec is not None:
            return ("spec", spec)
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "startswith"
            and dotted(func.value) == "sys.platform"
            and len(node.args) == 1
        ):
            arg = node.args[0]
            prefixes = str_seq(arg) if isinstance(arg, ast.Tuple) else None
            single = const_str(arg)
            if single is not None:
                prefixes = (single,)
            if prefixes is not None:
                return ("platsw", prefixes)
        return UNKNOWN
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        return _compare_cond(node.left, node.ops[0], node.comparators[0])
    return UNKNOWN


def _compare_cond(left: ast.expr, op: ast.cmpop, right: ast.expr) -> Cond:
    if (
        isinstance(op, ast.Is | ast.IsNot)
        and isinstance(right, ast.Constant)
        and right.value is None
        and isinstance(left, ast.Call)
    ):
        spec = _spec_probe(left)
        if spec is not None:
            return ("spec", spec) if isinstance(op, ast.IsNot) else ("not", ("spec", spec))
    sym = _CMP_OPS.get(type(op))
    if sym is None:
        return UNKNOWN
    lname = dotted(left)
    if lname == "__name__" and const_str(right) == "__main__" and sym in ("==", "!="):
        return ("main",) if sym == "==" else ("not", ("main",))
    if const_str(left) == "__main__" and dotted(right) == "__name__" and sym in ("==", "!="):
        return ("main",) if sym == "==" else ("not", ("main",))
    ver = _version_ref(left)
    if ver is not None:
        rhs = _int_tuple(right)
        if rhs is not None and sym not in ("in", "not in"):
            return ("ver", sym, rhs, ver)
        return UNKNOWN
    kind = {"sys.platform": "plat", "os.name": "osname"}.get(lname or "")
    if (
        kind is None
        and isinstance(left, ast.Call)
        and not left.args
        and dotted(left.func) in ("platform.system", "_platform.system")
    ):
        kind = "platsys"
    if kind is None:
        return UNKNOWN
    if sym in ("in", "not in"):
        seq = str_seq(right)
        return (kind, sym, seq) if seq is not None else UNKNOWN
    rhs_s = const_str(right)
    if rhs_s is None or sym not in ("==", "!="):
        return UNKNOWN
    return (kind, sym, rhs_s)


def never_runs(guards: tuple[Guard, ...]) -> bool:
    """Under ``if __name__ == "__main__":`` or ``if TYPE_CHECKING:`` (for every target)."""
    return any(want and cond[0] in ("main", "tc") for cond, want in guards)


def _spec_probe(node: ast.Call) -> str | None:
    """``importlib.util.find_spec("x")`` (or ``find_spec``/``pkgutil.find_loader``): ``"x"``."""
    name = dotted(node.func) or ""
    if name.rsplit(".", 1)[-1] not in ("find_spec", "find_loader") or len(node.args) != 1:
        return None
    return const_str(node.args[0])


def _int_tuple(node: ast.AST) -> tuple[int, ...] | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return (node.value,)
    if isinstance(node, ast.Tuple):
        vals = [e.value for e in node.elts if isinstance(e, ast.Constant)]
        ints = [v for v in vals if isinstance(v, int) and not isinstance(v, bool)]
        if len(ints) == len(node.elts):
            return tuple(ints)
    return None


def _version_ref(node: ast.AST) -> tuple[str, int] | None:
    """``sys.version_info`` (full), ``[:n]`` (slice), ``[n]`` / ``.major`` (index)."""
    if dotted(node) == "sys.version_info":
        return ("all", 0)
    if isinstance(node, ast.Attribute) and dotted(node.value) == "sys.version_info":
        idx = {"major": 0, "minor": 1, "micro": 2}.get(node.attr)
        return ("idx", idx) if idx is not None else None
    if isinstance(node, ast.Subscript) and dotted(node.value) == "sys.version_info":
        sl = node.slice
        if isinstance(sl, ast.Constant) and isinstance(sl.value, int):
            return ("idx", sl.value)
        if (
            isinstance(sl, ast.Slice)
            and sl.lower is None
            and sl.step is None
            and isinstance(sl.upper, ast.Constant)
            and isinstance(sl.upper.value, int)
        ):
            return ("slice", sl.upper.value)
    return None


# -- the AST vocabulary conditions are written in (shared with the site extractor) ---------------
def dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def callee(node: ast.Call) -> str:
    """The name a call is made through: ``f`` of ``f(…)`` and of ``a.b.f(…)``."""
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def const_str(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def str_seq(node: ast.AST) -> tuple[str, ...] | None:
    """A list, tuple or set literal of strings."""
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        out = tuple(const_str(e) for e in node.elts)
        if all(s is not None for s in out):
            return tuple(s for s in out if s is not None)
    return None


# -- evaluating conditions for a target ----------------------------------------------------------
# (the module evaluating, flag's module, its level, its name) -> (the flag's condition, the module
# that defines it), or None when that module or name is not known.
FlagLookup = Callable[[str, str, int, str], "tuple[Cond, str] | None"]
_MAX_FLAG_DEPTH = 8  # re-exports followed: ``psutil`` -> ``psutil._common`` -> …


class Evaluator:
    """Conditions evaluated for one target: its platform and version, and what it can import."""

    def __init__(
        self,
        platform: str,
        version_info: tuple[int, ...],
        resolves: Callable[[str], bool],
        flag: FlagLookup | None = None,
    ) -> None:
        self.platform = platform
        self.version_info = version_info
        self.resolves = resolves  # a top-level module name -> whether the target finds it
        self.flag = flag

    def live(
        self, guards: tuple[Guard, ...], fails: Mapping[int, bool | None], here: str = ""
    ) -> bool | None:
        """False: dead for the target; True: runs; None: runs unless an unknown test fails.

        ``here`` is the module the guards are in (for the flags it imports).
        """
        certain = True
        for cond, want in guards:
            value = self.value(cond, fails, here)
            if value is None:
                certain = False
            elif value != want:
                return False
        return True if certain else None

    def value(
        self, cond: Cond, fails: Mapping[int, bool | None], here: str = "", depth: int = 0
    ) -> bool | None:
        tag = cond[0]
        if tag == "tc" or tag == "main":
            return False
        if tag == "const":
            return bool(cond[1])
        if tag == "fail":
            failed: bool | None = fails.get(cond[1])
            return failed
        if tag == "not":
            inner = self.value(cond[1], fails, here, depth)
            return None if inner is None else not inner
        if tag in ("and", "or"):
            values = [self.value(c, fails, here, depth) for c in cond[1:]]
            if tag == "and":
                if False in values:
                    return False
                return True if all(v is True for v in values) else None
            if True in values:
                return True
            return False if all(v is False for v in values) else None
        if tag == "ver":
            _, op, rhs, (sub, n) = cond
            vi = self.version_info
            lhs: tuple[int, ...] | int
            if sub == "all":
                lhs = vi
            elif sub == "slice":
                lhs = vi[:n]
            else:
                if n >= len(vi):
                    return None
                lhs = vi[n]
                if len(rhs) != 1:
                    return None
                rhs = rhs[0]
            return _compare(lhs, op, rhs)
        if tag == "flag":
            if self.flag is None or depth >= _MAX_FLAG_DEPTH:
                return None
            found = self.flag(here, cond[1], cond[2], cond[3])
            if found is None:
                return None
            return self.value(found[0], {}, found[1], depth + 1)
        if tag == "spec":
            top = str(cond[1]).lstrip(".").split(".")[0]
            if not top or top != cond[1].split(".")[0]:
                return None
            return self.resolves(top)
        if tag == "platsw":
            return self.platform.startswith(tuple(cond[1]))
        if tag in ("plat", "osname", "platsys"):
            value = {
                "plat": self.platform,
                "osname": "nt" if self.platform == "win32" else "posix",
                "platsys": {"win32": "Windows", "darwin": "Darwin", "linux": "Linux"}.get(
                    self.platform, ""
                ),
            }[tag]
            if tag == "platsys" and not value:
                return None
            _, op, rhs = cond
            if op == "in":
                return value in tuple(rhs)
            if op == "not in":
                return value not in tuple(rhs)
            return (value == str(rhs)) if op == "==" else (value != str(rhs))
        return None


def _compare(lhs: Any, op: str, rhs: Any) -> bool | None:
    try:
        if op == "==":
            return bool(lhs == rhs)
        if op == "!=":
            return bool(lhs != rhs)
        if op == "<":
            return bool(lhs < rhs)
        if op == "<=":
            return bool(lhs <= rhs)
        if op == ">":
            return bool(lhs > rhs)
        if op == ">=":
            return bool(lhs >= rhs)
    except TypeError:
        return None
    return None


__all__ = [
    "UNKNOWN",
    "Cond",
    "Evaluator",
    "FlagLookup",
    "Guard",
    "condition",
    "const_str",
    "dotted",
    "never_runs",
    "str_seq",
]
