"""The `harness` command line: one module per subcommand under `harness._commands`."""

from __future__ import annotations

import argparse
import importlib
import io
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn, Protocol, cast

from harness._errors import HarnessError, UsageError, undecodable
from harness._tell import tell

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, SupportsWrite

# Each module defines HELP, configure(parser) and run(args) -> exit code.
COMMANDS: tuple[str, ...] = (
    "run",
    "replay",
    "search",
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

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        # argparse's own drops a failed write: `--help` to a full stdout exited 0. One to
        # stderr (a usage error) stays dropped: there is nowhere left to say it failed.
        if message and file is not None and file is sys.stdout:
            file.write(message)
        else:
            super()._print_message(message, file)


def build_parser(only: Sequence[str] = COMMANDS) -> argparse.ArgumentParser:
    """The parser for every subcommand (exposed for tests and docs), or for `only` those:
    the other subcommands' modules are not imported (`run`'s imports the supervisor, trio,
    pyroute2...: half a second a command such as `harness report` need not spend)."""
    parser = _Parser(
        prog="harness",
        description="Run peer-to-peer test plans over emulated networks.",
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in only:
        module = cast(_Command, importlib.import_module(f"harness._commands.{name}"))
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(p)
        p.set_defaults(_run=module.run)
    return parser


class _Version(argparse.Action):
    """`--version`: the installed distribution's version, read only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("p2p-harness")
        except PackageNotFoundError:
            found = "(not installed: run from a checkout)"
        print(f"harness {found}")
        parser.exit()


STDOUT = "<stdout>"
"""The file name a failed write to standard output carries (`_Stdout`)."""


class _Stdout(io.FileIO):
    """Standard output, whose failed writes say so: a reader gone away (`| head`) or a full
    device is told from any other OSError."""

    def write(self, data: ReadableBuffer, /) -> int:
        try:
            return super().write(data)
        except OSError as e:
            raise OSError(e.errno, e.strerror, STDOUT) from None  # BrokenPipeError stays one


def _own_stdout() -> None:
    """sys.stdout over `_Stdout`, buffered as it was (PYTHONUNBUFFERED: not); not when
    something else has replaced it (a test capturing it)."""
    old = sys.stdout
    if old is not sys.__stdout__ or not isinstance(old, io.TextIOWrapper):
        return
    old.flush()
    raw = _Stdout(old.fileno(), "w", closefd=False)
    buffered = isinstance(old.buffer, io.BufferedWriter)
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(raw) if buffered else raw,
                                  encoding=old.encoding, errors=old.errors,
                                  line_buffering=old.line_buffering,
                                  write_through=old.write_through)


def _fill_closed_streams() -> None:
    """/dev/null on each of fds 0-2 that was closed at start, and a stream over it where
    Python left sys.stdin, sys.stdout or sys.stderr None. Else the next file the run opens
    takes that number, a child started with it inherits that file as its stderr, and the
    progress lines had nowhere to go (the run failed with exit code 1 and no word)."""
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            try:  # the lowest free number: `fd`, as 0..fd-1 are open
                os.set_inheritable(os.open(os.devnull, os.O_RDWR), True)
            except OSError:
                return  # no /dev/null (a bare chroot): the streams stay None
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))  # noqa: SIM115


def _refuse_undecodable(argv: Sequence[str]) -> None:
    """An argument that is not UTF-8 (a path named in another encoding) cannot be recorded in
    the run's JSON: refused here, before anything, rather than failing deep in the run."""
    for arg in argv:
        if (shown := undecodable(arg)) is not None:
            raise UsageError(f"argument '{shown}' is not UTF-8 text")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line on `argv` (default: sys.argv[1:]); returns the exit code. The
    `harness` script and `python -m harness` reach it through `harness._entry`."""
    code: int = 0  # a command cut short by a reader gone away (`harness runs | head`): done
    # All in the try: Ctrl-C while the command's modules are imported is an interruption too
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        _fill_closed_streams()
        _refuse_undecodable(argv)
        for stream in (sys.stdout, sys.stderr):  # e.g. PYTHONIOENCODING=ascii: "—" as \u2014
            if isinstance(stream, io.TextIOWrapper):
                stream.reconfigure(errors="backslashreplace")
        _own_stdout()
        # a known subcommand first: only its module is needed; --version alone needs none
        # (anything else, e.g. --help or a typo, gets the whole parser and its usage)
        only = argv[:1] if argv[:1] and argv[0] in COMMANDS else () if argv == ["--version"] \
            else COMMANDS
        parser = build_parser(only)
        try:
            args, extra = parser.parse_known_args(argv)
            late = getattr(args, "late_positional", None)
            if late and getattr(args, late) is None and len(extra) == 1 \
                    and not extra[0].startswith("-"):
                setattr(args, late, extra.pop())
            if extra:
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
        except SystemExit:  # --help or a usage error: what it printed must leave
            if sys.stdout is not None:
                sys.stdout.flush()
            raise
        code = args._run(args)
        if sys.stdout is not None:  # None: started with stdout closed
            sys.stdout.flush()  # a gone or full stdout is found here, not at exit
    except HarnessError as e:
        tell(f"harness: error: {e}")
        return e.exit_code
    except KeyboardInterrupt:
        tell("harness: interrupted")
        return 130
    except OSError as e:
        if e.filename == STDOUT:  # what is left for it goes nowhere, not to the flush at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            if isinstance(e, BrokenPipeError):  # the reader has what it wanted
                return code
        tell(f"harness: error: {_what_failed(e)}: {e.strerror or e}")
        return 3
    return code


def _what_failed(error: OSError) -> str:
    """The file(s) an OSError names, stdout, or else its kind."""
    if error.filename == STDOUT:
        return "writing to stdout"
    if error.filename is None:
        return type(error).__name__
    return str(error.filename) + (f" -> {error.filename2}" if error.filename2 else "")
