"""A fake GitHub REST API for tests, answering with GitHub's documented response shapes.

Every body starts from the example GitHub's OpenAPI description gives for that endpoint's response (see
tests/octokit.py) and only the fields that carry this fake's state are overwritten (ids, numbers, logins, bodies,
urls, timestamps). A client that parses with models generated from the same description (githubkit) thus fails on
this fake exactly where it would fail on GitHub, instead of passing against hand-made JSON.
"""

from __future__ import annotations

import base64
import json
import math
import re
import subprocess
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from tests.octokit import reaction_rollup, response_example, webhook_example

REACTIONS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")
ROLES = ("admin", "maintain", "write", "triage", "read", "none")
# "Get repository permissions for a user" answers the legacy `permission` (admin/write/read/none); the role is in
# `role_name`. maintain folds into write and triage into read.
PERMISSION_OF_ROLE = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read"}
DOCS = "https://docs.github.com/rest"
CREATE_PULL_DOCS = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"
# The real id of github-actions[bot], the author of what a workflow's GITHUB_TOKEN creates.
ACTIONS_BOT_ID = 41898282


@dataclass
class FakeComment:
    """A comment on an issue, as the fake stores it; `reactions` are the contents reacted with, in order."""

    id: int
    author: str
    body: str
    reactions: list[str] = field(default_factory=list)


@dataclass
class FakePull:
    """A pull request opened through the API; `head` and `base` are branch names of the repository."""

    number: int
    title: str
    head: str
    base: str
    body: str | None
    draft: bool
    html_url: str


@dataclass
class FakeRequest:
    """One request as received; `query` keeps the last value of each parameter, `headers` have lowercase names."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: str


@dataclass
class _Issue:
    number: int
    title: str
    body: str | None
    author: str
    labels: list[str]
    created_at: str
    reactions: list[str] = field(default_factory=list)


@dataclass
class _Response:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class _HttpError(Exception):
    """Raised by a route to answer with GitHub's error shape."""

    def __init__(self, status: int, message: str, documentation_url: str = DOCS, errors: list | None = None) -> None:
        super().__init__(message)
        body: dict[str, Any] = {"message": message, "documentation_url": documentation_url, "status": str(status)}
        if errors is not None:
            body["errors"] = errors
        self.response = _Response(status, body)


def _not_found() -> _HttpError:
    return _HttpError(404, "Not Found")


def _validation_failed(errors: list[dict[str, Any]], documentation_url: str = DOCS) -> _HttpError:
    return _HttpError(422, "Validation Failed", documentation_url, errors)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stable_id(text: str) -> int:
    """A positive id that is the same for the same name in every run, so tests can compare against it."""
    return zlib.crc32(text.encode()) % 90_000_000 + 10_000_000


def _substitute(value: Any, pairs: Sequence[tuple[str, str]]) -> Any:
    """Replace substrings in every string of a JSON value (the examples' hosts, owner/repo and numbers)."""
    if isinstance(value, str):
        for old, new in pairs:
            value = value.replace(old, new)
        return value
    if isinstance(value, list):
        return [_substitute(item, pairs) for item in value]
    if isinstance(value, dict):
        return {key: _substitute(item, pairs) for key, item in value.items()}
    return value


class _Server(ThreadingHTTPServer):
    request_queue_size = 64
    daemon_threads = True


