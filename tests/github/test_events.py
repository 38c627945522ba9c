from __future__ import annotations

import json
from pathlib import Path

import pytest

from codemonkeys.github.events import (
    EventError,
    Ignored,
    OptionsError,
    Trigger,
    classify,
    command_words,
    comment_settings,
    read_event,
)


def event(tmp_path: Path, **fields: object) -> Path:
    data = {
        "action": "labeled",
        "issue": {"number": 3, "title": "t", "body": "b", "user": {"login": "alice", "type": "User"}},
        "label": {"name": "codemonkeys"},
        "repository": {"name": "hello", "owner": {"login": "octo"}},
        "sender": {"login": "maint", "type": "User"},
    } | fields
    path = tmp_path / "event.json"
    path.write_text(json.dumps(data))
    return path


def decide(tmp_path: Path, **fields: object) -> Trigger | Ignored:
    return classify(read_event(event(tmp_path, **fields), None), "CodeMonkeys")


def test_the_trigger_label_starts_a_run(tmp_path: Path) -> None:
    trigger = decide(tmp_path)
    assert isinstance(trigger, Trigger)
    assert (trigger.ref.slug, trigger.ref.number, trigger.actor, trigger.kind) == ("octo/hello", 3, "maint", "label")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"label": {"name": "bug"}}, "is not"),
        ({"action": "opened"}, "not a label"),
        ({"sender": {"login": "dependabot[bot]", "type": "Bot"}}, "bot"),
        ({"issue": {"number": 3, "pull_request": {"url": "x"}}}, "pull request"),
        ({"issue": None}, "not an issue event"),
    ],
)
def test_other_events_are_ignored_with_a_reason(tmp_path: Path, fields: dict, reason: str) -> None:
    decision = decide(tmp_path, **fields)
    assert isinstance(decision, Ignored) and reason in decision.reason


def test_a_command_comment_starts_a_run_and_others_do_not(tmp_path: Path) -> None:
    comment = {"id": 99, "body": "/codemonkeys --samples 5\nplease", "user": {"login": "maint"}}
    trigger = decide(tmp_path, action="created", comment=comment, label=None)
    assert isinstance(trigger, Trigger) and trigger.kind == "comment" and trigger.comment_id == 99
    assert command_words(trigger.comment_body) == ["--samples", "5"]
    quoted = comment | {"body": "I ran `/codemonkeys` yesterday"}
    assert isinstance(decide(tmp_path, action="created", comment=quoted, label=None), Ignored)
    assert isinstance(decide(tmp_path, action="edited", comment=comment, label=None), Ignored)


def test_github_repository_names_the_repository(tmp_path: Path) -> None:
    trigger = classify(read_event(event(tmp_path), "other/place"), "codemonkeys")
    assert isinstance(trigger, Trigger) and trigger.ref.slug == "other/place"


def test_comment_options_are_limited_to_what_a_comment_may_change() -> None:
    models = ["openai/a", "openai/b"]
    words = ["--samples", "5", "--top-k=2", "--budget", "1.5", "--model", "openai/b"]
    assert comment_settings(words, models, 3.0) == {
        "generation.samples": 5,
        "generation.top_k": 2,
        "budget.budget_usd": 1.5,
        "models.names": ["openai/b"],
    }
    for bad, message in [
        (["--budget", "10"], "above this repository's cap"),
        (["--model", "openai/expensive"], "not one of the configured"),
        (["--api-base", "http://evil"], "unknown option"),
        (["--samples", "many"], "takes a whole number"),
        (["--samples", "0"], "above 0"),
        (["--samples"], "needs a value"),
    ]:
        with pytest.raises(OptionsError, match=message):
            comment_settings(bad, models, 3.0)


def test_unbalanced_quotes_are_an_options_error_not_a_crash() -> None:
    with pytest.raises(OptionsError, match="cannot read"):
        command_words("/codemonkeys --model 'open")


def test_unreadable_events_are_bad_input(tmp_path: Path) -> None:
    with pytest.raises(EventError, match="not found"):
        read_event(tmp_path / "missing.json", None)
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(EventError, match="not JSON"):
        read_event(tmp_path / "bad.json", None)
