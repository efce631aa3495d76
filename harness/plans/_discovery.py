"""Finding plans: every directory with a manifest.toml under the plan roots."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from harness._errors import UsageError
from harness.plans._manifest import Plan, load_manifest


def default_roots() -> list[Path]:
    """The project's own `scenarios/` directory."""
    import scenarios

    return [Path(p) for p in scenarios.__path__]


def find_plans(roots: Iterable[Path] | None = None) -> dict[str, Plan]:
    """All plans under `roots` (default: scenarios/), by name."""
    plans: dict[str, Plan] = {}
    for root in roots if roots is not None else default_roots():
        if not root.is_dir():
            raise UsageError(f"plan directory {root} does not exist")
        for manifest in sorted(root.glob("*/manifest.toml")):
            plan = load_manifest(manifest)
            if plan.name in plans:
                other = plans[plan.name].path
                raise UsageError(f"two plans are named {plan.name!r}: {other}, {manifest.parent}")
            plans[plan.name] = plan
    return plans


def get_plan(name: str, roots: Iterable[Path] | None = None) -> Plan:
    """One plan by name, or a UsageError listing the known ones."""
    plans = find_plans(roots)
    if name not in plans:
        raise UsageError(f"unknown plan {name!r} (known: {', '.join(sorted(plans)) or 'none'})")
    return plans[name]
