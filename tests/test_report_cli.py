"""`codemonkeys report`: the pages and the JSON it writes for a hand-built run, and the index in a real browser
(the plot decodes, links reach the instance pages, the table sorts, a 500-instance page renders quickly)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codemonkeys.cli import app
from codemonkeys.figures import BatchFigures, batch_figures
from codemonkeys.index_page import write_index
from codemonkeys.store import RunStore
from tests.browser import rendered_dom
from tests.run_builder import add_instance, big_run, diff, known_run

runner = CliRunner()


def test_report_writes_every_page_and_prints_where(tmp_path: Path) -> None:
    run = tmp_path / "run"
    known_run(run)
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert "wrote 5 report(s), skipped 1 without result.json" in result.stdout
    assert str(run / "index.html") in result.stdout
    for iid in ("org__a-1", "org__b-2", "org__c-3", "org__d-4", "org__f-5"):
        assert RunStore(run).instance(iid).report_path.is_file()
    assert not RunStore(run).instance("org__e-6").report_path.exists()
    assert (run / "coverage.png").read_bytes().startswith(b"\x89PNG")
    index = (run / "index.html").read_text()
    assert 'id="figures"' in index and 'id="instances"' in index
    assert re.search(r'<img id="coverage-plot"[^>]* src="data:image/png;base64,iVBOR', index)
    assert '<a href="org__a-1/report.html">org__a-1</a>' in index


def test_report_json_is_the_figures_and_alone_on_stdout(tmp_path: Path) -> None:
    run = tmp_path / "run"
    gold = known_run(run)
    dataset = tmp_path / "gold.jsonl"
    dataset.write_text(
        "".join(
            json.dumps({"instance_id": i, "repo": "org/r", "base_commit": "abcd", "problem_statement": "", "patch": p})
            + "\n"
            for i, p in gold.items()
        )
    )
    result = runner.invoke(app, ["report", str(run), "--json", "--dataset", str(dataset)])
    assert result.exit_code == 0, result.output
    printed = BatchFigures.model_validate_json(result.stdout)
    assert printed == batch_figures(run, gold=gold)
    assert printed.recall == pytest.approx(0.75)
    assert "wrote 5 report(s)" in result.stderr


def test_report_on_a_solve_run_and_with_an_eval_dir_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "runs" / "one"
    add_instance(run, "owner__repo-7", [diff("a.py", "x")], top=[0], chosen=0, usage={"editing": 0.1})
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    result = runner.invoke(app, ["report", str(run), "--open", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert (figures["instances"], figures["evaluated"], figures["coverage"]) == (1, 0, None)
    assert opened == [(run / "index.html").resolve().as_uri()]

    elsewhere = tmp_path / "eval-run"
    elsewhere.mkdir()
    (elsewhere / "verdicts.jsonl").write_text(
        json.dumps({"instance_id": "owner__repo-7", "candidate": "", "resolved": True}) + "\n"
    )
    result = runner.invoke(app, ["report", str(run), "--eval", str(elsewhere), "--json"])
    assert json.loads(result.stdout)["resolved_rate"] == 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing"], "run directory not found"),
        (["empty"], "is not a run directory"),
        (["run", "--eval", "empty"], "no verdicts.jsonl"),
        (["run", "--dataset", "nope.jsonl"], "no such file"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "empty").mkdir()
    add_instance(tmp_path / "run", "x-1", [None], top=[], chosen=None, usage={})
    result = runner.invoke(app, ["report", *(str(tmp_path / a) if not a.startswith("--") else a for a in args)])
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_markup_from_instances_is_escaped(tmp_path: Path) -> None:
    run = tmp_path / "run"
    add_instance(run, "<script>alert(1)</script>", [None], top=[], chosen=None, usage={'<img src=x onerror="a">': 1.0})
    index = write_index(run, batch_figures(run)).read_text()
    assert "<script>alert(1)" not in index and "&lt;script&gt;alert(1)&lt;/script&gt;" in index
    assert "<img src=x" not in index and "&lt;img src=x onerror=&quot;a&quot;&gt;" in index


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("big") / "run"
    big_run(run, 500, 10)
    return run


def test_a_500_instance_index_stays_small(big: Path) -> None:
    run = big
    started = time.monotonic()
    figures = batch_figures(run)
    index = write_index(run, figures)
    seconds = time.monotonic() - started
    assert figures.instances == 500 and figures.coverage == pytest.approx(167 / 500)
    assert index.stat().st_size < 1_000_000, f"{index.stat().st_size} bytes"
    assert seconds < 20, f"{seconds:.1f} s"


@pytest.mark.slow
def test_the_index_in_a_browser_plot_links_and_sorting(tmp_path: Path) -> None:
    run = tmp_path / "run"
    known_run(run)
    assert runner.invoke(app, ["report", str(run)]).exit_code == 0
    probe = """
    const img = document.getElementById('coverage-plot');
    document.body.dataset.plot = img.complete && img.naturalWidth > 0;
    document.body.dataset.links = JSON.stringify([...document.querySelectorAll('#instances a')].map(a => a.href));
    const first = () => document.querySelector('#instances tbody tr td').textContent;
    const usd = [...document.querySelectorAll('#instances thead th')].find(th => th.textContent === 'USD');
    usd.click();
    document.body.dataset.ascending = first();
    usd.click();
    document.body.dataset.descending = first();
    """
    dom = rendered_dom(run / "index.html", probe)
    body = re.search(r"<body([^>]*)>", dom)
    assert body is not None
    attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', body.group(1)))
    assert attrs["plot"] == "true"
    links = json.loads(attrs["links"].replace("&quot;", '"'))
    assert len(links) == 5
    for link in links:
        assert link.startswith("file://") and Path(link.removeprefix("file://")).is_file(), link
    assert (attrs["ascending"], attrs["descending"]) == ("org__d-4", "org__a-1")  # USD 0.20 and 1.00


@pytest.mark.slow
def test_a_500_instance_index_renders_in_a_browser(big: Path) -> None:
    page = write_index(big, batch_figures(big))
    probe = """
    const img = document.getElementById('coverage-plot');
    document.body.dataset.plot = img.complete && img.naturalWidth > 0;
    document.body.dataset.rows = document.querySelectorAll('#instances tbody tr').length;
    const t = performance.now();
    document.querySelector('#instances thead th').click();
    document.body.dataset.sortms = Math.round(performance.now() - t);
    """
    started = time.monotonic()
    dom = rendered_dom(page, probe)
    seconds = time.monotonic() - started
    assert 'data-plot="true"' in dom and 'data-rows="500"' in dom
    sort_ms = int(re.search(r'data-sortms="(\d+)"', dom).group(1))  # type: ignore[union-attr]
    assert sort_ms < 1000 and seconds < 30, (sort_ms, seconds)
