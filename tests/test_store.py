"""The run store: atomic writes, torn lines, positional replay of model answers."""

from __future__ import annotations

import json
from pathlib import Path

from codemonkeys.store import RecordedCalls, append_jsonl, atomic_write_text, read_jsonl


def test_append_after_a_torn_line_keeps_the_new_record(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    append_jsonl(log, {"n": 1})
    with log.open("a") as fh:
        fh.write('{"n": 2, "half')
    append_jsonl(log, {"n": 3})
    assert [r["n"] for r in read_jsonl(log)] == [1, 3]


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "result.json"
    atomic_write_text(target, json.dumps({"a": 1}))
    atomic_write_text(target, json.dumps({"a": 2}))
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]


def test_recorded_calls_replay_by_position_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "t.calls.json"
    first = RecordedCalls(path)
    assert first.replay() is None
    first.record("answer one")
    first.record("answer two")
    again = RecordedCalls(path)
    assert again.replay() == "answer one"
    assert again.replay() == "answer two"
    assert again.replay() is None


def test_a_corrupt_transcript_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "t.calls.json"
    path.write_text("{not json")
    assert RecordedCalls(path).replay() is None
