"""A problem: a repository at a commit plus an issue text. Everything downstream reads only this."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

from pydantic import BaseModel


class ProblemError(ValueError):
    """Bad input: the message is shown to the user as is."""


class Problem(BaseModel):
    instance_id: str
    repo_path: str
    commit: str
    issue: str


def _git(args: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ProblemError(proc.stderr.strip() or f"git {' '.join(args)} failed")
    return proc.stdout.strip()


def _is_url(repo: str) -> bool:
    return bool(re.match(r"^(https?|ssh|git|file)://", repo)) or bool(re.match(r"^[\w.-]+@[\w.-]+:", repo))


def resolve_repo(repo: str, clones_dir: Path) -> Path:
    """A local path is used in place (never modified: sandboxes use worktrees); a URL is cloned once."""
    if _is_url(repo):
        name = re.sub(r"\.git$", "", repo.rstrip("/").rsplit("/", 1)[-1]) or "repo"
        target = clones_dir / f"{name}-{hashlib.sha1(repo.encode()).hexdigest()[:8]}"
        if not (target / ".git").exists():
            clones_dir.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run(["git", "clone", "--quiet", repo, str(target)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise ProblemError(f"could not clone {repo}: {proc.stderr.strip()}")
        return target
    path = Path(repo).expanduser().resolve()
    if not path.exists():
        raise ProblemError(f"repository not found: {repo}")
    try:
        top = _git(["rev-parse", "--show-toplevel"], cwd=path)
    except ProblemError:
        raise ProblemError(f"not a git repository: {repo}") from None
    return Path(top)


def resolve_commit(repo_path: Path, commit: str | None) -> str:
    ref = commit or "HEAD"
    try:
        return _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=repo_path)
    except ProblemError:
        raise ProblemError(f"commit not found in {repo_path}: {ref}") from None


def clean_issue(text: str) -> str:
    """The issue text as every prompt shows it; an empty one is bad input."""
    if not text.strip():
        raise ProblemError("the issue text is empty")
    return text.strip() + "\n"


def make_problem(
    repo: str, commit: str | None, issue_text: str, clones_dir: Path, instance_id: str | None = None
) -> Problem:
    repo_path = resolve_repo(repo, clones_dir)
    sha = resolve_commit(repo_path, commit)
    issue = clean_issue(issue_text)
    name = instance_id or f"{repo_path.name}-{sha[:8]}-{hashlib.sha1(issue.encode()).hexdigest()[:6]}"
    return Problem(instance_id=name, repo_path=str(repo_path), commit=sha, issue=issue)
