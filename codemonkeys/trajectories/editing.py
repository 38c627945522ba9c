"""The editing trajectory: with the ranked files and the testing trajectory's script, write search/replace edits,
see the script run on the original and the edited code, and revise the edit (always against the original files)
or the script until done or out of turns. The result is the last edit set that applied, as a diff.

The system message (issue, files, edit format, test rules) is the same bytes for every trajectory of a problem,
so providers cache it: nothing trajectory-specific (index, model, turn) may go into it.
"""

from __future__ import annotations

from collections.abc import Callable

from codemonkeys.config import GenerationSettings, SandboxSettings
from codemonkeys.context.models import ContextResult
from codemonkeys.edits import EditFormatError, apply_edits, check_syntax_of, make_diff, parse_edit_blocks
from codemonkeys.llm import ChatModel, RequestRefused
from codemonkeys.problem import Problem
from codemonkeys.prompts import render
from codemonkeys.sandbox.base import ExecResult, Outcome, Sandbox
from codemonkeys.trajectories.common import file_block, keep_on_crash, script_rules, show_run
from codemonkeys.trajectories.conversation import Conversation, system, user
from codemonkeys.trajectories.models import EditingResult, ScriptRun, TestingResult, Turn
from codemonkeys.trajectories.tags import Answer, Kind

ORIGINAL = "On the original code"
EDITED = "On the edited code"
OPTIONS: dict[Kind, str] = {
    "edit": "the complete set of search/replace blocks against the original files",
    "test": "a complete replacement test script",
    "done": "you are finished",
}


def system_prompt(problem: Problem, context: ContextResult, box: SandboxSettings) -> str:
    return render(
        "editing_system",
        role=render("system_role").strip(),
        issue=problem.issue.strip(),
        files="\n\n".join(file_block(f.path, f.text, 'outline="true"' if f.outline else "") for f in context.files),
        test_rules=script_rules(box.test_timeout),
    )


async def run_editing(
    problem: Problem,
    context: ContextResult,
    testing: TestingResult,
    originals: Callable[[str], str | None],
    model: ChatModel,
    sandbox: Sandbox,
    generation: GenerationSettings,
    box: SandboxSettings,
) -> EditingResult:
    """Raises only RunStopped (a rerun resumes it); without a script from testing it makes no call at all. A
    refused request ends it with its best edit: the last one, unless only an earlier one passed its script."""
    result = EditingResult(index=testing.index, script=testing.script)
    if not testing.script:
        why = f" ({testing.error})" if testing.error else ""
        result.error = f"the testing trajectory produced no test script{why}"
        return result
    talk = Conversation(model, result.turns, OPTIONS, generation.iterations, generation.max_invalid_answers)
    on_original: dict[str, ExecResult] = {}
    best: tuple | None = None  # (patch, touched, script, original, edited) of the latest edit that passed

    def show(where: str, run: ExecResult) -> str:
        return show_run(where, run, box.test_timeout, box.output_limit)

    async def run_original(turn: Turn | None) -> ExecResult:
        """The original code never changes, so each distinct script runs on it once."""
        script = result.script or ""
        if script not in on_original:
            on_original[script] = await sandbox.run_on("", script, box.test_timeout)
        result.original = ScriptRun.of(on_original[script])
        if turn is not None:
            turn.original = result.original
        return on_original[script]

    async def run_edited(turn: Turn) -> ExecResult:
        nonlocal best
        run = await sandbox.run_on(result.patch or "", result.script or "", box.test_timeout)
        result.edited = turn.edited = ScriptRun.of(run)
        if run.outcome is Outcome.FIXED:
            best = (result.patch, result.touched, result.script, result.original, result.edited)
        return run

    def feedback(line: str, change: str, original: ExecResult, edited: ExecResult) -> str:
        return render(
            "editing_feedback",
            turn_line=line,
            change=change,
            diff=(result.patch or "").rstrip(),
            original_run=show(ORIGINAL, original),
            edited_run=show(EDITED, edited),
        )

    async def edit(answer: Answer, turn: Turn, line: str) -> str:
        diff, touched, errors = _diff_of(answer.body, originals)
        if errors:
            turn.error = "\n\n".join(errors)
            state = (
                "your previous edit set, the last one that applied, is still the current one"
                if result.patch is not None
                else "none of your edit sets has applied yet"
            )
            return render("editing_edit_failed", turn_line=line, state=state, errors=turn.error)
        result.patch, result.touched = diff, touched
        original = await run_original(turn)
        return feedback(line, "Your edit set applied.", original, await run_edited(turn))

    async def test(answer: Answer, turn: Turn, line: str) -> str:
        result.script = answer.body
        original = await run_original(turn)
        if result.patch is None:
            return render("editing_script_only", turn_line=line, run=show(ORIGINAL, original))
        change = "Your new test script replaced the previous one; your edit set is unchanged."
        return feedback(line, change, original, await run_edited(turn))

    async def done(answer: Answer, turn: Turn, line: str) -> str | None:
        if result.patch is not None:
            return None
        turn.error = "done before any edit applied"
        return render("editing_done_without_edit", turn_line=line)

    async def converse() -> None:
        first = await run_original(None)
        opening = [
            system(system_prompt(problem, context, box)),
            user(
                render(
                    "editing_first",
                    turn_line=talk.line(1),
                    script=(result.script or "").rstrip(),
                    run=show(ORIGINAL, first),
                )
            ),
        ]
        try:
            await talk.run(opening, {"edit": edit, "test": test, "done": done})
        except RequestRefused:
            if best is not None and (result.edited is None or result.edited.outcome is not Outcome.FIXED):
                result.patch, result.touched, result.script, result.original, result.edited = best
            raise

    await keep_on_crash(converse(), result, f"editing {testing.index} of {problem.instance_id}")
    return result


def _diff_of(text: str, originals: Callable[[str], str | None]) -> tuple[str, list[str], list[str]]:
    """(diff against the original files, the paths it touches) or every reason it cannot be one."""
    try:
        blocks = parse_edit_blocks(text)
    except EditFormatError as exc:
        return "", [], [f"The edit is not well-formed: {exc}"]
    applied = apply_edits(blocks, originals)
    errors = applied.errors or check_syntax_of(applied, originals)
    if errors:
        return "", [], errors
    diff = make_diff({path: originals(path) for path in applied.files}, applied.files)
    if not diff.strip():
        return "", [], ["The edit set changes nothing: every REPLACE section equals its SEARCH section."]
    return diff, [p for p, text in applied.files.items() if text != originals(p)], []
