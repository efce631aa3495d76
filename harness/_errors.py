"""Errors the user sees as one line, never as a traceback."""

from __future__ import annotations

from collections.abc import Collection


class HarnessError(Exception):
    """A problem the user can fix; the CLI prints it as one line and exits with `exit_code`."""

    exit_code = 2


class UsageError(HarnessError):
    """Bad input: an unknown plan, case or param, a wrong type, a count out of range."""


class EnvironmentProblem(HarnessError):
    """The machine lacks something the run needs (a privilege, a kernel feature, a program)."""

    exit_code = 3


def single_cause(error: BaseException) -> BaseException:
    """The one exception inside nested one-member exception groups (as nurseries wrap)."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def os_error_in(error: BaseException, errnos: Collection[int]) -> OSError | None:
    """The first OSError whose errno is one of `errnos` in `error`, what caused it, or, for
    an exception group, any of its members (what a machine runs out of fails every task
    that needs it at once, each its own way)."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if (found := os_error_in(inner, errnos)) is not None:
                return found
        return None
    if isinstance(error, OSError) and error.errno in errnos:
        return error
    return None if error.__cause__ is None else os_error_in(error.__cause__, errnos)


def undecodable(text: str) -> str | None:
    """`text` shown with `\\xNN` for each byte that is not UTF-8 (what an argument or a
    file name in another encoding carries), or None if it is UTF-8."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode(errors="surrogateescape").decode(errors="backslashreplace")
    return None
