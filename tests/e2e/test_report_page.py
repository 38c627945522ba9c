"""report.html after a real solve (scripted model, real sandbox), read from the DOM of a real headless Chromium."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from tests.browser import rendered_dom, screenshot
from tests.e2e.oracle import oracle
from tests.e2e.test_solve import run, solve_args
from tests.e2e.toy_repo import make_toy_repo
from tests.fake_model_server import FakeModelServer

pytestmark = pytest.mark.slow

PROBE = """
const text = e => e ? e.textContent.trim() : null;
const m = document.getElementById('vote-matrix');
const out = {
  heads: [...m.tHead.rows[0].cells].map(text),
  scriptRows: [...m.tBodies[0].rows].filter(r => r.cells[0].querySelector('details')).length,
  context: [...document.querySelectorAll('#context-table tbody tr')].map(r => [...r.cells].map(text)),
  bars: [...document.querySelectorAll('#timeline rect.bar')].map(r => r.dataset.stage),
  barWidths: [...document.querySelectorAll('#timeline rect.bar')].map(r => r.getBoundingClientRect().width),
  patch: text(document.querySelector('#patch pre.diff')),
  added: [...document.querySelectorAll('#patch pre.diff span.add')].map(s => getComputedStyle(s).color),
  outputs: [...document.querySelectorAll('#trajectories summary')]
    .filter(s => s.textContent.startsWith('output on')).map(s => text(s.parentNode.querySelector('pre'))),
  selection: [...document.querySelectorAll('#selection-table tbody tr')].map(r => [...r.cells].map(text)),
  reasoning: text(document.querySelector('#selection pre.reasoning')),
};
const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
"""


def test_report_of_a_real_solve_in_a_browser(tmp_path: Path) -> None:
    repo = make_toy_repo(tmp_path)
    run_dir = tmp_path / "run"
    models = ["--model", "openai/right", "--model", "openai/wrong", "--samples", "2", "--top-k", "2"]
    with FakeModelServer(oracle) as server:
        proc = run(solve_args(repo, tmp_path, server, *models, "--run-dir", str(run_dir)))
    assert proc.returncode == 0, proc.stderr
    page = next(run_dir.glob("*/report.html"))
    result = json.loads((page.parent / "result.json").read_text())
    votes = json.loads((page.parent / "votes.json").read_text())
    assert result["candidates"] == 2 and (page.parent / "selection.json").exists()

    dom = rendered_dom(page, PROBE)
    probe = json.loads(html.unescape(re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S).group(1)))
    candidates = [h for h in probe["heads"] if h.startswith("candidate ")]
    assert len(candidates) == len(votes["candidate_ids"]) == 2
    assert (
        probe["heads"][:2] == ["script", "empty patch"]
        and f"candidate {result['chosen_candidate']} (chosen)" in candidates
    )
    assert probe["scriptRows"] == len(votes["scripts"]) == 2
    assert "mid - 1" in probe["patch"] and probe["added"] and probe["added"][0] != "rgb(31, 35, 40)"
    [stats] = [row for row in probe["context"] if row[0] == "calc/stats.py"]
    assert "defines median(), which the issue says is wrong." in stats[1] and stats[2] == "1" and stats[4] == "packed"
    ran = {"relevance", "ranking", "testing", "editing", "voting", "selection"}
    assert set(probe["bars"]) == set(result["stage_spans"]) and ran <= set(probe["bars"])
    assert all(w >= 1 for w in probe["barWidths"])
    assert any("median([1, 2, 3, 4]) =" in o for o in probe["outputs"])
    assert len(probe["selection"]) == 1 and len(probe["selection"][0]) == 4  # test, original, 2 candidates
    assert "averages the two middle values" in probe["reasoning"]

    assert screenshot(page, tmp_path / "report.png").stat().st_size > 10_000
