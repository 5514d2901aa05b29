"""The step timers: a block's seconds land in the record being kept, nowhere when none is."""

from __future__ import annotations

import time

from mvemo.manifests.steps import add, recording, step


def test_steps_sum_into_the_record_of_their_block_and_outside_one_record_nothing() -> None:
    with step("outside"):
        pass
    with recording() as outer:
        with step("sleep"):
            time.sleep(0.02)
        with step("sleep"):
            time.sleep(0.02)
        with recording() as inner, step("inner"):
            pass
    assert set(outer) == {"sleep"} and outer["sleep"] >= 0.04
    assert set(inner) == {"inner"}, "a nested record keeps its own steps"
    total = {"sleep": 1.0}
    add(total, outer | {"other": 2.0})
    assert total == {"sleep": 1.0 + outer["sleep"], "other": 2.0}


def test_a_step_that_raises_still_counts_its_seconds() -> None:
    with recording() as record:
        try:
            with step("failing"):
                time.sleep(0.01)
                raise ValueError("bad clip")
        except ValueError:
            pass
    assert record["failing"] >= 0.01
