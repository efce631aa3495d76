"""Typed test-case parameters: declared in a manifest, set from the CLI or a composition."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

from harness._errors import UsageError
from harness.plans._checks import INT64, number, safe_name, whole

TYPES = ("int", "float", "bool", "str", "duration")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """'250ms', '2s', '1.5m', '3' (seconds) -> seconds; ValueError otherwise."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration (e.g. 250ms, 2s, 1m)")
    seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    if not math.isfinite(seconds):  # 400 nines: inf, which JSON cannot carry
        raise ValueError(f"{text!r} is not a finite duration")
    return seconds


def format_duration(seconds: float) -> str:
    """0.05 -> '50ms', 300.0 -> '300s': as manifests and -p write durations (a bare number
    would read as seconds to some and as milliseconds to others)."""
    value, unit = (seconds * 1000, "ms") if seconds < 1 else (seconds, "s")
    return f"{round(value, 6)!r}".removesuffix(".0") + unit


@dataclasses.dataclass(frozen=True, slots=True)
class ParamSpec:
    """One declared parameter."""

    name: str
    type: str
    default: Any
    description: str = ""
    min: float | None = None
    max: float | None = None

    def coerce(self, value: Any, where: str, *, typed: bool = False) -> Any:
        """Value from the command line (text, or already typed) -> the declared type; one
        from TOML or JSON (`typed`) is taken as it is typed: no number or boolean in text
        ("3" for an int was taken, 3.0 refused)."""
        if typed and isinstance(value, str) and self.type in ("int", "float", "bool"):
            kind = {"int": "an integer", "float": "a number", "bool": "true or false"}[self.type]
            raise UsageError(f"{where}: param {self.name!r} ({self.type}): expected {kind}, "
                             f"not the text {value!r} (TOML types its values: drop the quotes)")
        try:
            out = self._convert(value)
        except (TypeError, ValueError, OverflowError) as e:  # Overflow: an int past a float
            raise UsageError(f"{where}: param {self.name!r} ({self.type}): {e}") from None
        if isinstance(out, int | float) and not isinstance(out, bool):
            if self.min is not None and out < self.min:
                raise UsageError(f"{where}: param {self.name!r} is {self.show(out)}, "
                                 f"below its min {self.show(self.min)}")
            if self.max is not None and out > self.max:
                raise UsageError(f"{where}: param {self.name!r} is {self.show(out)}, "
                                 f"above its max {self.show(self.max)}")
        return out

    def show(self, value: float) -> str:
        """A value or bound as messages print it: a duration with its unit."""
        return format_duration(value) if self.type == "duration" else str(value)

    def _convert(self, value: Any) -> Any:
        t = self.type
        if t == "str":
            if not isinstance(value, str):
                raise TypeError(f"expected text, got {value!r}")
            return value
        if t == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError(f"expected true or false, got {value!r}")
        if isinstance(value, bool):
            raise TypeError(f"expected a number, got {value!r}")
        if t == "int":
            if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
                value = int(value)
            if not isinstance(value, int):
                raise ValueError(f"expected a whole number, got {value!r}")
            if value not in INT64:  # what the instances' JSON carries
                raise ValueError(f"{value} does not fit in 64 bits")
            return value
        if t == "duration" and isinstance(value, str):
            return parse_duration(value)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"expected a number, got {value!r}") from None
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value!r}")
        if t == "duration" and value < 0:
            raise ValueError(f"a duration cannot be negative ({value!r})")
        return float(value)


def parse_spec(name: str, raw: Any, where: str) -> ParamSpec:
    """A `[testcases.params]` entry -> ParamSpec, checking its own default."""
    safe_name(name, f"{where}: param")  # "a=b" or " x" could never be set with -p
    if not isinstance(raw, Mapping):
        raise UsageError(f"{where}: param {name!r} must be a table like {{ type = \"int\" }}")
    unknown = set(raw) - {"type", "default", "description", "desc", "min", "max", "unit"}
    if unknown:
        raise UsageError(f"{where}: param {name!r} has unknown key(s) {', '.join(sorted(unknown))}")
    ptype = raw.get("type", "str")
    if ptype not in TYPES:
        raise UsageError(f"{where}: param {name!r} has type {ptype!r}; known: {', '.join(TYPES)}")
    if "default" not in raw:
        raise UsageError(f"{where}: param {name!r} has no default")
    spec = ParamSpec(
        name=name,
        type=ptype,
        default=None,
        description=str(raw.get("description", raw.get("desc", ""))),
        min=_bound(raw, "min", name, ptype, where),
        max=_bound(raw, "max", name, ptype, where),
    )
    if spec.min is not None and spec.max is not None and spec.min > spec.max:
        raise UsageError(f"{where}: param {name!r} has min {spec.show(spec.min)} above its "
                         f"max {spec.show(spec.max)}")
    return dataclasses.replace(
        spec, default=spec.coerce(raw["default"], f"{where} (default)", typed=True))


def _bound(raw: Mapping[str, Any], key: str, name: str, ptype: str, where: str) -> float | None:
    """A param's min or max: of the param's own type, as TOML typed it (no numerals in
    text, no booleans); a duration's may also be a duration like "250ms"."""
    if key not in raw:
        return None
    value = raw[key]
    at = f"{where}: param {name!r} ({ptype}) {key}"
    if ptype not in ("int", "float", "duration"):
        raise UsageError(f"{at}: only int, float and duration params have a {key}")
    if ptype == "duration" and isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as e:
            raise UsageError(f"{at}: {e}") from None
    if ptype == "int":
        return whole(value, at, least=None)
    return number(value, at)


def resolve(
    specs: Mapping[str, ParamSpec], layers: list[tuple[str, Mapping[str, Any], bool]]
) -> dict[str, Any]:
    """Defaults overlaid by each (where, values, typed) layer in turn (`typed`: from TOML or
    JSON, see `ParamSpec.coerce`); unknown names are errors."""
    values = {name: spec.default for name, spec in specs.items()}
    for where, layer, typed in layers:
        for name, raw in layer.items():
            spec = specs.get(name)
            if spec is None:
                known = ", ".join(sorted(specs)) or "none"
                raise UsageError(f"{where}: unknown param {name!r} (known: {known})")
            values[name] = spec.coerce(raw, where, typed=typed)
    return values


def parse_assignments(items: list[str]) -> dict[str, str]:
    """['k=v', ...] from `-p` -> {k: v}."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"-p {item!r}: expected NAME=VALUE")
        out[key.strip()] = value
    return out
