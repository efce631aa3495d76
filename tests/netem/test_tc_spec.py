"""The tc layout as data: rendering, diffing and the pyroute2 requests, without a kernel."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyroute2 import IPRoute
from pyroute2.netlink import nlsocket
from pyroute2.netlink.rtnl import RTM_DELTFILTER, RTM_NEWTFILTER

from netem import LinkShape
from netem._backends._tc_spec import (
    DEFAULT_MINOR,
    ETH_P_IP,
    ROOT,
    UNCAPPED_BPS,
    DstFilter,
    HtbClass,
    HtbRoot,
    NetemLeaf,
    Op,
    diff,
    netem_limit,
    render,
    request,
)

A, B, C = (IPv4Address(f"198.18.0.{i}") for i in (1, 2, 3))
SLOTS = {A: 0x10, B: 0x11, C: 0x12}
EMPTY = (HtbRoot(), HtbClass(DEFAULT_MINOR, UNCAPPED_BPS))


def test_empty_layout_is_root_and_default_class() -> None:
    assert render({}, SLOTS, leaves=True) == EMPTY
    assert render({B: LinkShape()}, SLOTS, leaves=True) == EMPTY  # identity: nothing


def test_kernel_layout_per_destination() -> None:
    specs = render(
        {
            C: LinkShape(latency_ms=20, jitter_ms=5, loss_pct=1.5, reorder_pct=10),
            B: LinkShape(bandwidth_bps=1_000_000),
        },
        SLOTS,
        leaves=True,
    )
    assert specs == (
        *EMPTY,
        HtbClass(0x11, 1_000_000),
        HtbClass(0x12, UNCAPPED_BPS),
        NetemLeaf(
            minor=0x12,
            delay_us=20_000,
            jitter_us=5_000,
            loss_pct=1.5,
            corrupt_pct=0.0,
            duplicate_pct=0.0,
            reorder_pct=10,
            limit=netem_limit(LinkShape(latency_ms=20, jitter_ms=5)),
        ),
        DstFilter(0x11, B),
        DstFilter(0x12, C),
    )


def test_userspace_layout_has_only_capped_classes_and_no_leaves() -> None:
    specs = render(
        {
            B: LinkShape(latency_ms=20, bandwidth_bps=2_000_000),
            C: LinkShape(latency_ms=20),
        },
        SLOTS,
        leaves=False,
    )
    assert specs == (*EMPTY, HtbClass(0x11, 2_000_000), DstFilter(0x11, B))


def test_netem_limit_covers_what_the_delay_holds_in_flight() -> None:
    assert netem_limit(LinkShape()) == 1000
    # 100 Mbit/s for 200 ms is 2.5 MB, about 1667 packets of 1500 bytes
    assert netem_limit(LinkShape(latency_ms=200, bandwidth_bps=100_000_000)) == 1000 + 1667


def test_diff_of_equal_layouts_is_empty() -> None:
    specs = render({B: LinkShape(latency_ms=5)}, SLOTS, leaves=True)
    assert diff(specs, specs) == []


def test_diff_changes_only_the_destination_that_changed() -> None:
    old = render({B: LinkShape(latency_ms=5), C: LinkShape(latency_ms=7)}, SLOTS, leaves=True)
    new = render({B: LinkShape(latency_ms=5), C: LinkShape(latency_ms=9)}, SLOTS, leaves=True)
    ops = diff(old, new)
    assert [(op.action, type(op.spec).__name__, op.spec.minor) for op in ops] == [  # type: ignore[union-attr]
        ("change", "NetemLeaf", 0x12)
    ]


def test_diff_orders_deletes_before_adds_and_children_before_parents() -> None:
    old = render({B: LinkShape(latency_ms=5)}, SLOTS, leaves=True)
    new = render({C: LinkShape(bandwidth_bps=10_000)}, SLOTS, leaves=True)
    ops = [(op.action, type(op.spec).__name__) for op in diff(old, new)]
    assert ops == [
        ("delete", "DstFilter"),
        ("delete", "NetemLeaf"),
        ("delete", "HtbClass"),
        ("add", "HtbClass"),
        ("add", "DstFilter"),
    ]


def test_diff_drops_a_leaf_when_only_a_rate_is_left() -> None:
    old = render({B: LinkShape(latency_ms=5, bandwidth_bps=8000)}, SLOTS, leaves=True)
    new = render({B: LinkShape(bandwidth_bps=16000)}, SLOTS, leaves=True)
    assert diff(old, new) == [
        Op("delete", old[3]),
        Op("change", HtbClass(0x11, 16000)),
    ]


shapes = st.builds(
    LinkShape,
    latency_ms=st.sampled_from([0.0, 1.0, 50.0]),
    loss_pct=st.sampled_from([0.0, 2.0]),
    bandwidth_bps=st.sampled_from([None, 1_000_000]),
)
matrices = st.dictionaries(st.sampled_from([A, B, C]), shapes)


@given(matrices, matrices)
def test_applying_the_diff_to_old_gives_new(old_m: dict, new_m: dict) -> None:  # type: ignore[type-arg]
    old = render(old_m, SLOTS, leaves=True)
    new = render(new_m, SLOTS, leaves=True)
    state = {(type(s).__name__, getattr(s, "minor", 0)): s for s in old}
    for op in diff(old, new):
        key = (type(op.spec).__name__, getattr(op.spec, "minor", 0))
        if op.action == "delete":
            assert key in state, f"deleting {op.spec} that is not there"
            # a parent is never deleted while a child or filter still points at it
            if isinstance(op.spec, HtbClass):
                assert ("NetemLeaf", op.spec.minor) not in state
                assert ("DstFilter", op.spec.minor) not in state
            del state[key]
        elif op.action == "add":
            assert key not in state, f"adding {op.spec} twice"
            if isinstance(op.spec, NetemLeaf | DstFilter):
                assert ("HtbClass", op.spec.minor) in state  # its class exists first
            state[key] = op.spec
        else:
            assert key in state
            state[key] = op.spec
    assert set(state.values()) == set(new)


def test_requests_for_each_spec() -> None:
    assert request(Op("add", HtbRoot())) == ("add", "htb", ROOT, {"default": DEFAULT_MINOR})
    assert request(Op("delete", HtbRoot()))[:3] == ("del", None, ROOT)
    command, kind, handle, kwargs = request(Op("add", HtbClass(0x11, 8_000_000)))
    assert (command, kind, handle) == ("add-class", "htb", 0x10011)
    assert kwargs["rate"] == kwargs["ceil"] == "8000000bit"
    assert kwargs["parent"] == ROOT and kwargs["quantum"] >= 1514
    assert request(Op("change", HtbClass(0x11, 8_000_000)))[0] == "change-class"
    leaf = NetemLeaf(0x11, 20_000, 1_000, 1.0, 0.5, 0.0, 25.0, 1500)
    command, kind, handle, kwargs = request(Op("change", leaf))
    assert (command, kind, handle) == ("replace", "netem", 0x110000)
    assert kwargs == {
        "parent": 0x10011,
        "delay": 20_000,
        "jitter": 1_000,
        "loss": 1.0,
        "duplicate": 0.0,
        "limit": 1500,
        "prob_corrupt": 0.5,
        "prob_reorder": 25.0,
    }
    command, kind, handle, kwargs = request(Op("add", DstFilter(0x11, B)))
    assert (command, kind) == ("add-filter", "u32")
    assert kwargs["keys"] == ["0xc6120002/0xffffffff+16"] and kwargs["target"] == 0x10011
    assert kwargs["prio"] == 0x11
    assert request(Op("delete", DstFilter(0x11, B)))[0] == "del-filter"


@pytest.mark.parametrize("bps", [8, 1_000_000, UNCAPPED_BPS])
def test_rates_give_sane_bursts(bps: int) -> None:
    kwargs = request(Op("add", HtbClass(0x11, bps)))[3]
    assert kwargs["burst"] >= 1514 and kwargs["quantum"] <= 200_000


class _Unsent(Exception):
    pass


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Op], Any]]:
    """A function giving the message pyroute2's `IPRoute.tc` encodes for an op's request
    (interface index 2), which it then does not send."""
    messages: list[Any] = []

    async def keep(self: Any) -> None:
        self.msg.encode()
        messages.append(self.msg)
        raise _Unsent

    monkeypatch.setattr(nlsocket.NetlinkRequest, "send", keep)
    with IPRoute() as ipr:
        def send(op: Op) -> Any:
            command, kind, handle, kwargs = request(op)
            with pytest.raises(_Unsent):
                ipr.tc(command, kind, 2, handle, **kwargs)
            return messages[-1]

        yield send


def test_a_filter_is_deleted_by_the_prio_and_protocol_it_was_added_with(
    sent: Callable[[Op], Any],
) -> None:
    """tcm_info with prio 0 asks the kernel to flush every filter on the parent: removing
    one destination's cap removed every other destination's filter with it."""
    added = sent(Op("add", DstFilter(0x11, B)))
    deleted = sent(Op("delete", DstFilter(0x11, B)))
    assert added["header"]["type"] == RTM_NEWTFILTER
    assert deleted["header"]["type"] == RTM_DELTFILTER
    assert deleted["info"] == added["info"] == (0x11 << 16) | socket.htons(ETH_P_IP)
    assert (deleted["parent"], deleted["index"]) == (ROOT, 2)
