"""`index.html`: a run's front page. The batch's figures and what each means, the coverage plot (embedded, so
the page is one file that can be mailed or archived), the spend, and one sortable row per instance linking
to its `report.html`."""

from __future__ import annotations

import base64
from pathlib import Path

from codemonkeys.figures import BatchFigures, InstanceFigures
from codemonkeys.html_page import esc, page, table
from codemonkeys.jsonfiles import atomic_write_text
from codemonkeys.plot import plot_coverage

_MEANINGS = (
    (
        "resolved rate",
        "resolved_rate",
        "the submitted patch passes the instance's tests (FAIL_TO_PASS and PASS_TO_PASS)",
    ),
    ("coverage", "coverage", "some candidate of the run resolves the instance: the ceiling for voting and selection"),
    ("majority vote", "majority", "the top-voted candidate resolves it (selection skipped)"),
    ("selection", "selection", "the candidate the run chose resolves it"),
    (
        "random pick",
        "random",
        "expected score of picking one trajectory's patch at random: c ÷ trajectories with a patch",
    ),
    (
        "oracle gap recovered",
        "oracle_gap_recovered",
        "(selection − random) ÷ (coverage − random): how much of the room above chance selection takes",
    ),
    ("context recall", "recall", "share of the gold patch's files that the context stage packed into the prompt"),
)


def write_index(run_dir: Path, figures: BatchFigures) -> Path:
    """Writes `index.html` and, beside it, `coverage.png` (the same image the page embeds)."""
    png = plot_coverage(figures, run_dir / "coverage.png")
    image = base64.b64encode(png.read_bytes()).decode("ascii")
    body = [
        f"<h1>Run {esc(run_dir.resolve().name)}</h1>",
        f"<p class=note>{figures.instances} instance(s) finished, {figures.unfinished} without result.json, "
        f"{figures.evaluated} evaluated. Scores are means over the instances where they are known.</p>",
        "<h2>Figures</h2>",
        _figures_table(figures),
        f'<p><img id="coverage-plot" alt="coverage against samples per instance" width=750 height=500 '
        f'src="data:image/png;base64,{image}"></p>',
        _forecast_table(figures),
        "<h2>Spend</h2>",
        _spend_table(figures),
        "<h2>Instances</h2>",
        "<p class=note>Click a header to sort; c/n is trajectories whose patch resolves over trajectories.</p>",
        _instances_table(figures.rows),
    ]
    path = run_dir / "index.html"
    atomic_write_text(path, page(f"CodeMonkeys run {run_dir.resolve().name}", "\n".join(body)))
    return path


def _figures_table(figures: BatchFigures) -> str:
    rows = [[esc(label), _percent(getattr(figures, field)), esc(meaning)] for label, field, meaning in _MEANINGS]
    rows.append(
        ["samples run", esc(figures.samples), "most trajectories of an evaluated instance (the pass@k curve's end)"]
    )
    if figures.fit is not None:
        fit = f"exp({figures.fit.a:.3f}·k^{figures.fit.b:.3f})"
        rows.append(["coverage fit", esc(fit), "least squares on log(−log coverage) = log(−a) + b·log k"])
    return table(["figure", "value", "meaning"], rows, id="figures")


def _forecast_table(figures: BatchFigures) -> str:
    if not figures.forecast:
        return "<p class=note>No forecast: the run needs candidate verdicts (swebench eval --candidates RUN).</p>"
    rows = [[esc(f.k), _percent(f.coverage), _money(f.usd)] for f in figures.forecast]
    note = "<p class=note>Cost: the run's mean USD per trajectory × k × instances.</p>"
    return table(["samples per instance", "forecast coverage", "forecast USD"], rows, id="forecast") + note


def _spend_table(figures: BatchFigures) -> str:
    stages = sorted(figures.usd_by_stage.items(), key=lambda item: -item[1])
    rows = [[esc(stage), _money(usd)] for stage, usd in stages]
    rows.append(["<b>total</b>", f"<b>{_money(figures.usd_total)}</b>"])
    rows.append(["per instance", _money(figures.usd_per_instance)])
    rows.append(["per trajectory", _money(figures.usd_per_trajectory)])
    return table(["stage", "USD"], rows, id="spend")


def _instances_table(rows: list[InstanceFigures]) -> str:
    headers = ["instance", "status", "resolved", "covered", "majority", "candidates", "c/n", "recall", "USD", "seconds"]
    cells = []
    classes = []
    for r in rows:
        share = r.correct / r.trajectories if r.correct is not None and r.trajectories else -1
        cells.append(
            [
                f'<a href="{esc(r.link)}">{esc(r.instance_id)}</a>',
                esc(r.status.replace("_", " ")),
                _flag(r.resolved),
                _flag(r.covered),
                _flag(r.majority),
                esc(r.candidates),
                f'<span data-sort="{share:.4f}">{"–" if r.correct is None else r.correct}/{r.trajectories}</span>',
                _percent(r.recall),
                f"{r.usd:.2f}",
                f"{r.seconds:.0f}",
            ]
        )
        classes.append(["", "", _class(r.resolved), _class(r.covered), _class(r.majority)])
    return table(headers, cells, sortable=True, id="instances", classes=classes)


def _flag(value: bool | None) -> str:
    """Sorts yes, no, unknown as 1, 0, -1."""
    if value is None:
        return '<span data-sort="-1">–</span>'
    return f'<span data-sort="{int(value)}">{"yes" if value else "no"}</span>'


def _class(value: bool | None) -> str:
    return "muted" if value is None else "ok" if value else "bad"


def _percent(value: float | None) -> str:
    if value is None:
        return '<span data-sort="-1">–</span>'
    shown = round(100 * value, 1) + 0.0  # + 0.0 shows a rounded -0.0 as 0.0
    return f'<span data-sort="{value:.4f}">{shown:.1f}%</span>'


def _money(value: float | None) -> str:
    if value is None:
        return "–"
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"
