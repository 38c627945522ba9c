"""The end-of-run summary: text that came from users, models or providers is shown as written, never read as
rich markup, and a stopped run says where it stopped and what the same command will do."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from codemonkeys.result import SolveResult
from codemonkeys.summary import print_summary


def shown(result: SolveResult) -> str:
    out = io.StringIO()
    print_summary(result, Path("runs/x"), Console(file=out, width=200, color_system=None))
    return " ".join(out.getvalue().split())


def test_square_brackets_survive() -> None:
    result = SolveResult(
        instance_id="x",
        status="model_error",
        stopped_stage="editing",
        error="openai/[bold]m[/bold] failed: [Errno 111] refused",
        unpriced_models=["openai/m[1]"],
    )
    text = shown(result)
    assert "openai/[bold]m[/bold] failed: [Errno 111] refused" in text
    assert "no price is known for openai/m[1]" in text
    assert "set them under [prices] in the --config file" in text


def test_a_stopped_run_names_its_stage_and_how_to_resume() -> None:
    budget = shown(SolveResult(instance_id="x", status="budget_exhausted", stopped_stage="selection", error="spent"))
    assert "no patch: budget exhausted" in budget
    assert "the selection stage stopped: the budget ran out (spent)" in budget
    assert "rerun with a larger --budget to resume it" in budget
    crashed = shown(SolveResult(instance_id="x", status="failed", stopped_stage="sandbox", error="no engine"))
    assert "the sandbox stage stopped: it failed (no engine). rerun the same command" in crashed
    done = shown(SolveResult(instance_id="x", status="patched", patch="diff", chosen_candidate=2))
    assert "patch chosen: candidate 2" in done and "stopped" not in done
