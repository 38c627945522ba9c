"""The CodeMonkeys paper's figures for a run directory: how often the run resolves issues, how often any
candidate does (coverage), how much of that gap voting and selection close, how coverage grows with samples
(pass@k, with the Large Language Monkeys power-law fit and a forecast) and what it costs. Pure functions over
the run's records and the eval verdicts, so the index page, `report --json` and the tests share one answer."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from codemonkeys.jsonfiles import read_jsonl
from codemonkeys.store import InstanceStore
from codemonkeys.swebench.models import EvalVerdict
from codemonkeys.voting import stored_candidates

PREDICTION = ""  # the submitted prediction's candidate name in verdicts.jsonl (as swebench.batch writes it)
FORECAST_FACTORS = (2, 4, 10)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chance that k of n samples drawn without replacement include one of the c correct ones:
    1 - C(n-c, k)/C(n, k), as the product of (1 - k/i) for i in n-c+1..n so large n cannot overflow."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


class PowerLawFit(BaseModel):
    """coverage(k) ≈ exp(a·k^b): Large Language Monkeys' exponentiated power law (a < 0, b < 0 when it grows)."""

    a: float
    b: float

    def predict(self, k: float) -> float:
        return math.exp(self.a * k**self.b)


def fit_power_law(ks: Sequence[int], coverage: Sequence[float]) -> PowerLawFit | None:
    """Least squares on log(-log c) = log(-a) + b·log k over the points with 0 < c < 1 (0 and 1 have no log);
    None with fewer than two such points at distinct k."""
    points = [(math.log(k), math.log(-math.log(c))) for k, c in zip(ks, coverage, strict=True) if 0 < c < 1]
    if len({x for x, _ in points}) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    b = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
    return PowerLawFit(a=-math.exp(mean_y - b * mean_x), b=b)


class InstanceFigures(BaseModel):
    """One instance's row: `trajectories` (n) are its saved editing trajectories (an ensemble's: the pooled
    systems' proposals, empty ones included), `correct` (c) those whose patch resolves, `with_patch` those that
    produced one. Eval-derived fields are None when the eval has no verdict for them; `recall` is None without a
    gold patch or a packed context. `random` is the expected score of picking one of the trajectories that
    produced a patch uniformly at random: c ÷ with_patch."""

    instance_id: str
    status: str
    link: str
    trajectories: int
    with_patch: int
    candidates: int
    evaluated: bool = False
    correct: int | None = None
    resolved: bool | None = None
    covered: bool | None = None
    majority: bool | None = None
    selected: bool | None = None
    random: float | None = None
    recall: float | None = None
    usd: float = 0.0
    usd_by_stage: dict[str, float] = {}
    seconds: float = 0.0


class Forecast(BaseModel):
    """Coverage the fit predicts with k samples per instance, and what k samples would cost for the batch."""

    k: int
    coverage: float | None
    usd: float | None


class BatchFigures(BaseModel):
    """The batch's scores, each the mean over the instances where it is known (`resolved_rate` over those with a
    verdict for the submitted prediction; coverage, majority, selection and random over those whose every
    candidate has a verdict). `pass_at_k[k-1]` is the mean pass@k; an instance with fewer than k trajectories
    counts its coverage (pass@n), as drawing more samples than exist cannot find more."""

    run_dir: str
    instances: int
    unfinished: int
    evaluated: int
    resolved_rate: float | None = None
    coverage: float | None = None
    majority: float | None = None
    selection: float | None = None
    random: float | None = None
    oracle_gap_recovered: float | None = None
    recall: float | None = None
    usd_total: float = 0.0
    usd_by_stage: dict[str, float] = {}
    usd_per_instance: float | None = None
    usd_per_trajectory: float | None = None
    samples: int = 0
    pass_at_k: list[float] = []
    fit: PowerLawFit | None = None
    forecast: list[Forecast] = []
    rows: list[InstanceFigures] = []


def instance_stores(run_dir: Path) -> list[InstanceStore]:
    """The instance folders of a run (`swebench run`, or a `solve` run's single one), in name order."""
    folders = sorted(p for p in Path(run_dir).iterdir() if p.is_dir())
    return [InstanceStore(p) for p in folders if (p / "result.json").is_file() or (p / "problem.json").is_file()]


def read_verdicts(eval_dir: Path) -> dict[str, dict[str, EvalVerdict]]:
    """instance_id → candidate name → verdict; a rerun's later line for the same pair wins."""
    verdicts: dict[str, dict[str, EvalVerdict]] = {}
    for record in read_jsonl(eval_dir / "verdicts.jsonl"):
        verdict = EvalVerdict.model_validate(record)
        verdicts.setdefault(verdict.instance_id, {})[verdict.candidate] = verdict
    return verdicts


def patch_files(patch: str) -> set[str]:
    """The files a git diff changes: the b/ path of each `diff --git` header (the new name of a rename)."""
    return {m.group(1) for m in re.finditer(r"^diff --git a/\S+ b/(\S+)$", patch, re.MULTILINE)}


