"""The canary analysis report: ``analysis.json``, one PNG per metric and ``analysis.html``.

Renders an :class:`~steps.canary.record.AnalysisRecord` and nothing else: it writes files into
one directory (logged to MLflow as a whole, so the page links its PNGs relatively) and decides
nothing. :func:`summarize` gives the same story as plain lines for the CLI.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from steps.canary.judge import Check
from steps.canary.record import METRICS, AnalysisRecord, CheckRecord, Point

TRACKS = ("stable", "canary")
TRACK_COLOURS = {"stable": "tab:blue", "canary": "tab:orange"}
VERDICT_COLOURS = {
    "pass": "tab:green",
    "fail": "tab:red",
    "inconclusive": "tab:gray",
    "error": "tab:purple",
}
METRIC_LABELS = {
    "request_rate": "request rate (requests/s)",
    "error_ratio": "error ratio (5xx / requests)",
    "p99_ms": "p99 latency (ms)",
    "mean_probability": "mean predicted probability",
}
POLICY_LIMITS = {"error_ratio": "max_error_ratio", "p99_ms": "max_p99_ms"}
"""metric -> the policy key of its absolute limit, drawn as a horizontal line."""
FIGURE_SIZE = (7.0, 4.0)
DPI = 100

HOW_TO_READ = (
    "Each check judges one analysis window of live traffic, canary against stable. "
    "The error-ratio checks compare the canary's share of 5xx answers with the policy's "
    "maximum and with the stable track's ratio plus a slack; the latency checks compare the "
    "canary's p99 with the policy's maximum and with the stable track's p99 times a ratio plus "
    "a slack; the prediction check compares the distribution of the canary's predicted "
    "probabilities with the stable track's (PSI), and the statistical tests report a p-value "
    "against the policy's alpha. A verdict fails when any check fails. Inconclusive means "
    "there was not enough data to judge (too few requests in the window): it is never a pass, "
    "the promotion holds at its step, and too many in a row roll the canary back. Error means "
    "the window could not be measured (the metrics query failed); the promotion retries after "
    "a backoff. In the plots, dashed vertical lines mark each change of the canary's traffic "
    "share, the markers along the top each check's verdict (green pass, red fail, grey "
    "inconclusive, purple error) with the action that followed, and a dotted horizontal line "
    "the policy's limit where one applies."
)


def write_report(record: AnalysisRecord, directory: Path) -> list[Path]:
    """Write ``analysis.json``, one PNG per metric of :data:`METRICS` and ``analysis.html``.

    ``analysis.json`` is byte-stable for the same record. The page links the PNGs by relative
    path, so the directory is meant to be kept (or logged) as a whole.

    Returns:
        The paths written: ``analysis.json``, the PNGs in :data:`METRICS` order, ``analysis.html``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "analysis.json"
    json_path.write_text(
        json.dumps(record.model_dump(mode="json"), indent=2, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    pngs = [_plot_metric(record, metric, directory / f"{metric}.png") for metric in METRICS]
    html_path = directory / "analysis.html"
    html_path.write_text(_html(record, pngs), encoding="utf-8")
    return [json_path, *pngs, html_path]


def summarize(record: AnalysisRecord) -> list[str]:
    """Return the lines the CLI prints when a promotion ends: outcome, final weight, versions,
    the record's reasons, then one line per check (``t+12s 10% pass -> advance: ...``)."""
    lines = [
        f"outcome: {record.outcome or 'in progress'}",
        f"final weight: {_final_weight(record)}",
        f"versions: {record.model_name} v{record.version} canary, {_stable(record)} stable",
        *(f"reason: {reason}" for reason in record.reasons),
    ]
    for check in record.checks:
        line = (
            f"t+{check.at - record.started_at:.0f}s {check.weight}% "
            f"{check.verdict.outcome} -> {check.action}"
        )
        reasons = "; ".join(check.verdict.reasons)
        lines.append(f"{line}: {reasons}" if reasons else line)
    return lines


def _stable(record: AnalysisRecord) -> str:
    return f"v{record.stable_version}" if record.stable_version is not None else "none"


def _final_weight(record: AnalysisRecord) -> str:
    return f"{record.final_weight} % canary" if record.final_weight is not None else "not set"


def _number(value: float | None) -> str:
    return f"{value:.4g}" if value is not None else "-"


# --- plots -------------------------------------------------------------------------------------


def _has_series(record: AnalysisRecord, metric: str) -> bool:
    return any(record.series.get(metric, {}).values())


def _lines(record: AnalysisRecord, metric: str) -> dict[str, list[Point]]:
    """Track -> (seconds since the start, value): the range-query series when there is one,
    else each check's value (NaN where a check measured nothing, so the line breaks)."""
    start = record.started_at
    if _has_series(record, metric):
        return {
            track: [(at - start, value) for at, value in points]
            for track, points in record.series[metric].items()
        }
    lines: dict[str, list[Point]] = {}
    for check in record.checks:
        for track, summary in check.tracks.items():
            value = getattr(summary, metric)
            lines.setdefault(track, []).append(
                (check.at - start, math.nan if value is None else float(value))
            )
    return lines


def _limit(record: AnalysisRecord, metric: str) -> float | None:
    value = record.policy.get(POLICY_LIMITS.get(metric, ""))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _title(record: AnalysisRecord, metric: str) -> str:
    """The plot's title, also its caption on the page: the metric and where its data came from."""
    label = METRIC_LABELS[metric]
    if not any(math.isfinite(v) for points in _lines(record, metric).values() for _, v in points):
        return f"{label}: no data"
    return label if _has_series(record, metric) else f"{label}, from the checks"


def _plain(text: str) -> str:
    """``text`` for a matplotlib label: a ``$`` in a version must not start mathtext."""
    return text.replace("$", r"\$")


def _plot_metric(record: AnalysisRecord, metric: str, path: Path) -> Path:
    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI)
    axes = figure.subplots()
    lines = _lines(record, metric)
    from_checks = not _has_series(record, metric)
    versions = {"stable": record.stable_version, "canary": record.version}
    for track in sorted(lines, key=lambda t: (TRACKS.index(t) if t in TRACKS else len(TRACKS), t)):
        version = versions.get(track)
        axes.plot(
            [at for at, _ in lines[track]],
            [value for _, value in lines[track]],
            color=TRACK_COLOURS.get(track, "black"),
            marker="o" if from_checks else None,
            markersize=4,
            label=_plain(f"{track} v{version}" if version is not None else track),
        )
    limit = _limit(record, metric)
    if limit is not None:
        axes.axhline(limit, color="black", linestyle=":", linewidth=1.0, label="policy limit")
    axes.set_xlim(*_x_range(record, lines))
    low, high = axes.get_ylim()
    # Room above for the decision markers, below for the weight labels.
    axes.set_ylim(low - (high - low) * 0.08, high + (high - low) * 0.3)
    _mark_weight_changes(axes, record)
    _mark_decisions(axes, record)
    title = _title(record, metric)
    if title.endswith("no data"):
        axes.text(0.5, 0.5, "no data", transform=axes.transAxes, ha="center", color="grey")
    axes.set_title(title, parse_math=False)
    axes.set(xlabel=f"seconds since the start ({_utc(record.started_at)})", ylabel=metric)
    handles, _ = axes.get_legend_handles_labels()
    handles += _verdict_handles(record.checks)
    if handles:
        axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})
    return path


