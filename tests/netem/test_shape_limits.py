"""LinkShape's limits are what both backends can apply: every shape it accepts encodes with
the kernel backend's pyroute2 requests (encoded here without a kernel) and is taken exactly by
the userspace engine (C and Python, in --simulate mode); every value outside is a ShapeError."""

from __future__ import annotations

import math
from ipaddress import IPv4Address
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyroute2.iproute.linux import get_arguments_processor, get_dump_filter
from pyroute2.netlink.rtnl.tcmsg import tcmsg

from netem import LinkShape, ShapeError
from netem._backends._tc_spec import HtbClass, Op, Request, render, request
from netem._shape import MAX_BANDWIDTH_BPS, MAX_DELAY_MS, MIN_BANDWIDTH_BPS
from netem._userspace._protocol import pair_line

from .test_userspace_engine import Simulate, c_engine, simulate  # noqa: F401  (fixtures)

B = IPv4Address("198.18.0.2")
SLOTS = {B: 0x10}


def encode(req: Request) -> tcmsg:
    """The netlink message `IPRoute.tc(*req)` would send, encoded and decoded back, the
    way pyroute2 builds it, without a socket or a kernel."""
    command, kind, handle, kwargs = req
    query: dict[str, Any] = {**kwargs, "index": 1, "handle": handle}
    if kind is not None:
        query["kind"] = kind
    _, query = get_dump_filter("tc", command, query)
    args = get_arguments_processor("tc", command, query)
    msg = tcmsg()
    msg["header"]["type"] = 40  # RTM_NEWTCLASS; the options are encoded by kind
    msg.reset()
    for field in msg.fields:
        msg[field[0]] = args.get_value(field[0], default=0, mode="field")
    for key, value in args.items():
        nla = tcmsg.name2nla(key)
        if msg.valid_nla(nla) and value is not None:
            msg["attrs"].append([nla, value])
    msg["attrs"].extend(args.get("attrs", []))
    msg.encode()
    back = tcmsg(msg.data)
    back.decode()
    return back


def htb_rate_bytes(bps: int) -> int:
    """The rate (bytes/s) an htb class for `bps` carries once encoded."""
    options = encode(request(Op("add", HtbClass(0x10, bps)))).get_attr("TCA_OPTIONS")
    rate64 = options.get_attr("TCA_HTB_RATE64")
    return int(rate64) if rate64 else int(options.get_attr("TCA_HTB_PARMS")["rate"])


delays = st.floats(0, MAX_DELAY_MS)
percents = st.floats(0, 100)
rates = (
    st.none()
    | st.integers(MIN_BANDWIDTH_BPS, MAX_BANDWIDTH_BPS)
    | st.integers(MIN_BANDWIDTH_BPS, MIN_BANDWIDTH_BPS + 64)  # the slow edge of the rate table
    | st.integers(MAX_BANDWIDTH_BPS - 64, MAX_BANDWIDTH_BPS)  # the exact edge of the float
    | st.integers(2**35 - 64, 2**35 + 64)  # bytes/s past u32: TCA_HTB_RATE64
)


@st.composite
def shapes(draw: st.DrawFn) -> LinkShape:
    latency = draw(delays | st.sampled_from([0.0, MAX_DELAY_MS]))
    return LinkShape(
        latency_ms=latency,
        jitter_ms=draw(delays | st.sampled_from([0.0, MAX_DELAY_MS])),
        loss_pct=draw(percents),
        bandwidth_bps=draw(rates),
        corrupt_pct=draw(percents),
        duplicate_pct=draw(percents),
        reorder_pct=draw(percents) if latency else 0.0,
    )


@settings(deadline=None)
@given(shapes())
def test_every_accepted_shape_encodes_for_the_kernel_backend(shape: LinkShape) -> None:
    for leaves in (True, False):
        for spec in render({B: shape}, SLOTS, leaves=leaves):
            for action in ("add", "change"):
                encode(request(Op(action, spec)))  # type: ignore[arg-type]
    if shape.bandwidth_bps is not None:  # exactly, never wrapped or rounded
        assert htb_rate_bytes(shape.bandwidth_bps) == shape.bandwidth_bps // 8


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(shapes(), min_size=1, max_size=30))
def test_every_accepted_shape_is_taken_by_the_userspace_engine(
    simulate: Simulate, batch: list[LinkShape]  # noqa: F811
) -> None:
    src = IPv4Address("198.18.1.1")
    pairs = [(src, IPv4Address(int(src) + 1 + i)) for i in range(len(batch))]
    lines = [pair_line(pair, shape) for pair, shape in zip(pairs, batch, strict=True)]
    packets = [f"pkt 0 {i} {a} {b} 100" for i, (a, b) in enumerate(pairs)]
    out = simulate([*lines, "commit", *packets])
    assert out[0] == ["ok", str(len(batch))], out[0]
    for parts in out[1:]:
        if parts[0] in ("accept", "corrupt", "dup"):  # held for latency +- jitter, no more
            shape = batch[int(parts[1])]
            assert 0 <= int(parts[2]) <= math.ceil((shape.latency_ms + shape.jitter_ms) * 1000)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        *(({"bandwidth_bps": bps}, f"bandwidth_bps {bps} is out of range: 60 to ")
          for bps in (0, 8, 59, 2**53 + 1, 2**64, 2**64 + 8000, 10**30)),
        ({"bandwidth_bps": 8000.0}, "bandwidth_bps must be a whole number"),
        ({"bandwidth_bps": True}, "bandwidth_bps must be a whole number"),
        ({"jitter_ms": 1e300}, "jitter_ms 1e+300 is out of range: 0 to 250000"),
        ({"latency_ms": 250_000.5}, "latency_ms 250000.5 is out of range: 0 to 250000"),
        ({"latency_ms": -1}, "latency_ms -1 is out of range"),
        ({"latency_ms": math.nan}, "latency_ms nan is out of range"),
        ({"loss_pct": 100.5}, "loss_pct 100.5 is out of range: 0 to 100"),
        ({"jitter_ms": True}, "jitter_ms must be a number from 0 to 250000"),
        # an int beyond any float (JSON allows one): it was an OverflowError
        ({"latency_ms": 10**400}, "latency_ms 10* is out of range"),
        ({"loss_pct": -(10**400)}, "loss_pct -10* is out of range"),
    ],
)
def test_values_no_backend_can_apply_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ShapeError, match=message.replace("+", r"\+")):
        LinkShape(**fields)


@given(
    st.one_of(
        st.builds(dict, bandwidth_bps=st.integers(max_value=MIN_BANDWIDTH_BPS - 1)),
        st.builds(dict, bandwidth_bps=st.integers(min_value=MAX_BANDWIDTH_BPS + 1)),
        st.builds(dict, latency_ms=st.floats(min_value=MAX_DELAY_MS, exclude_min=True)),
        st.builds(dict, jitter_ms=st.floats(min_value=MAX_DELAY_MS, exclude_min=True)),
        st.builds(dict, loss_pct=st.floats(min_value=100, exclude_min=True)),
        st.builds(dict, corrupt_pct=st.floats(max_value=0, exclude_max=True)),
    )
)
def test_anything_outside_the_limits_is_a_shape_error(fields: dict[str, Any]) -> None:
    with pytest.raises(ShapeError):
        LinkShape(**fields)