def instance_figures(
    inst: InstanceStore, verdicts: dict[str, dict[str, EvalVerdict]], gold: dict[str, str]
) -> InstanceFigures | None:
    """None for an instance without result.json (still running, or never started)."""
    result = inst.result.load()
    if result is None:
        return None
    iid = result.instance_id
    pool, editing = inst.pool.load(), inst.all_editing()
    candidates = stored_candidates(pool, editing)
    if pool is None:
        weights, proposals = {c.id: len(c.sources) for c in candidates}, len(editing)
    else:
        weights = {p.id: len(p.provenance) for p in pool.patches}
        proposals = sum(weights.values()) + len(pool.empty)
    row = InstanceFigures(
        instance_id=iid,
        status=result.status,
        link=f"{inst.root.name}/report.html",
        trajectories=proposals,
        with_patch=sum(weights.values()),
        candidates=len(candidates),
        usd=result.cost_usd,
        usd_by_stage={stage: t.cost_usd for stage, t in result.usage.items()},
        seconds=result.seconds,
    )
    mine = verdicts.get(iid, {})
    row.evaluated = bool(mine)
    if PREDICTION in mine:
        row.resolved = mine[PREDICTION].resolved
    if mine and all(f"candidate-{c.id}" in mine for c in candidates):
        resolves = {c.id: mine[f"candidate-{c.id}"].resolved for c in candidates}
        row.correct = sum(weights[c.id] for c in candidates if resolves[c.id])
        row.covered = any(resolves.values())
        row.majority = _majority(inst, resolves)
        row.selected = resolves.get(result.chosen_candidate, False) if result.chosen_candidate is not None else False
        row.random = row.correct / row.with_patch if row.with_patch else 0.0
    if iid in gold:
        context = inst.context.load()
        wanted = patch_files(gold[iid])
        if context is not None and wanted:
            row.recall = len(wanted & {f.path for f in context.files}) / len(wanted)
    return row


def _majority(inst: InstanceStore, resolves: dict[int, bool]) -> bool | None:
    """Whether the top-voted candidate resolves: False with no candidate, None when the vote never ran."""
    if not resolves:
        return False
    votes = inst.votes.load()
    if votes is None or not votes.top or votes.top[0] not in resolves:
        return None
    return resolves[votes.top[0]]


def batch_figures(run_dir: Path, eval_dir: Path | None = None, gold: dict[str, str] | None = None) -> BatchFigures:
    """The figures of a run directory, with the verdicts of `eval_dir` (default `run_dir/eval` when it exists)
    and gold patches (instance id → patch) for context recall."""
    run_dir = Path(run_dir)
    if eval_dir is None and (run_dir / "eval").is_dir():
        eval_dir = run_dir / "eval"
    verdicts = read_verdicts(eval_dir) if eval_dir is not None else {}
    stores = instance_stores(run_dir)
    rows = [r for inst in stores if (r := instance_figures(inst, verdicts, gold or {})) is not None]
    scored = [r for r in rows if r.correct is not None]
    figures = BatchFigures(
        run_dir=str(run_dir),
        instances=len(rows),
        unfinished=len(stores) - len(rows),
        evaluated=sum(r.evaluated for r in rows),
        resolved_rate=_mean([r.resolved for r in rows]),
        coverage=_mean([r.covered for r in scored]),
        majority=_mean([r.majority for r in scored]),
        selection=_mean([r.selected for r in scored]),
        random=_mean([r.random for r in scored]),
        recall=_mean([r.recall for r in rows]),
        usd_total=sum(r.usd for r in rows),
        rows=rows,
    )
    for r in rows:
        for stage, usd in r.usd_by_stage.items():
            figures.usd_by_stage[stage] = figures.usd_by_stage.get(stage, 0.0) + usd
    if rows:
        figures.usd_per_instance = figures.usd_total / len(rows)
    trajectories = sum(r.trajectories for r in rows)
    if trajectories:
        figures.usd_per_trajectory = figures.usd_total / trajectories
    if figures.coverage is not None and figures.selection is not None and figures.random is not None:
        gap = figures.coverage - figures.random
        figures.oracle_gap_recovered = (figures.selection - figures.random) / gap if gap else None
    figures.samples = max((r.trajectories for r in scored), default=0)
    figures.pass_at_k = [_mean_pass_at_k(scored, k) for k in range(1, figures.samples + 1)]
    figures.fit = fit_power_law(range(1, figures.samples + 1), figures.pass_at_k)
    figures.forecast = [_forecast(figures, factor * figures.samples) for factor in FORECAST_FACTORS if figures.samples]
    return figures


def _mean_pass_at_k(rows: list[InstanceFigures], k: int) -> float:
    total = 0.0
    for r in rows:
        assert r.correct is not None
        total += pass_at_k(r.trajectories, r.correct, k) if k <= r.trajectories else float(r.correct > 0)
    return total / len(rows)


def _forecast(figures: BatchFigures, k: int) -> Forecast:
    """Cost is the run's mean USD per trajectory (context and selection spread over them) × k × instances."""
    usd = figures.usd_per_trajectory * k * figures.instances if figures.usd_per_trajectory is not None else None
    return Forecast(k=k, coverage=figures.fit.predict(k) if figures.fit else None, usd=usd)


def _mean(values: Sequence[bool | float | None]) -> float | None:
    known = [float(v) for v in values if v is not None]
    return sum(known) / len(known) if known else None
