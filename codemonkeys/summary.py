"""The end-of-run summary a person reads: what was chosen, how it was voted, what each stage cost."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
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
    if result.status == "model_error" or result.model_errors:
        console.print(
            f"[yellow]the model provider failed ({result.error}); rerun the same command to resume: "
            "finished calls are not repeated[/]"
        )
    if result.budget_exhausted:
        console.print(
            "[yellow]the budget ran out: unfinished work stops here; rerun with a larger --budget to resume[/]"
        )
    console.print(
        f"trajectories {result.trajectories}, distinct candidates {result.candidates}, "
        f"votes {dict(sorted(result.votes.items())) or '-'}, sandbox {result.sandbox or '-'}"
    )
    table = Table(title="model usage", title_justify="left")
    for column in ("stage", "calls", "input tok", "cached tok", "output tok", "errors", "USD"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage, t in result.usage.items():
        table.add_row(
            stage,
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
        console.print(
            f"[yellow]no price is known for {', '.join(result.unpriced_models)}: their USD figures are 0; "
            "set them under [prices] in the --config file (USD per million input and output tokens)[/]"
        )
    console.print(f"{result.seconds:.1f}s; run directory {run_dir}")
