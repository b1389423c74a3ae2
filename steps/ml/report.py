"""Evaluation report: the challenger against the champion on the same held-out rows.

Measures what a metric table alone hides: each metric's difference (challenger - champion) and
which model it favours, each model's confusion matrix at the serving threshold, and which raw
features each model relies on (permutation importance). Writes ``metrics.json`` (every fact, for
machines), PNGs (ROC, precision-recall, calibration, confusion matrices, feature importance,
training-data shift) and ``report.html`` (the same facts, for people). Writes files only; the
evaluate step decides where they are logged.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from steps.ml.comparison import (
    IMPORTANCE_METHOD,
    SERVING_THRESHOLD,
    Confusion,
    FeatureImportance,
    MetricComparison,
    compare_metrics,
    confusion_at,
)
from steps.ml.estimators import History
from steps.ml.gate import Shift

PLOTS = ("roc", "precision_recall", "calibration")


@dataclass(frozen=True)
class ScoredModel:
    """One model's probabilities on the shared held-out labels, its kind and importances."""

    label: str
    probability: np.ndarray
    metrics: dict[str, float]
    kind: str = "unknown"
    importance: tuple[FeatureImportance, ...] = ()


def write_report(
    directory: Path,
    labels: np.ndarray,
    challenger: ScoredModel,
    champion: ScoredModel | None,
    summary: dict[str, object],
    shifts: Sequence[Shift] = (),
) -> list[Path]:
    """Write ``metrics.json``, one PNG per plot and ``report.html`` into ``directory``.

    Args:
        directory: where the files go (created when missing).
        labels: the held-out labels both models scored.
        challenger: the model under evaluation.
        champion: the current champion, None when there is none yet.
        summary: the evaluation result; ``metrics.json`` holds it with the facts measured here.
        shifts: the challenger's training data against the champion's, per feature; plotted
            (``data_shift.png``) and tabled when given.

    Returns:
        The paths written: ``metrics.json``, the PNGs, ``report.html``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    models = [challenger, *([champion] if champion else [])]
    comparison = compare_metrics(challenger.metrics, champion.metrics) if champion else ()
    confusions = {m.label: confusion_at(labels, m.probability) for m in models}
    metrics_path = directory / "metrics.json"
    document = {
        **summary,
        "models": {m.label: m.metrics for m in models},
        "kinds": {m.label: m.kind for m in models},
        "comparison": [row.model_dump() for row in comparison],
        "serving_threshold": SERVING_THRESHOLD,
        "confusion": {label: c.model_dump() for label, c in confusions.items()},
        "importance_method": IMPORTANCE_METHOD,
        "importance": {m.label: [i.model_dump() for i in m.importance] for m in models},
    }
    metrics_path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", "utf-8")
    pngs = [_plot(directory, kind, labels, models) for kind in PLOTS]
    pngs.append(_plot_confusions(directory / "confusion_matrix.png", confusions))
    if any(m.importance for m in models):
        pngs.append(_plot_importance(directory / "feature_importance.png", models))
    if shifts:
        pngs.append(_plot_shifts(directory / "data_shift.png", shifts))
    sections = [
        _models_table(models),
        _metrics_table(challenger, champion, comparison),
        _confusion_table(confusions),
        _importance_tables(models),
        _shift_rows(shifts, champion),
    ]
    html_path = directory / "report.html"
    html_path.write_text(_html(summary, sections, pngs), encoding="utf-8")
    return [metrics_path, *pngs, html_path]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})
    _pyplot().close(figure)
    return path


def _plot(directory: Path, kind: str, labels: np.ndarray, models: list[ScoredModel]) -> Path:
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve, roc_curve

    figure, axes = _pyplot().subplots(figsize=(5.5, 4.5), dpi=100)
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
    return _save(figure, directory / f"{kind}.png")


def plot_validation_curve(history: History, path: Path) -> Path:
    """Plot the validation loss per boosting round with the round kept; write a PNG to ``path``."""
    figure, axes = _pyplot().subplots(figsize=(5.5, 4.0), dpi=100)
    rounds = np.arange(1, len(history.curve) + 1)
    axes.plot(rounds, history.curve, label=f"validation {history.metric}")
    axes.axvline(history.best_iteration, color="grey", linestyle="--", linewidth=0.8)
    axes.set(
        title=f"Early stopping: {history.best_iteration} of {len(history.curve)} rounds kept",
        xlabel="boosting round",
        ylabel=history.metric,
    )
    axes.legend(loc="upper right")
    return _save(figure, path)


def _plot_shifts(path: Path, shifts: Sequence[Shift]) -> Path:
    """Bar chart: each feature's shift as a share of its gross threshold (1.0 = gross)."""
    ordered = sorted(shifts, key=lambda s: s.score / s.threshold)[-25:]
    ratios = [min(s.score / s.threshold, 3.0) for s in ordered]
    figure, axes = _pyplot().subplots(figsize=(5.5, 1.2 + 0.22 * len(ordered)), dpi=100)
    colours = ["tab:red" if s.gross else "tab:blue" for s in ordered]
    axes.barh([s.column for s in ordered], ratios, color=colours)
    axes.axvline(1.0, color="grey", linestyle="--", linewidth=0.8)
    axes.set(
        title="Challenger's training data vs champion's",
        xlabel="shift / gross threshold (capped at 3)",
    )
    return _save(figure, path)


