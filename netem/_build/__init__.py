"""Building and removing the namespaces and links of a network, through netlink.

Layout: one hub namespace holding a Linux bridge; per host a namespace holding one end of a
veth pair whose other end is a port of the bridge. Each veth pair is created inside the hub
with its peer placed straight into the host's namespace, so nothing ever appears in the
namespace the caller runs in.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Sequence
from ipaddress import IPv4Network

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netem._build import _netlink as nl
from netem._build import _ns as ns
from netem import _names as names
from netem._errors import NetworkError
from netem._hosts import Host

# The host end of a veth is created with this index: in a fresh namespace only lo (1) exists.
_HOST_IFINDEX = 2
_HUB_PORT_BASE = 16
STATIC_NEIGHBOURS_MAX = 300
"""Up to this many hosts, each knows every other's MAC from the start (permanent entries,
n * (n - 1) of them); beyond, hosts learn them by ARP, and the kernel's shared table of
1024 learned entries bounds how many peers all hosts together can reach at once."""


def _hub_port(host: Host) -> int:
    """The ifindex of the hub's end of `host`'s veth, asked for when it is made: the hub
    holds only lo and the bridge below it, and knowing it spares a dump of every link."""
    return _HUB_PORT_BASE + host.number


def _quiet_namespace(_: str) -> socket.socket:
    """Inside a new namespace: no IPv6 (nothing but the data network reaches a host, and
    partitions are IPv4 rules), then a netlink socket bound to the namespace."""
    # `all` sets `default` too (addrconf_disable_ipv6): one write, as each costs a walk
    # past every namespace's entry of the same name (two took 13 % of building 1,000).
    with contextlib.suppress(FileNotFoundError):  # a kernel booted without IPv6
        ns.write_sysctl("net/ipv6/conf/all/disable_ipv6", "1")
    return ns.netlink_socket()


def _route(sock: socket.socket) -> IPRoute:
    return IPRoute(fileno=sock.detach())


def create_hub(prefix: str, created: list[str]) -> None:
    """The hub namespace with its bridge, up. Bridged IPv4 must pass iptables there (for
    partitions and the userspace shaper): `bridge-nf-call-iptables` is checked and set."""
    hub = names.hub_netns(prefix)

    def setup(_: str) -> socket.socket:
        key = "net/bridge/bridge-nf-call-iptables"
        value = ns.read_sysctl(key)
        if value is None:
            raise NetworkError(
                "bridged traffic cannot reach iptables: the br_netfilter kernel module is not "
                "loaded (as root: modprobe br_netfilter)"
            )
        if value != "1":
            ns.write_sysctl(key, "1")
        return _quiet_namespace(_)

    (sock,) = ns.create_namespaces([hub], setup, created)
    with _route(sock) as ipr:
        # No multicast snooping: the hosts join no groups, and with it every port's coming
        # and going arms and stops the bridge's multicast timers (3 % of building 1,000).
        ipr.link("add", ifname=names.bridge_ifname(prefix), kind="bridge", state="up",
                 br_mcast_snooping=0)
        ipr.link("set", index=1, state="up")


def add_hosts(
    prefix: str, network: IPv4Network, numbers: Sequence[int], created: list[str]
) -> list[Host]:
    """Namespaces, links and addresses for hosts `numbers` (address: network + number)."""
    hosts = []
    for number in numbers:
        if not 1 <= number <= names.MAX_HOST_NUMBER:
            raise NetworkError(f"host number {number} is out of range")
        ip = network.network_address + number
        if ip not in network or ip == network.broadcast_address:
            raise NetworkError(f"subnet {network} has no address left for host h{number}")
        hosts.append(
            Host(
                name=names.host_name(number),
                number=number,
                netns=names.host_netns(prefix, number),
                ip=ip,
                network=network,
                ifname=names.host_ifname(prefix, number),
                hub_ifname=names.hub_ifname(prefix, number),
            )
        )
    socks = ns.create_namespaces([h.netns for h in hosts], _quiet_namespace, created)
    hub = ns.run_in_netns(names.netns_path(names.hub_netns(prefix)), ns.netlink_socket)
    try:
        _link_hosts(hub, prefix, hosts)
        peers = hosts if len(hosts) <= STATIC_NEIGHBOURS_MAX else []
        for host, sock in zip(hosts, socks, strict=True):
            _configure_host(host, sock, peers)
        _wait_until_up(hub, hosts)
    finally:
        hub.close()
        for sock in socks:
            if sock.fileno() >= 0:
                sock.close()
    return hosts


LINKS_UP_TIMEOUT = 30.0
"""Seconds the hub's ports may take to come up once their hosts' ends are up."""


def _wait_until_up(hub: socket.socket, hosts: Sequence[Host],
                   timeout: float = LINKS_UP_TIMEOUT) -> None:
    """Return once every host's port on the bridge is up (`hub`: a netlink socket of the
    hub's namespace). A host's end works as soon as it is set up, but the port at the hub
    is only enabled, and given a queue that does not drop everything, when the kernel's
    link watcher gets to its carrier, under the kernel's network configuration lock: while
    another network is built or removed, that can be long after the build, and the first
    packets sent were lost (a single ping failed)."""
    waiting = {_hub_port(h) for h in hosts}
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        states = nl.operstates(hub)
        waiting = {i for i in waiting if states.get(i) != nl.IF_OPER_UP}
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise NetworkError(
                f"{len(waiting)} of {len(hosts)} hosts' ports on the bridge were not up "
                f"{timeout:g} s after their links were made"
            )
        time.sleep(pause)
        pause = min(2 * pause, 0.05)


def _link_hosts(sock: socket.socket, prefix: str, hosts: Sequence[Host]) -> None:
    """The hosts' veth pairs, made over `sock` (a netlink socket of the hub's namespace),
    and the bridge's forwarding entry for each."""
    fds: list[int] = []
    try:
        with _route(socket.socket(fileno=os.dup(sock.fileno()))) as ipr:
            bridge = ipr.link("get", ifname=names.bridge_ifname(prefix))[0]["index"]
        # One request per host, BATCH to a datagram: the port joins the bridge and comes
        # up as it is made, its peer is made inside the host's namespace.
        for start in range(0, len(hosts), nl.BATCH):
            chunk = hosts[start : start + nl.BATCH]
            for h in chunk:  # one by one, so that an interruption leaves them in `fds`
                fds.append(os.open(h.netns_path, os.O_RDONLY))
            requests = [
                nl.add_veth(h.hub_ifname, _hub_port(h), bridge, h.ifname, fd,
                            _HOST_IFINDEX, names.host_mac(h.ip))
                for h, fd in zip(chunk, fds, strict=True)
            ]  # fmt: skip
            nl.send_batch(sock, requests)
            _close_all(fds)
        # The bridge knows every host's port from the start: it would otherwise flood a
        # frame for a host it has not heard from yet to every port, and at a few hundred
        # hosts those copies overflow the kernel's receive backlog and drop packets.
        fdb = [nl.add_fdb(_hub_port(h), names.host_mac(h.ip)) for h in hosts]
        for start in range(0, len(fdb), nl.BATCH):
            nl.send_batch(sock, fdb[start : start + nl.BATCH])
    finally:
        _close_all(fds)


