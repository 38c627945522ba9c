"""Loading SWE-bench instances from the 12 real Verified records in every local format, the errors a bad
record gives, and selecting instances by id."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codemonkeys.swebench.dataset import DatasetError, load_instances, select_instances

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT.parent / "shared" / "data" / "swebench_verified_sample.jsonl"


def sample_records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return Path(shutil.copy(SAMPLE, tmp_path / "verified.jsonl"))


def test_jsonl_loads_every_record_in_order_with_decoded_test_lists(sample: Path) -> None:
    records = sample_records()
    instances = load_instances(str(sample))
    assert [i.instance_id for i in instances] == [r["instance_id"] for r in records]
    assert len(instances) == 12
    django = next(i for i in instances if i.repo == "django/django")
    assert json.loads(records[1]["FAIL_TO_PASS"]) == django.FAIL_TO_PASS
    assert django.FAIL_TO_PASS and all(isinstance(t, str) for t in django.FAIL_TO_PASS)
    assert django.version == "4.0"
    assert django.environment_setup_commit == records[1]["environment_setup_commit"]


def test_json_and_parquet_give_the_same_instances_as_jsonl(sample: Path, tmp_path: Path) -> None:
    records = sample_records()
    as_json = tmp_path / "verified.json"
    as_json.write_text(json.dumps(records))
    as_parquet = tmp_path / "verified.parquet"
    pq.write_table(pa.Table.from_pylist(records), as_parquet)
    expected = load_instances(str(sample))
    assert load_instances(str(as_json)) == expected
    assert load_instances(str(as_parquet)) == expected


def test_parquet_with_list_columns_and_float_versions(tmp_path: Path) -> None:
    records = sample_records()[:3]
    for record in records:
        record["FAIL_TO_PASS"] = json.loads(record["FAIL_TO_PASS"])
        record["PASS_TO_PASS"] = json.loads(record["PASS_TO_PASS"])
        record["version"] = float(record["version"])
    path = tmp_path / "lists.parquet"
    pq.write_table(pa.Table.from_pylist(records), path)
    instances = load_instances(str(path))
    assert records[1]["FAIL_TO_PASS"] == instances[1].FAIL_TO_PASS
    assert [i.version for i in instances] == ["5.1", "4.0", "3.6"]


BAD_FIELDS = [
    ("base_commit", None, "field 'base_commit' is missing"),
    ("problem_statement", None, "field 'problem_statement' is missing"),
    ("repo", "not a repo name", "field 'repo' is malformed"),
    ("FAIL_TO_PASS", "[not json", "field 'FAIL_TO_PASS' is malformed"),
    ("PASS_TO_PASS", 7, "field 'PASS_TO_PASS' is malformed"),
    ("problem_statement", 42, "field 'problem_statement' is malformed"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_FIELDS)
def test_a_bad_field_names_the_instance_the_line_and_the_field(
    tmp_path: Path, field: str, value: Any, message: str
) -> None:
    records = sample_records()
    if value is None:
        del records[2][field]
    else:
        records[2][field] = value
    path = write_jsonl(tmp_path / "x.jsonl", records)
    with pytest.raises(DatasetError) as caught:
        load_instances(str(path))
    iid = records[2]["instance_id"]
    assert str(caught.value).startswith(f"instance {iid} (line 3 of x.jsonl): {message}")


def test_the_exact_message_for_a_missing_base_commit(tmp_path: Path) -> None:
    records = sample_records()
    del records[2]["base_commit"]
    path = write_jsonl(tmp_path / "x.jsonl", records)
    with pytest.raises(DatasetError) as caught:
        load_instances(str(path))
    assert (
        str(caught.value) == "instance matplotlib__matplotlib-24570 (line 3 of x.jsonl): field 'base_commit' is missing"
    )


def test_a_missing_id_is_named_by_line_record_or_row(tmp_path: Path) -> None:
    records = sample_records()
    del records[4]["instance_id"]
    jsonl = write_jsonl(tmp_path / "x.jsonl", records)
    with pytest.raises(DatasetError, match=r"^line 5 of x\.jsonl: field 'instance_id' is missing$"):
        load_instances(str(jsonl))
    as_json = tmp_path / "x.json"
    as_json.write_text(json.dumps(records))
    with pytest.raises(DatasetError, match=r"^record 5 of x\.json: field 'instance_id' is missing$"):
        load_instances(str(as_json))


def test_a_null_in_parquet_names_row_instance_and_field(tmp_path: Path) -> None:
    records = sample_records()
    records[3]["base_commit"] = None
    path = tmp_path / "x.parquet"
    pq.write_table(pa.Table.from_pylist(records), path)
    with pytest.raises(DatasetError) as caught:
        load_instances(str(path))
    assert str(caught.value).startswith(
        f"instance {records[3]['instance_id']} (row 4 of x.parquet): field 'base_commit'"
    )


def test_blank_lines_count_and_invalid_json_names_its_line(tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in sample_records()[:2]]
    path = tmp_path / "x.jsonl"
    path.write_text(f"{lines[0]}\n\n{lines[1]}\n{{broken\n")
    with pytest.raises(DatasetError, match=r"^line 4 of x\.jsonl: not valid JSON"):
        load_instances(str(path))
    path.write_text(f"{lines[0]}\n\n{lines[1]}\n")
    assert len(load_instances(str(path))) == 2


def test_duplicate_ids_are_an_error_naming_both_places(tmp_path: Path) -> None:
    records = sample_records()
    path = write_jsonl(tmp_path / "x.jsonl", [*records, records[5]])
    with pytest.raises(DatasetError) as caught:
        load_instances(str(path))
    message = str(caught.value)
    assert records[5]["instance_id"] in message
    assert "line 6" in message and "line 13" in message


@pytest.mark.parametrize(("name", "content"), [("e.jsonl", ""), ("b.jsonl", "\n \n"), ("e.json", "[]")])
def test_an_empty_file_is_an_error(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DatasetError, match="holds no instances"):
        load_instances(str(path))


def test_files_that_are_not_datasets(tmp_path: Path) -> None:
    obj = tmp_path / "obj.json"
    obj.write_text(json.dumps({"instance_id": "x"}))
    with pytest.raises(DatasetError, match="expected a JSON list"):
        load_instances(str(obj))
    not_records = tmp_path / "ints.json"
    not_records.write_text("[1, 2]")
    with pytest.raises(DatasetError, match=r"^record 1 of ints\.json: expected an instance record"):
        load_instances(str(not_records))
    csv = tmp_path / "data.csv"
    csv.write_text("a,b\n")
    with pytest.raises(DatasetError, match=r"unsupported file type \.csv"):
        load_instances(str(csv))
    with pytest.raises(DatasetError, match="is a directory"):
        load_instances(str(tmp_path))
    with pytest.raises(DatasetError, match="no such file"):
        load_instances(str(tmp_path / "missing.jsonl"))
    garbage = tmp_path / "garbage.parquet"
    garbage.write_text("not parquet")
    with pytest.raises(DatasetError, match="not a readable parquet file"):
        load_instances(str(garbage))


def test_an_unreachable_hub_says_so_and_suggests_a_local_file(tmp_path: Path) -> None:
    """Offline mode stands for no network; a fresh HF_HOME makes sure nothing is served from a cache."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    code = (
        "from codemonkeys.swebench.dataset import DatasetError, load_instances\n"
        "try:\n"
        "    load_instances('princeton-nlp/SWE-bench_Verified')\n"
        "except DatasetError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    assert "could not reach the Hugging Face Hub to load princeton-nlp/SWE-bench_Verified" in result.stdout
    assert "local .jsonl, .json or .parquet file" in result.stdout


