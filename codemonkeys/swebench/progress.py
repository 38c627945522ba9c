"""The live view of a batch: done / failed / running, cost so far and an ETA. A rich panel on a terminal;
off one (CI, a log file), one plain line per finished instance."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from rich.console import Console
from rich.live import Live
from rich.text import Text

from codemonkeys.swebench.jobs import JobOutcome


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class BatchProgress:
    """Counts what the executor reports; `spent` reads the run's cost (every worker's, from usage.jsonl)."""

    def __init__(self, total: int, spent: Callable[[], float], what: str = "instances") -> None:
        self.total = total
        self.what = what
        self.spent = spent
        self.done = self.failed = self.skipped = 0
        self.running: set[str] = set()
        self.started = time.monotonic()
        self.console = Console(stderr=True, soft_wrap=True)
        self.live: Live | None = None
        if sys.stderr.isatty():
            self.live = Live(Text(""), console=self.console, refresh_per_second=2, transient=False)

    def __enter__(self) -> BatchProgress:
        if self.live is not None:
            self.live.start()
            self._refresh()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self._refresh()
            self.live.stop()

    def start(self, instance_id: str) -> None:
        self.running.add(instance_id)
        self._refresh()

    def finish(self, outcome: JobOutcome) -> None:
        self.running.discard(outcome.instance_id)
        if outcome.skipped:
            self.skipped += 1
        elif outcome.ok:
            self.done += 1
        else:
            self.failed += 1
        if self.live is None:
            self.console.print(self._finished_line(outcome), markup=False, highlight=False)
        self._refresh()

    def eta(self) -> str:
        """From the instances finished in this process (skipped ones cost nothing), over the ones left."""
        worked = self.done + self.failed
        left = self.total - worked - self.skipped
        if not worked or not left:
            return "-"
        return _duration((time.monotonic() - self.started) / worked * left)

    def line(self) -> str:
        finished = self.done + self.failed + self.skipped
        parts = [
            f"{finished}/{self.total} {self.what}",
            f"done {self.done}",
            f"failed {self.failed}",
            f"running {len(self.running)}",
        ]
        if self.skipped:
            parts.append(f"already done {self.skipped}")
        parts += [f"${self.spent():.2f}", f"elapsed {_duration(time.monotonic() - self.started)}", f"ETA {self.eta()}"]
        return " · ".join(parts)

    def _finished_line(self, outcome: JobOutcome) -> str:
        what = "already done" if outcome.skipped else outcome.status.replace("_", " ")
        why = f" ({outcome.error.splitlines()[0][:200]})" if outcome.error and not outcome.ok else ""
        detail = f" {outcome.detail}" if outcome.detail else ""
        return f"{outcome.instance_id}: {what}{detail}{why} | {self.line()}"

    def _refresh(self) -> None:
        if self.live is not None:
            running = ", ".join(sorted(self.running)[:6]) + (" …" if len(self.running) > 6 else "")
            self.live.update(Text(self.line() + (f"\nrunning: {running}" if running else "")))
