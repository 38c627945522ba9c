"""The run directory's layout (DESIGN.md, "Store"), in this one place: every other module asks for a typed
record (`inst.testing(i)`, `inst.votes`) instead of building paths. Every save is atomic, so a killed run
resumes where it stopped."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from codemonkeys.context.models import ContextResult
from codemonkeys.jsonfiles import atomic_write_text, file_lock, read_jsonl
from codemonkeys.problem import Problem
from codemonkeys.result import SolveResult
from codemonkeys.swebench.models import EnvManifest
from codemonkeys.swebench.pooling import Pool
from codemonkeys.trajectories.models import EditingResult, SelectionResult, TestingResult, VoteResult

M = TypeVar("M", bound=BaseModel)


class Record(Generic[M]):
    """One JSON file holding one model; `calls` is the transcript of the conversation that produced it."""

    def __init__(self, path: Path, cls: type[M]) -> None:
        self.path = path
        self.cls = cls

    @property
    def calls(self) -> Path:
        return self.path.with_name(f"{self.path.stem}.calls.json")

    def load(self) -> M | None:
        if not self.path.exists():
            return None
        return self.cls.model_validate_json(self.path.read_text(encoding="utf-8"))

    def save(self, value: M) -> None:
        atomic_write_text(self.path, value.model_dump_json(indent=2))

    def exists(self) -> bool:
        return self.path.exists()

    def forget(self) -> None:
        """Drops the record and its transcript: what they held is stale and must be redone."""
        self.path.unlink(missing_ok=True)
        self.calls.unlink(missing_ok=True)


class RunStore:
    """`runs/<run>/`: the run's settings, usage and predictions, and one folder per instance."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def usage_path(self) -> Path:
        return self.root / "usage.jsonl"

    @property
    def predictions_path(self) -> Path:
        return self.root / "predictions.jsonl"

    def instance(self, instance_id: str) -> InstanceStore:
        return InstanceStore(self.root / _safe_name(instance_id))

    def record_prediction(self, instance_id: str, patch: str, model_name: str = "codemonkeys", **extra: Any) -> None:
        """SWE-bench's prediction format, one line per instance: a resumed instance replaces its old line.
        `extra` fields (the ensemble's `source`) ride along; the harness ignores them."""
        with file_lock(self.root / ".predictions.lock"):
            kept = [r for r in read_jsonl(self.predictions_path) if r.get("instance_id") != instance_id]
            kept.append({"instance_id": instance_id, "model_name_or_path": model_name, "model_patch": patch, **extra})
            atomic_write_text(self.predictions_path, "".join(json.dumps(r) + "\n" for r in kept))


class InstanceStore:
    """`runs/<run>/<instance>/`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def problem(self) -> Record[Problem]:
        return Record(self.root / "problem.json", Problem)

    @property
    def relevance_log(self) -> Path:
        """One verdict per line, appended as each is known."""
        return self.root / "context" / "relevance.jsonl"

    @property
    def context(self) -> Record[ContextResult]:
        return Record(self.root / "context" / "ranking.json", ContextResult)

    def ranking_calls(self, index: int) -> Path:
        return self.root / "context" / f"ranking.{index}.calls.json"

    def testing(self, index: int) -> Record[TestingResult]:
        return Record(self.root / "testing" / f"{index}.json", TestingResult)

    def editing(self, index: int) -> Record[EditingResult]:
        return Record(self.root / "editing" / f"{index}.json", EditingResult)

    def all_testing(self) -> list[TestingResult]:
        return self._all("testing", self.testing)

    def all_editing(self) -> list[EditingResult]:
        return self._all("editing", self.editing)

    @property
    def pool(self) -> Record[Pool]:
        """The ensemble's pooled candidates of this instance, with where each came from."""
        return Record(self.root / "pool.json", Pool)

    @property
    def votes(self) -> Record[VoteResult]:
        return Record(self.root / "votes.json", VoteResult)

    @property
    def selection(self) -> Record[SelectionResult]:
        return Record(self.root / "selection.json", SelectionResult)

    @property
    def result(self) -> Record[SolveResult]:
        return Record(self.root / "result.json", SolveResult)

    @property
    def environment(self) -> Record[EnvManifest]:
        """The SWE-bench environment the instance ran in, deviations from its spec included."""
        return Record(self.root / "environment.json", EnvManifest)

    @property
    def report_path(self) -> Path:
        return self.root / "report.html"

    def _all(self, folder: str, record: Callable[[int], Record[M]]) -> list[M]:
        directory = self.root / folder
        if not directory.is_dir():
            return []
        indexes = sorted(int(p.stem) for p in directory.glob("*.json") if p.stem.isdigit())
        return [loaded for i in indexes if (loaded := record(i).load()) is not None]


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in name) or "_"
