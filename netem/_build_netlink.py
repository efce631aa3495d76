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

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, nlmsg_base
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_NEWADDR, RTM_NEWLINK
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
    ifname: str, master: int, peer_ifname: str, peer_netns_fd: int, peer_index: int
) -> nlmsg_base:
    """A veth pair: `ifname` here, up and enslaved to `master`; its peer `peer_ifname`
    created directly in the namespace of `peer_netns_fd`, with ifindex `peer_index`."""
    peer = {
        "index": peer_index,
        "attrs": [("IFLA_IFNAME", peer_ifname), ("IFLA_NET_NS_FD", peer_netns_fd)],
    }
    msg = ifinfmsg()
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


BATCH = 100
"""Requests per datagram: keeps a datagram and its acks well inside the socket buffers."""


def send_batch(sock: socket.socket, messages: Sequence[nlmsg_base]) -> None:
    """Send `messages` in one datagram (at most BATCH) and wait for every ack; the first
    refusal raises `NetlinkError` (the kernel goes on with the later messages regardless)."""
    if len(messages) > BATCH:
        raise ValueError(f"at most {BATCH} messages per batch, not {len(messages)}")
    chunks = []
    for seq, msg in enumerate(messages, 1):
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
