"""Writes a realistic run directory, as the supervisor and the nodes would, for the tests.

Messages spread over a gossip-like graph (the node at position p after the origin receives
from positions p-1 and p-2); every hop takes the configured latency plus 0.2-1.5 ms.
Optional anomalies: a node with a slow handler, and a lossy link whose hops pay a TCP
retransmission timeout (with the retransmits visible in telemetry.jsonl).
"""

from __future__ import annotations

import dataclasses
import random
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from harness._liveness import identity

T0 = 1795000000.0  # run start, Unix seconds
M0 = 1000.0  # run start, monotonic seconds
RUN_ID = "20261126-031500-a1b2c3"


@dataclasses.dataclass
class FixtureSpec:
    """What to put in the run directory."""

    instances: int = 4
    latency_ms: float = 50.0
    loss_pct: float = 0.0  # every link's configured loss (drops not sampled: telemetry's own)
    messages: int = 6
    topics: tuple[str, ...] = ("blocks", "atxs")
    failed: tuple[int, ...] = ()  # global seqs that fail
    slow_handler: int | None = None  # a node whose validation takes `slow_ms`
    slow_ms: float = 80.0
    lossy: tuple[int, int] | None = None  # (src, dst): hops pay an RTO and retransmit
    queued: tuple[int, int] | None = None  # (src, dst): hops wait `queue_ms` in the link queue
    queue_ms: float = 40.0
    stalled: tuple[int, int] | None = None  # (src, dst): hops take `stall_ms` more, unseen
    stall_ms: float = 150.0
    cpu_busy: bool = False  # the host's CPU pressure: 60% of the time waiting, else 2%
    rto_ms: float = 204.0
    change_at: float | None = 6.0  # seconds: single/1 -> single/2 becomes `changed_ms`
    changed_ms: float = 100.0
    log_lines: int = 20
    run_id: str = RUN_ID
    seed: int = 7
    ended: bool = True
    faults: bool = False  # faults.jsonl: a kill undone, a partition, a live skew, a failed limit


# What the conductor would write (faults.jsonl) for the planned faults of `PLANNED_FAULTS`
# and one injected live: (run seconds, step); at_s counts from 0.2 s (every instance started).
PLANNED_FAULTS = [
    {"action": "kill", "at": 2.8, "duration": 1.0, "targets": {"group": ["single"], "count": 1,
                                                                 "seed": 4}},
    {"action": "partition", "at": 4.8, "duration": 2.0, "targets": {"instances": ["single/0"]}},
    {"action": "limit", "at": 8.8, "cpu": 0.5, "targets": {"instances": ["single/3"]}},
    {"action": "pause", "at": 60.0, "targets": {"instances": ["single/2"]}},
]
FAULT_STEPS: list[tuple[float, dict[str, Any]]] = [
    (3.0, {"fault": "fault 0", "step": "applied", **PLANNED_FAULTS[0], "chosen": ["single/1"]}),
    (4.0, {"fault": "fault 0", "step": "undone", "action": "kill"}),
    (5.0, {"fault": "fault 1", "step": "applied", **PLANNED_FAULTS[1], "chosen": ["single/0"],
           "directions": [["single/0", "single/1"], ["single/1", "single/0"]]}),
    (7.0, {"fault": "fault 1", "step": "undone", "action": "partition"}),
    (8.0, {"fault": "live 0 (cli)", "step": "applied", "action": "skew", "at": 0.0,
           "offset": -0.3, "targets": {"instances": ["single/2"]}, "chosen": ["single/2"]}),
    (9.0, {"fault": "fault 2", "step": "failed", **PLANNED_FAULTS[2],
           "reason": "fault 2 could not be played: no cgroup for single/3"}),
]


