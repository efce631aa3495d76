"""The `harness` command line: one module per subcommand under `harness._commands`."""

from __future__ import annotations

import argparse
import importlib
import io
import os
import sys
from collections.abc import Sequence
from typing import NoReturn, Protocol, cast

from harness._errors import HarnessError

# Each module defines HELP, configure(parser) and run(args) -> exit code.
COMMANDS: tuple[str, ...] = (
    "run",
    "replay",
    "list",
    "describe",
    "logs",
    "events",
    "fault",
    "runs",
    "show",
    "report",
    "doctor",
    "clean",
)


class _Command(Protocol):
    HELP: str

    def configure(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error of the harness."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser for every subcommand (exposed for tests and docs), or for `only` that one:
    the other subcommands' modules are not imported (`run`'s imports the supervisor, trio,
    pyroute2...: half a second a command such as `harness report` need not spend)."""
    parser = _Parser(
        prog="harness",
        description="Run peer-to-peer test plans over emulated networks.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS if only is None else (only,):
        module = cast(_Command, importlib.import_module(f"harness._commands.{name}"))
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `harness` and `python -m harness`; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    for stream in (sys.stdout, sys.stderr):  # e.g. PYTHONIOENCODING=ascii: "—" as \u2014
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    # a known subcommand first: only its module is needed (anything else, e.g. --help or a
    # typo, gets the whole parser and its usage)
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    try:
        code: int = args._run(args)
    except HarnessError as e:
        print(f"harness: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `harness runs | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code
