"""The testing, editing and selection trajectories against a real git repo with a real bug and real local
sandboxes, driven by a scripted in-process model (no HTTP, no litellm). What the model was told is asserted
afterwards from the recorded calls."""

from __future__ import annotations

import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from codemonkeys.config import GenerationSettings, SandboxSettings
from codemonkeys.context.models import ContextFile, ContextResult
from codemonkeys.edits import apply_edits, make_diff, parse_edit_blocks
from codemonkeys.llm import BudgetExceeded, ModelCallError, RequestRefused
from codemonkeys.problem import Problem
from codemonkeys.repo_files import OriginalFiles
from codemonkeys.sandbox.base import Sandbox, SandboxError, SandboxSpec
from codemonkeys.sandbox.local import LocalProvider
from codemonkeys.trajectories.conversation import Conversation
from codemonkeys.trajectories.editing import run_editing
from codemonkeys.trajectories.models import Candidate, TestingResult
from codemonkeys.trajectories.selection import _files, run_selection
from codemonkeys.trajectories.testing import OPTIONS as TESTING_OPTIONS
from codemonkeys.trajectories.testing import run_testing
from codemonkeys.window import estimate
from tests.e2e.toy_repo import (
    ISSUE,
    RIGHT_FIX,
    RIGHT_TEST,
    STATS,
    WRONG_FIX,
    WRONG_TEST,
    hidden_tests_pass,
    make_toy_repo,
)
from tests.scripted_model import ScriptedModel, raising, scripted

BROKEN_IMPORT_TEST = RIGHT_TEST.replace("from calc.stats import", "from calc.statistics import")
SLEEPY_TEST = "import time\ntime.sleep(30)\n"
NO_MATCH_FIX = RIGHT_FIX.replace("ordered[len(ordered) // 2]\n=", "ordered[len(ordered) / 2]\n=")
SYNTAX_BREAKING_FIX = """calc/stats.py
<<<<<<< SEARCH
    return ordered[len(ordered) // 2]
=======
    return (ordered[len(ordered) // 2]
>>>>>>> REPLACE
"""
GARBAGE = "Let me think about this some more."


def text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(block.get("text", "") for block in content)
    return content


