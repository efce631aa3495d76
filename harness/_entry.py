"""The command's entry point, for the `harness` script and `python -m harness`: a Ctrl-C
while the CLI's modules are imported (~13 ms) exits 130 with one line, as one during the
run does, not with a traceback."""

from __future__ import annotations

from harness._tell import tell


def main() -> int:
    """Import the CLI and run it on `sys.argv`; its exit code."""
    try:
        from harness._cli import main as cli
    except KeyboardInterrupt:
        tell("harness: interrupted")
        return 130
    return cli()
