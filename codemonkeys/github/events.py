"""What an Actions event asks of the bot: a labelled issue or a `/codemonkeys` comment becomes a `Trigger`;
anything else is ignored with the reason. Options in a comment are parsed here, never by a shell."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from codemonkeys.github.client import IssueRef

COMMAND = "/codemonkeys"
# What a comment may change, and the settings key each sets; the rest stays as the workflow configured it.
COMMENT_OPTIONS = {
    "--samples": ("generation.samples", int),
    "--iterations": ("generation.iterations", int),
    "--top-k": ("generation.top_k", int),
    "--budget": ("budget.budget_usd", float),
    "--model": ("models.names", str),
}


class EventError(ValueError):
    """The event file cannot be read as an Actions event: bad input, shown as is."""


class OptionsError(ValueError):
    """A comment's options the bot will not take: the message is answered on the issue."""


class _User(BaseModel):
    login: str
    type: str = "User"


class _Label(BaseModel):
    name: str


class _Issue(BaseModel):
    number: int
    title: str = ""
    body: str | None = None
    state: str = "open"
    user: _User | None = None
    pull_request: dict | None = None


class _Comment(BaseModel):
    id: int
    body: str | None = None
    user: _User


class _Owner(BaseModel):
    login: str


class _Repository(BaseModel):
    name: str
    owner: _Owner


class _Event(BaseModel):
    action: str | None = None
    issue: _Issue | None = None
    comment: _Comment | None = None
    label: _Label | None = None
    repository: _Repository | None = None
    sender: _User | None = None


class Trigger(BaseModel):
    """An accepted trigger: who asked, on which issue, how, and what the comment asked to change."""

    ref: IssueRef
    actor: str
    kind: Literal["label", "comment"]
    comment_id: int | None = None
    comment_body: str = ""


class Ignored(BaseModel):
    reason: str


def read_event(path: Path, repository: str | None) -> _Event:
    """`repository` is GITHUB_REPOSITORY (owner/name); the event's own repository is the fallback."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EventError(f"event file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventError(f"event file {path} is not JSON: {exc}") from None
    try:
        event = _Event.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise EventError(f"event file {path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    if repository and "/" in repository:
        owner, name = repository.split("/", 1)
        event.repository = _Repository(name=name, owner=_Owner(login=owner))
    return event


def classify(event: _Event, trigger_label: str, command: str = COMMAND) -> Trigger | Ignored:
    if event.issue is None or event.repository is None or event.sender is None:
        return Ignored(reason="not an issue event")
    if event.issue.pull_request is not None:
        return Ignored(reason="a pull request, not an issue")
    if event.sender.type == "Bot":
        return Ignored(reason=f"sent by a bot ({event.sender.login})")
    ref = IssueRef(owner=event.repository.owner.login, repo=event.repository.name, number=event.issue.number)
    if event.comment is None:
        if event.action != "labeled" or event.label is None:
            return Ignored(reason=f"issue event '{event.action}', not a label")
        if event.label.name.casefold() != trigger_label.casefold():
            return Ignored(reason=f"label '{event.label.name}' is not '{trigger_label}'")
        return Trigger(ref=ref, actor=event.sender.login, kind="label")
    if event.action != "created":
        return Ignored(reason=f"comment event '{event.action}', not a new comment")
    body = event.comment.body or ""
    if not is_command(body, command):
        return Ignored(reason=f"the comment does not start with {command}")
    return Trigger(ref=ref, actor=event.sender.login, kind="comment", comment_id=event.comment.id, comment_body=body)


def is_command(body: str, command: str = COMMAND) -> bool:
    return _first_line(body).partition(" ")[0].casefold() == command.casefold()


def command_words(body: str) -> list[str]:
    """The words after the command on the comment's first line, split as a shell would but never run."""
    rest = _first_line(body).partition(" ")[2]
    try:
        return shlex.split(rest)
    except ValueError as exc:
        raise OptionsError(f"cannot read the options ({exc})") from None


def comment_settings(words: list[str], allowed_models: list[str], budget_cap: float | None) -> dict[str, object]:
    """Dotted settings keys from `--samples 5 --model x`: only COMMENT_OPTIONS, a budget not above the
    workflow's cap, and models the workflow configured (a comment must not choose what the team pays for)."""
    settings: dict[str, object] = {}
    models: list[str] = []
    items = iter(words)
    for word in items:
        name, eq, value = word.partition("=")
        if name not in COMMENT_OPTIONS:
            allowed = ", ".join(COMMENT_OPTIONS)
            raise OptionsError(f"unknown option {name!r}: a comment may set {allowed}")
        if not eq:
            value = next(items, "")
            if not value:
                raise OptionsError(f"{name} needs a value")
        key, kind = COMMENT_OPTIONS[name]
        try:
            parsed = kind(value)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise OptionsError(f"{name} takes {what}, not {value!r}") from None
        if kind is not str and parsed <= 0:
            raise OptionsError(f"{name} must be above 0")
        if name == "--budget" and budget_cap is not None and parsed > budget_cap:
            raise OptionsError(f"--budget {parsed:g} is above this repository's cap of {budget_cap:g} USD")
        if name == "--model":
            if value not in allowed_models:
                raise OptionsError(
                    f"--model {value!r} is not one of the configured models: {', '.join(allowed_models)}"
                )
            models.append(value)
            continue
        settings[key] = parsed
    if models:
        settings["models.names"] = models
    return settings


def _first_line(body: str) -> str:
    return body.strip().splitlines()[0].strip() if body.strip() else ""
