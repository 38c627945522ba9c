"""The work of one instance as functions of plain, serialisable inputs, so the local executor and a Ray task
run the same code. Each process keeps one model client per run directory: spend is read back from the
shared usage.jsonl, so the run budget holds across workers and processes."""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import BaseModel

from codemonkeys.config import Settings
from codemonkeys.llm import RUN_BUDGET, ModelClient
from codemonkeys.result import SolveResult
from codemonkeys.store import RunStore
from codemonkeys.swebench.models import EvalVerdict, SWEInstance
from codemonkeys.swebench.prepare import PrepareError, prepare
from codemonkeys.trajectories.common import crash_message

log = logging.getLogger("codemonkeys.swebench")

_clients: dict[str, ModelClient] = {}


def client_for(settings: Settings, usage_path: Path) -> ModelClient:
    """One client per process and run: its concurrency limits and breaker are shared by the instances here."""
    key = str(usage_path.resolve())
    if key not in _clients:
        _clients[key] = ModelClient(settings.models, settings.budget, usage_path=usage_path)
    return _clients[key]


class JobOutcome(BaseModel):
    """What the executor and the progress display learn of one finished instance."""

    instance_id: str
    status: str
    ok: bool
    skipped: bool = False
    cost_usd: float = 0.0
    error: str = ""
    detail: str = ""
    stop_batch: str = ""


def outcome_of(result: SolveResult, skipped: bool = False) -> JobOutcome:
    stop = ""
    if result.status == "model_error":
        stop = f"the model provider is failing: {result.error}"
    elif result.status == "budget_exhausted" and (result.error or "").startswith(RUN_BUDGET):
        stop = f"the run's budget is spent: {result.error}"
    return JobOutcome(
        instance_id=result.instance_id,
        status=result.status,
        ok=not result.resumable,
        skipped=skipped,
        cost_usd=result.cost_usd,
        error=result.error or "",
        stop_batch=stop,
    )


async def solve_job(instance: SWEInstance, settings: Settings) -> JobOutcome:
    """Solves one instance into the run directory; a finished one is read back, a half-done one resumes."""
    from codemonkeys.pipeline import solve

    assert settings.run_dir is not None
    store = RunStore(settings.run_dir)
    inst = store.instance(instance.instance_id)
    done = inst.result.load()
    if done is not None and not done.resumable:
        return outcome_of(done, skipped=True)
    try:
        prepared = await prepare(instance, settings)
    except PrepareError as exc:
        log.error("%s", exc)
        failed = SolveResult(
            instance_id=instance.instance_id, status="failed", stopped_stage="environment", error=str(exc)
        )
        inst.result.save(failed)
        return outcome_of(failed)
    inst.environment.save(prepared.manifest)
    client = client_for(settings, store.usage_path)
    try:
        result = await solve(prepared.problem(), prepared.settings, client, store)
    except Exception as exc:
        # A bug or an unforeseen failure in one instance is that instance's error, never the batch's end.
        log.exception("%s crashed", instance.instance_id)
        result = SolveResult(instance_id=instance.instance_id, status="failed", error=crash_message(exc))
        inst.result.save(result)
    return outcome_of(result)


class EvalJob(BaseModel):
    """The patches of one instance to evaluate: the submitted prediction, or every candidate of a run."""

    instance: SWEInstance
    patches: dict[str, str]


async def eval_job(job: EvalJob, settings: Settings) -> list[EvalVerdict]:
    """Verdicts for the job's patches. An empty patch is counted and never run, as the official harness does,
    so it needs no repository or environment: an instance with only empty patches builds nothing."""
    from codemonkeys.swebench.evaluate import evaluate

    assert settings.run_dir is not None
    iid = job.instance.instance_id
    empty = [EvalVerdict(instance_id=iid, candidate=name) for name, patch in job.patches.items() if not patch.strip()]
    rest = job.model_copy(update={"patches": {name: p for name, p in job.patches.items() if p.strip()}})
    if not rest.patches:
        return empty
    try:
        prepared = await prepare(job.instance, settings)
    except PrepareError as exc:
        log.error("%s", exc)
        return empty + _errors(rest, str(exc))
    try:
        return empty + await evaluate(prepared, rest.patches, Path(settings.run_dir) / "logs")
    except Exception as exc:
        log.exception("%s: evaluation crashed", iid)
        return empty + _errors(rest, crash_message(exc))


def _errors(job: EvalJob, why: str) -> list[EvalVerdict]:
    return [
        EvalVerdict(instance_id=job.instance.instance_id, candidate=name, patch_exists=bool(patch.strip()), error=why)
        for name, patch in job.patches.items()
    ]
