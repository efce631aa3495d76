"""Prometheus' text format, parsed once per shape: a target's series are the same lines
scrape after scrape, with other values.

prometheus_client's parser reads a text character by character: at 100 instances scraped
every 4 s, that was most of the supervisor's scraping CPU. `TextParser` keeps the last text's
shape (its lines without their values) and what it parsed to; a text of the same shape has
only its values read. Anything else (new series, timestamps, a value that does not read
back) goes through prometheus_client's parser, whose result is the reference.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families


def _split(text: str) -> tuple[list[str], list[str]]:
    """(every line, a sample's without its value), (the samples' values)."""
    shape, values = [], []
    for line in text.splitlines():
        if line and line[0] != "#":
            line, _, value = line.rpartition(" ")
            values.append(value)
        shape.append(line)
    return shape, values


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


class TextParser:
    """`parse` returns what `text_string_to_metric_families` would, for one target."""

    def __init__(self) -> None:
        self._shape: list[str] | None = None
        self._families: list[Metric] = []

    def parse(self, text: str) -> list[Metric]:
        """The metric families of `text`; ValueError for a text prometheus_client refuses."""
        shape, raw = _split(text)
        if shape == self._shape:
            try:
                values = iter([float(v) for v in raw])
            except ValueError:
                pass
            else:
                return [self._with_values(fam, values) for fam in self._families]
        families = list(text_string_to_metric_families(text))
        samples = [s for fam in families for s in fam.samples]
        try:
            known = len(samples) == len(raw) and all(
                _same(s.value, float(v)) and s.timestamp is None
                for s, v in zip(samples, raw, strict=True)
            )
        except ValueError:
            known = False
        # Kept only when each value line is one sample, in order: then a value can be put
        # in its sample's place without parsing the line again.
        self._shape, self._families = (shape, families) if known else (None, [])
        return families

    @staticmethod
    def _with_values(fam: Metric, values: Iterator[float]) -> Metric:
        """A copy of `fam` whose samples take the next values (a family's samples are
        consecutive lines, in order)."""
        new = copy.copy(fam)
        # `values` is shared by every family: zip takes as many as this one has samples.
        new.samples = [s._replace(value=v) for s, v in zip(fam.samples, values, strict=False)]
        return new
