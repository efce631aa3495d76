"""Property: any sequence of accepted changes, replayed from the record, gives the same state."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import netem
from netem import LinkShape, Network, RequestError

HOSTS = ["h1", "h2", "h3", "h4", "h5"]
hosts = st.sampled_from(HOSTS)
host_sets = st.sets(hosts, min_size=1, max_size=3)
shapes = st.none() | st.builds(
    LinkShape,
    latency_ms=st.sampled_from([0, 10, 50.5]),
    loss_pct=st.sampled_from([0, 1, 100]),
    bandwidth_bps=st.none() | st.sampled_from([60, 1_000_000]),
)
peers = st.lists(st.sampled_from([f"198.18.0.{i}" for i in range(1, 6)]), min_size=1, unique=True)
rules = st.lists(
    st.fixed_dictionaries({"peers": peers, "drop": st.just(True)})
    | st.fixed_dictionaries(
        {"peers": peers, "shape": st.fixed_dictionaries({"latency_ms": st.integers(0, 99)})}
    ),
    max_size=3,
)
ops = st.one_of(
    st.tuples(st.just("default"), hosts, shapes),
    st.tuples(st.just("rule"), hosts, hosts, shapes),
    st.tuples(st.just("partition"), host_sets, host_sets, st.booleans()),
    st.tuples(st.just("heal"), st.none() | host_sets, st.none() | host_sets),
    st.tuples(
        st.just("request"),
        hosts,
        st.fixed_dictionaries({"rules": rules, "enabled": st.booleans()}),
    ),
)


def run(net: Network, op: tuple[Any, ...]) -> None:
    kind, *args = op
    if kind == "default":
        net.set_default(args[0], args[1])
    elif kind == "rule":
        net.set_rule(args[0], args[1], args[2])
    elif kind == "partition":
        net.partition(args[0], args[1], oneway=args[2])
    elif kind == "heal":
        net.heal(args[0], args[1])
    else:
        net.apply_request(args[0], args[1], asked_by=args[0])


@settings(max_examples=60, deadline=None)
@given(st.lists(ops, max_size=12))
def test_replay_matches_original(sequence: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "network.jsonl"
        with Network(backend="none", record=record, dry_run=True) as net:
            net.build(len(HOSTS))
            for op in sequence:
                # Rejected changes are not recorded, and change nothing.
                with contextlib.suppress(RequestError):
                    run(net, op)
            expected = (net.matrix(), net.drops(), net.policy)
        with netem.replay(record, dry_run=True) as again:
            assert (again.matrix(), again.drops(), again.policy) == expected
