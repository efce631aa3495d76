"""The build's netlink requests, encoded by hand, are byte for byte what pyroute2's own
message classes encode for the same request (pyroute2 is the reference; no kernel needed)."""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST
from pyroute2.netlink.rtnl import RTM_NEWADDR, RTM_NEWLINK, RTM_NEWNEIGH
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg

from netem._build import _netlink as nl

SEQ = 7
ifnames = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=15)
indexes = st.integers(1, 2**31 - 1)
fds = st.integers(0, 2**20)
macs = st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02x}" for x in b))
ips = st.integers(0, 2**32 - 1).map(IPv4Address)


def _pyroute2(msg: Any, kind: int, flags: int) -> bytes:
    msg["header"]["type"] = kind
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = SEQ
    msg.encode()
    return bytes(msg.data)


def _numbered(encoded: bytes) -> bytes:
    """As `send_batch` numbers it."""
    return encoded[:8] + struct.pack("=I", SEQ) + encoded[12:]


@given(index=indexes, ifname=st.none() | ifnames)
def test_link_up(index: int, ifname: str | None) -> None:
    msg = ifinfmsg()
    msg["index"], msg["flags"], msg["change"] = index, IFF_UP, IFF_UP
    if ifname is not None:
        msg["attrs"] = [("IFLA_IFNAME", ifname)]
    expected = _pyroute2(msg, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK)
    assert _numbered(nl.link_up(index, ifname)) == expected


@given(ifname=ifnames, index=indexes, master=indexes, peer=ifnames, fd=fds,
       peer_index=indexes, mac=macs)  # fmt: skip
def test_add_veth(ifname: str, index: int, master: int, peer: str, fd: int, peer_index: int,
                  mac: str) -> None:  # fmt: skip
    msg = ifinfmsg()
    msg["index"], msg["flags"], msg["change"] = index, IFF_UP, IFF_UP
    peer_msg = {"index": peer_index, "attrs": [
        ("IFLA_IFNAME", peer), ("IFLA_NET_NS_FD", fd), ("IFLA_ADDRESS", mac),
        ("IFLA_NUM_TX_QUEUES", 1), ("IFLA_NUM_RX_QUEUES", 1)]}  # fmt: skip
    msg["attrs"] = [
        ("IFLA_IFNAME", ifname),
        ("IFLA_MASTER", master),
        ("IFLA_NUM_TX_QUEUES", 1),
        ("IFLA_NUM_RX_QUEUES", 1),
        ("IFLA_LINKINFO", {"attrs": [
            ("IFLA_INFO_KIND", "veth"),
            ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer_msg)]}),
        ]}),
    ]  # fmt: skip
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    expected = _pyroute2(msg, RTM_NEWLINK, flags)
    assert _numbered(nl.add_veth(ifname, index, master, peer, fd, peer_index, mac)) == expected


@given(index=indexes, ip=ips, prefixlen=st.integers(0, 32))
def test_add_address(index: int, ip: IPv4Address, prefixlen: int) -> None:
    msg = ifaddrmsg()
    msg["family"], msg["prefixlen"], msg["index"] = socket.AF_INET, prefixlen, index
    msg["attrs"] = [("IFA_LOCAL", str(ip)), ("IFA_ADDRESS", str(ip))]
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    expected = _pyroute2(msg, RTM_NEWADDR, flags)
    assert _numbered(nl.add_address(index, ip, prefixlen)) == expected


@given(index=indexes, ip=ips, mac=macs)
def test_add_neighbour(index: int, ip: IPv4Address, mac: str) -> None:
    msg = ndmsg()
    msg["family"], msg["ifindex"], msg["state"] = socket.AF_INET, index, 0x80  # permanent
    msg["attrs"] = [("NDA_DST", str(ip)), ("NDA_LLADDR", mac)]
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
    expected = _pyroute2(msg, RTM_NEWNEIGH, flags)
    assert _numbered(nl.add_neighbour(index, ip, mac)) == expected


@given(index=indexes, mac=macs)
def test_add_fdb(index: int, mac: str) -> None:
    msg = ndmsg()
    msg["family"], msg["ifindex"] = 7, index  # AF_BRIDGE
    msg["state"], msg["flags"] = 0x40 | 0x02, 0x04  # noarp|reachable, master
    msg["attrs"] = [("NDA_LLADDR", mac)]
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
    expected = _pyroute2(msg, RTM_NEWNEIGH, flags)
    assert _numbered(nl.add_fdb(index, mac)) == expected
