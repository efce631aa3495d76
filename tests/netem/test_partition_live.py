"""Live: partitions and drop rules cut exactly the directions they name."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

import netem
from netem import Host, LinkShape, Network
from netem._build._ns import run_in_netns
from tests.conftest import IN_KERNEL_VM

pytestmark = pytest.mark.live

PORT = 40_404
# How long the datagrams sent into a partition are held: its heal (an iptables-restore)
# must come within it; in the kernel VM, emulated and niced under the host's tests, it
# took over 0.4 s.
HELD_S = 5.0 if IN_KERNEL_VM else 0.4
# How long a receiver waits for a datagram over a 200 ms link, and for the next one: in the
# kernel VM a stall of the emulated machine can hold a packet's receipt that long.
WAIT_S = 1.0 if IN_KERNEL_VM else 0.3
QUIET_S = 2.0 if IN_KERNEL_VM else 0.6


def udp_socket(host: Host) -> socket.socket:
    """A UDP socket living in the host's namespace, bound to its data address."""

    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((str(host.ip), PORT))
        s.settimeout(WAIT_S)
        return s

    return run_in_netns(host.netns_path, make)


def delivered(
    sockets: dict[str, socket.socket], hosts: dict[str, Host], src: str, dst: str
) -> bool:
    """Send a datagram src -> dst (a few tries, for ARP) and say whether it arrived."""
    token = f"{src}->{dst}".encode()
    for _ in range(3):
        sockets[src].sendto(token, (str(hosts[dst].ip), PORT))
        try:
            while True:
                data, _ = sockets[dst].recvfrom(100)
                if data == token:
                    return True
        except TimeoutError:
            continue
    return False