def _close_all(fds: list[int]) -> None:
    # Popped before closing: a Ctrl-C between two closes must not close one fd twice,
    # which raises EBADF over the KeyboardInterrupt (or closes another thread's file).
    while fds:
        os.close(fds.pop())


def _configure_host(host: Host, sock: socket.socket, peers: Sequence[Host]) -> None:
    # Index 2 was asked for at creation: in a fresh namespace it is our veth or nothing.
    # Naming it in the request makes the kernel refuse, rather than touch another link.
    up = [nl.link_up(1), nl.link_up(_HOST_IFINDEX, host.ifname)]
    address = nl.add_address(_HOST_IFINDEX, host.ip, host.network.prefixlen)
    try:
        index = _HOST_IFINDEX
        try:
            nl.send_batch(sock, [*up, address])
        except NetlinkError:
            with _route(socket.socket(fileno=os.dup(sock.fileno()))) as ipr:
                index = ipr.link("get", ifname=host.ifname)[0]["index"]
                ipr.link("set", index=index, state="up")
                ipr.addr(
                    "add", index=index, address=str(host.ip), prefixlen=host.network.prefixlen
                )
        # Every peer's MAC, as a permanent entry: the kernel's neighbour table is shared by
        # all namespaces and holds 1024 learned entries (gc_thresh3, settable only in the
        # host's namespace); permanent ones do not count, and no ARP is needed at all.
        neighbours = [nl.add_neighbour(index, p.ip, names.host_mac(p.ip)) for p in peers
                      if p.ip != host.ip]  # fmt: skip
        for start in range(0, len(neighbours), nl.BATCH):
            nl.send_batch(sock, neighbours[start : start + nl.BATCH])
    finally:
        if sock.fileno() >= 0:
            sock.close()


def remove_namespaces(netns_names: Sequence[str]) -> list[str]:
    """Kill what still runs inside, then unbind each namespace; returns the names removed.
    Hosts go before the hub so no veth is left dangling into a half-removed hub."""
    ordered = sorted(netns_names, key=lambda n: n.endswith("-hub"))
    # Held open to the end: an unbound namespace with nobody left inside is freed, and a
    # namespace another run makes meanwhile may get its inode number, and its processes
    # the second sweep's SIGKILL.
    held = [fd for fd in map(ns.open_bound, ordered) if fd is not None]
    try:
        inodes = [os.fstat(fd).st_ino for fd in held]
        kill_inside(inodes)
        removed = [name for name in ordered if ns.remove_namespace(name)]
        # A process that was entering a namespace during the first sweep is inside by now.
        kill_inside(inodes)
    finally:
        for fd in held:
            os.close(fd)
    return removed


def kill_inside(inodes: Sequence[int]) -> list[int]:
    """SIGKILL every process in the namespaces with these inodes (they keep them alive)."""
    pids = [p for p in ns.pids_in(inodes) if p != os.getpid()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids
