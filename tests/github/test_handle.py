"""`codemonkeys github handle` as the action runs it: a real subprocess on a real checkout whose `origin` is a
local bare repository, the fake GitHub REST server (GitHub's own response shapes) and the scripted model over
real HTTP. Each test is one trigger and what the issue, origin and GitHub show afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.oracle import oracle
from tests.e2e.toy_repo import ISSUE, hidden_tests_pass, make_toy_repo
from tests.fake_github import FakeGitHub
from tests.fake_model_server import FakeModelServer, current_stage

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "codemonkeys"]
PROVIDER_KEY = "sk-provider-key-that-must-not-leak-42"
BRANCH = "codemonkeys/issue-1"
RUNNING = "<!-- codemonkeys:run state=running -->"
pytestmark = pytest.mark.slow

WORKFLOW = "name: ci\non: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n      - run: pytest\n"
WORKFLOW_EDIT = """.github/workflows/ci.yml
<<<<<<< SEARCH
      - run: pytest
=======
      - run: pytest || true
>>>>>>> REPLACE
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The team's repository as actions/checkout leaves it: main checked out, `origin` a bare repository."""
    repo = make_toy_repo(tmp_path)
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "ci.yml").write_text(WORKFLOW)
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "ci")
    git(tmp_path, "clone", "-q", "--bare", str(repo), "origin.git")
    git(repo, "remote", "add", "origin", str(tmp_path / "origin.git"))
    git(repo, "fetch", "-q", "origin")
    return repo


def github(checkout: Path, **kw: object) -> FakeGitHub:
    fake = FakeGitHub(
        permissions={"maintainer": "maintain", "reader": "read"}, origin=checkout.parent / "origin.git", **kw
    )  # type: ignore[arg-type]
    title, _, body = ISSUE.partition("\n")
    fake.add_issue(1, title, body.strip(), comments=[("bob", "Still broken on 2.1.")])
    return fake


def handle(checkout: Path, fake: FakeGitHub, event: dict, model: FakeModelServer | None, *extra: str):  # type: ignore[no-untyped-def]
    tmp = checkout.parent
    (tmp / "event.json").write_text(json.dumps(event))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CODEMONKEYS_", "GITHUB_", "GIT_"))}
    env |= {
        "PYTHONPATH": str(ROOT),
        "GITHUB_TOKEN": fake.token,
        "GITHUB_API_URL": fake.url,
        "GITHUB_SERVER_URL": fake.server_url,
        "GITHUB_REPOSITORY": f"{fake.owner}/{fake.repo}",
        "GITHUB_RUN_ID": "4242",
        "GITHUB_STEP_SUMMARY": str(tmp / "summary.md"),
        "OPENAI_API_KEY": PROVIDER_KEY,
    }
    args = [*CLI, "github", "handle", "--event", str(tmp / "event.json"), "--repo", str(checkout)]
    args += ["--run-dir", str(tmp / "runs"), "--sandbox", "local", "--test-timeout", "30", "--budget", "5"]
    if model is not None:
        args += ["--api-base", model.url, "--model", "openai/right", "--samples", "2", "--iterations", "4"]
        args += ["--rankings", "1"]
    proc = subprocess.run([*args, *extra], capture_output=True, text=True, env=env, timeout=300)
    assert fake.unhandled == []
    return proc


def bot_comments(fake: FakeGitHub) -> list[str]:
    return [c.body for c in fake.comments(1) if c.author == fake.bot_login]


def origin_branches(checkout: Path) -> list[str]:
    return git(checkout.parent / "origin.git", "for-each-ref", "--format=%(refname:short)", "refs/heads").split()


def assert_no_secret_anywhere(checkout: Path, fake: FakeGitHub, proc: subprocess.CompletedProcess[str]) -> None:
    tmp = checkout.parent
    objects = subprocess.run(
        ["git", "cat-file", "--batch-all-objects", "--batch"], cwd=tmp / "origin.git", capture_output=True
    ).stdout
    texts = [proc.stdout, proc.stderr, (checkout / ".git" / "config").read_text()]
    texts += [r.body for r in fake.requests]
    texts += (
        [p.read_text(errors="replace") for p in (tmp / "runs").rglob("*") if p.is_file()]
        if (tmp / "runs").exists()
        else []
    )
    for secret in (fake.token, PROVIDER_KEY):
        assert secret.encode() not in objects
        assert not [t for t in texts if secret in t]


