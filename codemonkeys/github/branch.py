"""The chosen patch as a commit on `codemonkeys/issue-N`, pushed to the checkout's `origin`.

The commit is built with plumbing against a scratch index, so the checkout and its working tree are never
touched. The branch is never the default branch, and an existing branch is overwritten only when its tip is a
commit of ours (it carries our trailer), with a lease on the tip we saw."""

from __future__ import annotations

import base64
import os
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from pydantic import BaseModel

from codemonkeys.llm import scrub

TRAILER = "Generated-by: codemonkeys"
DEFAULT_NAME = "github-actions[bot]"
DEFAULT_EMAIL = "41898282+github-actions[bot]@users.noreply.github.com"


class PushError(Exception):
    """The branch could not be made or pushed; the message is safe to show (no credentials)."""


class Pushed(BaseModel):
    branch: str
    sha: str
    replaced: bool = False


def branch_name(number: int) -> str:
    return f"codemonkeys/issue-{number}"


def push_patch(
    repo: Path,
    *,
    base: str,
    patch: str,
    branch: str,
    default_branch: str,
    message: str,
    token: str | None = None,
) -> Pushed:
    """Commits `patch` on top of `base` and pushes it as `branch`; falls back to `branch-2`, `-3`… when the
    branch exists and is not ours."""
    git = _Git(repo, token)
    sha = git.commit(base, patch, f"{message}\n\n{TRAILER}\n")
    for attempt in range(1, 10):
        name = branch if attempt == 1 else f"{branch}-{attempt}"
        if name == default_branch:
            raise PushError(f"refusing to push to the default branch {default_branch}")
        tip = git.remote_tip(name)
        if tip is None:
            git.push(sha, name, lease=None)
            return Pushed(branch=name, sha=sha)
        if git.is_ours(name, tip):
            git.push(sha, name, lease=tip)
            return Pushed(branch=name, sha=sha, replaced=True)
    raise PushError(f"branches {branch} to {branch}-9 all exist on origin and were not made by codemonkeys")


class _Git:
    def __init__(self, repo: Path, token: str | None) -> None:
        self.repo = repo
        self.token = token
        self.env = {**os.environ, **_identity(repo)}

    def run(self, *args: str, env: dict[str, str] | None = None, what: str = "") -> str:
        proc = subprocess.run(
            ["git", "-c", "core.hooksPath=/dev/null", *args],
            cwd=self.repo,
            capture_output=True,
            text=True,
            env={**self.env, **(env or {}), **self._auth()},
        )
        if proc.returncode != 0:
            detail = scrub(proc.stderr.strip() or proc.stdout.strip(), self.token)
            raise PushError(f"{what or 'git ' + args[0]} failed: {detail}")
        return proc.stdout

    def commit(self, base: str, patch: str, message: str) -> str:
        with tempfile.TemporaryDirectory(prefix="codemonkeys-index-") as tmp:
            index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self.run("read-tree", base, env=index)
            patch_file = Path(tmp) / "patch.diff"
            patch_file.write_text(patch if patch.endswith("\n") else patch + "\n", encoding="utf-8")
            self.run("apply", "--cached", "--whitespace=nowarn", str(patch_file), env=index, what="applying the patch")
            tree = self.run("write-tree", env=index).strip()
        return self.run("commit-tree", tree, "-p", base, "-m", message).strip()

    def remote_tip(self, branch: str) -> str | None:
        out = self.run("ls-remote", "--heads", "origin", f"refs/heads/{branch}", what="reading origin's branches")
        return out.split()[0] if out.strip() else None

    def is_ours(self, branch: str, tip: str) -> bool:
        try:
            self.run("fetch", "--quiet", "--no-tags", "origin", f"refs/heads/{branch}", what="fetching the branch")
            return TRAILER in self.run("log", "-1", "--format=%B", tip)
        except PushError:
            return False

    def push(self, sha: str, branch: str, lease: str | None) -> None:
        ref = f"refs/heads/{branch}"
        flag = f"--force-with-lease={ref}:{lease}" if lease else "--no-force-with-lease"
        self.run("push", "--quiet", "--no-verify", flag, "origin", f"{sha}:{ref}", what=f"pushing {branch}")

    def _auth(self) -> dict[str, str]:
        """The token as an HTTP header for origin's host, given through the environment of this one git process:
        never in a URL, an argument or `.git/config` (the checkout should not persist it; see the docs)."""
        if not self.token or self._persisted_credentials():
            return {}
        url = subprocess.run(
            ["git", "remote", "get-url", "origin"], cwd=self.repo, capture_output=True, text=True
        ).stdout.strip()
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https"):
            return {}
        basic = base64.b64encode(f"x-access-token:{self.token}".encode()).decode()
        return {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": f"http.{parsed.scheme}://{parsed.netloc}/.extraheader",
            "GIT_CONFIG_VALUE_0": f"AUTHORIZATION: basic {basic}",
        }

    def _persisted_credentials(self) -> bool:
        """actions/checkout without `persist-credentials: false` left its own header: a second one is refused."""
        proc = subprocess.run(
            ["git", "config", "--get-regexp", r"^http\..*\.extraheader$"], cwd=self.repo, capture_output=True, text=True
        )
        return bool(proc.stdout.strip())


def _identity(repo: Path) -> dict[str, str]:
    """GIT_AUTHOR_*/GIT_COMMITTER_* from the environment, else git's own config, else GitHub's Actions bot."""
    env: dict[str, str] = {}
    for role in ("AUTHOR", "COMMITTER"):
        for part, key, fallback in (("NAME", "user.name", DEFAULT_NAME), ("EMAIL", "user.email", DEFAULT_EMAIL)):
            name = f"GIT_{role}_{part}"
            if os.environ.get(name):
                continue
            configured = subprocess.run(["git", "config", key], cwd=repo, capture_output=True, text=True).stdout.strip()
            env[name] = configured or fallback
    return env
