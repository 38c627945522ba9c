"""The few GitHub operations the bot and `solve --issue URL` need, over githubkit (typed, and it validates
every response against GitHub's published description). Errors become `GitHubError` with GitHub's message."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from urllib.parse import urlparse

from githubkit import GitHub
from githubkit.exception import GitHubException, RequestFailed
from pydantic import BaseModel

DEFAULT_API = "https://api.github.com"
DEFAULT_WEB = "https://github.com"
_ISSUE_URL = re.compile(r"^https?://([^/]+)/([\w.-]+)/([\w.-]+)/issues/(\d+)/?(?:#.*)?$")


class GitHubError(Exception):
    """A request GitHub refused or that never reached it; `status` is None for the latter."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class IssueRef(BaseModel):
    owner: str
    repo: str
    number: int

    @property
    def slug(self) -> str:
        return f"{self.owner}/{self.repo}"


class Comment(BaseModel):
    id: int
    author: str
    author_is_bot: bool = False
    body: str
    created_at: datetime | None = None
    html_url: str = ""


class IssueThread(BaseModel):
    """An issue as the pipeline reads it: title, body and the comments in order."""

    ref: IssueRef
    title: str
    body: str
    author: str
    html_url: str = ""
    comments: list[Comment] = []
    is_pull_request: bool = False


class PullRequest(BaseModel):
    number: int
    html_url: str
    draft: bool = False


def parse_issue_url(url: str) -> tuple[IssueRef, str] | None:
    """`https://HOST/OWNER/REPO/issues/N` → the issue and the API base for HOST (github.com or an Enterprise
    Server); None when `url` is no issue URL. `GITHUB_API_URL` wins when it is set (Actions sets it)."""
    match = _ISSUE_URL.match(url.strip())
    if not match:
        return None
    host, owner, repo, number = match.groups()
    api = os.environ.get("GITHUB_API_URL") or (
        DEFAULT_API if host in ("github.com", "www.github.com") else f"{urlparse(url).scheme}://{host}/api/v3"
    )
    return IssueRef(owner=owner, repo=repo, number=int(number)), api


