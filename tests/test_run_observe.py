"""A real run's observers: announced metrics endpoints are scraped (through the relay on
local:netns), the aggregated endpoint is served, telemetry and the report are written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import ROOT, free_port, harness_cli, only_run_dir

MANIFEST = """
name = "metered"
[[testcases]]
name = "main"
instances = { min = 1, max = 10, default = 2 }
entrypoint = "metered.plan:main"
"""
CODE = """
import prometheus_client, trio
from harness import sdk

async def main(env):
    reg = prometheus_client.CollectorRegistry()
    c = prometheus_client.Counter("work_done", "units of work", registry=reg)
    c.inc(env.global_seq + 1)
    prometheus_client.start_http_server(9464, addr=env.data_ip, registry=reg)
    await env.expose_metrics(9464)
    await trio.sleep(3)
    await env.sync.signal_and_wait("done", env.instance_count)
"""


def _check(out: Path) -> None:
    run_dir = only_run_dir(out)
    run = json.loads((run_dir / "run.json").read_text())
    assert run["outcome"] == "passed", run["reason"]
    assert run["metrics_url"].startswith("http://127.0.0.1:")
    samples = [json.loads(x) for x in (run_dir / "scraped.jsonl").read_text().splitlines()]
    work = {(s["instance"], s["value"]) for s in samples if s["metric"].startswith("work_done")
            and s.get("sample", "").endswith("_total")}
    assert work == {("single/0", 1.0), ("single/1", 2.0)}, work
    assert (run_dir / "report.html").stat().st_size > 1000
    # scrapes are not logged one by one: the supervisor's log stays readable
    assert "HTTP Request" not in (run_dir / "supervisor.jsonl").read_text()


def test_metrics_are_scraped_on_local_exec(make_plan: Callable[..., Path], tmp_path: Path) -> None:
    root = make_plan("metered", MANIFEST, CODE)
    r = harness_cli("run", "metered", "--plans", str(root), "--runner", "local:exec",
                    "--outputs", str(tmp_path / "out"), "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    _check(tmp_path / "out")


@pytest.mark.live
@pytest.mark.skipif(os.geteuid() != 0, reason="local:netns needs root here")
def test_metrics_are_scraped_through_the_relay_on_local_netns(
    make_plan: Callable[..., Path], tmp_path: Path
) -> None:
    root = make_plan("metered", MANIFEST, CODE)
    r = harness_cli("run", "metered", "--plans", str(root), "--runner", "local:netns",
                    "--outputs", str(tmp_path / "out"), "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    _check(tmp_path / "out")


def work_done_during(
    proc: subprocess.Popen[str],
    port: int,
    *,
    timeout: float = 60,
    once_up: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Each instance's `work_done_total` as the aggregated /metrics on `port` serves it while
    `proc` (a run of the plan above) goes on, polled until both instances show or the run
    ends; `once_up` is called after the endpoint's first answer."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(seen) < 2 and proc.poll() is None:
        time.sleep(0.5)
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            continue
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "work_done_total":
                    seen[sample.labels["instance"]] = sample.value
                    assert sample.labels["group"] == "single" and sample.labels["run"]
        if once_up is not None:
            once_up()
            once_up = None
    return seen


def test_aggregated_endpoint_serves_every_instance_during_the_run(
    make_plan: Callable[..., Path], tmp_path: Path
) -> None:
    root = make_plan("metered", MANIFEST, CODE.replace("trio.sleep(3)", "trio.sleep(8)"))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "metered", "--plans", str(root), "--runner",
         "local:exec", "--outputs", str(tmp_path / "out"), "-q",
         "--metrics-listen", f"127.0.0.1:{port}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert work_done_during(proc, port, timeout=30) == {"single/0": 1.0, "single/1": 2.0}
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sdk_metrics_reach_the_outputs_and_the_report(tmp_path: Path) -> None:
    """pingpong records each ping's RTT with `env.metrics`."""
    r = harness_cli("run", "pingpong:ping", "-i", "3", "-p", "rounds=4", "--runner",
                    "local:exec", "--outputs", str(tmp_path / "out"), "-q")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    run_dir = only_run_dir(tmp_path / "out")
    for seq in range(3):
        records = [json.loads(x) for x in (run_dir / f"single/{seq}/metrics.jsonl").open()]
        assert {(m["name"], m["kind"]) for m in records} == {("ping_rtt_ms", "histogram")}
        assert len(records) == 2 * 4  # two peers, four rounds each
        assert all(m["value"] > 0 for m in records)
        assert {m["labels"]["peer"] for m in records} == {str(p) for p in range(3) if p != seq}
    assert "ping_rtt_ms" in (run_dir / "report.html").read_text()


STARTUP_CODE = """
from harness import sdk

async def main(env):
    await env.sync.signal_entry("registered")
"""


def test_telemetry_samples_only_once_every_instance_has_started(
    make_plan: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sample costs a process per instance: taken while instances start, it takes the
    CPU from them (most of the start of 1,000 instances), and there is nothing to see."""
    from harness import _supervisor
    from harness.observe import TelemetrySampler
    from harness.plans import build_run_spec

    sampled: list[float] = []
    real = TelemetrySampler.sample_once

    async def sample_once(self: TelemetrySampler) -> None:
        sampled.append(time.monotonic())
        await real(self)

    monkeypatch.setattr(TelemetrySampler, "sample_once", sample_once)
    root = make_plan("metered", MANIFEST,
                     STARTUP_CODE)
    spec = build_run_spec("metered", instances=4, runner="local:exec", plan_roots=[root])
    result = _supervisor.run(spec, _supervisor.RunOptions(outputs=tmp_path, progress=False))
    assert result.exit_code == 0, result.reason
    events = [json.loads(x) for x in (result.run_dir / "events.jsonl").open()]
    started = [e["mono"] for e in events if e.get("status") == "started"]
    assert len(started) == 4 and sampled
    assert min(sampled) >= max(started)


SLEEPER = """
import trio

async def main(env):
    await trio.sleep(3)
"""


def test_a_run_on_a_saturated_host_says_so_while_it_runs_and_at_its_end(
    make_plan: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The host's CPU pressure, made to read 90 % waiting: a progress line and the
    supervisor's log say so once, mid-run; the summary at the end says it too."""
    from harness._supervisor import RunOptions, run
    from harness.observe import _cpuload, _telemetry
    from harness.plans import build_run_spec

    monkeypatch.setattr(_telemetry, "cpu_wait_us_total", lambda: int(time.monotonic() * 0.9e6))
    monkeypatch.setattr(_cpuload, "SATURATED_NOTICE_S", 1.0)
    root = make_plan("sleeper", MANIFEST.replace("metered", "sleeper"), SLEEPER)
    spec = build_run_spec("sleeper:main", instances=1, runner="local:exec", plan_roots=[root])
    result = run(spec, RunOptions(outputs=tmp_path / "out", telemetry_interval=0.25))
    assert result.outcome == "passed", result.reason
    err = capsys.readouterr().err
    assert err.count("warning: the host's CPU has been saturated for ") == 1, err
    logged = [json.loads(x) for x in (result.run_dir / "supervisor.jsonl").open()]
    assert [r["event"] for r in logged].count("host cpu saturated") == 1
    assert "\nwarning: the host's CPU was saturated: runnable tasks waited for a CPU 90%" in (
        result.summary())
