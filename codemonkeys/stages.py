"""The stages' names, one vocabulary for usage records, timings, the summary and where a run stopped; and the
clock that times them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum


class Stage(StrEnum):
    RELEVANCE = "relevance"
    RANKING = "ranking"
    SANDBOX = "sandbox"
    TESTING = "testing"
    EDITING = "editing"
    VOTING = "voting"
    SELECTION = "selection"


class StageClock:
    """Wall time per stage during which at least one piece of work was in it: trajectories run their testing
    and editing stages side by side, so the stages' times may add up to more than the run's. `spans` are those
    times as (start, end) seconds since the clock was made, for a timeline; overlapping work in one stage is
    one span, since a span lasts while any of it runs."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.spans: dict[str, list[tuple[float, float]]] = {}
        self._origin = time.monotonic()
        self._active: dict[Stage, int] = {}
        self._since: dict[Stage, float] = {}

    @contextmanager
    def __call__(self, stage: Stage) -> Iterator[None]:
        if not self._active.get(stage):
            self._since[stage] = time.monotonic()
        self._active[stage] = self._active.get(stage, 0) + 1
        try:
            yield
        finally:
            self._active[stage] -= 1
            if not self._active[stage]:
                now = time.monotonic()
                elapsed = self.seconds.get(stage, 0.0) + now - self._since[stage]
                self.seconds[str(stage)] = round(elapsed, 3)
                span = (round(self._since[stage] - self._origin, 3), round(now - self._origin, 3))
                self.spans.setdefault(str(stage), []).append(span)
