"""`codemonkeys report RUN_DIR`: rebuilds every instance's `report.html` with the same code `solve` uses, and
the run's `index.html` + `coverage.png` with the paper's figures, from the records and the eval verdicts alone
(no model call, no sandbox), so a finished or still running batch can be looked at any time."""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import Annotated

import typer

from codemonkeys.cli_options import BAD_INPUT, fail

PROGRESS_EVERY = 100  # instances between progress lines on stderr


def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (swebench run, or solve's runs/<id>).")],
    eval_dir: Annotated[
        Path | None,
        typer.Option("--eval", help="The eval run directory with verdicts.jsonl (default: RUN_DIR/eval if present)."),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="Dataset with the gold patches, for context recall (file or HF name).")
    ] = None,
    split: Annotated[str, typer.Option(help="Dataset split, for a Hugging Face name.")] = "test",
    open_page: Annotated[bool, typer.Option("--open", help="Open index.html in the web browser.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the figures as JSON on stdout (and nothing else).")
    ] = False,
) -> None:
    """Write report.html per instance and index.html with the run's figures; exit 2 on a missing or non-run dir."""
    from codemonkeys.figures import batch_figures, instance_stores
    from codemonkeys.index_page import write_index
    from codemonkeys.report import write_report

    if not run_dir.is_dir():
        raise fail(f"run directory not found: {run_dir}", BAD_INPUT)
    stores = instance_stores(run_dir)
    if not stores:
        raise fail(
            f"{run_dir} is not a run directory: no instance folder (with problem.json or result.json)", BAD_INPUT
        )
    if eval_dir is not None and not (eval_dir / "verdicts.jsonl").is_file():
        raise fail(f"no verdicts.jsonl in {eval_dir}: run codemonkeys swebench eval first", BAD_INPUT)
    gold = _gold_patches(dataset, split) if dataset else None

    written = 0
    for n, inst in enumerate(stores, 1):
        result = inst.result.load()
        if result is not None:
            write_report(inst, result)
            written += 1
        if n % PROGRESS_EVERY == 0:
            typer.echo(f"reports: {n}/{len(stores)}", err=True)
    figures = batch_figures(run_dir, eval_dir, gold)
    index = write_index(run_dir, figures)
    skipped = len(stores) - written
    typer.echo(
        f"wrote {written} report(s){f', skipped {skipped} without result.json' if skipped else ''}; "
        f"index: {index}; plot: {index.with_name('coverage.png')}",
        err=as_json,
    )
    if as_json:
        typer.echo(figures.model_dump_json(indent=2))
    if open_page:
        webbrowser.open(index.resolve().as_uri())


def _gold_patches(dataset: str, split: str) -> dict[str, str]:
    from codemonkeys.swebench.dataset import DatasetError, load_instances

    try:
        return {i.instance_id: i.patch for i in load_instances(dataset, split) if i.patch}
    except DatasetError as exc:
        raise fail(str(exc), BAD_INPUT) from None
