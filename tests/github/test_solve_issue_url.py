"""`codemonkeys solve --issue https://github.com/OWNER/REPO/issues/N`: the issue thread is read through the same
client as the bot's (here from the fake GitHub, named by GITHUB_API_URL as Actions and Enterprise Server do)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codemonkeys.github.client import DEFAULT_API, parse_issue_url
from tests.e2e.oracle import oracle
from tests.e2e.toy_repo import make_toy_repo
from tests.fake_github import FakeGitHub
from tests.fake_model_server import FakeModelServer

ROOT = Path(__file__).resolve().parents[2]
URL = "https://github.com/octo-org/hello-world/issues/1"


def solve(tmp_path: Path, fake: FakeGitHub, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CODEMONKEYS_", "GITHUB_"))}
    env |= {"PYTHONPATH": str(ROOT), "GITHUB_API_URL": fake.url, "GITHUB_TOKEN": fake.token}
    args = [sys.executable, "-m", "codemonkeys", "solve", "--issue", url, "--run-dir", str(tmp_path / "run"), *extra]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_the_issue_thread_is_the_problem(tmp_path: Path) -> None:
    repo = make_toy_repo(tmp_path)
    with FakeGitHub() as fake, FakeModelServer(oracle) as model:
        fake.add_issue(
            1,
            "median() is wrong for even lists",
            "median([1, 2, 3, 4]) returns 3; it should be 2.5.",
            comments=[("bob", "Same on 3.12."), (fake.bot_login, "Working on this issue."), ("carol", "/codemonkeys")],
        )
        proc = solve(
            tmp_path, fake, URL, "--repo", str(repo), "--api-base", model.url, "--model", "openai/right",
            "--samples", "1", "--iterations", "3", "--rankings", "1", "--sandbox", "local",
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    problem = json.loads((tmp_path / "run" / "octo-org__hello-world-1" / "problem.json").read_text())
    issue = problem["issue"]
    assert issue.startswith("# median() is wrong for even lists\n\nmedian([1, 2, 3, 4]) returns 3")
    assert "bob wrote:\n\nSame on 3.12." in issue
    assert "Working on this issue" not in issue and "/codemonkeys" not in issue


def test_a_missing_issue_is_bad_input(tmp_path: Path) -> None:
    with FakeGitHub() as fake:
        proc = solve(tmp_path, fake, URL.replace("/1", "/9"), "--repo", str(tmp_path))
    assert proc.returncode == 2
    assert "reading issue octo-org/hello-world#9: GitHub answered 404: Not Found" in proc.stderr
    assert fake.token not in proc.stderr


def test_issue_urls_name_their_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_API_URL", raising=False)
    ref, api = parse_issue_url(URL) or (None, None)
    assert ref is not None and (ref.slug, ref.number, api) == ("octo-org/hello-world", 1, DEFAULT_API)
    ref, api = parse_issue_url("https://git.corp.example/team/app/issues/12#issuecomment-3") or (None, None)
    assert ref is not None and (ref.slug, ref.number, api) == ("team/app", 12, "https://git.corp.example/api/v3")
    assert parse_issue_url("https://github.com/octo-org/hello-world/pull/1") is None
    assert parse_issue_url("issue.md") is None
