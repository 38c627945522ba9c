"""`report.html`: one self-contained page per problem for a person reviewing what the run did and why.

Everything shown that came from a model or a repository is escaped. Every section reads its own records and
says so when they are missing (a run that stopped early, an older run directory), so a partial run still
gets its page."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import ValidationError

from codemonkeys.answers import AnswerFormatError
from codemonkeys.config import Settings
from codemonkeys.context.models import ContextResult, FileRelevance
from codemonkeys.html_page import details, diff_html, esc, page, table
from codemonkeys.jsonfiles import atomic_write_text, read_jsonl
from codemonkeys.llm import Transcript
from codemonkeys.problem import Problem
from codemonkeys.result import SolveResult
from codemonkeys.sandbox.base import Outcome
from codemonkeys.swebench.pooling import Pool, Provenance
from codemonkeys.trajectories.models import (
    OUTPUT_KEPT,
    Candidate,
    EditingResult,
    ScriptRun,
    SelectionResult,
    TestingResult,
    Turn,
    VoteResult,
)
from codemonkeys.trajectories.tags import Kind, parse_answer
from codemonkeys.voting import stored_candidates

if TYPE_CHECKING:  # the store imports the result model this page shows
    from pathlib import Path

    from codemonkeys.store import InstanceStore

_CHOICE = re.compile(r"<chosen_candidate_fix_id", re.IGNORECASE)
_STAGE_COLOURS = {
    "relevance": "#8250df",
    "ranking": "#bf3989",
    "sandbox": "#6e7781",
    "testing": "#0969da",
    "editing": "#1a7f37",
    "voting": "#bc4c00",
    "selection": "#cf222e",
}


def write_report(inst: InstanceStore, result: SolveResult) -> Path:
    problem = inst.problem.load()
    testing, editing = inst.all_testing(), inst.all_editing()
    votes, selection, pool = inst.votes.load(), inst.selection.load(), inst.pool.load()
    candidates = stored_candidates(pool, editing)
    sections = [
        ("summary", "Summary", _summary(result, problem, pool)),
        ("issue", "Issue", f"<pre>{esc(problem.issue)}</pre>" if problem else _missing("problem.json")),
        ("context", "Context", _context(inst, pool)),
        ("patch", "Chosen patch", _patch(result)),
        ("votes", "Votes", _votes(votes, editing, result.chosen_candidate)),
        ("candidates", "Candidates", _candidates(candidates, votes, result.chosen_candidate, pool)),
        ("trajectories", "Trajectories", _trajectories(inst, testing, editing, pool)),
        ("selection", "Selection", _selection(inst, selection, votes)),
        ("timeline", "Timeline", _timeline(result)),
        ("usage", "Model usage", _usage(result)),
    ]
    nav = " · ".join(f'<a href="#{key}">{esc(title)}</a>' for key, title, _ in sections)
    body = [f"<h1>{esc(result.instance_id)}: {esc(result.status.replace('_', ' '))}</h1><nav>{nav}</nav>"]
    body += [f'<section id="{key}"><h2>{esc(title)}</h2>{html}</section>' for key, title, html in sections]
    path = inst.report_path
    atomic_write_text(path, page(f"{result.instance_id}: {result.status}", "\n".join(body)))
    return path


def _missing(what: str) -> str:
    return f'<p class="note">Not recorded: {esc(what)} is missing (the run stopped before it, or is older).</p>'


def _summary(result: SolveResult, problem: Problem | None, pool: Pool | None) -> str:
    chosen = "none"
    if result.chosen_candidate is not None:
        how = "selection fell back to the top vote" if result.selection_fallback else "chosen"
        chosen = f"candidate {result.chosen_candidate} ({how})"
    stopped = f"{result.stopped_stage}: {result.error}" if result.stopped_stage else (result.error or "")
    rows = [
        ("status", result.status.replace("_", " ")),
        ("chosen candidate", chosen),
        ("votes", ", ".join(f"candidate {c}: {n}" for c, n in sorted(result.votes.items())) or "-"),
        ("cost (USD)", f"{result.cost_usd:.4f}"),
        ("wall time (s)", f"{result.seconds:.1f}"),
        ("trajectories", result.trajectories),
        ("distinct candidates", result.candidates),
        ("stopped", stopped or "no (ran to the end)"),
        ("sandbox", result.sandbox or "-"),
        ("repository", f"{problem.repo_path} @ {problem.commit}" if problem else "-"),
    ]
    if pool is not None:
        proposals = sum(len(p.provenance) for p in pool.patches)
        empty = f"; empty from {', '.join(_named(pool.empty))}" if pool.empty else ""
        rows.append(("pooled (ensemble)", f"{proposals} proposal(s) of {len(pool.patches)} distinct fix(es){empty}"))
    if result.unpriced_models:
        rows.append(("models without a price (USD 0)", ", ".join(result.unpriced_models)))
    html = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    ended = "".join(f"<li>{esc(e)}</li>" for e in result.ended_early)
    ended_html = f"<p>Conversations that ended early, keeping what they had:</p><ul>{ended}</ul>" if ended else ""
    return f"<table>{html}</table>{ended_html}"


def _relevance(inst: InstanceStore, context: ContextResult | None) -> list[FileRelevance]:
    """The ranking record's verdicts, else (a run stopped during relevance) those appended so far."""
    if context is not None and context.relevance:
        return context.relevance
    verdicts = []
    for record in read_jsonl(inst.relevance_log):
        try:
            verdicts.append(FileRelevance.model_validate(record))
        except ValidationError:
            continue
    return verdicts


