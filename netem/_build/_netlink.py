"""Batched rtnetlink: several requests in one datagram, one pass over the acks.

The few requests a network's build makes (thousands at 1,000 hosts) are encoded here by hand:
pyroute2's encoder took about 0.35 ms a host, on the build's one thread. Sending them
together over a socket that belongs to the target namespace costs one system call pair per
namespace instead of a round trip per request.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator, Sequence
from ipaddress import IPv4Address

from pyroute2.netlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
)
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_GETLINK, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWNEIGH
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP

_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_ERRNO = struct.Struct("=i")
_ATTR = struct.Struct("=HH")  # nlattr: len, type
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, pad, type, index, flags, change
_IFADDR = struct.Struct("=BBBBi")  # ifaddrmsg: family, prefixlen, flags, scope, index
_IFLA_ADDRESS, _IFLA_IFNAME, _IFLA_MASTER, _IFLA_LINKINFO, _IFLA_NET_NS_FD = 1, 3, 10, 18, 28
_IFLA_NUM_TX_QUEUES, _IFLA_NUM_RX_QUEUES = 31, 32
_IFLA_OPERSTATE = 16
IF_OPER_UP = 6
_IFLA_INFO_KIND, _IFLA_INFO_DATA, _VETH_INFO_PEER = 1, 2, 1
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_U32 = struct.Struct("=I")


def _attr(kind: int, payload: bytes) -> bytes:
    """One attribute, padded to 4 bytes (a nested one's payload is its padded attributes)."""
    size = _ATTR.size + len(payload)
    return _ATTR.pack(size, kind) + payload + bytes(-size % 4)


def _name(name: str) -> bytes:
    return name.encode() + b"\0"


def _mac(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def _message(kind: int, flags: int, body: bytes) -> bytes:
    return _HEADER.pack(_HEADER.size + len(body), kind, flags, 0, 0) + body


def link_up(index: int, ifname: str | None = None) -> bytes:
    """Set link `index` up; with `ifname`, also (re)name it, which fails if it is missing."""
    body = _IFINFO.pack(0, 0, index, IFF_UP, IFF_UP)
    if ifname is not None:
        body += _attr(_IFLA_IFNAME, _name(ifname))
    return _message(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, body)


def add_veth(
    ifname: str,
    index: int,
    master: int,
    peer_ifname: str,
    peer_netns_fd: int,
    peer_index: int,
    peer_mac: str,
) -> bytes:
    """A veth pair: `ifname` here, with ifindex `index`, up and enslaved to `master`; its
    peer `peer_ifname` created directly in the namespace of `peer_netns_fd`, with ifindex
    `peer_index` and MAC address `peer_mac`. The kernel refuses an index already taken.

    Each end is made with one queue each way, the number a veth uses when none is asked
    for: made with one per CPU instead, it is cut down to one once registered, and each
    cut waits for an RCU grace period with the kernel's network configuration lock held
    (at 1,000 hosts, 8 % of the build's CPU, and every other request waiting)."""
    queues = _attr(_IFLA_NUM_TX_QUEUES, _U32.pack(1)) + _attr(_IFLA_NUM_RX_QUEUES, _U32.pack(1))
    peer = (
        _IFINFO.pack(0, 0, peer_index, 0, 0)
        + _attr(_IFLA_IFNAME, _name(peer_ifname))
        + _attr(_IFLA_NET_NS_FD, _U32.pack(peer_netns_fd))
        + _attr(_IFLA_ADDRESS, _mac(peer_mac))
        + queues
    )
    info = _attr(_IFLA_INFO_KIND, _name("veth")) + _attr(
        _IFLA_INFO_DATA, _attr(_VETH_INFO_PEER, peer)
    )
    body = (
        _IFINFO.pack(0, 0, index, IFF_UP, IFF_UP)
        + _attr(_IFLA_IFNAME, _name(ifname))
        + _attr(_IFLA_MASTER, _U32.pack(master))
        + queues
        + _attr(_IFLA_LINKINFO, info)
    )
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    return _message(RTM_NEWLINK, flags, body)


def add_address(index: int, ip: IPv4Address, prefixlen: int) -> bytes:
    """Add ip/prefixlen to link `index` (the kernel adds the prefix route with it)."""
    body = (
        _IFADDR.pack(socket.AF_INET, prefixlen, 0, 0, index)
        + _attr(_IFA_LOCAL, ip.packed)
        + _attr(_IFA_ADDRESS, ip.packed)
    )
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    return _message(RTM_NEWADDR, flags, body)


_NDMSG = struct.Struct("=BBHiHBB")  # family, pad, pad, ifindex, state, flags, type
_NDA_DST, _NDA_LLADDR = 1, 2
_NUD_REACHABLE, _NUD_NOARP, _NUD_PERMANENT = 0x02, 0x40, 0x80
_NTF_MASTER = 0x04
_AF_BRIDGE = 7


def add_neighbour(index: int, ip: IPv4Address, mac: str) -> bytes:
    """A permanent neighbour (ARP) entry ip -> mac on link `index` (a run of 200 hosts
    adds 40,000 of them)."""
    body = (
        _NDMSG.pack(socket.AF_INET, 0, 0, index, _NUD_PERMANENT, 0, 0)
        + _attr(_NDA_DST, ip.packed)
        + _attr(_NDA_LLADDR, _mac(mac))
    )
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
    return _message(RTM_NEWNEIGH, flags, body)


def add_fdb(port_index: int, mac: str) -> bytes:
    """A static entry in a bridge's forwarding table: frames to `mac` leave by port
    `port_index` (`bridge fdb add MAC dev PORT master static`)."""
    body = _NDMSG.pack(
        _AF_BRIDGE, 0, 0, port_index, _NUD_NOARP | _NUD_REACHABLE, _NTF_MASTER, 0
    ) + _attr(_NDA_LLADDR, _mac(mac))
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
    return _message(RTM_NEWNEIGH, flags, body)


BATCH = 100
"""Requests per datagram: keeps a datagram and its acks well inside the socket buffers."""


def send_batch(sock: socket.socket, messages: Sequence[bytes]) -> None:
    """Send `messages` (encoded by this module's functions) in one datagram (at most BATCH),
    numbered in their order, and wait for every ack; the first refusal raises
    `NetlinkError` (the kernel goes on with the later messages regardless)."""
    if len(messages) > BATCH:
        raise ValueError(f"at most {BATCH} messages per batch, not {len(messages)}")
    sock.send(b"".join(
        msg[:8] + _U32.pack(seq) + msg[12:] for seq, msg in enumerate(messages, 1)
    ))  # fmt: skip
    pending = set(range(1, len(messages) + 1))
    first_error: tuple[int, int] | None = None
    while pending:
        data = sock.recv(65536)
        for kind, seq, body, _ in _messages(data):
            if kind == _NLMSG_ERROR and seq in pending:
                pending.discard(seq)
                (code,) = _ERRNO.unpack_from(data, body)
                if code and (first_error is None or seq < first_error[0]):
                    first_error = (seq, -code)
    if first_error is not None:
        raise NetlinkError(first_error[1])


def _messages(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """(type, sequence number, offset of the body, offset of the end) of each message in a
    datagram read from a netlink socket."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _, seq, _ = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            return
        yield kind, seq, offset + _HEADER.size, offset + length
        offset += (length + 3) & ~3


def operstates(sock: socket.socket) -> dict[int, int]:
    """The operational state (RFC 2863: `IF_OPER_UP`...) of every link of the socket's
    namespace, by ifindex: one dump."""
    sock.send(_message(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, _IFINFO.pack(0, 0, 0, 0, 0)))
    states: dict[int, int] = {}
    while True:
        data = sock.recv(65536)
        for kind, _, body, end in _messages(data):
            if kind in (_NLMSG_DONE, _NLMSG_ERROR):  # both carry an errno (0: none)
                (code,) = _ERRNO.unpack_from(data, body) if end - body >= 4 else (0,)
                if code:
                    raise NetlinkError(-code)
                return states
            if kind == RTM_NEWLINK:
                index = _IFINFO.unpack_from(data, body)[2]
                attr = body + _IFINFO.size
                while attr + _ATTR.size <= end:
                    size, attr_kind = _ATTR.unpack_from(data, attr)
                    if size < _ATTR.size:
                        break
                    if attr_kind == _IFLA_OPERSTATE:
                        states[index] = data[attr + _ATTR.size]
                        break
                    attr += (size + 3) & ~3
