"""The testing trajectory: from the issue alone, write a script that reproduces it, run it on the original code,
and let the model correct it until it accepts the script or runs out of turns."""

from __future__ import annotations

from codemonkeys.config import Settings
from codemonkeys.llm import BoundModel, BudgetExceeded, ModelCallError
from codemonkeys.problem import Problem
from codemonkeys.prompts import render
from codemonkeys.sandbox.base import Sandbox
from codemonkeys.trajectories.common import (
    assistant,
    crash_message,
    log,
    script_rules,
    show_run,
    system,
    turn_line,
    user,
)
from codemonkeys.trajectories.models import ScriptRun, TestingResult, Turn
from codemonkeys.trajectories.tags import AnswerFormatError, Kind, describe, parse_answer


async def run_testing(
    problem: Problem, model: BoundModel, sandbox: Sandbox, settings: Settings, index: int
) -> TestingResult:
    """Never raises but for BudgetExceeded and ModelCallError (a rerun resumes both): a crash ends the
    trajectory with `error` set and the last script kept."""
    result = TestingResult(index=index)
    try:
        await _converse(problem, model, sandbox, settings, result)
    except (BudgetExceeded, ModelCallError):
        raise
    except Exception as exc:
        result.error = crash_message(exc)
        log.warning("testing %d of %s failed: %s", index, problem.instance_id, result.error)
    return result


async def _converse(
    problem: Problem, model: BoundModel, sandbox: Sandbox, settings: Settings, result: TestingResult
) -> None:
    turns = settings.iterations
    messages = [
        system(render("system_role")),
        user(
            render(
                "testing_first",
                turn_line=turn_line(1, turns),
                issue=problem.issue.strip(),
                test_rules=script_rules(settings.test_timeout),
            )
        ),
    ]
    for call in range(1, turns + 1):
        reply = await model.ask(messages)
        messages.append(assistant(reply))
        allowed: tuple[Kind, ...] = ("done", "test") if result.script else ("test",)
        try:
            answer = parse_answer(reply, allowed)
        except AnswerFormatError as exc:
            result.turns.append(Turn(call=call, kind="invalid", error=str(exc)))
            options = " or ".join(describe(k) for k in allowed)
            messages.append(
                user(
                    render(
                        "format_fix_testing",
                        problem=str(exc),
                        options=options,
                        turn_line=turn_line(call + 1, turns),
                    )
                )
            )
            continue
        if answer.kind == "done":
            result.turns.append(Turn(call=call, kind="done"))
            return
        result.script = answer.body
        run = await sandbox.run_on("", answer.body, settings.test_timeout)
        result.original = ScriptRun.of(run)
        result.turns.append(Turn(call=call, kind="test", original=result.original))
        shown = show_run("On the original code", run, settings.test_timeout, settings.output_limit)
        messages.append(user(render("testing_feedback", turn_line=turn_line(call + 1, turns), run=shown)))
