"""`codemonkeys swebench run | ensemble | eval | envs`: CodeMonkeys over a SWE-bench dataset, on one machine or a
Ray cluster."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from codemonkeys.cli_options import (
    BAD_INPUT,
    BATCH_BUDGET_OPTIONS,
    CONTEXT_OPTIONS,
    ENV_OPTIONS,
    EXECUTOR_OPTIONS,
    FAILED,
    GENERATION_OPTIONS,
    MODEL_OPTIONS,
    RUN_OPTIONS,
    SANDBOX_LIMIT_OPTIONS,
    check_keys,
    fail,
    setup_logging,
    with_settings,
)
from codemonkeys.config import Settings

if TYPE_CHECKING:
    from codemonkeys.swebench.batch import BatchSummary

swebench_app = typer.Typer(
    help="Run CodeMonkeys over SWE-bench: solve many instances (run), choose among several systems' candidates "
    "(ensemble), grade predictions with the official rules (eval), and build the instances' environments ahead "
    "of time (envs).",
    no_args_is_help=True,
)

Dataset = Annotated[
    str,
    typer.Option(
        help="A .jsonl, .json or .parquet file of SWE-bench records, or a Hugging Face dataset name "
        "(e.g. princeton-nlp/SWE-bench_Verified)."
    ),
]
Split = Annotated[str, typer.Option(help="Dataset split, for Hugging Face datasets.")]
Instances = Annotated[
    list[str] | None,
    typer.Option(help="Instance ids to take (repeat, or separate with commas or spaces); default: all."),
]
InstancesFile = Annotated[Path | None, typer.Option(help="File of instance ids, one per line ('#' comments).")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show debug progress.")]


def _load(dataset: str, split: str, instances: list[str] | None, instances_file: Path | None) -> list:
    from codemonkeys.swebench.dataset import DatasetError, load_instances, select_instances

    ids = [part for value in instances or [] for part in re.split(r"[,\s]+", value) if part] or None
    try:
        return select_instances(load_instances(dataset, split), ids, instances_file)
    except DatasetError as exc:
        raise fail(str(exc), BAD_INPUT) from None


def _default_run_dir(settings: Settings, dataset: str, what: str) -> None:
    if settings.run_dir is None:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(dataset).stem if Path(dataset).exists() else dataset)
        settings.run_dir = Path("runs") / f"{what}-{name.strip('-')}"


def _interrupted(run_dir: Path | None) -> typer.Exit:
    typer.secho(
        f"interrupted: finished work is kept in {run_dir}; rerun the same command to resume", err=True, fg="yellow"
    )
    return typer.Exit(130)


@swebench_app.command()
@with_settings(
    MODEL_OPTIONS,
    CONTEXT_OPTIONS,
    GENERATION_OPTIONS,
    SANDBOX_LIMIT_OPTIONS,
    BATCH_BUDGET_OPTIONS,
    ENV_OPTIONS,
    EXECUTOR_OPTIONS,
    RUN_OPTIONS,
)
def run(
    settings: Settings,
    dataset: Dataset,
    split: Split = "test",
    instances: Instances = None,
    instances_file: InstancesFile = None,
    verbose: Verbose = False,
) -> None:
    """Solve every selected instance; predictions.jsonl in the run directory grows as instances finish.

    A rerun of the same command skips finished instances and resumes half-done ones. A failing instance is
    recorded with its error and the batch goes on. Exit codes: 0 every instance finished, 1 some failed or
    were not started (rerun to resume), 2 bad input, 130 interrupted.
    """
    from codemonkeys.swebench.batch import run_batch

    setup_logging(verbose)
    selected = _load(dataset, split, instances, instances_file)
    check_keys(settings)
    _default_run_dir(settings, dataset, "swebench")
    raise _run(run_batch(selected, settings), settings)


def _run(batch: Coroutine[Any, Any, BatchSummary], settings: Settings) -> typer.Exit:
    """Runs a batch (solve or ensemble) to its exit: the summary's code, 130 when interrupted."""
    try:
        summary = asyncio.run(batch)
    except KeyboardInterrupt:
        return _interrupted(settings.run_dir)
    except RuntimeError as exc:
        return fail(str(exc), FAILED)
    return _summarize(summary, settings)


def _summarize(summary: BatchSummary, settings: Settings) -> typer.Exit:
    """The batch's last lines, and its exit code: 0 only when every instance finished."""
    typer.echo(
        f"{summary.done} finished, {summary.failed} failed, {summary.skipped} already done, "
        f"{summary.not_started} not started; ${summary.cost_usd:.2f}; predictions: "
        f"{Path(settings.run_dir or '.') / 'predictions.jsonl'}",
        err=True,
    )
    if summary.stopped:
        typer.secho(f"stopped starting instances: {summary.stopped}; rerun to resume", err=True, fg="yellow")
    return typer.Exit(0 if summary.failed == 0 and summary.not_started == 0 else FAILED)