class FakeGitHub:
    """GitHub's REST API for one repository, on 127.0.0.1, for the bot's tests.

    Use it as a context manager; `url` is what GITHUB_API_URL is set to and `server_url` what GITHUB_SERVER_URL is.
    `permissions` maps a login to its role on the repository (admin, maintain, write, triage, read, none); a login
    not in it is answered as GitHub does for anyone on a public repository: permission and role "read". With `origin`
    (a bare git repository standing for the GitHub remote) creating a pull request checks that head and base are
    branches there, as GitHub does. Requests no route knows answer 404 and are listed in `unhandled`.

    The port is bound when the object is made, so `url` is known before the server runs. GitHub behaviours kept on
    purpose: a pull request is also an issue (the issues API reads and comments on it); listing pulls ignores a
    `head` without its `owner:` prefix; reacting again with the same content answers 200 and adds nothing; an existing
    pull for the same head and base is a 422. Closing, merging, labels and other endpoints are not modelled.
    """

    bot_login: str = "github-actions[bot]"

    def __init__(
        self,
        owner: str = "octo-org",
        repo: str = "hello-world",
        *,
        default_branch: str = "main",
        token: str = "ghs_fake_token_0123456789",
        permissions: dict[str, str] | None = None,
        forbid_pull_requests: bool = False,
        draft_unsupported: bool = False,
        origin: Path | None = None,
    ) -> None:
        for login, role in (permissions or {}).items():
            if role not in ROLES:
                raise ValueError(f"permission of {login!r} must be one of {ROLES}, not {role!r}")
        self.owner = owner
        self.repo = repo
        self.default_branch = default_branch
        self.token = token
        self.permissions = dict(permissions or {})
        self.forbid_pull_requests = forbid_pull_requests
        self.draft_unsupported = draft_unsupported
        self.origin = origin
        self.pulls: list[FakePull] = []
        self.requests: list[FakeRequest] = []
        self.unhandled: list[str] = []
        self._lock = threading.RLock()
        self._issues: dict[int, _Issue] = {}
        self._comments: dict[int, list[FakeComment]] = {}
        self._comment_issue: dict[int, int] = {}
        self._comment_times: dict[int, tuple[str, str]] = {}
        self._pull_times: dict[int, str] = {}
        self._next_comment_id = 10_001
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread: threading.Thread | None = None
        port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        self.server_url = f"{self.url}/web"
        self._routes = self._route_table()

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def __enter__(self) -> FakeGitHub:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-github", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving and free the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()

    # -- state for tests ---------------------------------------------------------------------------------------

    def add_issue(
        self,
        number: int,
        title: str,
        body: str | None,
        author: str = "alice",
        labels: Sequence[str] = (),
        comments: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Open issue `number`; `comments` are (author, body) pairs added in order."""
        with self._lock:
            if number in self._issues:
                raise ValueError(f"#{number} already exists")
            self._issues[number] = _Issue(number, title, body, author, list(labels), _now())
            self._comments[number] = []
            for comment_author, comment_body in comments:
                self.add_comment(number, comment_author, comment_body)

    def add_comment(self, number: int, author: str, body: str) -> int:
        """Comment on issue `number` as `author`; returns the comment's id."""
        with self._lock:
            if number not in self._issues:
                raise KeyError(f"no issue #{number}")
            comment_id = self._next_comment_id
            self._next_comment_id += 1
            self._comments[number].append(FakeComment(comment_id, author, body))
            self._comment_issue[comment_id] = number
            now = _now()
            self._comment_times[comment_id] = (now, now)
            return comment_id

    def comments(self, number: int) -> list[FakeComment]:
        """A snapshot of the comments on issue `number`, oldest first."""
        with self._lock:
            return [replace(comment, reactions=list(comment.reactions)) for comment in self._comments[number]]

    def issue_reactions(self, number: int) -> list[str]:
        """The contents reacted with on issue `number` itself, in order."""
        with self._lock:
            return list(self._issues[number].reactions)

    def event(
        self,
        kind: str,
        *,
        number: int,
        actor: str,
        label: str = "codemonkeys",
        comment: str = "/codemonkeys",
        issue_author: str = "alice",
    ) -> dict[str, Any]:
        """The webhook payload GitHub delivers for `kind` "label" (issues/labeled) or "comment" (issue_comment/created).

        The payload agrees with this fake's state, as the workflow's event file agrees with GitHub: the issue is the
        one added with add_issue (added here, by `issue_author`, if it is missing), the label is put on it, and the
        comment is posted on it, so that reacting to the comment's id works. `sender` is `actor`.
        """
        if kind not in ("label", "comment"):
            raise ValueError(f"kind must be 'label' or 'comment', not {kind!r}")
        with self._lock:
            if number not in self._issues:
                self.add_issue(number, f"Issue {number}", "", author=issue_author)
            issue = self._issues[number]
            if kind == "label":
                payload = webhook_example("issues", "labeled")
                if label not in issue.labels:
                    issue.labels.append(label)
                payload["label"] = self._label_json(label, webhook=True)
            else:
                payload = webhook_example("issue_comment", "created")
                comment_id = self.add_comment(number, actor, comment)
                payload["comment"] = self._comment_json(comment_id, template=payload["comment"])
            payload["issue"] = self._issue_json(issue, template=payload["issue"], webhook=True)
            payload["repository"] = self._repo_json(payload["repository"])
            payload["sender"] = self._user(actor)
            return payload

    # -- JSON built from the description's examples ------------------------------------------------------------

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.repo}"

    def _rebase(self, value: Any, *extra: tuple[str, str]) -> Any:
        """Point an example's urls and names at this fake: api.github.com → url, github.com → server_url."""
        pairs = [
            *extra,
            ("https://api.github.com", self.url),
            ("https://github.com", self.server_url),
            ("octocat/Hello-World", self.full_name),
            ("Codertocat/Hello-World", self.full_name),
        ]
        return _substitute(value, pairs)

    def _user(self, login: str) -> dict[str, Any]:
        """A simple-user object (the description's example) for `login`; logins ending in [bot] are Bots."""
        template = response_example("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission", 200)["user"]
        old = template["login"]
        bot = login.endswith("[bot]")
        quoted = quote(login)
        user = _substitute(
            template, [(f"https://api.github.com/users/{old}", f"{self.url}/users/{quoted}"), (f"/{old}", f"/{quoted}")]
        )
        user = self._rebase(user)
        user_id = ACTIONS_BOT_ID if login == self.bot_login else _stable_id(login)
        kind = "Bot" if bot else "User"
        user.update(
            login=login,
            id=user_id,
            node_id=base64.b64encode(f"{'03' if bot else '04'}:{kind}{user_id}".encode()).decode(),
            type=kind,
            site_admin=False,
        )
        if bot:
            user["html_url"] = f"{self.server_url}/apps/{quote(login.removesuffix('[bot]'))}"
        return user

    def _association(self, login: str) -> str:
        if login.lower() == self.owner.lower():
            return "OWNER"
        if self.permissions.get(login, "none") != "none":
            return "COLLABORATOR"
        return "NONE"

    def _repo_json(self, template: dict[str, Any]) -> dict[str, Any]:
        """A repository object of any of GitHub's repository shapes, filled with this repository's identity."""
        repo = self._rebase(template)
        repo.update(
            id=_stable_id(self.full_name),
            node_id=base64.b64encode(f"010:Repository{_stable_id(self.full_name)}".encode()).decode(),
            name=self.repo,
            full_name=self.full_name,
            owner=self._user(self.owner),
            private=False,
            fork=False,
            html_url=f"{self.server_url}/{self.full_name}",
            url=f"{self.url}/repos/{self.full_name}",
            clone_url=f"{self.server_url}/{self.full_name}.git",
            default_branch=self.default_branch,
        )
        # The full-repository example omits `language`, which the schema requires (nullable) and GitHub always sends.
        repo.setdefault("language", None)
        for key, value in (("visibility", "public"), ("mirror_url", None), ("topics", [])):
            if key in repo:
                repo[key] = value
        for key in ("parent", "source", "template_repository", "organization"):
            repo.pop(key, None)
        return repo

    def _label_json(self, name: str, *, webhook: bool = False) -> dict[str, Any]:
        label = self._rebase(response_example("GET", "/repos/{owner}/{repo}/labels/{name}", 200))
        label.update(
            id=_stable_id(f"label:{name}"),
            name=name,
            url=f"{self.url}/repos/{self.full_name}/labels/{quote(name)}",
            description=None,
            default=False,
        )
        if webhook:
            # GitHub's current description (the one githubkit's models come from) has label archiving, which
            # @octokit/openapi-webhooks 12.1.0 predates; the fields are required there, null when not archived.
            label.update(archived_at=None, archived_by=None)
        return label

    def _rollup(self, template: dict[str, Any] | None, url: str, contents: Sequence[str]) -> dict[str, Any]:
        rollup = template if isinstance(template, dict) else reaction_rollup()
        rollup = {key: 0 if isinstance(value, int) else value for key, value in rollup.items()}
        rollup["url"] = url
        for content in contents:
            rollup[content] = rollup.get(content, 0) + 1
        rollup["total_count"] = len(contents)
        return rollup

    def _issue_json(self, issue: _Issue, *, template: dict[str, Any] | None = None, webhook: bool = False) -> dict:
        if template is None:
            template = response_example("GET", "/repos/{owner}/{repo}/issues/{issue_number}", 200)
        n = issue.number
        value = self._rebase(
            template, ("/issues/1347", f"/issues/{n}"), ("/pull/1347", f"/pull/{n}"), ("/pulls/1347", f"/pulls/{n}")
        )
        api = f"{self.url}/repos/{self.full_name}/issues/{n}"
        pull = next((p for p in self.pulls if p.number == n), None)
        if pull is None:
            value.pop("pull_request", None)  # the example issue is a pull request's; a plain issue has no such key
        else:
            issue = replace(issue, title=pull.title, body=pull.body)
        comments = self._comments.get(n, [])
        value.update(
            id=1_000_000 + n,
            node_id=base64.b64encode(f"05:Issue{1_000_000 + n}".encode()).decode(),
            number=n,
            title=issue.title,
            body=issue.body,
            user=self._user(issue.author),
            labels=[self._label_json(name, webhook=webhook) for name in issue.labels],
            state="open",
            locked=False,
            active_lock_reason=None,
            assignee=None,
            assignees=[],
            milestone=None,
            comments=len(comments),
            closed_at=None,
            created_at=issue.created_at,
            updated_at=issue.created_at,
            author_association=self._association(issue.author),
            url=api,
            html_url=f"{self.server_url}/{self.full_name}/issues/{n}",
            reactions=self._rollup(value.get("reactions"), f"{api}/reactions", issue.reactions),
        )
        for key in ("closed_by", "state_reason", "pinned_comment"):
            if key in value:
                value[key] = None
        return value

    def _comment_json(self, comment_id: int, *, template: dict[str, Any] | None = None) -> dict[str, Any]:
        number = self._comment_issue[comment_id]
        comment = next(item for item in self._comments[number] if item.id == comment_id)
        if template is None:
            template = response_example("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", 201)
        value = self._rebase(template)
        api = f"{self.url}/repos/{self.full_name}/issues/comments/{comment_id}"
        created, updated = self._comment_times[comment_id]
        value.update(
            id=comment_id,
            node_id=base64.b64encode(f"012:IssueComment{comment_id}".encode()).decode(),
            url=api,
            html_url=f"{self.server_url}/{self.full_name}/issues/{number}#issuecomment-{comment_id}",
            issue_url=f"{self.url}/repos/{self.full_name}/issues/{number}",
            body=comment.body,
            user=self._user(comment.author),
            created_at=created,
            updated_at=updated,
            author_association=self._association(comment.author),
            reactions=self._rollup(value.get("reactions"), f"{api}/reactions", comment.reactions),
        )
        for key in ("pin", "minimized", "performed_via_github_app"):
            if key in value:
                value[key] = None
        return value

    def _branch_sha(self, branch: str) -> str | None:
        if self.origin is None:
            return None
        done = subprocess.run(
            [
                "git",
                "--git-dir",
                str(self.origin),
                "rev-parse",
                "--verify",
                "--quiet",
                f"refs/heads/{branch}^{{commit}}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip() if done.returncode == 0 else None

    def _git(self, *args: str) -> str:
        assert self.origin is not None
        return subprocess.run(
            ["git", "--git-dir", str(self.origin), *args], capture_output=True, text=True, check=False
        ).stdout

    def _pull_json(self, pull: FakePull, *, simple: bool) -> dict[str, Any]:
        if simple:
            template = response_example("GET", "/repos/{owner}/{repo}/pulls", 200)[0]
        else:
            template = response_example("POST", "/repos/{owner}/{repo}/pulls", 201)
        n = pull.number
        value = self._rebase(
            template,
            ("/pulls/1347", f"/pulls/{n}"),
            ("/pull/1347", f"/pull/{n}"),
            ("/issues/1347", f"/issues/{n}"),
        )
        head_sha = self._branch_sha(pull.head) or template["head"]["sha"]
        base_sha = self._branch_sha(pull.base) or template["base"]["sha"]
        value["statuses_url"] = f"{self.url}/repos/{self.full_name}/statuses/{head_sha}"
        value["_links"]["statuses"]["href"] = value["statuses_url"]
        for side, ref, sha in (("head", pull.head, head_sha), ("base", pull.base, base_sha)):
            value[side].update(
                label=f"{self.owner}:{ref}",
                ref=ref,
                sha=sha,
                user=self._user(self.owner),
                repo=self._repo_json(value[side]["repo"]),
            )
        created = self._pull_times[n]
        value.update(
            id=2_000_000 + n,
            node_id=base64.b64encode(f"011:PullRequest{2_000_000 + n}".encode()).decode(),
            number=n,
            state="open",
            locked=False,
            title=pull.title,
            body=pull.body,
            draft=pull.draft,
            user=self._user(self.bot_login),
            labels=[],
            milestone=None,
            active_lock_reason=None,
            created_at=created,
            updated_at=created,
            closed_at=None,
            merged_at=None,
            merge_commit_sha=None,
            assignee=None,
            assignees=[],
            requested_reviewers=[],
            requested_teams=[],
            author_association=self._association(self.bot_login),
            auto_merge=None,
            html_url=pull.html_url,
        )
        if not simple:
            commits, additions, deletions, files = 1, 0, 0, 0
            if self.origin is not None:
                commits = int(self._git("rev-list", "--count", f"{base_sha}..{head_sha}").strip() or 0)
                for line in self._git("diff", "--numstat", f"{base_sha}...{head_sha}").splitlines():
                    added, deleted, _ = line.split("\t", 2)
                    additions += int(added) if added.isdigit() else 0
                    deletions += int(deleted) if deleted.isdigit() else 0
                    files += 1
            value.update(
                merged=False,
                mergeable=None,
                rebaseable=None,
                mergeable_state="unknown",
                merged_by=None,
                comments=0,
                review_comments=0,
                maintainer_can_modify=False,
                commits=commits,
                additions=additions,
                deletions=deletions,
                changed_files=files,
            )
        return value

    # -- routes -------------------------------------------------------------------------------------------------

    def _route_table(self) -> list[tuple[str, re.Pattern[str], Callable[..., _Response]]]:
        repo = rf"/repos/{re.escape(self.owner)}/{re.escape(self.repo)}"
        table = [
            ("GET", "", self._get_repo),
            ("GET", r"/collaborators/(?P<user>[^/]+)/permission", self._get_permission),
            ("GET", r"/issues/(?P<number>\d+)", self._get_issue),
            ("GET", r"/issues/(?P<number>\d+)/comments", self._list_comments),
            ("POST", r"/issues/(?P<number>\d+)/comments", self._create_comment),
            ("PATCH", r"/issues/comments/(?P<comment_id>\d+)", self._update_comment),
            ("POST", r"/issues/(?P<number>\d+)/reactions", self._react_to_issue),
            ("POST", r"/issues/comments/(?P<comment_id>\d+)/reactions", self._react_to_comment),
            ("GET", r"/pulls", self._list_pulls),
            ("POST", r"/pulls", self._create_pull),
            ("PATCH", r"/pulls/(?P<number>\d+)", self._update_pull),
        ]
        return [(method, re.compile(f"{repo}{path}/?", re.IGNORECASE), handler) for method, path, handler in table]

    def _get_repo(self, request: FakeRequest) -> _Response:
        return _Response(200, self._repo_json(response_example("GET", "/repos/{owner}/{repo}", 200)))

    def _get_permission(self, request: FakeRequest, user: str) -> _Response:
        login = unquote(user)
        role = self.permissions.get(login, "read")
        value = self._rebase(response_example("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission", 200))
        # The answer's user is a collaborator: the simple user plus that role's permissions (collaborators' example).
        collaborator = response_example("GET", "/repos/{owner}/{repo}/collaborators", 200)[0]
        granted = ROLES[ROLES.index(role) :]
        permissions = {key: name in granted for key, name in (("admin", "admin"), ("maintain", "maintain"))}
        permissions |= {"push": "write" in granted, "triage": "triage" in granted, "pull": "read" in granted}
        user = {**self._user(login), "permissions": collaborator["permissions"] | permissions, "role_name": role}
        value.update(permission=PERMISSION_OF_ROLE.get(role, "none"), role_name=role, user=user)
        return _Response(200, value)

    def _issue(self, number: str) -> _Issue:
        issue = self._issues.get(int(number))
        if issue is None:
            raise _not_found()
        return issue

    def _get_issue(self, request: FakeRequest, number: str) -> _Response:
        return _Response(200, self._issue_json(self._issue(number)))

    def _page(self, request: FakeRequest, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
        """Cut one page as GitHub does (per_page 30 by default, at most 100) and give its Link header."""
        try:
            per_page = min(max(int(request.query.get("per_page", 30)), 1), 100)
            page = max(int(request.query.get("page", 1)), 1)
        except ValueError:
            per_page, page = 30, 1
        last = max(math.ceil(len(items) / per_page), 1)
        links = []

        def link(target: int, rel: str) -> str:
            query = {**request.query, "per_page": str(per_page), "page": str(target)}
            return f'<{self.url}{request.path}?{urlencode(query)}>; rel="{rel}"'

        if page > 1:
            links += [link(min(page - 1, last), "prev")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links += [link(1, "first")]
        headers = {"Link": ", ".join(links)} if links else {}
        return items[(page - 1) * per_page : page * per_page], headers

    def _list_comments(self, request: FakeRequest, number: str) -> _Response:
        issue = self._issue(number)
        template = response_example("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments", 200)[0]
        ids = [comment.id for comment in self._comments[issue.number]]
        page, headers = self._page(request, ids)
        return _Response(200, [self._comment_json(i, template=template) for i in page], headers)

    def _json_body(self, request: FakeRequest) -> dict[str, Any]:
        try:
            data = json.loads(request.body or "{}")
        except json.JSONDecodeError:
            raise _HttpError(400, "Problems parsing JSON") from None
        if not isinstance(data, dict):
            raise _HttpError(400, "Problems parsing JSON")
        return data

    def _create_comment(self, request: FakeRequest, number: str) -> _Response:
        issue = self._issue(number)
        body = self._json_body(request).get("body")
        if not isinstance(body, str) or not body:
            raise _validation_failed([{"resource": "IssueComment", "code": "missing_field", "field": "body"}])
        comment_id = self.add_comment(issue.number, self.bot_login, body)
        return _Response(201, self._comment_json(comment_id))

    def _update_comment(self, request: FakeRequest, comment_id: str) -> _Response:
        cid = int(comment_id)
        if cid not in self._comment_issue:
            raise _not_found()
        body = self._json_body(request).get("body")
        if not isinstance(body, str) or not body:
            raise _validation_failed([{"resource": "IssueComment", "code": "missing_field", "field": "body"}])
        comment = next(item for item in self._comments[self._comment_issue[cid]] if item.id == cid)
        comment.body = body
        self._comment_times[cid] = (self._comment_times[cid][0], _now())
        template = response_example("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}", 200)
        return _Response(200, self._comment_json(cid, template=template))

    def _react(self, request: FakeRequest, contents: list[str], template_path: str) -> _Response:
        """Record the bot's reaction; like GitHub, reacting again with the same content answers 200, not a copy."""
        content = self._json_body(request).get("content")
        if content not in REACTIONS:
            raise _validation_failed([{"resource": "Reaction", "code": "invalid", "field": "content"}])
        status = 200 if content in contents else 201
        if status == 201:
            contents.append(content)
        value = self._rebase(response_example("POST", template_path, 201))
        value.update(id=_stable_id(f"{template_path}:{len(contents)}:{content}"), content=content, created_at=_now())
        value["user"] = self._user(self.bot_login)
        return _Response(status, value)

    def _react_to_issue(self, request: FakeRequest, number: str) -> _Response:
        issue = self._issue(number)
        return self._react(request, issue.reactions, "/repos/{owner}/{repo}/issues/{issue_number}/reactions")

    def _react_to_comment(self, request: FakeRequest, comment_id: str) -> _Response:
        cid = int(comment_id)
        if cid not in self._comment_issue:
            raise _not_found()
        comment = next(item for item in self._comments[self._comment_issue[cid]] if item.id == cid)
        return self._react(request, comment.reactions, "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions")

    def _list_pulls(self, request: FakeRequest) -> _Response:
        """Open pulls only (this fake never closes one); `head` filters only as owner:branch, as on GitHub.

        GitHub silently ignores a `head` without the owner prefix and lists every pull, a known trap; so does this.
        """
        state = request.query.get("state", "open")
        pulls = list(self.pulls) if state in ("open", "all") else []
        head = request.query.get("head")
        if head and ":" in head:
            owner, branch = head.split(":", 1)
            pulls = [p for p in pulls if owner.lower() == self.owner.lower() and p.head == branch]
        if base := request.query.get("base"):
            pulls = [p for p in pulls if p.base == base]
        page, headers = self._page(request, pulls)
        return _Response(200, [self._pull_json(p, simple=True) for p in page], headers)

    def _create_pull(self, request: FakeRequest) -> _Response:
        if self.forbid_pull_requests:
            raise _HttpError(
                403, "GitHub Actions is not permitted to create or approve pull requests.", CREATE_PULL_DOCS
            )
        data = self._json_body(request)
        missing = [name for name in ("head", "base") if not isinstance(data.get(name), str) or not data.get(name)]
        if not data.get("title") and not data.get("issue"):
            missing.insert(0, "title")
        if missing:
            errors = [{"resource": "PullRequest", "code": "missing_field", "field": name} for name in missing]
            raise _validation_failed(errors, CREATE_PULL_DOCS)
        head, base, draft = data["head"], data["base"], bool(data.get("draft", False))
        if ":" in head:
            head_owner, head = head.split(":", 1)
            if head_owner.lower() != self.owner.lower():
                raise _validation_failed(
                    [{"resource": "PullRequest", "field": "head", "code": "invalid"}], CREATE_PULL_DOCS
                )
        if draft and self.draft_unsupported:
            message = "Draft pull requests are not supported in this repository."
            raise _validation_failed(
                [{"resource": "PullRequest", "code": "custom", "message": message}], CREATE_PULL_DOCS
            )
        if self.origin is not None:
            for name, branch in (("base", base), ("head", head)):
                if self._branch_sha(branch) is None:
                    error = {"resource": "PullRequest", "field": name, "code": "invalid"}
                    raise _validation_failed([error], CREATE_PULL_DOCS)
        if any(p.head == head and p.base == base for p in self.pulls):
            message = f"A pull request already exists for {self.owner}:{head}."
            raise _validation_failed(
                [{"resource": "PullRequest", "code": "custom", "message": message}], CREATE_PULL_DOCS
            )
        no_commits = base == head
        if not no_commits and self.origin is not None:
            ancestor = subprocess.run(
                [
                    "git",
                    "--git-dir",
                    str(self.origin),
                    "merge-base",
                    "--is-ancestor",
                    f"refs/heads/{head}",
                    f"refs/heads/{base}",
                ],
                capture_output=True,
                check=False,
            )
            no_commits = ancestor.returncode == 0
        if no_commits:
            message = f"No commits between {base} and {head}"
            raise _validation_failed(
                [{"resource": "PullRequest", "code": "custom", "message": message}], CREATE_PULL_DOCS
            )
        number = max([0, *self._issues, *(p.number for p in self.pulls)]) + 1
        pull = FakePull(
            number=number,
            title=data.get("title") or f"Issue {data.get('issue')}",
            head=head,
            base=base,
            body=data.get("body"),
            draft=draft,
            html_url=f"{self.server_url}/{self.full_name}/pull/{number}",
        )
        self.pulls.append(pull)
        self._pull_times[number] = _now()
        # A pull request is also an issue: the issues API reads it and comments and reacts on it.
        self._issues[number] = _Issue(number, pull.title, pull.body, self.bot_login, [], self._pull_times[number])
        self._comments[number] = []
        return _Response(201, self._pull_json(pull, simple=False))

    def _update_pull(self, request: FakeRequest, number: str) -> _Response:
        pull = next((p for p in self.pulls if p.number == int(number)), None)
        if pull is None:
            raise _not_found()
        data = self._json_body(request)
        if isinstance(data.get("title"), str):
            pull.title = data["title"]
        if "body" in data:
            pull.body = data["body"]
        if isinstance(data.get("base"), str):
            pull.base = data["base"]
        return _Response(200, self._pull_json(pull, simple=False))

    # -- HTTP ---------------------------------------------------------------------------------------------------

    def _authorized(self, request: FakeRequest) -> bool:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() in ("bearer", "token") and credential.strip() == self.token

    def _dispatch(self, request: FakeRequest) -> _Response:
        with self._lock:
            self.requests.append(request)
            if not self._authorized(request):
                return _HttpError(401, "Bad credentials").response
            for method, pattern, handler in self._routes:
                match = pattern.fullmatch(request.path)
                if match and method == request.method:
                    try:
                        return handler(request, **match.groupdict())
                    except _HttpError as error:
                        return error.response
            self.unhandled.append(f"{request.method} {request.path}")
            return _not_found().response

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
                parts = urlsplit(self.path)
                request = FakeRequest(
                    method=self.command,
                    path=parts.path,
                    query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=body,
                )
                response = fake._dispatch(request)
                payload = json.dumps(response.body).encode()
                self.send_response(response.status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("X-GitHub-Media-Type", "github.v3; format=json")
                self.send_header("X-RateLimit-Limit", "5000")
                self.send_header("X-RateLimit-Remaining", "4999")
                self.send_header("X-RateLimit-Reset", str(int(datetime.now(UTC).timestamp()) + 3600))
                self.send_header("X-RateLimit-Resource", "core")
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
