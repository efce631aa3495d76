"""TCP telemetry from `ss`, link counters, and the sampler's file."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from harness._errors import EnvironmentProblem
from harness.observe import TelemetrySampler, parse_ss, read_telemetry, sample_tcp
from harness.observe._telemetry import cpu_wait_us_total

# Captured from `ss -tinH` on the development machine (two ends of a loopback connection).
SS_OUTPUT = """\
ESTAB 34464  0      127.0.0.1:58625 127.0.0.1:44776
\t bbr wscale:10,10 rto:200 rtt:0.02/0.01 ato:40 mss:32768 pmtu:65535 rcvmss:34518 advmss:65483 cwnd:10 bytes_received:100000 segs_out:2 segs_in:5 data_segs_in:3 bbr:(bw:0bps,mrtt:0.02) send 131072000000bps pacing_rate 374584320000bps delivered:1 app_limited rcv_rtt:0.024 rcv_space:65483 minrtt:0.02 snd_wnd:65536
ESTAB 0      0      198.18.0.2:44776 198.18.0.3:58625
\t cubic wscale:7,7 rto:412 rtt:205.3/12.5 mss:1448 cwnd:4 ssthresh:7 bytes_sent:100000 bytes_retrans:2896 bytes_acked:97105 segs_out:75 segs_in:40 lost:1 unacked:3 retrans:1/2 send 225Kbps delivery_rate 180Kbps minrtt:200.1
"""


def test_parse_ss() -> None:
    a, b = parse_ss(SS_OUTPUT)
    assert (a["state"], a["local"], a["peer"]) == ("ESTAB", "127.0.0.1:58625", "127.0.0.1:44776")
    assert a["rtt_ms"] == 0.02 and a["cwnd"] == 10 and a["retrans_total"] == 0
    assert a["bytes_received"] == 100000 and a["send_bps"] == 131072000000
    assert b["rtt_ms"] == 205.3 and b["rttvar_ms"] == 12.5 and b["rto_ms"] == 412
    assert (b["retrans"], b["retrans_total"], b["lost"], b["unacked"]) == (1, 2, 1, 3)
    assert b["bytes_retrans"] == 2896 and b["ssthresh"] == 7
    assert b["send_bps"] == 225e3 and b["delivery_rate_bps"] == 180e3
    assert b["minrtt_ms"] == 200.1


def test_parse_ss_tolerates_noise() -> None:
    assert parse_ss("") == []
    assert parse_ss("garbage\n\t rtt:x/y cwnd:lots\n") == []
    (s,) = parse_ss("0 0 10.0.0.1:1 10.0.0.2:2\n\t rtt:oops cwnd:5\n")
    assert s["cwnd"] == 5 and "rtt_ms" not in s


@contextlib.contextmanager
def _loopback_connection(sent: int) -> Iterator[tuple[str, int]]:
    """A TCP connection on a loopback address of its own (address, server port), with
    `sent` bytes sent through it, open while the block runs."""
    addr = f"127.0.0.{100 + os.getpid() % 100}"
    srv = socket.create_server((addr, 0))
    port = srv.getsockname()[1]
    cli = socket.create_connection((addr, port), source_address=(addr, 0))
    conn, _ = srv.accept()
    try:
        cli.sendall(b"x" * sent)
        conn.recv(65536)
        yield addr, port
    finally:
        for s in (cli, conn, srv):
            s.close()


@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) is not installed")
def test_sample_tcp_sees_a_loopback_connection() -> None:
    with _loopback_connection(50_000) as (addr, port):
        sockets = trio.run(sample_tcp, None, addr)
    mine = [s for s in sockets if s["local"] == f"{addr}:{port}" or s["peer"] == f"{addr}:{port}"]
    assert len(mine) == 2
    assert all(s["rtt_ms"] > 0 and s["cwnd"] > 0 for s in mine)
    assert max(s.get("bytes_sent", 0) for s in mine) >= 50_000


def _can_netns() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("ss") is not None


@pytest.mark.live
@pytest.mark.skipif(not _can_netns(), reason="needs root and iproute2 to create a netns")
def test_sample_tcp_inside_a_network_namespace() -> None:
    ns = f"obs-tel-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    holder = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        # a connection that lives inside the namespace until we close its stdin
        code = (
            "import socket,sys\ns=socket.create_server(('127.0.0.1',7777))\n"
            "c=socket.create_connection(('127.0.0.1',7777));a,_=s.accept()\n"
            "c.sendall(b'y'*20000);a.recv(65536);print('ready',flush=True);sys.stdin.read()"
        )
        holder = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        sockets = trio.run(sample_tcp, ns)
        assert {s["local"] for s in sockets} >= {"127.0.0.1:7777"}
        assert all(s["rtt_ms"] > 0 for s in sockets)
    finally:
        if holder is not None:
            holder.communicate("", timeout=10)
        subprocess.run(["ip", "netns", "del", ns], check=False)
    assert not Path(f"/run/netns/{ns}").exists()


def test_sample_tcp_in_a_missing_namespace_is_a_one_line_error() -> None:
    if not _can_netns():
        pytest.skip("needs root and iproute2")
    with pytest.raises(EnvironmentProblem, match="obs-no-such-ns"):
        trio.run(sample_tcp, "obs-no-such-ns")


@dataclasses.dataclass
class FakeStats:  # shaped like netem's LinkStats
    packets: int
    bytes: int
    drops: int
    queue_delay_ms: float | None


def test_sampler_writes_link_and_tcp_records(tmp_path: Path) -> None:
    calls = []

    def stats() -> dict[tuple[str, str], object]:
        calls.append(1)
        return {
            ("198.18.0.2", "198.18.0.3"): FakeStats(10 * len(calls), 900, len(calls) - 1, 1.5),
            ("198.18.0.3", "198.18.0.2"): {"packets": 4, "drops": 0, "queue_delay_ms": None},
        }

    sampler = TelemetrySampler(tmp_path, {"g/0": ("obs-no-such-ns", None)}, link_stats=stats)

    async def main() -> None:
        await sampler.sample_once()
        await sampler.sample_once()
        sampler.close()

    trio.run(main)
    recs = read_telemetry(tmp_path)
    links = [r for r in recs if r["kind"] == "link"]
    assert [(r["src"], r["packets"], r["drops"]) for r in links if r["dst"] == "198.18.0.3"] == [
        ("198.18.0.2", 10, 0),
        ("198.18.0.2", 20, 1),
    ]
    assert links[1]["bytes"] is None and links[1]["queue_delay_ms"] is None
    errors = [r for r in recs if r["kind"] == "error"]
    assert len(errors) == 1 and errors[0]["source"] == "g/0"  # recorded once, not per sample
    assert all(
        isinstance(json.loads(x), dict)
        for x in (tmp_path / "telemetry.jsonl").read_text().splitlines()
    )


def test_a_link_is_written_from_the_sample_before_its_first_packet(tmp_path: Path) -> None:
    """Most directions of a large network never carry a packet: they are not written, but
    the last all-zero sample before a link's first packet is, with its own time, so the
    analysis still finds a sample before any hop on it."""
    counts = {"a": [0, 0, 0, 5, 5, 7], "b": [0] * 6}  # a: used from the 4th sample on
    sample = iter(range(6))

    def stats() -> dict[tuple[str, str], dict[str, object]]:
        i = next(sample)
        return {(f"198.18.0.{n}", "198.18.0.9"): {"packets": c[i], "bytes": c[i] * 100,
                                                  "drops": 0, "queue_delay_ms": None}
                for n, c in ((2, counts["a"]), (3, counts["b"]))}

    sampler = TelemetrySampler(tmp_path, {}, link_stats=stats)
    after = []  # when each sample was done

    async def main() -> None:
        for _ in range(6):
            await sampler.sample_once()
            after.append(time.clock_gettime(time.CLOCK_MONOTONIC))
            await trio.sleep(0.01)
        sampler.close()

    trio.run(main)
    links = [r for r in read_telemetry(tmp_path) if r["kind"] == "link"]
    assert all(r["src"] == "198.18.0.2" for r in links)  # b never carried a packet
    assert [r["packets"] for r in links] == [0, 5, 5, 7]
    assert after[1] < links[0]["mono"] < after[2] < links[1]["mono"]  # the 3rd, written late
    assert [r["mono"] for r in links] == sorted(r["mono"] for r in links)


def test_sampler_survives_a_failing_link_stats_callable(tmp_path: Path) -> None:
    def broken() -> dict[tuple[str, str], object]:
        raise RuntimeError("backend closed")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            s = TelemetrySampler(tmp_path, {}, link_stats=broken)
            await nursery.start(s.run, 0.01)
            await trio.sleep(0.05)
            nursery.cancel_scope.cancel()

    trio.run(main)
    (err,) = [r for r in read_telemetry(tmp_path) if r["kind"] != "cpu"]
    assert err["kind"] == "error" and "backend closed" in err["error"]


@pytest.mark.skipif(cpu_wait_us_total() is None, reason="this kernel has no PSI (/proc/pressure)")
def test_sampler_records_the_hosts_cpu_pressure(tmp_path: Path) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            s = TelemetrySampler(tmp_path, {})
            await nursery.start(s.run, 0.05)
            end = trio.current_time() + 0.3
            while trio.current_time() < end:  # keep a CPU busy meanwhile
                await trio.lowlevel.checkpoint()
            nursery.cancel_scope.cancel()

    trio.run(main)
    cpu = [r["wait_us_total"] for r in read_telemetry(tmp_path) if r["kind"] == "cpu"]
    assert len(cpu) >= 3 and cpu == sorted(cpu)


def test_cpu_pressure_is_read_from_psi(tmp_path: Path) -> None:
    psi = tmp_path / "cpu"
    psi.write_text(
        "some avg10=38.68 avg60=41.05 avg300=34.65 total=2429959303\n"
        "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    )
    assert cpu_wait_us_total(psi) == 2429959303
    assert cpu_wait_us_total(tmp_path / "missing") is None


def test_sampler_reads_sockets_without_running_a_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One `ss` per instance per sample was a thousand processes a sample at 1,000
    instances: the sampler now reads every namespace's sockets from one thread."""

    def no_process(*args: object, **kwargs: object) -> None:
        raise AssertionError("the sampler started a process")

    monkeypatch.setattr(trio, "run_process", no_process)
    monkeypatch.setattr(subprocess, "Popen", no_process)
    with _loopback_connection(20_000) as (addr, _):
        sampler = TelemetrySampler(tmp_path, {"a/0": (None, addr), "a/1": (None, "127.0.0.254"),
                                              "a/2": ("obs-no-such-ns", None)})
        trio.run(sampler.sample_once)
        sampler.close()
    recs = read_telemetry(tmp_path)
    tcp = [r for r in recs if r["kind"] == "tcp"]
    assert {r["instance"] for r in tcp} == {"a/0"} and len(tcp) == 2
    assert all(r["local"].startswith(f"{addr}:") and r["rtt_ms"] > 0 for r in tcp)
    errors = [r for r in recs if r["kind"] == "error"]
    assert [e["source"] for e in errors] == ["a/2"] and "obs-no-such-ns" in errors[0]["error"]


def test_a_socket_with_no_round_trip_yet_has_no_rtt() -> None:
    """A SYN-SENT socket's tcp_info holds rtt 0 and min_rtt ~0U (unset); `ss` prints neither,
    and a sample must not report a 0 ms (or 4295 s) round trip for it."""
    from harness.observe._sockdiag import _tcp_info

    info = bytearray(232)
    struct.pack_into("=I", info, 72, 250_000)  # rttvar: the kernel's initial 250 ms
    struct.pack_into("=I", info, 148, 0xFFFFFFFF)  # min_rtt unset
    out = _tcp_info(bytes(info))
    assert "rtt_ms" not in out and "rttvar_ms" not in out and "minrtt_ms" not in out
    struct.pack_into("=I", info, 68, 51_000)
    struct.pack_into("=I", info, 148, 50_500)
    out = _tcp_info(bytes(info))
    assert (out["rtt_ms"], out["minrtt_ms"]) == (51.0, 50.5)
