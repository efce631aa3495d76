"""`K8sOptions`: where and how a run's pods go, from the composition's `[runner.k8s]` table
and `--k8s KEY=VALUE` options (which win), each value checked with a one-line error."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness._errors import UsageError
from harness.plans import RunSpec
from harness.plans._checks import check_keys, read_toml, table, text, whole

QUANTITY = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
                      r"(?:[KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]{1,9})?$")
"""A resource quantity as the API accepts it (k8s.io/apimachinery's ParseQuantity): a
number, then one of its suffixes or a decimal exponent. Its regular expression alone
(`[0-9.]+` and any run of suffix letters) lets through what ParseQuantity refuses:
"512K", "1Mi5", "1.2.3"."""
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
SHAPING = ("auto", "kernel", "userspace", "off")
SECRETS = ("secret", "inline")
PULL = ("Always", "IfNotPresent", "Never")
CUTS = ("partition", "isolate")  # played by the pods' shapers: none with shaping = off

_SCALARS = ("image", "pull_policy", "namespace", "kubeconfig", "context", "workdir", "cpu",
            "memory", "sync_port", "shaping", "secrets", "sync_cpu", "sync_memory")
_TABLES = ("node_selector", "groups")
_GROUP_KEYS = ("cpu", "memory", "node_selector")


@dataclasses.dataclass(frozen=True)
class GroupPlacement:
    """One group's resources (requests = limits) and node selector."""

    cpu: str
    memory: str
    node_selector: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class K8sOptions:
    """How a run's objects look on the cluster (docs/k8s.md lists every key)."""

    image: str = "localhost/harness:latest"
    pull_policy: str = "IfNotPresent"
    namespace: str = "default"
    kubeconfig: Path | None = None  # None: $KUBECONFIG, then ~/.kube/config
    context: str | None = None
    workdir: str = "/opt/harness"  # where the project (harness, plans) is in the image
    cpu: str = "500m"
    memory: str = "256Mi"
    sync_cpu: str = "1"
    sync_memory: str = "512Mi"
    sync_port: int = 5050
    shaping: str = "auto"  # kernel where sch_netem loads, else the userspace engine
    secrets: str = "secret"  # "inline": tokens as plain env values (podman kube play)
    node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)
    groups: Mapping[str, GroupPlacement] = dataclasses.field(default_factory=dict)

    def placement(self, group: str) -> GroupPlacement:
        """`group`'s resources and node selector (the run's defaults where not its own)."""
        return self.groups.get(group) or GroupPlacement(self.cpu, self.memory,
                                                        self.node_selector)


def load_options(spec: RunSpec, cli: Sequence[str] = ()) -> K8sOptions:
    """The options for `spec`: its composition's `[runner.k8s]`, then `cli` (KEY=VALUE)."""
    raw: dict[str, Any] = {}
    if spec.composition is not None:
        runner = read_toml(spec.composition, "composition").get("runner", {})
        raw.update(table(runner.get("k8s", {}), f"composition {spec.composition} [runner.k8s]"))
    for item in cli:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError(f"--k8s {item!r}: expected KEY=VALUE")
        if key == "node_selector":
            raw[key] = _pairs(value, f"--k8s {key}")
        elif key == "sync_port":
            raw[key] = _int(value, f"--k8s {key}")
        else:
            raw[key] = value
    where = f"composition {spec.composition} [runner.k8s]" if spec.composition else "--k8s"
    options = parse_options(raw, {g.id for g in spec.groups}, where)
    cut = next((f for f in spec.faults if f.action in CUTS), None)
    if options.shaping == "off" and cut is not None:  # it would be "applied", cutting nothing
        raise UsageError(f"cluster:k8s with shaping = off: the run's {cut.action} fault needs "
                         "each pod's shaper to cut links (shaping auto, kernel or userspace)")
    return options


