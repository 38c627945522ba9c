"""The end-of-run summary a person reads: what was chosen, how it was voted, what each stage cost."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from codemonkeys.result import SolveResult


def print_summary(result: SolveResult, run_dir: Path, console: Console | None = None) -> None:
    console = console or Console(stderr=True, soft_wrap=True)
    if result.patch:
        chosen = f"candidate {result.chosen_candidate}" + (
            " (selection fell back to top vote)" if result.selection_fallback else ""
        )
        console.print(f"[bold green]patch chosen[/]: {chosen}")
    else:
        console.print(f"[bold red]no patch[/]: {result.status.replace('_', ' ')}")
    if result.resumable:
        console.print(f"[yellow]{escape(_stop_line(result))}[/]")
    if result.ended_early:
        first, more = result.ended_early[0], len(result.ended_early) - 1
        text = f"a conversation ended early, keeping what it had: {first}" + (
            f" (+{more} more in result.json)" if more else ""
        )
        console.print(f"[yellow]{escape(text)}[/]")
    console.print(
        escape(
            f"trajectories {result.trajectories}, distinct candidates {result.candidates}, "
            f"votes {dict(sorted(result.votes.items())) or '-'}, sandbox {result.sandbox or '-'}"
        )
    )
    table = Table(title="model usage", title_justify="left")
    for column in ("stage", "calls", "input tok", "cached tok", "output tok", "errors", "USD"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage, t in result.usage.items():
        table.add_row(
            escape(stage),
            str(t.calls),
            f"{t.prompt_tokens:,}",
            f"{t.cached_tokens:,}",
            f"{t.completion_tokens:,}",
            str(t.errors),
            f"{t.cost_usd:.4f}",
        )
    table.add_row("total", "", "", "", "", "", f"{result.cost_usd:.4f}", style="bold")
    console.print(table)
    if result.unpriced_models:
        text = (
            f"no price is known for {', '.join(result.unpriced_models)}: their USD figures are 0; "
            "set them under [prices] in the --config file (USD per million input and output tokens)"
        )
        console.print(f"[yellow]{escape(text)}[/]")
    console.print(escape(f"{result.seconds:.1f}s; run directory {run_dir}"))


def _stop_line(result: SolveResult) -> str:
    """Where the run stopped, why, and what the same command will do next."""
    where = f"the {result.stopped_stage} stage" if result.stopped_stage else "the run"
    why = {
        "budget_exhausted": "the budget ran out",
        "model_error": "the model provider failed",
        "failed": "it failed",
    }[result.status]
    advice = "rerun with a larger --budget" if result.status == "budget_exhausted" else "rerun the same command"
    return (
        f"{where} stopped: {why} ({result.error}). {advice} to resume it: finished work is kept and "
        "finished model calls are not repeated"
    )
