"""The public namespaces export what they say, documented, and nothing private."""

from __future__ import annotations

import importlib
import typing

import pytest

PACKAGES = ["harness", "harness.sdk", "harness.sync", "harness.plans", "harness.runners",
            "harness.observe", "harness.faults", "netem", "netem.topology"]


@pytest.mark.parametrize("name", PACKAGES)
def test_exports_exist_are_public_and_documented(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported, f"{name} has no __all__"
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"
    for attr in exported:
        assert not attr.startswith("_"), f"{name} exports private {attr}"
        value = getattr(module, attr)  # AttributeError: exported but missing
        alias = typing.get_origin(value) is not None  # e.g. Callable[...]: no docstring
        if callable(value) and not alias and not isinstance(value, type(importlib)):
            assert (getattr(value, "__doc__", None) or "").strip(), f"{name}.{attr} has no docstring"


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
    assert out.stdout.strip() == "['harness.observe._jsonl', 'harness.observe._metrics']"
