"""A trajectory whose sandbox dies leaves no candidate; the result says so instead of dropping it silently."""

from __future__ import annotations

from pathlib import Path

import pytest

from codemonkeys.config import Settings, nest
from codemonkeys.llm import ModelClient
from codemonkeys.pipeline import solve
from codemonkeys.problem import make_problem
from codemonkeys.sandbox.base import SandboxError
from codemonkeys.sandbox.local import LocalProvider
from codemonkeys.store import RunStore
from tests.e2e.oracle import oracle
from tests.e2e.toy_repo import ISSUE, make_toy_repo
from tests.fake_model_server import FakeModelServer

pytestmark = pytest.mark.slow


async def test_a_crashed_trajectory_is_named_in_the_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened = LocalProvider.open

    async def dies_for_trajectory_1(self: LocalProvider, name: str):
        if name == "trajectory-1":
            raise SandboxError("the worktree vanished")
        return await opened(self, name)

    monkeypatch.setattr(LocalProvider, "open", dies_for_trajectory_1)
    problem = make_problem(str(make_toy_repo(tmp_path)), None, ISSUE, tmp_path / "clones")
    with FakeModelServer(oracle) as server:
        values = {"models": ["openai/right"], "api_base": server.url, "samples": 2, "iterations": 4, "rankings": 1}
        settings = Settings.model_validate(nest(values | {"sandbox": "local", "run_dir": tmp_path / "run"}, "test"))
        store = RunStore(tmp_path / "run")
        result = await solve(problem, settings, ModelClient(settings.models, settings.budget, store.usage_path), store)
    assert result.status == "patched"
    assert result.ended_early == ["trajectory 1 crashed, no candidate: SandboxError: the worktree vanished"]
