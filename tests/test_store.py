"""The run store: its layout and typed records, atomic writes, torn lines, positional replay of model answers."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

from codemonkeys.jsonfiles import JsonlAppender, append_jsonl, atomic_write_text, read_jsonl
from codemonkeys.llm import RecordedCalls
from codemonkeys.result import SolveResult
from codemonkeys.sandbox.base import ExecResult, Outcome
from codemonkeys.store import RunStore
from codemonkeys.trajectories.models import OUTPUT_KEPT, EditingResult, ScriptRun, TestingResult, VoteResult


def test_append_after_a_torn_line_keeps_the_new_record(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    append_jsonl(log, {"n": 1})
    with log.open("a") as fh:
        fh.write('{"n": 2, "half')
    append_jsonl(log, {"n": 3})
    assert [r["n"] for r in read_jsonl(log)] == [1, 3]


def test_an_open_appender_keeps_its_records_whole_beside_other_writers(tmp_path: Path) -> None:
    """Its descriptor stays open between records, yet another process's records and torn line are not merged
    into its own."""
    log = tmp_path / "deep" / "usage.jsonl"
    appender = JsonlAppender(log)
    appender.append({"n": 1})
    writer = "import json, sys\nfor n in range(2, 202):\n    print(json.dumps({'n': n}), flush=True)\n"
    with log.open("a") as fh:
        subprocess.run([sys.executable, "-c", writer], stdout=fh, check=True)
        fh.write('{"n": "torn')
    appender.append({"n": 500})
    appender.append({"n": 501})
    assert [r["n"] for r in read_jsonl(log)] == [1, *range(2, 202), 500, 501]


def test_an_appender_closes_its_descriptor(tmp_path: Path) -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_fds()
    with JsonlAppender(tmp_path / "a.jsonl") as appender:
        appender.append({"n": 1})
        assert open_fds() == before + 1
    assert open_fds() == before
    dropped = JsonlAppender(tmp_path / "b.jsonl")
    dropped.append({"n": 1})
    del dropped
    gc.collect()
    assert open_fds() == before
    assert read_jsonl(tmp_path / "a.jsonl") == read_jsonl(tmp_path / "b.jsonl") == [{"n": 1}]


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


def test_records_round_trip_and_forget_their_transcript(tmp_path: Path) -> None:
    inst = RunStore(tmp_path / "run").instance("org/repo-1")
    assert inst.root == tmp_path / "run" / "org_repo-1"
    votes = inst.votes
    assert not votes.exists() and votes.load() is None
    votes.save(VoteResult(top=[2, 1]))
    assert votes.exists() and inst.votes.load() == VoteResult(top=[2, 1])
    assert (votes.path, votes.calls) == (inst.root / "votes.json", inst.root / "votes.calls.json")

    testing = inst.testing(3)
    assert (testing.path, testing.calls) == (inst.root / "testing" / "3.json", inst.root / "testing" / "3.calls.json")
    testing.save(TestingResult(index=3, script="print(1)"))
    testing.calls.write_text("{}")
    testing.forget()
    assert not testing.exists() and not testing.calls.exists()

    assert inst.context.path == inst.root / "context" / "ranking.json"
    assert inst.relevance_log == inst.root / "context" / "relevance.jsonl"
    assert inst.ranking_calls(1) == inst.root / "context" / "ranking.1.calls.json"


def test_all_results_come_back_in_index_order(tmp_path: Path) -> None:
    inst = RunStore(tmp_path).instance("i")
    assert inst.all_editing() == [] and inst.all_testing() == []
    for i in (10, 2, 0):
        inst.editing(i).save(EditingResult(index=i))
    inst.editing(5).calls.parent.mkdir(parents=True, exist_ok=True)
    inst.editing(5).calls.write_text("{}")
    assert [r.index for r in inst.all_editing()] == [0, 2, 10]


def test_a_resumed_prediction_replaces_its_line(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    store.record_prediction("a", "diff a")
    store.record_prediction("b", "diff b")
    store.record_prediction("a", "diff a2")
    assert [(r["instance_id"], r["model_patch"]) for r in read_jsonl(store.predictions_path)] == [
        ("b", "diff b"),
        ("a", "diff a2"),
    ]
    assert store.predictions_path == tmp_path / "run" / "predictions.jsonl"
    assert (store.config_path.name, store.usage_path.name) == ("config.json", "usage.jsonl")


def test_script_runs_keep_the_end_of_their_output_and_old_records_still_load() -> None:
    long = "start\n" + "x" * OUTPUT_KEPT + "\nFAILED: the verdict"
    run = ScriptRun.of(ExecResult(exit_code=2, output=long, seconds=1.23456))
    assert run.output.endswith("FAILED: the verdict") and len(run.output) == OUTPUT_KEPT and run.clipped
    assert run.seconds == 1.235 and not ScriptRun.of(ExecResult(exit_code=0, output="ok")).clipped
    old = ScriptRun.model_validate_json('{"exit_code": 0, "timed_out": false, "seconds": 0.5}')
    assert old.output == "" and old.outcome is Outcome.FIXED
    assert SolveResult.model_validate_json('{"instance_id": "a", "status": "patched"}').stage_spans == {}