def _context(inst: InstanceStore, pool: Pool | None) -> str:
    context = inst.context.load()
    verdicts = _relevance(inst, context)
    if context is None and not verdicts:
        if pool is not None:
            return "<p>None gathered: an ensemble pools the candidates other runs wrote with their own context.</p>"
        return _missing("context/ranking.json")
    ranked = {p: i + 1 for i, p in enumerate(context.ranked)} if context else {}
    packed = {f.path: f for f in context.files} if context else {}
    relevant = [v for v in verdicts if v.relevant]
    relevant.sort(key=lambda v: (ranked.get(v.path, len(ranked) + 1), v.path))
    rows, classes = [], []
    for v in relevant:
        rank = ranked.get(v.path)
        kept = packed.get(v.path)
        state, cls = (
            ("outlined", "warn") if kept and kept.outline else ("packed", "ok") if kept else ("dropped", "muted")
        )
        if context is None:
            state = "not ranked yet"
        rows.append(
            [
                f"<code>{esc(v.path)}</code>",
                esc(v.summary),
                f'<span data-sort="{rank or ""}">{rank or "-"}</span>',
                f'<span data-sort="{v.tokens}">{v.tokens:,}</span>',
                state,
            ]
        )
        classes.append(["", "", "num", "num", cls])
    unclear = sum(v.relevant is None for v in verdicts)
    parts = [
        f"<p>{len(verdicts)} files screened, {len(relevant)} judged relevant"
        + (f", {unclear} without a usable verdict" if unclear else "")
        + (f"; {len(packed)} packed into the editing prompt" if context else "; ranking did not finish")
        + ".</p>",
        table(
            ["path", "summary", "rank", "tokens", "in the prompt"],
            rows,
            sortable=True,
            id="context-table",
            classes=classes,
        ),
    ]
    if context and context.skipped:
        counts = Counter(s.category for s in context.skipped).most_common()
        parts.append(
            details(
                f"{len(context.skipped)} files not screened",
                table(["reason", "files"], [[esc(r), str(n)] for r, n in counts], classes=[["", "num"]] * len(counts)),
            )
        )
    if context and context.notes:
        parts.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in context.notes) + "</ul>")
    return "".join(parts)


def _patch(result: SolveResult) -> str:
    if not result.patch:
        return f"<p>No patch was chosen ({esc(result.status.replace('_', ' '))}).</p>"
    return f"<p>Candidate {esc(result.chosen_candidate)}.</p>{diff_html(result.patch)}"


