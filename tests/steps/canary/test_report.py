"""The canary report renders a hand-built AnalysisRecord: JSON, one PNG per metric, HTML."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from steps.canary.judge import Check, Verdict
from steps.canary.record import (
    METRICS,
    Action,
    AnalysisRecord,
    CheckRecord,
    TrackSummary,
    WeightChange,
)
from steps.canary.report import DPI, FIGURE_SIZE, summarize, write_report

START = 1_700_000_000.0
POLICY: dict[str, object] = {"max_error_ratio": 0.01, "max_p99_ms": 50.0, "alpha": 0.05}
CANARY_ORANGE = (255, 127, 14)  # matplotlib's tab:orange, the canary track's colour


def _tracks(canary_p99_ms: float | None) -> dict[str, TrackSummary]:
    return {
        "stable": TrackSummary(
            version="2",
            requests=900.0,
            request_rate=75.0,
            error_ratio=0.001,
            p99_ms=20.0,
            mean_probability=0.31,
        ),
        "canary": TrackSummary(
            version="3",
            requests=100.0,
            request_rate=8.3,
            error_ratio=0.002,
            p99_ms=canary_p99_ms,
            mean_probability=0.33,
        ),
    }


def _check(
    at: float,
    weight: int,
    outcome: Literal["pass", "fail", "inconclusive"],
    action: Action,
    p99_reason: str,
    canary_p99_ms: float | None = 22.0,
) -> CheckRecord:
    checks = (
        Check(
            name="error_ratio",
            outcome="pass",
            value=0.002,
            limit=0.01,
            reason=f"error ratio 0.002 <= 0.01 at t+{at:.0f}",
        ),
        Check(
            name="p99_ms",
            outcome=outcome,
            value=canary_p99_ms,
            limit=50.0,
            p_value=0.42,
            reason=p99_reason,
        ),
    )
    return CheckRecord(
        at=START + at,
        weight=weight,
        window_s=12.0,
        tracks=_tracks(canary_p99_ms),
        verdict=Verdict(outcome=outcome, checks=checks, reasons=(p99_reason,)),
        action=action,
        analysis_s=0.4,
    )


def _record(*, series: bool = False, reason: str = "every check passed") -> AnalysisRecord:
    record = AnalysisRecord(
        model_name="churn",
        version="3",
        stable_version="2",
        platform="local",
        steps=(10, 50, 100),
        interval_s=12.0,
        policy=POLICY,
        started_at=START,
        finished_at=START + 40.0,
        outcome="promoted",
        final_weight=100,
        reasons=[reason],
        checks=[
            _check(12.0, 10, "pass", "advance", "p99 22 ms <= 50 ms"),
            _check(24.0, 50, "inconclusive", "hold", "only 40 requests, 100 needed", None),
            _check(36.0, 100, "pass", "promote", "p99 23 ms <= 50 ms", 23.0),
        ],
        weight_changes=[
            WeightChange(at=START + 1.0, canary=10),
            WeightChange(at=START + 13.0, canary=50),
            WeightChange(at=START + 37.0, canary=100),
        ],
    )
    if series:
        times = [START + t for t in range(0, 40, 4)]
        record.series = {
            "p99_ms": {
                "stable": [(t, 20.0) for t in times],
                "canary": [(t, 21.0 + (t - START) / 40) for t in times],
            },
            "request_rate": {"stable": [(t, 70.0) for t in times], "canary": []},
        }
    return record


def _captions(html_text: str) -> dict[str, str]:
    pairs = re.findall(r'alt="([^"]+)"><figcaption>([^<]*)</figcaption>', html_text)
    return dict(pairs)


def _pixels_near(path: Path, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=int)
    return int((np.abs(rgb - np.array(colour)).max(axis=2) <= tolerance).sum())


def test_write_report_writes_json_one_png_per_metric_and_html_in_order(tmp_path: Path) -> None:
    paths = write_report(_record(series=True), tmp_path / "analysis")

    directory = tmp_path / "analysis"
    assert paths == [
        directory / "analysis.json",
        *(directory / f"{metric}.png" for metric in METRICS),
        directory / "analysis.html",
    ]
    width, height = FIGURE_SIZE
    for png in paths[1:-1]:
        with Image.open(png) as image:
            assert image.format == "PNG"
            assert image.size == (int(width * DPI), int(height * DPI))
    assert sorted(p.name for p in directory.iterdir()) == sorted(p.name for p in paths)


def test_json_round_trips_to_an_equal_record(tmp_path: Path) -> None:
    record = _record(series=True)

    json_path = write_report(record, tmp_path)[0]

    assert AnalysisRecord.model_validate_json(json_path.read_text(encoding="utf-8")) == record
    assert json_path.read_text(encoding="utf-8").endswith("}\n")


def test_json_is_byte_identical_when_written_twice(tmp_path: Path) -> None:
    first = write_report(_record(series=True), tmp_path / "first")[0]
    second = write_report(_record(series=True), tmp_path / "second")[0]

    assert first.read_bytes() == second.read_bytes()


def test_html_shows_title_outcome_policy_and_every_reason(tmp_path: Path) -> None:
    page = write_report(_record(), tmp_path)[-1].read_text(encoding="utf-8")

    assert "<h1>churn v3 canary vs stable v2</h1>" in page
    assert '<div class="banner promoted"><strong>Promoted</strong>' in page
    assert "final weight: 100 % canary" in page
    assert "<li>every check passed</li>" in page
    for reason in ("p99 22 ms &lt;= 50 ms", "only 40 requests, 100 needed", "p99 23 ms"):
        assert reason in page
    for at in (12, 24, 36):
        assert f"error ratio 0.002 &lt;= 0.01 at t+{at}" in page
        assert f"t+{at} s" in page
    assert "<td>max_p99_ms</td><td>50.0</td>" in page
    assert "p = 0.42" in page
    assert "inconclusive means there was not enough data" in page.lower()
    for metric in METRICS:
        assert f'<img src="{metric}.png"' in page


def test_banner_follows_the_outcome(tmp_path: Path) -> None:
    rolled_back = _record().model_copy(update={"outcome": "rolled_back", "final_weight": 0})
    in_progress = _record().model_copy(update={"outcome": None, "final_weight": None})

    rolled_page = write_report(rolled_back, tmp_path / "rolled")[-1].read_text(encoding="utf-8")
    open_page = write_report(in_progress, tmp_path / "open")[-1].read_text(encoding="utf-8")

    assert '<div class="banner rolled-back"><strong>Rolled back</strong>' in rolled_page
    assert "final weight: 0 % canary" in rolled_page
    assert '<div class="banner in-progress"><strong>In progress</strong>' in open_page
    assert "final weight: not set" in open_page


def test_user_text_is_escaped(tmp_path: Path) -> None:
    record = _record(reason="<script>alert('record')</script>")
    record.checks.append(_check(48.0, 100, "fail", "rollback", "<script>alert(1)</script>"))
    record.model_name = "<b>churn</b>"
    record.policy = {**POLICY, "<i>key</i>": "<img src=x>"}

    page = write_report(record, tmp_path)[-1].read_text(encoding="utf-8")

    assert "<script>" not in page
    assert "<b>churn" not in page
    assert "<i>key" not in page
    assert "<img src=x>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;script&gt;alert(&#x27;record&#x27;)&lt;/script&gt;" in page
    assert "&lt;b&gt;churn&lt;/b&gt; v3 canary" in page
    assert "<td>&lt;i&gt;key&lt;/i&gt;</td><td>&lt;img src=x&gt;</td>" in page


def test_plots_fall_back_to_the_checks_without_series(tmp_path: Path) -> None:
    page = write_report(_record(), tmp_path)[-1].read_text(encoding="utf-8")

    captions = _captions(page)
    assert captions == {
        "request_rate": "request rate (requests/s), from the checks",
        "error_ratio": "error ratio (5xx / requests), from the checks; "
        "dotted line: max_error_ratio = 0.01",
        "p99_ms": "p99 latency (ms), from the checks; dotted line: max_p99_ms = 50",
        "mean_probability": "mean predicted probability, from the checks",
    }
    assert _pixels_near(tmp_path / "p99_ms.png", CANARY_ORANGE) > 20


def test_plots_use_the_series_where_there_is_one(tmp_path: Path) -> None:
    page = write_report(_record(series=True), tmp_path)[-1].read_text(encoding="utf-8")

    captions = _captions(page)
    assert captions["p99_ms"] == "p99 latency (ms); dotted line: max_p99_ms = 50"
    assert captions["request_rate"] == "request rate (requests/s)"
    assert captions["error_ratio"].startswith("error ratio (5xx / requests), from the checks")
    assert captions["mean_probability"] == "mean predicted probability, from the checks"


def test_a_record_without_checks_renders_with_no_data(tmp_path: Path) -> None:
    record = AnalysisRecord(
        model_name="churn",
        version="3",
        stable_version=None,
        platform="kubernetes",
        steps=(10, 100),
        interval_s=300.0,
        policy=POLICY,
        started_at=START,
        finished_at=START + 5.0,
        outcome="rolled_back",
        final_weight=0,
        reasons=["the canary's pods never became ready"],
    )

    paths = write_report(record, tmp_path)

    page = paths[-1].read_text(encoding="utf-8")
    assert "<h1>churn v3 canary vs no stable</h1>" in page
    assert "No check was made." in page
    assert "the canary&#x27;s pods never became ready" in page
    assert all(caption.split(";")[0].endswith(": no data") for caption in _captions(page).values())
    assert len(_captions(page)) == len(METRICS)
    for png in paths[1:-1]:
        with Image.open(png) as image:
            assert image.format == "PNG"
        assert _pixels_near(png, CANARY_ORANGE) == 0


def test_summarize_gives_outcome_versions_and_one_line_per_check() -> None:
    lines = summarize(_record())

    assert lines == [
        "outcome: promoted",
        "final weight: 100 % canary",
        "versions: churn v3 canary, v2 stable",
        "reason: every check passed",
        "t+12s 10% pass -> advance: p99 22 ms <= 50 ms",
        "t+24s 50% inconclusive -> hold: only 40 requests, 100 needed",
        "t+36s 100% pass -> promote: p99 23 ms <= 50 ms",
    ]


def test_summarize_an_open_promotion_without_checks() -> None:
    record = _record().model_copy(
        update={"outcome": None, "final_weight": None, "reasons": [], "checks": []}
    )

    assert summarize(record) == [
        "outcome: in progress",
        "final weight: not set",
        "versions: churn v3 canary, v2 stable",
    ]
