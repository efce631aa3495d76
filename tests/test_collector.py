"""The cycle-collector settings last as long as the block (a run, a simulation), however it ends."""

from __future__ import annotations

import contextlib
import gc

import pytest

from harness import fewer_collections


@pytest.mark.parametrize("fails", [False, True])
def test_the_collector_is_tuned_during_a_run_and_given_back_after(fails: bool) -> None:
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError) if fails else contextlib.nullcontext(), fewer_collections():
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
        with fewer_collections():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_a_block_asks_for_how_rarely_young_collections_come() -> None:
    before = gc.get_threshold()
    with fewer_collections(young=50_000):
        assert gc.get_threshold() == (50_000, *before[1:])
    assert gc.get_threshold() == before


def test_blocks_that_end_out_of_order_leave_the_collector_as_it_was() -> None:
    # Two simulated clusters whose lifetimes overlap, the first ending first.
    before = gc.get_threshold()
    first, second = fewer_collections(young=20_000), fewer_collections(young=50_000)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    second.__exit__(None, None, None)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
