"""A live run's control channel: the operator's token, and asking the run to play a fault.

The supervisor writes the run's control token (`Tokens.control()`) to `control.token` in the
run directory, mode 0600 from its creation, so only the run's user can read it, and removes
it when the run ends, however it ends (`harness clean` and the commands that find a killed
supervisor remove it with the run's sockets). `harness fault` reads it, connects to the
run's sync socket (`sock_dir` in run.json), says `hello` as CONTROL with it and sends
`{"op": "fault", "fault": {...}, "by": "..."}` (docs/contracts.md, 4).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import trio

from harness._errors import HarnessError
from harness.observe._jsonl import ReadFailed, read_regular
from harness.sync import CONTROL, SyncError, connect_unix

CONTROL_FILE = "control.token"
"""The control token's file in the run directory."""

ANSWER_S = 60.0
"""How long `ask_fault` waits for the run's answer (a stop waits out its grace first)."""


class ControlError(HarnessError):
    """The run could not be reached, or it refused or failed the fault (exit code 1)."""

    exit_code = 1


def write_token(run_dir: Path, token: str) -> None:
    """Write the control token, readable by this user only from the first byte."""
    fd = os.open(run_dir / CONTROL_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")


def remove_token(run_dir: Path) -> None:
    """Remove the control token (the run is over: it opens nothing any more)."""
    with contextlib.suppress(OSError):
        (run_dir / CONTROL_FILE).unlink()


def read_token(run_dir: Path) -> str:
    """The run's control token; ControlError when it cannot be read."""
    path = run_dir / CONTROL_FILE
    try:
        raw = read_regular(path, 4096)  # (a FIFO in its place: a read that never ends)
    except (ReadFailed, ValueError) as e:
        why = e.reason if isinstance(e, ReadFailed) else str(e)
        raise ControlError(f"cannot read {path} ({why}): only the run's user may control "
                           f"it") from None
    if raw is None:
        if os.path.lexists(path):
            raise ControlError(f"{path} is not a regular file: it holds no token")
        raise ControlError(f"{path} does not exist: the run is not ready yet, has ended, or "
                           f"was started by a harness without live faults")
    try:
        return raw.decode("ascii").strip()
    except UnicodeDecodeError as e:
        raise ControlError(f"cannot read {path} ({e})") from None


def ask_fault(sock: Path, token: str, table: dict[str, Any], by: str,
              timeout: float = ANSWER_S) -> dict[str, Any]:
    """Ask the run serving `sock` to play the fault `table` now, as `by`; returns what the
    run chose (the conductor's record). ControlError for whatever goes wrong."""

    async def ask() -> dict[str, Any]:
        with trio.move_on_after(timeout):
            async with connect_unix(str(sock), CONTROL, token) as client:
                reply = await client.request("fault", fault=table, by=by)
                chosen = reply.get("fault")
                return chosen if isinstance(chosen, dict) else {}
        raise ControlError(f"the run did not answer within {timeout:g} s")

    try:
        return trio.run(ask)
    except SyncError as e:
        raise ControlError(str(e)) from None
