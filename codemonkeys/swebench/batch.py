"""`swebench run`, `eval` and `envs` over many instances: the executor runs them, the progress display
follows, and the run directory keeps everything so a rerun skips what is done and resumes the rest."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from codemonkeys.config import Settings
from codemonkeys.jsonfiles import append_jsonl, atomic_write_text, read_jsonl
from codemonkeys.llm import ModelClient
from codemonkeys.store import RunStore
from codemonkeys.swebench import grading
from codemonkeys.swebench.ensemble import EnsembleJob
from codemonkeys.swebench.executors import Hooks, ensemble_jobs, eval_jobs, run_local, run_ray, solve_jobs
from codemonkeys.swebench.jobs import EvalJob, JobOutcome
from codemonkeys.swebench.models import EvalVerdict, SWEInstance
from codemonkeys.swebench.pooling import Provenance, pool_patches
from codemonkeys.swebench.prepare import PrepareError, prepare
from codemonkeys.swebench.progress import BatchProgress
from codemonkeys.voting import distinct_scripts, stored_candidates

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
    payloads = [(i.instance_id, i.model_dump_json()) for i in instances]
    return await _run_instances("solve", payloads, solve_jobs(instances, settings), settings)


async def run_ensemble(jobs: Sequence[EnsembleJob], settings: Settings) -> BatchSummary:
    payloads = [(j.instance.instance_id, j.model_dump_json()) for j in jobs]
    return await _run_instances("ensemble", payloads, ensemble_jobs(jobs, settings), settings)


async def _run_instances(
    kind: str,
    payloads: Sequence[tuple[str, str]],
    items: Sequence[tuple[str, Callable[[], Awaitable[Any]]]],
    settings: Settings,
) -> BatchSummary:
    """One job per instance on the configured executor, followed by the progress display; `payloads` are the
    jobs as Ray sends them, `items` as the local executor awaits them."""
    assert settings.run_dir is not None
    store = RunStore(settings.run_dir)
    atomic_write_text(store.config_path, settings.model_dump_json(indent=2))
    reader = ModelClient(settings.models, settings.budget, usage_path=store.usage_path)
    progress = BatchProgress(len(payloads), reader.spent)
    outcomes: dict[str, JobOutcome] = {}

    def done(key: str, outcome: JobOutcome) -> None:
        outcomes[key] = outcome
        progress.finish(outcome)

    hooks = Hooks(start=progress.start, done=done)
    with progress:
        if settings.swebench.executor == "ray":
            await run_ray(kind, payloads, settings, hooks)
        else:
            await run_local(items, settings.swebench.workers, hooks)
    return BatchSummary(
        total=len(payloads),
        done=progress.done,
        failed=progress.failed,
        skipped=progress.skipped,
        not_started=len(payloads) - len(outcomes),
        stopped=hooks.stopped[0] if hooks.stopped else "",
        cost_usd=reader.spent(),
    )


def read_prediction_records(path: Path) -> list[dict[str, Any]]:
    """The records of one SWE-bench prediction file (JSONL, or a JSON list or mapping), each with an instance_id."""
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
    return records


def read_predictions(paths: Sequence[Path]) -> dict[str, str]:
    """instance_id → model_patch from SWE-bench prediction files."""
    return {r["instance_id"]: r.get("model_patch") or "" for path in paths for r in read_prediction_records(path)}


def run_candidates(run_dir: Path, instance_id: str) -> dict[str, str]:
    """Every distinct candidate patch of one instance in a run directory (an ensemble's: its pool), named
    `candidate-<id>`."""
    inst = RunStore(run_dir).instance(instance_id)
    return {f"candidate-{c.id}": c.patch for c in stored_candidates(inst.pool.load(), inst.all_editing())}


def run_scripts(run_dir: Path, instance_id: str) -> list[str]:
    """The final test script of each trajectory of one instance in a run directory: its editing half's (which
    may have revised it), else its testing half's."""
    inst = RunStore(run_dir).instance(instance_id)
    edited = {r.index: r.script for r in inst.all_editing()}
    tested = {r.index: r.script for r in inst.all_testing()}
    return [script for i in sorted(edited.keys() | tested.keys()) if (script := edited.get(i) or tested.get(i))]


def _warn_unknown(ids: set[str]) -> None:
    """Prediction files made for another dataset or split name instances this one lacks: said, not silent."""
    if ids:
        named = sorted(ids)
        shown = ", ".join(named[:5]) + (f" and {len(named) - 5} more" if len(named) > 5 else "")
        log.warning("--predictions name %d instance(s) that are not in the dataset, left out: %s", len(named), shown)


def ensemble_inputs(
    instances: Sequence[SWEInstance], predictions: Sequence[Path], runs: Sequence[Path], only_mentioned: bool
) -> list[EnsembleJob]:
    """Each instance's pool (every prediction file's patch, then every run's candidates, in the order given)
    and the runs' scripts. With `only_mentioned`, instances that no input names are left out."""
    files = [(path, {r["instance_id"]: r for r in read_prediction_records(path)}) for path in predictions]
    if only_mentioned:
        _warn_unknown({iid for _, records in files for iid in records} - {i.instance_id for i in instances})
    jobs = []
    for instance in instances:
        iid = instance.instance_id
        sources = [
            (Provenance(origin=str(path), name=str(r.get("model_name_or_path") or "")), r.get("model_patch") or "")
            for path, records in files
            if (r := records.get(iid)) is not None
        ]
        sources += [
            (Provenance(origin=str(run), name=name), patch)
            for run in runs
            for name, patch in run_candidates(run, iid).items()
        ]
        in_runs = [run for run in runs if RunStore(run).instance(iid).root.is_dir()]
        if only_mentioned and not sources and not in_runs:
            continue
        scripts = distinct_scripts([script for run in in_runs for script in run_scripts(run, iid)])
        jobs.append(EnsembleJob(instance=instance, pool=pool_patches(iid, sources), scripts=scripts))
    return jobs


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
