"""What the three trajectories share: how a test run is shown to the model, the test-script rules, and the
rule that a crash ends a trajectory with what it had while a stopped run propagates."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Protocol

from codemonkeys.llm import RunStopped
from codemonkeys.prompts import render
from codemonkeys.sandbox.base import ExecResult, Outcome, truncate_middle

log = logging.getLogger("codemonkeys.trajectories")

_VERDICTS = {
    Outcome.FIXED: "exit code 0: the script says the issue is FIXED",
    Outcome.NOT_FIXED: "exit code 2: the script says the issue is STILL PRESENT",
    Outcome.PATCH_FAILED: "not run: the patch could not be applied",
}


class HasError(Protocol):
    error: str | None


def script_rules(timeout: float) -> str:
    return render("test_rules", timeout=f"{timeout:g}").rstrip()


def verdict(result: ExecResult, timeout: float) -> str:
    """What a run means under the test-script contract, spelled out so the model need not recall it."""
    outcome = result.outcome
    if outcome is Outcome.TIMED_OUT:
        return f"timed out: killed after {timeout:g} seconds, so the script is broken or far too slow"
    if outcome is Outcome.SCRIPT_ERROR:
        return f"exit code {result.exit_code}: neither 0 nor 2, so the script itself failed (crash, error or bad exit)"
    return _VERDICTS[outcome]


def show_run(where: str, result: ExecResult, timeout: float, limit: int) -> str:
    return render(
        "testing_run",
        where=where,
        verdict=verdict(result, timeout),
        output=truncate_middle(result.output.rstrip(), limit) or "(no output)",
    ).rstrip()


def crash_message(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def keep_on_crash(work: Awaitable[None], result: HasError, what: str) -> None:
    """A crash (a broken sandbox, a bug) ends the trajectory with `error` set and whatever it had; a stopped
    run (budget, provider outage) propagates, so its unfinished trajectory stays unsaved and a rerun resumes."""
    try:
        await work
    except RunStopped:
        raise
    except Exception as exc:
        result.error = crash_message(exc)
        log.warning("%s failed: %s", what, result.error)


def file_block(path: str, text: str, marker: str = "") -> str:
    """`marker` says when the text is not the whole file: `outline="true"`, `regions="true"`."""
    return f'<file path="{path}"{" " + marker if marker else ""}>\n{text.rstrip()}\n</file>'
