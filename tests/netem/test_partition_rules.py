"""The iptables text for drop rules: per-source chains, ranges of consecutive addresses."""

from __future__ import annotations

from ipaddress import IPv4Address

from netem._firewall import render, sub_chain
from netem._policy import grouped


def ip(n: int) -> IPv4Address:
    return IPv4Address("198.18.0.0") + n


def test_grouped_makes_runs_of_consecutive_addresses() -> None:
    pairs = {(ip(1), ip(d)) for d in (2, 3, 4, 7, 9, 10)} | {(ip(5), ip(255)), (ip(5), ip(256))}
    assert grouped(pairs) == {
        ip(1): [(ip(2), ip(4)), (ip(7), ip(7)), (ip(9), ip(10))],
        ip(5): [(ip(255), ip(256))],  # runs cross the octet boundary: 198.18.0.255-198.18.1.0
    }


def test_render_chains_and_rules() -> None:
    text, sources = render({(ip(1), ip(2)), (ip(1), ip(3)), (ip(4), ip(1))}, set())
    lines = text.splitlines()
    assert lines[:2] == ["*filter", ":NETEM-DROP - [0:0]"]
    assert ":NETEM-D-c6120001 - [0:0]" in lines and ":NETEM-D-c6120004 - [0:0]" in lines
    assert "-A NETEM-DROP -s 198.18.0.1/32 -j NETEM-D-c6120001" in lines
    assert "-A NETEM-D-c6120001 -m iprange --dst-range 198.18.0.2-198.18.0.3 -j DROP" in lines
    assert "-A NETEM-D-c6120004 -d 198.18.0.1/32 -j DROP" in lines
    assert lines[-1] == "COMMIT"
    assert sources == {ip(1), ip(4)}


def test_render_removes_chains_of_sources_no_longer_cut() -> None:
    text, sources = render({(ip(4), ip(1))}, {ip(1), ip(4)})
    lines = text.splitlines()
    assert ":NETEM-D-c6120001 - [0:0]" in lines  # flushed first, then deleted
    assert "-X NETEM-D-c6120001" in lines
    assert "-X NETEM-D-c6120004" not in lines
    assert sources == {ip(4)}


def test_render_empty_flushes_everything() -> None:
    text, sources = render(set(), {ip(2)})
    assert text.splitlines() == [
        "*filter",
        ":NETEM-DROP - [0:0]",
        ":NETEM-D-c6120002 - [0:0]",
        "-X NETEM-D-c6120002",
        "COMMIT",
    ]
    assert sources == set()


def test_chain_names_fit_iptables() -> None:
    assert len(sub_chain(IPv4Address("255.255.255.255"))) <= 28