def test_a_label_by_a_maintainer_pushes_a_branch_and_opens_a_draft_pull_request(checkout: Path) -> None:
    with github(checkout) as fake, FakeModelServer(oracle) as model:
        proc = handle(checkout, fake, fake.event("label", number=1, actor="maintainer"), model)
        assert proc.returncode == 0, proc.stderr
        assert fake.issue_reactions(1) == ["eyes"]
        [pull] = fake.pulls
        assert (pull.head, pull.base, pull.draft) == (BRANCH, "main", True)
        assert pull.title.startswith("Fix #1: median() is wrong")
        for part in ("Fixes #1", "```diff", "Candidates and votes", "**chosen**", "Tests it wrote", "<details>"):
            assert part in pull.body
        assert "### Cost" in pull.body and "| **total** |" in pull.body
        assert "/codemonkeys" in pull.body and f"{fake.server_url}/octo-org/hello-world/actions/runs/4242" in pull.body
        [start] = bot_comments(fake)
        assert "state=done" in start and f"#{pull.number}" in start and "2 samples" in start
        summary = (checkout.parent / "summary.md").read_text()
        assert "CodeMonkeys on octo-org/hello-world#1" in summary and f"draft pull request #{pull.number}" in summary
        assert_no_secret_anywhere(checkout, fake, proc)
        problem = json.loads(next((checkout.parent / "runs").rglob("problem.json")).read_text())
        assert "Still broken on 2.1." in problem["issue"] and "/codemonkeys" not in problem["issue"]
    assert BRANCH in origin_branches(checkout)
    patch = git(checkout.parent / "origin.git", "diff", "main", BRANCH) + "\n"
    graded = hidden_tests_pass(checkout, patch, checkout.parent, sys.executable)
    assert graded.returncode == 0, graded.stdout
    assert git(checkout, "status", "--porcelain") == "" and git(checkout, "rev-parse", "--abbrev-ref", "HEAD") == "main"


def test_a_reader_is_refused_politely_and_nothing_runs(checkout: Path) -> None:
    with github(checkout) as fake, FakeModelServer(oracle) as model:
        proc = handle(checkout, fake, fake.event("comment", number=1, actor="reader"), model)
        assert proc.returncode == 0, proc.stderr
        [answer] = bot_comments(fake)
        assert "@reader" in answer and "write, maintain or admin" in answer and "`read`" in answer
        assert model.calls == [] and fake.pulls == []
    assert origin_branches(checkout) == ["main"]
    assert not (checkout.parent / "runs").exists()


def test_when_actions_may_not_open_pull_requests_the_patch_is_commented(checkout: Path) -> None:
    with github(checkout, forbid_pull_requests=True) as fake, FakeModelServer(oracle) as model:
        proc = handle(checkout, fake, fake.event("comment", number=1, actor="maintainer"), model)
        assert proc.returncode == 0, proc.stderr
        start, answer = bot_comments(fake)
        assert fake.pulls == []
        assert "does not let GitHub Actions open pull requests" in answer
        assert f"`{BRANCH}`" in answer and "```diff" in answer and "mid - 1" in answer
        assert "state=done" in start and BRANCH in start
        assert_no_secret_anywhere(checkout, fake, proc)
    assert BRANCH in origin_branches(checkout)


def edits_the_workflow(messages: list[dict], model: str) -> str:
    said = " ".join(str(m.get("content")) for m in messages if m["role"] == "assistant")
    if current_stage() == "editing" and "<edit>" not in said:
        return f"Loosen CI.\n<edit>\n{WORKFLOW_EDIT}</edit>"
    return oracle(messages, model)


def test_a_patch_to_ci_configuration_is_refused(checkout: Path) -> None:
    with github(checkout) as fake, FakeModelServer(edits_the_workflow) as model:
        proc = handle(checkout, fake, fake.event("label", number=1, actor="maintainer"), model)
        assert proc.returncode == 1, proc.stderr
        start, answer = bot_comments(fake)
        assert "changes CI configuration" in answer and "`.github/workflows/ci.yml`" in answer
        assert fake.pulls == [] and "state=done" in start
    assert origin_branches(checkout) == ["main"]


def test_a_second_trigger_while_a_run_is_in_progress_is_answered_not_started(checkout: Path) -> None:
    with github(checkout) as fake, FakeModelServer(oracle) as model:
        fake.add_comment(1, fake.bot_login, f"{RUNNING}\nWorking on this issue.")
        proc = handle(checkout, fake, fake.event("label", number=1, actor="maintainer"), model)
        assert proc.returncode == 0, proc.stderr
        answer = bot_comments(fake)[-1]
        assert "already in progress" in answer
        assert model.calls == [] and fake.pulls == []
    assert origin_branches(checkout) == ["main"]


def test_a_person_pasting_the_marker_does_not_block_the_bot(checkout: Path) -> None:
    with github(checkout) as fake, FakeModelServer(oracle) as model:
        fake.add_comment(1, "mallory", RUNNING)
        proc = handle(checkout, fake, fake.event("label", number=1, actor="maintainer"), model)
        assert proc.returncode == 0, proc.stderr
        assert len(fake.pulls) == 1


def never_edits(messages: list[dict], model: str) -> str:
    if current_stage() == "editing":
        return "I cannot see how to fix this.\n<done>"
    return oracle(messages, model)


