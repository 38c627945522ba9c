"""Problems from a local path or a git URL, a commit and an issue text."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from codemonkeys.problem import ProblemError, make_problem
from tests.e2e.toy_repo import ISSUE, make_toy_repo


def test_a_git_url_is_cloned_once_and_the_commit_resolved(tmp_path: Path) -> None:
    repo = make_toy_repo(tmp_path)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    clones = tmp_path / "clones"
    problem = make_problem(f"file://{repo}", "main", ISSUE, clones)
    assert problem.commit == head
    assert Path(problem.repo_path).parent == clones
    again = make_problem(f"file://{repo}", None, ISSUE, clones)
    assert again.repo_path == problem.repo_path and again.instance_id == problem.instance_id
    assert len(list(clones.iterdir())) == 1


def test_a_subdirectory_path_means_its_repository(tmp_path: Path) -> None:
    repo = make_toy_repo(tmp_path)
    problem = make_problem(str(repo / "calc"), None, ISSUE, tmp_path / "clones")
    assert problem.repo_path == str(repo)
    assert problem.instance_id.startswith("calc-repo-")


def test_bad_input_says_what_is_wrong(tmp_path: Path) -> None:
    repo = make_toy_repo(tmp_path)
    with pytest.raises(ProblemError, match="could not clone"):
        make_problem(f"file://{tmp_path}/missing", None, ISSUE, tmp_path / "clones")
    with pytest.raises(ProblemError, match="commit not found"):
        make_problem(str(repo), "no-such-branch", ISSUE, tmp_path / "clones")
    with pytest.raises(ProblemError, match="issue text is empty"):
        make_problem(str(repo), None, "\n \n", tmp_path / "clones")
