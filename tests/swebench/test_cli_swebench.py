"""Bad input to `codemonkeys swebench` is a named error with exit code 2, before any work starts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from codemonkeys.cli import app

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "swebench_verified_sample.jsonl"
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["swebench", *args])


def test_a_missing_dataset_file_is_bad_input(tmp_path: Path) -> None:
    result = invoke("run", "--dataset", str(tmp_path / "nope.jsonl"), "--api-base", "http://127.0.0.1:9")
    assert result.exit_code == 2
    assert "nope.jsonl" in result.output


def test_a_malformed_record_names_the_instance_and_the_field(tmp_path: Path) -> None:
    records = [json.loads(line) for line in DATA.read_text().splitlines()[:2]]
    del records[1]["base_commit"]
    dataset = tmp_path / "bad.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = invoke("envs", "--dataset", str(dataset), "--env", "local")
    assert result.exit_code == 2
    assert records[1]["instance_id"] in result.output and "base_commit" in result.output


def test_unknown_instance_ids_are_named(tmp_path: Path) -> None:
    dataset = shutil.copy(DATA, tmp_path / "data.jsonl")
    result = invoke("envs", "--dataset", str(dataset), "--instances", "django__django-14007,nope__nope-1")
    assert result.exit_code == 2
    assert "nope__nope-1" in result.output


def test_eval_refuses_a_predictions_file_without_ids(tmp_path: Path) -> None:
    dataset = shutil.copy(DATA, tmp_path / "data.jsonl")
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text(json.dumps({"model_patch": "diff"}) + "\n")
    result = invoke("eval", "--dataset", str(dataset), "--predictions", str(predictions))
    assert result.exit_code == 2
    assert "record 1 has no instance_id" in result.output
    missing = invoke("eval", "--dataset", str(dataset), "--predictions", str(tmp_path / "none.jsonl"))
    assert missing.exit_code == 2 and "predictions file not found" in missing.output


def test_help_explains_the_batch_options() -> None:
    result = invoke("run", "--help")
    assert result.exit_code == 0
    for flag in ("--dataset", "--instances-file", "--workers", "--executor", "--ray-address", "--env", "--repos"):
        assert flag in result.output
    assert "--max-instance-budget" in result.output and "--samples" in result.output
