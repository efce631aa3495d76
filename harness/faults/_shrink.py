"""What a search does after hypothesis's shrinking: leave out the faults a failure does not
need."""

from __future__ import annotations

from collections.abc import Callable

from harness.faults._fault import Fault


def without_each(
    faults: tuple[Fault, ...], fails: Callable[[tuple[Fault, ...]], bool | None]
) -> tuple[Fault, ...]:
    """`faults` tried without each of its faults in turn: where `fails` says the list
    without one still fails, that shorter list is kept and tried so in its turn; `fails`
    returns None to stop (a budget of runs spent). hypothesis's shrinker does not always
    delete a list's earlier faults (a fault at 0 s stayed before the kill that mattered in
    7 of 16 seeds of a stand-in system); a list without one of its faults is one the
    strategies (`fault_lists`) could draw."""
    at = 0
    while len(faults) > 1 and at < len(faults):
        fewer = faults[:at] + faults[at + 1 :]
        verdict = fails(fewer)
        if verdict is None:
            break
        if verdict:
            faults, at = fewer, 0
        else:
            at += 1
    return faults