@swebench_app.command()
@with_settings(
    MODEL_OPTIONS,
    GENERATION_OPTIONS,
    SANDBOX_LIMIT_OPTIONS,
    BATCH_BUDGET_OPTIONS,
    ENV_OPTIONS,
    EXECUTOR_OPTIONS,
    RUN_OPTIONS,
)
def ensemble(
    settings: Settings,
    dataset: Dataset,
    predictions: Annotated[
        list[Path] | None,
        typer.Option(help="SWE-bench predictions of a system whose patches join the pool (repeat for more)."),
    ] = None,
    runs: Annotated[
        list[Path] | None,
        typer.Option(help="A `swebench run` directory: its candidates join the pool, its test scripts vote (repeat)."),
    ] = None,
    split: Split = "test",
    instances: Instances = None,
    instances_file: InstancesFile = None,
    verbose: Verbose = False,
) -> None:
    """Pool the candidate patches of several systems per instance, let test scripts vote, select among the top.

    The same fix written differently (hunk headers, file order, trailing whitespace) is pooled once. The
    scripts are the --runs' final test scripts; an instance no run wrote one for gets --samples testing
    trajectories first. predictions.jsonl (model codemonkeys-ensemble) names where each chosen patch came
    from. Without --instances, the instances some input names. Resume, failures, stop rule and exit codes are
    those of `run`.
    """
    from codemonkeys.swebench.batch import ensemble_inputs, run_ensemble

    setup_logging(verbose)
    if not predictions and not runs:
        raise fail("give --predictions files or --runs directories to pool candidates from", BAD_INPUT)
    missing = [str(run) for run in runs or [] if not run.is_dir()]
    if missing:
        raise fail(f"--runs: not a run directory: {', '.join(missing)}", BAD_INPUT)
    selected = _load(dataset, split, instances, instances_file)
    try:
        jobs = ensemble_inputs(
            selected, predictions or [], runs or [], only_mentioned=not instances and not instances_file
        )
    except (ValueError, OSError) as exc:
        raise fail(str(exc), BAD_INPUT) from None
    check_keys(settings)
    _default_run_dir(settings, dataset, "ensemble")
    raise _run(run_ensemble(jobs, settings), settings)


@swebench_app.command("eval")
@with_settings(SANDBOX_LIMIT_OPTIONS, ENV_OPTIONS, EXECUTOR_OPTIONS, RUN_OPTIONS)
def evaluate(
    settings: Settings,
    dataset: Dataset,
    predictions: Annotated[
        list[Path], typer.Option(help="SWE-bench predictions (instance_id, model_name_or_path, model_patch).")
    ],
    candidates: Annotated[
        Path | None, typer.Option(help="A run directory: evaluate every candidate of it too (for coverage).")
    ] = None,
    split: Split = "test",
    instances: Instances = None,
    instances_file: InstancesFile = None,
    verbose: Verbose = False,
) -> None:
    """Grade predictions with the official SWE-bench log parsers and rules; writes the official report.

    Each patch runs on a fresh copy of its instance in the instance's environment, with the instance's test
    patch and no network. A rerun evaluates only what is missing. Exit codes: 0 graded, 1 some could not be
    graded (see verdicts.jsonl), 2 bad input.
    """
    from codemonkeys.swebench.batch import read_predictions, run_eval

    setup_logging(verbose)
    selected = _load(dataset, split, instances, instances_file)
    try:
        patches = read_predictions(predictions)
    except (ValueError, OSError) as exc:
        raise fail(str(exc), BAD_INPUT) from None
    if candidates is not None and not candidates.is_dir():
        raise fail(f"--candidates: not a run directory: {candidates}", BAD_INPUT)
    chosen = {i.instance_id for i in selected}
    unknown = sorted(set(patches) - chosen)
    if unknown and not instances and not instances_file:
        typer.secho(f"ignoring {len(unknown)} prediction(s) for instances not in the dataset", err=True)
    selected = [i for i in selected if i.instance_id in patches or candidates is not None]
    if settings.run_dir is None:
        settings.run_dir = (candidates / "eval") if candidates else Path("runs") / f"eval-{predictions[0].stem}"
    try:
        summary = asyncio.run(run_eval(selected, patches, candidates, settings))
    except KeyboardInterrupt:
        raise _interrupted(settings.run_dir) from None
    except RuntimeError as exc:
        raise fail(str(exc), FAILED) from None
    line = f"resolved {summary.resolved}/{summary.submitted}"
    if candidates is not None:
        line += f"; coverage {sum(summary.coverage.values())}/{len(summary.coverage)}"
    typer.echo(f"{line}; report: {summary.report_path}")
    raise typer.Exit(FAILED if summary.errors else 0)


@swebench_app.command()
@with_settings(SANDBOX_LIMIT_OPTIONS, ENV_OPTIONS, EXECUTOR_OPTIONS, RUN_OPTIONS)
def envs(
    settings: Settings,
    dataset: Dataset,
    split: Split = "test",
    instances: Instances = None,
    instances_file: InstancesFile = None,
    verbose: Verbose = False,
) -> None:
    """Build (and cache) the environment of every (repo, version) among the selected instances, each smoke-
    checked; a failed build names its kept log. Exit code 1 when any failed."""
    from codemonkeys.swebench.batch import build_envs

    setup_logging(verbose)
    selected = _load(dataset, split, instances, instances_file)
    _default_run_dir(settings, dataset, "swebench")
    try:
        results = asyncio.run(build_envs(selected, settings))
    except KeyboardInterrupt:
        raise _interrupted(settings.run_dir) from None
    failed = {key: why for key, why in results.items() if why}
    typer.echo(f"{len(results) - len(failed)} of {len(results)} environments ready")
    raise typer.Exit(FAILED if failed else 0)