def _verdict(outcome: Outcome | None) -> tuple[str, str]:
    """A cell's text and class: green only for a vote, red for a script saying not fixed, yellow otherwise."""
    if outcome is None:
        return "sandbox error", "warn"
    return str(outcome), {Outcome.FIXED: "ok", Outcome.NOT_FIXED: "bad"}.get(outcome, "warn")


def _votes(votes: VoteResult | None, editing: list[EditingResult], chosen: int | None) -> str:
    if votes is None:
        return _missing("votes.json")
    authors: dict[str, list[int]] = {}
    for e in editing:
        if e.script:
            authors.setdefault(e.script.strip(), []).append(e.index)
    headers = ["script", "empty patch"] + [
        f"candidate {c}" + (" (chosen)" if c == chosen else "") for c in votes.candidate_ids
    ]
    rows, classes = [], []
    for s, script in enumerate(votes.scripts):
        cells = [votes.empty_patch[s] if s < len(votes.empty_patch) else None, *votes.matrix[s]]
        shown = [_verdict(seen) for seen in cells]
        by = authors.get(script.strip(), [])
        label = f"script {s}" + (f" (trajectories {', '.join(map(str, by))})" if by else "")
        if s in votes.suspicious:
            label += " — passes without a fix"
        rows.append([details(label, f"<pre>{esc(script)}</pre>")] + [text for text, _ in shown])
        classes.append([""] + [cls for _, cls in shown])
    rows.append(["<b>votes</b>", ""] + [f"<b>{votes.votes.get(c, 0)}</b>" for c in votes.candidate_ids])
    top = ", ".join(f"candidate {c}" for c in votes.top) or "-"
    error = f'<p class="bad">{esc(votes.error)}</p>' if votes.error else ""
    note = "<p>Each final test script ran on every candidate and on the empty patch; exit 0 (fixed) is a vote.</p>"
    return f"{note}{table(headers, rows, id='vote-matrix', classes=classes)}<p>Top: {esc(top)}.</p>{error}"


def _named(provenance: list[Provenance]) -> list[str]:
    return [f"{p.name or '(unnamed)'} ({p.origin})" for p in provenance]


def _candidates(candidates: list[Candidate], votes: VoteResult | None, chosen: int | None, pool: Pool | None) -> str:
    if not candidates:
        return "<p>Nothing was pooled.</p>" if pool is not None else "<p>No trajectory produced a patch.</p>"
    proposed = {p.id: _named(p.provenance) for p in pool.patches} if pool is not None else {}
    parts = []
    for c in candidates:
        count = votes.votes.get(c.id, 0) if votes else "?"
        tags = [t for t, on in (("chosen", c.id == chosen), ("top", votes and c.id in votes.top)) if on]
        origin = (
            f"proposed by {', '.join(proposed.get(c.id, []))}"
            if pool is not None
            else f"from trajectories {', '.join(map(str, c.sources))}"
        )
        label = (
            f"candidate {c.id}{' [' + ', '.join(tags) + ']' if tags else ''}: {count} vote{'' if count == 1 else 's'}, "
            f"{origin}; changes {', '.join(c.paths) or '-'}"
        )
        parts.append(details(label, diff_html(c.patch)))
    return "".join(parts)


def _run_cell(name: str, run: ScriptRun | None) -> str:
    if run is None:
        return ""
    text, cls = _verdict(run.outcome)
    return f'<span class="{cls}">{esc(name)}: {esc(text)} (exit {run.exit_code}, {run.seconds:.1f}s)</span>'


def _output(name: str, run: ScriptRun | None) -> str:
    if run is None or not run.output:
        return ""
    note = f'<p class="note">Only the last {OUTPUT_KEPT:,} characters were kept.</p>' if run.clipped else ""
    return details(f"output on {name}", f"{note}<pre>{esc(run.output)}</pre>")


def _answers(path: Path) -> list[str]:
    """A conversation's model answers (its `*.calls.json`); none when it is missing or unreadable."""
    return Transcript.read(path).responses


