"""Batched rtnetlink: several requests in one datagram, one pass over the acks.

pyroute2's message classes encode the requests; sending them together over a socket that
belongs to the target namespace costs one system call pair per namespace instead of a
round trip (and an event-loop turn) per request.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from ipaddress import IPv4Address

from pyroute2.netlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    nlmsg_base,
)
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_NEWADDR, RTM_NEWLINK, RTM_NEWNEIGH
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg

_NLMSG_ERROR = 2
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_ERRNO = struct.Struct("=i")


def link_up(index: int, ifname: str | None = None) -> nlmsg_base:
    """Set link `index` up; with `ifname`, also (re)name it, which fails if it is missing."""
    msg = ifinfmsg()
    msg["index"] = index
    msg["flags"] = IFF_UP
    msg["change"] = IFF_UP
    if ifname is not None:
        msg["attrs"] = [("IFLA_IFNAME", ifname)]
    msg["header"]["type"] = RTM_NEWLINK
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK
    return msg


def add_veth(
    ifname: str,
    index: int,
    master: int,
    peer_ifname: str,
    peer_netns_fd: int,
    peer_index: int,
    peer_mac: str,
) -> nlmsg_base:
    """A veth pair: `ifname` here, with ifindex `index`, up and enslaved to `master`; its
    peer `peer_ifname` created directly in the namespace of `peer_netns_fd`, with ifindex
    `peer_index` and MAC address `peer_mac`. The kernel refuses an index already taken."""
    peer = {
        "index": peer_index,
        "attrs": [
            ("IFLA_IFNAME", peer_ifname),
            ("IFLA_NET_NS_FD", peer_netns_fd),
            ("IFLA_ADDRESS", peer_mac),
        ],
    }
    msg = ifinfmsg()
    msg["index"] = index
    msg["flags"] = IFF_UP
    msg["change"] = IFF_UP
    msg["attrs"] = [
        ("IFLA_IFNAME", ifname),
        ("IFLA_MASTER", master),
        (
            "IFLA_LINKINFO",
            {
                "attrs": [
                    ("IFLA_INFO_KIND", "veth"),
                    ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer)]}),
                ]
            },
        ),
    ]
    msg["header"]["type"] = RTM_NEWLINK
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    return msg


def add_address(index: int, ip: IPv4Address, prefixlen: int) -> nlmsg_base:
    """Add ip/prefixlen to link `index` (the kernel adds the prefix route with it)."""
    msg = ifaddrmsg()
    msg["family"] = socket.AF_INET
    msg["prefixlen"] = prefixlen
    msg["index"] = index
    msg["attrs"] = [("IFA_LOCAL", str(ip)), ("IFA_ADDRESS", str(ip))]
    msg["header"]["type"] = RTM_NEWADDR
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    return msg


_NDMSG = struct.Struct("=BBHiHBB")  # family, pad, pad, ifindex, state, flags, type
_NDA_DST, _NDA_LLADDR = 1, 2
_NUD_REACHABLE, _NUD_NOARP, _NUD_PERMANENT = 0x02, 0x40, 0x80
_NTF_MASTER = 0x04
_AF_BRIDGE = 7


def add_neighbour(index: int, ip: IPv4Address, mac: str) -> bytes:
    """A permanent neighbour (ARP) entry ip -> mac on link `index`, encoded by hand: a run
    of 200 hosts adds 40,000 of them, and pyroute2's encoder costs ~25 us each."""
    lladdr = bytes.fromhex(mac.replace(":", ""))
    body = (
        _NDMSG.pack(socket.AF_INET, 0, 0, index, _NUD_PERMANENT, 0, 0)
        + struct.pack("=HH4s", 8, _NDA_DST, ip.packed)
        + struct.pack("=HH6sxx", 10, _NDA_LLADDR, lladdr)
    )
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
    return _HEADER.pack(_HEADER.size + len(body), RTM_NEWNEIGH, flags, 0, 0) + body


def add_fdb(port_index: int, mac: str) -> bytes:
    """A static entry in a bridge's forwarding table: frames to `mac` leave by port
    `port_index` (`bridge fdb add MAC dev PORT master static`)."""
    lladdr = bytes.fromhex(mac.replace(":", ""))
    body = _NDMSG.pack(
        _AF_BRIDGE, 0, 0, port_index, _NUD_NOARP | _NUD_REACHABLE, _NTF_MASTER, 0
    ) + struct.pack("=HH6sxx", 10, _NDA_LLADDR, lladdr)
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
    return _HEADER.pack(_HEADER.size + len(body), RTM_NEWNEIGH, flags, 0, 0) + body


BATCH = 100
"""Requests per datagram: keeps a datagram and its acks well inside the socket buffers."""


def send_batch(sock: socket.socket, messages: Sequence[nlmsg_base | bytes]) -> None:
    """Send `messages` (pyroute2 messages or encoded ones) in one datagram (at most BATCH)
    and wait for every ack; the first refusal raises `NetlinkError` (the kernel goes on
    with the later messages regardless)."""
    if len(messages) > BATCH:
        raise ValueError(f"at most {BATCH} messages per batch, not {len(messages)}")
    chunks = []
    for seq, msg in enumerate(messages, 1):
        if isinstance(msg, bytes):
            chunks.append(msg[:8] + struct.pack("=I", seq) + msg[12:])
            continue
        msg["header"]["sequence_number"] = seq
        msg.encode()
        chunks.append(bytes(msg.data))
    sock.send(b"".join(chunks))
    pending = set(range(1, len(messages) + 1))
    first_error: tuple[int, int] | None = None
    while pending:
        data = sock.recv(65536)
        offset = 0
        while offset + _HEADER.size <= len(data):
            length, kind, _, seq, _ = _HEADER.unpack_from(data, offset)
            if length < _HEADER.size:
                break
            if kind == _NLMSG_ERROR and seq in pending:
                pending.discard(seq)
                (code,) = _ERRNO.unpack_from(data, offset + _HEADER.size)
                if code and (first_error is None or seq < first_error[0]):
                    first_error = (seq, -code)
            offset += (length + 3) & ~3
    if first_error is not None:
        raise NetlinkError(first_error[1])
