"""The names and labels of a run's objects: what `harness clean --runner cluster:k8s`
selects by, so that it removes exactly one run's objects."""

from __future__ import annotations

import hashlib

from harness.runners.k8s._options import LABEL_VALUE

PREFIX = "harness.dev"
MANAGED_BY = "app.kubernetes.io/managed-by"
RUN = f"{PREFIX}/run"
GROUP = f"{PREFIX}/group"
SEQ = f"{PREFIX}/seq"
ROLE = f"{PREFIX}/role"
COMPONENT = f"{PREFIX}/component"
INSTANCE = f"{PREFIX}/instance"  # annotation: the exact instance id ("group/seq")
GROUP_ID = f"{PREFIX}/group-id"  # annotation: the exact group id
MANAGER = "harness"


def run_selector(run_id: str) -> str:
    """The label selector of every object of run `run_id` (and of nothing else)."""
    return f"{MANAGED_BY}={MANAGER},{RUN}={run_id}"


def label_value(text: str) -> str:
    """`text` if it can be a label value as it is; otherwise a stable short stand-in (the
    exact text goes in an annotation)."""
    if len(text) <= 63 and LABEL_VALUE.match(text):
        return text
    return "x-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def base_labels(run_id: str, component: str) -> dict[str, str]:
    """The labels every object of the run carries."""
    return {MANAGED_BY: MANAGER, RUN: run_id, COMPONENT: component}


def pod_name(run_id: str, global_seq: int) -> str:
    """An instance's pod: DNS-1123 whatever its group is called."""
    return f"h-{run_id}-{global_seq}"


def object_name(run_id: str, what: str) -> str:
    """The name of one of the run's shared objects, e.g. its sync service."""
    return f"h-{run_id}-{what}"