def test_select_by_ids_keeps_dataset_order(sample: Path) -> None:
    instances = load_instances(str(sample))
    wanted = [instances[7].instance_id, instances[1].instance_id, instances[4].instance_id]
    chosen = select_instances(instances, ids=wanted)
    assert [i.instance_id for i in chosen] == [
        instances[1].instance_id,
        instances[4].instance_id,
        instances[7].instance_id,
    ]
    assert select_instances(instances) == instances


def test_select_by_ids_file_ignores_blanks_and_comments_and_joins_ids(sample: Path, tmp_path: Path) -> None:
    instances = load_instances(str(sample))
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(f"# the hard ones\n\n{instances[11].instance_id}\n  {instances[0].instance_id}  # astropy\n\n")
    chosen = select_instances(instances, ids_file=ids_file)
    assert [i.instance_id for i in chosen] == [instances[0].instance_id, instances[11].instance_id]
    both = select_instances(instances, ids=[instances[5].instance_id], ids_file=ids_file)
    assert [i.instance_id for i in both] == [instances[k].instance_id for k in (0, 5, 11)]


def test_select_unknown_ids_lists_them(sample: Path, tmp_path: Path) -> None:
    instances = load_instances(str(sample))
    with pytest.raises(DatasetError) as caught:
        select_instances(instances, ids=["nope__nope-1", instances[0].instance_id, "also__missing-2"])
    assert "2 instance id(s) not in the dataset: also__missing-2, nope__nope-1" in str(caught.value)
    comments_only = tmp_path / "ids.txt"
    comments_only.write_text("# nothing yet\n\n")
    with pytest.raises(DatasetError, match="no instance ids"):
        select_instances(instances, ids_file=comments_only)
    with pytest.raises(DatasetError, match="cannot read the ids file"):
        select_instances(instances, ids_file=tmp_path / "absent.txt")
