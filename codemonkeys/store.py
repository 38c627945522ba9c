"""The run directory: every state change written atomically, so a killed run resumes where it stopped."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def atomic_write_text(path: Path, text: str) -> None:
    """Writes to a temp file in the same directory and renames it over `path`: readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """One line per append with O_APPEND; a line torn by a kill is skipped by `read_jsonl`, and the next
    record starts on a line of its own so it is not lost with it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, ensure_ascii=False) + "\n"
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = "\n" + line
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class RunStore:
    """`runs/<run>/` with one folder per instance (DESIGN.md, "Store")."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def usage_path(self) -> Path:
        return self.root / "usage.jsonl"

    @property
    def predictions_path(self) -> Path:
        return self.root / "predictions.jsonl"

    def instance(self, instance_id: str) -> InstanceStore:
        return InstanceStore(self.root / _safe_name(instance_id))


class InstanceStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, rel: str) -> Path:
        return self.root / rel

    def save(self, rel: str, model: BaseModel) -> None:
        atomic_write_text(self.path(rel), model.model_dump_json(indent=2))

    def load(self, rel: str, cls: type[M]) -> M | None:
        path = self.path(rel)
        if not path.exists():
            return None
        return cls.model_validate_json(path.read_text(encoding="utf-8"))

    def exists(self, rel: str) -> bool:
        return self.path(rel).exists()


class Transcript(BaseModel):
    """The model answers of one conversation, in order: replayed positionally on resume."""

    responses: list[str] = []


class RecordedCalls:
    """Wraps one conversation's model calls so a resumed run replays finished calls instead of repeating them.

    Replay is by position: the k-th call of a resumed conversation gets the k-th recorded answer, even if
    the prompt differs slightly (test output with timings), because a finished call is never paid twice.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        saved = None
        if path.exists():
            try:
                saved = Transcript.model_validate_json(path.read_text(encoding="utf-8"))
            except ValueError:
                saved = None
        self.transcript = saved or Transcript()
        self.position = 0

    def replay(self) -> str | None:
        if self.position < len(self.transcript.responses):
            self.position += 1
            return self.transcript.responses[self.position - 1]
        return None

    def record(self, text: str) -> None:
        self.transcript.responses.append(text)
        self.position += 1
        atomic_write_text(self.path, self.transcript.model_dump_json(indent=1))


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in name) or "_"
