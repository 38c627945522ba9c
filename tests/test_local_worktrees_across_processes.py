"""Worktree sandboxes of one repository opened and closed by several processes at once (batch workers, Ray
tasks): git's worktree list is shared, so none of them may lose a sandbox to another's add or remove."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.toy_repo import make_toy_repo

ROOT = Path(__file__).resolve().parents[1]
WORKER = """
import asyncio, sys
from codemonkeys.config import SandboxSettings
from codemonkeys.sandbox.base import SandboxSpec
from codemonkeys.sandbox.local import LocalProvider

async def main(repo, commit):
    spec = SandboxSpec(repo_path=repo, commit=commit, run_label="procs", settings=SandboxSettings(kind="local"))

    async def cycle(n):
        for i in range(15):
            provider = LocalProvider(spec)  # a new problem: its start-up prunes stale worktrees
            await provider.prepare()
            sandbox = await provider.open(f"s{n}-{i}")
            try:
                assert (await sandbox.run("test -f calc/stats.py", 30)).exit_code == 0
            finally:
                await sandbox.close()
                await provider.aclose()

    await asyncio.gather(*(cycle(n) for n in range(3)))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.mark.slow
def test_four_processes_share_one_repository_without_losing_a_sandbox(tmp_path: Path) -> None:
    repo = make_toy_repo(tmp_path)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(repo), commit],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    assert [code for code, _ in results] == [0, 0, 0, 0], "\n".join(err for _, err in results)
    listed = subprocess.run(["git", "worktree", "list"], cwd=repo, capture_output=True, text=True).stdout
    assert listed.count("\n") == 1, f"worktrees left behind:\n{listed}"
