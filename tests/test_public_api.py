"""The public namespaces export what they say, documented, and nothing private.

As trio's test_exports does, the public modules are found by walking the packages, not
listed: a module is public when no part of its dotted name starts with an underscore.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import typing
from pathlib import Path

import pytest

import harness
import netem


def _public_modules() -> list[str]:
    found = []
    for package in (harness, netem):
        found.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            parts = info.name.split(".")
            if not any(p.startswith("_") for p in parts):
                found.append(info.name)
    return sorted(found)


PUBLIC = _public_modules()


def test_the_walk_finds_the_namespaces_we_document() -> None:
    expected = {"harness", "harness.sdk", "harness.sync", "harness.plans", "harness.runners",
                "harness.observe", "harness.faults", "netem", "netem.topology"}
    assert expected <= set(PUBLIC), f"not found by the walk: {expected - set(PUBLIC)}"


@pytest.mark.parametrize("name", PUBLIC)
def test_exports_exist_are_public_and_documented(name: str) -> None:
    module = importlib.import_module(name)
    assert (module.__doc__ or "").strip(), f"{name} has no docstring"
    exported = getattr(module, "__all__", None)
    assert exported, f"{name} has no __all__"
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"
    for attr in exported:
        assert not attr.startswith("_"), f"{name} exports private {attr}"
        value = getattr(module, attr)  # AttributeError: exported but missing
        alias = typing.get_origin(value) is not None  # e.g. Callable[...]: no docstring
        if callable(value) and not alias and not inspect.ismodule(value):
            assert (getattr(value, "__doc__", None) or "").strip(), f"{name}.{attr} has no docstring"


@pytest.mark.parametrize("name", PUBLIC)
def test_type_checkers_see_every_export(name: str) -> None:
    """A name served by a lazy `__getattr__` exists at runtime only; the type checkers see
    it only if the module also imports it under `if TYPE_CHECKING:` (or at top level)."""
    module = importlib.import_module(name)
    source = Path(inspect.getfile(module)).read_text()
    static = _names_bound_at_top_level(ast.parse(source))
    unseen = sorted(set(module.__all__) - static)
    assert not unseen, f"{name} exports names the type checkers cannot see: {unseen}"


def _names_bound_at_top_level(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    body = list(tree.body)
    while body:
        node = body.pop(0)
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` and the like
            body[:0] = node.body + node.orelse
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


@pytest.mark.parametrize("name", PUBLIC)
def test_each_export_has_one_home(name: str) -> None:
    """Whatever a namespace exports is also exported by its home: the nearest public package
    above the module that defines it. A convenience re-export (harness.sdk.LinkShape) is
    fine; a name reachable only through someone else's namespace is not."""
    module = importlib.import_module(name)
    for attr in module.__all__:
        value = getattr(module, attr)
        defined_in = getattr(value, "__module__", None)
        if not isinstance(defined_in, str) or not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        if not defined_in.startswith(("harness", "netem")):
            continue
        home = _home(defined_in)
        if home == name:
            continue
        home_module = importlib.import_module(home)
        assert getattr(home_module, attr, None) is value and attr in home_module.__all__, (
            f"{name}.{attr} is defined in {defined_in}, but its home {home} does not export it")


def _home(module: str) -> str:
    parts = module.split(".")
    while any(p.startswith("_") for p in parts):
        parts.pop()
    return ".".join(parts)


def test_netem_imports_nothing_from_harness() -> None:
    import subprocess
    import sys

    code = "import sys, netem, netem.topology; print(any(m.startswith('harness') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_sdk_metrics_do_not_import_the_report() -> None:
    """`env.metrics` imports harness.observe in every instance that records one: that must
    not pull in the report and the trace analysis (~180 ms of CPU each; 200 instances on
    2 cores stalled pings for 10 s)."""
    import subprocess
    import sys

    code = (
        "import sys, harness.sdk; from harness.observe import Metrics; "
        "print(sorted(m for m in sys.modules if m.startswith('harness.observe.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "['harness.observe._jsonl', 'harness.observe._logging', 'harness.observe._metrics']")
