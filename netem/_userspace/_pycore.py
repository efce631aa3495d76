"""The Python engine's decisions and timer queue, free of any I/O (testable unprivileged).

The same semantics as engine.c: per (src, dst) pair, a packet may be duplicated, lost (a
duplicated one goes on alone), corrupted (one bit flipped past the IP header) and then
either sent at once (reorder) or held for latency +- jitter; its copy goes through the same
shape again, undoubled, as netem's does.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
import socket
import struct
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

H = TypeVar("H")

LATE_BUCKETS = 200_000


class Output(Protocol[H]):  # type: ignore[misc]
    """Where the core's decisions go: the queue's verdicts and the duplicate sender."""

    def accept(self, handle: H, payload: bytes | None, now_ns: int) -> None: ...
    def drop(self, handle: H, now_ns: int) -> None: ...
    def duplicate(self, handle: H, payload: bytes, ifindex: int, now_ns: int,
                  corrupt: bool) -> None: ...


@dataclasses.dataclass(slots=True)
class PairState:
    """One direction's shape (delay in ns, percentages) and counters."""

    delay_ns: int
    jitter_ns: int
    loss: float
    corrupt: float
    dup: float
    reorder: float
    packets: int = 0
    bytes: int = 0
    drops: int = 0
    held_sum_ns: int = 0
    held_n: int = 0


@dataclasses.dataclass(slots=True)
class _Held(Generic[H]):
    handle: H
    key: tuple[bytes, bytes]
    arrival: int
    payload: bytes | None
    dup_ifindex: int  # > 0: this is a duplicate to send out that interface
    corrupt: bool = False  # a duplicate with a bit flipped


