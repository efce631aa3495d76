"""The network's policy as plain data: shapes per host and per pair, and what is cut.

`Policy` is immutable: every change makes a new one, so a change that fails to apply leaves
the last good policy in place. `parse_request` checks the sync protocol's `network` config
(docs/contracts.md section 6) completely before anything uses it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from ipaddress import AddressValueError, IPv4Address
from typing import Any

from netem._backends._base import Pair
from netem._errors import RequestError
from netem._shape import IDENTITY, LinkShape, ShapeError


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """A validated `network` config of one host: its whole egress policy."""

    default: LinkShape
    rules: Mapping[IPv4Address, LinkShape]
    drops: frozenset[IPv4Address]
    enabled: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """Everything the network does to traffic, by address.

    defaults: a host's egress shape towards every peer without a rule.
    rules: the shape of one direction, overriding the source's default.
    partitions: directions cut by `Network.partition`; `heal` removes them.
    request_drops: directions cut by a host's own `network` request.
    disabled: hosts whose request said `enabled: false`: cut from everyone, both ways.
    overrides: shapes of directions set from outside the hosts (a fault), over everything
        else; removing one brings back what the hosts asked for.
    """

    defaults: Mapping[IPv4Address, LinkShape] = dataclasses.field(default_factory=dict)
    rules: Mapping[Pair, LinkShape] = dataclasses.field(default_factory=dict)
    partitions: frozenset[Pair] = frozenset()
    request_drops: frozenset[Pair] = frozenset()
    disabled: frozenset[IPv4Address] = frozenset()
    overrides: Mapping[Pair, LinkShape] = dataclasses.field(default_factory=dict)

    def with_default(self, host: IPv4Address, shape: LinkShape | None) -> Policy:
        defaults = dict(self.defaults)
        if shape is None or shape.is_identity:
            defaults.pop(host, None)
        else:
            defaults[host] = shape
        return dataclasses.replace(self, defaults=defaults)

    def with_rule(self, pair: Pair, shape: LinkShape | None) -> Policy:
        rules = dict(self.rules)
        if shape is None:
            rules.pop(pair, None)
        else:
            rules[pair] = shape
        return dataclasses.replace(self, rules=rules)

    def with_overrides(self, shapes: Mapping[Pair, LinkShape | None]) -> Policy:
        """Override the shape of each direction of `shapes` (None: remove its override)."""
        overrides = dict(self.overrides)
        for pair, shape in shapes.items():
            if shape is None:
                overrides.pop(pair, None)
            else:
                overrides[pair] = shape
        return dataclasses.replace(self, overrides=overrides)

    def with_partition(self, pairs: Iterable[Pair]) -> Policy:
        return dataclasses.replace(self, partitions=self.partitions | frozenset(pairs))

    def healed(self, pairs: Iterable[Pair] | None) -> Policy:
        """Without the partitions of `pairs` (every partition when None)."""
        left = frozenset() if pairs is None else self.partitions - frozenset(pairs)
        return dataclasses.replace(self, partitions=left)

    def with_request(self, host: IPv4Address, request: Request) -> Policy:
        """The host's whole egress policy replaced by `request`."""
        policy = self.with_default(host, request.default)
        rules = {p: s for p, s in policy.rules.items() if p[0] != host}
        rules.update({(host, dst): shape for dst, shape in request.rules.items()})
        drops = {p for p in policy.request_drops if p[0] != host}
        drops.update((host, dst) for dst in request.drops)
        disabled = set(policy.disabled)
        if request.enabled:
            disabled.discard(host)
        else:
            disabled.add(host)
        return dataclasses.replace(
            policy, rules=rules, request_drops=frozenset(drops), disabled=frozenset(disabled)
        )

    def matrix(self, hosts: Iterable[IPv4Address]) -> dict[Pair, LinkShape]:
        """The effective shape of every direction that is shaped (identity ones left out)."""
        ips = list(hosts)
        out: dict[Pair, LinkShape] = {}
        for src, shape in self.defaults.items():
            for dst in ips:
                if dst != src:
                    out[(src, dst)] = shape
        for pair, shape in (*self.rules.items(), *self.overrides.items()):
            if shape.is_identity:
                out.pop(pair, None)
            else:
                out[pair] = shape
        return out

    def drops(self, hosts: Iterable[IPv4Address]) -> frozenset[Pair]:
        """Every direction whose packets are dropped."""
        cut = set(self.partitions | self.request_drops)
        if self.disabled:
            ips = list(hosts)
            for off in self.disabled:
                for other in ips:
                    if other != off:
                        cut.add((off, other))
                        cut.add((other, off))
        return frozenset(cut)


