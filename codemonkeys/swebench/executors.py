"""Where instances run: `local` (this process, `workers` at once on one event loop) or `ray` (one Ray task per
instance on a cluster, each with its own sandboxes and model client, all writing the same run directory).

Both stop starting instances once one reports that the batch cannot go on (the run budget is spent, the
provider is down); what was not started is left for a rerun."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from codemonkeys.config import Settings
from codemonkeys.swebench.ensemble import EnsembleJob, ensemble_job
from codemonkeys.swebench.jobs import EvalJob, JobOutcome, eval_job, solve_job
from codemonkeys.swebench.models import EvalVerdict, SWEInstance

log = logging.getLogger("codemonkeys.swebench")

RAY_POLL = 0.5  # seconds between looks at finished Ray tasks
RAY_CANCEL_GRACE = 60.0  # seconds cancelled tasks get to close their sandboxes


@dataclass
class Hooks:
    """What the caller hears: an instance started, an instance finished (with its outcome)."""

    start: Callable[[str], None] = lambda _key: None
    done: Callable[[str, Any], None] = lambda _key, _result: None
    stopped: list[str] = field(default_factory=list)


def _stop_reason(result: Any) -> str:
    return result.stop_batch if isinstance(result, JobOutcome) else ""


async def run_local(items: Sequence[tuple[str, Callable[[], Awaitable[Any]]]], workers: int, hooks: Hooks) -> None:
    """`items` are (key, job) pairs; at most `workers` jobs run at once."""
    semaphore = asyncio.Semaphore(workers)

    async def one(key: str, job: Callable[[], Awaitable[Any]]) -> None:
        async with semaphore:
            if hooks.stopped:
                return
            hooks.start(key)
            result = await job()
            if reason := _stop_reason(result):
                hooks.stopped.append(reason)
            hooks.done(key, result)

    await asyncio.gather(*(one(key, job) for key, job in items))


def solve_jobs(instances: Sequence[SWEInstance], settings: Settings) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
    return [(i.instance_id, lambda i=i: solve_job(i, settings)) for i in instances]


def eval_jobs(jobs: Sequence[EvalJob], settings: Settings) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
    return [(j.instance.instance_id, lambda j=j: eval_job(j, settings)) for j in jobs]


def ensemble_jobs(jobs: Sequence[EnsembleJob], settings: Settings) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
    return [(j.instance.instance_id, lambda j=j: ensemble_job(j, settings)) for j in jobs]


def _ray_solve(instance_json: str, settings_json: str) -> str:
    """A Ray task: one instance, solved on its own event loop in the worker process."""
    outcome = asyncio.run(
        solve_job(SWEInstance.model_validate_json(instance_json), Settings.model_validate_json(settings_json))
    )
    return outcome.model_dump_json()


def _ray_ensemble(job_json: str, settings_json: str) -> str:
    job = EnsembleJob.model_validate_json(job_json)
    return asyncio.run(ensemble_job(job, Settings.model_validate_json(settings_json))).model_dump_json()


def _ray_eval(job_json: str, settings_json: str) -> str:
    verdicts = asyncio.run(eval_job(EvalJob.model_validate_json(job_json), Settings.model_validate_json(settings_json)))
    return "[" + ",".join(v.model_dump_json() for v in verdicts) + "]"


def _ray_module() -> Any:
    try:
        import ray
    except ImportError:
        raise RuntimeError("--executor ray needs Ray: pip install 'codemonkeys[ray]'") from None
    return ray


async def run_ray(kind: str, payloads: Sequence[tuple[str, str]], settings: Settings, hooks: Hooks) -> None:
    """`payloads` are (key, JSON of an instance, an eval job or an ensemble job); `kind` is "solve", "eval" or
    "ensemble". At most `workers` tasks are in flight, spread over the cluster's nodes."""
    ray = _ray_module()
    s = settings.swebench
    if not ray.is_initialized():
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
        if s.ray_address:
            options["address"] = s.ray_address
        else:
            options["num_cpus"] = s.workers
        await asyncio.to_thread(ray.init, **options)
    task = ray.remote(_RAY_TASKS[kind]).options(num_cpus=1, scheduling_strategy="SPREAD", max_retries=0)
    settings_json = settings.model_dump_json()
    queue = list(payloads)
    running: dict[Any, str] = {}
    try:
        while queue or running:
            while queue and len(running) < s.workers and not hooks.stopped:
                key, payload = queue.pop(0)
                hooks.start(key)
                running[task.remote(payload, settings_json)] = key
            if not running:
                break
            ready, _ = await asyncio.to_thread(ray.wait, list(running), num_returns=1, timeout=RAY_POLL)
            for ref in ready:
                key = running.pop(ref)
                result = _decode(kind, await asyncio.to_thread(ray.get, ref))
                if reason := _stop_reason(result):
                    hooks.stopped.append(reason)
                hooks.done(key, result)
    except BaseException:
        await asyncio.shield(asyncio.to_thread(_cancel, ray, list(running)))
        raise


_RAY_TASKS = {"solve": _ray_solve, "eval": _ray_eval, "ensemble": _ray_ensemble}


def _decode(kind: str, text: str) -> Any:
    if kind != "eval":
        return JobOutcome.model_validate_json(text)
    from pydantic import TypeAdapter

    return TypeAdapter(list[EvalVerdict]).validate_json(text)


def _cancel(ray: Any, refs: list[Any]) -> None:
    """Interrupts the tasks (not kills: their sandboxes close and nothing is left behind) and waits for them."""
    for ref in refs:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=False)
    with contextlib.suppress(Exception):
        ray.wait(refs, num_returns=len(refs), timeout=RAY_CANCEL_GRACE)
