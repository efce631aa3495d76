"""SDK metrics, the scraper, its stored series and the aggregated /metrics endpoint."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from harness.observe import Metrics, Scraper, _jsonl, observe_run, read_metrics, read_scraped


def test_metrics_records_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "single" / "0" / "metrics.jsonl"
    with Metrics(path) as m:
        assert m.counter("msgs", 2, topic="blocks") == 2
        assert m.counter("msgs", topic="blocks") == 3
        assert m.counter("msgs", topic="atxs") == 1
        m.gauge("peers", 5)
        m.histogram("latency_ms", 12.5)
        m.point("result", 1.0)
    recs = read_metrics(path)
    assert [(r["name"], r["kind"], r["value"]) for r in recs] == [
        ("msgs", "counter", 2),
        ("msgs", "counter", 1),
        ("msgs", "counter", 1),
        ("peers", "gauge", 5),
        ("latency_ms", "histogram", 12.5),
        ("result", "point", 1.0),
    ]
    assert [r.get("total") for r in recs[:3]] == [2, 3, 1]
    assert recs[0]["labels"] == {"topic": "blocks"}
    assert all(isinstance(r["mono"], float) and isinstance(r["ts"], float) for r in recs)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "3", True])
def test_metrics_rejects_bad_values(tmp_path: Path, bad: object) -> None:
    with Metrics(tmp_path / "m.jsonl") as m, pytest.raises(ValueError, match="finite number"):
        m.gauge("g", bad)  # type: ignore[arg-type]
    assert read_metrics(tmp_path / "m.jsonl") == []


def test_counter_cannot_go_down(tmp_path: Path) -> None:
    with Metrics(tmp_path / "m.jsonl") as m, pytest.raises(ValueError, match="only go up"):
        m.counter("c", -1)


@pytest.fixture
def instance_endpoints() -> Iterator[dict[str, str]]:
    """Two real Prometheus endpoints on loopback, as two instances would serve them."""
    servers = []
    targets = {}
    for i, iid in enumerate(("single/0", "single/1")):
        reg = CollectorRegistry()
        c = Counter("gossip_messages", "messages received", ["topic"], registry=reg)
        c.labels(topic="blocks").inc(10 + i)
        Gauge("peers", "connected peers", registry=reg).set(3 + i)
        h = Histogram("rpc_seconds", "rpc time", buckets=(0.1, 1.0), registry=reg)
        h.observe(0.05)
        server, thread = start_http_server(0, addr="127.0.0.1", registry=reg)
        servers.append((server, thread))
        targets[iid] = f"http://127.0.0.1:{server.server_port}/metrics"
    yield targets
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _families(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    return {
        f.name: [(s.name, s.labels, s.value) for s in f.samples]
        for f in text_string_to_metric_families(text)
    }


def test_observe_run_scrapes_stores_and_serves(
    tmp_path: Path, instance_endpoints: dict[str, str]
) -> None:
    run_dir = tmp_path / "20261126-031500-a1b2c3"
    (run_dir / "single" / "0").mkdir(parents=True)
    with Metrics(run_dir / "single" / "0" / "metrics.jsonl") as m:
        m.counter("blocks_seen", 4)
        m.histogram("hop_ms", 10)
        m.histogram("hop_ms", 30)
        m.gauge("height", 7)
    targets = {**instance_endpoints, "single/2": "http://127.0.0.1:9/metrics"}  # nobody there

    async def main() -> str:
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(
                lambda task_status: observe_run(  # type: ignore[misc]
                    run_dir,
                    targets,
                    interval=0.05,
                    listen=("127.0.0.1", 0),
                    task_status=task_status,
                )
            )
            await trio.sleep(0.3)
            assert handle.url.startswith("http://127.0.0.1:") and handle.url.endswith("/metrics")
            async with httpx.AsyncClient() as client:
                resp = await client.get(handle.url)
                missing = await client.get(handle.url.replace("/metrics", "/other"))
            assert resp.status_code == 200 and missing.status_code == 404
            assert resp.headers["content-type"].startswith("text/plain")
            nursery.cancel_scope.cancel()
        return resp.text

    fams = _families(trio.run(main))
    gossip = sorted(
        (lab["instance"], v)
        for n, lab, v in fams["gossip_messages"]
        if n == "gossip_messages_total"
    )
    assert gossip == [("single/0", 10.0), ("single/1", 11.0)]
    for _, lab, _ in fams["gossip_messages"] + fams["peers"] + fams["rpc_seconds"]:
        assert lab["run"] == "20261126-031500-a1b2c3" and lab["group"] == "single"
    assert sorted(v for _, _, v in fams["peers"]) == [3.0, 4.0]
    buckets = [
        (lab["instance"], lab["le"], v)
        for n, lab, v in fams["rpc_seconds"]
        if n == "rpc_seconds_bucket"
    ]
    assert ("single/0", "0.1", 1.0) in buckets
    up = {lab["instance"]: v for _, lab, v in fams["harness_scrape_up"]}
    assert up == {"single/0": 1.0, "single/1": 1.0, "single/2": 0.0}
    assert [v for n, _, v in fams["sdk_blocks_seen"]] == [4.0]
    hop = {n: v for n, _, v in fams["sdk_hop_ms"]}
    assert hop == {"sdk_hop_ms_count": 2.0, "sdk_hop_ms_sum": 40.0}
    assert [(lab["instance"], v) for _, lab, v in fams["sdk_height"]] == [("single/0", 7.0)]

    stored = list(read_scraped(run_dir))
    assert {r["instance"] for r in stored} == {"single/0", "single/1"}
    scrapes = {r["mono"] for r in stored if r["sample"] == "peers" and r["instance"] == "single/0"}
    assert len(scrapes) >= 3  # scraped repeatedly at the interval
    line = json.loads((run_dir / "scraped.jsonl").read_text().splitlines()[0])
    assert {"ts", "mono", "instance", "metric", "type", "sample", "labels", "value"} <= set(line)


def test_scraper_survives_garbage(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "bad" in str(request.url):
            return httpx.Response(200, text="this is { not prometheus\n")
        return httpx.Response(500)

    async def main() -> Scraper:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        # g/2 and g/3: what an instance published as its endpoint is no URL (httpx's
        # InvalidURL, no HTTPError, ended the supervisor in a traceback)
        s = Scraper(tmp_path, {"g/0": "http://x/bad", "g/1": "http://x/err",
                               "g/2": "http://127.0.0.1:9100metrics", "g/3": "ftp://[::1"},
                    client=client)
        await s.scrape_once()
        await client.aclose()
        s.close()
        return s

    s = trio.run(main)
    fams = _families(s.exposition().decode())
    assert {lab["instance"]: v for _, lab, v in fams["harness_scrape_up"]} == dict.fromkeys(
        ("g/0", "g/1", "g/2", "g/3"), 0.0)
    assert "InvalidURL: Invalid port: '9100metrics'" in str(s.tally["g/2"])


def test_interval_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="interval must be > 0"):
        trio.run(lambda: observe_run(tmp_path, {}, interval=0))


def test_an_unreadable_metrics_file_is_skipped_not_the_end_of_the_run(tmp_path: Path) -> None:
    # A directory where the file should be: an OSError even for root (a chmod is not).
    (tmp_path / "g" / "0" / "metrics.jsonl").mkdir(parents=True)

    async def main() -> None:
        client = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(500)))
        s = Scraper(tmp_path, {"g/0": "http://x/err"}, client=client)
        await s.scrape_once()
        await client.aclose()
        s.close()

    trio.run(main)


@pytest.mark.parametrize("err", [errno.EACCES, errno.EMFILE])
def test_a_metrics_file_that_cannot_be_opened_is_skipped_not_the_end_of_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int
) -> None:
    """A file that is there but cannot be opened is no longer read as absent (`ReadFailed`):
    the scraper skips it until its next scrape, as for any OSError."""
    path = tmp_path / "g" / "0" / "metrics.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text('{"name": "m", "kind": "gauge", "value": 1, "mono": 1.0}\n')
    real_open = os.open

    def refusing_open(p: Any, *args: Any, **kwargs: Any) -> int:
        if Path(p) == path:
            raise OSError(err, os.strerror(err))
        return real_open(p, *args, **kwargs)

    monkeypatch.setattr(_jsonl.os, "open", refusing_open)

    async def main() -> None:
        client = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(500)))
        s = Scraper(tmp_path, {"g/0": "http://x/err"}, client=client)
        await s.scrape_once()
        monkeypatch.undo()  # readable again: read at the next scrape
        await s.scrape_once()
        await client.aclose()
        s.close()
        assert "m" in s.exposition().decode()

    trio.run(main)


def test_what_became_of_each_scrape_is_kept_and_the_report_says_when_some_went_unanswered(
    tmp_path: Path,
) -> None:
    """Answered, timed out, failed (with the relay's reason): counted per instance into
    scrapes.json, and the report's Metrics section names the shortfall."""
    import types

    from harness.observe._report._charts import scrape_note
    from harness.observe._stored import read_scrapes

    def handler(request: httpx.Request) -> httpx.Response:
        if "slow" in str(request.url):
            raise httpx.ReadTimeout("no answer", request=request)
        if "gone" in str(request.url):
            return httpx.Response(502, text="relay: 198.18.0.3:9100: [Errno 111] refused\n")
        if "blank" in str(request.url):  # an error with a blank body is a failure too
            return httpx.Response(500, text="\n")
        return httpx.Response(200, text="peers 3\n")

    async def main() -> None:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        s = Scraper(tmp_path, {"g/0": "http://x/ok", "g/1": "http://x/slow",
                               "g/2": "http://x/gone", "g/3": "http://x/blank"},
                    client=client)  # fmt: skip
        for _ in range(3):
            await s.scrape_once()
        await s.scrape_once(last=True)  # at the run's end: only answers count
        await client.aclose()
        s.close()

    trio.run(main)
    got = read_scrapes(tmp_path)
    assert got is not None
    timeout, tallies = got
    assert timeout == 2.0
    assert [(t.asked, t.answered, t.timed_out, t.failed) for t in tallies.values()] == [
        (4, 4, 0, 0), (3, 0, 3, 0), (3, 0, 0, 3), (3, 0, 0, 3)]
    assert tallies["g/2"].last_error == "HTTP 502: relay: 198.18.0.3:9100: [Errno 111] refused"
    assert tallies["g/3"].last_error == "HTTP 500: "
    note = scrape_note(types.SimpleNamespace(dir=tmp_path))  # type: ignore[arg-type]
    assert note.startswith('<p class="note">Scrapes answered: 4 of 13 (3 timed out after 2 s, '
                           "6 failed)")
    assert "g/1: 0 of 3; g/2: 0 of 3 (last error: HTTP 502: relay:" in note
    assert "g/0" not in note
    (tmp_path / "scrapes.json").write_text('{"timeout_s": 2, "instances": {"g/0": '
                                           '{"asked": 2, "answered": 2}}}')
    assert scrape_note(types.SimpleNamespace(dir=tmp_path)) == ""  # type: ignore[arg-type]
    (tmp_path / "scrapes.json").write_text("garbage")
    assert read_scrapes(tmp_path) is None
