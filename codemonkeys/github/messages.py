"""Every comment and pull request body the bot writes. Whatever came from the issue, the repository or a model
goes through `markdown` first; the finished text goes through `scrub` (no credential leaves the process)."""

from __future__ import annotations

import re

from pydantic import BaseModel

from codemonkeys.answers import AnswerFormatError
from codemonkeys.config import Settings
from codemonkeys.github import markdown as md
from codemonkeys.llm import Transcript, scrub
from codemonkeys.result import SolveResult
from codemonkeys.store import InstanceStore
from codemonkeys.trajectories.tags import clean_script, parse_answer
from codemonkeys.voting import collect_candidates

_MARKER = re.compile(r"<!-- codemonkeys:run state=(\w+) -->")
SIGNATURE = "— CodeMonkeys bot"


class RunLinks(BaseModel):
    """Where a reader can find the run: the workflow run's page (when Actions says) and the rerun command."""

    run_url: str | None = None
    command: str = "/codemonkeys"
    label: str = "codemonkeys"


def marker(state: str) -> str:
    return f"<!-- codemonkeys:run state={state} -->"


def marker_state(body: str) -> str | None:
    found = _MARKER.search(body)
    return found.group(1) if found else None


def settings_line(settings: Settings) -> str:
    budget = f"{settings.budget.budget_usd:g} USD" if settings.budget.budget_usd is not None else "no cap"
    models = ", ".join(md.code(m) for m in settings.models.names)
    return (
        f"models {models}, {settings.generation.samples} samples, {settings.generation.iterations} iterations, "
        f"top {settings.generation.top_k} to selection, budget {budget}, sandbox {md.code(settings.sandbox.kind)}"
    )


def started(settings: Settings, actor: str, how: str, links: RunLinks) -> str:
    run = f" ([workflow run]({links.run_url}))" if links.run_url else ""
    return _finish(
        marker("running"),
        f"Working on this issue{run}, asked by @{actor} ({how}).",
        f"Settings: {settings_line(settings)}.",
        "A draft pull request or a comment follows when the run ends.",
    )


def finished(start_body: str, outcome: str) -> str:
    """The start comment once the run has ended: its marker says so, and it points at the outcome."""
    body = _MARKER.sub(marker("done"), start_body, count=1).replace(
        "A draft pull request or a comment follows when the run ends.", f"**Finished**: {outcome}"
    )
    return scrub(body)


def step_summary(issue: str, outcome: str, comment_url: str) -> str:
    """The workflow run's summary: which issue (a repository slug and number: nothing to escape), how it ended,
    and where the details are."""
    link = f" ([the run's comment on the issue]({comment_url}))" if comment_url else ""
    return scrub(f"### CodeMonkeys on {issue}\n\n**Finished**: {outcome}{link}\n")


def already_running(running_url: str, links: RunLinks) -> str:
    return _finish(
        f"A CodeMonkeys run for this issue is already in progress ([its comment]({running_url})), so this trigger "
        "did not start another one. Trigger it again once that run has finished.",
        links=links,
    )


def superseded(other_url: str) -> str:
    return _finish(
        marker("superseded"),
        f"Another trigger started a run on this issue a moment earlier ([its comment]({other_url})); "
        "this one did not start.",
    )


def not_permitted(actor: str, role: str) -> str:
    return _finish(
        f"Thanks for the interest, @{actor}. Only people with write, maintain or admin access to this repository "
        f"can start CodeMonkeys (it spends the team's model budget and pushes branches); your access is "
        f"{md.code(role)}. A maintainer can start it with the label or the command.",
    )


def bad_options(problem: str, links: RunLinks) -> str:
    return _finish(
        f"Nothing was started: {md.text(problem)}.",
        f"Example: {md.code(links.command + ' --samples 5 --iterations 6')}.",
    )


def ci_refused(paths: list[str], branch_hint: str, result: SolveResult, links: RunLinks) -> str:
    listed = ", ".join(md.code(p) for p in paths)
    return _finish(
        marker("refused"),
        f"The chosen patch changes CI configuration ({listed}). CodeMonkeys never pushes such a change or opens "
        f"a pull request for it, so {branch_hint} was not pushed. {_cost(result)}",
        links=links,
        rerun=True,
    )


def no_candidate(result: SolveResult, links: RunLinks) -> str:
    tried = (
        f"{result.trajectories} trajectories ran and produced {result.candidates} distinct candidate patches"
        if result.trajectories
        else "no trajectory finished"
    )
    ended = ""
    if result.ended_early:
        reasons = "\n".join(f"- {md.text(r)}" for r in result.ended_early[:10])
        ended = f"\n\nConversations that ended early:\n{reasons}"
    return _finish(
        f"No fix survived: {tried}; none was left to propose. {_cost(result)}{ended}",
        links=links,
        rerun=True,
    )


def failed(error: str, stage: str | None, result: SolveResult | None, links: RunLinks) -> str:
    where = f" in the {md.text(stage)} stage" if stage else ""
    resumable = result is not None and result.status == "budget_exhausted"
    advice = "Raise the `budget` input, or trigger it again." if resumable else ""
    cost = _cost(result) if result is not None else ""
    return _finish(
        f"The run failed{where}:",
        md.block(md.clip(error, 2_000)),
        f"{cost} {advice}".strip(),
        links=links,
        rerun=True,
    )


