"""The client's verdicts, as pure functions of what it saw."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def lost_messages(acked: Mapping[int, str], read: Mapping[int, str | None]) -> list[str]:
    """What the stream lost or changed of the acknowledged messages: `acked` maps each
    acknowledged stream sequence to the payload it acknowledged, `read` maps the sequences
    read back to their payload (None: not in the stream). One line per problem, in
    sequence order."""
    problems = []
    for seq in sorted(acked):
        got = read.get(seq)
        if got is None:
            problems.append(f"acknowledged message {acked[seq]!r} (stream seq {seq}) "
                            f"is missing from the stream")
        elif got != acked[seq]:
            problems.append(f"stream seq {seq} holds {got!r}, not the acknowledged "
                            f"{acked[seq]!r}")
    return problems


def summarize(problems: Sequence[str], total: int, shown: int = 5) -> str:
    """One line: how many of `total` acknowledged messages are wrong, and the first few."""
    head = "; ".join(problems[:shown])
    more = f" (and {len(problems) - shown} more)" if len(problems) > shown else ""
    return f"{len(problems)} of {total} acknowledged messages lost: {head}{more}"

