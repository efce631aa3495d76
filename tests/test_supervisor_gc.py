"""The supervisor's cycle-collector settings last as long as its run, however it ends."""

from __future__ import annotations

import contextlib
import gc

import pytest

from harness._supervisor import _fewer_collections


@pytest.mark.parametrize("fails", [False, True])
def test_the_collector_is_tuned_during_a_run_and_given_back_after(fails: bool) -> None:
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError) if fails else contextlib.nullcontext():
        with _fewer_collections():
            assert gc.get_threshold()[0] >= 10_000
            assert gc.get_freeze_count() > 1000  # what existed at the start
            if fails:
                raise RuntimeError("the run failed")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_what_the_embedding_program_froze_stays_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with _fewer_collections():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
