"""Pieces the three trajectories share: original files, how a test run is shown to the model, the turn line."""

from __future__ import annotations

import logging
import subprocess
from functools import lru_cache

from codemonkeys.prompts import render
from codemonkeys.sandbox.base import ExecResult, truncate_middle

log = logging.getLogger("codemonkeys.trajectories")

Messages = list[dict[str, str]]


@lru_cache(maxsize=2048)
def _git_show(repo_path: str, commit: str, path: str) -> str | None:
    proc = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=repo_path, capture_output=True)
    if proc.returncode != 0:
        return None
    return proc.stdout.decode("utf-8", errors="replace")


class OriginalFiles:
    """Files as they are at the problem's commit: every edit set applies to these, never to an earlier edit."""

    def __init__(self, repo_path: str, commit: str) -> None:
        self.repo_path = repo_path
        self.commit = commit

    def __call__(self, path: str) -> str | None:
        """The file's text, or None when it does not exist at the commit (or is not a file)."""
        return _git_show(self.repo_path, self.commit, path.removeprefix("./"))


def script_rules(timeout: float) -> str:
    return render("test_rules", timeout=f"{timeout:g}").rstrip()


def verdict(result: ExecResult, timeout: float) -> str:
    """What an exit code means under the test-script contract, spelled out so the model need not recall it."""
    if result.timed_out:
        return f"timed out: killed after {timeout:g} seconds, so the script is broken or far too slow"
    if result.exit_code == -1:
        return "not run: the patch could not be applied"
    if result.exit_code == 0:
        return "exit code 0: the script says the issue is FIXED"
    if result.exit_code == 2:
        return "exit code 2: the script says the issue is STILL PRESENT"
    return f"exit code {result.exit_code}: neither 0 nor 2, so the script itself failed (crash, error or bad exit)"


def show_run(where: str, result: ExecResult, timeout: float, limit: int) -> str:
    return render(
        "testing_run",
        where=where,
        verdict=verdict(result, timeout),
        output=truncate_middle(result.output.rstrip(), limit) or "(no output)",
    ).rstrip()


def turn_line(turn: int, turns: int, last: str = "whatever you answer now is final") -> str:
    """Tells the model how much of its budget is left, so it finishes in time."""
    if turn >= turns:
        return f"Turn {turn} of {turns}: this is your LAST turn; {last}."
    return f"Turn {turn} of {turns} ({turns - turn} more after this one)."


def crash_message(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def user(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}


def system(content: str) -> dict[str, str]:
    return {"role": "system", "content": content}


def file_block(path: str, text: str, outline: bool = False) -> str:
    marker = ' outline="true"' if outline else ""
    return f'<file path="{path}"{marker}>\n{text.rstrip()}\n</file>'
