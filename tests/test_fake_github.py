"""The fake GitHub answers what githubkit, the bot's client, parses with its models of GitHub's description.

githubkit validates every response against pydantic models generated from GitHub's OpenAPI description, so a
`.parsed_data` that succeeds is the shape check; the assertions check the fake's state shows through.
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from githubkit import GitHub
from githubkit.exception import RequestFailed
from githubkit.utils import UNSET
from githubkit.webhooks import parse_obj

from tests import octokit
from tests.fake_github import FakeComment, FakeGitHub

OWNER, REPO, TOKEN = "octo-org", "hello-world", "ghs_fake_token_0123456789"


@pytest.fixture
def fake():
    with FakeGitHub(permissions={"bob": "write"}) as server:
        yield server


def client(fake: FakeGitHub, token: str = TOKEN) -> GitHub:
    return GitHub(token, base_url=fake.url)


def failure(call) -> RequestFailed:
    with pytest.raises(RequestFailed) as caught:
        call()
    return caught.value


def git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A bare repository with branches main and fix (one commit ahead), pushed from a scratch clone."""
    bare = tmp_path / "origin.git"
    work = tmp_path / "work"
    git("init", "--bare", "-b", "main", str(bare))
    git("init", "-b", "main", str(work))
    (work / "a.txt").write_text("one\n")
    git("add", "a.txt", cwd=work)
    git("commit", "-m", "first", cwd=work)
    git("checkout", "-b", "fix", cwd=work)
    (work / "a.txt").write_text("one\ntwo\n")
    git("commit", "-am", "second", cwd=work)
    git("push", str(bare), "main", "fix", cwd=work)
    return bare


