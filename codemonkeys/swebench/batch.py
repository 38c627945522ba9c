"""`swebench run`, `eval` and `envs` over many instances: the executor runs them, the progress display
follows, and the run directory keeps everything so a rerun skips what is done and resumes the rest."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from codemonkeys.config import Settings
from codemonkeys.jsonfiles import append_jsonl, atomic_write_text, read_jsonl
from codemonkeys.llm import ModelClient
from codemonkeys.store import RunStore
from codemonkeys.swebench import grading
from codemonkeys.swebench.executors import Hooks, eval_jobs, run_local, run_ray, solve_jobs
from codemonkeys.swebench.jobs import EvalJob, JobOutcome
from codemonkeys.swebench.models import EvalVerdict, SWEInstance
from codemonkeys.swebench.prepare import PrepareError, prepare
from codemonkeys.swebench.progress import BatchProgress
from codemonkeys.voting import collect_candidates

log = logging.getLogger("codemonkeys.swebench")

PREDICTION = ""  # the candidate name of the submitted prediction in verdicts


class BatchSummary(BaseModel):
    total: int
    done: int
    failed: int
    skipped: int
    not_started: int
    stopped: str = ""
    cost_usd: float = 0.0


async def run_batch(instances: Sequence[SWEInstance], settings: Settings) -> BatchSummary:
    assert settings.run_dir is not None
    store = RunStore(settings.run_dir)
    atomic_write_text(store.config_path, settings.model_dump_json(indent=2))
    reader = ModelClient(settings.models, settings.budget, usage_path=store.usage_path)
    progress = BatchProgress(len(instances), reader.spent)
    outcomes: dict[str, JobOutcome] = {}

    def done(key: str, outcome: JobOutcome) -> None:
        outcomes[key] = outcome
        progress.finish(outcome)

    hooks = Hooks(start=progress.start, done=done)
    with progress:
        if settings.swebench.executor == "ray":
            payloads = [(i.instance_id, i.model_dump_json()) for i in instances]
            await run_ray("solve", payloads, settings, hooks)
        else:
            await run_local(solve_jobs(instances, settings), settings.swebench.workers, hooks)
    return BatchSummary(
        total=len(instances),
        done=progress.done,
        failed=progress.failed,
        skipped=progress.skipped,
        not_started=len(instances) - len(outcomes),
        stopped=hooks.stopped[0] if hooks.stopped else "",
        cost_usd=reader.spent(),
    )


def read_predictions(paths: Sequence[Path]) -> dict[str, str]:
    """instance_id → model_patch from SWE-bench prediction files (JSONL, or a JSON list or mapping)."""
    out: dict[str, str] = {}
    for path in paths:
        if not path.is_file():
            raise ValueError(f"predictions file not found: {path}")
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            data = json.loads(text)
            records = list(data.values()) if isinstance(data, dict) else data
        else:
            records = read_jsonl(path)
        for n, record in enumerate(records, 1):
            if not isinstance(record, dict) or "instance_id" not in record:
                raise ValueError(f"{path}: record {n} has no instance_id")
            out[record["instance_id"]] = record.get("model_patch") or ""
    return out


def run_candidates(run_dir: Path, instance_id: str) -> dict[str, str]:
    """Every distinct candidate patch of one instance in a run directory, named `candidate-<id>`."""
    inst = RunStore(run_dir).instance(instance_id)
    return {f"candidate-{c.id}": c.patch for c in collect_candidates(inst.all_editing())}


class EvalSummary(BaseModel):
    report_path: str
    resolved: int
    submitted: int
    errors: int
    coverage: dict[str, bool] = {}


async def run_eval(
    instances: Sequence[SWEInstance],
    predictions: dict[str, str],
    candidates_dir: Path | None,
    settings: Settings,
    model_name: str = "codemonkeys",
) -> EvalSummary:
    """Evaluates the predictions (and every candidate of `candidates_dir`); verdicts already in
    `verdicts.jsonl` are kept, so a rerun evaluates only what is missing."""
    assert settings.run_dir is not None
    root = Path(settings.run_dir)
    verdicts_path = root / "verdicts.jsonl"
    known = {(v["instance_id"], v["candidate"]): EvalVerdict.model_validate(v) for v in read_jsonl(verdicts_path)}
    jobs = []
    for instance in instances:
        patches = {PREDICTION: predictions[instance.instance_id]} if instance.instance_id in predictions else {}
        if candidates_dir is not None:
            patches |= run_candidates(candidates_dir, instance.instance_id)
        todo = {name: p for name, p in patches.items() if (instance.instance_id, name) not in known}
        if todo:
            jobs.append(EvalJob(instance=instance, patches=todo))
    reader = ModelClient(settings.models, settings.budget)
    progress = BatchProgress(len(jobs), reader.spent, what="instances evaluated")

    def done(_key: str, verdicts: list[EvalVerdict]) -> None:
        for verdict in verdicts:
            append_jsonl(verdicts_path, verdict.model_dump())
            known[(verdict.instance_id, verdict.candidate)] = verdict
        error = next((v.error for v in verdicts if v.error), "" if verdicts else "no verdict")
        progress.finish(
            JobOutcome(instance_id=_key, status="error" if error else "evaluated", ok=not error, error=error)
        )

    hooks = Hooks(start=progress.start, done=done)
    with progress:
        if settings.swebench.executor == "ray":
            await run_ray("eval", [(j.instance.instance_id, j.model_dump_json()) for j in jobs], settings, hooks)
        else:
            await run_local(eval_jobs(jobs, settings), settings.swebench.workers, hooks)
    return _write_reports(root, instances, predictions, known, model_name)


def _write_reports(
    root: Path,
    instances: Sequence[SWEInstance],
    predictions: dict[str, str],
    known: dict[tuple[str, str], EvalVerdict],
    model_name: str,
) -> EvalSummary:
    ids = [i.instance_id for i in instances]
    submitted = {iid: known[(iid, PREDICTION)] for iid in ids if (iid, PREDICTION) in known}
    for iid, verdict in submitted.items():
        report = {iid: verdict.model_dump(exclude={"instance_id", "candidate", "log_path"})}
        atomic_write_text(root / "logs" / iid / "report.json", json.dumps(report, indent=2))
    official = grading.run_report(
        ids, {i: p for i, p in predictions.items() if i in ids}, submitted, model_name, root.name
    )
    report_path = root / f"{model_name}.{root.name}.json"
    atomic_write_text(report_path, json.dumps(official, indent=2))
    chosen = set(ids)
    coverage: dict[str, bool] = {}
    for (iid, _), verdict in known.items():
        if iid in chosen:
            coverage[iid] = coverage.get(iid, False) or verdict.resolved
    coverage = {iid: coverage[iid] for iid in ids if iid in coverage}
    atomic_write_text(root / "coverage.json", json.dumps(coverage, indent=2))
    return EvalSummary(
        report_path=str(report_path),
        resolved=sum(v.resolved for v in submitted.values()),
        submitted=len(submitted),
        errors=sum(bool(v.error) for v in known.values()),
        coverage=coverage,
    )


async def build_envs(instances: Sequence[SWEInstance], settings: Settings) -> dict[str, str]:
    """Builds (or finds cached) one environment per (repo, version): key → "" when ready, else the error."""
    firsts: dict[str, SWEInstance] = {}
    for instance in instances:
        firsts.setdefault(instance.env_key, instance)
    progress = BatchProgress(len(firsts), lambda: 0.0, what="environments")
    results: dict[str, str] = {}

    async def one(key: str, instance: SWEInstance) -> JobOutcome:
        try:
            prepared = await prepare(instance, settings)
        except PrepareError as exc:
            results[key] = str(exc)
            return JobOutcome(instance_id=key, status="failed", ok=False, error=str(exc))
        results[key] = ""
        manifest = prepared.manifest
        deviations = f" ({len(manifest.deviations)} deviation(s) from the spec)" if manifest.deviations else ""
        return JobOutcome(instance_id=key, status="ready", ok=True, detail=f"at {manifest.location}{deviations}")

    items = [(key, lambda key=key, inst=inst: one(key, inst)) for key, inst in firsts.items()]
    with progress:
        await run_local(
            items, settings.swebench.workers, Hooks(start=progress.start, done=lambda _k, r: progress.finish(r))
        )
    return results