def _x_range(record: AnalysisRecord, lines: dict[str, list[Point]]) -> tuple[float, float]:
    start = record.started_at
    ends = [
        *(at for points in lines.values() for at, _ in points),
        *(check.at - start for check in record.checks),
        *(change.at - start for change in record.weight_changes),
        (record.finished_at or start) - start,
    ]
    start_s, end_s = min(0.0, *ends), max(ends)
    pad = max((end_s - start_s) * 0.03, 1.0)
    return start_s - pad, max(end_s + pad, start_s + record.interval_s)


def _mark_weight_changes(axes: Axes, record: AnalysisRecord) -> None:
    for change in record.weight_changes:
        at = change.at - record.started_at
        axes.axvline(at, color="grey", linestyle="--", linewidth=0.8)
        axes.text(
            at,
            0.02,
            f" {change.canary}%",
            transform=axes.get_xaxis_transform(),
            fontsize=7,
            color="dimgrey",
            parse_math=False,
        )


def _mark_decisions(axes: Axes, record: AnalysisRecord) -> None:
    for check in record.checks:
        at = check.at - record.started_at
        axes.plot(
            [at],
            [0.97],
            marker="v",
            markersize=7,
            linestyle="none",
            color=VERDICT_COLOURS[check.verdict.outcome],
            transform=axes.get_xaxis_transform(),
        )
        axes.text(
            at,
            0.93,
            check.action,
            transform=axes.get_xaxis_transform(),
            fontsize=6,
            rotation=90,
            ha="center",
            va="top",
            parse_math=False,
        )


def _verdict_handles(checks: Sequence[CheckRecord]) -> list[Line2D]:
    seen = {check.verdict.outcome for check in checks}
    return [
        Line2D([], [], marker="v", linestyle="none", color=colour, label=f"check: {outcome}")
        for outcome, colour in VERDICT_COLOURS.items()
        if outcome in seen
    ]