def parse_options(raw: Mapping[str, Any], groups: set[str], where: str) -> K8sOptions:
    """Checked options from a table like the composition's `[runner.k8s]`."""
    check_keys(raw, (*_SCALARS, *_TABLES), where)
    out: dict[str, Any] = {}
    for key in ("image", "workdir", "context"):
        if key in raw:
            out[key] = _nonempty(raw[key], f"{where} {key}")
    if "pull_policy" in raw:
        out["pull_policy"] = _choice(raw["pull_policy"], PULL, f"{where} pull_policy")
    if "namespace" in raw:
        ns = text(raw["namespace"], f"{where} namespace")
        if not DNS_LABEL.match(ns) or len(ns) > 63:
            raise UsageError(f"{where} namespace {ns!r} is not a DNS label (a-z, 0-9, '-')")
        out["namespace"] = ns
    if "kubeconfig" in raw:
        given = _nonempty(raw["kubeconfig"], f"{where} kubeconfig")
        out["kubeconfig"] = Path(given).expanduser()  # "~/.kube/config", as kubectl takes it
        if not out["kubeconfig"].is_file():  # kr8s would say only "no valid credentials"
            raise UsageError(f"{where} kubeconfig {given!r}: no such file")
    for key in ("cpu", "memory", "sync_cpu", "sync_memory"):
        if key in raw:
            out[key] = quantity(raw[key], f"{where} {key}")
    if "sync_port" in raw:
        port = whole(raw["sync_port"], f"{where} sync_port", least=1)
        if port > 65535:
            raise UsageError(f"{where} sync_port must be at most 65535, not {port}")
        out["sync_port"] = port
    if "shaping" in raw:
        out["shaping"] = _choice(raw["shaping"], SHAPING, f"{where} shaping")
    if "secrets" in raw:
        out["secrets"] = _choice(raw["secrets"], SECRETS, f"{where} secrets")
    if "node_selector" in raw:
        out["node_selector"] = node_selector(raw["node_selector"], f"{where} node_selector")
    base = K8sOptions(**out)
    placements = {}
    for gid, graw in table(raw.get("groups", {}), f"{where} groups").items():
        at = f"{where} groups.{gid}"
        if gid not in groups:
            raise UsageError(f"{at}: the run has no group {gid!r}; its groups: "
                             f"{', '.join(sorted(groups))}")
        check_keys(graw, _GROUP_KEYS, at)
        placements[gid] = GroupPlacement(
            quantity(graw["cpu"], f"{at} cpu") if "cpu" in graw else base.cpu,
            quantity(graw["memory"], f"{at} memory") if "memory" in graw else base.memory,
            node_selector(graw["node_selector"], f"{at} node_selector")
            if "node_selector" in graw else base.node_selector,
        )
    return dataclasses.replace(base, groups=placements)


def quantity(value: Any, where: str) -> str:
    """`value` as a resource quantity ("500m", "2", "1Gi"); numbers are taken as text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not QUANTITY.match(value):
        raise UsageError(f"{where} {value!r} is not a resource quantity (e.g. 500m, 2, 1Gi)")
    if value.startswith("-"):  # the API server refuses a negative request or limit
        raise UsageError(f"{where} {value!r} is negative")
    return value


def node_selector(value: Any, where: str) -> dict[str, str]:
    """`value` as a node selector: label names to label values."""
    out = {}
    for key, val in table(value, where).items():
        if not _LABEL_NAME.match(key) or len(key.rpartition("/")[2]) > 63:
            raise UsageError(f"{where}: {key!r} is not a label name")
        if not isinstance(val, str) or not LABEL_VALUE.match(val) or len(val) > 63:
            raise UsageError(f"{where}: {key} = {val!r} is not a label value")
        out[key] = val
    return out


def _pairs(text_: str, where: str) -> dict[str, str]:
    out = {}
    for item in filter(None, text_.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise UsageError(f"{where} {text_!r}: expected KEY=VALUE[,KEY=VALUE...]")
        out[key] = value
    return out


def _int(value: str, where: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{where} must be a whole number, not {value!r}") from None


def _nonempty(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{where} must be non-empty text, not {value!r}")
    return value


def _choice(value: Any, choices: Sequence[str], where: str) -> str:
    if value not in choices:
        raise UsageError(f"{where} must be one of {', '.join(choices)}, not {value!r}")
    return str(value)
