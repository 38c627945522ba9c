"""SWE-bench instances from a local file (.jsonl, .json, .parquet) or a Hugging Face dataset, validated up front
so a bad record is reported by instance and field before any work starts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from codemonkeys.swebench.models import SWEInstance

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")


class DatasetError(ValueError):
    """A dataset that cannot be used as given; the message is shown to the user as is."""


def load_instances(source: str, split: str = "test") -> list[SWEInstance]:
    """Every instance of `source`: a local file, else a Hugging Face dataset name (its `split`)."""
    path = Path(source)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix not in LOCAL_SUFFIXES:
            raise DatasetError(f"{source}: unsupported file type {suffix or '(none)'}; use .jsonl, .json or .parquet")
        records = _read_local(path, suffix)
        where = path.name
    elif path.exists():
        raise DatasetError(f"{source} is a directory; give a .jsonl, .json or .parquet file")
    elif path.suffix.lower() in LOCAL_SUFFIXES:
        raise DatasetError(f"{source}: no such file")
    else:
        records = _read_hub(source, split)
        where = f"{source} ({split})"
    instances = _validate(records, where)
    if not instances:
        raise DatasetError(f"{source} holds no instances")
    return instances


def select_instances(
    instances: list[SWEInstance], ids: list[str] | None = None, ids_file: Path | None = None
) -> list[SWEInstance]:
    """The instances named by `ids` and/or `ids_file` (one id a line, `#` comments), in dataset order;
    all of them when neither is given."""
    if ids is None and ids_file is None:
        return list(instances)
    wanted = list(ids or [])
    if ids_file is not None:
        wanted += _read_ids_file(ids_file)
    if not wanted:
        raise DatasetError("no instance ids were given to select")
    known = {instance.instance_id for instance in instances}
    unknown = sorted(set(wanted) - known)
    if unknown:
        raise DatasetError(f"{len(unknown)} instance id(s) not in the dataset: {', '.join(unknown)}")
    chosen = set(wanted)
    return [instance for instance in instances if instance.instance_id in chosen]


def _read_ids_file(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"cannot read the ids file {path}: {exc.strerror or exc}") from exc
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def _read_local(path: Path, suffix: str) -> Iterator[tuple[str, Any]]:
    """(location, record) pairs; the location names the line, record or row for error messages."""
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow raises several unrelated types for unreadable files
            raise DatasetError(f"{path.name}: not a readable parquet file: {exc}") from exc
        return ((f"row {i} of {path.name}", row) for i, row in enumerate(rows, 1))
    text = _read_text(path)
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path.name}: not valid JSON: {exc}") from exc
        if not isinstance(data, list):
            raise DatasetError(f"{path.name}: expected a JSON list of instance records, found {type(data).__name__}")
        return ((f"record {i} of {path.name}", record) for i, record in enumerate(data, 1))
    return _jsonl_records(text, path.name)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc


def _jsonl_records(text: str, name: str) -> Iterator[tuple[str, Any]]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"line {number} of {name}"
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: not valid JSON: {exc}") from exc


def _read_hub(name: str, split: str) -> Iterator[tuple[str, Any]]:
    """The Hugging Face dataset `name`; unreachable or unknown names end in a DatasetError that says what to do."""
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    hint = "or pass a local .jsonl, .json or .parquet file"
    try:
        rows = datasets.load_dataset(name, split=split)
    except DatasetNotFoundError as exc:
        raise DatasetError(
            f"{name}: no such local file, and no such dataset on the Hugging Face Hub (or it is not accessible); "
            f"check the name {hint}"
        ) from exc
    except (ConnectionError, OSError) as exc:
        raise DatasetError(
            f"could not reach the Hugging Face Hub to load {name}: {exc}; "
            f"download the dataset where the Hub is reachable {hint}"
        ) from exc
    except ValueError as exc:
        raise DatasetError(f"cannot load split {split!r} of {name}: {exc}") from exc
    return ((f"row {i} of {name} ({split})", row) for i, row in enumerate(rows, 1))


def _validate(records: Iterable[tuple[str, Any]], where: str) -> list[SWEInstance]:
    instances: list[SWEInstance] = []
    seen: dict[str, str] = {}
    for location, record in records:
        if not isinstance(record, dict):
            raise DatasetError(f"{location}: expected an instance record (an object), found {type(record).__name__}")
        iid = record.get("instance_id")
        label = f"instance {iid} ({location})" if isinstance(iid, str) and iid else location
        try:
            instance = SWEInstance.model_validate(record)
        except ValidationError as exc:
            raise DatasetError(f"{label}: {_describe(exc)}") from exc
        if instance.instance_id in seen:
            raise DatasetError(
                f"instance {instance.instance_id} appears twice in {where}: {seen[instance.instance_id]} and {location}"
            )
        seen[instance.instance_id] = location
        instances.append(instance)
    return instances


def _describe(exc: ValidationError) -> str:
    """Each failing field by name: missing, or malformed and why."""
    parts = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "(record)"
        if error["type"] == "missing":
            parts.append(f"field '{field}' is missing")
        else:
            parts.append(f"field '{field}' is malformed: {error['msg']}")
    return "; ".join(parts)
