"""`codemonkeys github handle`: one Actions event in, at most one run out, and every outcome answered on the issue.

Order matters: acknowledge, check who asked, read the options, take the issue's run slot (a marker in the
bot's start comment; the earliest running marker wins a race), run the pipeline on the checkout, then
deliver — a draft pull request, or the patch as a comment when pull requests are not allowed — and mark the
start comment done. Failures after the start comment are answered with their (scrubbed) message."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from codemonkeys.config import Settings, merge, nest
from codemonkeys.github import messages
from codemonkeys.github.branch import PushError, branch_name, push_patch
from codemonkeys.github.client import Comment, GitHubClient, GitHubError, IssueRef, IssueThread, PullRequest
from codemonkeys.github.events import (
    COMMAND,
    Ignored,
    OptionsError,
    Trigger,
    classify,
    command_words,
    comment_settings,
    read_event,
)
from codemonkeys.github.issue_text import issue_text
from codemonkeys.github.messages import RunLinks
from codemonkeys.github.safety import ci_paths, may_trigger
from codemonkeys.llm import missing_key, scrub
from codemonkeys.problem import ProblemError, make_problem
from codemonkeys.result import SolveResult
from codemonkeys.store import InstanceStore

log = logging.getLogger("codemonkeys.github")

# A running marker older than this is a run that died without saying so (GitHub ends jobs at 6 hours).
STALE_AFTER = timedelta(hours=6)
FORBIDDEN_PR = "not permitted to create or approve pull requests"
DRAFT_UNSUPPORTED = "draft pull requests are not supported"

HANDLED, NO_PATCH, CANCELLED = 0, 1, 130


@dataclass
class BotConfig:
    event: Path
    repo: Path
    settings: Settings
    trigger_label: str
    token: str
    api_url: str | None = None
    repository: str | None = None
    run_url: str | None = None
    command: str = COMMAND
    step_summary: Path | None = None  # GITHUB_STEP_SUMMARY: the job's page shows what it appends there


class HandleError(Exception):
    """A failure after the run slot was taken: answered on the issue with this message."""

    def __init__(self, message: str, stage: str | None = None, result: SolveResult | None = None) -> None:
        super().__init__(message)
        self.stage = stage
        self.result = result


def handle(config: BotConfig) -> int:
    event = read_event(config.event, config.repository)
    decision = classify(event, config.trigger_label, config.command)
    if isinstance(decision, Ignored):
        log.info("nothing to do: %s", decision.reason)
        return HANDLED
    return _Bot(config, decision).run()


class _Bot:
    def __init__(self, config: BotConfig, trigger: Trigger) -> None:
        self.config = config
        self.trigger = trigger
        self.ref: IssueRef = trigger.ref
        self.gh = GitHubClient(config.token, config.api_url)
        self.thread: IssueThread | None = None
        self.links = RunLinks(run_url=config.run_url, command=config.command, label=config.trigger_label)

    def run(self) -> int:
        t = self.trigger
        log.info("%s on %s#%d by %s", t.kind, self.ref.slug, self.ref.number, t.actor)
        self._acknowledge()
        role = self.gh.permission(self.ref, t.actor)
        if not may_trigger(role):
            log.info("refused: %s has %s access", t.actor, role)
            self.gh.comment(self.ref, messages.not_permitted(t.actor, role))
            return HANDLED
        try:
            settings = self._settings()
        except OptionsError as exc:
            self.gh.comment(self.ref, messages.bad_options(str(exc), self.links))
            return HANDLED
        start = self._take_slot(settings)
        if start is None:
            return HANDLED
        outcome, code = "failed", NO_PATCH
        try:
            outcome, code = self._solve_and_deliver(settings)
        except HandleError as exc:
            log.error("failed: %s", exc)
            self.gh.comment(self.ref, messages.failed(scrub(str(exc)), exc.stage, exc.result, self.links))
        except KeyboardInterrupt:
            outcome, code = "cancelled (the workflow run was stopped).", CANCELLED
        except Exception as exc:
            message = scrub(f"{type(exc).__name__}: {exc}")
            log.error("crashed: %s", message)
            log.debug("crash", exc_info=True)
            self.gh.comment(self.ref, messages.failed(message, None, None, self.links))
        finally:
            self.gh.edit_comment(self.ref, start.id, messages.finished(start.body, outcome))
            self._summarize(outcome, start.html_url)
        return code

    def _summarize(self, outcome: str, comment_url: str) -> None:
        """The outcome on the workflow run's page too; a summary that cannot be written loses nothing else."""
        if self.config.step_summary is None:
            return
        try:
            with self.config.step_summary.open("a", encoding="utf-8") as fh:
                fh.write(messages.step_summary(f"{self.ref.slug}#{self.ref.number}", outcome, comment_url))
        except OSError as exc:
            log.warning("could not write the step summary: %s", exc)

    def _acknowledge(self) -> None:
        """A reaction at once, so the person sees the bot heard them; a failed reaction stops nothing."""
        try:
            self.gh.react(self.ref, "eyes", self.trigger.comment_id)
        except GitHubError as exc:
            log.warning("could not react: %s", exc)

    def _settings(self) -> Settings:
        base = self.config.settings
        if self.trigger.kind != "comment":
            return base
        words = command_words(self.trigger.comment_body)
        changes = comment_settings(words, base.models.names, base.budget.budget_usd)
        return Settings.model_validate(merge(base.model_dump(), nest(changes, "the comment")))

    def _take_slot(self, settings: Settings) -> Comment | None:
        """The start comment, unless a run of this issue is in progress: then that is answered instead."""
        running = _running(self.gh.comments(self.ref))
        if running is not None:
            log.info("a run is already in progress: %s", running.html_url)
            self.gh.comment(self.ref, messages.already_running(running.html_url, self.links))
            return None
        how = "the label" if self.trigger.kind == "label" else "a comment"
        start = self.gh.comment(self.ref, messages.started(settings, self.trigger.actor, how, self.links))
        earlier = _running([c for c in self.gh.comments(self.ref) if c.id < start.id])
        if earlier is not None:
            self.gh.edit_comment(self.ref, start.id, messages.superseded(earlier.html_url))
            return None
        return start

    def _solve_and_deliver(self, settings: Settings) -> tuple[str, int]:
        result, inst = self._solve(settings)
        if result.status == "no_candidate":
            self.gh.comment(self.ref, messages.no_candidate(result, self.links))
            return "no fix survived (see below).", NO_PATCH
        if result.status != "patched" or not result.patch:
            raise HandleError(result.error or result.status, result.stopped_stage, result)
        touched = ci_paths(result.patch)
        if touched:
            hint = messages.md.code(branch_name(self.ref.number))
            self.gh.comment(self.ref, messages.ci_refused(touched, hint, result, self.links))
            return "the patch touches CI configuration, so it was not proposed (see below).", NO_PATCH
        return self._deliver(result, inst)

    def _solve(self, settings: Settings) -> tuple[SolveResult, InstanceStore]:
        from codemonkeys.pipeline import solve_in_run_dir

        missing = missing_key(settings.models)
        if missing:
            raise HandleError(missing, "setup")
        thread = self.thread = self.gh.thread(self.ref)
        try:
            problem = make_problem(
                str(self.config.repo),
                None,
                issue_text(thread, self.config.command),
                Path(settings.run_dir or "runs") / "_repos",
                instance_id=f"{self.ref.owner}__{self.ref.repo}-{self.ref.number}",
            )
        except ProblemError as exc:
            raise HandleError(str(exc), "setup") from None
        stamp = os.environ.get("GITHUB_RUN_ID") or time.strftime("%Y%m%d-%H%M%S")
        root = Path(settings.run_dir or "runs") / f"issue-{self.ref.number}-{stamp}"
        settings = settings.model_copy(update={"run_dir": root})
        result, store = asyncio.run(solve_in_run_dir(problem, settings))
        return result, store.instance(problem.instance_id)

    def _deliver(self, result: SolveResult, inst: InstanceStore) -> tuple[str, int]:
        assert result.patch is not None
        number = self.ref.number
        problem = inst.problem.load()
        assert problem is not None
        try:
            default = self.gh.default_branch(self.ref)
            pushed = push_patch(
                self.config.repo,
                base=problem.commit,
                patch=result.patch,
                branch=branch_name(number),
                default_branch=default,
                message=f"Fix #{number}",
                token=self.config.token,
            )
        except (PushError, GitHubError) as exc:
            reason = f"The fix could not be pushed ({scrub(str(exc))}), so here it is as a comment."
            self.gh.comment(self.ref, messages.patch_comment(reason, None, result, inst, self.links))
            return "the branch could not be pushed; the patch is in a comment below.", NO_PATCH
        log.info("pushed %s (%s)", pushed.branch, pushed.sha[:12])
        title = self.thread.title if len(self.thread.title) <= 200 else self.thread.title[:199] + "…"
        title = f"Fix #{number}: {title}"
        body = messages.pull_body(number, result, inst, self.links)
        try:
            pull = self._open_pull(title, body, pushed.branch, default)
        except GitHubError as exc:
            if exc.status == 403 and FORBIDDEN_PR in str(exc).lower():
                reason = (
                    "This repository does not let GitHub Actions open pull requests (Settings → Actions → General "
                    "→ Workflow permissions), so the fix is here instead."
                )
                self.gh.comment(self.ref, messages.patch_comment(reason, pushed.branch, result, inst, self.links))
                return f"the fix is on branch `{pushed.branch}` and in a comment below.", HANDLED
            reason = f"The pull request could not be opened ({scrub(str(exc))})."
            self.gh.comment(self.ref, messages.patch_comment(reason, pushed.branch, result, inst, self.links))
            return f"the fix is on branch `{pushed.branch}`; opening the pull request failed.", NO_PATCH
        kind = "draft pull request" if pull.draft else "pull request"
        return f"{kind} #{pull.number} ({pull.html_url}).", HANDLED

    def _open_pull(self, title: str, body: str, branch: str, base: str) -> PullRequest:
        existing = self.gh.open_pull(self.ref, self.ref.owner, branch)
        if existing is not None:
            self.gh.update_pull(self.ref, existing.number, title=title, body=body)
            return existing
        try:
            return self.gh.create_pull(self.ref, title=title, body=body, head=branch, base=base, draft=True)
        except GitHubError as exc:
            if exc.status != 422 or DRAFT_UNSUPPORTED not in str(exc).lower():
                raise
        note = "(Draft pull requests are not available in this repository, so this one is a regular one.)"
        return self.gh.create_pull(self.ref, title=title, body=f"{note}\n\n{body}", head=branch, base=base, draft=False)


def _running(comments: list[Comment]) -> Comment | None:
    """The earliest live run marker in the bot's comments (people cannot hold the slot by pasting one)."""
    now = datetime.now(UTC)
    for comment in sorted(comments, key=lambda c: c.id):
        if not comment.author_is_bot or messages.marker_state(comment.body) != "running":
            continue
        if comment.created_at is None or now - comment.created_at < STALE_AFTER:
            return comment
    return None
