"""The drift benchmark's generator and child check, on tiny logs (the real sizes are make
bench-drift's business)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.progress import Progress
from typer.testing import CliRunner

from scripts import bench_drift
from steps.monitor.window import Window, read_window


@pytest.fixture(scope="module")
def bench_logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bench")
    with Progress(disable=True) as progress:
        return {
            "shifted": bench_drift.generate_log(
                root, bench_drift.LogRecipe(6_000, 0.3, 2), progress
            ),
            "stable": bench_drift.generate_log(
                root, bench_drift.LogRecipe(6_000, 0.0, 2), progress
            ),
            "reference": bench_drift.reference_file(root, 5_000),
        }


def test_generated_logs_are_in_the_serving_layout_and_cached(bench_logs: dict[str, Path]) -> None:
    sample = read_window(
        str(bench_logs["stable"]),
        bench_drift.MODEL,
        bench_drift.VERSION,
        bench_drift.NUMERIC,
        bench_drift.CATEGORICAL,
        Window(),
        100_000,
        seed=1,
    )
    assert sample.rows == 6_000
    assert len(bench_drift.NUMERIC) + len(bench_drift.CATEGORICAL) == 20
    assert sample.first is not None and sample.last is not None
    assert sample.first >= bench_drift.END - bench_drift.SPAN and sample.last < bench_drift.END
    parts = list(bench_logs["stable"].rglob("part-*.parquet"))
    assert len(parts) == 1
    before = parts[0].stat().st_mtime_ns
    with Progress(disable=True) as progress:
        again = bench_drift.generate_log(
            bench_logs["stable"].parent.parent, bench_drift.LogRecipe(6_000, 0.0, 2), progress
        )
    assert again == bench_logs["stable"]
    assert parts[0].stat().st_mtime_ns == before  # reused, not rewritten


@pytest.mark.parametrize(("log", "expected"), [("shifted", bench_drift.SHIFTED), ("stable", ())])
def test_the_child_check_finds_the_shift_and_leaves_stable_alone(
    bench_logs: dict[str, Path], log: str, expected: tuple[str, ...]
) -> None:
    arguments = ["check", str(bench_logs[log]), str(bench_logs["reference"])]
    result = CliRunner().invoke(bench_drift.app, [*arguments, "--sample-cap", "4000"])
    assert result.exit_code == 0, result.output
    measured = json.loads(result.output.strip().splitlines()[-1])
    assert (measured["rows"], measured["sampled"]) == (6_000, 4_000)
    assert sorted(measured["drifted_features"]) == sorted(expected)
    assert measured["drifted"] is bool(expected)  # 3 of 20 at the bench's drift share 0.15
    assert measured["peak_rss_mb"] > 100
