"""Runs the four stages for one problem, resuming from whatever the run directory already holds.

One stop rule for every stage (DESIGN.md): a spent budget or a failing provider (`RunStopped`) ends the run
early. The stage it interrupts is left unsaved, finished work stays saved, the result says which stage
stopped and why, and the same command resumes exactly the unfinished stage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codemonkeys.config import ContextSettings, Settings
from codemonkeys.context import build_context
from codemonkeys.context.models import ContextResult
from codemonkeys.jsonfiles import atomic_write_text
from codemonkeys.llm import BoundModel, BudgetExceeded, ModelClient, RunStopped
from codemonkeys.problem import Problem
from codemonkeys.repo_files import OriginalFiles
from codemonkeys.report import write_report
from codemonkeys.result import SolveResult
from codemonkeys.sandbox.base import Sandbox, SandboxError, SandboxProvider
from codemonkeys.sandbox.factory import make_provider
from codemonkeys.stages import Stage, StageClock
from codemonkeys.store import InstanceStore, RunStore
from codemonkeys.trajectories.common import crash_message
from codemonkeys.trajectories.editing import run_editing
from codemonkeys.trajectories.models import Candidate, EditingResult, SelectionResult
from codemonkeys.trajectories.selection import run_selection
from codemonkeys.trajectories.testing import run_testing
from codemonkeys.voting import collect_candidates, distinct_scripts, vote
from codemonkeys.window import CHARS_PER_TOKEN, estimate

log = logging.getLogger("codemonkeys.pipeline")

EDITING_OPENING_TOKENS = 3_000  # the editing prompts' own text and the seeded script, without files or output
MIN_CONTEXT_TOKENS = 1_000


class StageFailed(Exception):
    """A stage crashed for a reason of its own (not a stopped run); the result says so and a rerun retries."""

    def __init__(self, stage: Stage, cause: BaseException) -> None:
        super().__init__(crash_message(cause))
        self.stage = stage


@dataclass
class ProblemJob:
    """What every stage of one problem shares."""

    problem: Problem
    settings: Settings
    client: ModelClient
    store: RunStore
    inst: InstanceStore
    originals: OriginalFiles
    started: float = field(default_factory=time.monotonic)
    clock: StageClock = field(default_factory=StageClock)
    facts: dict[str, Any] = field(default_factory=dict)
    ended_early: list[str] = field(default_factory=list)

    def bind(self, stage: Stage, model: str, record: Any, cache_prefix: int = 0) -> BoundModel:
        return self.client.bind(
            model=model, instance=self.problem.instance_id, stage=stage, record=record, cache_prefix=cache_prefix
        )


async def solve_in_run_dir(problem: Problem, settings: Settings) -> tuple[SolveResult, RunStore]:
    """`solve` with the run directory, its settings file and the model client set up from `settings`."""
    store = RunStore(settings.run_dir or Path("runs") / problem.instance_id)
    atomic_write_text(store.config_path, settings.model_dump_json(indent=2))
    client = ModelClient(settings.models, settings.budget, usage_path=store.usage_path)
    return await solve(problem, settings, client, store), store


async def solve(problem: Problem, settings: Settings, client: ModelClient, store: RunStore) -> SolveResult:
    """Context → generation → voting → selection; every finished step is read back instead of redone."""
    inst = store.instance(problem.instance_id)
    done = inst.result.load()
    if done is not None and not done.resumable:
        log.info("%s: already solved in this run directory", problem.instance_id)
        return done
    inst.problem.save(problem)
    job = ProblemJob(problem, settings, client, store, inst, OriginalFiles(problem.repo_path, problem.commit))
    try:
        return await _run(job)
    except RunStopped as exc:
        status = "budget_exhausted" if isinstance(exc, BudgetExceeded) else "model_error"
        log.warning("%s stopped: %s", exc.stage or "run", exc)
        return _finish(job, status=status, stopped_stage=exc.stage, error=str(exc))
    except StageFailed as exc:
        log.error("%s failed: %s", exc.stage, exc)
        return _finish(job, status="failed", stopped_stage=str(exc.stage), error=str(exc))


async def _run(job: ProblemJob) -> SolveResult:
    packing = _context_settings(job)
    # The sandboxes open while the context stage runs: a setup command, an image, container starts and worktree
    # checkouts take seconds to minutes that the trajectories would otherwise wait for after it.
    opening = asyncio.create_task(_open_sandboxes(job))
    try:
        context = await build_context(
            job.problem, job.client, job.settings.models, packing, job.inst, job.originals, job.clock
        )
    except BaseException:
        await _discard(opening)
        raise
    sandboxes = await opening
    try:
        return await _generate_and_choose(job, context, sandboxes)
    finally:
        await sandboxes.aclose()


@dataclass
class Sandboxes:
    """The problem's provider and the sandboxes opened ahead for its unfinished trajectory pairs."""

    provider: SandboxProvider
    opening: dict[int, asyncio.Task[Sandbox]]

    async def take(self, i: int) -> Sandbox:
        """Pair `i`'s sandbox: the one opened ahead (its failure raised here, as if opened now), else a new one."""
        task = self.opening.pop(i, None)
        return await (task if task is not None else self.provider.open(f"trajectory-{i}"))

    async def aclose(self) -> None:
        """Waits for the openings no pair took (an opening is not cut short: a half-made worktree or container
        would be left behind), then the provider closes every sandbox still open."""
        await asyncio.gather(*self.opening.values(), return_exceptions=True)
        self.opening.clear()
        await self.provider.aclose()


