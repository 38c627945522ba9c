"""The editing trajectory: with the ranked files and the testing trajectory's script, write search/replace edits,
see the script run on the original and the edited code, and revise the edit (always against the original files)
or the script until done or out of turns. The result is the last edit set that applied, as a diff.

The system message (issue, files, edit format, test rules) is the same bytes for every trajectory of a problem,
so providers cache it: nothing trajectory-specific (index, model, turn) may go into it.
"""

from __future__ import annotations

from codemonkeys.config import Settings
from codemonkeys.context.models import ContextResult
from codemonkeys.edits import EditFormatError, apply_edits, check_syntax_of, make_diff, parse_edit_blocks
from codemonkeys.llm import BoundModel, BudgetExceeded, ModelCallError
from codemonkeys.problem import Problem
from codemonkeys.prompts import render
from codemonkeys.sandbox.base import ExecResult, Sandbox
from codemonkeys.trajectories.common import (
    OriginalFiles,
    assistant,
    crash_message,
    file_block,
    log,
    script_rules,
    show_run,
    system,
    turn_line,
    user,
)
from codemonkeys.trajectories.models import EditingResult, ScriptRun, TestingResult, Turn
from codemonkeys.trajectories.tags import AnswerFormatError, parse_answer

ORIGINAL = "On the original code"
EDITED = "On the edited code"


async def run_editing(
    problem: Problem,
    context: ContextResult,
    testing: TestingResult,
    model: BoundModel,
    sandbox: Sandbox,
    settings: Settings,
    index: int,
) -> EditingResult:
    """Never raises but for BudgetExceeded and ModelCallError (a rerun resumes both); without a script from
    testing it makes no call at all."""
    result = EditingResult(index=index, script=testing.script)
    if not testing.script:
        why = f" ({testing.error})" if testing.error else ""
        result.error = f"the testing trajectory produced no test script{why}"
        return result
    try:
        await _Editing(problem, context, model, sandbox, settings, result).converse()
    except (BudgetExceeded, ModelCallError):
        raise
    except Exception as exc:
        result.error = crash_message(exc)
        log.warning("editing %d of %s failed: %s", index, problem.instance_id, result.error)
    return result


def system_prompt(problem: Problem, context: ContextResult, settings: Settings) -> str:
    return render(
        "editing_system",
        role=render("system_role").strip(),
        issue=problem.issue.strip(),
        files="\n\n".join(file_block(f.path, f.text, f.outline) for f in context.files),
        test_rules=script_rules(settings.test_timeout),
    )


class _Editing:
    def __init__(
        self,
        problem: Problem,
        context: ContextResult,
        model: BoundModel,
        sandbox: Sandbox,
        settings: Settings,
        result: EditingResult,
    ) -> None:
        self.model = model
        self.sandbox = sandbox
        self.settings = settings
        self.result = result
        self.turns = settings.iterations
        self.originals = OriginalFiles(problem.repo_path, problem.commit)
        self.original_runs: dict[str, ExecResult] = {}
        self.messages = [system(system_prompt(problem, context, settings))]

    async def converse(self) -> None:
        script = self.result.script or ""
        run = await self._on_original(script)
        self.messages.append(
            user(
                render(
                    "editing_first",
                    turn_line=turn_line(1, self.turns),
                    script=script.rstrip(),
                    run=self._show(ORIGINAL, run),
                )
            )
        )
        for call in range(1, self.turns + 1):
            reply = await self.model.ask(self.messages)
            self.messages.append(assistant(reply))
            line = turn_line(call + 1, self.turns)
            try:
                answer = parse_answer(reply, ("edit", "test", "done"))
            except AnswerFormatError as exc:
                self.result.turns.append(Turn(call=call, kind="invalid", error=str(exc)))
                self.messages.append(user(render("format_fix_editing", problem=str(exc), turn_line=line)))
                continue
            if answer.kind == "done":
                if self.result.patch is not None:
                    self.result.turns.append(Turn(call=call, kind="done"))
                    return
                self.result.turns.append(Turn(call=call, kind="done", error="done before any edit applied"))
                self.messages.append(user(render("editing_done_without_edit", turn_line=line)))
            elif answer.kind == "test":
                self.messages.append(user(await self._new_script(call, answer.body, line)))
            else:
                self.messages.append(user(await self._new_edit(call, answer.body, line)))

    async def _new_script(self, call: int, script: str, line: str) -> str:
        self.result.script = script
        original = await self._on_original(script)
        if self.result.patch is None:
            self.result.turns.append(Turn(call=call, kind="test", original=self.result.original))
            return render("editing_script_only", turn_line=line, run=self._show(ORIGINAL, original))
        edited = await self._on_edited()
        self.result.turns.append(Turn(call=call, kind="test", original=self.result.original, edited=self.result.edited))
        change = "Your new test script replaced the previous one; your edit set is unchanged."
        return self._feedback(line, change, original, edited)

    async def _new_edit(self, call: int, text: str, line: str) -> str:
        diff, errors = self._diff_of(text)
        if errors:
            self.result.turns.append(Turn(call=call, kind="edit", error="\n\n".join(errors)))
            state = (
                "your previous edit set, the last one that applied, is still the current one"
                if self.result.patch is not None
                else "none of your edit sets has applied yet"
            )
            return render("editing_edit_failed", turn_line=line, state=state, errors="\n\n".join(errors))
        self.result.patch = diff
        original = await self._on_original(self.result.script or "")
        edited = await self._on_edited()
        self.result.turns.append(Turn(call=call, kind="edit", original=self.result.original, edited=self.result.edited))
        return self._feedback(line, "Your edit set applied.", original, edited)

    def _diff_of(self, text: str) -> tuple[str, list[str]]:
        """The edit set as a diff against the original files, or every reason it cannot be one."""
        try:
            blocks = parse_edit_blocks(text)
        except EditFormatError as exc:
            return "", [f"The edit is not well-formed: {exc}"]
        applied = apply_edits(blocks, self.originals)
        errors = applied.errors or check_syntax_of(applied, self.originals)
        if errors:
            return "", errors
        diff = make_diff({path: self.originals(path) for path in applied.files}, applied.files)
        if not diff.strip():
            return "", ["The edit set changes nothing: every REPLACE section equals its SEARCH section."]
        return diff, []

    async def _on_original(self, script: str) -> ExecResult:
        """The original code never changes, so each distinct script runs on it once."""
        if script not in self.original_runs:
            self.original_runs[script] = await self.sandbox.run_on("", script, self.settings.test_timeout)
        run = self.original_runs[script]
        self.result.original = ScriptRun.of(run)
        return run

    async def _on_edited(self) -> ExecResult:
        run = await self.sandbox.run_on(self.result.patch or "", self.result.script or "", self.settings.test_timeout)
        self.result.edited = ScriptRun.of(run)
        return run

    def _feedback(self, line: str, change: str, original: ExecResult, edited: ExecResult) -> str:
        return render(
            "editing_feedback",
            turn_line=line,
            change=change,
            diff=(self.result.patch or "").rstrip(),
            original_run=self._show(ORIGINAL, original),
            edited_run=self._show(EDITED, edited),
        )

    def _show(self, where: str, run: ExecResult) -> str:
        return show_run(where, run, self.settings.test_timeout, self.settings.output_limit)
