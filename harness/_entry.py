"""The command's entry point, for the `harness` script and `python -m harness`: a Ctrl-C
while the CLI's modules are imported (~13 ms) exits 130 with one line, as one during the
run does, not with a traceback."""

from __future__ import annotations

import contextlib
import sys


def main() -> int:
    """Import the CLI and run it on `sys.argv`; its exit code."""
    try:
        from harness._cli import main as cli
    except KeyboardInterrupt:
        if sys.stderr is not None:  # as harness._cli.tell does, which is not imported yet
            with contextlib.suppress(OSError, ValueError):
                print("harness: interrupted", file=sys.stderr, flush=True)
        return 130
    return cli()
