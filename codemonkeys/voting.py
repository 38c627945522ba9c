"""Voting: every distinct final test script runs on every distinct candidate and on the empty patch; a candidate's
votes are the scripts that say FIXED (exit 0) on it. Scripts that already pass on the original code are recorded as suspicious
(they cannot see the issue) but still count, as the design says."""

from __future__ import annotations

import asyncio
import logging

from codemonkeys.config import GenerationSettings, SandboxSettings
from codemonkeys.sandbox.base import Outcome, Sandbox, SandboxProvider
from codemonkeys.swebench.pooling import Pool
from codemonkeys.trajectories.common import crash_message
from codemonkeys.trajectories.models import Candidate, EditingResult, VoteResult

log = logging.getLogger("codemonkeys.voting")

POOL = 4
EMPTY = -1  # the column of the empty patch


def normalize(text: str) -> str:
    """Patches (or scripts) that differ only in trailing spaces or the final newline are the same."""
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def collect_candidates(results: list[EditingResult]) -> list[Candidate]:
    """One candidate per distinct patch, in order of first appearance, with every trajectory that produced it."""
    by_key: dict[str, Candidate] = {}
    for result in results:
        if not result.patch or not result.patch.strip():
            continue
        key = normalize(result.patch)
        if key not in by_key:
            by_key[key] = Candidate(id=len(by_key), patch=result.patch)
        by_key[key].paths = list(dict.fromkeys([*by_key[key].paths, *result.touched]))
        by_key[key].sources.append(result.index)
        by_key[key].scripts.append(result.script or "")
    return list(by_key.values())


def stored_candidates(pool: Pool | None, editing: list[EditingResult]) -> list[Candidate]:
    """The candidates an instance's vote saw: an ensemble's pool (`pool.json`) when it has one, else its editing
    trajectories' distinct patches. Pooled candidates have no trajectory behind them (`sources` is empty)."""
    if pool is None:
        return collect_candidates(editing)
    return [Candidate(id=p.id, patch=p.patch, paths=p.paths) for p in pool.patches]


def changed_lines(patch: str) -> int:
    return sum(1 for line in patch.splitlines() if line[:1] in "+-" and not line.startswith(("+++ ", "--- ")) and line)


def distinct_scripts(scripts: list[str]) -> list[str]:
    """A script written twice votes once."""
    unique: dict[str, str] = {}
    for script in scripts:
        if script.strip():
            unique.setdefault(normalize(script), script)
    return list(unique.values())


async def vote(
    candidates: list[Candidate],
    scripts: list[str],
    provider: SandboxProvider,
    generation: GenerationSettings,
    box: SandboxSettings,
) -> VoteResult:
    """Runs the whole script × (candidates + empty patch) matrix over a small pool of sandboxes.

    A sandbox that breaks (SandboxError or any crash) leaves its cell None, counted as no vote, and is replaced;
    the first such failure is kept in `error`.
    """
    distinct = distinct_scripts(scripts)
    result = VoteResult(
        scripts=distinct,
        candidate_ids=[c.id for c in candidates],
        matrix=[[None] * len(candidates) for _ in distinct],
        empty_patch=[None] * len(distinct),
    )
    jobs = [(row, col) for row in range(len(distinct)) for col in [EMPTY, *range(len(candidates))]]
    queue = iter(jobs)

    async def worker(number: int) -> None:
        sandbox: Sandbox | None = None
        try:
            for row, col in queue:
                if sandbox is None:
                    sandbox = await provider.open(f"vote-{number}")
                patch = "" if col == EMPTY else candidates[col].patch
                try:
                    run = await sandbox.run_on(patch, distinct[row], box.test_timeout)
                except Exception as exc:
                    result.error = result.error or f"script {row} on {_label(col)}: {crash_message(exc)}"
                    await _close(sandbox)
                    sandbox = None
                    continue
                if col == EMPTY:
                    result.empty_patch[row] = run.outcome
                else:
                    result.matrix[row][col] = run.outcome
        except Exception as exc:
            result.error = result.error or f"could not open a sandbox: {crash_message(exc)}"
        finally:
            if sandbox is not None:
                await _close(sandbox)

    size = min(POOL, box.max_containers, len(jobs))
    await asyncio.gather(*(worker(n) for n in range(size)))
    result.suspicious = [row for row, seen in enumerate(result.empty_patch) if seen is Outcome.FIXED]
    result.votes = {c.id: sum(row[col] is Outcome.FIXED for row in result.matrix) for col, c in enumerate(candidates)}
    ranked = sorted(
        range(len(candidates)),
        key=lambda col: (
            -result.votes[candidates[col].id],
            changed_lines(candidates[col].patch),
            len(candidates[col].patch),
            col,
        ),
    )
    result.top = [candidates[col].id for col in ranked[: generation.top_k]]
    log.info(
        "vote: %d script(s) × %d candidate(s): votes %s, top %s, %d script(s) pass on the original code",
        len(distinct),
        len(candidates),
        result.votes,
        result.top,
        len(result.suspicious),
    )
    return result


def _label(col: int) -> str:
    return "the empty patch" if col == EMPTY else f"candidate column {col}"


async def _close(sandbox: Sandbox) -> None:
    """A broken sandbox may fail to close too; that must not stop the vote."""
    try:
        await sandbox.close()
    except Exception as exc:
        log.warning("vote: closing a sandbox failed: %s", crash_message(exc))
