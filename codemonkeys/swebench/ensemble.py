"""`swebench ensemble` for one instance ("barrel of monkeys"): the candidates of several systems, pooled, are
voted on by every test script the runs wrote (or by new testing trajectories when none did) and selection picks
among the top. Like `solve_job`, a plain serialisable job, so the local executor and a Ray task run the same
code; a finished instance is read back and a half-done one resumes with its model calls replayed."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pydantic import BaseModel

from codemonkeys.config import Settings
from codemonkeys.llm import BudgetExceeded, RunStopped
from codemonkeys.pipeline import ProblemJob, StageFailed, solve_result, vote_and_select
from codemonkeys.repo_files import OriginalFiles
from codemonkeys.report import write_report
from codemonkeys.result import SolveResult
from codemonkeys.sandbox.base import SandboxError, SandboxProvider
from codemonkeys.sandbox.factory import make_provider
from codemonkeys.stages import Stage, StageClock
from codemonkeys.store import InstanceStore, RunStore
from codemonkeys.swebench.jobs import JobOutcome, client_for, outcome_of
from codemonkeys.swebench.models import SWEInstance
from codemonkeys.swebench.pooling import Pool
from codemonkeys.swebench.prepare import PrepareError, prepare
from codemonkeys.trajectories.common import crash_message
from codemonkeys.trajectories.models import TestingResult
from codemonkeys.trajectories.testing import run_testing
from codemonkeys.voting import distinct_scripts, stored_candidates

log = logging.getLogger("codemonkeys.swebench")

MODEL_NAME = "codemonkeys-ensemble"


class EnsembleJob(BaseModel):
    """One instance's pool and the distinct final test scripts the `--runs` wrote for it."""

    instance: SWEInstance
    pool: Pool
    scripts: list[str] = []


async def ensemble_job(job: EnsembleJob, settings: Settings) -> JobOutcome:
    """Chooses among the pooled candidates into the run directory; every failure is this instance's alone."""
    assert settings.run_dir is not None
    store = RunStore(settings.run_dir)
    inst = store.instance(job.instance.instance_id)
    done = inst.result.load()
    if done is not None and not done.resumable:
        return _outcome(done, job.pool, skipped=True)
    if inst.pool.load() != job.pool:
        # Other inputs than the stopped run had: its votes and choice are about other candidates.
        inst.votes.forget()
        inst.selection.forget()
    inst.pool.save(job.pool)
    work = _Ensemble(job, settings, store, inst)
    try:
        result = await work.run()
    except PrepareError as exc:
        log.error("%s", exc)
        result = work.finish(status="failed", stopped_stage="environment", error=str(exc))
    except RunStopped as exc:
        log.warning("%s: %s stopped: %s", job.instance.instance_id, exc.stage or "run", exc)
        status = "budget_exhausted" if isinstance(exc, BudgetExceeded) else "model_error"
        result = work.finish(status=status, stopped_stage=exc.stage, error=str(exc))
    except StageFailed as exc:
        log.error("%s: %s failed: %s", job.instance.instance_id, exc.stage, exc)
        result = work.finish(status="failed", stopped_stage=str(exc.stage), error=str(exc))
    except Exception as exc:
        log.exception("%s crashed", job.instance.instance_id)
        result = work.finish(status="failed", error=crash_message(exc))
    return _outcome(result, job.pool)


def _outcome(result: SolveResult, pool: Pool, skipped: bool = False) -> JobOutcome:
    detail = f"from {len(pool.patches)} pooled candidate(s)" if pool.patches else "(nothing pooled)"
    return outcome_of(result, skipped).model_copy(update={"detail": detail})


