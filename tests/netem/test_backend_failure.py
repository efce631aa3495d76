"""A backend that stops shaping on its own is reported and recorded once; replay passes."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import netem
from netem import BackendFailure, NullBackend, UserspaceBackend


class _Dying(NullBackend):
    status: int | None = None

    def failure(self) -> BackendFailure | None:
        if self.status is None:
            return None
        return BackendFailure("userspace", "the userspace shaping engine", 7, self.status,
                              "links pass unshaped")


def test_a_backend_failure_is_recorded_once_and_replay_passes_over_it(tmp_path: Path) -> None:
    record = tmp_path / "network.jsonl"
    backend = _Dying()
    with netem.Network(backend=backend, record=record, dry_run=True) as net:
        net.build(2)
        assert net.backend_failure() is None
        backend.status = -9
        found = net.backend_failure()
        assert found is not None and found.describe() == "the userspace shaping engine died (SIGKILL)"
        assert net.backend_failure() == found  # still failed, not recorded again
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    (failed,) = [line for line in lines if line["op"] == "backend-failed"]
    assert failed["applied"] == {
        "backend": "userspace", "component": "the userspace shaping engine", "pid": 7,
        "status": -9, "signal": "SIGKILL", "effect": "links pass unshaped",
        "message": "the userspace shaping engine died (SIGKILL)",
    }
    netem.replay(record, dry_run=True).close()


def test_the_userspace_backend_reports_its_engine_ending_on_its_own() -> None:
    backend = UserspaceBackend()
    assert backend.failure() is None  # no engine yet
    engine = SimpleNamespace(pid=42, status=None)
    engine.exit_status = lambda: engine.status
    backend._engine = engine  # type: ignore[assignment]
    assert backend.failure() is None  # it runs
    engine.status = 3
    failure = backend.failure()
    assert failure is not None and failure.pid == 42
    assert failure.describe() == "the userspace shaping engine died (exit code 3)"


class _Noting(NullBackend):
    said: tuple[str, ...] = ()

    def notes(self) -> tuple[str, ...]:
        return self.said


def test_a_backend_note_is_recorded_once_and_replay_passes_over_it(tmp_path: Path) -> None:
    record = tmp_path / "network.jsonl"
    backend = _Noting()
    with netem.Network(backend=backend, record=record, dry_run=True) as net:
        net.build(2)
        assert net.backend_notes() == ()
        backend.said = ("slower engine: no compiler",)
        assert net.backend_notes() == ("slower engine: no compiler",)
        assert net.backend_notes() == ("slower engine: no compiler",)  # not recorded again
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    (noted,) = [line for line in lines if line["op"] == "backend-note"]
    assert noted["applied"] == {"backend": "none", "message": "slower engine: no compiler"}
    netem.replay(record, dry_run=True).close()


def test_the_userspace_backend_notes_a_fallback_to_its_python_engine_and_why() -> None:
    backend = UserspaceBackend()
    assert backend.notes() == ()  # no engine yet
    engine = SimpleNamespace(implementation="c", fallback_reason=None)
    backend._engine = engine  # type: ignore[assignment]
    assert backend.notes() == ()
    engine.implementation = "python"
    assert backend.notes() == ()  # asked for by name: not a fallback
    engine.fallback_reason = "no C compiler ('cc') found: install gcc"
    (note,) = backend.notes()
    assert note.startswith("shaping ran on the userspace engine's Python fallback")
    assert note.endswith(": no C compiler ('cc') found: install gcc")