def grouped(pairs: Iterable[Pair]) -> dict[IPv4Address, list[tuple[IPv4Address, IPv4Address]]]:
    """Directions grouped by source, each source's destinations as sorted runs of
    consecutive addresses (first, last): hosts are numbered, so cuts compress well."""
    by_src: dict[IPv4Address, list[int]] = {}
    for src, dst in pairs:
        by_src.setdefault(src, []).append(int(dst))
    out: dict[IPv4Address, list[tuple[IPv4Address, IPv4Address]]] = {}
    for src in sorted(by_src, key=int):
        runs: list[list[int]] = []
        for d in sorted(set(by_src[src])):
            if runs and d == runs[-1][1] + 1:
                runs[-1][1] = d
            else:
                runs.append([d, d])
        out[src] = [(IPv4Address(a), IPv4Address(b)) for a, b in runs]
    return out


_REQUEST_KEYS = frozenset({"default", "rules", "enabled", "callback_state", "callback_target"})


def parse_request(config: Any, asker: IPv4Address, known: Mapping[IPv4Address, object]) -> Request:
    """Validate a `network` config of host `asker`; raise `RequestError` naming the problem."""
    if not isinstance(config, Mapping):
        raise RequestError(f"network config must be an object, not {type(config).__name__}")
    unknown = sorted(set(config) - _REQUEST_KEYS)
    if unknown:
        raise RequestError(
            f"unknown network config key(s) {', '.join(map(str, unknown))}; "
            f"known: {', '.join(sorted(_REQUEST_KEYS))}"
        )
    default = _shape(config.get("default"), "default")
    state = config.get("callback_state")
    if state is not None and (not isinstance(state, str) or not state):
        raise RequestError(f"callback_state must be a state's name, not {state!r}")
    target = config.get("callback_target")  # the harness's own: its SDK waits for it
    if target is not None and (isinstance(target, bool) or not isinstance(target, int)
                               or target < 0):
        raise RequestError(f"callback_target must be a whole number >= 0, not {target!r}")
    enabled = config.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RequestError(f"enabled must be true or false, not {enabled!r}")
    raw_rules = config.get("rules", [])
    if raw_rules is None:
        raw_rules = []
    if not isinstance(raw_rules, list):
        raise RequestError(f"rules must be a list, not {type(raw_rules).__name__}")
    rules: dict[IPv4Address, LinkShape] = {}
    drops: set[IPv4Address] = set()
    for i, rule in enumerate(raw_rules):
        where = f"rules[{i}]"
        if not isinstance(rule, Mapping):
            raise RequestError(f"{where} must be an object, not {type(rule).__name__}")
        extra = sorted(set(rule) - {"peers", "shape", "drop"})
        if extra:
            raise RequestError(f"{where}: unknown key(s) {', '.join(map(str, extra))}")
        drop = rule.get("drop", False)
        if not isinstance(drop, bool):
            raise RequestError(f"{where}.drop must be true or false, not {drop!r}")
        if drop == ("shape" in rule):
            raise RequestError(f"{where} needs exactly one of shape or drop: true")
        peers = rule.get("peers")
        if not isinstance(peers, list) or not peers:
            raise RequestError(f"{where}.peers must be a non-empty list of addresses")
        shape = None if drop else _shape(rule["shape"], f"{where}.shape")
        for peer in peers:
            ip = _peer(peer, f"{where}.peers", asker, known)
            if ip in rules or ip in drops:
                raise RequestError(f"{where}: peer {ip} is named by an earlier rule")
            if shape is None:
                drops.add(ip)
            else:
                rules[ip] = shape
    return Request(default=default, rules=rules, drops=frozenset(drops), enabled=enabled)


def _shape(raw: Any, where: str) -> LinkShape:
    if raw is None:
        return IDENTITY
    try:
        return LinkShape.from_dict(raw)
    except ShapeError as e:
        raise RequestError(f"{where}: {e}") from None
    except TypeError as e:  # e.g. a list where an object was expected
        raise RequestError(f"{where}: {e}") from None


def _peer(
    raw: Any, where: str, asker: IPv4Address, known: Mapping[IPv4Address, object]
) -> IPv4Address:
    if not isinstance(raw, str):
        raise RequestError(f"{where}: a peer is an address string, not {raw!r}")
    try:
        ip = IPv4Address(raw)
    except AddressValueError:
        raise RequestError(f"{where}: {raw!r} is not an IPv4 address") from None
    if ip == asker:
        raise RequestError(f"{where}: {ip} is the asking host itself")
    if ip not in known:
        raise RequestError(f"{where}: no host has address {ip}")
    return ip
