"""Runs the four stages for one problem, resuming from whatever the run directory already holds."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from codemonkeys.config import Settings
from codemonkeys.context import build_context
from codemonkeys.context.models import ContextResult
from codemonkeys.llm import BoundModel, BudgetExceeded, ModelCallError, ModelClient
from codemonkeys.problem import Problem
from codemonkeys.report import write_report
from codemonkeys.result import RESUMABLE, SolveResult, Status
from codemonkeys.sandbox.base import SandboxProvider
from codemonkeys.sandbox.factory import make_provider
from codemonkeys.store import InstanceStore, RunStore, atomic_write_text, read_jsonl
from codemonkeys.trajectories.editing import run_editing
from codemonkeys.trajectories.models import Candidate, EditingResult, SelectionResult, TestingResult, VoteResult
from codemonkeys.trajectories.selection import run_selection
from codemonkeys.trajectories.testing import run_testing
from codemonkeys.voting import collect_candidates, distinct_scripts, vote

log = logging.getLogger("codemonkeys.pipeline")


class _Generation(BaseModel):
    testing: list[TestingResult]
    editing: list[EditingResult]
    budget_exhausted: bool
    model_errors: list[str]


@dataclass
class _Job:
    """What every stage of one problem shares."""

    problem: Problem
    settings: Settings
    client: ModelClient
    store: RunStore
    inst: InstanceStore
    started: float = field(default_factory=time.monotonic)
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Wall time per stage, for the summary and the benchmarks."""
        started = time.monotonic()
        try:
            yield
        finally:
            elapsed = self.stage_seconds.get(stage, 0.0) + time.monotonic() - started
            self.stage_seconds[stage] = round(elapsed, 3)

    def bind(self, stage: str, model: str, record: str, cache_prefix: int = 0) -> BoundModel:
        return self.client.bind(
            model=model,
            instance=self.problem.instance_id,
            stage=stage,
            record=self.inst.path(record),
            cache_prefix=cache_prefix,
        )


async def solve(problem: Problem, settings: Settings, client: ModelClient, store: RunStore) -> SolveResult:
    """Context → generation → voting → selection; every finished step is read back instead of redone."""
    job = _Job(problem, settings, client, store, store.instance(problem.instance_id))
    done = job.inst.load("result.json", SolveResult)
    if done is not None and done.status not in RESUMABLE and not done.budget_exhausted:
        log.info("%s: already solved in this run directory", problem.instance_id)
        return done
    job.inst.save("problem.json", problem)
    try:
        with job.timed("context"):
            context = await build_context(problem, client, settings, job.inst)
    except BudgetExceeded as exc:
        log.warning("context: budget spent (%s)", exc)
        return _finish(job, status="budget_exhausted", budget_exhausted=True)
    except ModelCallError as exc:
        log.error("context: the model provider failed: %s", exc)
        return _finish(job, status="model_error", error=f"context: {exc}")
    provider = await make_provider(settings, problem, run_label=store.root.name)
    log.info("sandbox: %s", provider.description)
    try:
        return await _generate_and_choose(job, context, provider)
    finally:
        await provider.aclose()


async def _generate_and_choose(job: _Job, context: ContextResult, provider: SandboxProvider) -> SolveResult:
    with job.timed("generate"):
        gen = await _generate(job, context, provider)
    finish: dict[str, Any] = {
        "sandbox": provider.description,
        "trajectories": job.settings.samples,
        "model_errors": len(gen.model_errors),
        "error": gen.model_errors[0] if gen.model_errors else None,
    }
    candidates = collect_candidates(gen.editing)
    log.info("generate: %d candidate(s) from %d trajectories", len(candidates), job.settings.samples)
    if not candidates:
        status: Status = "no_candidate"
        if gen.budget_exhausted:
            status = "budget_exhausted"
        elif gen.model_errors:
            status = "model_error"
        return _finish(job, status=status, budget_exhausted=gen.budget_exhausted, **finish)
    scripts = [r.script for r in gen.editing if r.script]
    votes = job.inst.load("votes.json", VoteResult)
    if votes is None or votes.candidate_ids != [c.id for c in candidates] or votes.scripts != distinct_scripts(scripts):
        # New candidates (a resumed run that had run out of budget): the old votes and choice are stale.
        for stale in ("selection.json", "selection.calls.json"):
            job.inst.path(stale).unlink(missing_ok=True)
        with job.timed("vote"):
            votes = await vote(candidates, scripts, provider, job.settings)
        job.inst.save("votes.json", votes)
    top = [next(c for c in candidates if c.id == cid) for cid in votes.top]
    log.info("vote: top %s with votes %s", [c.id for c in top], [votes.votes[c.id] for c in top])
    with job.timed("select"):
        selection, budget_hit = await _select(job, context, provider, top)
    chosen = top[selection.chosen_id]
    return _finish(
        job,
        status="patched",
        patch=chosen.patch,
        chosen_candidate=chosen.id,
        votes=votes.votes,
        candidates=len(candidates),
        selection_fallback=selection.fallback,
        budget_exhausted=gen.budget_exhausted or budget_hit,
        **finish,
    )