async def _open_sandboxes(job: ProblemJob) -> Sandboxes:
    """Opens no more ahead than the provider holds at once, so no opening waits for a pair to close one."""
    s = job.settings
    try:
        provider = await make_provider(s.sandbox, job.problem, run_label=job.store.root.name)
    except SandboxError as exc:
        raise StageFailed(Stage.SANDBOX, exc) from exc
    log.info("sandbox: %s", provider.description)
    job.facts["sandbox"] = provider.description
    unfinished = [i for i in range(s.generation.samples) if not _pair_done(job.inst, i)]
    ahead = unfinished[: provider.capacity]
    return Sandboxes(provider, {i: asyncio.create_task(provider.open(f"trajectory-{i}")) for i in ahead})


async def _discard(opening: asyncio.Task[Sandboxes]) -> None:
    """The context stage ended the run: whatever was opened for the trajectories is closed again. A sandbox
    that failed meanwhile is only logged: the context stage's error is the one the run reports."""
    try:
        sandboxes = await opening
        await sandboxes.aclose()
    except Exception as exc:
        log.warning("the sandboxes failed too: %s", crash_message(exc))


def _pair_done(inst: InstanceStore, i: int) -> bool:
    return inst.testing(i).load() is not None and inst.editing(i).load() is not None


def _context_settings(job: ProblemJob) -> ContextSettings:
    """The packed files go into every editing conversation's opening, so they get at most what the smallest
    window among the trajectories' models leaves after the rest of that opening (issue, rules, the script's
    output) and room for the turns."""
    s = job.settings
    window = min((job.client.window(m) for m in s.models.names), key=lambda w: w.opening)
    rest = estimate(job.problem.issue) + EDITING_OPENING_TOKENS + s.sandbox.output_limit // CHARS_PER_TOKEN
    budget = max(min(s.context.context_tokens, window.opening - rest), MIN_CONTEXT_TOKENS)
    if budget < s.context.context_tokens:
        log.info(
            "context: packing %d tokens, not %d, so editing fits the %d-token window of %s",
            budget,
            s.context.context_tokens,
            window.limit,
            window.model,
        )
    return s.context.model_copy(update={"context_tokens": budget})


async def _generate_and_choose(job: ProblemJob, context: ContextResult, sandboxes: Sandboxes) -> SolveResult:
    s = job.settings
    editing = await _generate(job, context, sandboxes)
    candidates = collect_candidates(editing)
    job.facts |= {"trajectories": s.generation.samples, "candidates": len(candidates)}
    log.info("generation: %d candidate(s) from %d trajectories", len(candidates), s.generation.samples)
    if not candidates:
        return _finish(job, status="no_candidate")
    scripts = [r.script for r in editing if r.script]
    chosen, selection = await vote_and_select(job, candidates, scripts, sandboxes.provider)
    return _finish(
        job,
        status="patched",
        patch=chosen.patch,
        chosen_candidate=chosen.id,
        selection_fallback=selection.fallback,
    )


async def vote_and_select(
    job: ProblemJob, candidates: list[Candidate], scripts: list[str], provider: SandboxProvider
) -> tuple[Candidate, SelectionResult]:
    """Every script votes on every candidate (saved votes are read back while the candidates and scripts are
    the same), then selection among the top; the chosen candidate and how it was chosen."""
    s = job.settings
    votes = job.inst.votes.load()
    if votes is None or votes.candidate_ids != [c.id for c in candidates] or votes.scripts != distinct_scripts(scripts):
        # New candidates (a resumed run that had stopped in generation): the old votes and choice are stale.
        job.inst.selection.forget()
        with job.clock(Stage.VOTING):
            votes = await vote(candidates, scripts, provider, s.generation, s.sandbox)
        job.inst.votes.save(votes)
    job.facts["votes"] = votes.votes
    top = [next(c for c in candidates if c.id == cid) for cid in votes.top]
    log.info("voting: top %s with votes %s", [c.id for c in top], [votes.votes[c.id] for c in top])
    with job.clock(Stage.SELECTION):
        selection = await _select(job, provider, top)
    if selection.error:
        job.ended_early.append(f"selection: {selection.error} (the top-voted candidate was taken)")
    return next(c for c in top if c.id == selection.chosen_candidate), selection