def ping_ok(src: Host, dst: Host) -> bool:
    return (
        subprocess.run(
            ["ip", "netns", "exec", src.netns, "ping", "-c", "1", "-W", "1", "-n", str(dst.ip)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )


@pytest.fixture
def net(prefix: str, live: None) -> Iterator[Network]:
    network = Network(prefix=prefix, backend="none")
    network.build(4)
    yield network
    network.close()


def test_partition_both_ways_then_heal(net: Network) -> None:
    h1, h2, h3, h4 = net.hosts
    assert ping_ok(h1, h3) and ping_ok(h3, h1)
    net.partition({h1, h2}, {h3, h4})
    assert not ping_ok(h1, h3) and not ping_ok(h4, h2)
    assert ping_ok(h1, h2) and ping_ok(h3, h4)  # each side still works inside
    net.heal()
    assert ping_ok(h1, h3) and ping_ok(h4, h2)


def test_oneway_partition_cuts_one_direction(net: Network) -> None:
    hosts = {h.name: h for h in net.hosts}
    sockets = {name: udp_socket(h) for name, h in hosts.items()}
    try:
        assert delivered(sockets, hosts, "h1", "h2") and delivered(sockets, hosts, "h2", "h1")
        net.partition(["h1"], ["h2"], oneway=True)
        assert not delivered(sockets, hosts, "h1", "h2")
        assert delivered(sockets, hosts, "h2", "h1")
        assert delivered(sockets, hosts, "h1", "h3")
        net.heal(["h1"], ["h2"])
        assert delivered(sockets, hosts, "h1", "h2")
    finally:
        for s in sockets.values():
            s.close()


def test_drop_rule_from_a_request(net: Network) -> None:
    hosts = {h.name: h for h in net.hosts}
    sockets = {name: udp_socket(h) for name, h in hosts.items()}
    try:
        config = {"rules": [{"peers": [str(hosts["h4"].ip)], "drop": True}]}
        net.apply_request("h3", config, asked_by="single/2")
        assert not delivered(sockets, hosts, "h3", "h4")
        assert delivered(sockets, hosts, "h4", "h3")
        net.apply_request("h3", {"enabled": False}, asked_by="single/2")
        assert not delivered(sockets, hosts, "h1", "h3") and not delivered(
            sockets, hosts, "h3", "h1"
        )
        net.apply_request("h3", {}, asked_by="single/2")
        assert delivered(sockets, hosts, "h3", "h4") and delivered(sockets, hosts, "h1", "h3")
    finally:
        for s in sockets.values():
            s.close()


def rtt_ms(src: Host, dst: Host) -> float | None:
    """Mean RTT of 3 pings, or None when none came back."""
    proc = subprocess.run(
        ["ip", "netns", "exec", src.netns, "ping", "-c3", "-i0.2", "-W1", "-n", str(dst.ip)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return None
    return float(proc.stdout.strip().splitlines()[-1].split("=")[1].split("/")[1])


def test_partition_cuts_a_shaped_pair_with_the_real_backend(prefix: str, live: None) -> None:
    """With the machine's own backend (auto): a shaped pair is cut. The userspace shaper's
    queue comes before the drops, for packets it has not let go yet (marked when it does),
    so that the drops judge a packet at its due time."""
    try:
        network = Network(prefix=prefix, backend="auto")
    except netem.NetemError as e:
        pytest.skip(f"no shaping backend here: {e}")
    with network as net:
        h1, h2, _ = net.build(3)
        net.set_rule(h1, h2, LinkShape(latency_ms=30))
        before = rtt_ms(h1, h2)
        assert before is not None and before >= 30
        net.partition([h1], [h2], oneway=True)
        assert rtt_ms(h1, h2) is None
        net.heal()
        after = rtt_ms(h1, h2)
        assert after is not None and after >= 30
        saved = subprocess.run(
            ["ip", "netns", "exec", net.hub_netns, "iptables-save", "-t", "filter"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        forward = [ln for ln in saved.splitlines() if ln.startswith("-A FORWARD")]
        assert "-A FORWARD -j NETEM-DROP" in forward
        if net.backend.name == "userspace":
            assert forward[0] == ("-A FORWARD -m mark ! --mark 0x10000000/0x10000000 "
                                  "-j NETEM-QUEUE")


def in_flight_backend(kind: str) -> netem.Backend:
    """The backend `kind` names ("kernel", or the userspace engine "c" or "python"), or skip."""
    if kind == "kernel":
        if not netem.has_sch_netem():
            pytest.skip("no sch_netem in this kernel")
        return netem.KernelBackend()
    if kind == "python":
        pytest.importorskip("netfilterqueue")
    return netem.UserspaceBackend(implementation="c" if kind == "c" else "python")


@contextlib.contextmanager
def shaped_pair(
    prefix: str, kind: str, shape: LinkShape
) -> Iterator[tuple[Network, Host, Host, socket.socket, socket.socket]]:
    """Two hosts on backend `kind`, h1 -> h2 shaped, and a UDP socket on each."""
    with Network(prefix=prefix, backend=in_flight_backend(kind)) as net:
        h1, h2 = net.build(2)
        net.set_rule(h1, h2, shape)
        sender, receiver = udp_socket(h1), udp_socket(h2)
        try:
            yield net, h1, h2, sender, receiver
        finally:
            sender.close()
            receiver.close()


def _arrivals(receiver: socket.socket, within_s: float) -> list[bytes]:
    """What `receiver` gets until nothing more comes for `within_s`."""
    receiver.settimeout(within_s)
    got: list[bytes] = []
    with contextlib.suppress(TimeoutError):
        while True:
            got.append(receiver.recv(100))
    return got


def _drain(receiver: socket.socket) -> None:
    """Take what arrived already (before a partition took effect)."""
    receiver.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            receiver.recv(100)


@pytest.mark.parametrize("kind", ["kernel", "c", "python"])
def test_partition_drops_the_packets_in_flight(prefix: str, live: None, kind: str) -> None:
    """Packets still delayed when a partition starts are dropped at their due time, as the
    kernel's netem (which delays before the hub's drops) does; after the heal the pair
    carries traffic again."""
    with shaped_pair(prefix, kind, LinkShape(latency_ms=200)) as (net, h1, h2, sender,
                                                                   receiver):
        pair = {"h1": sender, "h2": receiver}, {"h1": h1, "h2": h2}
        assert delivered(*pair, "h1", "h2")
        for n in range(40):  # 40 datagrams in about 40 ms: all of them held 200 ms
            sender.sendto(b"stream %d" % n, (str(h2.ip), PORT))
            time.sleep(0.001)
        net.partition([h1], [h2])
        _drain(receiver)
        assert _arrivals(receiver, QUIET_S) == []
        net.heal()
        receiver.settimeout(WAIT_S)
        assert delivered(*pair, "h1", "h2")


@pytest.mark.parametrize("kind", ["kernel", "c", "python"])
def test_a_packet_sent_into_a_partition_healed_before_its_due_time_arrives(
    prefix: str, live: None, kind: str
) -> None:
    """The drops judge a delayed packet when it reaches them, at its due time: one sent
    while the pair is cut arrives if the cut is healed by then (the kernel's netem delays
    before the hub; the userspace engine's queue comes before the drops)."""
    with shaped_pair(prefix, kind, LinkShape(latency_ms=HELD_S * 1000)) as (
            net, h1, h2, sender, receiver):
        receiver.settimeout(HELD_S + 0.3)
        assert delivered({"h1": sender, "h2": receiver}, {"h1": h1, "h2": h2}, "h1", "h2")
        net.partition([h1], [h2], oneway=True)
        sent = [b"into the cut %d" % n for n in range(10)]
        start = time.monotonic()
        for data in sent:
            sender.sendto(data, (str(h2.ip), PORT))
        net.heal()
        took = time.monotonic() - start
        assert took < HELD_S, f"the heal took {took:.2f} s; the datagrams are held {HELD_S} s"
        assert sorted(_arrivals(receiver, HELD_S + 1.0)) == sorted(sent)


@pytest.mark.parametrize("kind", ["kernel", "c", "python"])
def test_a_partition_drops_the_copies_of_duplicated_packets_in_flight(
    prefix: str, live: None, kind: str
) -> None:
    """A duplicate's copy held when a partition starts is dropped at its due time as the
    packet is; without the partition both arrive."""
    shape = LinkShape(latency_ms=200, duplicate_pct=100)
    with shaped_pair(prefix, kind, shape) as (net, h1, h2, sender, receiver):
        sender.sendto(b"twice", (str(h2.ip), PORT))
        assert _arrivals(receiver, QUIET_S) == [b"twice", b"twice"]
        for n in range(20):  # all of them and their copies held 200 ms
            sender.sendto(b"stream %d" % n, (str(h2.ip), PORT))
        net.partition([h1], [h2])
        _drain(receiver)
        assert _arrivals(receiver, QUIET_S) == []
