"""Finding plans: every directory with a manifest.toml under the plan roots."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from harness._errors import UsageError
from harness.plans._manifest import Plan, load_manifest

PLANS_ENV = "HARNESS_PLANS"
"""The environment variable naming plan roots (os.pathsep-separated) when --plans does not."""

PROJECT_PLANS = Path(__file__).resolve().parents[2] / "scenarios"
"""The project's own plans, found beside the `harness` package, not imported."""


def default_roots() -> list[Path]:
    """The plan roots when none are given: those in $HARNESS_PLANS, else the project's own
    `scenarios/` directory."""
    configured = [Path(p) for p in os.environ.get(PLANS_ENV, "").split(os.pathsep) if p]
    for root in configured:
        if not root.is_dir():
            raise UsageError(f"{PLANS_ENV}: plan directory {root} {_not_a_dir(root)}")
    return configured or [PROJECT_PLANS]


def _not_a_dir(path: Path) -> str:
    return "is not a directory" if path.exists() else "does not exist"


def find_plans(
    roots: Iterable[Path] | None = None, broken: dict[Path, UsageError] | None = None
) -> dict[str, Plan]:
    """All plans under `roots` (default: `default_roots()`), by name. A manifest that cannot
    be loaded raises its UsageError, or, given `broken`, is put there by its plan's
    directory and passed over."""
    plans: dict[str, Plan] = {}
    seen: set[Path] = set()
    for root in roots if roots is not None else default_roots():
        if not root.is_dir():
            raise UsageError(f"plan directory {root} {_not_a_dir(root)}")
        if (real := root.resolve()) in seen:  # named twice (--plans x --plans ./x)
            continue
        seen.add(real)
        # absolute: a program named from its plan's directory ("./node.sh") is started
        # from the instance's own working directory
        for manifest in sorted(root.absolute().glob("*/manifest.toml")):
            try:
                plan = load_manifest(manifest)
            except UsageError as e:
                if broken is None:
                    raise
                broken[manifest.parent] = e
                continue
            if plan.name in plans:
                other = plans[plan.name].path
                raise UsageError(f"two plans are named {plan.name!r}: {other}, {manifest.parent}")
            plans[plan.name] = plan
    return plans


def roots_hint(roots: Iterable[Path] | None = None) -> str:
    """What to say when `roots` hold no plan: a root that is itself a plan's directory (a
    manifest.toml in it, not one level down) is named."""
    plans = [r for r in (roots if roots is not None else default_roots())
             if (r / "manifest.toml").exists()]
    return "".join(f"; {r} is a plan's own directory: give the directory above it"
                   for r in plans)


def get_plan(name: str, roots: Iterable[Path] | None = None) -> Plan:
    """One plan by name, or a UsageError listing the known ones. Another plan's broken
    manifest is no concern of this one; one in a directory of this name (or the only one,
    when no plan has the name) is the error, and an unknown name names the broken ones."""
    broken: dict[Path, UsageError] = {}
    plans = find_plans(roots, broken)
    for path, error in broken.items():
        if path.name == name:
            raise error
    if name in plans:
        return plans[name]
    if len(broken) == 1:
        raise next(iter(broken.values()))
    unloaded = (f"; {len(broken)} manifests do not load (`harness list` says why): "
                f"{', '.join(str(p / 'manifest.toml') for p in broken)}") if broken else ""
    raise UsageError(
        f"unknown plan {name!r} (known: {', '.join(sorted(plans)) or 'none'}){unloaded}"
        + ("" if plans else roots_hint(roots)))
