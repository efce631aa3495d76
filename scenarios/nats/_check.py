"""The client's verdicts, as pure functions of what it saw."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def lost_messages(acked: Iterable[tuple[int, str]],
                  read: Mapping[int, str | None]) -> list[str]:
    """What the stream lost or changed of the acknowledged messages: `acked` holds each
    acknowledged publish as (stream sequence, payload), `read` maps the sequences read
    back to their payload (None: not in the stream). A sequence acknowledged for two
    payloads (a stream that lost its messages numbers new ones from where it is) holds at
    most one of them: the other is lost. One line per problem, in sequence order."""
    problems = []
    for seq, payload in sorted(acked, key=lambda a: a[0]):
        got = read.get(seq)
        if got is None:
            problems.append(f"acknowledged message {payload!r} (stream seq {seq}) "
                            f"is missing from the stream")
        elif got != payload:
            problems.append(f"stream seq {seq} holds {got!r}, not the acknowledged "
                            f"{payload!r}")
    return problems


def summarize(problems: Sequence[str], total: int, shown: int = 5) -> str:
    """One line: how many of `total` acknowledged messages are wrong, and the first few."""
    head = "; ".join(problems[:shown])
    more = f" (and {len(problems) - shown} more)" if len(problems) > shown else ""
    return f"{len(problems)} of {total} acknowledged messages lost: {head}{more}"