async def _generate(job: _Job, context: ContextResult, provider: SandboxProvider) -> _Generation:
    """Runs every testing → editing pair concurrently; a pair stopped by the budget or by a failing provider
    is left unsaved, so a rerun resumes it."""
    settings, inst = job.settings, job.inst
    finished = 0

    async def pair(i: int) -> tuple[TestingResult, EditingResult]:
        nonlocal finished
        model = settings.models[i % len(settings.models)]
        testing = inst.load(f"testing/{i}.json", TestingResult)
        editing = inst.load(f"editing/{i}.json", EditingResult)
        if testing is None or editing is None:
            sandbox = await provider.open(f"trajectory-{i}")
            try:
                if testing is None:
                    bound = job.bind("testing", model, f"testing/{i}.calls.json")
                    testing = await run_testing(job.problem, bound, sandbox, settings, i)
                    inst.save(f"testing/{i}.json", testing)
                bound = job.bind("editing", model, f"editing/{i}.calls.json", cache_prefix=1)
                editing = await run_editing(job.problem, context, testing, bound, sandbox, settings, i)
                inst.save(f"editing/{i}.json", editing)
            finally:
                await sandbox.close()
        finished += 1
        log.info(
            "generate: trajectory %d done (%d/%d)%s",
            i,
            finished,
            settings.samples,
            "" if editing.patch else f", no candidate: {editing.error or 'no edit applied'}",
        )
        return testing, editing

    outcomes = await asyncio.gather(*(pair(i) for i in range(settings.samples)), return_exceptions=True)
    testing_results, editing_results, budget, model_errors = [], [], False, []
    for i, outcome in enumerate(outcomes):
        if isinstance(outcome, BudgetExceeded):
            budget = True
        elif isinstance(outcome, ModelCallError):
            log.error("generate: trajectory %d stopped, the model provider failed: %s", i, outcome)
            model_errors.append(f"trajectory {i}: {outcome}")
        elif isinstance(outcome, BaseException):
            log.error("generate: trajectory %d failed: %s", i, outcome)
        else:
            testing_results.append(outcome[0])
            editing_results.append(outcome[1])
    if budget:
        log.warning("generate: budget spent; %d trajectories finished", len(editing_results))
    return _Generation(
        testing=testing_results, editing=editing_results, budget_exhausted=budget, model_errors=model_errors
    )


async def _select(
    job: _Job, context: ContextResult, provider: SandboxProvider, top: list[Candidate]
) -> tuple[SelectionResult, bool]:
    """One candidate needs no selection; a spent budget falls back to the top-voted candidate."""
    saved = job.inst.load("selection.json", SelectionResult)
    if saved is not None:
        return saved, False
    if len(top) == 1:
        return SelectionResult(chosen_id=0, fallback=False), False
    example = next((s for s in top[0].scripts if s), "")
    bound = job.bind("selection", job.settings.models[0], "selection.calls.json")
    sandbox = await provider.open("selection")
    try:
        selection = await run_selection(job.problem, context, top, example, bound, sandbox, job.settings)
    except BudgetExceeded:
        log.warning("select: budget spent; taking the top-voted candidate")
        return SelectionResult(chosen_id=0, fallback=True, error="budget spent"), True
    finally:
        await sandbox.close()
    job.inst.save("selection.json", selection)
    log.info("select: candidate %d%s", top[selection.chosen_id].id, " (fallback)" if selection.fallback else "")
    return selection, False


def _finish(job: _Job, **fields: Any) -> SolveResult:
    instance_id = job.problem.instance_id
    result = SolveResult(
        instance_id=instance_id,
        stage_seconds=job.stage_seconds,
        usage=job.client.stage_totals(instance_id),
        cost_usd=job.client.spent(instance_id),
        unpriced_models=job.client.unpriced_models(),
        seconds=round(time.monotonic() - job.started, 2),
        **fields,
    )
    job.inst.save("result.json", result)
    write_report(job.inst, result)
    if result.patch:
        _record_prediction(job.store, instance_id, result.patch)
    return result


def _record_prediction(store: RunStore, instance_id: str, patch: str) -> None:
    """SWE-bench's prediction format, one line per instance: a resumed instance replaces its old line."""
    kept = [r for r in read_jsonl(store.predictions_path) if r.get("instance_id") != instance_id]
    kept.append({"instance_id": instance_id, "model_name_or_path": "codemonkeys", "model_patch": patch})
    atomic_write_text(store.predictions_path, "".join(json.dumps(r) + "\n" for r in kept))