class _Ensemble:
    """One instance's ensemble: the pool's candidates, the scripts that vote on them, what it found out."""

    def __init__(self, job: EnsembleJob, settings: Settings, store: RunStore, inst: InstanceStore) -> None:
        self.job = job
        self.settings = settings
        self.store = store
        self.inst = inst
        self.client = client_for(settings, store.usage_path)
        self.started = time.monotonic()
        self.clock = StageClock()
        self.facts: dict[str, Any] = {"candidates": len(job.pool.patches)}
        self.ended_early: list[str] = []

    async def run(self) -> SolveResult:
        pool = self.job.pool
        if not pool.patches:
            empty = f" ({len(pool.empty)} source(s) had an empty patch)" if pool.empty else ""
            return self.finish(status="no_candidate", error=f"no candidate patch was pooled{empty}")
        if len(pool.patches) == 1:
            # Nothing to choose between: no environment, no tests, no model call.
            return self.finish(status="patched", patch=pool.patches[0].patch, chosen_candidate=0)
        prepared = await prepare(self.job.instance, self.settings)
        self.inst.environment.save(prepared.manifest)
        problem = prepared.problem()
        self.inst.problem.save(problem)
        s = prepared.settings
        job = ProblemJob(
            problem,
            s,
            self.client,
            self.store,
            self.inst,
            OriginalFiles(problem.repo_path, problem.commit),
            self.started,
            self.clock,
            self.facts,
            self.ended_early,
        )
        try:
            provider = await make_provider(s.sandbox, problem, run_label=self.store.root.name)
        except SandboxError as exc:
            raise StageFailed(Stage.SANDBOX, exc) from exc
        job.facts["sandbox"] = provider.description
        try:
            scripts = self.job.scripts or await self._testing(job, provider)
            # The voting scripts double as selection's example of a working script.
            candidates = [c.model_copy(update={"scripts": scripts}) for c in stored_candidates(pool, [])]
            chosen, selection = await vote_and_select(job, candidates, scripts, provider)
        finally:
            await provider.aclose()
        return self.finish(
            status="patched",
            patch=chosen.patch,
            chosen_candidate=chosen.id,
            selection_fallback=selection.fallback,
        )

    async def _testing(self, job: ProblemJob, provider: SandboxProvider) -> list[str]:
        """`samples` testing trajectories, as `solve` runs them, for an instance no run wrote a script for;
        each saved when it finishes, so a rerun replays or reads them back."""
        s = job.settings
        job.facts["trajectories"] = s.generation.samples

        async def one(i: int) -> TestingResult:
            record = job.inst.testing(i)
            tested = record.load()
            if tested is None:
                model = s.models.names[i % len(s.models.names)]
                async with await provider.open(f"testing-{i}") as sandbox:
                    with job.clock(Stage.TESTING):
                        bound = job.bind(Stage.TESTING, model, record.calls)
                        tested = await run_testing(job.problem, bound, sandbox, s.generation, s.sandbox, i)
                record.save(tested)
            if tested.error:
                job.ended_early.append(f"testing {i}: {tested.error}")
            return tested

        outcomes = await asyncio.gather(*(one(i) for i in range(s.generation.samples)), return_exceptions=True)
        for i, outcome in enumerate(outcomes):
            if isinstance(outcome, BaseException) and not isinstance(outcome, RunStopped):
                job.ended_early.append(f"testing {i} crashed: {crash_message(outcome)}")
        if stop := next((o for o in outcomes if isinstance(o, RunStopped)), None):
            raise stop
        scripts = distinct_scripts([o.script for o in outcomes if isinstance(o, TestingResult) and o.script])
        log.info("%s: %d script(s) from %d testing trajectories", job.problem.instance_id, len(scripts), len(outcomes))
        return scripts

    def finish(self, **fields: Any) -> SolveResult:
        """`result.json` and `report.html`, and for a finished instance its prediction line, `source` naming every
        system that proposed the chosen fix."""
        iid = self.job.instance.instance_id
        result = solve_result(iid, self.client, self.clock, self.started, self.ended_early, self.facts, **fields)
        self.inst.result.save(result)
        write_report(self.inst, result)
        if not result.resumable:
            chosen = result.chosen_candidate
            source = [] if chosen is None else self.job.pool.sources(chosen)
            self.store.record_prediction(iid, result.patch or "", MODEL_NAME, source=[p.model_dump() for p in source])
        return result
