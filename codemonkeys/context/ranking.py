"""Ranking: several models order the relevant files by need; the averaged order is packed into the budget."""

from __future__ import annotations

import asyncio
import json
import logging
from html import escape
from typing import TYPE_CHECKING

from pydantic import BaseModel

from codemonkeys.answers import AnswerFormatError, fenced_blocks
from codemonkeys.config import ContextSettings
from codemonkeys.context.models import ContextFile, FileRelevance
from codemonkeys.llm import ModelClient, RequestRefused
from codemonkeys.problem import Problem
from codemonkeys.prompts import render
from codemonkeys.repo_files import SourceFile, view
from codemonkeys.stages import Stage
from codemonkeys.window import CHARS_PER_TOKEN

if TYPE_CHECKING:  # the store imports this package's models
    from codemonkeys.store import InstanceStore

log = logging.getLogger("codemonkeys.context")

MIN_CONDENSED_TOKENS = 500
MIN_SUMMARY_CHARS = 80  # a summary cut shorter than this says nothing: the paths alone are listed  # an outline squeezed into less shows too little to be worth its place


class RankingOutcome(BaseModel):
    """One ranking conversation: the ranked paths, or why it was dropped."""

    paths: list[str] | None
    error: str | None = None


def parse_ranking(text: str, known: set[str]) -> list[str]:
    """The LAST fenced block holding a JSON list; unknown and repeated paths are dropped."""
    for block in reversed(fenced_blocks(text)):
        try:
            value = json.loads(block)
        except json.JSONDecodeError:
            continue
        if not isinstance(value, list):
            continue
        paths: list[str] = []
        for item in value:
            path = item.strip().removeprefix("./") if isinstance(item, str) else None
            if path in known and path not in paths:
                paths.append(path)
        if not paths:
            raise AnswerFormatError("None of the paths in your list is one of the relevant files listed above.")
        return paths
    raise AnswerFormatError(
        "I could not find a fenced code block holding a JSON list of file paths at the end of your answer."
    )


def average_order(rankings: list[list[str]], candidates: list[str]) -> list[str]:
    """Files by their mean position (0 = first) over the rankings; only files some ranking listed.

    A file a ranking left out counts there as if the left-out files had been appended in random order:
    position len(ranking) + (left_out - 1) / 2, their expected place. Ties go to the file more rankings
    listed, then to the path.
    """
    listed = {p for ranking in rankings for p in ranking}
    mean: dict[str, float] = {}
    for path in candidates:
        if path not in listed:
            continue
        total = 0.0
        for ranking in rankings:
            left_out = len(candidates) - len(ranking)
            total += ranking.index(path) if path in ranking else len(ranking) + (left_out - 1) / 2
        mean[path] = total / len(rankings)
    appearances = {p: sum(p in r for r in rankings) for p in mean}
    return sorted(mean, key=lambda p: (mean[p], -appearances[p], p))


def pack(
    ranked: list[str], files: dict[str, SourceFile], context_tokens: int, max_file_tokens: int
) -> list[ContextFile]:
    """Takes files in ranked order while they fit. One that does not fit whole goes in as its outline (or
    head and tail) when that fits what is left; otherwise it is skipped and smaller ones still go in."""
    packed: list[ContextFile] = []
    used = 0
    for path in ranked:
        shown = view(files[path], max_file_tokens)
        left = context_tokens - used
        if shown.tokens > left and left >= MIN_CONDENSED_TOKENS:
            shown = view(files[path], left)
        if shown.tokens > left:
            log.info("context: %s (%d tokens) does not fit, skipped", path, shown.tokens)
            continue
        used += shown.tokens
        packed.append(ContextFile(path=path, text=shown.text, tokens=shown.tokens, outline=shown.kind != "whole"))
    return packed