def test_spec_is_cached_under_xdg_and_examples_are_copies(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert octokit.spec_path("rest").is_file()
    assert octokit.rest_spec()["info"]["version"] == "23.0.2"
    assert octokit.webhooks_spec()["info"]["version"] == "12.1.0"
    issue = octokit.example("issue")
    issue["title"] = "changed"
    assert octokit.example("issue")["title"] != "changed"
    # The webhooks description's own delivery examples come as they are.
    assert octokit.webhook_example("check_run", "created")["check_run"]["status"] == "queued"
    assert octokit.webhook_example("ping", "")["zen"]
    with pytest.raises(KeyError):
        octokit.webhook_example("issues", "no-such-action")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert octokit.cache_dir() == tmp_path / "codemonkeys" / "test-data" / "octokit"


def test_missing_npm_names_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(octokit.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"install Node\.js and npm"):
        octokit._download(tmp_path)


def test_repository(fake: FakeGitHub) -> None:
    gh = client(fake)
    repo = gh.rest.repos.get(OWNER, REPO).parsed_data
    assert (repo.name, repo.full_name, repo.owner.login, repo.default_branch) == (
        REPO,
        f"{OWNER}/{REPO}",
        OWNER,
        "main",
    )
    assert repo.html_url == f"{fake.server_url}/{OWNER}/{REPO}"
    assert fake.server_url.startswith(fake.url) and fake.server_url != fake.url


@pytest.mark.parametrize(
    ("role", "permission"),
    [
        ("admin", "admin"),
        ("maintain", "write"),
        ("write", "write"),
        ("triage", "read"),
        ("read", "read"),
        ("none", "none"),
    ],
)
def test_permission_of_each_role(role: str, permission: str) -> None:
    with FakeGitHub(permissions={"carol": role}) as fake:
        gh = client(fake)
        answer = gh.rest.repos.get_collaborator_permission_level(OWNER, REPO, "carol").parsed_data
    assert (answer.permission, answer.role_name, answer.user.login) == (permission, role, "carol")


def test_unknown_login_reads_a_public_repository(fake: FakeGitHub) -> None:
    gh = client(fake)
    answer = gh.rest.repos.get_collaborator_permission_level(OWNER, REPO, "mallory").parsed_data
    assert (answer.permission, answer.role_name) == ("read", "read")


def test_issue_and_its_404(fake: FakeGitHub) -> None:
    fake.add_issue(7, "Crash on start", "Steps: run it.", author="alice", labels=["bug"], comments=[("bob", "same")])
    gh = client(fake)
    issue = gh.rest.issues.get(OWNER, REPO, 7).parsed_data
    assert (issue.number, issue.title, issue.body, issue.user.login, issue.state) == (
        7,
        "Crash on start",
        "Steps: run it.",
        "alice",
        "open",
    )
    assert [label.name for label in issue.labels] == ["bug"]
    assert issue.comments == 1 and issue.pull_request is UNSET  # an issue, not a pull request
    assert issue.html_url == f"{fake.server_url}/{OWNER}/{REPO}/issues/7"
    error = failure(lambda: gh.rest.issues.get(OWNER, REPO, 8))
    assert error.response.status_code == 404
    assert error.response.json() == {
        "message": "Not Found",
        "documentation_url": "https://docs.github.com/rest",
        "status": "404",
    }
    assert fake.unhandled == []


def test_comments_paginate_past_100_in_order(fake: FakeGitHub) -> None:
    fake.add_issue(1, "Many", None, comments=[(f"user{i}", f"comment {i}") for i in range(205)])
    gh = client(fake)
    comments = gh.rest.paginate(gh.rest.issues.list_comments, owner=OWNER, repo=REPO, issue_number=1, per_page=100)
    assert [c.body for c in comments] == [f"comment {i}" for i in range(205)]
    pages = [r for r in fake.requests if r.path.endswith("/issues/1/comments")]
    assert [r.query.get("page", "1") for r in pages] == ["1", "2", "3"]  # followed the Link header's rel="next"
    by_default = gh.rest.paginate(gh.rest.issues.list_comments, owner=OWNER, repo=REPO, issue_number=1)
    assert [c.body for c in by_default] == [f"comment {i}" for i in range(205)]
    first = gh.rest.issues.list_comments(OWNER, REPO, 1)
    assert len(first.parsed_data) == 30  # GitHub's default page size
    assert 'rel="next"' in first.headers["link"] and "page=7" in first.headers["link"]  # last page of 30s
    assert first.parsed_data[0].user.login == "user0"
    last = gh.rest.issues.list_comments(OWNER, REPO, 1, per_page=100, page=3)
    assert [c.body for c in last.parsed_data] == [f"comment {i}" for i in range(200, 205)]
    assert 'rel="next"' not in last.headers["link"] and 'rel="prev"' in last.headers["link"]


def test_bot_comments_and_edits_only_the_body(fake: FakeGitHub) -> None:
    fake.add_issue(3, "T", "B")
    gh = client(fake)
    created = gh.rest.issues.create_comment(OWNER, REPO, 3, data={"body": "Working on it"})
    assert created.status_code == 201
    comment = created.parsed_data
    assert (comment.user.login, comment.user.type, comment.body) == (fake.bot_login, "Bot", "Working on it")
    edited = gh.rest.issues.update_comment(OWNER, REPO, comment.id, data={"body": "Done"}).parsed_data
    assert (edited.id, edited.body, edited.user.login) == (comment.id, "Done", fake.bot_login)
    assert fake.comments(3) == [FakeComment(comment.id, fake.bot_login, "Done", [])]
    assert (
        failure(lambda: gh.rest.issues.update_comment(OWNER, REPO, 999_999, data={"body": "x"})).response.status_code
        == 404
    )


def test_reactions_are_recorded_and_validated(fake: FakeGitHub) -> None:
    fake.add_issue(4, "T", "B")
    comment_id = fake.add_comment(4, "bob", "/codemonkeys")
    gh = client(fake)
    on_issue = gh.rest.reactions.create_for_issue(OWNER, REPO, 4, data={"content": "eyes"})
    assert (on_issue.status_code, on_issue.parsed_data.content, on_issue.parsed_data.user.login) == (
        201,
        "eyes",
        fake.bot_login,
    )
    on_comment = gh.rest.reactions.create_for_issue_comment(OWNER, REPO, comment_id, data={"content": "rocket"})
    assert on_comment.status_code == 201 and on_comment.parsed_data.content == "rocket"
    again = gh.rest.reactions.create_for_issue_comment(OWNER, REPO, comment_id, data={"content": "rocket"})
    assert again.status_code == 200  # GitHub answers an existing reaction with 200 and does not add it twice
    assert fake.issue_reactions(4) == ["eyes"]
    assert fake.comments(4)[0].reactions == ["rocket"]
    assert gh.rest.issues.get(OWNER, REPO, 4).parsed_data.reactions.eyes == 1
    # githubkit refuses an invalid content before sending, so send it raw.
    bad = httpx.post(
        f"{fake.url}/repos/{OWNER}/{REPO}/issues/4/reactions",
        json={"content": "thumbs"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert bad.status_code == 422 and bad.json()["message"] == "Validation Failed"
    assert fake.issue_reactions(4) == ["eyes"]


def test_pull_request_create_list_update(fake: FakeGitHub) -> None:
    gh = client(fake)
    data = {"title": "Fix #1", "head": "codemonkeys/issue-1", "base": "main", "body": "Closes #1", "draft": True}
    created = gh.rest.pulls.create(OWNER, REPO, data=data)
    assert created.status_code == 201
    pull = created.parsed_data
    assert (pull.title, pull.body, pull.draft, pull.head.ref, pull.base.ref) == (
        "Fix #1",
        "Closes #1",
        True,
        "codemonkeys/issue-1",
        "main",
    )
    assert pull.html_url == f"{fake.server_url}/{OWNER}/{REPO}/pull/{pull.number}"
    assert [(p.number, p.head, p.base, p.draft) for p in fake.pulls] == [
        (pull.number, "codemonkeys/issue-1", "main", True)
    ]
    other = gh.rest.pulls.create(OWNER, REPO, data={**data, "head": "other"}).parsed_data
    mine = gh.rest.pulls.list(OWNER, REPO, head=f"{OWNER}:codemonkeys/issue-1", state="open").parsed_data
    assert [p.number for p in mine] == [pull.number]
    # GitHub ignores a head without its owner prefix and lists every pull; the fake does too.
    unfiltered = gh.rest.pulls.list(OWNER, REPO, head="codemonkeys/issue-1").parsed_data
    assert [p.number for p in unfiltered] == [pull.number, other.number]
    assert gh.rest.pulls.list(OWNER, REPO, head=f"{OWNER}:nope").parsed_data == []
    updated = gh.rest.pulls.update(OWNER, REPO, pull.number, data={"body": "Closes #1\n\nmore"}).parsed_data
    assert (updated.title, updated.body) == ("Fix #1", "Closes #1\n\nmore")
    assert fake.pulls[0].body == "Closes #1\n\nmore"
    as_issue = gh.rest.issues.get(OWNER, REPO, pull.number).parsed_data  # a pull request is also an issue
    assert (as_issue.title, as_issue.user.login) == ("Fix #1", fake.bot_login)
    assert as_issue.pull_request and as_issue.pull_request.html_url == pull.html_url
    gh.rest.issues.create_comment(OWNER, REPO, pull.number, data={"body": "Tests pass."})
    assert [c.body for c in fake.comments(pull.number)] == ["Tests pass."]
    duplicate = failure(lambda: gh.rest.pulls.create(OWNER, REPO, data=data))
    assert duplicate.response.status_code == 422
    assert "already exists" in duplicate.response.json()["errors"][0]["message"]


def test_pull_requests_forbidden_to_actions() -> None:
    with FakeGitHub(forbid_pull_requests=True) as fake:
        gh = client(fake)
        error = failure(lambda: gh.rest.pulls.create(OWNER, REPO, data={"title": "t", "head": "b", "base": "main"}))
    assert error.response.status_code == 403
    assert error.response.json() == {
        "message": "GitHub Actions is not permitted to create or approve pull requests.",
        "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
        "status": "403",
    }
    assert fake.pulls == []


def test_draft_unsupported_rejects_only_drafts() -> None:
    with FakeGitHub(draft_unsupported=True) as fake:
        gh = client(fake)
        data = {"title": "t", "head": "b", "base": "main", "draft": True}
        error = failure(lambda: gh.rest.pulls.create(OWNER, REPO, data=data))
        assert error.response.status_code == 422
        body = error.response.json()
        assert body["message"] == "Validation Failed"
        assert body["errors"] == [
            {
                "resource": "PullRequest",
                "code": "custom",
                "message": "Draft pull requests are not supported in this repository.",
            }
        ]
        assert gh.rest.pulls.create(OWNER, REPO, data={**data, "draft": False}).parsed_data.draft is False


def test_pull_request_branches_are_checked_in_origin(origin: Path) -> None:
    with FakeGitHub(origin=origin) as fake:
        gh = client(fake)

        def create(head: str, base: str = "main") -> RequestFailed:
            return failure(lambda: gh.rest.pulls.create(OWNER, REPO, data={"title": "t", "head": head, "base": base}))

        missing_head = create("not-pushed")
        assert missing_head.response.status_code == 422
        assert missing_head.response.json()["errors"] == [
            {"resource": "PullRequest", "field": "head", "code": "invalid"}
        ]
        assert create("fix", base="develop").response.json()["errors"][0]["field"] == "base"
        assert create("main").response.status_code == 422  # base == head: no commits between them
        pull = gh.rest.pulls.create(
            OWNER, REPO, data={"title": "t", "head": f"{OWNER}:fix", "base": "main"}
        ).parsed_data
        assert pull.head.ref == "fix" and pull.head.sha == git("--git-dir", str(origin), "rev-parse", "refs/heads/fix")
        assert (pull.commits, pull.additions, pull.deletions, pull.changed_files) == (1, 1, 0, 1)


def test_bad_or_missing_token_is_401(fake: FakeGitHub) -> None:
    fake.add_issue(1, "T", "B")
    wrong = client(fake, "ghs_wrong")
    error = failure(lambda: wrong.rest.issues.get(OWNER, REPO, 1))
    assert error.response.status_code == 401
    assert error.response.json() == {
        "message": "Bad credentials",
        "documentation_url": "https://docs.github.com/rest",
        "status": "401",
    }
    assert httpx.get(f"{fake.url}/repos/{OWNER}/{REPO}/issues/1").status_code == 401
    bearer = httpx.get(f"{fake.url}/repos/{OWNER}/{REPO}/issues/1", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bearer.status_code == 200 and bearer.json()["number"] == 1


def test_unknown_routes_are_404_and_recorded(fake: FakeGitHub) -> None:
    gh = client(fake)
    assert failure(lambda: gh.rest.actions.list_workflow_runs_for_repo(OWNER, REPO)).response.status_code == 404
    assert failure(lambda: gh.rest.repos.get("someone", "else")).response.status_code == 404
    assert fake.unhandled == [f"GET /repos/{OWNER}/{REPO}/actions/runs", "GET /repos/someone/else"]
    assert [r.method for r in fake.requests] == ["GET", "GET"]
    assert fake.requests[0].headers["authorization"] == f"token {TOKEN}"


def test_concurrent_comments_get_distinct_ids(fake: FakeGitHub) -> None:
    fake.add_issue(2, "T", "B")
    gh = client(fake)
    with ThreadPoolExecutor(8) as pool:
        ids = list(
            pool.map(
                lambda i: gh.rest.issues.create_comment(OWNER, REPO, 2, data={"body": f"c{i}"}).parsed_data.id,
                range(24),
            )
        )
    assert len(set(ids)) == 24
    assert sorted(c.body for c in fake.comments(2)) == sorted(f"c{i}" for i in range(24))


def test_label_event_matches_the_fake(fake: FakeGitHub) -> None:
    fake.add_issue(5, "Add a flag", "Please add --verbose.", author="alice")
    payload = fake.event("label", number=5, actor="bob")
    event = parse_obj("issues", json.loads(json.dumps(payload)))  # what githubkit makes of GITHUB_EVENT_PATH
    assert event.action == "labeled" and event.label is not None and event.label.name == "codemonkeys"
    assert (event.issue.number, event.issue.title, event.issue.body, event.issue.user.login) == (
        5,
        "Add a flag",
        "Please add --verbose.",
        "alice",
    )
    assert [label.name for label in event.issue.labels or []] == ["codemonkeys"]
    assert (event.repository.name, event.repository.full_name, event.repository.owner.login) == (
        REPO,
        f"{OWNER}/{REPO}",
        OWNER,
    )
    assert (event.sender.login, event.sender.type) == ("bob", "User")
    assert "pull_request" not in payload["issue"]
    gh = client(fake)
    labels = gh.rest.issues.get(OWNER, REPO, 5).parsed_data.labels
    assert [label.name for label in labels] == ["codemonkeys"]


def test_comment_event_registers_the_comment(fake: FakeGitHub) -> None:
    fake.add_issue(6, "Title", "Body")
    payload = fake.event("comment", number=6, actor="bob", comment="/codemonkeys please")
    event = parse_obj("issue_comment", payload)
    assert event.action == "created" and event.comment.body == "/codemonkeys please"
    assert (event.comment.user.login, event.sender.login, event.issue.number) == ("bob", "bob", 6)
    assert [c.id for c in fake.comments(6)] == [event.comment.id]
    gh = client(fake)
    gh.rest.reactions.create_for_issue_comment(OWNER, REPO, event.comment.id, data={"content": "eyes"})
    assert fake.comments(6)[0].reactions == ["eyes"]
    assert fake.unhandled == []
