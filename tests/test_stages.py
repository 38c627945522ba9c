"""The stage clock: total seconds per stage and the spans a timeline draws."""

from __future__ import annotations

import time

from codemonkeys.stages import Stage, StageClock


def test_overlapping_work_in_a_stage_is_one_span_and_separate_work_two():
    clock = StageClock()
    with clock(Stage.TESTING):
        time.sleep(0.02)
        with clock(Stage.TESTING):  # a second trajectory joins while the first is still testing
            time.sleep(0.02)
    with clock(Stage.VOTING):
        time.sleep(0.01)
    with clock(Stage.TESTING):
        time.sleep(0.01)
    (first, second), [voting] = clock.spans["testing"], clock.spans["voting"]
    assert 0 <= first[0] < first[1] <= voting[0] < voting[1] <= second[0] < second[1]
    assert first[1] - first[0] >= 0.04
    total = sum(end - start for start, end in clock.spans["testing"])
    assert abs(clock.seconds["testing"] - total) < 0.01
