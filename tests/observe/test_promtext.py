"""The scraper's parser (harness.observe._promtext) against prometheus_client's own."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from harness.observe._promtext import TextParser


def _plain(families: list) -> list:  # type: ignore[type-arg]
    """Families as comparable tuples (NaN as text: NaN equals nothing)."""
    return [
        (f.name, f.type, f.documentation,
         [(s.name, s.labels, repr(s.value), s.timestamp) for s in f.samples])
        for f in families
    ]  # fmt: skip

_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64), st.integers(-(10**12), 10**12)
)
_STEPS = st.lists(
    st.tuples(st.sampled_from(["count", "set", "observe", "new label"]), st.integers(0, 3), _VALUES),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(_STEPS)
@example([("set", 0, float("nan")), ("set", 0, 2.5), ("set", 0, float("-inf"))])
def test_each_scrape_parses_as_prometheus_client_parses_it(steps: list) -> None:
    """A registry changes between scrapes (values, and now and then a new series): every
    text reads as the reference parser reads it."""
    r = CollectorRegistry()
    c = Counter("frames", "Frames", ["topic"], registry=r)
    g = Gauge("peers", "Peers", registry=r)
    h = Histogram("latency_seconds", "Latency", ["topic"], buckets=(0.1, 1.0), registry=r)
    c.labels("a").inc()
    parser = TextParser()
    for action, n, value in steps:
        if action == "count":
            c.labels("a").inc(abs(value) if abs(value) != float("inf") else 1)
        elif action == "set":
            g.set(value)
        elif action == "observe":
            h.labels("a").observe(n)
        else:
            c.labels(f"t{n}").inc()
        text = generate_latest(r).decode()
        assert _plain(parser.parse(text)) == _plain(list(text_string_to_metric_families(text)))


def test_a_text_of_the_same_shape_is_not_parsed_again(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import harness.observe._promtext as promtext

    calls = []
    real = promtext.text_string_to_metric_families

    def counting(text: str):  # type: ignore[no-untyped-def]
        calls.append(text)
        return real(text)

    monkeypatch.setattr(promtext, "text_string_to_metric_families", counting)
    parser = TextParser()
    one = "# TYPE up gauge\nup 1.0\nx_total 3.0\n"
    two = "# TYPE up gauge\nup 0.0\nx_total 5.0\n"
    assert _plain(parser.parse(one)) == _plain(list(real(one)))
    assert _plain(parser.parse(two)) == _plain(list(real(two)))
    assert calls == [one]  # the second only had its values read
    # Timestamps are not kept: each such text goes through the reference parser.
    stamped = "# TYPE up gauge\nup 1.0 1700000000000\n"
    assert _plain(parser.parse(stamped)) == _plain(list(real(stamped)))
    assert _plain(parser.parse(stamped)) == _plain(list(real(stamped)))
    assert calls[1:] == [stamped, stamped]