class Core(Generic[H]):
    """Decides each packet's fate and holds it until due."""

    def __init__(self, output: Output[H], seed: int = 0, normal: bool = False) -> None:
        self._out = output
        self._rng = random.Random(seed)
        self._normal = normal
        self.table: dict[tuple[bytes, bytes], PairState] = {}
        self._staged: dict[tuple[bytes, bytes], PairState] = {}
        self._staged_err = ""
        self._heap: list[tuple[int, int, _Held[H]]] = []
        self._seq = 0
        self._late = [0] * LATE_BUCKETS
        self._late_n = 0
        self._late_max = 0
        self.quitting = False

    # -- control ---------------------------------------------------------------------------
    def command(self, line: str) -> list[str]:
        """Run one control command; returns the reply lines."""
        parts = line.split()
        if not parts:
            return []
        cmd = parts[0]
        if cmd == "pair" and len(parts) == 9:
            try:
                key = (socket.inet_aton(parts[1]), socket.inet_aton(parts[2]))
                v = [float(p) for p in parts[3:]]
                bad = any(not math.isfinite(x) or x < 0 for x in v) or any(x > 100 for x in v[2:])
            except (OSError, ValueError):
                bad = True
            if bad or key == (bytes(4), bytes(4)):
                # reported by the commit, which then changes nothing
                self._staged_err = self._staged_err or f"bad pair line for {parts[1]} -> {parts[2]}"
                return []
            self._staged[key] = PairState(
                round(v[0] * 1000), round(v[1] * 1000), v[2], v[3], v[4], v[5]
            )
            return []
        if cmd == "commit" and len(parts) == 1:
            if self._staged_err:
                err, self._staged_err, self._staged = self._staged_err, "", {}
                return [f"err {err}; nothing changed"]
            for key, new in self._staged.items():
                old = self.table.get(key)
                if old is not None:
                    new.packets, new.bytes, new.drops = old.packets, old.bytes, old.drops
                    new.held_sum_ns, new.held_n = old.held_sum_ns, old.held_n
            self.table, self._staged = self._staged, {}
            return [f"ok {len(self.table)}"]
        if cmd == "stats" and len(parts) == 1:
            out = [
                f"stat {socket.inet_ntoa(s)} {socket.inet_ntoa(d)} {p.packets} {p.bytes} "
                f"{p.drops} {p.held_sum_ns // 1000} {p.held_n}"
                for (s, d), p in self.table.items()
            ]
            out.append(
                f"late {self._late_n} {self._percentile(0.5)} {self._percentile(0.99)} "
                f"{self._late_max}"
            )
            return [*out, "ok"]
        if cmd == "reset_timing" and len(parts) == 1:
            self._late = [0] * LATE_BUCKETS
            self._late_n = self._late_max = 0
            return ["ok"]
        if cmd == "quit" and len(parts) == 1:
            self.quitting = True
            return []
        return [f"err unknown command {cmd}"]

    def _percentile(self, q: float) -> int:
        if not self._late_n:
            return 0
        want, acc = max(1, math.ceil(q * self._late_n)), 0
        for i, n in enumerate(self._late):
            acc += n
            if acc >= want:
                return i
        return LATE_BUCKETS - 1

    # -- packets ---------------------------------------------------------------------------
    def _chance(self, pct: float) -> bool:
        if pct <= 0:
            return False
        return pct >= 100 or self._rng.random() * 100 < pct

    def _delay(self, p: PairState) -> int:
        d = p.delay_ns
        if p.jitter_ns:
            z = self._rng.gauss(0, 1) if self._normal else self._rng.random() * 2 - 1
            d += round(z * p.jitter_ns)
        return max(d, 0)

    def _push(self, due: int, held: _Held[H]) -> None:
        heapq.heappush(self._heap, (due, self._seq, held))
        self._seq += 1

    def on_packet(
        self,
        handle: H,
        payload: bytes,
        now_ns: int,
        ifindex: int = 0,
        copy_payload: Callable[[], bytes] | None = None,
    ) -> None:
        """A packet arrived; `payload` holds at least its IP header."""
        if len(payload) < 20 or payload[0] >> 4 != 4:
            self._out.accept(handle, None, now_ns)
            return
        key = (payload[12:16], payload[16:20])
        p = self.table.get(key)
        if p is None:
            self._out.accept(handle, None, now_ns)
            return
        tot_len = struct.unpack_from("!H", payload, 2)[0]
        whole = len(payload) >= tot_len
        p.packets += 1
        p.bytes += tot_len
        # As netem: a duplicate is decided first, then loss, which takes one of the two
        # packets (a duplicated packet lost goes on alone). The copy then goes through the
        # shape again, undoubled, as netem enqueues it at the root once more.
        dup = whole and self._chance(p.dup)
        if self._chance(p.loss):
            if not dup:
                p.drops += 1
                self._out.drop(handle, now_ns)
                return
            dup = False
        data = self._corrupted(payload, tot_len) if whole and self._chance(p.corrupt) else None
        self._hold(_Held(handle, key, now_ns, data, 0), p, now_ns)
        if dup and not self._chance(p.loss):
            bad = self._chance(p.corrupt)
            copy = self._corrupted(payload, tot_len) if bad else payload[:tot_len]
            self._hold(_Held(handle, key, now_ns, copy, max(ifindex, 1), bad), p, now_ns)

    def _corrupted(self, payload: bytes, tot_len: int) -> bytes:
        """The packet with one bit flipped past the IP header (it still routes, and the
        receiver's transport checksum catches it)."""
        buf = bytearray(payload[:tot_len])
        ihl = (buf[0] & 15) * 4
        lo = ihl if tot_len > ihl else 0
        bit = self._rng.randrange((tot_len - lo) * 8)
        buf[lo + bit // 8] ^= 1 << (bit % 8)
        return bytes(buf)

    def _hold(self, held: _Held[H], p: PairState, now_ns: int) -> None:
        """Reordered (let go at once) or held for the pair's delay."""
        delay = 0 if self._chance(p.reorder) else self._delay(p)
        if delay <= 0:
            self._release(held, now_ns, now_ns)
        else:
            self._push(now_ns + delay, held)

    def next_due(self) -> int | None:
        """When the earliest held packet is due (ns), or None."""
        return self._heap[0][0] if self._heap else None

    def release_due(self, now_ns: int, *, virtual: bool = False) -> None:
        """Let go of every packet due by `now_ns` (at its due time when `virtual`)."""
        while self._heap and self._heap[0][0] <= now_ns:
            due, _, held = heapq.heappop(self._heap)
            self._release(held, due, due if virtual else now_ns)

    def release_all(self, now_ns: int) -> None:
        """Accept every held packet at once (leaving); pending duplicates are forgotten."""
        while self._heap:
            due, _, held = heapq.heappop(self._heap)
            if not held.dup_ifindex:
                self._release(held, due, now_ns)

    def _release(self, held: _Held[H], due: int, now_ns: int) -> None:
        p = self.table.get(held.key)
        if p is not None and not held.dup_ifindex:
            p.held_sum_ns += now_ns - held.arrival
            p.held_n += 1
        late = max(0, (now_ns - due) // 1000)
        self._late[min(late, LATE_BUCKETS - 1)] += 1
        self._late_n += 1
        self._late_max = max(self._late_max, late)
        if held.dup_ifindex:
            assert held.payload is not None
            self._out.duplicate(held.handle, held.payload, held.dup_ifindex, now_ns,
                                held.corrupt)
        else:
            self._out.accept(held.handle, held.payload, now_ns)