def test_comment_options_apply_and_no_candidate_is_reported(checkout: Path) -> None:
    with github(checkout) as fake, FakeModelServer(never_edits) as model:
        event = fake.event("comment", number=1, actor="maintainer", comment="/codemonkeys --samples 1 --iterations 2")
        proc = handle(checkout, fake, event, model)
        assert proc.returncode == 1, proc.stderr
        start, answer = bot_comments(fake)
        assert "1 samples, 2 iterations" in start and "state=done" in start
        assert "No fix survived" in answer and "1 trajectories ran and produced 0 distinct candidate" in answer
        assert fake.pulls == []


def test_options_a_comment_may_not_set_are_answered(checkout: Path) -> None:
    with github(checkout) as fake, FakeModelServer(oracle) as model:
        event = fake.event("comment", number=1, actor="maintainer", comment="/codemonkeys --budget 100")
        proc = handle(checkout, fake, event, model)
        assert proc.returncode == 0, proc.stderr
        [answer] = bot_comments(fake)
        assert "Nothing was started" in answer and "cap of 5 USD" in answer
        assert model.calls == []


def test_a_failing_run_says_why_without_secrets(checkout: Path) -> None:
    with github(checkout) as fake:
        event = fake.event("label", number=1, actor="maintainer")
        proc = handle(checkout, fake, event, None, "--model", "anthropic/claude-3-5-haiku-20241022")
        assert proc.returncode == 1, proc.stderr
        start, answer = bot_comments(fake)
        assert "The run failed in the setup stage" in answer and "ANTHROPIC_API_KEY" in answer
        assert "Traceback" not in answer and "state=done" in start
        assert "**Finished**: failed" in (checkout.parent / "summary.md").read_text()
        assert_no_secret_anywhere(checkout, fake, proc)


def test_other_events_are_ignored_without_a_call_to_github(checkout: Path) -> None:
    with github(checkout) as fake:
        event = fake.event("label", number=1, actor="maintainer", label="bug")
        proc = handle(checkout, fake, event, None)
        assert proc.returncode == 0 and "nothing to do" in proc.stderr
        assert fake.requests == []


def test_of_two_racing_triggers_the_earlier_start_comment_wins(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another runner posts its start comment between our check and ours: ours gives way, nothing runs."""
    from codemonkeys.config import Settings
    from codemonkeys.github import client as client_module
    from codemonkeys.github.handle import BotConfig
    from codemonkeys.github.handle import handle as handle_event

    with github(checkout) as fake:
        post = client_module.GitHubClient.comment

        def racing(self: client_module.GitHubClient, ref: client_module.IssueRef, body: str) -> client_module.Comment:
            if "state=running" in body:
                fake.add_comment(1, fake.bot_login, f"{RUNNING}\nthe other runner")
            return post(self, ref, body)

        monkeypatch.setattr(client_module.GitHubClient, "comment", racing)
        (checkout.parent / "event.json").write_text(json.dumps(fake.event("label", number=1, actor="maintainer")))
        config = BotConfig(
            event=checkout.parent / "event.json",
            repo=checkout,
            settings=Settings(),
            trigger_label="codemonkeys",
            token=fake.token,
            api_url=fake.url,
        )
        assert handle_event(config) == 0
        other, ours = bot_comments(fake)
        assert "the other runner" in other and "state=running" in other
        assert "state=superseded" in ours and "did not start" in ours
        assert not [r for r in fake.requests if r.method == "GET" and r.path.endswith("/issues/1")]  # no run began


def test_a_running_marker_older_than_a_job_can_live_is_stale() -> None:
    from datetime import UTC, datetime, timedelta

    from codemonkeys.github.client import Comment
    from codemonkeys.github.handle import STALE_AFTER, _running

    now = datetime.now(UTC)
    old = Comment(id=1, author="github-actions[bot]", author_is_bot=True, body=RUNNING, created_at=now - STALE_AFTER)
    live = old.model_copy(update={"id": 2, "created_at": now - timedelta(minutes=5)})
    human = live.model_copy(update={"id": 0, "author": "mallory", "author_is_bot": False})
    assert _running([old]) is None
    assert _running([human, live, old]) == live


def test_the_budget_is_a_hard_cap(checkout: Path) -> None:
    price = ["--set", 'models.prices={"openai/right": [200, 200]}', "--budget", "0.5"]
    with github(checkout) as fake, FakeModelServer(oracle) as model:
        proc = handle(checkout, fake, fake.event("label", number=1, actor="maintainer"), model, *price)
        assert proc.returncode == 1, proc.stderr
        start, answer = bot_comments(fake)
        assert "The run failed" in answer and "budget" in answer and "Raise the `budget` input" in answer
        assert fake.pulls == [] and "state=done" in start
    usage = [json.loads(line) for p in (checkout.parent / "runs").rglob("usage.jsonl") for line in p.open()]
    spent = sum(u["cost_usd"] for u in usage)
    assert 0.3 < spent <= 0.5
    assert origin_branches(checkout) == ["main"]
