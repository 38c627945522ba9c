"""The selection trajectory: the model sees the top candidates side by side, writes tests that tell them apart,
sees each test run on the original code and on every candidate, and names one. Out of turns (or on a crash) it
falls back to the top-voted candidate, which the caller passes first."""

from __future__ import annotations

import re

from codemonkeys.config import Settings
from codemonkeys.context.models import ContextResult
from codemonkeys.llm import BoundModel, BudgetExceeded
from codemonkeys.problem import Problem
from codemonkeys.prompts import render
from codemonkeys.sandbox.base import ExecResult, Sandbox, truncate_middle
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
from codemonkeys.trajectories.models import Candidate, ScriptRun, SelectionResult, Turn
from codemonkeys.trajectories.tags import AnswerFormatError, parse_answer

_DIFF_PATH = re.compile(r"^(?:\+\+\+ b/|--- a/)(.+?)\s*$", re.MULTILINE)
_LAST_TURN = "answer with <chosen_candidate_fix_id> now, since a new test would not run"


async def run_selection(
    problem: Problem,
    context: ContextResult,
    candidates: list[Candidate],
    example_script: str,
    model: BoundModel,
    sandbox: Sandbox,
    settings: Settings,
) -> SelectionResult:
    """Never raises but for BudgetExceeded; `chosen_id` is a position in `candidates`, 0 on fallback."""
    if not candidates:
        raise ValueError("selection needs at least one candidate")
    if len(candidates) == 1:
        return SelectionResult(chosen_id=0)
    result = SelectionResult(chosen_id=0, fallback=True)
    try:
        await _Selection(problem, context, candidates, model, sandbox, settings, result).converse(example_script)
    except BudgetExceeded:
        raise
    except Exception as exc:
        result.error = crash_message(exc)
        log.warning("selection for %s failed, taking the top-voted candidate: %s", problem.instance_id, result.error)
    return result


def touched_paths(patch: str) -> list[str]:
    """Files a diff changes or deletes, in order; new files have no original to show and are left out later."""
    return list(dict.fromkeys(_DIFF_PATH.findall(patch)))


class _Selection:
    def __init__(
        self,
        problem: Problem,
        context: ContextResult,
        candidates: list[Candidate],
        model: BoundModel,
        sandbox: Sandbox,
        settings: Settings,
        result: SelectionResult,
    ) -> None:
        self.problem = problem
        self.context = context
        self.candidates = candidates
        self.model = model
        self.sandbox = sandbox
        self.settings = settings
        self.result = result
        self.turns = settings.selection_iterations
        self.last_id = len(candidates) - 1
        self.originals = OriginalFiles(problem.repo_path, problem.commit)

    async def converse(self, example_script: str) -> None:
        messages = [system(render("system_role")), user(self._first_message(example_script))]
        for call in range(1, self.turns + 1):
            reply = await self.model.ask(messages)
            messages.append(assistant(reply))
            line = turn_line(call + 1, self.turns, _LAST_TURN)
            try:
                answer = parse_answer(reply, ("test", "choose"))
                if answer.kind == "choose" and int(answer.body) > self.last_id:
                    raise AnswerFormatError(
                        f"there is no candidate with candidate_id {answer.body}; the ids are 0 to {self.last_id}"
                    )
            except AnswerFormatError as exc:
                self.result.turns.append(Turn(call=call, kind="invalid", error=str(exc)))
                messages.append(
                    user(render("format_fix_selection", problem=str(exc), turn_line=line, last_id=self.last_id))
                )
                continue
            if answer.kind == "choose":
                self.result.chosen_id = int(answer.body)
                self.result.fallback = False
                self.result.turns.append(Turn(call=call, kind="choose"))
                return
            messages.append(user(await self._run_test(call, answer.body, line)))

    def _first_message(self, example_script: str) -> str:
        candidates = "\n\n".join(
            f"<candidate_fix candidate_id={i}>\n{c.patch.rstrip()}\n</candidate_fix>"
            for i, c in enumerate(self.candidates)
        )
        return render(
            "selection_first",
            turn_line=turn_line(1, self.turns, _LAST_TURN),
            count=len(self.candidates),
            issue=self.problem.issue.strip(),
            files=self._files(),
            candidates=candidates,
            test_rules=script_rules(self.settings.test_timeout),
            example=example_script.rstrip() or "(no example script is available)",
            last_id=self.last_id,
        )

    def _files(self) -> str:
        """Original text of every touched file; one too large to show whole is shown as context had it."""
        shown = {f.path: f for f in self.context.files}
        limit = self.settings.max_file_tokens * 4
        blocks = []
        for path in dict.fromkeys(p for c in self.candidates for p in touched_paths(c.patch)):
            text = self.originals(path)
            if text is None:
                continue
            if len(text) > limit and path in shown:
                blocks.append(file_block(path, shown[path].text, shown[path].outline))
            else:
                blocks.append(file_block(path, truncate_middle(text, limit)))
        return "\n\n".join(blocks) or "(the candidates only add new files)"

    async def _run_test(self, call: int, script: str, line: str) -> str:
        timeout = self.settings.test_timeout
        original = await self.sandbox.run_on("", script, timeout)
        runs = [await self.sandbox.run_on(c.patch, script, timeout) for c in self.candidates]
        self.result.turns.append(
            Turn(
                call=call,
                kind="test",
                original=ScriptRun.of(original),
                candidates=[ScriptRun.of(r) for r in runs],
            )
        )
        limit = max(2000, self.settings.output_limit // (len(runs) + 1))
        shown = [show_run("On the original code (no fix)", original, timeout, limit)]
        shown += [show_run(f"On candidate {i}", r, timeout, limit) for i, r in enumerate(runs)]
        summary = ", ".join([f"original {_code(original)}"] + [f"candidate {i} {_code(r)}" for i, r in enumerate(runs)])
        return render(
            "selection_feedback", turn_line=line, summary=summary, runs="\n\n".join(shown), last_id=self.last_id
        )


def _code(run: ExecResult) -> str:
    return "timed out" if run.timed_out else f"→ {run.exit_code}"
