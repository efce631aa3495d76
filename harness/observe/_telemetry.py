"""Link and transport telemetry sampled during a run: TCP statistics of each instance's
connections (what `ss -tin` shows in its network namespace, read through sock_diag for
every namespace from one thread: harness.observe._sockdiag) and the shaping counters per
link."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import trio

from harness._errors import EnvironmentProblem
from harness.observe._jsonl import JsonlWriter, stamp
from harness.observe._sockdiag import tcp_sockets
from harness.observe._stored import TELEMETRY_FILE

LinkStatsFn = Callable[[], Mapping[tuple[Any, Any], Any]]
"""Returns the shaping counters per direction: {(src, dst): {packets, drops, queue_delay_ms}}
(a mapping or an object with those attributes, such as netem's LinkStats)."""

_STATES = {
    "ESTAB",
    "SYN-SENT",
    "SYN-RECV",
    "FIN-WAIT-1",
    "FIN-WAIT-2",
    "TIME-WAIT",
    "CLOSE-WAIT",
    "LAST-ACK",
    "LISTEN",
    "CLOSING",
    "UNCONN",
    "CLOSED",
}
_RATE = re.compile(r"^([\d.]+)([KMG]?)bps$")
_INT_KEYS = {
    "cwnd": "cwnd",
    "ssthresh": "ssthresh",
    "bytes_sent": "bytes_sent",
    "bytes_retrans": "bytes_retrans",
    "bytes_acked": "bytes_acked",
    "bytes_received": "bytes_received",
    "segs_out": "segs_out",
    "segs_in": "segs_in",
    "lost": "lost",
    "unacked": "unacked",
    "mss": "mss",
}


def _rate(text: str) -> float | None:
    m = _RATE.match(text)
    if not m:
        return None
    return float(m.group(1)) * {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}[m.group(2)]


def parse_ss(text: str) -> list[dict[str, Any]]:
    """Parse `ss -tinH` output into one dict per socket: state, local, peer, rtt_ms,
    rttvar_ms, rto_ms, cwnd, retrans (outstanding), retrans_total, bytes_*, lost, ..."""
    out: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            tokens = line.split()
            if len(tokens) < 4:
                cur = None
                continue
            state = tokens[0] if tokens[0] in _STATES else "ESTAB"
            addr = [t for t in tokens if ":" in t and not t.startswith("users:")]
            if len(addr) < 2:
                cur = None
                continue
            cur = {"state": state, "local": addr[0], "peer": addr[1]}
            out.append(cur)
            continue
        if cur is None:
            continue
        tokens = line.split()
        for i, tok in enumerate(tokens):
            key, sep, val = tok.partition(":")
            if not sep:
                if tok in ("send", "pacing_rate", "delivery_rate") and i + 1 < len(tokens):
                    rate = _rate(tokens[i + 1])
                    if rate is not None:
                        cur[f"{tok}_bps" if tok != "send" else "send_bps"] = rate
                continue
            try:
                if key == "rtt":
                    rtt, _, var = val.partition("/")
                    cur["rtt_ms"], cur["rttvar_ms"] = float(rtt), float(var or 0)
                elif key == "rto":
                    cur["rto_ms"] = float(val)
                elif key == "retrans":
                    now, _, total = val.partition("/")
                    cur["retrans"], cur["retrans_total"] = int(now), int(total or now)
                elif key == "minrtt":
                    cur["minrtt_ms"] = float(val)
                elif key in _INT_KEYS:
                    cur[_INT_KEYS[key]] = int(val)
            except ValueError:
                continue
        cur.setdefault("retrans_total", 0)
    return out


def _in_address(sockets: list[dict[str, Any]], address: str) -> list[dict[str, Any]]:
    """The sockets bound to `address` (what `ss src ADDRESS` shows)."""
    return [s for s in sockets if str(s["local"]).rsplit(":", 1)[0].strip("[]") == address]


def sample_many(
    places: Mapping[str, tuple[str | None, str | None]],
) -> dict[str, list[dict[str, Any]] | OSError]:
    """The TCP sockets of every instance (`places`: id -> (network namespace or None, data
    address or None), as `sample_tcp` takes them) from one thread of this process: each
    namespace is read once (sock_diag netlink), whatever the number of instances."""
    got = tcp_sockets(ns for ns, _ in places.values())
    out: dict[str, list[dict[str, Any]] | OSError] = {}
    for iid, (ns, address) in places.items():
        sockets = got[ns]
        if isinstance(sockets, OSError) or ns is not None or address is None:
            out[iid] = sockets
        else:
            out[iid] = _in_address(sockets, address)
    return out


async def sample_tcp(netns: str | None, address: str | None = None) -> list[dict[str, Any]]:
    """The TCP sockets of an instance: all of namespace `netns` or, without a namespace
    (`local:exec`), the host's sockets bound to `address`; EnvironmentProblem naming the
    namespace if it cannot be read."""
    got = (await trio.to_thread.run_sync(sample_many, {"": (netns, address)}))[""]
    if isinstance(got, OSError):
        raise EnvironmentProblem(str(got))
    return got


CPU_PRESSURE = Path("/proc/pressure/cpu")


def cpu_wait_us_total(path: Path = CPU_PRESSURE) -> int | None:
    """Microseconds in which some runnable task of the host waited for a CPU, since boot
    (Linux PSI, the `some total=` of /proc/pressure/cpu); None where PSI is missing."""
    try:
        text = path.read_text()
    except OSError:
        return None
    m = re.search(r"^some .*\btotal=(\d+)", text, re.MULTILINE)
    return int(m.group(1)) if m else None


def _stat(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _link_record(pair: Any, st: Any, now: dict[str, Any], text: dict[Any, str]) -> dict[str, Any]:
    """A "link" line of `st`, the counters of direction `pair`, sampled at `now`."""
    src, dst = pair
    if src not in text:
        text[src] = str(src)
    if dst not in text:
        text[dst] = str(dst)
    rec: dict[str, Any] = {"kind": "link", "src": text[src], "dst": text[dst]}
    for name in ("packets", "bytes", "drops", "queue_delay_ms"):
        rec[name] = _stat(st, name)
    rec.update(now)
    return rec


class TelemetrySampler:
    """Samples TCP statistics per instance and shaping counters per link into
    `<run_dir>/telemetry.jsonl`: lines of kind "tcp" (`instance`, `local`, `peer`, `rtt_ms`,
    `cwnd`, `retrans_total`, ...), "link" (`src`, `dst`, `packets`, `bytes`, `drops`,
    `queue_delay_ms`; a link from the sample before its first packet on), "cpu"
    (`wait_us_total`: the host's CPU pressure, see `cpu_wait_us_total`) and "error" (a
    failed sample, recorded once per problem).

    `instances` maps instance id -> (network namespace or None, data address or None);
    `on_cpu`, if given, is told each CPU sample (its CLOCK_MONOTONIC time and
    `wait_us_total`) as it is taken.
    """

    def __init__(
        self,
        run_dir: Path,
        instances: Mapping[str, tuple[str | None, str | None]],
        *,
        link_stats: LinkStatsFn | None = None,
        on_cpu: Callable[[float, int], None] | None = None,
    ) -> None:
        self.instances = dict(instances)
        self.link_stats = link_stats
        self.on_cpu = on_cpu
        self._writer = JsonlWriter(run_dir / TELEMETRY_FILE)
        self._errors: set[str] = set()
        # A link is written from the sample before its first packet on: a network of N
        # hosts has N * (N - 1) directions, most of them never used (9,900 at 100 hosts,
        # 2,100 used in a Spacemesh run). The last all-zero sample keeps every "from the
        # sample before to the sample after" window of the analysis what it was.
        self._used: set[Any] = set()
        self._prev: tuple[Mapping[Any, Any], dict[str, Any]] = ({}, {})
        """The last sample's link counters and time: an unused link's last all-zero
        record is built from them when its first packet shows."""

    def _error(self, source: str, err: Exception) -> None:
        text = f"{source}: {err}"
        if text not in self._errors:
            self._errors.add(text)
            self._writer.write({"kind": "error", "source": source, "error": str(err)})

    async def sample_once(self) -> None:
        """One sample of every instance (from one thread, no process: `sample_many`) and
        of the link counters."""
        got = await trio.to_thread.run_sync(sample_many, self.instances)
        for iid, sockets in got.items():
            if isinstance(sockets, OSError):
                self._error(iid, EnvironmentProblem(str(sockets)))
                continue
            for sock in sockets:
                self._writer.write({"kind": "tcp", "instance": iid, **sock})
        waited = cpu_wait_us_total()
        if waited is not None:
            now = stamp()
            self._writer.write({**now, "kind": "cpu", "wait_us_total": waited})
            if self.on_cpu is not None:
                self.on_cpu(now["mono"], waited)
        if self.link_stats is not None:
            try:
                stats = await trio.to_thread.run_sync(self.link_stats)
            except Exception as e:  # the lead's callable: a failure must not end the run
                self._error("link_stats", e)
                return
            now = stamp()
            prev, prev_now = self._prev
            text: dict[Any, str] = {}  # str() of an address is slow; there are few
            used = self._used
            for pair, st in stats.items():
                if pair not in used:
                    # Most directions: nothing to write, and no record built (at 100
                    # hosts, 9,900 of them at every sample).
                    if not (_stat(st, "packets") or _stat(st, "bytes") or _stat(st, "drops")):
                        continue
                    used.add(pair)
                    if (last_idle := prev.get(pair)) is not None:
                        self._writer.write(_link_record(pair, last_idle, prev_now, text))
                self._writer.write(_link_record(pair, st, now, text))
            self._prev = (stats, now)

    async def run(
        self, interval: float, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Sample every `interval` seconds until cancelled; closes the file then."""
        if interval <= 0:
            raise ValueError(f"telemetry interval must be > 0 s, not {interval!r}")
        task_status.started()
        try:
            while True:
                await self.sample_once()
                await trio.sleep(interval)
        finally:
            self.close()

    def close(self) -> None:
        """Close telemetry.jsonl; safe to call twice."""
        self._writer.close()
