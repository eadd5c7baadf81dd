"""The per-span HTML report: metric trends, the reliability diagram, drifted features (PNG)."""

import html
import json
import pathlib

import numpy as np

from monitoring.decision import Decision
from recs.plots import plot_reliability, pyplot, save_figure


def _trends(decisions: list[Decision], path: pathlib.Path) -> None:
    plt = pyplot()
    spans = [d.span for d in decisions]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot(spans, [np.nan if d.signals.auc is None else d.signals.auc for d in decisions],
             marker="o", label="engagement AUC")
    baselines = [d.signals.baseline_auc for d in decisions]
    if any(b is not None for b in baselines):
        top.plot(spans, [b if b is not None else float("nan") for b in baselines],
                 linestyle="--", label="model baseline AUC")
    for d in decisions:
        if d.action == "retrain":
            top.axvline(d.span, color="red", alpha=0.4)
            bottom.axvline(d.span, color="red", alpha=0.4)
    top.set_ylabel("AUC")
    top.legend()
    top.grid(alpha=0.3)
    bottom.plot(spans, [d.signals.ece for d in decisions], marker="o", label="ECE")
    bottom.plot(spans, [d.signals.unseen_title_share for d in decisions], marker="s",
                label="share on unseen titles")
    bottom.set_xlabel("span (day); red: retrain decided")
    bottom.legend()
    bottom.grid(alpha=0.3)
    save_figure(figure, str(path))


def _drift_bars(decision: Decision, path: pathlib.Path) -> None:
    plt = pyplot()
    drift = [m for m in decision.signals.drift if m.kind == "drift"]
    figure, axis = plt.subplots(figsize=(7, 3.5))
    axis.barh([m.feature for m in drift], [m.value for m in drift],
              color=["tab:red" if m.exceeded else "tab:blue" for m in drift])
    for index, m in enumerate(drift):
        axis.plot([m.threshold, m.threshold], [index - 0.4, index + 0.4], color="black")
    axis.set_xlabel("distance to training spans (L-inf categorical, JS numeric); | threshold")
    axis.set_title(f"span {decision.span}: drift")
    save_figure(figure, str(path))


def write_report(out_dir: str | pathlib.Path, decisions: list[Decision],
                 quality: dict) -> pathlib.Path:
    """Writes `span-<n>.html` for the last decision, with PNGs beside it.

    Args:
        out_dir: report folder.
        decisions: every decision so far, oldest first (the trends).
        quality: `outcomes.prediction_quality` of the last span.

    Returns:
        The HTML file.
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    last = decisions[-1]
    stem = f"span-{last.span}"
    _trends(decisions, out / f"{stem}-trends.png")
    plot_reliability(quality["reliability"], f"span {last.span}: served ranker",
                     str(out / f"{stem}-reliability.png"))
    _drift_bars(last, out / f"{stem}-drift.png")
    rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{html.escape(value)}</td>"
                   f"<td>{stats['count']}</td><td>{stats['mean_predicted']:.3f}</td>"
                   f"<td>{stats['observed']:.3f}</td><td>{stats['ece']:.3f}</td></tr>"
                   for name, values in quality["slices"].items()
                   for value, stats in values.items())
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in last.reasons) or "<li>none</li>"
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>recs monitor: span {last.span}</title></head>
<body>
<h1>Span {last.span}: {html.escape(last.action)}</h1>
<ul>{reasons}</ul>
<p>AUC {"undefined (one class)" if last.signals.auc is None else f"{last.signals.auc:.4f}"} (baseline {last.signals.baseline_auc}), ECE
{last.signals.ece:.4f}, unseen-title share {last.signals.unseen_title_share:.3f}</p>
<h2>Trends</h2><img src="{stem}-trends.png">
<h2>Calibration</h2><img src="{stem}-reliability.png">
<table border="1"><tr><th>slice</th><th>value</th><th>n</th><th>predicted</th>
<th>observed</th><th>ECE</th></tr>{rows}</table>
<h2>Drift</h2><img src="{stem}-drift.png">
<h2>Signals</h2><pre>{html.escape(json.dumps(json.loads(last.to_json()), indent=2))}</pre>
</body></html>
"""
    path = out / f"{stem}.html"
    path.write_text(page)
    return path
