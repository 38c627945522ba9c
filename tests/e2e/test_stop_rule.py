"""The one stop rule, stage by stage: a provider outage in any stage stops the run with that stage unsaved, and
a rerun without faults asks only for the calls the stopped run did not finish and ends where a clean run ends.
The pipeline runs in-process over real HTTP to the fake model, with real git and real local sandboxes."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest

from codemonkeys.config import Settings, nest
from codemonkeys.llm import ModelClient
from codemonkeys.pipeline import solve
from codemonkeys.problem import Problem, make_problem
from codemonkeys.result import SolveResult
from codemonkeys.store import RunStore
from codemonkeys.summary import print_summary
from tests.e2e.oracle import oracle
from tests.e2e.toy_repo import ISSUE, make_toy_repo
from tests.fake_model_server import FakeModelServer

pytestmark = pytest.mark.slow
STAGES = ("relevance", "ranking", "testing", "editing", "selection")


def settings(server: FakeModelServer, run_dir: Path) -> Settings:
    return Settings.model_validate(
        nest(
            {
                "models": ["openai/right", "openai/right", "openai/wrong"],
                "api_base": server.url,
                "samples": 3,
                "iterations": 3,
                "rankings": 2,
                "top_k": 2,
                "sandbox": "local",
                "test_timeout": 30,
                "max_retries": 0,
                "retry_base_delay": 0.01,
                "run_dir": run_dir,
            },
            "test",
        )
    )


async def run(problem: Problem, server: FakeModelServer, run_dir: Path) -> SolveResult:
    s = settings(server, run_dir)
    store = RunStore(run_dir)
    return await solve(problem, s, ModelClient(s.models, s.budget, store.usage_path), store)


def ok_calls(run_dir: Path) -> Counter[str]:
    lines = (run_dir / "usage.jsonl").read_text().splitlines()
    return Counter(r["stage"] for r in map(json.loads, lines) if r["ok"])


@pytest.fixture(scope="module")
def problem(tmp_path_factory: pytest.TempPathFactory) -> Problem:
    tmp = tmp_path_factory.mktemp("stop-rule")
    return make_problem(str(make_toy_repo(tmp)), None, ISSUE, tmp / "clones")


@pytest.fixture(scope="module")
def clean(problem: Problem, tmp_path_factory: pytest.TempPathFactory) -> tuple[SolveResult, Counter[str]]:
    with FakeModelServer(oracle) as server:
        result = asyncio.run(run(problem, server, tmp_path_factory.mktemp("clean")))
    assert result.status == "patched" and not result.selection_fallback
    return result, Counter(call.stage for call in server.calls)


@pytest.mark.parametrize("stage", STAGES)
async def test_an_outage_in_any_stage_stops_it_unsaved_and_a_rerun_does_only_the_rest(
    stage: str, problem: Problem, clean: tuple[SolveResult, Counter[str]], tmp_path: Path, capsys
) -> None:
    reference, clean_calls = clean
    assert set(clean_calls) == set(STAGES)
    run_dir = tmp_path / "run"
    with FakeModelServer(oracle, fault_rate=1.0, faults=("503",), fault_stages=frozenset({stage})) as down:
        stopped = await run(problem, down, run_dir)
    assert (stopped.status, stopped.stopped_stage, stopped.patch) == ("model_error", stage, None)
    assert stopped.resumable and "503" in (stopped.error or "")
    print_summary(stopped, run_dir)
    told = " ".join(capsys.readouterr().err.split())
    assert f"the {stage} stage stopped: the model provider failed" in told
    assert "rerun the same command to resume it" in told

    inst = RunStore(run_dir).instance(problem.instance_id)
    unsaved = {
        "relevance": inst.context,
        "ranking": inst.context,
        "testing": inst.testing(0),
        "editing": inst.editing(0),
        "selection": inst.selection,
    }[stage]
    assert not unsaved.exists(), f"the stopped {stage} stage must not be saved"
    finished_before = ok_calls(run_dir)
    assert all(finished_before[s] == clean_calls[s] for s in STAGES[: STAGES.index(stage)])

    with FakeModelServer(oracle) as up:
        resumed = await run(problem, up, run_dir)
    asked_again = Counter(call.stage for call in up.calls)
    assert asked_again + finished_before == clean_calls, "the rerun asks only for the unfinished calls"
    assert all(asked_again[s] == 0 for s in STAGES[: STAGES.index(stage)]), "finished stages are not redone"
    assert resumed.status == "patched" and resumed.stopped_stage is None and resumed.error is None
    same = ("patch", "chosen_candidate", "votes", "candidates", "selection_fallback")
    assert resumed.model_dump(include=set(same)) == reference.model_dump(include=set(same))

    with FakeModelServer(oracle) as again:
        assert (await run(problem, again, run_dir)).patch == reference.patch
    assert again.calls == [], "a finished run (its selection included) is never redone"


async def test_a_spent_budget_in_selection_is_resumable_not_a_final_fallback(
    problem: Problem, clean: tuple[SolveResult, Counter[str]], tmp_path: Path
) -> None:
    """Before the single stop rule, a budget spent during selection froze the top-voted fallback as final."""
    reference, _ = clean
    run_dir = tmp_path / "run"
    with FakeModelServer(oracle, fault_rate=1.0, faults=("503",), fault_stages=frozenset({"selection"})) as down:
        assert (await run(problem, down, run_dir)).stopped_stage == "selection"
    with FakeModelServer(oracle) as server:
        s = settings(server, run_dir)
        s.models.prices = {"openai/right": (1000.0, 1000.0)}
        s.budget.budget_usd = 0.01
        store = RunStore(run_dir)
        spent = await solve(problem, s, ModelClient(s.models, s.budget, store.usage_path), store)
    assert server.calls == [], "the budget is checked before the call"
    assert (spent.status, spent.stopped_stage, spent.patch) == ("budget_exhausted", "selection", None)
    assert not store.instance(problem.instance_id).selection.exists()
    with FakeModelServer(oracle) as up:
        resumed = await run(problem, up, run_dir)
    assert {call.stage for call in up.calls} == {"selection"}
    assert (resumed.status, resumed.patch, resumed.selection_fallback) == ("patched", reference.patch, False)
