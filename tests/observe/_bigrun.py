"""Writes a synthetic run directory shaped like a real `spacemesh:start -i 100` run.

The files, their record kinds and fields are those of a real run (taken from a 6-instance
`python -m harness run spacemesh:start -i 6`): run.json, events.jsonl, network.jsonl
(netem's own record: `build`, one `request` per instance, `close`), telemetry.jsonl (cpu,
link, tcp), scraped.jsonl, supervisor.jsonl and per instance log.jsonl, stderr.log,
stdout.log, clock and, for every node but the PoET (single/0), trace.jsonl.

Gossip floods over a random graph of `degree` peers: the origin writes one `publish` line
per peer, each node one `receive` per copy it gets and one `deliver` for the first, then
forwards to every peer but the sender. Node ids are 16 hex digits, not instance ids, as in
the real traces. `messages=1700` writes about 190 MB of traces (about 200 MB in all).

Some links are made worse on purpose, so that a report has worst entries to put first:
single/3 and single/7 change their egress mid-run (100 ms ±10 ms, 1% loss; a cut), and
hops from `slow_nodes` take `slow_ms` longer.

    python -m tests.observe._bigrun OUTPUTS [--instances 100] [--messages 1700]
        [--gzip-traces] [--compact-traces]
"""

from __future__ import annotations

import argparse
import gzip
import random
from pathlib import Path
from typing import IO, Any

import orjson

from harness.observe._tracefile import BLOCK_ROWS, HEADER

T0 = 1795000000.0  # run start, Unix seconds
M0 = 5000.0  # run start, monotonic seconds
RUN_ID = "20261129-120000-b16b16"
TOPICS = (("hare", 0.40), ("proposal", 0.30), ("atx", 0.17), ("certificate", 0.10), ("poet", 0.03))
DEFAULT = {"latency_ms": 50.0, "jitter_ms": 0.0, "loss_pct": 0.0, "bandwidth_bps": None,
           "corrupt_pct": 0.0, "duplicate_pct": 0.0, "reorder_pct": 0.0}  # fmt: skip
WORSE = {**DEFAULT, "latency_ms": 100.0, "jitter_ms": 10.0, "loss_pct": 1.0}


def _dump(f: IO[bytes], rec: dict[str, Any]) -> None:
    f.write(orjson.dumps(rec) + b"\n")


def _at(sec: float) -> dict[str, float]:
    return {"ts": T0 + sec, "mono": M0 + sec}