def file_listing(
    relevant: list[FileRelevance], files: dict[str, SourceFile], max_file_tokens: int, budget_chars: int
) -> tuple[str, str | None]:
    """Every relevant file with its size and summary, within `budget_chars`: summaries are shortened evenly
    when they do not all fit, dropped when even short ones do not, and files left off last (said in the
    prompt and in the returned note)."""
    heads = []
    for verdict in relevant:
        shown = view(files[verdict.path], max_file_tokens)
        note = "" if shown.kind == "whole" else f' shown="{shown.kind} of a {verdict.tokens}-token file"'
        heads.append(f'<file path="{escape(verdict.path)}" tokens="{shown.tokens}"{note}>')
    summaries = [v.summary for v in relevant]
    room = budget_chars - sum(len(h) + len("\n\n</file>\n\n") for h in heads)
    if sum(map(len, summaries)) > room:
        cap = room // max(len(summaries), 1)
        summaries = [t if len(t) <= cap else t[: max(cap - 2, 0)].rstrip() + " …" for t in summaries]
        if cap < MIN_SUMMARY_CHARS:
            summaries = [""] * len(summaries)
    entries, used, left_off = [], 0, 0
    for head, summary in zip(heads, summaries, strict=True):
        entry = f"{head}\n{summary}\n</file>" if summary else f"{head}</file>"
        if used + len(entry) > budget_chars:
            left_off += 1
            continue
        entries.append(entry)
        used += len(entry) + 2
    if left_off:
        entries.append(f"({left_off} more relevant files are not listed: the ranking model's window is too small)")
    cut = summaries != [v.summary for v in relevant]
    if not (cut or left_off):
        return "\n\n".join(entries), None
    note = f"the ranking prompt was fitted to the window: summaries {'shortened' if cut else 'kept'}"
    return "\n\n".join(entries), note + (f", {left_off} relevant files left off" if left_off else "")


async def rank_files(
    problem: Problem,
    relevant: list[FileRelevance],
    files: dict[str, SourceFile],
    client: ModelClient,
    model: str,
    settings: ContextSettings,
    inst: InstanceStore,
) -> tuple[list[RankingOutcome], str | None]:
    """`settings.rankings` independent rankings, run concurrently; each one's calls are recorded for resume.
    A ranking the model answered badly twice is dropped; a failing provider (ModelCallError) stops them all,
    so a rerun asks again instead of freezing a context built on fewer rankings."""

    def prompt_with(listing: str) -> str:
        return render(
            "ranking",
            issue=problem.issue.strip(),
            file_count=len(relevant),
            files=listing,
            target_tokens=settings.context_tokens // 2,
            max_tokens=settings.context_tokens,
        )

    window = client.window(model)
    room = (window.opening - window.count(prompt_with(""))) * CHARS_PER_TOKEN
    listing, note = file_listing(relevant, files, settings.max_file_tokens, room)
    if note:
        log.warning("ranking: %s", note)
    prompt = prompt_with(listing)
    known = {v.path for v in relevant}
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(_rank_once(i, prompt, known, problem, client, model, inst))
                for i in range(settings.rankings)
            ]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks], note


async def _rank_once(
    index: int,
    prompt: str,
    known: set[str],
    problem: Problem,
    client: ModelClient,
    model: str,
    inst: InstanceStore,
) -> RankingOutcome:
    bound = client.bind(
        model=model, instance=problem.instance_id, stage=Stage.RANKING, record=inst.ranking_calls(index)
    )
    messages = [{"role": "user", "content": prompt}]
    try:
        answer = await bound.ask(messages)
        try:
            return RankingOutcome(paths=parse_ranking(answer, known))
        except AnswerFormatError as first:
            messages += [
                {"role": "assistant", "content": answer},
                {"role": "user", "content": render("ranking_retry", problem=str(first))},
            ]
            answer = await bound.ask(messages)
            return RankingOutcome(paths=parse_ranking(answer, known))
    except RequestRefused as exc:
        log.warning("ranking %d dropped: %s", index, exc)
        return RankingOutcome(paths=None, error=str(exc))
    except AnswerFormatError as again:
        log.warning("ranking %d: unparsable answer twice, dropped", index)
        return RankingOutcome(paths=None, error=f"unparsable answer twice: {again} The answer ended: {answer[-300:]!r}")
