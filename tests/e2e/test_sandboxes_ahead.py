"""The trajectories' sandboxes open while the context stage runs, only for pairs a rerun has not finished, and
a run the context stage stops leaves none behind. Real git worktrees, the fake model over real HTTP."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from codemonkeys.problem import Problem, make_problem
from tests.e2e.oracle import oracle
from tests.e2e.test_stop_rule import run
from tests.e2e.toy_repo import ISSUE, make_toy_repo
from tests.fake_model_server import FakeModelServer, current_stage

pytestmark = pytest.mark.slow
SAMPLES = 3  # test_stop_rule's settings


def worktrees(repo: str) -> int:
    listing = subprocess.run(
        ["git", "worktree", "list", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True
    )
    return sum(line.startswith("worktree ") for line in listing.stdout.splitlines())


def watching(repo: str, stage: str, seen: list[int], slow_relevance: float = 0.0) -> Callable[[list, str], str]:
    """The oracle, noting how many worktrees the repo has whenever `stage` is asked."""

    def respond(messages: list, model: str) -> str:
        if current_stage() == stage:
            seen.append(worktrees(repo))
        if current_stage() == "relevance":
            time.sleep(slow_relevance)
        return oracle(messages, model)

    return respond


@pytest.fixture
def problem(tmp_path: Path) -> Problem:
    return make_problem(str(make_toy_repo(tmp_path)), None, ISSUE, tmp_path / "clones")


async def test_the_sandboxes_are_open_before_ranking_ends(problem: Problem, tmp_path: Path) -> None:
    seen: list[int] = []
    with FakeModelServer(watching(problem.repo_path, "ranking", seen, slow_relevance=0.5)) as server:
        result = await run(problem, server, tmp_path / "run")
    assert result.status == "patched"
    assert seen and seen[0] == 1 + SAMPLES, "the main tree and one worktree per trajectory pair, already open"
    assert worktrees(problem.repo_path) == 1, "every sandbox is closed at the end"


async def test_a_rerun_opens_no_sandbox_for_finished_pairs(problem: Problem, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with FakeModelServer(oracle, fault_rate=1.0, faults=("503",), fault_stages=frozenset({"selection"})) as down:
        assert (await run(problem, down, run_dir)).stopped_stage == "selection"
    seen: list[int] = []
    with FakeModelServer(watching(problem.repo_path, "selection", seen)) as up:
        assert (await run(problem, up, run_dir)).status == "patched"
    assert seen and set(seen) == {2}, "the main tree and the selection's sandbox, no trajectory's"


async def test_a_run_stopped_in_context_leaves_no_sandbox(problem: Problem, tmp_path: Path) -> None:
    with FakeModelServer(oracle, fault_rate=1.0, faults=("503",), fault_stages=frozenset({"relevance"})) as down:
        stopped = await run(problem, down, tmp_path / "run")
    assert (stopped.status, stopped.stopped_stage) == ("model_error", "relevance")
    assert worktrees(problem.repo_path) == 1
