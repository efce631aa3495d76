"""The engine's control protocol: one command a line on its stdin, replies on its stdout.

Shared by the C engine (engine.c) and the Python engine (_pyengine.py):

    pair SRC DST DELAY_US JITTER_US LOSS_PCT CORRUPT_PCT DUP_PCT REORDER_PCT
    commit          -> ok N, or err ... if a staged pair line was bad (nothing changes)
    stats           -> stat SRC DST PACKETS BYTES DROPS HELD_SUM_US HELD_N ...,
                       late N P50_US P99_US MAX_US, ok
    reset_timing    -> ok
    quit
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address

from netem._backends._base import LinkStats, Pair
from netem._shape import LinkShape


@dataclasses.dataclass(frozen=True, slots=True)
class Timing:
    """How late the engine let held packets go, past their due time (microseconds)."""

    count: int
    p50_us: int
    p99_us: int
    max_us: int


def _num(value: float) -> str:
    return repr(float(value))


def pair_line(pair: Pair, shape: LinkShape) -> str:
    """The `pair` command for one direction (bandwidth is not the engine's job)."""
    src, dst = pair
    return _line(str(src), str(dst), shape)


def _line(src: str, dst: str, shape: LinkShape) -> str:
    return f"pair {src} {dst} {_shape_fields(shape)}"


@functools.lru_cache(maxsize=4096)
def _shape_fields(shape: LinkShape) -> str:
    # A matrix holds a few distinct shapes over many directions: each is written once.
    return " ".join(
        _num(v)
        for v in (
            shape.latency_ms * 1000,
            shape.jitter_ms * 1000,
            shape.loss_pct,
            shape.corrupt_pct,
            shape.duplicate_pct,
            shape.reorder_pct,
        )
    )


def update_lines(matrix: Mapping[Pair, LinkShape]) -> list[str]:
    """The commands that make `matrix` the engine's whole table."""
    text = {ip: str(ip) for pair in matrix for ip in pair}  # str() of an address is slow
    return [
        _line(text[src], text[dst], shape)
        for (src, dst), shape in matrix.items()
        if shape.needs_delay_engine
    ]


class ProtocolError(RuntimeError):
    """The engine answered something this side does not understand."""


def parse_stats(lines: Iterable[str]) -> tuple[dict[Pair, LinkStats], Timing]:
    """Parse the reply to `stats` (without its final `ok`)."""
    result: dict[Pair, LinkStats] = {}
    timing = Timing(0, 0, 0, 0)
    # A network of N hosts has N * (N - 1) directions between N addresses: each address is
    # parsed once (at 100 hosts, parsing each line's two was most of a telemetry sample).
    address: dict[str, IPv4Address] = {}
    for line in lines:
        parts = line.split()
        try:
            if parts[0] == "stat" and len(parts) == 8:
                packets, nbytes, drops, held_sum_us, held_n = (int(p) for p in parts[3:])
                delay = held_sum_us / held_n / 1000 if held_n else None
                src, dst = address.get(parts[1]), address.get(parts[2])
                if src is None:
                    src = address[parts[1]] = IPv4Address(parts[1])
                if dst is None:
                    dst = address[parts[2]] = IPv4Address(parts[2])
                pair = (src, dst)
                result[pair] = LinkStats(packets, nbytes, drops, delay)
            elif parts[0] == "late" and len(parts) == 5:
                timing = Timing(*(int(p) for p in parts[1:]))
            else:
                raise ValueError(line)
        except (ValueError, IndexError):
            raise ProtocolError(f"unexpected line from the engine: {line!r}") from None
    return result, timing
