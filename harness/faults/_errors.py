"""The one error a fault raises before anything is applied."""

from __future__ import annotations

from harness._errors import UsageError


class FaultError(UsageError, ValueError):
    """A fault (or schedule of faults) that cannot be played: one line naming the fault and
    the problem; the CLI prints it and exits 2 before the run starts."""


class TooLate(FaultError):
    """A fault that came as the run was ending (a restart once the instances were being
    stopped): not played, and no failure of the harness's or the machine's."""
