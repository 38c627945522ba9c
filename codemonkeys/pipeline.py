"""Runs the four stages for one problem, resuming from whatever the run directory already holds."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from pydantic import BaseModel

from codemonkeys.config import Settings
from codemonkeys.context import build_context
from codemonkeys.context.models import ContextResult
from codemonkeys.llm import BudgetExceeded, ModelClient, StageTotals
from codemonkeys.problem import Problem
from codemonkeys.sandbox.base import SandboxProvider
from codemonkeys.sandbox.factory import make_provider
from codemonkeys.store import InstanceStore, RunStore, atomic_write_text, read_jsonl
from codemonkeys.trajectories.editing import run_editing
from codemonkeys.trajectories.models import Candidate, EditingResult, SelectionResult, TestingResult, VoteResult
from codemonkeys.trajectories.selection import run_selection
from codemonkeys.trajectories.testing import run_testing
from codemonkeys.voting import collect_candidates, vote

log = logging.getLogger("codemonkeys.pipeline")

Status = Literal["patched", "no_candidate", "budget_exhausted"]

_STAGE_SECONDS: contextvars.ContextVar[dict[str, float]] = contextvars.ContextVar("stage_seconds")


@contextmanager
def _timed(stage: str) -> Iterator[None]:
    """Wall time per stage of the current problem, for the summary and the benchmarks."""
    started = time.monotonic()
    try:
        yield
    finally:
        seconds = _STAGE_SECONDS.get()
        seconds[stage] = round(seconds.get(stage, 0.0) + time.monotonic() - started, 3)


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
    sandbox: str = ""
    usage: dict[str, StageTotals] = {}
    cost_usd: float = 0.0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = {}


class _Generation(BaseModel):
    testing: list[TestingResult]
    editing: list[EditingResult]
    budget_exhausted: bool


async def solve(problem: Problem, settings: Settings, client: ModelClient, store: RunStore) -> SolveResult:
    """Context → generation → voting → selection; every finished step is read back instead of redone."""
    inst = store.instance(problem.instance_id)
    done = inst.load("result.json", SolveResult)
    if done is not None and not done.budget_exhausted:
        log.info("%s: already solved in this run directory", problem.instance_id)
        return done
    started = time.monotonic()
    _STAGE_SECONDS.set({})
    inst.save("problem.json", problem)
    try:
        with _timed("context"):
            context = await build_context(problem, client, settings, inst)
    except BudgetExceeded as exc:
        log.warning("context: budget spent (%s)", exc)
        return _finish(inst, store, client, problem, started, status="budget_exhausted", budget_exhausted=True)
    provider = await make_provider(settings, problem, run_label=store.root.name)
    log.info("sandbox: %s", provider.description)
    try:
        return await _generate_and_choose(problem, settings, client, store, inst, context, provider, started)
    finally:
        await provider.aclose()


async def _generate_and_choose(
    problem: Problem,
    settings: Settings,
    client: ModelClient,
    store: RunStore,
    inst: InstanceStore,
    context: ContextResult,
    provider: SandboxProvider,
    started: float,
) -> SolveResult:
    with _timed("generate"):
        gen = await _generate(problem, settings, client, inst, context, provider)
    finish = {"sandbox": provider.description, "trajectories": settings.samples}
    candidates = collect_candidates(gen.editing)
    log.info("generate: %d candidate(s) from %d trajectories", len(candidates), settings.samples)
    if not candidates:
        status: Status = "budget_exhausted" if gen.budget_exhausted else "no_candidate"
        return _finish(
            inst, store, client, problem, started, status=status, budget_exhausted=gen.budget_exhausted, **finish
        )
    votes = inst.load("votes.json", VoteResult)
    if votes is None:
        scripts = [r.script for r in gen.editing if r.script]
        with _timed("vote"):
            votes = await vote(candidates, scripts, provider, settings)
        inst.save("votes.json", votes)
    top = [next(c for c in candidates if c.id == cid) for cid in votes.top]
    log.info("vote: top %s with votes %s", [c.id for c in top], [votes.votes[c.id] for c in top])
    with _timed("select"):
        selection, budget_hit = await _select(problem, settings, client, inst, context, provider, top, gen)
    chosen = top[selection.chosen_id]
    return _finish(
        inst,
        store,
        client,
        problem,
        started,
        status="patched",
        patch=chosen.patch,
        chosen_candidate=chosen.id,
        votes=votes.votes,
        candidates=len(candidates),
        selection_fallback=selection.fallback,
        budget_exhausted=gen.budget_exhausted or budget_hit,
        **finish,
    )


async def _generate(
    problem: Problem,
    settings: Settings,
    client: ModelClient,
    inst: InstanceStore,
    context: ContextResult,
    provider: SandboxProvider,
) -> _Generation:
    """Runs every testing → editing pair concurrently; a pair stopped by the budget is left unsaved to resume."""
    finished = 0

    async def pair(i: int) -> tuple[TestingResult, EditingResult] | None:
        nonlocal finished
        model = settings.models[i % len(settings.models)]
        testing = inst.load(f"testing/{i}.json", TestingResult)
        editing = inst.load(f"editing/{i}.json", EditingResult)
        if testing is None or editing is None:
            sandbox = await provider.open(f"trajectory-{i}")
            try:
                if testing is None:
                    record = inst.path(f"testing/{i}.calls.json")
                    bound = client.bind(model=model, instance=problem.instance_id, stage="testing", record=record)
                    testing = await run_testing(problem, bound, sandbox, settings, i)
                    inst.save(f"testing/{i}.json", testing)
                record = inst.path(f"editing/{i}.calls.json")
                bound = client.bind(
                    model=model, instance=problem.instance_id, stage="editing", record=record, cache_prefix=1
                )
                editing = await run_editing(problem, context, testing, bound, sandbox, settings, i)
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
    testing_results, editing_results, budget = [], [], False
    for i, outcome in enumerate(outcomes):
        if isinstance(outcome, BudgetExceeded):
            budget = True
        elif isinstance(outcome, BaseException):
            log.error("generate: trajectory %d failed: %s", i, outcome)
        elif outcome is not None:
            testing_results.append(outcome[0])
            editing_results.append(outcome[1])
    if budget:
        log.warning("generate: budget spent; %d trajectories finished", len(editing_results))
    return _Generation(testing=testing_results, editing=editing_results, budget_exhausted=budget)


async def _select(
    problem: Problem,
    settings: Settings,
    client: ModelClient,
    inst: InstanceStore,
    context: ContextResult,
    provider: SandboxProvider,
    top: list[Candidate],
    gen: _Generation,
) -> tuple[SelectionResult, bool]:
    """One candidate needs no selection; a spent budget falls back to the top-voted candidate."""
    saved = inst.load("selection.json", SelectionResult)
    if saved is not None:
        return saved, False
    if len(top) == 1:
        return SelectionResult(chosen_id=0, fallback=False), False
    example = next((s for s in top[0].scripts if s), "")
    bound = client.bind(
        model=settings.models[0],
        instance=problem.instance_id,
        stage="selection",
        record=inst.path("selection.calls.json"),
    )
    sandbox = await provider.open("selection")
    try:
        selection = await run_selection(problem, context, top, example, bound, sandbox, settings)
    except BudgetExceeded:
        log.warning("select: budget spent; taking the top-voted candidate")
        return SelectionResult(chosen_id=0, fallback=True, error="budget spent"), True
    finally:
        await sandbox.close()
    inst.save("selection.json", selection)
    log.info("select: candidate %d%s", top[selection.chosen_id].id, " (fallback)" if selection.fallback else "")
    return selection, False


def _finish(
    inst: InstanceStore,
    store: RunStore,
    client: ModelClient,
    problem: Problem,
    started: float,
    **fields: object,
) -> SolveResult:
    result = SolveResult(
        instance_id=problem.instance_id,
        stage_seconds=dict(_STAGE_SECONDS.get()),
        usage=client.stage_totals(problem.instance_id),
        cost_usd=client.spent(problem.instance_id),
        seconds=round(time.monotonic() - started, 2),
        **fields,  # type: ignore[arg-type]
    )
    inst.save("result.json", result)
    if result.patch:
        _record_prediction(store, problem.instance_id, result.patch)
    return result


def _record_prediction(store: RunStore, instance_id: str, patch: str) -> None:
    """SWE-bench's prediction format, one line per instance: a resumed instance replaces its old line."""
    kept = [r for r in read_jsonl(store.predictions_path) if r.get("instance_id") != instance_id]
    kept.append({"instance_id": instance_id, "model_name_or_path": "codemonkeys", "model_patch": patch})
    atomic_write_text(store.predictions_path, "".join(json.dumps(r) + "\n" for r in kept))