def _body(answers: list[str], turn: Turn) -> str | None:
    """What the turn's answer carried (a script, edit blocks), re-read from the transcript."""
    if turn.kind not in ("test", "edit") or not 0 < turn.call <= len(answers):
        return None
    kind: Kind = "test" if turn.kind == "test" else "edit"
    try:
        return parse_answer(answers[turn.call - 1], (kind,)).body
    except AnswerFormatError:
        return None


def _turns(stage: str, turns: list[Turn], answers: list[str]) -> str:
    items = []
    for turn in turns:
        runs = " ".join(_run_cell(n, r) for n, r in (("original", turn.original), ("edited", turn.edited)) if r)
        body = _body(answers, turn)
        what = {"test": "script", "edit": "edit blocks"}.get(turn.kind, "answer")
        parts = [
            f"<b>{esc(stage)} turn {turn.call}: {esc(turn.kind)}</b> {runs}",
            f"<pre class=bad>{esc(turn.error)}</pre>" if turn.error else "",
            details(what, f"<pre>{esc(body)}</pre>") if body is not None else "",
            _output("the original code", turn.original),
            _output("the edited code", turn.edited),
        ]
        items.append(f"<li>{''.join(parts)}</li>")
    return f"<ul>{''.join(items)}</ul>" if items else "<p>No model turns.</p>"


def _model_of(inst: InstanceStore) -> Callable[[int], str]:
    """Trajectory i's model, from the run's settings (`models[i % len(models)]`); unknown without them."""
    path = inst.root.parent / "config.json"
    names: list[str] = []
    if path.exists():
        try:
            names = Settings.model_validate_json(path.read_text(encoding="utf-8")).models.names
        except ValidationError:
            names = []
    return lambda i: names[i % len(names)] if names else "model unknown"


def _trajectories(
    inst: InstanceStore, testing: list[TestingResult], editing: list[EditingResult], pool: Pool | None
) -> str:
    if not testing and not editing:
        if pool is not None:
            return "<p>None: the candidates were pooled, and the runs' own test scripts voted (or nothing needed a vote).</p>"
        return _missing("testing/ and editing/")
    tested, edited = {t.index: t for t in testing}, {e.index: e for e in editing}
    model = _model_of(inst)
    parts = []
    for i in sorted(tested.keys() | edited.keys()):
        t, e = tested.get(i), edited.get(i)
        if e is None and pool is not None:
            outcome = "its script votes" if t and t.script else f"no script ({(t and t.error) or 'none written'})"
        elif e is None:
            outcome = "editing not finished"
        elif e.patch:
            outcome = "a candidate" + (f", its script {_verdict(e.edited.outcome)[0]}" if e.edited else "")
        else:
            outcome = f"no candidate ({e.error or (t and t.error) or 'no edit applied'})"
        html = []
        if t is not None:
            html.append(_turns("testing", t.turns, _answers(inst.testing(i).calls)))
        if e is not None:
            html.append(_turns("editing", e.turns, _answers(inst.editing(i).calls)))
            if e.script:
                html.append(details("final test script", f"<pre>{esc(e.script)}</pre>"))
        parts.append(details(f"trajectory {i} ({model(i)}): {outcome}", "".join(html)))
    return "".join(parts)


