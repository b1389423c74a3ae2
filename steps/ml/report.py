"""Evaluation report: ROC, precision-recall and calibration plots (PNG), metrics (JSON), HTML.

Writes files only; the evaluate step decides where they are logged.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steps.ml.estimators import History
from steps.ml.gate import Shift

PLOTS = ("roc", "precision_recall", "calibration")


@dataclass(frozen=True)
class ScoredModel:
    """One model's probabilities on the shared held-out labels."""

    label: str
    probability: np.ndarray
    metrics: dict[str, float]


def write_report(
    directory: Path,
    labels: np.ndarray,
    models: list[ScoredModel],
    summary: dict[str, object],
    shifts: Sequence[Shift] = (),
) -> list[Path]:
    """Write ``metrics.json``, one PNG per plot and ``report.html`` into ``directory``.

    Args:
        shifts: the challenger's training data against the champion's, per feature; plotted
            (``data_shift.png``) and tabled when given.

    Returns:
        The paths written, in that order.
    """
    directory.mkdir(parents=True, exist_ok=True)
    metrics_path = directory / "metrics.json"
    metrics_path.write_text(
        json.dumps(
            {**summary, "models": {m.label: m.metrics for m in models}}, indent=2, sort_keys=True
        )
        + "\n",
        encoding="utf-8",
    )
    pngs = [_plot(directory, kind, labels, models) for kind in PLOTS]
    if shifts:
        pngs.append(_plot_shifts(directory / "data_shift.png", shifts))
    html_path = directory / "report.html"
    html_path.write_text(_html(summary, models, pngs, shifts), encoding="utf-8")
    return [metrics_path, *pngs, html_path]


def _plot(directory: Path, kind: str, labels: np.ndarray, models: list[ScoredModel]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve, roc_curve

    figure, axes = plt.subplots(figsize=(5.5, 4.5), dpi=100)
    for model in models:
        if kind == "roc":
            x, y, _ = roc_curve(labels, model.probability)
            name = f"{model.label} (AUC {model.metrics['roc_auc']:.3f})"
        elif kind == "precision_recall":
            y, x, _ = precision_recall_curve(labels, model.probability)
            name = f"{model.label} (AP {model.metrics['pr_auc']:.3f})"
        else:
            y, x = calibration_curve(labels, model.probability, n_bins=10, strategy="quantile")
            name = f"{model.label} (Brier {model.metrics['brier']:.3f})"
        axes.plot(x, y, marker="." if kind == "calibration" else None, label=name)
    if kind != "precision_recall":
        axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    titles = {
        "roc": ("ROC curve", "false positive rate", "true positive rate"),
        "precision_recall": ("Precision-recall curve", "recall", "precision"),
        "calibration": ("Calibration", "mean predicted probability", "observed positive rate"),
    }
    title, x_label, y_label = titles[kind]
    axes.set(title=title, xlabel=x_label, ylabel=y_label, xlim=(0, 1), ylim=(0, 1.02))
    axes.legend(loc="lower right" if kind != "precision_recall" else "upper right")
    figure.tight_layout()
    path = directory / f"{kind}.png"
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)
    return path


def plot_validation_curve(history: History, path: Path) -> Path:
    """Plot the validation loss per boosting round with the round kept; write a PNG to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 4.0), dpi=100)
    rounds = np.arange(1, len(history.curve) + 1)
    axes.plot(rounds, history.curve, label=f"validation {history.metric}")
    axes.axvline(history.best_iteration, color="grey", linestyle="--", linewidth=0.8)
    axes.set(
        title=f"Early stopping: {history.best_iteration} of {len(history.curve)} rounds kept",
        xlabel="boosting round",
        ylabel=history.metric,
    )
    axes.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)
    return path


def _plot_shifts(path: Path, shifts: Sequence[Shift]) -> Path:
    """Bar chart: each feature's shift as a share of its gross threshold (1.0 = gross)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(shifts, key=lambda s: s.score / s.threshold)[-25:]
    ratios = [min(s.score / s.threshold, 3.0) for s in ordered]
    figure, axes = plt.subplots(figsize=(5.5, 1.2 + 0.22 * len(ordered)), dpi=100)
    colours = ["tab:red" if s.gross else "tab:blue" for s in ordered]
    axes.barh([s.column for s in ordered], ratios, color=colours)
    axes.axvline(1.0, color="grey", linestyle="--", linewidth=0.8)
    axes.set(
        title="Challenger's training data vs champion's",
        xlabel="shift / gross threshold (capped at 3)",
    )
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)
    return path


def _shift_rows(shifts: Sequence[Shift]) -> str:
    if not shifts:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(s.column)}</td><td>{html.escape(s.method)}</td>"
        f"<td>{s.score:.4f}</td><td>{s.threshold:.4f}</td><td>{'GROSS' if s.gross else 'ok'}</td>"
        "</tr>"
        for s in sorted(shifts, key=lambda s: -s.score / s.threshold)
    )
    return (
        "<h2>Training data vs the champion's (per feature)</h2>"
        "<table><tr><th>feature</th><th>method</th><th>score</th><th>gross at</th><th></th></tr>"
        f"{rows}</table><p>Evidently's full comparison: "
        '<a href="data_shift.html">data_shift.html</a></p>'
    )


def _html(
    summary: dict[str, object],
    models: list[ScoredModel],
    pngs: list[Path],
    shifts: Sequence[Shift] = (),
) -> str:
    names = sorted({name for m in models for name in m.metrics})
    header = "".join(f"<th>{html.escape(m.label)}</th>" for m in models)
    rows = "".join(
        f"<tr><td>{name}</td>"
        + "".join(f"<td>{m.metrics.get(name, float('nan')):.4f}</td>" for m in models)
        + "</tr>"
        for name in names
    )
    reasons = summary.get("reasons", [])
    reason_items = "".join(
        f"<li>{html.escape(str(r))}</li>" for r in (reasons if isinstance(reasons, list) else [])
    )
    images = "".join(
        f'<img alt="{p.stem}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}">'
        for p in pngs
    )
    decision = html.escape(str(summary.get("decision", "")))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Loopline evaluation</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}img{{margin:8px}}</style>
</head><body>
<h1>Evaluation: {decision}</h1>
<ul>{reason_items}</ul>
<table><tr><th>metric</th>{header}</tr>{rows}</table>
{_shift_rows(shifts)}
<div>{images}</div>
</body></html>
"""
