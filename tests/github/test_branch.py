"""The patch becomes a commit on a branch of origin (a real bare repository) without touching the checkout."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from codemonkeys.github.branch import TRAILER, PushError, push_patch

PATCH = """diff --git a/calc.py b/calc.py
--- a/calc.py
+++ b/calc.py
@@ -1 +1 @@
-x = 1
+x = 2
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout with no git identity anywhere (like act's runner), cloned from a bare origin."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(name, raising=False)
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "calc.py").write_text("x = 1\n")
    git(seed, "init", "-q", "-b", "main")
    git(seed, "add", "-A")
    git(seed, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    git(tmp_path, "clone", "-q", "--bare", str(seed), "origin.git")
    git(tmp_path, "clone", "-q", str(tmp_path / "origin.git"), "checkout")
    return tmp_path / "checkout"


def push(checkout: Path, branch: str = "codemonkeys/issue-7", **kw: object):  # type: ignore[no-untyped-def]
    base = git(checkout, "rev-parse", "HEAD")
    args = {"base": base, "patch": PATCH, "branch": branch, "default_branch": "main", "message": "Fix #7"} | kw
    return push_patch(checkout, **args)  # type: ignore[arg-type]


def test_pushes_a_commit_on_top_of_the_base_and_leaves_the_checkout_alone(checkout: Path) -> None:
    head = git(checkout, "rev-parse", "HEAD")
    pushed = push(checkout)
    origin = checkout.parent / "origin.git"
    assert pushed.branch == "codemonkeys/issue-7" and not pushed.replaced
    assert git(origin, "rev-parse", "refs/heads/codemonkeys/issue-7") == pushed.sha
    assert git(origin, "rev-parse", f"{pushed.sha}^") == head
    assert git(origin, "show", f"{pushed.sha}:calc.py") == "x = 2"
    assert TRAILER in git(origin, "log", "-1", "--format=%B", pushed.sha)
    assert git(origin, "log", "-1", "--format=%an <%ae>", pushed.sha).startswith("github-actions[bot] <")
    assert git(checkout, "rev-parse", "HEAD") == head
    assert git(checkout, "status", "--porcelain") == ""
    assert (checkout / "calc.py").read_text() == "x = 1\n"


def test_identity_from_the_environment_wins(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Team Bot")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "bot@team.example")
    pushed = push(checkout)
    assert (
        git(checkout.parent / "origin.git", "log", "-1", "--format=%an <%ae>", pushed.sha)
        == "Team Bot <bot@team.example>"
    )


def test_never_pushes_to_the_default_branch(checkout: Path) -> None:
    with pytest.raises(PushError, match="default branch"):
        push(checkout, branch="main")
    assert git(checkout.parent / "origin.git", "log", "--format=%s", "main") == "base"


def test_a_branch_someone_else_made_is_left_alone(checkout: Path) -> None:
    git(checkout, "push", "-q", "origin", "HEAD:refs/heads/codemonkeys/issue-7")
    theirs = git(checkout.parent / "origin.git", "rev-parse", "codemonkeys/issue-7")
    pushed = push(checkout)
    assert pushed.branch == "codemonkeys/issue-7-2"
    assert git(checkout.parent / "origin.git", "rev-parse", "codemonkeys/issue-7") == theirs


def test_our_own_branch_is_updated_on_a_rerun(checkout: Path) -> None:
    first = push(checkout)
    second = push(checkout, message="Fix #7 again")
    assert second.branch == first.branch and second.replaced
    assert git(checkout.parent / "origin.git", "rev-parse", first.branch) == second.sha


def test_a_patch_that_does_not_apply_is_a_clear_error(checkout: Path) -> None:
    with pytest.raises(PushError, match="applying the patch failed"):
        push(checkout, patch=PATCH.replace("-x = 1", "-x = 5"))
    assert "codemonkeys" not in git(checkout.parent / "origin.git", "branch")


def test_the_token_rides_in_the_environment_of_one_git_process_only(checkout: Path) -> None:
    token = "ghs_secret_token_for_this_test_123"
    git(checkout, "remote", "set-url", "origin", "https://127.0.0.1:9/octo/repo.git")
    with pytest.raises(PushError) as failure:
        push(checkout, token=token)
    assert token not in str(failure.value)
    assert token not in (checkout / ".git" / "config").read_text()
