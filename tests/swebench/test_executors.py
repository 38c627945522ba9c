"""The local executor's concurrency and stop rule, and the progress display's figures."""

from __future__ import annotations

import asyncio

import pytest

from codemonkeys.swebench.executors import Hooks, run_local
from codemonkeys.swebench.jobs import JobOutcome
from codemonkeys.swebench.progress import BatchProgress


def _jobs(n: int, stop_at: int | None = None, peak: list[int] | None = None) -> list:
    running = [0]

    def job(i: int):
        async def work() -> JobOutcome:
            running[0] += 1
            if peak is not None:
                peak.append(running[0])
            await asyncio.sleep(0.01)
            running[0] -= 1
            stop = "the provider is down" if i == stop_at else ""
            return JobOutcome(instance_id=f"i{i}", status="patched", ok=True, stop_batch=stop)

        return work

    return [(f"i{i}", job(i)) for i in range(n)]


async def test_at_most_workers_jobs_run_at_once() -> None:
    peak: list[int] = []
    done: list[str] = []
    await run_local(_jobs(12, peak=peak), 3, Hooks(done=lambda key, _r: done.append(key)))
    assert max(peak) == 3
    assert sorted(done) == sorted(f"i{i}" for i in range(12))


async def test_a_stop_outcome_starts_no_more_instances() -> None:
    started: list[str] = []
    hooks = Hooks(start=started.append)
    await run_local(_jobs(10, stop_at=1), 1, hooks)
    assert started == ["i0", "i1"]
    assert hooks.stopped == ["the provider is down"]


def test_progress_counts_and_plain_lines(capsys: pytest.CaptureFixture[str]) -> None:
    progress = BatchProgress(5, lambda: 1.5)
    with progress:
        progress.start("a")
        progress.start("b")
        progress.finish(JobOutcome(instance_id="a", status="patched", ok=True))
        progress.finish(JobOutcome(instance_id="b", status="failed", ok=False, error="env did not build\nmore"))
        progress.finish(JobOutcome(instance_id="c", status="patched", ok=True, skipped=True))
        progress.finish(JobOutcome(instance_id="acme__calc-0.1", status="ready", ok=True, detail="at env-acme__calc:1"))
    err = capsys.readouterr().err
    assert "a: patched | 1/5 instances · done 1 · failed 0 · running 1 · $1.50" in err
    assert "b: failed (env did not build) | 2/5 instances · done 1 · failed 1 · running 0" in err
    assert "c: already done |" in err and "already done 1" in err
    assert "acme__calc-0.1: ready at env-acme__calc:1 |" in err, "a detail is shown as it is"
    assert progress.eta() != "-", "two instances worked, one left: an ETA is known"
