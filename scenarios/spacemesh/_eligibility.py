"""Who may propose, who sits on the hare committee and who certifies: pure functions of an
epoch's ATXs.

As in go-spacemesh (``proposals/util``): a smesher's slots in an epoch are
``weight * proposals_per_layer * layers_per_epoch // total_weight`` (at least 1), each slot
drawn into one layer of the epoch by a ticket over the epoch's beacon. So the expected
number of proposals per layer is ``proposals_per_layer`` whatever the network's size (until
every smesher is down to its one slot). Tickets are public hashes instead of VRF outputs:
anyone can compute everyone's eligibility (what the simulation and replay rely on), and
so can an adversary, which a test network does not care about.

The beacon of an epoch is a hash of the ids of the ATXs that targeted the epoch before,
not go-spacemesh's beacon protocol: those ATXs were gossiped a whole epoch earlier, so
every node that follows the network holds the same set.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from ._codec import h

SCALE = 1 << 20
"""Ballot weights are integers in units of 1/SCALE of an ATX unit: every node sums exactly
the same numbers in any order."""


def beacon(epoch: int, previous_atx_ids: Iterable[str]) -> bytes:
    """The beacon of ``epoch`` from the ids of the ATXs that targeted ``epoch - 1``."""
    return h(b"beacon", epoch, *sorted(previous_atx_ids))


def num_slots(weight: int, total: int, proposals_per_layer: int, layers_per_epoch: int) -> int:
    """A smesher's proposal slots in an epoch (go-spacemesh's ``GetNumEligibleSlots``)."""
    if total <= 0:
        raise ValueError("an epoch's total weight must be > 0")
    return max(1, weight * proposals_per_layer * layers_per_epoch // total)


def slot_counts(
    epoch_beacon: bytes, epoch: int, smesher: str, slots: int, layers_per_epoch: int
) -> list[int]:
    """How many of a smesher's slots fall in each layer of the epoch (index: layer in epoch)."""
    return list(_slot_counts(epoch_beacon, epoch, smesher, slots, layers_per_epoch))


# Pure functions of their arguments, cached per process: every node of a simulation draws
# the same tickets, so they are drawn once between them.
@functools.lru_cache(maxsize=1 << 16)
def _slot_counts(
    epoch_beacon: bytes, epoch: int, smesher: str, slots: int, layers_per_epoch: int
) -> tuple[int, ...]:
    counts = [0] * layers_per_epoch
    for slot in range(slots):
        ticket = int.from_bytes(h(b"proposal", epoch_beacon, epoch, smesher, slot)[:8], "little")
        counts[ticket % layers_per_epoch] += 1
    return tuple(counts)


def ballot_weight(atx_weight: int, count: int, slots: int) -> int:
    """The weight a ballot with ``count`` of the smesher's ``slots`` carries (x SCALE)."""
    return atx_weight * count * SCALE // slots


@functools.lru_cache(maxsize=1 << 16)
def hare_seats(
    epoch_beacon: bytes, layer: int, smesher: str, weight: int, total: int, committee: int
) -> int:
    """A smesher's seats on ``layer``'s hare committee: each unit of weight is drawn with
    probability ``committee / total``, so the committee holds ``committee`` seats in
    expectation, sampled by weight (all of them when the network is smaller)."""
    if total <= 0:
        return 0
    if committee >= total:
        return weight
    bound = committee * 2**64 // total
    seats = 0
    for unit in range(weight):
        if int.from_bytes(h(b"hare", epoch_beacon, layer, smesher, unit)[:8], "big") < bound:
            seats += 1
    return seats


@functools.lru_cache(maxsize=1 << 16)
def certifier_ticket(atx_id: str, layer: int) -> int:
    """An ATX's draw for certifying ``layer``; the lowest draws among the epoch's active
    ATXs certify it (`is_certifier`)."""
    return int.from_bytes(h(b"certifier", atx_id, layer)[:8], "big")


def is_certifier(atx_id: str, layer: int, active: Iterable[str], certifiers: int) -> bool:
    """Whether ``atx_id`` draws one of the ``certifiers`` lowest tickets for ``layer`` among
    the ``active`` ATXs of its epoch: every node that holds the same ATXs picks the same
    certifiers, and a layer always has some (independent draws of chance
    ``certifiers / len(active)`` each left about one layer in 60 with none at 100 nodes)."""
    mine = certifier_ticket(atx_id, layer)
    below = 0
    for other in active:
        if certifier_ticket(other, layer) < mine:
            below += 1
            if below >= certifiers:
                return False
    return True