def git(repo: str, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def diff_of(edit: str, problem: Problem) -> str:
    originals = OriginalFiles(problem.repo_path, problem.commit)
    applied = apply_edits(parse_edit_blocks(edit), originals)
    assert not applied.errors
    return make_diff({p: originals(p) for p in applied.files}, applied.files)


def gen(**kw: Any) -> GenerationSettings:
    return GenerationSettings(**kw)


def box(**kw: Any) -> SandboxSettings:
    return SandboxSettings(**({"test_timeout": 30} | kw))


@pytest.fixture
def problem(tmp_path: Path) -> Problem:
    repo = str(make_toy_repo(tmp_path))
    return Problem(instance_id="calc-1", repo_path=repo, commit=git(repo, "rev-parse", "HEAD"), issue=ISSUE)


@pytest.fixture
def originals(problem: Problem) -> OriginalFiles:
    return OriginalFiles(problem.repo_path, problem.commit)


@pytest.fixture
async def sandbox(problem: Problem) -> AsyncIterator[Sandbox]:
    provider = LocalProvider(SandboxSpec(repo_path=problem.repo_path, commit=problem.commit))
    sandbox = await provider.open("trajectory")
    yield sandbox
    await sandbox.close()
    await provider.aclose()


@pytest.fixture
def context() -> ContextResult:
    outline = "def percent(x, digits=1):  # lines 4-5"
    return ContextResult(
        files=[
            ContextFile(path="calc/stats.py", text=STATS, tokens=60),
            ContextFile(path="calc/fmt.py", text=outline, tokens=10, outline=True),
        ],
        ranked=["calc/stats.py", "calc/fmt.py"],
    )


def seeded(script: str | None, index: int = 0) -> TestingResult:
    return TestingResult(index=index, script=script)


async def drive_testing(
    problem: Problem, model: ScriptedModel, sandbox: Sandbox, turns: int, **box_kw: Any
) -> TestingResult:
    return await run_testing(problem, model, sandbox, gen(iterations=turns), box(**box_kw), 0)


async def drive_editing(
    problem: Problem,
    context: ContextResult,
    script: str | None,
    originals: OriginalFiles,
    model: ScriptedModel,
    sandbox: Sandbox,
    turns: int,
    index: int = 0,
):
    return await run_editing(
        problem, context, seeded(script, index), originals, model, sandbox, gen(iterations=turns), box()
    )


async def drive_selection(problem, context, candidates, originals, model, sandbox, turns: int = 8, **gen_kw: Any):
    generation = gen(selection_iterations=turns, **gen_kw)
    return await run_selection(problem, candidates, originals, model, sandbox, generation, box())


# ---------------------------------------------------------------- testing


async def test_testing_script_accepted_with_done(problem, sandbox) -> None:
    model = scripted(f"Plan: compare median of an even list.\n<test>\n{RIGHT_TEST}</test>", "<done>")
    result = await drive_testing(problem, model, sandbox, 4)
    assert result.error is None
    assert result.script == RIGHT_TEST
    assert result.original is not None and result.original.exit_code == 2
    assert [t.kind for t in result.turns] == ["test", "done"]
    first = model.calls[0]
    assert "median() is wrong" in text(first[-1]["content"])
    assert "exit 2 (`sys.exit(2)`) when the issue is STILL PRESENT" in text(first[-1]["content"])
    assert "Turn 1 of 4" in text(first[-1]["content"])
    assert "def median" not in "".join(text(m["content"]) for m in first), "testing must not see the code"
    feedback = model.last_user(1)
    assert "Turn 2 of 4" in feedback
    assert "exit code 2: the script says the issue is STILL PRESENT" in feedback
    assert "median([1, 2, 3, 4]) = 3" in feedback


async def test_testing_script_corrected_once(problem, sandbox) -> None:
    model = scripted(f"<test>{BROKEN_IMPORT_TEST}</test>", f"<test>{RIGHT_TEST}</test>", "<done>")
    result = await drive_testing(problem, model, sandbox, 5)
    assert result.script == RIGHT_TEST
    assert [t.kind for t in result.turns] == ["test", "test", "done"]
    assert [t.original.exit_code for t in result.turns[:2]] == [1, 2]
    feedback = model.last_user(1)
    assert "exit code 1: neither 0 nor 2, so the script itself failed" in feedback
    assert "ModuleNotFoundError" in feedback


async def test_testing_out_of_turns_keeps_the_last_script(problem, sandbox) -> None:
    model = scripted(f"<test>{WRONG_TEST}</test>", f"<test>{RIGHT_TEST}</test>")
    result = await drive_testing(problem, model, sandbox, 2)
    assert len(model.calls) == 2
    assert result.script == RIGHT_TEST
    assert result.original is not None and result.original.exit_code == 2
    assert "this is your LAST turn" in model.last_user(1)


async def test_testing_garbage_answer_gets_a_format_fix(problem, sandbox) -> None:
    model = scripted("The median should average the two middle values.", f"<test>{RIGHT_TEST}</test>")
    result = await drive_testing(problem, model, sandbox, 3)
    assert [t.kind for t in result.turns] == ["invalid", "test", "test"], "a format fix counts as a turn"
    assert len(model.calls) == 3
    fix = model.last_user(1)
    assert fix.startswith("Your last reply could not be used: your reply contains no command")
    assert "<test>…</test>" in fix and "<done>" not in fix, "no script yet, so <done> is not offered"
    assert "Turn 2 of 3" in fix


async def test_testing_timeout_is_shown_as_such(problem, sandbox) -> None:
    model = scripted(f"<test>{SLEEPY_TEST}</test>", f"<test>{RIGHT_TEST}</test>", "<done>")
    result = await drive_testing(problem, model, sandbox, 3, test_timeout=1)
    assert result.turns[0].original is not None and result.turns[0].original.timed_out
    assert "timed out: killed after 1 seconds" in model.last_user(1)


async def test_testing_stopped_run_propagates_to_be_resumed(problem, sandbox) -> None:
    """A provider that keeps failing, or a spent budget, is not the trajectory's fault: the pipeline leaves it
    unsaved for a rerun."""
    for stop in (ModelCallError("provider down"), BudgetExceeded("spent")):
        model = raising(stop)
        with pytest.raises(type(stop)):
            await drive_testing(problem, model, sandbox, 3)
        assert len(model.calls) == 1


async def test_testing_crash_ends_with_the_error_and_the_last_script(problem, sandbox) -> None:
    answers = iter([f"<test>{RIGHT_TEST}</test>"])

    def respond(messages):
        return next(answers)  # the second call raises StopIteration: a bug, not a stopped run

    result = await drive_testing(problem, ScriptedModel(respond), sandbox, 3)
    assert result.script == RIGHT_TEST
    assert result.error is not None and "StopIteration" in result.error


async def test_testing_ends_after_too_many_unusable_answers_in_a_row(problem, sandbox) -> None:
    model = scripted(f"<test>{RIGHT_TEST}</test>", GARBAGE)
    result = await run_testing(problem, model, sandbox, gen(iterations=8, max_invalid_answers=3), box(), 0)
    assert len(model.calls) == 4, "one test, then three unusable answers end it"
    assert [t.kind for t in result.turns] == ["test", "invalid", "invalid", "invalid"]
    assert result.script == RIGHT_TEST and result.error is None


async def test_invalid_answers_count_only_in_a_row(problem, sandbox) -> None:
    model = scripted(GARBAGE, GARBAGE, f"<test>{WRONG_TEST}</test>", GARBAGE, GARBAGE, f"<test>{RIGHT_TEST}</test>")
    result = await run_testing(problem, model, sandbox, gen(iterations=6, max_invalid_answers=3), box(), 0)
    assert len(model.calls) == 6
    assert result.script == RIGHT_TEST


# ---------------------------------------------------------------- editing


async def test_editing_correct_edit_ends_with_a_passing_patch(problem, context, originals, sandbox, tmp_path) -> None:
    model = scripted(f"The middle two must be averaged.\n<edit>\n{RIGHT_FIX}</edit>", "<done>")
    result = await drive_editing(problem, context, RIGHT_TEST, originals, model, sandbox, 4)
    assert result.error is None
    assert result.patch == diff_of(RIGHT_FIX, problem)
    assert result.touched == ["calc/stats.py"]
    assert (result.original.exit_code, result.edited.exit_code) == (2, 0)
    assert [t.kind for t in result.turns] == ["edit", "done"]
    first = model.last_user(0)
    assert "Turn 1 of 4" in first and RIGHT_TEST.strip() in first and "median([1, 2, 3, 4]) = 3" in first
    feedback = model.last_user(1)
    assert "Turn 2 of 4" in feedback
    assert "On the original code: exit code 2" in feedback
    assert "On the edited code: exit code 0: the script says the issue is FIXED" in feedback
    assert "+    mid = len(ordered) // 2" in feedback
    assert "the test script itself may be wrong" in feedback
    graded = hidden_tests_pass(Path(problem.repo_path), result.patch, tmp_path, "python")
    assert graded.returncode == 0, graded.stdout


async def test_editing_non_matching_block_gets_closest_lines(problem, context, originals, sandbox) -> None:
    model = scripted(f"<edit>{NO_MATCH_FIX}</edit>", f"<edit>{RIGHT_FIX}</edit>", "<done>")
    result = await drive_editing(problem, context, RIGHT_TEST, originals, model, sandbox, 4)
    assert result.patch == diff_of(RIGHT_FIX, problem)
    assert result.turns[0].error is not None and "does not match" in result.turns[0].error
    told = model.last_user(1)
    assert "Your edit set was NOT applied" in told
    assert "none of your edit sets has applied yet" in told
    assert "most similar lines are 9-10" in told
    assert " 9 |     ordered = sorted(values)" in told
    assert "10 |     return ordered[len(ordered) // 2]" in told


async def test_editing_syntax_breaking_edit_is_reported(problem, context, originals, sandbox) -> None:
    model = scripted(f"<edit>{SYNTAX_BREAKING_FIX}</edit>")
    result = await drive_editing(problem, context, RIGHT_TEST, originals, model, sandbox, 2)
    assert result.patch is None, "an edit that breaks the syntax is never the answer"
    assert result.error is None
    assert "calc/stats.py no longer parses" in model.last_user(1)
    assert all(t.error and "no longer parses" in t.error for t in result.turns)


async def test_editing_test_answer_replaces_the_script(problem, context, originals, sandbox) -> None:
    model = scripted(
        f"<edit>{WRONG_FIX}</edit>",
        f"The script only checks one list; odd lists matter too.\n<test>{RIGHT_TEST}</test>",
        f"<edit>{RIGHT_FIX}</edit>",
        "<done>",
    )
    result = await drive_editing(problem, context, WRONG_TEST, originals, model, sandbox, 6)
    assert result.script == RIGHT_TEST
    assert result.patch == diff_of(RIGHT_FIX, problem)
    assert [(t.kind, t.edited.exit_code if t.edited else None) for t in result.turns] == [
        ("edit", 0),
        ("test", 2),
        ("edit", 0),
        ("done", None),
    ]
    after_test = model.last_user(2)
    assert "Your new test script replaced the previous one; your edit set is unchanged." in after_test
    assert "median([5, 1, 3]) = 2.5" in after_test


async def test_editing_keeps_the_last_edit_that_applied(problem, context, originals, sandbox) -> None:
    model = scripted("<done>", f"<edit>{RIGHT_FIX}</edit>", f"<edit>{NO_MATCH_FIX}</edit>")
    result = await drive_editing(problem, context, RIGHT_TEST, originals, model, sandbox, 3)
    assert len(model.calls) == 3
    assert "none of your edit sets has applied" in model.last_user(1)
    assert "previous edit set, the last one that applied, is still the current one" not in model.last_user(1)
    assert result.patch == diff_of(RIGHT_FIX, problem)
    assert result.edited is not None and result.edited.exit_code == 0


async def test_editing_keeps_its_edit_when_the_model_turns_to_garbage(problem, context, originals, sandbox) -> None:
    model = scripted(f"<edit>{RIGHT_FIX}</edit>", GARBAGE)
    result = await run_editing(
        problem, context, seeded(RIGHT_TEST), originals, model, sandbox, gen(max_invalid_answers=2), box()
    )
    assert len(model.calls) == 3, "the edit, then two unusable answers in a row end the trajectory"
    assert result.patch == diff_of(RIGHT_FIX, problem) and result.error is None
    fix = model.last_user(2)
    assert fix.startswith("Your last reply could not be used")
    for option in ("<edit>…</edit>", "<test>…</test>", "<done>"):
        assert option in fix


async def test_editing_system_prompt_is_identical_across_trajectories(problem, context, originals, sandbox) -> None:
    model = scripted(f"<edit>{RIGHT_FIX}</edit>", "<done>")
    for index, script in ((0, RIGHT_TEST), (7, WRONG_TEST)):
        await drive_editing(problem, context, script, originals, model, sandbox, 3, index)
    systems = {text(call[0]["content"]) for call in model.calls}
    assert len(model.calls) == 4 and len(systems) == 1
    prompt = systems.pop()
    assert model.calls[0][0]["role"] == "system"
    assert ISSUE.strip() in prompt
    assert f'<file path="calc/stats.py">\n{STATS.rstrip()}\n</file>' in prompt
    assert '<file path="calc/fmt.py" outline="true">' in prompt
    assert "<<<<<<< SEARCH" in prompt and ">>>>>>> REPLACE" in prompt
    assert "exit 0 (`sys.exit(0)`) when the issue is FIXED" in prompt
    assert not re.search(r"[Tt]urn \d", prompt)


async def test_editing_without_a_script_makes_no_call(problem, context, originals, sandbox) -> None:
    model = scripted("<done>")
    failed = TestingResult(index=2, error="ModelCallError: boom")
    result = await run_editing(problem, context, failed, originals, model, sandbox, gen(), box())
    assert result.patch is None and result.error is not None and "no test script" in result.error
    assert result.index == 2
    assert model.calls == []


async def test_a_refused_request_ends_editing_with_the_best_edit_that_passed(
    problem, context, originals, sandbox
) -> None:
    answers = iter([f"<edit>{RIGHT_FIX}</edit>", f"<edit>{WRONG_FIX}</edit>"])

    def respond(messages):
        answer = next(answers, None)
        if answer is None:
            raise RequestRefused("openai/x refused the request: context length exceeded")
        return answer

    result = await drive_editing(problem, context, RIGHT_TEST, originals, ScriptedModel(respond), sandbox, 6)
    assert result.patch == diff_of(RIGHT_FIX, problem), "the later edit failed its script: the passing one stays"
    assert result.edited is not None and result.edited.exit_code == 0
    assert result.error is not None and "context length exceeded" in result.error
    assert [t.kind for t in result.turns] == ["edit", "edit"]


async def test_editing_stopped_run_propagates(problem, context, originals, sandbox) -> None:
    model = raising(BudgetExceeded("spent"))
    with pytest.raises(BudgetExceeded):
        await drive_editing(problem, context, RIGHT_TEST, originals, model, sandbox, 3)


# ---------------------------------------------------------------- selection


def decide_from_runs(messages: list[dict]) -> str:
    """Runs a test first, then names the candidate that exited 0 in the summary it was shown."""
    if sum(1 for m in messages if m["role"] == "assistant") == 0:
        return f"Let me tell them apart.\n<test>{RIGHT_TEST}</test>"
    passing = re.findall(r"candidate (\d+) → 0", text(messages[-1]["content"]))
    return f"<chosen_candidate_fix_id>{passing[0] if len(passing) == 1 else 99}</chosen_candidate_fix_id>"


@pytest.fixture
def candidates(problem: Problem) -> list[Candidate]:
    return [
        Candidate(id=4, patch=diff_of(WRONG_FIX, problem), paths=["calc/stats.py"], sources=[0], scripts=[WRONG_TEST]),
        Candidate(id=9, patch=diff_of(RIGHT_FIX, problem), paths=["calc/stats.py"], sources=[1], scripts=[RIGHT_TEST]),
    ]


async def test_selection_picks_the_candidate_the_tests_support(
    problem, context, candidates, originals, sandbox
) -> None:
    model = ScriptedModel(decide_from_runs)
    result = await drive_selection(problem, context, candidates, originals, model, sandbox, 4)
    assert (result.chosen_candidate, result.fallback, result.error) == (9, False, None)
    assert [t.kind for t in result.turns] == ["test", "choose"]
    runs = result.turns[0]
    assert runs.original.exit_code == 2 and [r.exit_code for r in runs.candidates] == [2, 0]
    first = model.last_user(0)
    assert f"<candidate_fix candidate_id=0>\n{candidates[0].patch.rstrip()}\n</candidate_fix>" in first
    assert "<candidate_fix candidate_id=1>" in first
    assert f'<file path="calc/stats.py">\n{STATS.rstrip()}\n</file>' in first
    assert WRONG_TEST.strip() in first
    feedback = model.last_user(1)
    assert "Exit codes: original → 2, candidate 0 → 2, candidate 1 → 0" in feedback
    assert "On candidate 1: exit code 0" in feedback


async def test_selection_invalid_id_is_asked_again(problem, context, candidates, originals, sandbox) -> None:
    model = scripted(
        "<chosen_candidate_fix_id>2</chosen_candidate_fix_id>",
        "<chosen_candidate_fix_id>the right one</chosen_candidate_fix_id>",
        "<chosen_candidate_fix_id>1</chosen_candidate_fix_id>",
    )
    result = await drive_selection(problem, context, candidates, originals, model, sandbox, 4)
    assert (result.chosen_candidate, result.fallback) == (9, False)
    assert [t.kind for t in result.turns] == ["invalid", "invalid", "choose"]
    assert "there is no candidate with candidate_id 2; the ids are 0 to 1" in model.last_user(1)
    assert "must hold only a candidate id number" in model.last_user(2)
    assert "from 0 to 1" in model.last_user(2)


async def test_selection_out_of_turns_falls_back_to_the_top_candidate(
    problem, context, candidates, originals, sandbox
) -> None:
    model = scripted(f"<test>{RIGHT_TEST}</test>")
    result = await drive_selection(problem, context, candidates, originals, model, sandbox, 2)
    assert (result.chosen_candidate, result.fallback) == (4, True)
    assert len(model.calls) == 2
    assert "answer with <chosen_candidate_fix_id> now" in model.last_user(1)


async def test_selection_falls_back_after_too_many_unusable_answers(
    problem, context, candidates, originals, sandbox
) -> None:
    model = scripted(GARBAGE)
    result = await drive_selection(problem, context, candidates, originals, model, sandbox, 8, max_invalid_answers=3)
    assert (result.chosen_candidate, result.fallback) == (4, True)
    assert len(model.calls) == 3


async def test_selection_with_one_candidate_makes_no_call(problem, context, candidates, originals, sandbox) -> None:
    model = scripted("<chosen_candidate_fix_id>0</chosen_candidate_fix_id>")
    result = await drive_selection(problem, context, candidates[1:], originals, model, sandbox)
    assert (result.chosen_candidate, result.fallback) == (9, False)
    assert model.calls == []


async def test_selection_stops_and_crashes_propagate(problem, context, candidates, originals, sandbox) -> None:
    """Only a model that ran out of turns or kept answering badly makes a final fallback."""
    with pytest.raises(ModelCallError):
        await drive_selection(problem, context, candidates, originals, raising(ModelCallError("down")), sandbox)
    await sandbox.close()
    model = scripted(f"<test>{RIGHT_TEST}</test>")
    with pytest.raises(SandboxError, match=r"closed"):
        await drive_selection(problem, context, candidates, originals, model, sandbox)


async def test_a_refused_selection_request_is_a_final_fallback_that_says_why(
    problem, context, candidates, originals, sandbox
) -> None:
    model = raising(RequestRefused("openai/x refused the request: context length exceeded"))
    result = await drive_selection(problem, context, candidates, originals, model, sandbox)
    assert (result.chosen_candidate, result.fallback) == (4, True)
    assert result.error is not None and "context length exceeded" in result.error


def test_selection_shows_the_touched_regions_of_files_too_large_for_its_budget(candidates, originals) -> None:
    whole = _files(candidates, originals, None, estimate)
    assert f'<file path="calc/stats.py">\n{STATS.rstrip()}\n</file>' in whole
    cut = _files(candidates, originals, 40, estimate)
    assert '<file path="calc/stats.py" regions="true">' in cut
    assert "def median(values):" in cut and "def mean(values):" not in cut


async def test_short_forms_replace_the_exchange_they_belong_to(problem, sandbox) -> None:
    """A format error's short forms stand for the unusable answer and its format fix, not for the feedback
    before them: what is sent once a conversation outgrows its window still says what each message was."""
    model = scripted(f"<test>{RIGHT_TEST}</test>", GARBAGE, f"<test>{RIGHT_TEST}</test>", "<done>")
    talk_turns: list = []
    talk = Conversation(model, talk_turns, TESTING_OPTIONS, 4, 3)
    opening = [{"role": "system", "content": "rules"}, {"role": "user", "content": "write a test"}]

    async def test(answer, turn, line):
        return f"ran it ({line})"

    async def done(answer, turn, line):
        return None

    await talk.run(opening, {"test": test, "done": done})
    roles = [m["role"] for m in talk.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user", "assistant", "user", "assistant"]
    assert talk.shorter[2].startswith("(turn 1: my <test>…</test> answer)")
    assert talk.shorter[3].startswith("(turn 1 feedback:")
    assert talk.shorter[4].startswith("(turn 2: an answer that could not be used)")
    assert talk.shorter[5].startswith("(the answer format, repeated)")
    assert talk.shorter[6].startswith("(turn 3: my <test>…</test> answer)")
    assert talk.messages[5]["content"].startswith("Your last reply could not be used")
