"""The one-line error for a run out of file descriptors (`harness._openfiles`)."""

from __future__ import annotations

import errno
import resource

import pytest

from harness import _openfiles


def _emfile() -> OSError:
    return OSError(errno.EMFILE, "Too many open files")


def test_a_limit_below_what_the_run_needs_is_told_to_be_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _: (64, 64))
    problem = _openfiles.out_of_files(ExceptionGroup("x", [_emfile()]), 10)
    assert str(problem) == ("too many open files: this process may open 64 (ulimit -n; hard "
                            "limit 64), a run of 10 instances needs about 276: raise it "
                            "(ulimit -n 276) or run fewer instances")


def test_a_limit_above_what_the_run_needs_is_not_blamed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It said "may open 1024 ..., a run of 1 instances needs about 258: raise it (ulimit
    -n 258)" when a flood of connections had taken them all."""
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 4096))
    problem = _openfiles.out_of_files(_emfile(), 1)
    assert problem is not None
    assert "raise it" not in str(problem)
    assert str(problem).startswith("too many open files: this process had all the 1024 it "
                                   "may open in use, far more than a run of 1 instances needs")


def test_another_error_is_not_a_shortage_of_files() -> None:
    assert _openfiles.out_of_files(OSError(errno.ENOENT, "gone"), 1) is None