def patch_comment(reason: str, branch: str | None, result: SolveResult, inst: InstanceStore, links: RunLinks) -> str:
    where = f" It is on the branch {md.code(branch)}." if branch else ""
    return _finish(
        f"{reason}{where} The patch:",
        md.block(md.clip(result.patch or "", 40_000), "diff"),
        _details_sections(result, inst),
        links=links,
        rerun=True,
    )


def pull_body(number: int, result: SolveResult, inst: InstanceStore, links: RunLinks, note: str = "") -> str:
    run = f" in [this workflow run]({links.run_url})" if links.run_url else ""
    return _finish(
        f"Fixes #{number}: a draft written by CodeMonkeys{run}. Review it as you would any contribution.",
        note,
        "### The change",
        md.block(md.clip(result.patch or "", 30_000), "diff"),
        _details_sections(result, inst),
        links=links,
        rerun=True,
    )


def _details_sections(result: SolveResult, inst: InstanceStore) -> str:
    return "\n\n".join(s for s in (_votes(result, inst), _reasoning(inst), _tests(inst), _usage(result)) if s)


def _votes(result: SolveResult, inst: InstanceStore) -> str:
    candidates = collect_candidates(inst.all_editing())
    if not candidates:
        return ""
    rows = ["| candidate | votes | from trajectories | files | |", "|---:|---:|---|---|---|"]
    for c in candidates:
        chosen = "**chosen**" if c.id == result.chosen_candidate else ""
        files = ", ".join(md.code(p) for p in c.paths) or "-"
        sources = ", ".join(str(s) for s in c.sources)
        rows.append(f"| {c.id} | {result.votes.get(c.id, 0)} | {sources} | {files} | {chosen} |")
    fallback = " Selection fell back to the top vote." if result.selection_fallback else ""
    head = (
        f"### Candidates and votes\n{result.trajectories} trajectories, {len(candidates)} distinct candidates; "
        f"each test script that the trajectories wrote votes for the candidates it passes.{fallback}"
    )
    return head + "\n\n" + "\n".join(rows)


def _selection_answers(inst: InstanceStore) -> list[str]:
    path = inst.selection.calls
    return Transcript.read(path).responses


def _reasoning(inst: InstanceStore) -> str:
    answers = _selection_answers(inst)
    if not answers:
        return ""
    last = answers[-1]
    cut = last.lower().find("<chosen_candidate_fix_id")
    reason = (last[:cut] if cut >= 0 else last).strip()
    if not reason:
        return ""
    return "### Why this candidate\nThe selection model's last words:\n\n" + md.block(md.clip(reason, 4_000), "text")


def _tests(inst: InstanceStore) -> str:
    votes = inst.votes.load()
    scripts = list(votes.scripts) if votes else []
    selection = []
    for answer in _selection_answers(inst):
        try:
            parsed = parse_answer(answer, {"test", "choose"})
        except AnswerFormatError:
            continue
        if parsed.kind == "test" and parsed.body.strip():
            selection.append(clean_script(parsed.body))
    sections = [
        md.details(f"reproduction test {i + 1} (voted)", md.block(md.clip(s, 6_000), "python"))
        for i, s in enumerate(scripts[:10])
    ]
    sections += [
        md.details(f"selection test {i + 1}", md.block(md.clip(s, 6_000), "python"))
        for i, s in enumerate(selection[:5])
    ]
    if not sections:
        return ""
    more = len(scripts) - 10
    extra = f"\n\n({more} more reproduction tests are in the run directory.)" if more > 0 else ""
    return "### Tests it wrote\n" + "\n".join(sections) + extra


def _usage(result: SolveResult) -> str:
    rows = ["| stage | calls | input tokens | cached | output tokens | USD |", "|---|---:|---:|---:|---:|---:|"]
    for stage, t in result.usage.items():
        rows.append(
            f"| {stage} | {t.calls} | {t.prompt_tokens:,} | {t.cached_tokens:,} | {t.completion_tokens:,} "
            f"| {t.cost_usd:.4f} |"
        )
    rows.append(f"| **total** | | | | | **{result.cost_usd:.4f}** |")
    unpriced = (
        f"\n\nNo price is known for {', '.join(md.code(m) for m in result.unpriced_models)}: counted as 0 USD."
        if result.unpriced_models
        else ""
    )
    return f"### Cost\n{result.seconds:.0f} s in all.\n\n" + "\n".join(rows) + unpriced


def _cost(result: SolveResult) -> str:
    tokens = sum(t.prompt_tokens + t.completion_tokens for t in result.usage.values())
    return f"It used {tokens:,} tokens and {result.cost_usd:.4f} USD in {result.seconds:.0f} s."


def _finish(*parts: str, links: RunLinks | None = None, rerun: bool = False) -> str:
    body = [p for p in parts if p]
    if rerun and links is not None:
        body.append(
            f"To run it again, comment {md.code(links.command)} (options such as {md.code('--samples 5')}) or add "
            f"the {md.code(links.label)} label again."
        )
    body.append(SIGNATURE)
    return md.clip(scrub("\n\n".join(body)), md.BODY_LIMIT)
