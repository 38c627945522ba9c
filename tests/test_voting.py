"""Voting on real candidates of a real buggy repo, with the scripts run in real local sandboxes."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from codemonkeys.config import GenerationSettings, SandboxSettings
from codemonkeys.edits import apply_edits, make_diff, parse_edit_blocks
from codemonkeys.repo_files import OriginalFiles
from codemonkeys.sandbox.base import Outcome, SandboxProvider, SandboxSpec
from codemonkeys.sandbox.local import LocalProvider, LocalSandbox
from codemonkeys.trajectories.models import Candidate, EditingResult, VoteResult
from codemonkeys.voting import collect_candidates, vote
from tests.e2e.toy_repo import RIGHT_FIX, RIGHT_TEST, WRONG_FIX, WRONG_TEST, make_toy_repo

LONG_RIGHT_FIX = """calc/stats.py
<<<<<<< SEARCH
    ordered = sorted(values)
    return ordered[len(ordered) // 2]
=======
    ordered = sorted(values)
    count = len(ordered)
    middle = count // 2
    # an odd count has one middle value
    if count % 2 == 1:
        return ordered[middle]
    # an even count averages the two middle values
    return (ordered[middle - 1] + ordered[middle]) / 2
>>>>>>> REPLACE
"""
ALWAYS_PASSES = "import sys\nprint('nothing to see')\nsys.exit(0)\n"
BROKEN = "raise SystemExit(1)\n"
FIXED, NOT_FIXED, SCRIPT_ERROR = Outcome.FIXED, Outcome.NOT_FIXED, Outcome.SCRIPT_ERROR


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


class CountingProvider(LocalProvider):
    """A real local provider that also remembers how many sandboxes were open at once."""

    def __init__(self, spec: SandboxSpec) -> None:
        super().__init__(spec)
        self.opened = 0
        self.most_open = 0

    async def open(self, name: str) -> LocalSandbox:
        sandbox = await super().open(name)
        self.opened += 1
        self.most_open = max(self.most_open, len(self._open))
        return sandbox


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_toy_repo(tmp_path)


@pytest.fixture
async def provider(repo: Path) -> AsyncIterator[CountingProvider]:
    prov = CountingProvider(SandboxSpec(repo_path=str(repo), commit=git(repo, "rev-parse", "HEAD")))
    yield prov
    await prov.aclose()


def diff_of(edit: str, repo: Path) -> str:
    originals = OriginalFiles(str(repo), git(repo, "rev-parse", "HEAD"))
    applied = apply_edits(parse_edit_blocks(edit), originals)
    return make_diff({p: originals(p) for p in applied.files}, applied.files)


async def run_vote(
    candidates: list[Candidate], scripts: list[str], provider: SandboxProvider, top_k: int = 3, **box: Any
) -> VoteResult:
    """`vote` with `top_k` candidates passed on and a 30 s test timeout; `box` are further sandbox settings."""
    return await vote(
        candidates, scripts, provider, GenerationSettings(top_k=top_k), SandboxSettings(test_timeout=30, **box)
    )


async def test_right_fix_beats_wrong_fix_when_scripts_disagree(repo: Path, provider: CountingProvider) -> None:
    candidates = collect_candidates(
        [
            EditingResult(index=0, patch=diff_of(WRONG_FIX, repo), script=WRONG_TEST),
            EditingResult(index=1, patch=diff_of(RIGHT_FIX, repo), script=RIGHT_TEST),
        ]
    )
    scripts = [WRONG_TEST, RIGHT_TEST, WRONG_TEST + "\n\n"]
    result = await run_vote(candidates, scripts, provider, top_k=1, max_containers=8)
    assert result.error is None
    assert result.scripts == [WRONG_TEST, RIGHT_TEST], "the same script twice is one voter"
    assert result.candidate_ids == [0, 1]
    assert result.matrix == [[FIXED, FIXED], [NOT_FIXED, FIXED]]
    assert result.empty_patch == [NOT_FIXED, NOT_FIXED] and result.suspicious == []
    assert result.votes == {0: 1, 1: 2}
    assert result.top == [1]
    assert provider.opened == 4 and provider.most_open <= 4, "six runs over a pool of at most four sandboxes"
    assert git(repo, "worktree", "list").count("\n") == 0, "every vote sandbox is closed"


def test_duplicate_patches_are_merged_with_their_sources(repo: Path) -> None:
    right, wrong = diff_of(RIGHT_FIX, repo), diff_of(WRONG_FIX, repo)
    spaced = right.replace(" def median(values):\n", " def median(values):   \n")
    assert spaced != right
    candidates = collect_candidates(
        [
            EditingResult(index=0, patch=right, script="a", touched=["calc/stats.py"]),
            EditingResult(index=1, patch=wrong, script="b", touched=["calc/stats.py"]),
            EditingResult(index=2, patch=right + "\n", script="c", touched=["calc/stats.py", "calc/format.py"]),
            EditingResult(index=3, patch=None, script="d", error="no edit applied", touched=["calc/nope.py"]),
            EditingResult(index=4, patch=spaced, script="e"),
        ]
    )
    assert [(c.id, c.sources, c.scripts) for c in candidates] == [(0, [0, 2, 4], ["a", "c", "e"]), (1, [1], ["b"])]
    assert candidates[0].patch == right
    assert [c.paths for c in candidates] == [["calc/stats.py", "calc/format.py"], ["calc/stats.py"]]


async def test_ties_go_to_the_shorter_diff(repo: Path, provider: CountingProvider) -> None:
    long_right, right, wrong = (diff_of(f, repo) for f in (LONG_RIGHT_FIX, RIGHT_FIX, WRONG_FIX))
    candidates = [
        Candidate(id=0, patch=long_right, sources=[0]),
        Candidate(id=1, patch=right, sources=[1]),
        Candidate(id=2, patch=wrong, sources=[2]),
    ]
    result = await run_vote(candidates, [RIGHT_TEST], provider, top_k=3)
    assert result.votes == {0: 1, 1: 1, 2: 0}
    assert result.top == [1, 0, 2], "equal votes: the shorter diff first; the wrong fix is shortest but has no vote"


async def test_empty_patch_row_is_recorded_and_suspicious_scripts_still_count(
    repo: Path, provider: CountingProvider
) -> None:
    candidates = [
        Candidate(id=0, patch=diff_of(WRONG_FIX, repo)),
        Candidate(id=1, patch=diff_of(RIGHT_FIX, repo)),
    ]
    result = await run_vote(candidates, [RIGHT_TEST, ALWAYS_PASSES, BROKEN], provider, top_k=2)
    assert result.empty_patch == [NOT_FIXED, FIXED, SCRIPT_ERROR]
    assert result.suspicious == [1]
    assert result.matrix == [[NOT_FIXED, FIXED], [FIXED, FIXED], [SCRIPT_ERROR, SCRIPT_ERROR]]
    assert result.votes == {0: 1, 1: 2}
    assert result.top == [1, 0]


async def test_sandboxes_that_cannot_open_leave_an_error_not_an_exception(repo: Path) -> None:
    provider = LocalProvider(SandboxSpec(repo_path=str(repo), commit="0" * 40))
    candidates = [
        Candidate(id=0, patch=diff_of(LONG_RIGHT_FIX, repo)),
        Candidate(id=1, patch=diff_of(RIGHT_FIX, repo)),
    ]
    try:
        result = await run_vote(candidates, [RIGHT_TEST], provider)
    finally:
        await provider.aclose()
    assert result.error is not None and "could not open a sandbox" in result.error
    assert result.matrix == [[None, None]] and result.empty_patch == [None]
    assert result.votes == {0: 0, 1: 0}
    assert result.top == [1, 0]


async def test_no_scripts_ranks_by_diff_size(repo: Path, provider: CountingProvider) -> None:
    candidates = [Candidate(id=5, patch=diff_of(LONG_RIGHT_FIX, repo)), Candidate(id=6, patch=diff_of(WRONG_FIX, repo))]
    result = await run_vote(candidates, ["", "  \n"], provider)
    assert result.scripts == [] and result.matrix == []
    assert result.top == [6, 5]
    assert provider.opened == 0
