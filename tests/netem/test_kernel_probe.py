"""The capability probes: real trials in throw-away namespaces, cached, leaving nothing."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

import netem
from netem import _probe


def _kernel_has_netem_module() -> bool:
    """An independent answer: sch_netem is loaded, or modprobe could load it."""
    if Path("/sys/module/sch_netem").exists():
        return True
    dry = subprocess.run(["modprobe", "-n", "-q", "sch_netem"], capture_output=True, check=False)
    return dry.returncode == 0


def test_probes_agree_with_the_kernel_and_leave_nothing(
    host_state: Callable[[], dict[str, str]],
) -> None:
    before = host_state()
    _probe.probe_sch_netem.cache_clear()
    results = {p.name: p for p in netem.probe_all()}
    assert set(results) == {"sch_netem", "htb+u32", "tbf", "nfqueue"}
    assert netem.has_sch_netem() == results["sch_netem"].ok == _kernel_has_netem_module()
    if not results["sch_netem"].ok:
        assert results["sch_netem"].detail  # says why, in one line
        assert "\n" not in results["sch_netem"].detail
    # the project's baseline kernel has these; the userspace backend relies on them
    assert results["htb+u32"].ok and results["nfqueue"].ok, results
    assert host_state() == before  # (the probes' namespaces are unshared, never named)


def test_answers_are_cached() -> None:
    first = _probe.probe_tbf()
    assert _probe.probe_tbf() is first


def test_a_missing_tool_is_a_failed_probe_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("netem._probe.shutil.which", lambda name: None)
    result = _probe._in_scratch_namespace("x", "true")
    assert not result.ok and "unshare" in result.detail


def test_a_refused_command_reports_its_error(live: None) -> None:
    result = _probe._in_scratch_namespace("bogus", "tc qdisc add dev p0 root no_such_qdisc_kind")
    assert not result.ok and result.detail and "\n" not in result.detail


def test_fresh_probes_try_again_instead_of_answering_from_the_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tried: list[str] = []

    def trial(name: str, script: str) -> _probe.ProbeResult:
        tried.append(name)
        return _probe.ProbeResult(name, True)

    probes = (_probe.probe_sch_netem, _probe.probe_htb_u32, _probe.probe_tbf, _probe.probe_nfqueue)
    monkeypatch.setattr(_probe, "_in_scratch_namespace", trial)
    monkeypatch.setattr(_probe.shutil, "which", lambda name: f"/usr/sbin/{name}")
    try:
        netem.probe_all(fresh=True)
        netem.probe_all()
        assert sorted(tried) == ["htb+u32", "nfqueue", "sch_netem", "tbf"]  # cached
        netem.probe_all(fresh=True)
        assert len(tried) == 8
    finally:
        for probe in probes:  # the fake answers must not outlive this test
            probe.cache_clear()
