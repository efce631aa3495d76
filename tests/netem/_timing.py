"""`remeasured`: the mark of a test whose assertions are measurements of time or rate.

Such a test measures the machine as well as the code: a multi-second stall of a shared host
makes RTTs late and goodput short in every test running through it. A failed assertion is
therefore measured once more, two seconds later, and only a second failure fails the test.
A real regression fails both times; the first attempt's message is printed at the end of the
run either way (`pytest_terminal_summary` in tests/conftest.py). Errors other than a failed
assertion (a crash, a missing tool) are not run again.
"""

from __future__ import annotations

import pytest

remeasured = pytest.mark.flaky(reruns=1, reruns_delay=2, only_rerun=["AssertionError"])