def make_big_run(
    outputs: Path,
    *,
    instances: int = 100,
    messages: int = 1700,
    degree: int = 8,
    duration: float = 60.0,
    slow_nodes: tuple[int, ...] = (5, 11),
    slow_ms: float = 180.0,
    seed: int = 11,
    run_id: str = RUN_ID,
    gzip_traces: bool = False,
    compact_traces: bool = False,
) -> Path:
    """Write the run directory under `outputs` and return it: traces as JSON objects in
    `trace.jsonl` (the older form), gzip-compressed with `gzip_traces`, in the block form
    nodes write (a header, then blocks of columns; harness.observe._tracefile) with
    `compact_traces`."""
    rng = random.Random(seed)
    run_dir = outputs / run_id
    run_dir.mkdir(parents=True)
    n = instances
    ids = [f"single/{i}" for i in range(n)]
    ips = [f"198.18.{(i + 1) // 256}.{(i + 1) % 256}" for i in range(n)]
    node_ids = [f"{rng.getrandbits(64):016x}" for _ in range(n)]
    nodes = list(range(1, n))  # single/0 is the PoET: no gossip, no trace
    peers: dict[int, set[int]] = {i: set() for i in nodes}
    for i in nodes:
        while len(peers[i]) < degree // 2 and len(nodes) > degree:
            j = rng.choice(nodes)
            if j != i:
                peers[i].add(j)
                peers[j].add(i)
    change_at = duration * 0.4
    cut_at = duration * 0.6

    def latency(src: int, sec: float) -> float:
        if src == 3 and sec >= change_at:
            return WORSE["latency_ms"] + rng.uniform(-10, 10)
        return DEFAULT["latency_ms"]

    # network.jsonl: netem's own record
    with (run_dir / "network.jsonl").open("wb") as f:
        hosts = [{"name": f"h{i + 1}", "ip": ip} for i, ip in enumerate(ips)]
        _dump(f, {**_at(0.3), "op": "build", "asked_by": "netem", "asked": {"count": n},
                  "applied": {"prefix": "htbig0001", "subnet": "198.18.0.0/15", "hosts": hosts}})
        for i in range(n):
            cfg = {"enabled": True, "rules": [], "default": DEFAULT, "callback_state": "shaped",
                   "callback_target": n}
            _dump(f, {**_at(2.5 + 0.02 * i), "op": "request", "asked_by": ids[i],
                      "asked": {"host": ips[i], "config": cfg},
                      "applied": {"cut": {}, "restored": {}, "shaped": (n - 1) * (i + 1)}})
        worse = {"enabled": True, "rules": [], "default": WORSE, "callback_state": "worse",
                 "callback_target": 1}
        _dump(f, {**_at(change_at), "op": "request", "asked_by": ids[3],
                  "asked": {"host": ips[3], "config": worse},
                  "applied": {"cut": {}, "restored": {}, "shaped": n - 1}})
        cut = {"enabled": True, "default": DEFAULT, "callback_state": "cut", "callback_target": 1,
               "rules": [{"peers": [ips[8], ips[9]], "drop": True}]}
        _dump(f, {**_at(cut_at), "op": "request", "asked_by": ids[7],
                  "asked": {"host": ips[7], "config": cut},
                  "applied": {"cut": {ips[8]: True, ips[9]: True}, "restored": {}, "shaped": 0}})
        _dump(f, {**_at(duration + 0.5), "op": "close", "asked_by": "netem", "asked": {},
                  "applied": {}})

    # traces: flood each message over the graph
    open_trace = gzip.open if gzip_traces else open
    name = "trace.jsonl.gz" if gzip_traces else "trace.jsonl"
    files: dict[int, IO[bytes]] = {}
    for i in nodes:
        (run_dir / ids[i]).mkdir(parents=True, exist_ok=True)
        files[i] = open_trace(run_dir / ids[i] / name, "wb")  # type: ignore[assignment]
        if compact_traces:
            files[i].write(orjson.dumps(HEADER) + b"\n")
    topics = [t for t, _ in TOPICS]
    weights = [w for _, w in TOPICS]
    start, end = 8.0, duration - 4.0
    pubs = sorted(rng.uniform(start, end) for _ in range(messages))
    lines: dict[int, list[tuple[float, Any]]] = {i: [] for i in nodes}

    def line(sec: float, kind: str, msg: str, topic: str, frm: int, to: int, size: int) -> Any:
        if compact_traces:  # a row, written in blocks
            return (T0 + sec, M0 + sec, kind, msg, topic, node_ids[frm], node_ids[to], size)
        return orjson.dumps({**_at(sec), "kind": kind, "msg_id": msg, "topic": topic,
                             "from": node_ids[frm], "to": node_ids[to], "size": size})

    def write(f: IO[bytes], done: list[Any]) -> None:
        if compact_traces:
            done = [orjson.dumps({"block": list(zip(*done[k:k + BLOCK_ROWS], strict=True))})
                    for k in range(0, len(done), BLOCK_ROWS)]
        f.write(b"\n".join(done) + b"\n" if done else b"")

    for m, pub in enumerate(pubs):
        origin = rng.choice(nodes)
        topic = rng.choices(topics, weights)[0]
        msg = f"{rng.getrandbits(256):064x}"
        size = rng.randint(200, 1800)
        for p in sorted(peers[origin]):
            lines[origin].append((pub, line(pub, "publish", msg, topic, origin, p, size)))
        # (time a node forwards, node, who sent it to it)
        frontier = [(pub, origin, -1)]
        delivered = {origin: pub}
        while frontier:
            frontier.sort()
            sent, src, came_from = frontier.pop(0)
            for dst in peers[src]:
                if dst == came_from:
                    continue
                if src == 7 and dst in (8, 9) and sent >= cut_at:
                    continue
                hop = latency(src, sent) + rng.uniform(0.2, 1.5)
                if src in slow_nodes:
                    hop += slow_ms
                recv = sent + hop / 1000
                lines[dst].append((recv, line(recv, "receive", msg, topic, src, dst, size)))
                if dst not in delivered or recv < delivered[dst]:
                    first = dst not in delivered
                    delivered[dst] = recv
                    if first:
                        handler = rng.uniform(0.1, 0.6) / 1000
                        lines[dst].append((recv + handler, line(recv + handler, "deliver", msg,
                                                                topic, src, dst, size)))
                        frontier.append((recv + handler, dst, src))
        if m % 50 == 49:  # keep memory flat: write, in time order, what no flood still adds to
            for i in nodes:
                lines[i].sort(key=lambda x: x[0])
                done = [b for t, b in lines[i] if t < pub - 10]
                lines[i] = lines[i][len(done):]
                write(files[i], done)
    for i in nodes:
        lines[i].sort(key=lambda x: x[0])
        write(files[i], [b for _, b in lines[i]])
        files[i].close()

    # telemetry.jsonl: cpu, link counters and TCP of each peer connection, every 2 s
    edges = sorted((a, b) for a in nodes for b in peers[a])
    with (run_dir / "telemetry.jsonl").open("wb") as f:
        sec, wait = 2.0, 0
        while sec < duration:
            wait += int(2e6 * 0.1)
            _dump(f, {**_at(sec), "kind": "cpu", "wait_us_total": 2980055498 + wait})
            for a, b in edges:
                lat = latency(a, sec)
                _dump(f, {**_at(sec), "kind": "link", "src": ips[a], "dst": ips[b],
                          "packets": int(sec * 20), "bytes": int(sec * 9000),
                          "drops": int(sec) if a == 3 and sec > change_at else 0,
                          "queue_delay_ms": lat + rng.uniform(0, 0.3)})
                _dump(f, {**_at(sec), "kind": "tcp", "instance": ids[a], "state": "ESTAB",
                          "local": f"{ips[a]}:{40000 + b}", "peer": f"{ips[b]}:7513",
                          "rto_ms": 312.0, "rtt_ms": 2 * lat + rng.uniform(0.05, 9),
                          "rttvar_ms": 23.1, "mss": 1448, "cwnd": 17, "bytes_sent": int(sec * 900),
                          "segs_out": int(sec * 5), "retrans_total": 0})
            sec += 2.0

    # scraped.jsonl: each node's Prometheus metrics every 2 s
    with (run_dir / "scraped.jsonl").open("wb") as f:
        sec = 4.0
        while sec < duration:
            for i in nodes:
                for metric, value in (("spacemesh_peers", len(peers[i])),
                                      ("spacemesh_layer_verified", int(sec / 8)),
                                      ("spacemesh_layer_applied", int(sec / 8)),
                                      ("spacemesh_gossip_received_total", int(sec * 40))):
                    _dump(f, {**_at(sec + 0.001 * i), "instance": ids[i], "metric": metric,
                              "type": "counter" if metric.endswith("_total") else "gauge",
                              "sample": metric, "labels": {}, "value": float(value)})
            sec += 2.0

    # events.jsonl
    with (run_dir / "events.jsonl").open("wb") as f:
        for i in range(n):
            _dump(f, {**_at(0.3), "kind": "signal", "state": "network-initialized", "seq": i + 1,
                      "instance": ids[i]})
        for i in range(n):
            _dump(f, {**_at(2.3 + 0.01 * i), "kind": "instance", "instance": ids[i],
                      "status": "started", "pid": 20000 + i})
        for i in range(n):
            _dump(f, {**_at(2.4 + 0.01 * i), "type": "start", "kind": "event",
                      "instance": ids[i]})
        for i in range(n):
            _dump(f, {**_at(2.5 + 0.02 * i), "kind": "barrier", "state": "shaped", "target": n,
                      "status": "waiting", "instance": ids[i], "count": i + 1})
        _dump(f, {**_at(4.5), "kind": "barrier", "state": "shaped", "target": n,
                  "status": "released"})
        _dump(f, {**_at(2.4), "kind": "publish", "topic": "genesis", "seq": 1,
                  "instance": ids[0]})
        for i in range(n):
            _dump(f, {**_at(duration - 2 + 0.01 * i), "type": "success", "kind": "event",
                      "instance": ids[i]})
            _dump(f, {**_at(duration - 1 + 0.01 * i), "kind": "instance", "instance": ids[i],
                      "status": "exited", "exit_code": 0})

    with (run_dir / "supervisor.jsonl").open("wb") as f:
        _dump(f, {"run": run_id, "plan": "spacemesh", "case": "start", "instances": n,
                  "runner": "local:netns", "event": "run starting", "level": "info",
                  "logger": "harness.supervisor", **_at(0.0)})
        _dump(f, {"outcome": "passed", "reason": None, "event": "run ended", "level": "info",
                  "logger": "harness.supervisor", **_at(duration + 0.6)})

    for i in range(n):
        d = run_dir / ids[i]
        d.mkdir(parents=True, exist_ok=True)
        (d / "clock").write_text('# {"offset":0.0,"drift":0.0,"since":0.0}\n+0.000000000 x1.0\n')
        (d / "stdout.log").write_text("")
        with (d / "log.jsonl").open("wb") as f:
            for k in range(25):
                _dump(f, {"node": node_ids[i], "event": f"layer {k // 3} step {k}",
                          "level": "info", "logger": "spacemesh.node",
                          **_at(3.0 + k * (duration - 6) / 25), "instance": ids[i]})
        (d / "stderr.log").write_text("".join(
            f"2026-11-29T12:00:{k:02d}.000000Z [info     ] layer step {k} [spacemesh.node] "
            f"instance={ids[i]} node={node_ids[i]}\n" for k in range(25)))
    (run_dir / "relay.log").write_text("")
    (run_dir / "faults.jsonl").write_text("")

    params = {"poets": 1, "gateways": 1, "genesis_offset": 20.0, "layer_duration": 8.0,
              "layers_per_epoch": 3, "layers": 4, "latency": 0.05, "jitter": 0.0, "loss": 0.0,
              "poet_unreachable": False, "chain_length": 1000, "pow_bits": 6,
              "eligibility": 0.1, "target_peers": degree, "check_slack": 20.0}
    run = {
        "run_id": run_id, "plan": "spacemesh", "case": "start", "runner": "local:netns",
        "started": T0, "ended": T0 + duration + 0.6, "outcome": "passed", "exit_code": 0,
        "reason": None, "params": params, "composition": None, "timeout_s": 300.0,
        "groups": [{"id": "single", "count": n, "params": params, "program": None}],
        "instances": [
            {"id": ids[i], "group": "single", "group_seq": i, "global_seq": i,
             "role": "poet" if i == 0 else "gateway" if i == 1 else "smesher", "ip": ips[i],
             "pid": 20000 + i, "outcome": "passed", "reason": None, "exit_code": 0,
             "started": T0 + 2.3 + 0.01 * i, "ended": T0 + duration - 1 + 0.01 * i,
             "dir": ids[i], "restarts": 0, "note": None}
            for i in range(n)
        ],
        "network": {"runner": "local:netns", "backend": "userspace", "subnet": "198.18.0.0/15",
                    "prefix": "htbig0001", "hosts": dict(zip(ids, ips, strict=True))},
        "metrics_url": None, "supervisor": None, "last_seen": T0 + duration + 0.6,
        "sock_dir": None, "network_events": [], "aborted": None, "plan_dir": None, "faults": [],
    }
    (run_dir / "run.json").write_bytes(orjson.dumps(run, option=orjson.OPT_INDENT_2))
    return run_dir


def main() -> None:
    """Write a big run directory (see the module's docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("outputs", type=Path)
    p.add_argument("--instances", type=int, default=100)
    p.add_argument("--messages", type=int, default=1700)
    p.add_argument("--gzip-traces", action="store_true")
    p.add_argument("--compact-traces", action="store_true", help="the form nodes write")
    a = p.parse_args()
    print(make_big_run(a.outputs, instances=a.instances, messages=a.messages,
                       gzip_traces=a.gzip_traces, compact_traces=a.compact_traces))


if __name__ == "__main__":
    main()
