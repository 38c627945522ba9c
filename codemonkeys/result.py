"""`result.json`: the outcome of one problem, read by the summary, the report and later runs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from codemonkeys.llm import StageTotals

Status = Literal["patched", "no_candidate", "budget_exhausted", "model_error"]
# A rerun of the same command picks these up again instead of returning them as final.
RESUMABLE = ("budget_exhausted", "model_error")


class SolveResult(BaseModel):
    """`result.json`: what the run chose and what it cost."""

    instance_id: str
    status: Status
    patch: str | None = None
    chosen_candidate: int | None = None
    votes: dict[int, int] = {}
    candidates: int = 0
    trajectories: int = 0
    selection_fallback: bool = False
    budget_exhausted: bool = False
    model_errors: int = 0
    error: str | None = None
    sandbox: str = ""
    usage: dict[str, StageTotals] = {}
    cost_usd: float = 0.0
    unpriced_models: list[str] = []
    seconds: float = 0.0
    stage_seconds: dict[str, float] = {}
