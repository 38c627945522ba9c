"""`coverage.png`: measured pass@k against samples, the fitted power law carried out to the forecast, and what
those samples would cost. Drawn on a bare `Figure` (matplotlib's Agg canvas, no pyplot): no display, no global state
shared between threads."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from codemonkeys.figures import BatchFigures


def plot_coverage(figures: BatchFigures, path: Path) -> Path:
    fig = Figure(figsize=(7.5, 5), dpi=100)
    ax = fig.subplots()
    ks = list(range(1, figures.samples + 1))
    if ks:
        ax.plot(ks, figures.pass_at_k, "o-", color="C0", label="measured coverage (pass@k)")
    top = max((f.k for f in figures.forecast), default=max(ks, default=1))
    span = [top ** (i / 200) for i in range(201)]  # even on the log axis
    if figures.fit is not None:
        fit = figures.fit
        ax.plot(span, [fit.predict(k) for k in span], "--", color="C1", label=f"fit exp({fit.a:.2f}·k^{fit.b:.2f})")
        ax.axvline(figures.samples, color="grey", lw=0.8, ls=":", label=f"samples run ({figures.samples})")
    else:
        ax.text(0.5, 0.5, "no evaluated candidates", transform=ax.transAxes, ha="center", color="grey")
    ax.set_xscale("log")
    ax.set_xlim(1, max(top, 2))
    ax.set_ylim(0, 1)
    ax.set_xlabel("samples per instance (k, log scale)")
    ax.set_ylabel("share of instances covered")
    ax.set_title(f"Coverage vs samples ({figures.instances} instances)")
    ax.grid(True, which="both", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if figures.usd_per_trajectory is not None:
        usd = ax.twinx()
        per_k = figures.usd_per_trajectory * figures.instances
        usd.plot(span, [per_k * k for k in span], color="C2", lw=1, label="forecast USD for the batch")
        usd.set_ylabel("USD (batch)")
        usd.set_ylim(bottom=0)
        for f in figures.forecast:
            if f.usd is not None:
                usd.plot([f.k], [f.usd], "s", color="C2")
                usd.annotate(_usd(f.usd), (f.k, f.usd), textcoords="offset points", xytext=(-4, 6), ha="right")
        more_handles, more_labels = usd.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    if handles:
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _usd(value: float) -> str:
    return f"${value:,.0f}" if value >= 100 else f"${value:,.2f}"
