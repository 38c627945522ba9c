"""The context stage: which files the generation models see (relevance of every file, then ranking)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from codemonkeys.config import ContextSettings, ModelSettings
from codemonkeys.context.models import ContextResult
from codemonkeys.context.ranking import average_order, pack, rank_files
from codemonkeys.context.relevance import judge_files
from codemonkeys.llm import ModelCallError, ModelClient
from codemonkeys.problem import Problem
from codemonkeys.repo_files import OriginalFiles, list_source_files
from codemonkeys.stages import Stage, StageClock

if TYPE_CHECKING:  # the store imports this package's models
    from codemonkeys.store import InstanceStore

log = logging.getLogger("codemonkeys.context")


async def build_context(
    problem: Problem,
    client: ModelClient,
    models: ModelSettings,
    settings: ContextSettings,
    inst: InstanceStore,
    originals: OriginalFiles,
    clock: StageClock,
) -> ContextResult:
    """Resumable at every step: a saved result is returned as is, and finished model calls are never repeated.
    Every file read here is handed to `originals`, so the trajectories need not read it again."""
    saved = inst.context.load()
    if saved is not None:
        log.info("context: loaded (%d files, %d tokens)", len(saved.files), saved.tokens)
        return saved

    files, skipped = await asyncio.to_thread(
        list_source_files, Path(problem.repo_path), problem.commit, settings.max_file_tokens, settings.screen
    )
    originals.remember(files)
    reasons = Counter(s.category for s in skipped)
    why = ", ".join(f"{reason}: {n}" for reason, n in reasons.most_common())
    log.info(
        "context: %d source files read (%d tests, screened from their outlines), %d skipped%s (-v lists them)",
        len(files),
        sum(f.test for f in files),
        len(skipped),
        f" ({why})" if why else "",
    )
    with clock(Stage.RELEVANCE):
        verdicts = await judge_files(problem, files, client, models, settings, inst)
    failed = [v for v in verdicts if v.call_failed]
    if failed:
        # The provider failed even after retries: stop here so a rerun asks again for just these files,
        # rather than freezing a context with holes into ranking.json.
        raise ModelCallError(
            f"{len(failed)} of {len(verdicts)} files could not be judged: {failed[0].error}", Stage.RELEVANCE
        )
    relevant = [v for v in verdicts if v.relevant]
    errors = sum(v.relevant is None for v in verdicts)
    log.info("context: %d of %d files relevant (%d without a verdict)", len(relevant), len(verdicts), errors)

    by_path = {f.path: f for f in files}
    notes = [f"{errors} files have no relevance verdict (see their errors)"] if errors else []
    rankings: list[list[str]] = []
    ranked: list[str] = []
    if not relevant:
        notes.append("no file was judged relevant: the context is empty")
        log.warning("context: no file was judged relevant, the context is empty")
    else:
        with clock(Stage.RANKING):
            outcomes, listing_note = await rank_files(
                problem, relevant, by_path, client, models.names[0], settings, inst
            )
        notes += [listing_note] if listing_note else []
        rankings = [o.paths for o in outcomes if o.paths is not None]
        notes += [f"ranking {i} dropped: {o.error}" for i, o in enumerate(outcomes) if o.paths is None]
        if rankings:
            ranked = average_order(rankings, [v.path for v in relevant])
        else:
            ranked = [v.path for v in relevant]
            notes.append("every ranking was dropped: the relevant files are packed in path order")
            log.warning("context: every ranking was dropped, packing the relevant files in path order")
    packed = pack(ranked, by_path, settings.context_tokens, settings.max_file_tokens)
    left_out = [path for path in ranked if path not in {f.path for f in packed}]
    if left_out:
        notes.append(
            f"{len(left_out)} ranked file(s) did not fit the {settings.context_tokens}-token context budget: "
            + ", ".join(left_out)
        )
    result = ContextResult(
        files=packed, ranked=ranked, rankings=rankings, relevance=verdicts, skipped=skipped, notes=notes
    )
    inst.context.save(result)
    log.info("context: %d of %d ranked files packed, %d tokens", len(packed), len(ranked), result.tokens)
    return result
