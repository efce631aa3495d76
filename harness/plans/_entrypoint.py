"""Checking a case's `entrypoint = "package.module:function"` before a run starts.

The check reads, it does not import: the module is located with the path finder over the
instances' own import path (without executing any package's `__init__`), and its source is
parsed for a module-level binding of the function's name. So a missing module or function,
or a syntax error, is a one-line error before anything is created, and the supervisor never
runs plan code. What cannot be decided from the source (a star import, a module
`__getattr__`, `globals()` or `setattr` games, a compiled module) is accepted and left to
the import in the process host, which reports its own failure.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path

_UNDECIDABLE_CALLS = frozenset({"globals", "setattr", "exec", "vars"})


def project_root() -> Path:
    """The directory holding the `harness` package (an instance's working directory)."""
    return Path(__file__).resolve().parents[2]


def import_roots(plan_dir: Path) -> list[Path]:
    """Where an instance's Python finds plan code, before its own PYTHONPATH: the plan's
    parent (`<plan>.module`), its grandparent (`scenarios.<plan>.module`), the project.
    Absolute: a program runs in its outputs directory, not where `--plans` was relative to."""
    plan_dir = plan_dir.resolve()
    return [plan_dir.parent, plan_dir.parent.parent, project_root()]


def shadowed_module(plan_dir: Path) -> str | None:
    """Why an instance of the plan in `plan_dir` would import plan code for a standard
    module (its import roots come before the standard library): the first package or .py
    file in them named like one; None if there is none."""
    for root in import_roots(plan_dir)[:2]:  # the project's own names are known
        try:
            entries = sorted(os.scandir(root), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.name.endswith(".py") and entry.is_file():
                name = entry.name.removesuffix(".py")
            elif entry.is_dir() and os.path.isfile(os.path.join(entry.path, "__init__.py")):
                name = entry.name
            else:
                continue
            if name in sys.stdlib_module_names:
                return (f"{entry.path} would be imported as Python's standard module "
                        f"{name!r} in every instance ({root} is on their import path, "
                        f"ahead of the standard library): rename it")
    return None


def instance_path(plan_dir: Path) -> list[str]:
    """The whole import path of an instance (`python -m` puts its working directory first),
    with the PYTHONPATH it inherits and this interpreter's own entries."""
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    paths = [project_root(), *import_roots(plan_dir), *extra, *(p for p in sys.path if p)]
    return list(dict.fromkeys(str(p) for p in paths))


def entrypoint_problem(
    entrypoint: str, path: Sequence[str], what: str = "entrypoint"
) -> str | None:
    """Why `entrypoint` cannot be loaded from `path`, or None if it can (or may); the
    message calls it `what` (a case's `check` is found the same way)."""
    module, _, function = entrypoint.partition(":")
    if not all(p.isidentifier() for p in module.split(".")) or not function.isidentifier():
        return f"{what} {entrypoint!r} is not 'package.module:function'"
    spec = _locate(module, path)
    if spec is None:
        return f"{what} {entrypoint!r}: no module {module} on the plan's import path"
    origin = spec.origin
    if not origin or not origin.endswith(".py"):
        return None  # compiled or namespace package: only importing it would tell
    try:
        tree = ast.parse(Path(origin).read_bytes(), origin)
    except SyntaxError as e:
        return f"{what} {entrypoint!r}: {origin}, line {e.lineno}: {e.msg}"
    except (OSError, ValueError):
        return None  # unreadable here: leave it to the import
    found = _Bindings()
    found.visit(tree)
    if function in found.names or found.undecidable:
        return None
    return f"{what} {entrypoint!r}: {module} ({origin}) defines no {function!r}"


def _locate(module: str, path: Sequence[str]) -> ModuleSpec | None:
    """The module's spec, found part by part without executing any package's code."""
    parts = module.split(".")
    search: list[str] | None = list(path)
    spec = None
    for i in range(len(parts)):
        if search is None:
            return None  # the parent is a module, not a package
        # Each part is looked up by its own name in its parent's directories: under a
        # dotted name the path finder would look the parent up in sys.modules (a namespace
        # package), and nothing here is imported.
        spec = PathFinder.find_spec(parts[i], search)
        if spec is None and i == 0:
            # an import hook (an editable install's finder, say); for a top-level name
            # find_spec runs the finders only and imports nothing
            spec = importlib.util.find_spec(parts[0])
        if spec is None:
            return None
        locations = spec.submodule_search_locations
        search = list(locations) if locations is not None else None
    return spec


class _Bindings(ast.NodeVisitor):
    """The names a module binds at its top level (in any block, not inside functions)."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.undecidable = False

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.names.add(node.name)
        self.undecidable |= node.name == "__getattr__"  # a module __getattr__ (PEP 562)
        self._globals(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.visit_FunctionDef(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.names.add(node.name)
        self._globals(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        pass

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name == "*":
                self.undecidable = True
            self.names.add(alias.asname or alias.name.partition(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.visit_Import(node)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store):
            self.names.add(node.id)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id in _UNDECIDABLE_CALLS:
            self.undecidable = True
        self.generic_visit(node)

    def _globals(self, node: ast.AST) -> None:
        """Inside a function or class body nothing binds at the top level, except a `global`
        statement, or `globals()`/`setattr` (which make the answer undecidable)."""
        for sub in ast.walk(node):
            if isinstance(sub, ast.Global):
                self.names.update(sub.names)
            elif isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name):
                self.undecidable |= sub.func.id in _UNDECIDABLE_CALLS
