"""The hand-encoded rtnetlink requests are byte for byte what pyroute2 encodes for the
same request (pyroute2 is the reference; it is too slow for a network of 1,000 hosts)."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address
from typing import Any

import pytest
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, nlmsg_base
from pyroute2.netlink.rtnl import RTM_NEWADDR, RTM_NEWLINK
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg

from netem._build import _netlink as nl


def _encoded(msg: nlmsg_base) -> bytes:
    msg["header"]["sequence_number"] = 0
    msg.encode()
    return bytes(msg.data)


def _link_up(index: int, ifname: str | None) -> bytes:
    msg = ifinfmsg()
    msg["index"] = index
    msg["flags"] = IFF_UP
    msg["change"] = IFF_UP
    if ifname is not None:
        msg["attrs"] = [("IFLA_IFNAME", ifname)]
    msg["header"]["type"] = RTM_NEWLINK
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK
    return _encoded(msg)


def _add_veth(ifname: str, master: int, peer_ifname: str, fd: int, index: int,
              mac: str) -> bytes:
    peer: dict[str, Any] = {"index": index, "attrs": [
        ("IFLA_IFNAME", peer_ifname), ("IFLA_NET_NS_FD", fd), ("IFLA_ADDRESS", mac)]}
    msg = ifinfmsg()
    msg["flags"] = IFF_UP
    msg["change"] = IFF_UP
    msg["attrs"] = [
        ("IFLA_IFNAME", ifname),
        ("IFLA_MASTER", master),
        ("IFLA_LINKINFO", {"attrs": [
            ("IFLA_INFO_KIND", "veth"),
            ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer)]})]}),
    ]
    msg["header"]["type"] = RTM_NEWLINK
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    return _encoded(msg)


def _add_address(index: int, ip: IPv4Address, prefixlen: int) -> bytes:
    msg = ifaddrmsg()
    msg["family"] = socket.AF_INET
    msg["prefixlen"] = prefixlen
    msg["index"] = index
    msg["attrs"] = [("IFA_LOCAL", str(ip)), ("IFA_ADDRESS", str(ip))]
    msg["header"]["type"] = RTM_NEWADDR
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    return _encoded(msg)


@pytest.mark.parametrize("index,ifname", [(1, None), (2, "ht5a0342-h1"), (7, "e"),
                                          (2, "abcd"), (3, "abcdefghijklmno")])
def test_link_up_is_encoded_as_pyroute2_does(index: int, ifname: str | None) -> None:
    assert nl.link_up(index, ifname) == _link_up(index, ifname)


@pytest.mark.parametrize("names", [("hub-1", "h-1"), ("ht5a0342-p1000", "ht5a0342-h1000"),
                                   ("a", "bcd"), ("abcdefghijklmno", "abcdefghijklmn")])
def test_a_veth_is_encoded_as_pyroute2_does(names: tuple[str, str]) -> None:
    args = (names[0], 3, names[1], 17, 2, "02:00:c6:12:03:e8")
    assert nl.add_veth(*args) == _add_veth(*args)


@pytest.mark.parametrize("ip,prefixlen", [("198.18.0.5", 15), ("198.19.255.254", 15),
                                          ("10.0.0.1", 24)])
def test_an_address_is_encoded_as_pyroute2_does(ip: str, prefixlen: int) -> None:
    address = IPv4Address(ip)
    assert nl.add_address(2, address, prefixlen) == _add_address(2, address, prefixlen)
