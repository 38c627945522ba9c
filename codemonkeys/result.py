"""`result.json`: the outcome of one problem, read by the summary, the report and later runs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from codemonkeys.llm import StageTotals

# `budget_exhausted` and `model_error`: the run stopped early (DESIGN.md, "Stop rule"); `failed`: a stage
# crashed (a sandbox that would not start). A rerun of the same command resumes all three.
Status = Literal["patched", "no_candidate", "budget_exhausted", "model_error", "failed"]
RESUMABLE = ("budget_exhausted", "model_error", "failed")


class SolveResult(BaseModel):
    """`result.json`: what the run chose and what it cost, or where it stopped and why. `ended_early` names
    every conversation that ended before its model was done (a crash, a refused request) and why. `stage_spans`
    are when each stage ran, in seconds since this process began the problem (a resumed run's own)."""

    instance_id: str
    status: Status
    patch: str | None = None
    chosen_candidate: int | None = None
    votes: dict[int, int] = {}
    candidates: int = 0
    trajectories: int = 0
    selection_fallback: bool = False
    stopped_stage: str | None = None
    error: str | None = None
    ended_early: list[str] = []
    sandbox: str = ""
    usage: dict[str, StageTotals] = {}
    cost_usd: float = 0.0
    unpriced_models: list[str] = []
    seconds: float = 0.0
    stage_seconds: dict[str, float] = {}
    stage_spans: dict[str, list[tuple[float, float]]] = {}

    @property
    def resumable(self) -> bool:
        return self.status in RESUMABLE
