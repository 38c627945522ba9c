"""Relevance: one cheap model call per source file decides whether it matters for the issue, and says why."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING

from codemonkeys.answers import AnswerFormatError
from codemonkeys.config import ContextSettings, ModelSettings
from codemonkeys.context.models import FileRelevance
from codemonkeys.jsonfiles import JsonlAppender, read_jsonl
from codemonkeys.llm import ModelCallError, ModelClient, RequestRefused
from codemonkeys.mentions import issue_identifiers
from codemonkeys.problem import Problem
from codemonkeys.prompts import render
from codemonkeys.repo_files import FileView, SourceFile, screen_view
from codemonkeys.stages import Stage
from codemonkeys.window import estimate

if TYPE_CHECKING:  # the store imports this package's models
    from codemonkeys.store import InstanceStore

log = logging.getLogger("codemonkeys.context")

SUMMARY_LIMIT = 2000
PROMPT_TOKENS = 1_000  # the relevance prompt's own text, without the issue and the file

_VERDICT = re.compile(
    r"^[ \t>*#_`-]*RELEVANCE[ \t*_`]*:[ \t*_`]*(not[ \t_-]*relevant|irrelevant|relevant)\b",
    re.IGNORECASE | re.MULTILINE,
)
_SUMMARY = re.compile(r"^[ \t>*#_`-]*SUMMARY[ \t*_`]*:[ \t*`]*", re.IGNORECASE | re.MULTILINE)

_VIEW_NOTES = {
    "whole": "",
    "outline": " (too large to show whole: this is its outline, the classes and functions with their line ranges)",
    "excerpt": " (too large to show whole: this is its beginning and its end)",
}
_TEST_NOTES = {
    "whole": " (a test file)",
    "outline": " (a test file, shown as its outline: its classes, tests and helpers with their parameters)",
    "excerpt": " (a test file, shown as its beginning and its end)",
}
_MENTIONS_NOTE = ", followed by the lines that mention identifiers from the issue"


def view_note(file: SourceFile, shown: FileView) -> str:
    """Tells the model what part of the file it is looking at."""
    note = (_TEST_NOTES if file.test else _VIEW_NOTES)[shown.kind]
    return note[:-1] + _MENTIONS_NOTE + ")" if shown.mentions else note


def parse_relevance(text: str) -> tuple[bool, str]:
    """(relevant, summary) from the LAST verdict line, so reasoning that quotes the format does not count."""
    verdicts = list(_VERDICT.finditer(text))
    if not verdicts:
        raise AnswerFormatError(
            "I could not find a line starting with `RELEVANCE:` followed by `Relevant` or `Not Relevant`."
        )
    verdict = verdicts[-1]
    if not verdict.group(1).lower().startswith("relevant"):
        return False, ""
    summary_match = _SUMMARY.search(text, verdict.end())
    summary = _clean_summary(text[summary_match.end() :]) if summary_match else ""
    if not summary:
        raise AnswerFormatError("Your verdict was `Relevant`, but no `SUMMARY:` with text followed it.")
    return True, summary


def _clean_summary(text: str) -> str:
    """Drops a closing code fence or bold marker the model wrapped the answer in, and caps the length."""
    text = re.sub(r"\n\s*```\s*$", "", text.strip()).strip().removesuffix("**").strip()
    if len(text) > SUMMARY_LIMIT:
        text = text[:SUMMARY_LIMIT].rstrip() + " …"
    return text


def load_verdicts(inst: InstanceStore) -> dict[str, FileRelevance]:
    """Verdicts already paid for; a failed call is not one (it is asked again)."""
    verdicts = {}
    for record in read_jsonl(inst.relevance_log):
        verdict = FileRelevance.model_validate(record)
        if not verdict.call_failed:
            verdicts[verdict.path] = verdict
    return verdicts


async def judge_files(
    problem: Problem,
    files: list[SourceFile],
    client: ModelClient,
    models: ModelSettings,
    settings: ContextSettings,
    inst: InstanceStore,
) -> list[FileRelevance]:
    """A verdict for every file, in the order of `files`; each is appended to the log as soon as it is known."""
    done = load_verdicts(inst)
    # A file is shown whole up to the screen's limit, and never beyond what the relevance model's window leaves.
    window = client.window(models.relevance)
    limit = (
        min(settings.screen_file_tokens, settings.max_file_tokens)
        if settings.screen == "code"
        else settings.max_file_tokens
    )
    shown_tokens = max(min(limit, window.budget - estimate(problem.issue) - PROMPT_TOKENS), 100)
    # The same for every file of the problem, so it goes first, in the cached prefix.
    shared = {"role": "system", "content": render("relevance", issue=problem.issue.strip())}
    identifiers = issue_identifiers(problem.issue)
    todo = [f for f in files if f.path not in done]
    log.info("relevance: %d files to ask about (%d already judged)", len(todo), len(files) - len(todo))
    # Bounds the prompts held in memory at once; the client bounds the requests.
    gate = asyncio.Semaphore(models.model_concurrency)
    progress = _Progress(len(todo))
    verdict_log = JsonlAppender(inst.relevance_log)

    async def judge_and_record(file: SourceFile) -> FileRelevance:
        async with gate:
            verdict = await _judge(
                problem, file, client, models.relevance, shared, screen_view(file, shown_tokens, identifiers)
            )
        verdict_log.append(verdict.model_dump())
        progress.tick()
        return verdict

    try:
        with verdict_log:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(judge_and_record(f)) for f in todo]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    for task in tasks:
        verdict = task.result()
        done[verdict.path] = verdict
    return [done[f.path] for f in files]


class _Progress:
    """Logs every tenth of the way, so a long relevance pass shows it is moving."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.step = max(total // 10, 1)

    def tick(self) -> None:
        self.done += 1
        if self.done % self.step == 0 or self.done == self.total:
            log.info("relevance: %d/%d files judged", self.done, self.total)


async def _judge(
    problem: Problem, file: SourceFile, client: ModelClient, model: str, shared: dict[str, str], shown: FileView
) -> FileRelevance:
    prompt = render("relevance_file", path=file.path, content=shown.text, view_note=view_note(file, shown))
    messages = [shared, {"role": "user", "content": prompt}]

    async def ask() -> str:
        return await client.complete(
            messages, model=model, instance=problem.instance_id, stage=Stage.RELEVANCE, cache_prefix=1
        )

    try:
        answer = await ask()
        try:
            relevant, summary = parse_relevance(answer)
        except AnswerFormatError as first:
            messages += [
                {"role": "assistant", "content": answer},
                {"role": "user", "content": render("relevance_retry", problem=str(first))},
            ]
            answer = await ask()
            relevant, summary = parse_relevance(answer)
    except AnswerFormatError as again:
        log.warning("relevance: unparsable answer twice for %s", file.path)
        error = f"unparsable answer twice: {again} The answer ended: {answer[-300:]!r}"
        return FileRelevance(path=file.path, tokens=file.tokens, relevant=None, error=error)
    except RequestRefused as exc:
        log.warning("relevance: %s", exc)
        return FileRelevance(path=file.path, tokens=file.tokens, relevant=None, error=str(exc))
    except ModelCallError as exc:
        log.warning("relevance: model call failed for %s: %s", file.path, exc)
        return FileRelevance(
            path=file.path, tokens=file.tokens, relevant=None, error=f"model call failed: {exc}", call_failed=True
        )
    return FileRelevance(path=file.path, tokens=file.tokens, relevant=relevant, summary=summary)
