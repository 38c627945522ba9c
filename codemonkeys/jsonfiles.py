"""Files of the run directory written so that a kill never leaves half of one: atomic rewrites, torn-line-safe
appends."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any


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
    """One record appended to `path`, opening and closing it: for files written now and then."""
    with JsonlAppender(path) as appender:
        appender.append(record)


class JsonlAppender:
    """Appends records to one JSON-lines file through a descriptor kept open: a record per model call would
    otherwise pay a mkdir, an open and a close each.

    One line per write with O_APPEND, so other processes may append to the same file. A line torn by a kill
    (any writer's) is skipped by `read_jsonl`, and the next record starts on a line of its own so it is not lost
    with it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._closer: weakref.finalize | None = None

    def append(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._closer = weakref.finalize(self, os.close, self._fd)
        line = json.dumps(record, ensure_ascii=False) + "\n"
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            line = "\n" + line
        os.write(self._fd, line.encode("utf-8"))

    def close(self) -> None:
        if self._closer is not None:
            self._closer()
        self._fd = self._closer = None

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (batch workers, Ray tasks on one machine) for a read-modify-write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
