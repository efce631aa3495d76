"""Faults: what breaks, when, and to whom, as data that a composition, the command line, a
hypothesis search and the run's record share.

Two layers, the second older and narrower:

- the vocabulary (`Fault`, `Selector`, `parse_faults`, `load_faults`, the strategies `faults`
  and `fault_lists`, and `without_each`, what a search does after them):
  network, process, time and resource faults on chosen instances, at a time or on a sync
  condition, undone after a duration; checked before a run starts, resolved against its
  instances with seeded choices;
- timed cuts a plan plays on itself (`FaultSchedule`, `Cut`, `play`, `schedules`): the
  Spacemesh plan's search in simulation, replayed in namespaces through `env.network`.

Every error is a `FaultError` (a `UsageError`: one line, exit 2 from the command line).
"""

from harness.faults._cuts import Cut, FaultSchedule, FaultScheduleError, play, schedules
from harness.faults._errors import FaultError
from harness.faults._fault import (
    ACTIONS,
    EXPECTATIONS,
    NETWORK,
    PARTITION_KINDS,
    PROCESS,
    RESOURCE,
    TIME,
    UNDOABLE,
    Fault,
    Resolved,
    When,
    load_faults,
    parse_faults,
)
from harness.faults._select import EVERYONE, Member, Selector
from harness.faults._shrink import without_each
from harness.faults._strategies import fault_lists, faults

__all__ = [
    "ACTIONS",
    "EVERYONE",
    "EXPECTATIONS",
    "NETWORK",
    "PARTITION_KINDS",
    "PROCESS",
    "RESOURCE",
    "TIME",
    "UNDOABLE",
    "Cut",
    "Fault",
    "FaultError",
    "FaultSchedule",
    "FaultScheduleError",
    "Member",
    "Resolved",
    "Selector",
    "When",
    "fault_lists",
    "faults",
    "load_faults",
    "parse_faults",
    "play",
    "schedules",
    "without_each",
]
