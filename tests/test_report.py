"""report.html from hand-built run directories: hostile text from models and repositories stays text, every
section is there, and a partial run directory still gets its page."""

from __future__ import annotations

import re
from pathlib import Path

from codemonkeys.context.models import ContextFile, ContextResult, FileRelevance
from codemonkeys.html_page import esc
from codemonkeys.llm import StageTotals, Transcript
from codemonkeys.problem import Problem
from codemonkeys.repo_files import SkippedFile
from codemonkeys.report import write_report
from codemonkeys.result import SolveResult
from codemonkeys.sandbox.base import Outcome
from codemonkeys.store import InstanceStore, RunStore
from codemonkeys.trajectories.models import (
    OUTPUT_KEPT,
    EditingResult,
    ScriptRun,
    SelectionResult,
    TestingResult,
    Turn,
    VoteResult,
)

SECTIONS = (
    "summary",
    "issue",
    "context",
    "patch",
    "votes",
    "candidates",
    "trajectories",
    "selection",
    "timeline",
    "usage",
)


def hostile(where: str) -> str:
    return f"<script>alert('{where}')</script></pre>\"'&{where}"


def diff(path: str, line: str) -> str:
    return f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-old\n+{line}\n"


def write(text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def full_run(root: Path) -> tuple[InstanceStore, SolveResult]:
    inst = RunStore(root).instance("org__repo-1")
    inst.problem.save(Problem(instance_id="org__repo-1", repo_path="/r", commit="abc", issue=hostile("issue")))
    path = f"pkg/{hostile('path')}.py"
    inst.context.save(
        ContextResult(
            files=[
                ContextFile(path=path, text="", tokens=10),
                ContextFile(path="b.py", text="", tokens=5, outline=True),
            ],
            ranked=[path, "b.py", "c.py"],
            relevance=[
                FileRelevance(path=path, tokens=10, relevant=True, summary=hostile("summary")),
                FileRelevance(path="b.py", tokens=900, relevant=True, summary="b"),
                FileRelevance(path="c.py", tokens=7, relevant=True, summary="c"),
                FileRelevance(path="d.py", tokens=7, relevant=False),
            ],
            skipped=[SkippedFile(path="x.png", reason="binary"), SkippedFile(path="y.png", reason="binary")],
            notes=[hostile("note")],
        )
    )
    script = hostile("script")
    long_output = "x" * (OUTPUT_KEPT - len(hostile("output"))) + hostile("output")
    original = ScriptRun(exit_code=2, output=long_output)
    inst.testing(0).save(
        TestingResult(index=0, script=script, original=original, turns=[Turn(call=1, kind="test", original=original)])
    )
    write(Transcript(responses=[f"plan\n<test>\n{script}</test>"]).model_dump_json(), inst.testing(0).calls)
    patches = [diff("a.py", hostile("diff")), diff("a.py", "other")]
    for i, patch in enumerate(patches):
        edited = ScriptRun(exit_code=0 if i == 0 else 1, output=f"edited {i}")
        turn = Turn(call=1, kind="edit", original=original, edited=edited, error=hostile("turn-error") if i else None)
        inst.editing(i).save(
            EditingResult(index=i, script=script, patch=patch, touched=["a.py"], turns=[turn], edited=edited)
        )
    inst.votes.save(
        VoteResult(
            scripts=[script, "other script"],
            candidate_ids=[0, 1],
            matrix=[[Outcome.FIXED, Outcome.NOT_FIXED], [Outcome.FIXED, None]],
            empty_patch=[Outcome.NOT_FIXED, Outcome.SCRIPT_ERROR],
            votes={0: 2, 1: 0},
            top=[0, 1],
        )
    )
    run = ScriptRun(exit_code=2, output="sel")
    test_turn = Turn(call=1, kind="test", original=run, candidates=[ScriptRun(exit_code=0), run])
    inst.selection.save(SelectionResult(chosen_candidate=0, turns=[test_turn, Turn(call=2, kind="choose")]))
    answers = [
        f"<test>\n{hostile('selection-test')}</test>",
        f"{hostile('reasoning')}\n<chosen_candidate_fix_id>0</chosen_candidate_fix_id>",
    ]
    write(Transcript(responses=answers).model_dump_json(), inst.selection.calls)
    result = SolveResult(
        instance_id="org__repo-1",
        status="patched",
        patch=patches[0],
        chosen_candidate=0,
        votes={0: 2, 1: 0},
        candidates=2,
        trajectories=2,
        usage={"testing": StageTotals(calls=2, prompt_tokens=1000, cost_usd=0.5)},
        cost_usd=0.5,
        stage_spans={"testing": [(0.0, 2.0)], "editing": [(1.0, 3.0), (4.0, 5.0)]},
        stage_seconds={"testing": 2.0, "editing": 3.0},
    )
    inst.result.save(result)
    return inst, result


def section(html: str, key: str) -> str:
    found = re.search(rf'<section id="{key}">(.*?)</section>', html, re.S)
    assert found, f"no #{key} section"
    return found.group(1)


def test_hostile_text_from_every_source_stays_text(tmp_path: Path):
    inst, result = full_run(tmp_path)
    html = write_report(inst, result).read_text(encoding="utf-8")
    assert html.count("<script>") == 1, "only the page's own script"
    assert html.count("<pre") == html.count("</pre>")
    places = {
        "issue": "issue",
        "path": "context",
        "summary": "context",
        "note": "context",
        "script": "votes",
        "output": "trajectories",
        "turn-error": "trajectories",
        "diff": "candidates",
        "selection-test": "selection",
        "reasoning": "selection",
    }
    for where, key in places.items():
        assert esc(hostile(where)) in section(html, key), where


def test_every_section_is_filled(tmp_path: Path):
    inst, result = full_run(tmp_path)
    html = write_report(inst, result).read_text(encoding="utf-8")
    for key in SECTIONS:
        assert "Not recorded" not in section(html, key), key
    context = section(html, "context")
    assert "4 files screened, 3 judged relevant" in context and "2 files not screened" in context
    assert re.findall(r"<td class=\"(ok|warn|muted)\">(packed|outlined|dropped)</td>", context) == [
        ("ok", "packed"),
        ("warn", "outlined"),
        ("muted", "dropped"),
    ]
    votes = section(html, "votes")
    assert votes.count('<td class="ok">fixed</td>') == 2 and '<td class="warn">sandbox error</td>' in votes
    assert "<th>candidate 0 (chosen)</th>" in votes and "<b>2</b>" in votes
    assert 'class="add">+' in section(html, "patch")
    assert "Only the last 4,000 characters were kept." in section(html, "trajectories")
    assert section(html, "trajectories").count("<summary>trajectory ") == 2
    selection = section(html, "selection")
    assert '<table id="selection-table">' in selection and "<th>candidate 1</th>" in selection
    assert '<td class="ok">fixed</td><td class="bad">not fixed</td>' in selection
    timeline = section(html, "timeline")
    assert timeline.count('data-stage="editing"') == 2 and timeline.count('data-stage="testing"') == 1
    assert "<b>0.5000</b>" in section(html, "usage")


def test_a_run_dir_with_only_problem_and_result_gets_every_section(tmp_path: Path):
    inst = RunStore(tmp_path).instance("i")
    inst.problem.save(Problem(instance_id="i", repo_path="/r", commit="abc", issue="the issue"))
    result = SolveResult(instance_id="i", status="budget_exhausted", stopped_stage="relevance", error="spent")
    inst.result.save(result)
    html = write_report(inst, result).read_text(encoding="utf-8")
    for key in SECTIONS:
        section(html, key)
    for key in ("context", "votes", "trajectories", "selection", "timeline"):
        assert "Not recorded" in section(html, key), key
    assert "relevance: spent" in section(html, "summary") and "the issue" in section(html, "issue")


def test_a_run_stopped_in_relevance_shows_the_verdicts_so_far(tmp_path: Path):
    inst = RunStore(tmp_path).instance("i")
    write(
        FileRelevance(path="a.py", tokens=3, relevant=True, summary="sum").model_dump_json() + "\n{torn",
        inst.relevance_log,
    )
    result = SolveResult(instance_id="i", status="model_error", stopped_stage="relevance")
    html = write_report(inst, result).read_text(encoding="utf-8")
    context = section(html, "context")
    assert "1 files screened, 1 judged relevant; ranking did not finish" in context
    assert '<td class="muted">not ranked yet</td>' in context
    assert "Not recorded" in section(html, "issue")


def test_selection_without_votes_names_candidates_by_position(tmp_path: Path):
    inst, result = full_run(tmp_path)
    inst.votes.path.unlink()
    html = write_report(inst, result).read_text(encoding="utf-8")
    selection = section(html, "selection")
    assert "<th>top candidate #0</th><th>top candidate #1</th></tr>" in selection
    assert "Not recorded: votes.json" in section(html, "votes")