def _selection(inst: InstanceStore, selection: SelectionResult | None, votes: VoteResult | None) -> str:
    if selection is None:
        if votes is not None and len(votes.top) == 1:
            return f"<p>Only candidate {votes.top[0]} reached selection: it was taken without a model call.</p>"
        return _missing("selection.json")
    top = votes.top if votes else []
    answers = _answers(inst.selection.calls)
    head = (
        f"<p>Chose candidate {selection.chosen_candidate}"
        + (" by falling back to the top vote" if selection.fallback else "")
        + (f" ({esc(selection.error)})" if selection.error else "")
        + ".</p>"
    )
    tests = [t for t in selection.turns if t.kind == "test"]
    rows, classes, more = [], [], []
    for n, turn in enumerate(tests):
        runs = [turn.original, *turn.candidates]
        shown = [_verdict(r.outcome) if r else ("-", "muted") for r in runs]
        rows.append([f"test {n}"] + [text for text, _ in shown])
        classes.append([""] + [cls for _, cls in shown])
        body = _body(answers, turn)
        outputs = _output("the original code", turn.original) + "".join(
            _output(f"candidate {top[j] if j < len(top) else j}", r) for j, r in enumerate(turn.candidates)
        )
        more.append(details(f"test {n}", (f"<pre>{esc(body)}</pre>" if body is not None else "") + outputs))
    # turn.candidates[j] ran on votes.top[j]; without votes.json only the position is known
    shown_count = max((len(t.candidates) for t in tests), default=0)
    columns = ["test", "original code"] + [
        f"candidate {top[j]}" if j < len(top) else f"top candidate #{j}" for j in range(shown_count)
    ]
    parts = [head]
    if tests:
        parts += [table(columns, rows, id="selection-table", classes=classes), *more]
    else:
        parts.append("<p>The model wrote no test.</p>")
    reasoning = _reasoning(answers) if not selection.fallback else None
    if reasoning:
        parts.append(f'<h3>Reasoning</h3><pre class="reasoning">{esc(reasoning)}</pre>')
    return "".join(parts)


def _reasoning(answers: list[str]) -> str | None:
    """The last answer's text before its choice tag: why the model chose."""
    if not answers:
        return None
    last = answers[-1]
    found = list(_CHOICE.finditer(last))
    return last[: found[-1].start()].strip() if found else None


def _timeline(result: SolveResult) -> str:
    spans = {stage: s for stage, s in result.stage_spans.items() if s}
    if not spans:
        return _missing("the stage spans in result.json")
    end = max(stop for s in spans.values() for _, stop in s) or 1.0
    width, label, row = 1000, 90, 26
    bars = []
    for n, (stage, stage_spans) in enumerate(spans.items()):
        y = n * row
        colour = _STAGE_COLOURS.get(stage, "#57606a")
        bars.append(f'<text x="0" y="{y + 17}" font-size="13">{esc(stage)}</text>')
        for start, stop in stage_spans:
            x = label + start / end * (width - label)
            w = max((stop - start) / end * (width - label), 4.0)  # visible even when the SVG is drawn at 1/4 size
            bars.append(
                f'<rect class="bar" data-stage="{esc(stage)}" x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{row - 8}"'
                f' fill="{colour}"><title>{esc(stage)}: {start:.1f}s to {stop:.1f}s</title></rect>'
            )
    height = len(spans) * row
    svg = (
        f'<svg role="img" aria-label="stage timeline" viewBox="0 0 {width} {height}" width="100%" '
        f'style="max-width:{width}px">{"".join(bars)}</svg>'
    )
    totals = ", ".join(f"{esc(s)} {result.stage_seconds.get(s, 0):.1f}s" for s in spans)
    return f"{svg}<p class=note>0 to {end:.1f}s of this process's run; time per stage: {totals}.</p>"


def _usage(result: SolveResult) -> str:
    if not result.usage:
        return "<p>No model calls were recorded.</p>"
    rows = [
        [
            esc(stage),
            str(t.calls),
            f"{t.prompt_tokens:,}",
            f"{t.cached_tokens:,}",
            f"{t.completion_tokens:,}",
            str(t.errors),
            f"{t.cost_usd:.4f}",
        ]
        for stage, t in result.usage.items()
    ]
    totals = list(result.usage.values())
    rows.append(
        [
            "<b>total</b>",
            str(sum(t.calls for t in totals)),
            f"{sum(t.prompt_tokens for t in totals):,}",
            f"{sum(t.cached_tokens for t in totals):,}",
            f"{sum(t.completion_tokens for t in totals):,}",
            str(sum(t.errors for t in totals)),
            f"<b>{result.cost_usd:.4f}</b>",
        ]
    )
    headers = ["stage", "calls", "input tokens", "cached tokens", "output tokens", "errors", "USD"]
    return table(headers, rows, classes=[["", *["num"] * 6]] * len(rows))
