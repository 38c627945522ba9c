"""Prompts planned against the model's window, end to end: a fix that touches six large files, a fake server
that refuses every prompt over its window with the 400 OpenAI-compatible servers send, the pipeline in-process
over real HTTP with real git and real local sandboxes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codemonkeys.config import Settings, nest
from codemonkeys.llm import ModelClient
from codemonkeys.pipeline import solve
from codemonkeys.problem import Problem, make_problem
from codemonkeys.result import SolveResult
from codemonkeys.store import RunStore
from tests.e2e.wide_repo import FILES, ISSUE, make_wide_repo, oracle
from tests.fake_model_server import FakeModelServer

pytestmark = pytest.mark.slow
WINDOW = 16_000
ANSWER = 1_000
MODELS = ["openai/right", "openai/partial"]


@pytest.fixture
def problem(tmp_path: Path) -> Problem:
    return make_problem(str(make_wide_repo(tmp_path)), None, ISSUE, tmp_path / "clones")


async def run(problem: Problem, server: FakeModelServer, run_dir: Path, believed_window: int) -> SolveResult:
    settings = Settings.model_validate(
        nest(
            {
                "models": MODELS,
                "api_base": server.url,
                "context_windows": dict.fromkeys(MODELS, believed_window),
                "max_output_tokens": ANSWER,
                "samples": 2,
                "iterations": 8,
                "rankings": 1,
                "top_k": 2,
                "sandbox": "local",
                "test_timeout": 30,
                "output_limit": 2000,
                "max_retries": 0,
                "run_dir": run_dir,
            },
            "test",
        )
    )
    store = RunStore(run_dir)
    return await solve(problem, settings, ModelClient(settings.models, settings.budget, store.usage_path), store)


def usage(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "usage.jsonl").read_text().splitlines()]


async def test_every_call_stays_inside_the_window_and_the_fix_survives(problem: Problem, tmp_path: Path) -> None:
    with FakeModelServer(oracle, context_window=WINDOW) as server:
        result = await run(problem, server, tmp_path / "run", WINDOW)
    assert all(record["ok"] for record in usage(tmp_path / "run")), "no call was refused"
    assert server.largest_prompt <= WINDOW - ANSWER
    assert (result.status, result.selection_fallback, result.ended_early) == ("patched", False, [])
    assert result.patch is not None and result.patch.count("+    factor = 3") == FILES
    editing = [c for c in server.calls if c.stage == "editing"]
    assert any("[shortened to fit the context window]" in json.dumps(c.messages) for c in editing), (
        "the long editing conversation had to shrink its older turns"
    )
    latest = editing[-1].messages[-1]["content"]
    assert "+    factor = 9" in latest or "+    factor = 3" in latest, "the newest feedback keeps its diff in full"
    selection = [c for c in server.calls if c.stage == "selection"]
    assert selection and 'regions="true"' in selection[0].messages[-1]["content"]
    context = RunStore(tmp_path / "run").instance(problem.instance_id).context.load()
    assert context is not None and len(context.files) < FILES
    assert any("did not fit the" in note for note in context.notes), "files left out of the context are named"


async def test_a_refused_request_ends_the_conversation_with_its_work_and_says_so(
    problem: Problem, tmp_path: Path
) -> None:
    """The client believes a window twice the server's: the requests the server refuses are not an outage. The
    trajectories keep their last edit as candidates, the result says why, and a rerun (the summary does not
    ask for one) changes nothing."""
    run_dir = tmp_path / "run"
    with FakeModelServer(oracle, context_window=WINDOW) as server:
        result = await run(problem, server, run_dir, 2 * WINDOW)
    refused = [r for r in usage(run_dir) if not r["ok"]]
    assert refused and all("context length" in r["error"] for r in refused)
    assert result.status == "patched" and not result.resumable
    assert result.candidates == 2, "each trajectory's applied edit survived as a candidate"
    assert any(e.startswith("editing 0:") and "refused the request" in e for e in result.ended_early)
    inst = RunStore(run_dir).instance(problem.instance_id)
    edited = inst.editing(0).load()
    assert edited is not None and edited.patch and edited.error and "refused" in edited.error
    with FakeModelServer(oracle, context_window=WINDOW) as again:
        rerun = await run(problem, again, run_dir, 2 * WINDOW)
    assert again.calls == [] and rerun.patch == result.patch
