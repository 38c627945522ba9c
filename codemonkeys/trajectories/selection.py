"""The selection trajectory: the model sees the top candidates side by side, writes tests that tell them apart,
sees each test run on the original code and on every candidate, and names one. Out of turns, or after too many
unusable answers, it falls back to the top-voted candidate, which the caller passes first."""

from __future__ import annotations

from collections.abc import Callable

from codemonkeys.answers import AnswerFormatError
from codemonkeys.config import GenerationSettings, SandboxSettings
from codemonkeys.llm import ChatModel, RequestRefused
from codemonkeys.problem import Problem
from codemonkeys.prompts import render
from codemonkeys.regions import regions, show_regions
from codemonkeys.sandbox.base import ExecResult, Outcome, Sandbox, truncate_middle
from codemonkeys.trajectories.common import file_block, script_rules, show_run
from codemonkeys.trajectories.conversation import Conversation, system, user
from codemonkeys.trajectories.models import Candidate, ScriptRun, SelectionResult, Turn
from codemonkeys.trajectories.tags import Answer, Kind
from codemonkeys.window import CHARS_PER_TOKEN, estimate

LAST_TURN = "answer with <chosen_candidate_fix_id> now, since a new test would not run"


async def run_selection(
    problem: Problem,
    candidates: list[Candidate],
    originals: Callable[[str], str | None],
    model: ChatModel,
    sandbox: Sandbox,
    generation: GenerationSettings,
    box: SandboxSettings,
) -> SelectionResult:
    """`chosen_candidate` is a Candidate.id. Raises RunStopped and crashes: only a model that ran out of turns,
    kept answering badly, or had its request refused (`error` says so) gives a final fallback. The touched files are shown whole while
    the model's window allows, else as the regions the candidates change."""
    if not candidates:
        raise ValueError("selection needs at least one candidate")
    top = candidates[0].id
    if len(candidates) == 1:
        return SelectionResult(chosen_candidate=top)
    result = SelectionResult(chosen_candidate=top, fallback=True)
    last_id = len(candidates) - 1
    options: dict[Kind, str] = {
        "test": "a complete test script, to run on the original code and on every candidate",
        "choose": f"N is the candidate_id of your choice, from 0 to {last_id}",
    }
    limits = (generation.selection_iterations, generation.max_invalid_answers)
    talk = Conversation(model, result.turns, options, *limits, last_turn=LAST_TURN)

    async def test(answer: Answer, turn: Turn, line: str) -> str:
        timeout = box.test_timeout
        original = await sandbox.run_on("", answer.body, timeout)
        runs = [await sandbox.run_on(c.patch, answer.body, timeout) for c in candidates]
        turn.original, turn.candidates = ScriptRun.of(original), [ScriptRun.of(r) for r in runs]
        limit = max(2000, box.output_limit // (len(runs) + 1))
        shown = [show_run("On the original code (no fix)", original, timeout, limit)]
        shown += [show_run(f"On candidate {i}", r, timeout, limit) for i, r in enumerate(runs)]
        summary = ", ".join([f"original {_code(original)}"] + [f"candidate {i} {_code(r)}" for i, r in enumerate(runs)])
        return render("selection_feedback", turn_line=line, summary=summary, runs="\n\n".join(shown), last_id=last_id)

    async def choose(answer: Answer, turn: Turn, line: str) -> None:
        position = int(answer.body)
        if position > last_id:
            raise AnswerFormatError(f"there is no candidate with candidate_id {position}; the ids are 0 to {last_id}")
        result.chosen_candidate, result.fallback = candidates[position].id, False

    example = next((s for s in candidates[0].scripts if s), "")

    def first(files: str) -> str:
        return render(
            "selection_first",
            turn_line=talk.line(1),
            count=len(candidates),
            issue=problem.issue.strip(),
            files=files,
            candidates="\n\n".join(
                f"<candidate_fix candidate_id={i}>\n{c.patch.rstrip()}\n</candidate_fix>"
                for i, c in enumerate(candidates)
            ),
            test_rules=script_rules(box.test_timeout),
            example=example.rstrip() or "(no example script is available)",
            last_id=last_id,
        )

    window = model.window
    count = window.count if window else estimate
    budget = window.opening - count(first("")) if window else None
    opening = first(_files(candidates, originals, budget, count))
    try:
        await talk.run([system(render("system_role")), user(opening)], {"test": test, "choose": choose})
    except RequestRefused as exc:
        result.error = str(exc)
    return result


def _files(
    candidates: list[Candidate], originals: Callable[[str], str | None], budget: int | None, count: Callable[[str], int]
) -> str:
    """The original of every touched file: whole while each fits its share of the budget, else the regions
    the candidates change (widened to their functions), cut in the middle only if even those do not fit."""
    texts = {p: t for p in dict.fromkeys(p for c in candidates for p in c.paths) if (t := originals(p)) is not None}
    blocks = []
    left = budget
    for i, (path, text) in enumerate(texts.items()):
        share = None if left is None else max(left // (len(texts) - i), 0)
        shown, marker = text, ""
        if share is not None and count(text) > share:
            spans = regions(path, text, [c.patch for c in candidates if path in c.paths])
            shown, marker = show_regions(text, spans), 'regions="true"'
            if count(shown) > share:
                shown = truncate_middle(shown, share * CHARS_PER_TOKEN)
        if left is not None:
            left -= count(shown)
        blocks.append(file_block(path, shown, marker))
    return "\n\n".join(blocks) or "(the candidates only add new files)"


def _code(run: ExecResult) -> str:
    return "timed out" if run.outcome is Outcome.TIMED_OUT else f"→ {run.exit_code}"
