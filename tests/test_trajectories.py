"""The testing, editing and selection trajectories against a real git repo with a real bug, real local sandboxes and
real HTTP to a scripted fake model. Responders only answer; what the model was told is asserted afterwards from
the recorded requests."""

from __future__ import annotations

import re
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from codemonkeys.config import Settings
from codemonkeys.context.models import ContextFile, ContextResult
from codemonkeys.edits import apply_edits, make_diff, parse_edit_blocks
from codemonkeys.llm import BoundModel, BudgetExceeded, ModelCallError, ModelClient
from codemonkeys.problem import Problem
from codemonkeys.sandbox.base import Sandbox, SandboxSpec
from codemonkeys.sandbox.local import LocalProvider
from codemonkeys.trajectories.common import OriginalFiles
from codemonkeys.trajectories.editing import run_editing
from codemonkeys.trajectories.models import Candidate, TestingResult
from codemonkeys.trajectories.selection import run_selection
from codemonkeys.trajectories.testing import run_testing
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
from tests.fake_model_server import FakeCall

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


def text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(block.get("text", "") for block in content)
    return content


def last_user(call: FakeCall) -> str:
    return text(call.messages[-1]["content"])


def scripted(*answers: str) -> Callable[[list[dict], str], str]:
    """The k-th answer of a conversation is answers[k] (the last one repeats)."""

    def respond(messages: list[dict], model: str) -> str:
        turn = sum(1 for m in messages if m["role"] == "assistant")
        return answers[min(turn, len(answers) - 1)]

    return respond


