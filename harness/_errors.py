"""Errors the user sees as one line, never as a traceback."""

from __future__ import annotations


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