def _plot_confusions(path: Path, confusions: dict[str, Confusion]) -> Path:
    """One confusion matrix per model (rows: true label, columns: served label)."""
    from sklearn.metrics import ConfusionMatrixDisplay

    figure, panels = _pyplot().subplots(
        1, len(confusions), figsize=(3.6 * len(confusions), 3.4), dpi=100, squeeze=False
    )
    for axes, (label, c) in zip(panels[0], confusions.items(), strict=True):
        matrix = np.array(
            [[c.true_negative, c.false_positive], [c.false_negative, c.true_positive]]
        )
        ConfusionMatrixDisplay(matrix, display_labels=[0, 1]).plot(ax=axes, colorbar=False)
        axes.set(title=label, xlabel=f"label (probability >= {c.threshold:g})", ylabel="true label")
    return _save(figure, path)


def _plot_importance(path: Path, models: Sequence[ScoredModel]) -> Path:
    """One horizontal bar chart per model: ROC AUC drop per feature, largest on top."""
    shown = [m for m in models if m.importance]
    rows = max(len(m.importance) for m in shown)
    figure, panels = _pyplot().subplots(
        1, len(shown), figsize=(4.8 * len(shown), 1.6 + 0.28 * rows), dpi=100, squeeze=False
    )
    for axes, model in zip(panels[0], shown, strict=True):
        ordered = model.importance[::-1]
        axes.barh(
            [i.feature for i in ordered],
            [i.mean for i in ordered],
            xerr=[i.std for i in ordered],
            color="tab:blue",
        )
        axes.axvline(0.0, color="grey", linewidth=0.8)
        axes.set(title=model.label, xlabel="ROC AUC drop when shuffled")
    return _save(figure, path)


def _models_table(models: Sequence[ScoredModel]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(m.label)}</td><td>{html.escape(m.kind)}</td></tr>" for m in models
    )
    return f"<h2>Models</h2><table><tr><th>model</th><th>kind</th></tr>{rows}</table>"


def _metrics_table(
    challenger: ScoredModel, champion: ScoredModel | None, comparison: Sequence[MetricComparison]
) -> str:
    title = "<h2>Metrics on the held-out rows</h2>"
    if champion is None:
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{value:.4f}</td></tr>"
            for name, value in challenger.metrics.items()
        )
        return f"{title}<table><tr><th>metric</th><th>challenger</th></tr>{rows}</table>"
    rows = "".join(
        f"<tr><td>{html.escape(c.metric)}</td>"
        f"<td>{'higher' if c.higher_is_better else 'lower'} is better</td>"
        f"<td>{c.challenger:.4f}</td><td>{c.champion:.4f}</td><td>{c.difference:+.4f}</td>"
        f"<td>{c.better}</td></tr>"
        for c in comparison
    )
    return (
        f"{title}<table><tr><th>metric</th><th>direction</th><th>challenger</th>"
        f"<th>{html.escape(champion.label)}</th><th>challenger - champion</th><th>better</th></tr>"
        f"{rows}</table>"
    )


def _confusion_table(confusions: dict[str, Confusion]) -> str:
    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{c.true_positive:,}</td>"
        f"<td>{c.false_positive:,}</td><td>{c.false_negative:,}</td><td>{c.true_negative:,}</td>"
        f"<td>{share(c.precision)}</td><td>{share(c.recall)}</td></tr>"
        for label, c in confusions.items()
    )
    return (
        f"<h2>Confusion matrix at the serving threshold (label 1 when probability &gt;= "
        f"{SERVING_THRESHOLD:g}, as the service labels)</h2><table><tr><th>model</th>"
        "<th>true positive</th><th>false positive</th><th>false negative</th>"
        f"<th>true negative</th><th>precision</th><th>recall</th></tr>{rows}</table>"
    )


def _importance_tables(models: Sequence[ScoredModel]) -> str:
    tables = "".join(
        f"<h3>{html.escape(m.label)}</h3><table><tr><th>rank</th><th>feature</th>"
        "<th>ROC AUC drop</th><th>std</th></tr>"
        + "".join(
            f"<tr><td>{rank}</td><td>{html.escape(i.feature)}</td><td>{i.mean:.4f}</td>"
            f"<td>{i.std:.4f}</td></tr>"
            for rank, i in enumerate(m.importance, start=1)
        )
        + "</table>"
        for m in models
        if m.importance
    )
    if not tables:
        return ""
    return f"<h2>Feature importance</h2><p>{html.escape(IMPORTANCE_METHOD)}</p>{tables}"


def _shift_rows(shifts: Sequence[Shift], champion: ScoredModel | None) -> str:
    title = "<h2>Training data vs the champion's (per feature)</h2>"
    if champion is None:
        return f"{title}<p>Not compared: there is no champion yet.</p>"
    if not shifts:
        return f"{title}<p>No feature was measured.</p>"
    rows = "".join(
        f"<tr><td>{html.escape(s.column)}</td><td>{html.escape(s.method)}</td>"
        f"<td>{s.score:.4f}</td><td>{s.threshold:.4f}</td><td>{'GROSS' if s.gross else 'ok'}</td>"
        "</tr>"
        for s in sorted(shifts, key=lambda s: -s.score / s.threshold)
    )
    return (
        f"{title}<table><tr><th>feature</th><th>method</th><th>score</th><th>gross at</th>"
        f"<th></th></tr>{rows}</table><p>Evidently's full comparison: "
        '<a href="data_shift.html">data_shift.html</a></p>'
    )


def _html(summary: dict[str, object], sections: Sequence[str], pngs: Sequence[Path]) -> str:
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
    body = "\n".join(section for section in sections if section)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Loopline evaluation</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}img{{margin:8px}}</style>
</head><body>
<h1>Evaluation: {decision}</h1>
<ul>{reason_items}</ul>
{body}
<div>{images}</div>
</body></html>
"""