def git(repo: str, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def diff_of(edit: str, problem: Problem) -> str:
    originals = OriginalFiles(problem.repo_path, problem.commit)
    applied = apply_edits(parse_edit_blocks(edit), originals)
    assert not applied.errors
    return make_diff({p: originals(p) for p in applied.files}, applied.files)


@pytest.fixture
def problem(tmp_path: Path) -> Problem:
    repo = str(make_toy_repo(tmp_path))
    return Problem(instance_id="calc-1", repo_path=repo, commit=git(repo, "rev-parse", "HEAD"), issue=ISSUE)


@pytest.fixture
async def sandbox(problem: Problem) -> AsyncIterator[Sandbox]:
    provider = LocalProvider(SandboxSpec(repo_path=problem.repo_path, commit=problem.commit))
    box = await provider.open("trajectory")
    yield box
    await box.close()
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


@pytest.fixture
def model(tmp_path: Path) -> Callable[..., BoundModel]:
    def bind(settings: Settings, stage: str, cache_prefix: int = 0) -> BoundModel:
        client = ModelClient(settings, usage_path=tmp_path / "usage.jsonl")
        return client.bind(model="openai/fake", instance="calc-1", stage=stage, cache_prefix=cache_prefix)

    return bind


def seeded(script: str) -> TestingResult:
    return TestingResult(index=0, script=script)


# ---------------------------------------------------------------- testing


async def test_testing_script_accepted_with_done(fake_server, settings_for, problem, sandbox, model) -> None:
    server = fake_server(scripted(f"Plan: compare median of an even list.\n<test>\n{RIGHT_TEST}</test>", "<done>"))
    settings = settings_for(server, iterations=4, test_timeout=30)
    result = await run_testing(problem, model(settings, "testing"), sandbox, settings, 0)
    assert result.error is None
    assert result.script == RIGHT_TEST
    assert result.original is not None and result.original.exit_code == 2
    assert [t.kind for t in result.turns] == ["test", "done"]
    first = server.calls[0].messages
    assert "median() is wrong" in text(first[-1]["content"])
    assert "exit 2 (`sys.exit(2)`) when the issue is STILL PRESENT" in text(first[-1]["content"])
    assert "Turn 1 of 4" in text(first[-1]["content"])
    assert "def median" not in "".join(text(m["content"]) for m in first), "testing must not see the code"
    feedback = last_user(server.calls[1])
    assert "Turn 2 of 4" in feedback
    assert "exit code 2: the script says the issue is STILL PRESENT" in feedback
    assert "median([1, 2, 3, 4]) = 3" in feedback


async def test_testing_script_corrected_once(fake_server, settings_for, problem, sandbox, model) -> None:
    server = fake_server(scripted(f"<test>{BROKEN_IMPORT_TEST}</test>", f"<test>{RIGHT_TEST}</test>", "<done>"))
    settings = settings_for(server, iterations=5, test_timeout=30)
    result = await run_testing(problem, model(settings, "testing"), sandbox, settings, 1)
    assert result.script == RIGHT_TEST
    assert [t.kind for t in result.turns] == ["test", "test", "done"]
    assert [t.original.exit_code for t in result.turns[:2]] == [1, 2]
    feedback = last_user(server.calls[1])
    assert "exit code 1: neither 0 nor 2, so the script itself failed" in feedback
    assert "ModuleNotFoundError" in feedback


async def test_testing_out_of_turns_keeps_the_last_script(fake_server, settings_for, problem, sandbox, model) -> None:
    server = fake_server(scripted(f"<test>{WRONG_TEST}</test>", f"<test>{RIGHT_TEST}</test>"))
    settings = settings_for(server, iterations=2, test_timeout=30)
    result = await run_testing(problem, model(settings, "testing"), sandbox, settings, 0)
    assert len(server.calls) == 2
    assert result.script == RIGHT_TEST
    assert result.original is not None and result.original.exit_code == 2
    assert "this is your LAST turn" in last_user(server.calls[1])


async def test_testing_garbage_answer_gets_a_format_fix(fake_server, settings_for, problem, sandbox, model) -> None:
    server = fake_server(scripted("The median should average the two middle values.", f"<test>{RIGHT_TEST}</test>"))
    settings = settings_for(server, iterations=3, test_timeout=30)
    result = await run_testing(problem, model(settings, "testing"), sandbox, settings, 0)
    assert [t.kind for t in result.turns] == ["invalid", "test", "test"], "a format fix counts as a turn"
    assert len(server.calls) == 3
    fix = last_user(server.calls[1])
    assert fix.startswith("Your last reply could not be used: your reply contains no command")
    assert "<test>…</test>" in fix and "<done>" not in fix, "no script yet, so <done> is not offered"


async def test_testing_timeout_is_shown_as_such(fake_server, settings_for, problem, sandbox, model) -> None:
    server = fake_server(scripted(f"<test>{SLEEPY_TEST}</test>", f"<test>{RIGHT_TEST}</test>", "<done>"))
    settings = settings_for(server, iterations=3, test_timeout=1)
    result = await run_testing(problem, model(settings, "testing"), sandbox, settings, 0)
    assert result.turns[0].original is not None and result.turns[0].original.timed_out
    assert "timed out: killed after 1 seconds" in last_user(server.calls[1])


async def test_testing_model_failure_propagates_to_be_resumed(
    fake_server, settings_for, problem, sandbox, model
) -> None:
    """A provider that keeps failing is not the trajectory's fault: the pipeline leaves it unsaved to rerun."""
    server = fake_server(scripted("<done>"), fault_rate=1.0, faults=("401",))
    settings = settings_for(server, iterations=3)
    with pytest.raises(ModelCallError, match=r"401|Authentication"):
        await run_testing(problem, model(settings, "testing"), sandbox, settings, 0)
    assert server.requests == 1


async def test_testing_budget_exceeded_propagates(fake_server, settings_for, problem, sandbox, model) -> None:
    server = fake_server(scripted(f"<test>{WRONG_TEST}</test>"))
    settings = settings_for(server, iterations=3, budget_usd=0.001, prices={"openai/fake": (1.0, 1000.0)})
    with pytest.raises(BudgetExceeded):
        await run_testing(problem, model(settings, "testing"), sandbox, settings, 0)
    assert len(server.calls) == 1


# ---------------------------------------------------------------- editing


async def test_editing_correct_edit_ends_with_a_passing_patch(
    fake_server, settings_for, problem, context, sandbox, model, tmp_path
) -> None:
    server = fake_server(scripted(f"The middle two must be averaged.\n<edit>\n{RIGHT_FIX}</edit>", "<done>"))
    settings = settings_for(server, iterations=4, test_timeout=30)
    result = await run_editing(
        problem, context, seeded(RIGHT_TEST), model(settings, "editing", 1), sandbox, settings, 0
    )
    assert result.error is None
    assert result.patch == diff_of(RIGHT_FIX, problem)
    assert (result.original.exit_code, result.edited.exit_code) == (2, 0)
    assert [t.kind for t in result.turns] == ["edit", "done"]
    first = last_user(server.calls[0])
    assert "Turn 1 of 4" in first and RIGHT_TEST.strip() in first and "median([1, 2, 3, 4]) = 3" in first
    feedback = last_user(server.calls[1])
    assert "Turn 2 of 4" in feedback
    assert "On the original code: exit code 2" in feedback
    assert "On the edited code: exit code 0: the script says the issue is FIXED" in feedback
    assert "+    mid = len(ordered) // 2" in feedback
    assert "the test script itself may be wrong" in feedback
    graded = hidden_tests_pass(Path(problem.repo_path), result.patch, tmp_path, "python")
    assert graded.returncode == 0, graded.stdout


async def test_editing_non_matching_block_gets_closest_lines(
    fake_server, settings_for, problem, context, sandbox, model
) -> None:
    server = fake_server(scripted(f"<edit>{NO_MATCH_FIX}</edit>", f"<edit>{RIGHT_FIX}</edit>", "<done>"))
    settings = settings_for(server, iterations=4, test_timeout=30)
    result = await run_editing(
        problem, context, seeded(RIGHT_TEST), model(settings, "editing", 1), sandbox, settings, 0
    )
    assert result.patch == diff_of(RIGHT_FIX, problem)
    assert result.turns[0].error is not None and "does not match" in result.turns[0].error
    told = last_user(server.calls[1])
    assert "Your edit set was NOT applied" in told
    assert "none of your edit sets has applied yet" in told
    assert "most similar lines are 9-10" in told
    assert " 9 |     ordered = sorted(values)" in told
    assert "10 |     return ordered[len(ordered) // 2]" in told


async def test_editing_syntax_breaking_edit_is_reported(
    fake_server, settings_for, problem, context, sandbox, model
) -> None:
    server = fake_server(scripted(f"<edit>{SYNTAX_BREAKING_FIX}</edit>"))
    settings = settings_for(server, iterations=2, test_timeout=30)
    result = await run_editing(
        problem, context, seeded(RIGHT_TEST), model(settings, "editing", 1), sandbox, settings, 0
    )
    assert result.patch is None, "an edit that breaks the syntax is never the answer"
    assert result.error is None
    assert "calc/stats.py no longer parses" in last_user(server.calls[1])
    assert all(t.error and "no longer parses" in t.error for t in result.turns)


async def test_editing_test_answer_replaces_the_script(
    fake_server, settings_for, problem, context, sandbox, model
) -> None:
    server = fake_server(
        scripted(
            f"<edit>{WRONG_FIX}</edit>",
            f"The script only checks one list; odd lists matter too.\n<test>{RIGHT_TEST}</test>",
            f"<edit>{RIGHT_FIX}</edit>",
            "<done>",
        )
    )
    settings = settings_for(server, iterations=6, test_timeout=30)
    result = await run_editing(
        problem, context, seeded(WRONG_TEST), model(settings, "editing", 1), sandbox, settings, 0
    )
    assert result.script == RIGHT_TEST
    assert result.patch == diff_of(RIGHT_FIX, problem)
    assert [(t.kind, t.edited.exit_code if t.edited else None) for t in result.turns] == [
        ("edit", 0),
        ("test", 2),
        ("edit", 0),
        ("done", None),
    ]
    after_test = last_user(server.calls[2])
    assert "Your new test script replaced the previous one; your edit set is unchanged." in after_test
    assert "median([5, 1, 3]) = 2.5" in after_test


async def test_editing_keeps_the_last_edit_that_applied(
    fake_server, settings_for, problem, context, sandbox, model
) -> None:
    server = fake_server(scripted("<done>", f"<edit>{RIGHT_FIX}</edit>", f"<edit>{NO_MATCH_FIX}</edit>"))
    settings = settings_for(server, iterations=3, test_timeout=30)
    result = await run_editing(
        problem, context, seeded(RIGHT_TEST), model(settings, "editing", 1), sandbox, settings, 0
    )
    assert len(server.calls) == 3
    assert "none of your edit sets has applied" in last_user(server.calls[1])
    assert "previous edit set, the last one that applied, is still the current one" not in last_user(server.calls[1])
    assert result.patch == diff_of(RIGHT_FIX, problem)
    assert result.edited is not None and result.edited.exit_code == 0


async def test_editing_system_prompt_is_identical_across_trajectories(
    fake_server, settings_for, problem, context, sandbox, model
) -> None:
    server = fake_server(scripted(f"<edit>{RIGHT_FIX}</edit>", "<done>"))
    settings = settings_for(server, iterations=3, test_timeout=30)
    for index, script in ((0, RIGHT_TEST), (7, WRONG_TEST)):
        await run_editing(problem, context, seeded(script), model(settings, "editing", 1), sandbox, settings, index)
    systems = {text(call.messages[0]["content"]) for call in server.calls}
    assert len(server.calls) == 4 and len(systems) == 1
    prompt = systems.pop()
    assert server.calls[0].messages[0]["role"] == "system"
    assert ISSUE.strip() in prompt
    assert f'<file path="calc/stats.py">\n{STATS.rstrip()}\n</file>' in prompt
    assert '<file path="calc/fmt.py" outline="true">' in prompt
    assert "<<<<<<< SEARCH" in prompt and ">>>>>>> REPLACE" in prompt
    assert "exit 0 (`sys.exit(0)`) when the issue is FIXED" in prompt
    assert not re.search(r"[Tt]urn \d", prompt)


async def test_editing_without_a_script_makes_no_call(
    fake_server, settings_for, problem, context, sandbox, model
) -> None:
    server = fake_server(scripted("<done>"))
    settings = settings_for(server, iterations=3)
    failed = TestingResult(index=2, error="ModelCallError: boom")
    result = await run_editing(problem, context, failed, model(settings, "editing", 1), sandbox, settings, 2)
    assert result.patch is None and result.error is not None and "no test script" in result.error
    assert server.calls == []


# ---------------------------------------------------------------- selection


def decide_from_runs(messages: list[dict], model: str) -> str:
    """Runs a test first, then names the candidate that exited 0 in the summary it was shown."""
    if sum(1 for m in messages if m["role"] == "assistant") == 0:
        return f"Let me tell them apart.\n<test>{RIGHT_TEST}</test>"
    passing = re.findall(r"candidate (\d+) → 0", text(messages[-1]["content"]))
    return f"<chosen_candidate_fix_id>{passing[0] if len(passing) == 1 else 99}</chosen_candidate_fix_id>"


@pytest.fixture
def candidates(problem: Problem) -> list[Candidate]:
    return [
        Candidate(id=4, patch=diff_of(WRONG_FIX, problem), sources=[0], scripts=[WRONG_TEST]),
        Candidate(id=9, patch=diff_of(RIGHT_FIX, problem), sources=[1], scripts=[RIGHT_TEST]),
    ]


async def test_selection_picks_the_candidate_the_tests_support(
    fake_server, settings_for, problem, context, candidates, sandbox, model
) -> None:
    server = fake_server(decide_from_runs)
    settings = settings_for(server, selection_iterations=4, test_timeout=30)
    result = await run_selection(
        problem, context, candidates, WRONG_TEST, model(settings, "selection"), sandbox, settings
    )
    assert (result.chosen_id, result.fallback, result.error) == (1, False, None)
    assert [t.kind for t in result.turns] == ["test", "choose"]
    runs = result.turns[0]
    assert runs.original.exit_code == 2 and [r.exit_code for r in runs.candidates] == [2, 0]
    first = last_user(server.calls[0])
    assert f"<candidate_fix candidate_id=0>\n{candidates[0].patch.rstrip()}\n</candidate_fix>" in first
    assert "<candidate_fix candidate_id=1>" in first
    assert f'<file path="calc/stats.py">\n{STATS.rstrip()}\n</file>' in first
    assert WRONG_TEST.strip() in first
    feedback = last_user(server.calls[1])
    assert "Exit codes: original → 2, candidate 0 → 2, candidate 1 → 0" in feedback
    assert "On candidate 1: exit code 0" in feedback


async def test_selection_invalid_id_is_asked_again(
    fake_server, settings_for, problem, context, candidates, sandbox, model
) -> None:
    server = fake_server(
        scripted(
            "<chosen_candidate_fix_id>2</chosen_candidate_fix_id>",
            "<chosen_candidate_fix_id>the right one</chosen_candidate_fix_id>",
            "<chosen_candidate_fix_id>1</chosen_candidate_fix_id>",
        )
    )
    settings = settings_for(server, selection_iterations=4)
    result = await run_selection(
        problem, context, candidates, RIGHT_TEST, model(settings, "selection"), sandbox, settings
    )
    assert (result.chosen_id, result.fallback) == (1, False)
    assert [t.kind for t in result.turns] == ["invalid", "invalid", "choose"]
    assert "there is no candidate with candidate_id 2; the ids are 0 to 1" in last_user(server.calls[1])
    assert "must hold only a candidate id number" in last_user(server.calls[2])


async def test_selection_out_of_turns_falls_back_to_the_top_candidate(
    fake_server, settings_for, problem, context, candidates, sandbox, model
) -> None:
    server = fake_server(scripted(f"<test>{RIGHT_TEST}</test>"))
    settings = settings_for(server, selection_iterations=2, test_timeout=30)
    result = await run_selection(
        problem, context, candidates, RIGHT_TEST, model(settings, "selection"), sandbox, settings
    )
    assert (result.chosen_id, result.fallback) == (0, True)
    assert len(server.calls) == 2
    assert "answer with <chosen_candidate_fix_id> now" in last_user(server.calls[1])


async def test_selection_with_one_candidate_makes_no_call(
    fake_server, settings_for, problem, context, candidates, sandbox, model
) -> None:
    server = fake_server(scripted("<chosen_candidate_fix_id>0</chosen_candidate_fix_id>"))
    settings = settings_for(server)
    result = await run_selection(
        problem, context, candidates[1:], RIGHT_TEST, model(settings, "selection"), sandbox, settings
    )
    assert (result.chosen_id, result.fallback) == (0, False)
    assert server.calls == []