def _utc(at: float) -> str:
    return datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- page --------------------------------------------------------------------------------------

STYLE = """body{font-family:sans-serif;margin:2em;max-width:80em}
table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #ccc;padding:4px 8px;
vertical-align:top;text-align:left}.banner{padding:1em;border-radius:6px;font-size:1.2em}
.promoted{background:#d4edda}.rolled-back{background:#f8d7da}.in-progress{background:#eee}
.pass{color:#1a7f37}.fail{color:#c62828}.inconclusive{color:#777}.error{color:#7b1fa2}
.skipped{color:#999}small{color:#555}figure{display:inline-block;margin:8px}"""


def _html(record: AnalysisRecord, pngs: list[Path]) -> str:
    against = f"stable {_stable(record)}" if record.stable_version is not None else "no stable"
    title = html.escape(f"{record.model_name} v{record.version} canary vs {against}")
    reasons = "".join(f"<li>{html.escape(reason)}</li>" for reason in record.reasons)
    figures = "".join(
        f'<figure><img src="{html.escape(png.name)}" alt="{html.escape(metric)}">'
        f"<figcaption>{html.escape(_caption(record, metric))}</figcaption></figure>"
        for metric, png in zip(METRICS, pngs, strict=True)
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>{STYLE}</style>
</head><body>
<h1>{title}</h1>
{_banner(record)}
<ul>{reasons}</ul>
<h2>How to read this</h2>
<p>{html.escape(HOW_TO_READ)}</p>
<h2>Policy</h2>
{_policy_table(record)}
<h2>Checks</h2>
{_checks_table(record)}
<h2>Metrics</h2>
<div>{figures}</div>
</body></html>
"""


def _banner(record: AnalysisRecord) -> str:
    css, label = {
        "promoted": ("promoted", "Promoted"),
        "rolled_back": ("rolled-back", "Rolled back"),
        None: ("in-progress", "In progress"),
    }[record.outcome]
    finished = (
        f", finished after {record.finished_at - record.started_at:.0f} s"
        if record.finished_at is not None
        else ""
    )
    facts = (
        f"final weight: {_final_weight(record)}; platform {record.platform}; "
        f"steps {' > '.join(f'{step} %' for step in record.steps)}, "
        f"a check every {record.interval_s:g} s; started {_utc(record.started_at)}{finished}"
    )
    return (
        f'<div class="banner {css}"><strong>{label}</strong><br>'
        f"<small>{html.escape(facts)}</small></div>"
    )


def _policy_table(record: AnalysisRecord) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(key)}</td><td>{html.escape(str(record.policy[key]))}</td></tr>"
        for key in sorted(record.policy)
    )
    return f"<table><tr><th>setting</th><th>value</th></tr>{rows}</table>"


def _checks_table(record: AnalysisRecord) -> str:
    if not record.checks:
        return "<p>No check was made.</p>"
    names = list(dict.fromkeys(c.name for check in record.checks for c in check.verdict.checks))
    header = "".join(
        f"<th>{html.escape(name)}</th>" for name in ["time", "weight", "action", "verdict", *names]
    )
    rows = "".join(_check_row(record, check, names) for check in record.checks)
    return f"<table><tr>{header}</tr>{rows}</table>"


def _check_row(record: AnalysisRecord, check: CheckRecord, names: list[str]) -> str:
    by_name = {c.name: c for c in check.verdict.checks}
    verdict = check.verdict
    verdict_reasons = "".join(f"<br><small>{html.escape(r)}</small>" for r in verdict.reasons)
    cells = [
        f"t+{check.at - record.started_at:.0f} s<br><small>window {check.window_s:g} s</small>",
        f"{check.weight} %",
        html.escape(check.action),
        f"{_outcome(verdict.outcome)}{verdict_reasons}",
        *(_check_cell(by_name.get(name)) for name in names),
    ]
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _outcome(outcome: str) -> str:
    """An outcome in its colour (the page's CSS has a class per outcome)."""
    return f'<span class="{html.escape(outcome)}">{html.escape(outcome)}</span>'


def _check_cell(check: Check | None) -> str:
    if check is None:
        return ""
    p_value = f"<br>p = {_number(check.p_value)}" if check.p_value is not None else ""
    return (
        f"{_outcome(check.outcome)}<br>"
        f"{_number(check.value)} (limit {_number(check.limit)}){p_value}"
        f"<br><small>{html.escape(check.reason)}</small>"
    )


def _caption(record: AnalysisRecord, metric: str) -> str:
    limit = _limit(record, metric)
    if limit is None:
        return _title(record, metric)
    return f"{_title(record, metric)}; dotted line: {POLICY_LIMITS[metric]} = {limit:g}"
