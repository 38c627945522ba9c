"""The testing trajectory: from the issue alone, write a script that reproduces it, run it on the original code,
and let the model correct it until it accepts the script or runs out of turns."""

from __future__ import annotations

from codemonkeys.config import GenerationSettings, SandboxSettings
from codemonkeys.llm import ChatModel
from codemonkeys.problem import Problem
from codemonkeys.prompts import render
from codemonkeys.sandbox.base import Sandbox
from codemonkeys.trajectories.common import keep_on_crash, script_rules, show_run
from codemonkeys.trajectories.conversation import Conversation, system, user
from codemonkeys.trajectories.models import ScriptRun, TestingResult, Turn
from codemonkeys.trajectories.tags import Answer, Kind

OPTIONS: dict[Kind, str] = {
    "test": "a complete test script, whole and as plain Python",
    "done": "the current script is correct as it is",
}


async def run_testing(
    problem: Problem,
    model: ChatModel,
    sandbox: Sandbox,
    generation: GenerationSettings,
    box: SandboxSettings,
    index: int,
) -> TestingResult:
    """Raises only RunStopped (a rerun resumes it); a crash ends the trajectory with `error` and the last script."""
    result = TestingResult(index=index)
    talk = Conversation(model, result.turns, OPTIONS, generation.iterations, generation.max_invalid_answers)

    async def test(answer: Answer, turn: Turn, line: str) -> str:
        result.script = answer.body
        run = await sandbox.run_on("", answer.body, box.test_timeout)
        result.original = turn.original = ScriptRun.of(run)
        shown = show_run("On the original code", run, box.test_timeout, box.output_limit)
        return render("testing_feedback", turn_line=line, run=shown)

    async def done(answer: Answer, turn: Turn, line: str) -> None:
        return None

    opening = [
        system(render("system_role")),
        user(
            render(
                "testing_first",
                turn_line=talk.line(1),
                issue=problem.issue.strip(),
                test_rules=script_rules(box.test_timeout),
            )
        ),
    ]

    def allowed() -> tuple[Kind, ...]:
        return ("done", "test") if result.script else ("test",)

    work = talk.run(opening, {"test": test, "done": done}, allowed)
    await keep_on_crash(work, result, f"testing {index} of {problem.instance_id}")
    return result