def _w(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as f:
        for r in records:
            f.write(orjson.dumps(r) + b"\n")


def _at(sec: float) -> dict[str, float]:
    return {"ts": T0 + sec, "mono": M0 + sec}


def make_run(outputs: Path, spec: FixtureSpec | None = None) -> Path:
    """Write a run directory under `outputs` and return it."""
    spec = spec or FixtureSpec()
    rng = random.Random(spec.seed)
    run_dir = outputs / spec.run_id
    run_dir.mkdir(parents=True)
    n = spec.instances
    ids = [f"single/{i}" for i in range(n)]
    ips = [f"198.18.0.{i + 2}" for i in range(n)]
    duration = 12.0

    # network: the supervisor sets the default at 0.5 s, single/1 changes its link to single/2
    default = {"latency_ms": spec.latency_ms, "jitter_ms": 0, "loss_pct": spec.loss_pct,
               "bandwidth_bps": None}
    net = [
        {
            **_at(0.5),
            "asked_by": "supervisor",
            "request": {"default": default},
            "applied": {"default": default},
        }
    ]
    if spec.change_at is not None and n > 2:
        changed = {**default, "latency_ms": spec.changed_ms}
        cfg = {
            "default": default,
            "rules": [{"peers": [ips[2]], "shape": changed}],
            "callback_state": "net-changed",
            "callback_target": 1,
        }
        net.append({**_at(spec.change_at), "asked_by": ids[1], "request": cfg, "applied": cfg})
    _w(run_dir / "network.jsonl", net)

    def latency(src: int, dst: int, sec: float) -> float:
        if spec.change_at is not None and (src, dst) == (1, 2) and sec >= spec.change_at:
            return spec.changed_ms
        return spec.latency_ms

    events: list[dict[str, Any]] = [{**_at(0.0), "kind": "phase", "name": "start"}]
    for i, iid in enumerate(ids):
        events.append(
            {**_at(0.1 + 0.01 * i), "kind": "instance", "instance": iid, "status": "started"}
        )
    events.append(
        {**_at(1.0), "kind": "barrier", "state": "ready", "target": n, "status": "waiting"}
    )
    for i, iid in enumerate(ids):
        events.append(
            {
                **_at(1.0 + 0.05 * i),
                "kind": "signal",
                "state": "ready",
                "seq": i + 1,
                "instance": iid,
            }
        )
    events.append(
        {**_at(1.2), "kind": "barrier", "state": "ready", "target": n, "status": "released"}
    )
    events.append({**_at(1.3), "kind": "phase", "name": "gossip"})

    traces: dict[int, list[dict[str, Any]]] = {i: [] for i in range(n)}
    telemetry: list[dict[str, Any]] = []
    retrans = 0
    lossy_windows: list[tuple[float, float]] = []
    for m in range(spec.messages):
        origin = m % n
        topic = spec.topics[m % len(spec.topics)]
        msg_id = f"m{m:03d}"
        size = 512 + 64 * m
        pub = 2.0 + m * 1.5
        order = [(origin + k) % n for k in range(n)]
        have: dict[int, float] = {origin: pub}  # node -> when it forwards
        traces[origin].append(
            {
                **_at(pub),
                "kind": "publish",
                "msg_id": msg_id,
                "topic": topic,
                "from": ids[origin],
                "to": None,
                "size": size,
            }
        )
        for p in range(1, n):
            node = order[p]
            arrivals = []
            for back in (1, 2):
                if p - back < 0:
                    continue
                src = order[p - back]
                t = have[src] + (latency(src, node, have[src]) + rng.uniform(0.2, 1.5)) / 1000
                if spec.lossy == (src, node):
                    t += spec.rto_ms / 1000
                    lossy_windows.append((have[src], t))
                if spec.queued == (src, node):
                    t += spec.queue_ms / 1000
                if spec.stalled == (src, node):
                    t += spec.stall_ms / 1000
                traces[node].append(
                    {
                        **_at(t),
                        "kind": "receive",
                        "msg_id": msg_id,
                        "topic": topic,
                        "from": ids[src],
                        "to": ids[node],
                        "size": size,
                    }
                )
                arrivals.append(t)
            first = min(arrivals)
            handler = spec.slow_ms if node == spec.slow_handler else rng.uniform(0.1, 0.5)
            deliver = first + handler / 1000
            traces[node].append(
                {
                    **_at(deliver),
                    "kind": "deliver",
                    "msg_id": msg_id,
                    "topic": topic,
                    "from": None,
                    "to": ids[node],
                    "size": size,
                }
            )
            have[node] = deliver + 0.00005
    for i, recs in traces.items():
        recs.sort(key=lambda r: r["mono"])
        _w(run_dir / ids[i] / "trace.jsonl", recs)

    # telemetry every 0.5 s: TCP of every pair, link counters
    sec = 0.5
    held: dict[tuple[int, int], float] = {}  # total hold time, 20 packets per 0.5 s
    cpu_wait = 0.0
    while sec < duration:
        cpu_wait += 0.5e6 * (0.6 if spec.cpu_busy else 0.02)
        telemetry.append({**_at(sec), "kind": "cpu", "wait_us_total": int(cpu_wait)})
        for a in range(n):
            for b in range(n):
                if a == b:
                    continue
                lat = latency(a, b, sec)
                queue = spec.queue_ms if spec.queued == (a, b) else 0.0
                held[(a, b)] = held.get((a, b), 0.0) + 20 * (lat + queue + rng.uniform(0, 0.3))
                if spec.lossy == (a, b) and any(t0 <= sec <= t1 + 0.5 for t0, t1 in lossy_windows):
                    retrans += 1
                telemetry.append(
                    {
                        **_at(sec),
                        "kind": "tcp",
                        "instance": ids[a],
                        "state": "ESTAB",
                        "local": f"{ips[a]}:4000",
                        "peer": f"{ips[b]}:{40000 + a}",
                        "rtt_ms": 2 * lat + rng.uniform(0.05, 0.4),
                        "rttvar_ms": 0.3,
                        "cwnd": 10,
                        "retrans": 0,
                        "retrans_total": retrans if spec.lossy == (a, b) else 0,
                        "bytes_sent": int(sec * 2000),
                    }
                )
                telemetry.append(
                    {
                        **_at(sec),
                        "kind": "link",
                        "src": ips[a],
                        "dst": ips[b],
                        "packets": int(sec * 40),
                        "bytes": int(sec * 9000),
                        "drops": 0,
                        # like netem's userspace engine: mean hold time since shaped
                        "queue_delay_ms": held[(a, b)] / (40 * sec),
                    }
                )
        sec += 0.5
    _w(run_dir / "telemetry.jsonl", telemetry)

    # logs, stdout/stderr, metrics
    sup = [
        {
            **_at(0.0),
            "event": "run starting",
            "level": "info",
            "logger": "harness.supervisor",
            "plan": "pingpong",
            "instances": n,
        }
    ]
    for i, iid in enumerate(ids):
        d = run_dir / iid
        logs, metrics, stdout = [], [], []
        for k in range(spec.log_lines):
            sec = 0.2 + k * (duration - 1) / spec.log_lines + 0.003 * i
            level = "warning" if k % 7 == 3 else "info"
            logs.append(
                {
                    **_at(sec),
                    "event": f"step {k}",
                    "level": level,
                    "logger": "plan",
                    "instance": iid,
                    "peer": ids[(i + 1) % n],
                }
            )
            metrics.append(
                {
                    **_at(sec),
                    "name": "msgs_received",
                    "kind": "counter",
                    "value": 1 + i % 3,
                    "total": (k + 1) * (1 + i % 3),
                }
            )
            metrics.append(
                {
                    **_at(sec),
                    "name": "peers",
                    "kind": "gauge",
                    "value": min(n - 1, 1 + (k + i) // 3),
                }
            )
            metrics.append(
                {
                    **_at(sec),
                    "name": "rtt_ms",
                    "kind": "histogram",
                    "value": 2 * spec.latency_ms + 2 * i + rng.uniform(0, 3),
                }
            )
        for k in range(3):
            sec = 0.3 + k * 3.1 + 0.001 * i
            stamp_text = datetime.fromtimestamp(T0 + sec, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            stdout.append(f"{stamp_text} node {iid} stdout line {k}")
        stdout.append(f"plain stdout without time from {iid}")
        if i in spec.failed:
            logs.append(
                {
                    **_at(10.5),
                    "event": "height mismatch",
                    "level": "error",
                    "logger": "plan",
                    "instance": iid,
                }
            )
        _w(d / "log.jsonl", logs)
        _w(d / "metrics.jsonl", metrics)
        (d / "stdout.log").write_text("\n".join(stdout) + "\n")
        (d / "stderr.log").write_text(f"warning: {iid} stderr note\n" if i % 2 else "")
        fail = i in spec.failed
        events.append(
            {
                **_at(10.6 if fail else 10.0 + 0.1 * i),
                "kind": "event",
                "type": "failure" if fail else "success",
                "instance": iid,
                **({"error": "height mismatch at layer 7"} if fail else {}),
            }
        )
        events.append(
            {
                **_at(11.0 + 0.05 * i),
                "kind": "instance",
                "instance": iid,
                "status": "exited",
                "exit_code": 1 if fail else 0,
            }
        )
    sup.append(
        {**_at(11.5), "event": "run finished", "level": "info", "logger": "harness.supervisor"}
    )
    _w(run_dir / "supervisor.jsonl", sup)
    events.append({**_at(11.5), "kind": "phase", "name": "end"})
    events.sort(key=lambda e: e["mono"])
    _w(run_dir / "events.jsonl", events)

    outcome = "failed" if spec.failed else "passed"
    run: dict[str, Any] = {
        "run_id": spec.run_id,
        "plan": "pingpong",
        "case": "ping",
        "runner": "local:netns",
        "started": T0,
        "ended": T0 + duration if spec.ended else None,
        "outcome": outcome if spec.ended else None,
        "exit_code": 1 if spec.failed else 0,
        "reason": f"{len(spec.failed)} instance(s) failed" if spec.failed else None,
        "params": {"rounds": 3, "payload": "hello"},
        "composition": None,
        "timeout_s": 300,
        "groups": [{"id": "single", "count": n, "params": {"rounds": 3}, "program": None}],
        "instances": [
            {
                "id": iid,
                "group": "single",
                "group_seq": i,
                "global_seq": i,
                "role": "",
                "ip": ips[i],
                "pid": 1000 + i,
                "outcome": "failed" if i in spec.failed else "passed",
                "reason": "height mismatch at layer 7" if i in spec.failed else None,
                "exit_code": 1 if i in spec.failed else 0,
                "started": T0 + 0.1 + 0.01 * i,
                "ended": T0 + 11.0 + 0.05 * i,
                "dir": iid,
                "metrics_url": f"http://{ips[i]}:9090/metrics",
            }
            for i, iid in enumerate(ids)
        ],
        "network": {
            "backend": "userspace",
            "subnet": "198.18.0.0/15",
            "hosts": dict(zip(ids, ips, strict=True)),
            "default_shape": default,
        },
    }
    if spec.faults:
        run["faults"] = PLANNED_FAULTS
        run["instances"][1].update(restarts=1, note="restarted 1 time(s) by faults")
        _w(run_dir / "faults.jsonl",
           [{**_at(sec), "at_s": round(sec - 0.2, 3), **step} for sec, step in FAULT_STEPS])
    if not spec.ended:
        for inst in run["instances"]:
            inst.update(outcome=None, ended=None, exit_code=None)
    (run_dir / "run.json").write_bytes(orjson.dumps(run, option=orjson.OPT_INDENT_2))
    return run_dir


def orphan(run_dir: Path, outcome: str | None = "running") -> None:
    """Make run.json that of a live run whose supervisor was SIGKILLed: no end, `outcome`,
    and a supervisor of this machine that is gone."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    record = orjson.loads((run_dir / "run.json").read_bytes())
    record.update(ended=None, outcome=outcome, exit_code=None,
                  supervisor={**identity().to_json(), "pid": gone.pid, "start_ticks": 1})
    (run_dir / "run.json").write_bytes(orjson.dumps(record))
