"""Each contract between the supervisor's side and the instances' side has one home."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from harness.sync import _protocol

HARNESS = Path(__file__).resolve().parent.parent / "harness"


def test_the_supervisor_and_the_runners_do_not_import_the_sdk() -> None:
    code = (
        "import sys, harness._supervisor, harness.runners._exec, harness.runners._netns; "
        "print(sorted(m for m in sys.modules if m.startswith('harness.sdk')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_harness_names_its_states_and_topics_in_the_protocol_only() -> None:
    names = {_protocol.NETWORK_INITIALIZED, _protocol.METRICS_TOPIC}
    spelt: list[str] = []
    for path in sorted(HARNESS.rglob("*.py")):
        if path == Path(_protocol.__file__):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                spelt.append(f"{path.relative_to(HARNESS)}:{node.lineno}: {node.value}")
    assert spelt == []


def test_the_sdk_and_the_runners_use_the_protocols_names() -> None:
    from harness import sdk, sync

    assert sdk.INITIALIZED == sync.NETWORK_INITIALIZED == "network-initialized"
    assert _protocol.METRICS_TOPIC.startswith(_protocol.HARNESS_TOPIC_PREFIX)
    assert _protocol.FAILING_EVENTS < _protocol.OUTCOME_EVENTS <= _protocol.EVENT_TYPES
    assert _protocol.encode({"type": sync.EventType.CRASH}) == b'{"type":"crash"}\n'