async def _generate(job: ProblemJob, context: ContextResult, sandboxes: Sandboxes) -> list[EditingResult]:
    """Runs every testing → editing pair concurrently and lets each finish or stop; a pair stopped by the
    budget or a failing provider is left unsaved (its finished testing half stays saved), then the stop
    is raised so the run ends with every finished pair kept."""
    s, inst = job.settings, job.inst
    finished = 0

    async def pair(i: int) -> EditingResult:
        nonlocal finished
        model = s.models.names[i % len(s.models.names)]
        testing, editing = inst.testing(i), inst.editing(i)
        tested, edited = testing.load(), editing.load()
        if tested is None or edited is None:
            sandbox = await sandboxes.take(i)
            try:
                if tested is None:
                    with job.clock(Stage.TESTING):
                        bound = job.bind(Stage.TESTING, model, testing.calls)
                        tested = await run_testing(job.problem, bound, sandbox, s.generation, s.sandbox, i)
                    testing.save(tested)
                with job.clock(Stage.EDITING):
                    bound = job.bind(Stage.EDITING, model, editing.calls, cache_prefix=1)
                    edited = await run_editing(
                        job.problem, context, tested, job.originals, bound, sandbox, s.generation, s.sandbox
                    )
                editing.save(edited)
            finally:
                await sandbox.close()
        finished += 1
        job.ended_early += [
            f"{what} {i}: {r.error}" for what, r in (("testing", tested), ("editing", edited)) if r.error
        ]
        why = "" if edited.patch else f", no candidate: {edited.error or 'no edit applied'}"
        log.info("generation: trajectory %d done (%d/%d)%s", i, finished, s.generation.samples, why)
        return edited

    outcomes = await asyncio.gather(*(pair(i) for i in range(s.generation.samples)), return_exceptions=True)
    results: list[EditingResult] = []
    stops: list[RunStopped] = []
    for i, outcome in enumerate(outcomes):
        if isinstance(outcome, RunStopped):
            stops.append(outcome)
        elif isinstance(outcome, BaseException):
            log.error("generation: trajectory %d failed: %s", i, crash_message(outcome))
            job.ended_early.append(f"trajectory {i} crashed, no candidate: {crash_message(outcome)}")
        else:
            results.append(outcome)
    if stops:
        log.warning("generation: %d of %d trajectories finished before the stop", len(results), len(outcomes))
        raise stops[0]
    return results


async def _select(job: ProblemJob, provider: SandboxProvider, top: list[Candidate]) -> SelectionResult:
    """One candidate needs no selection. Only a finished selection is saved: a stopped or crashed one is
    redone by a rerun (its finished calls replayed)."""
    record = job.inst.selection
    saved = record.load()
    if saved is not None:
        return saved
    if len(top) == 1:
        return SelectionResult(chosen_candidate=top[0].id)
    s = job.settings
    bound = job.bind(Stage.SELECTION, s.models.names[0], record.calls)
    try:
        async with await provider.open("selection") as sandbox:
            selection = await run_selection(
                job.problem,
                top,
                job.originals,
                bound,
                sandbox,
                s.generation,
                s.sandbox,
            )
    except RunStopped:
        raise
    except Exception as exc:
        raise StageFailed(Stage.SELECTION, exc) from exc
    record.save(selection)
    log.info("selection: candidate %d%s", selection.chosen_candidate, " (fallback)" if selection.fallback else "")
    return selection


def solve_result(
    instance_id: str,
    client: ModelClient,
    clock: StageClock,
    started: float,
    ended_early: list[str],
    facts: dict[str, Any],
    **fields: Any,
) -> SolveResult:
    """The outcome with what the run measured: time and spans per stage, usage and cost, what ended early."""
    return SolveResult(
        instance_id=instance_id,
        stage_seconds=clock.seconds,
        stage_spans=clock.spans,
        usage=client.stage_totals(instance_id),
        cost_usd=client.spent(instance_id),
        unpriced_models=client.unpriced_models(),
        seconds=round(time.monotonic() - started, 2),
        ended_early=ended_early,
        **facts,
        **fields,
    )


def _finish(job: ProblemJob, **fields: Any) -> SolveResult:
    instance_id = job.problem.instance_id
    result = solve_result(instance_id, job.client, job.clock, job.started, job.ended_early, job.facts, **fields)
    job.inst.result.save(result)
    write_report(job.inst, result)
    if not result.resumable:
        job.store.record_prediction(instance_id, result.patch or "")
    return result
