"""The command's entry point, for the `harness` script and `python -m harness`: a Ctrl-C
while the CLI's modules are imported (~13 ms) exits 130 with one line, as one during the
run does, not with a traceback; so do SIGTERM, SIGHUP and the other signals a run takes
(`harness._latesignal.SIGNALS`), from the start."""

from __future__ import annotations

import signal
from types import FrameType

from harness._latesignal import command_exits_after_its_run, handled
from harness._tell import tell


def main() -> int:
    """Import the CLI and run it on `sys.argv`; its exit code."""
    # They end the command as Ctrl-C does (130, one line) from its first moment: until a
    # run's own handlers came (~0.5 s in) they killed it with 143 and no word. Left alone
    # where ignored (nohup), but for SIGINT and SIGTERM (`handled`): a shell's background
    # job starts ignoring SIGINT, and one then was lost until the run's handlers came.
    # While the CLI's modules are imported one is only noted: raised
    # inside an extension module's import (orjson's), KeyboardInterrupt crashed the process
    # (SIGSEGV) now and then.
    came: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        came.append(signum)

    ours = handled()
    for sig in ours:
        signal.signal(sig, note)
    try:
        from harness._cli import main as cli
    finally:
        for sig in ours:
            signal.signal(sig, signal.default_int_handler)  # each ends it as Ctrl-C does
    if came:
        tell("harness: interrupted")
        return 130
    command_exits_after_its_run()
    try:
        return cli()
    finally:
        # Done: one now (as Python exits) must not make the exit code -2 or 130.
        for sig in ours:
            signal.signal(sig, signal.SIG_IGN)
