"""Supervisor side of metrics: scrape every instance's Prometheus endpoint, store the series
in the run directory, and serve one aggregated /metrics endpoint for the whole run."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import trio
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from harness._listen import Listen, address, open_listeners
from harness.observe._jsonl import JsonlWriter, ReadFailed, Tail, parse_line
from harness.observe._promtext import TextParser
from harness.observe._runrecord import read_run
from harness.observe._stored import SCRAPED_FILE, SCRAPES_FILE, ScrapeTally

_NAME_BAD = re.compile(r"[^a-zA-Z0-9_:]")


def _metric_name(name: str) -> str:
    name = _NAME_BAD.sub("_", name)
    return name if re.match(r"[a-zA-Z_:]", name[:1]) else f"_{name}"


@dataclasses.dataclass
class _SdkSeries:
    kind: str
    value: float = 0.0
    count: int = 0
    total: float = 0.0


class Scraper(Collector):
    """Scrapes `targets` ({instance id: metrics URL}) and tails each instance's SDK
    metrics.jsonl; every scrape's samples go to `<run_dir>/scraped.jsonl` as
    `{"ts", "mono", "instance", "metric", "type", "sample", "labels", "value"}`.

    As a prometheus_client Collector it yields the latest series of every instance with the
    labels `run`, `group` and `instance` added, plus `harness_scrape_up` per target and the
    SDK metrics as `sdk_<name>` (counters, gauges; histograms as summaries).
    """

    def __init__(
        self,
        run_dir: Path,
        targets: Mapping[str, str],
        *,
        run_id: str | None = None,
        timeout: float = 2.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.targets = dict(targets)
        self.run_id = run_id or (rec.run_id if (rec := read_run(run_dir)) else run_dir.name)
        self.timeout = timeout
        self._client = client
        self._latest: dict[str, list[Metric]] = {}
        self._parsers: dict[str, TextParser] = {}
        self._up: dict[str, bool] = {}
        self._writer = JsonlWriter(run_dir / SCRAPED_FILE)
        self._sdk_tails: dict[str, Tail] = {}
        self._sdk: dict[tuple[str, str, tuple[tuple[str, str], ...]], _SdkSeries] = {}
        self.tally: dict[str, ScrapeTally] = {}
        """Each target's scrapes so far: what became of them (`scrapes.json` at close)."""

    # -- scraping ---------------------------------------------------------------------------

    async def scrape_once(self, *, last: bool = False) -> None:
        """Scrape every target once (concurrently) and read new SDK metric lines. The
        `last` scrape, at the run's end, tallies only what it got: an instance that has
        exited by then cannot answer, and that is no missed scrape."""
        client = self._client or httpx.AsyncClient(timeout=self.timeout)
        try:
            async with trio.open_nursery() as nursery:
                for iid, url in self.targets.items():
                    nursery.start_soon(self._scrape_target, client, iid, url, last)
        finally:
            if self._client is None:
                await client.aclose()
        self._read_sdk_metrics()

    async def _scrape_target(self, client: httpx.AsyncClient, iid: str, url: str,
                             last: bool = False) -> None:
        try:
            resp = await client.get(url, timeout=self.timeout)
            if resp.is_error:  # the relay says why in its body's first line
                why = (resp.text.strip().splitlines() or [""])[0][:200]
                raise ValueError(f"HTTP {resp.status_code}: {why}")
            families = self._parsers.setdefault(iid, TextParser()).parse(resp.text)
        except httpx.TimeoutException:
            self._tally(iid, "timed_out", last)
            return
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as e:
            # InvalidURL: what an instance published as its endpoint is no URL at all
            self._tally(iid, "failed", last, str(e) if type(e) is ValueError
                        else f"{type(e).__name__}: {e}")
            return
        self._tally(iid, "answered", last)
        self._latest[iid] = families
        for fam in families:
            for s in fam.samples:
                self._writer.write(
                    {
                        "instance": iid,
                        "metric": fam.name,
                        "type": fam.type,
                        "sample": s.name,
                        "labels": s.labels,
                        "value": s.value if math.isfinite(s.value) else str(s.value),
                    }
                )

    def _tally(self, iid: str, outcome: str, last: bool, error: str | None = None) -> None:
        """Count one scrape of `iid` as `outcome` (a `ScrapeTally` field); the `last`
        scrape's are counted only if answered."""
        self._up[iid] = outcome == "answered"
        if last and outcome != "answered":
            return
        tally = self.tally.setdefault(iid, ScrapeTally())
        tally.asked += 1
        setattr(tally, outcome, getattr(tally, outcome) + 1)
        if error is not None:
            tally.last_error = error

    def _read_sdk_metrics(self) -> None:
        for inst_dir in _instance_dirs_of(self.run_dir, self.targets):
            iid, path = inst_dir
            tail = self._sdk_tails.setdefault(iid, Tail(path))
            try:
                lines = tail.read_lines()
            except (OSError, ReadFailed):  # unreadable for now (mid-creation?): next scrape
                continue
            for raw in lines:
                rec = parse_line(raw)
                if rec is None or not isinstance(rec.get("value"), int | float):
                    continue
                kind, name = rec.get("kind"), rec.get("name")
                if kind not in ("counter", "gauge", "histogram", "point") or not isinstance(
                    name, str
                ):
                    continue
                labels: dict[str, Any] = (
                    rec["labels"] if isinstance(rec.get("labels"), dict) else {}
                )
                key = (iid, name, tuple(sorted((str(k), str(v)) for k, v in labels.items())))
                series = self._sdk.setdefault(key, _SdkSeries(str(kind)))
                value = float(rec["value"])
                if kind == "counter":
                    series.value += value
                elif kind == "histogram":
                    series.count += 1
                    series.total += value
                else:
                    series.value = value

    async def run(
        self, interval: float, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Scrape every `interval` seconds until cancelled."""
        if interval <= 0:
            raise ValueError(f"scrape interval must be > 0 s, not {interval!r}")
        task_status.started()
        while True:
            await self.scrape_once()
            await trio.sleep(interval)

    def close(self) -> None:
        """Close scraped.jsonl; write what became of each target's scrapes (`SCRAPES_FILE`)."""
        self._writer.close()
        (self.run_dir / SCRAPES_FILE).write_text(json.dumps({
            "timeout_s": self.timeout,
            "instances": {iid: dataclasses.asdict(t) for iid, t in sorted(self.tally.items())},
        }, indent=1) + "\n")

    # -- the aggregated view ----------------------------------------------------------------

    def _extra(self, iid: str) -> dict[str, str]:
        return {"run": self.run_id, "group": iid.rpartition("/")[0] or iid, "instance": iid}

    def collect(self) -> Iterator[Metric]:
        """The latest series of every instance, relabelled (prometheus_client Collector)."""
        merged: dict[str, Metric] = {}
        for iid, families in sorted(self._latest.items()):
            extra = self._extra(iid)
            for fam in families:
                out = merged.get(fam.name)
                if out is None:
                    out = merged[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
                elif out.type != fam.type:
                    continue  # two instances disagree on a type: keep the first one's
                for s in fam.samples:
                    out.add_sample(s.name, {**s.labels, **extra}, s.value, s.timestamp)
        up = Metric("harness_scrape_up", "1 if the last scrape of the instance succeeded", "gauge")
        for iid in sorted(self.targets):
            up.add_sample("harness_scrape_up", self._extra(iid), 1.0 if self._up.get(iid) else 0.0)
        merged["harness_scrape_up"] = up
        for (iid, name, labels), series in sorted(self._sdk.items()):
            self._add_sdk(merged, iid, name, dict(labels), series)
        yield from merged.values()

    def _add_sdk(
        self, merged: dict[str, Metric], iid: str, name: str, labels: dict[str, str], s: _SdkSeries
    ) -> None:
        fam_name = "sdk_" + _metric_name(name)
        ptype = {"counter": "counter", "histogram": "summary"}.get(s.kind, "gauge")
        fam = merged.get(fam_name)
        if fam is None:
            fam = merged[fam_name] = Metric(fam_name, f"SDK metric {name}", ptype)
        elif fam.type != ptype:
            return
        lab = {**labels, **self._extra(iid)}
        if ptype == "counter":
            fam.add_sample(fam_name + "_total", lab, s.value)
        elif ptype == "summary":
            fam.add_sample(fam_name + "_count", lab, float(s.count))
            fam.add_sample(fam_name + "_sum", lab, s.total)
        else:
            fam.add_sample(fam_name, lab, s.value)

    def exposition(self) -> bytes:
        """The aggregated Prometheus text exposition."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return generate_latest(registry)


def _instance_dirs_of(run_dir: Path, targets: Mapping[str, str]) -> Iterator[tuple[str, Path]]:
    seen = set(targets)
    for iid in sorted(seen):
        yield iid, run_dir / iid / "metrics.jsonl"
    if run_dir.is_dir():
        for path in sorted(run_dir.glob("*/*/metrics.jsonl")):
            iid = f"{path.parent.parent.name}/{path.parent.name}"
            if iid not in seen:
                yield iid, path


async def serve_metrics(
    scraper: Scraper,
    listen: Listen,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `GET /metrics` (the aggregated view) over HTTP/1.0 at `listen` (host, port),
    or on a listening socket, until cancelled; reports the endpoint's URL (its real port
    when port 0 was asked for) through `task_status`."""
    listeners = await open_listeners(listen)
    host, port = address(listeners[0])
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"

    async def handle(stream: trio.SocketStream) -> None:
        try:
            with trio.move_on_after(5):
                request = b""
                while b"\r\n\r\n" not in request and len(request) < 16384:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        break
                    request += chunk
                parts = request.split(b"\r\n", 1)[0].split()
                if (
                    len(parts) >= 2
                    and parts[0] in (b"GET", b"HEAD")
                    and parts[1].split(b"?")[0] == b"/metrics"
                ):
                    body = scraper.exposition()
                    head = f"HTTP/1.0 200 OK\r\nContent-Type: {CONTENT_TYPE_LATEST}\r\n"
                else:
                    body = b"not found: try /metrics\n"
                    head = "HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n"
                head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                await stream.send_all(head.encode() + (b"" if parts[:1] == [b"HEAD"] else body))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    task_status.started(url)
    await trio.serve_listeners(handle, listeners)


@dataclasses.dataclass(frozen=True, slots=True)
class ObserveHandle:
    """What `observe_run` reports once started."""

    scraper: Scraper
    url: str | None  # the aggregated endpoint, when listening


async def observe_run(
    run_dir: Path,
    targets: Mapping[str, str],
    *,
    interval: float = 5.0,
    listen: Listen | None = None,
    run_id: str | None = None,
    client: httpx.AsyncClient | None = None,
    task_status: trio.TaskStatus[ObserveHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Scrape `targets` ({instance id: metrics URL}) every `interval` s into the run
    directory and, with `listen` ((host, port) or a listening socket), serve the aggregated
    /metrics there.

    `client` replaces the default httpx client (e.g. one whose transport reaches the data
    network through a relay). Start it in the supervisor's nursery with
    `handle = await nursery.start(observe_run, ...)` and cancel the nursery (or its scope)
    at the run's end; a last scrape is made then.
    """
    if interval <= 0:
        raise ValueError(f"scrape interval must be > 0 s, not {interval!r}")
    scraper = Scraper(run_dir, targets, run_id=run_id, client=client)
    try:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_metrics, scraper, listen) if listen else None
            await nursery.start(scraper.run, interval)
            task_status.started(ObserveHandle(scraper, url))
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(scraper.timeout + 0.5):
            await scraper.scrape_once(last=True)
        scraper.close()
