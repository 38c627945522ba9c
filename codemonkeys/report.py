"""`report.html`: one self-contained page per problem for a person reviewing what the run did and why."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from codemonkeys.jsonfiles import atomic_write_text
from codemonkeys.result import SolveResult
from codemonkeys.sandbox.base import Outcome
from codemonkeys.trajectories.models import EditingResult, TestingResult, Turn, VoteResult
from codemonkeys.voting import collect_candidates

if TYPE_CHECKING:  # the store imports the result model this page shows
    from codemonkeys.store import InstanceStore

_STYLE = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em}
pre{background:#f6f8fa;padding:.8em;overflow:auto;white-space:pre-wrap}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th:first-child,td:first-child{text-align:left}
.ok{background:#dfd}.bad{background:#fdd}details{margin:.4em 0}"""


def write_report(inst: InstanceStore, result: SolveResult) -> Path:
    problem = inst.problem.load()
    testing = inst.all_testing()
    editing = inst.all_editing()
    votes = inst.votes.load()
    parts = [
        f"<h1>{escape(result.instance_id)}: {escape(result.status.replace('_', ' '))}</h1>",
        _summary(result),
        f"<h2>Issue</h2><pre>{escape(problem.issue if problem else '')}</pre>",
    ]
    if result.patch:
        parts.append(f"<h2>Chosen patch (candidate {result.chosen_candidate})</h2><pre>{escape(result.patch)}</pre>")
    parts.append(_usage(result))
    if votes is not None:
        parts.append(_votes(votes))
    candidates = collect_candidates(editing)
    if candidates:
        parts.append("<h2>Candidates</h2>")
        for c in candidates:
            summary = (
                f"candidate {c.id}: from trajectories {c.sources}, {votes.votes.get(c.id, 0) if votes else '?'} votes"
            )
            parts.append(f"<details><summary>{escape(summary)}</summary><pre>{escape(c.patch)}</pre></details>")
    parts.append("<h2>Trajectories</h2>")
    parts += [_trajectory(t, e) for t, e in _pairs(testing, editing)]
    page = f"<!doctype html><meta charset=utf-8><title>{escape(result.instance_id)}</title><style>{_STYLE}</style>"
    path = inst.report_path
    atomic_write_text(path, page + "\n".join(parts) + "\n")
    return path


def _summary(result: SolveResult) -> str:
    rows = {
        "trajectories": result.trajectories,
        "distinct candidates": result.candidates,
        "selection fell back to the top vote": result.selection_fallback,
        "stopped in": result.stopped_stage or "",
        "sandbox": result.sandbox,
        "cost (USD)": f"{result.cost_usd:.4f}",
        "seconds": result.seconds,
        "error": result.error or "",
    }
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows.items())
    return f"<table>{body}</table>"


def _usage(result: SolveResult) -> str:
    head = (
        "<tr><th>stage</th><th>calls</th><th>input</th><th>cached</th><th>output</th><th>errors</th><th>USD</th></tr>"
    )
    rows = "".join(
        f"<tr><td>{escape(stage)}</td><td>{t.calls}</td><td>{t.prompt_tokens}</td><td>{t.cached_tokens}</td>"
        f"<td>{t.completion_tokens}</td><td>{t.errors}</td><td>{t.cost_usd:.4f}</td></tr>"
        for stage, t in result.usage.items()
    )
    return f"<h2>Model usage</h2><table>{head}{rows}</table>"


def _votes(votes: VoteResult) -> str:
    head = "<tr><th>script</th><th>empty patch</th>" + "".join(f"<th>cand. {c}</th>" for c in votes.candidate_ids)
    rows = []
    for s, script in enumerate(votes.scripts):
        cells = [votes.empty_patch[s] if s < len(votes.empty_patch) else None, *votes.matrix[s]]
        tds = "".join(
            f"<td class={'ok' if seen is Outcome.FIXED else 'bad'}>{'-' if seen is None else seen}</td>"
            for seen in cells
        )
        label = f"<details><summary>script {s}</summary><pre>{escape(script)}</pre></details>"
        rows.append(f"<tr><td>{label}</td>{tds}</tr>")
    totals = "".join(f"<td>{votes.votes.get(c, 0)}</td>" for c in votes.candidate_ids)
    rows.append(f"<tr><th>votes</th><td></td>{totals}</tr>")
    return f"<h2>Votes (exit code 0 = fixed)</h2><table>{head}</tr>{''.join(rows)}</table>"


def _pairs(testing: list[TestingResult], editing: list[EditingResult]) -> list[tuple[TestingResult, EditingResult]]:
    by_index = {e.index: e for e in editing}
    return [(t, by_index[t.index]) for t in testing if t.index in by_index]


def _trajectory(testing: TestingResult, editing: EditingResult) -> str:
    outcome = "candidate" if editing.patch else f"no candidate ({editing.error or testing.error or 'no edit applied'})"
    turns = "".join(_turn("testing", t) for t in testing.turns) + "".join(_turn("editing", t) for t in editing.turns)
    script = f"<pre>{escape(editing.script or testing.script or '')}</pre>"
    return (
        f"<details><summary>trajectory {testing.index}: {escape(outcome)}</summary><ol>{turns}</ol>{script}</details>"
    )


def _turn(stage: str, turn: Turn) -> str:
    runs = [
        f"{name} exit {run.exit_code}" for name, run in (("original", turn.original), ("edited", turn.edited)) if run
    ]
    error = f" — {turn.error}" if turn.error else ""
    return f"<li>{stage} {escape(turn.kind)}: {escape(', '.join(runs))}{escape(error)}</li>"
