"""Run ids: made, recognised and parsed in one module (harness._runid)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness._errors import UsageError
from harness._runid import RUN_ID_RE, is_run_id, new_run_id, run_id_time
from harness.observe import list_run_dirs, resolve_run

T = 1795000000.0  # 2026-11-18 11:06:40 UTC


def test_a_new_id_records_its_start_and_sorts_by_it() -> None:
    made = new_run_id(T)
    assert RUN_ID_RE.match(made) and is_run_id(made)
    assert made.startswith("20261118-110640-")
    assert run_id_time(made) == datetime(2026, 11, 18, 11, 6, 40, tzinfo=UTC)
    later = [new_run_id(T + dt) for dt in (1, 60, 86400 * 40)]
    assert sorted([*later, made]) == [made, *later]
    assert len({new_run_id(T) for _ in range(50)}) > 45  # same second, different runs


@pytest.mark.parametrize(
    "text",
    ["", "latest", "20261118-110640", "20261118-110640-ABCDEF", "20261118-110640-abcdefa",
     "x20261118-110640-abcdef", "20261399-110640-abcdef", "20261118-256199-abcdef"],
)
def test_what_is_not_a_run_id(text: str) -> None:
    assert not is_run_id(text) and run_id_time(text) is None


def test_only_run_directories_are_listed(tmp_path: Path) -> None:
    """A directory shaped like a run id whose date does not exist is not a run."""
    names = ["20261118-110640-abcdef", "20261118-110641-000000", "20261399-999999-abcdef",
             "history", "20261118-110642-abcdef.tmp"]
    for name in names:
        (tmp_path / name).mkdir()
    assert [p.name for p in list_run_dirs(tmp_path)] == names[:2]
    assert resolve_run("latest", tmp_path).name == names[1]
    with pytest.raises(UsageError, match="no run"):
        resolve_run("20261399", tmp_path)