class GitHubClient:
    """One repository's issues, comments, reactions and pull requests."""

    def __init__(self, token: str | None, api_url: str | None = None) -> None:
        base = (api_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API).rstrip("/")
        self.api_url = base
        self._gh = GitHub(token or None, base_url=base + "/", http_cache=False, timeout=30.0)

    def thread(self, ref: IssueRef) -> IssueThread:
        with _errors(f"reading issue {ref.slug}#{ref.number}"):
            issue = self._gh.rest.issues.get(ref.owner, ref.repo, ref.number).parsed_data
            comments = self.comments(ref) if issue.comments else []
        return IssueThread(
            ref=ref,
            title=issue.title,
            body=issue.body or "",
            author=issue.user.login if issue.user else "ghost",
            html_url=issue.html_url,
            comments=comments,
            is_pull_request=bool(issue.pull_request),
        )

    def comments(self, ref: IssueRef) -> list[Comment]:
        with _errors(f"reading the comments of {ref.slug}#{ref.number}"):
            pages = self._gh.rest.paginate(
                self._gh.rest.issues.list_comments,
                owner=ref.owner,
                repo=ref.repo,
                issue_number=ref.number,
                per_page=100,
            )
            return [_comment(c) for c in pages]

    def permission(self, ref: IssueRef, login: str) -> str:
        """The user's role on the repository: admin, maintain, write, triage, read or none."""
        try:
            data = self._gh.rest.repos.get_collaborator_permission_level(ref.owner, ref.repo, login).parsed_data
        except RequestFailed as exc:
            if exc.response.status_code == 404:
                return "none"
            raise _github_error(exc, f"checking {login}'s permission") from None
        except GitHubException as exc:
            raise _github_error(exc, f"checking {login}'s permission") from None
        return data.role_name or data.permission

    def default_branch(self, ref: IssueRef) -> str:
        with _errors(f"reading {ref.slug}"):
            return self._gh.rest.repos.get(ref.owner, ref.repo).parsed_data.default_branch

    def comment(self, ref: IssueRef, body: str) -> Comment:
        with _errors(f"commenting on {ref.slug}#{ref.number}"):
            data = self._gh.rest.issues.create_comment(ref.owner, ref.repo, ref.number, data={"body": body})
            return _comment(data.parsed_data)

    def edit_comment(self, ref: IssueRef, comment_id: int, body: str) -> None:
        with _errors(f"editing comment {comment_id} on {ref.slug}"):
            self._gh.rest.issues.update_comment(ref.owner, ref.repo, comment_id, data={"body": body})

    def react(self, ref: IssueRef, content: str, comment_id: int | None = None) -> None:
        """A reaction on the comment, or on the issue itself when `comment_id` is None."""
        with _errors(f"reacting on {ref.slug}#{ref.number}"):
            if comment_id is None:
                self._gh.rest.reactions.create_for_issue(ref.owner, ref.repo, ref.number, data={"content": content})
            else:
                self._gh.rest.reactions.create_for_issue_comment(
                    ref.owner, ref.repo, comment_id, data={"content": content}
                )

    def open_pull(self, ref: IssueRef, head_owner: str, branch: str) -> PullRequest | None:
        with _errors(f"listing pull requests of {ref.slug}"):
            pulls = self._gh.rest.pulls.list(
                ref.owner, ref.repo, state="open", head=f"{head_owner}:{branch}"
            ).parsed_data
        return (
            PullRequest(number=pulls[0].number, html_url=pulls[0].html_url, draft=bool(pulls[0].draft))
            if pulls
            else None
        )

    def create_pull(self, ref: IssueRef, *, title: str, body: str, head: str, base: str, draft: bool) -> PullRequest:
        with _errors(f"opening a pull request on {ref.slug}"):
            data = self._gh.rest.pulls.create(
                ref.owner,
                ref.repo,
                data={"title": title, "body": body, "head": head, "base": base, "draft": draft},
            ).parsed_data
        return PullRequest(number=data.number, html_url=data.html_url, draft=bool(data.draft))

    def update_pull(self, ref: IssueRef, number: int, *, title: str, body: str) -> None:
        with _errors(f"updating pull request #{number} on {ref.slug}"):
            self._gh.rest.pulls.update(ref.owner, ref.repo, number, data={"title": title, "body": body})


def _comment(data: object) -> Comment:
    user = getattr(data, "user", None)
    return Comment(
        id=data.id,  # type: ignore[attr-defined]
        author=user.login if user else "ghost",
        author_is_bot=bool(user and user.type == "Bot"),
        body=getattr(data, "body", None) or "",
        created_at=getattr(data, "created_at", None),
        html_url=getattr(data, "html_url", ""),
    )


@contextmanager
def _errors(doing: str) -> Iterator[None]:
    try:
        yield
    except GitHubException as exc:
        raise _github_error(exc, doing) from None


def _github_error(exc: GitHubException, doing: str) -> GitHubError:
    """GitHub's own message (and the first validation error's), never the request with its headers."""
    if isinstance(exc, RequestFailed):
        status = exc.response.status_code
        message = ""
        try:
            payload = exc.response.raw_response.json()
        except ValueError:
            payload = {}
        if isinstance(payload, dict):
            message = str(payload.get("message") or "")
            errors = payload.get("errors") or []
            first = errors[0] if errors and isinstance(errors[0], dict) else {}
            detail = first.get("message") or " ".join(str(first.get(k, "")) for k in ("field", "code")).strip()
            if detail:
                message = f"{message} ({detail})" if message else detail
        return GitHubError(f"{doing}: GitHub answered {status}: {message or 'no message'}", status)
    return GitHubError(f"{doing}: {type(exc).__name__}: {exc}")
