"""The load test's pure parts: Locust's stats CSV and the request rows."""

from __future__ import annotations

import pytest

from scripts.loadtest import ID_COLUMNS, parse_stats, row_pool
from steps.core.errors import ConfigError

HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
    "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
)


def _row(name: str, count: int, failures: int, rps: float, p50: int, p95: int, p99: int) -> str:
    return (
        f"POST,{name},{count},{failures},{p50},1.0,1,200,50,{rps},0.0,"
        f"{p50},1,1,1,1,{p95},1,{p99},1,1,200"
    )


def test_stats_are_read_per_endpoint_and_aggregated() -> None:
    text = "\n".join(
        [
            HEADER,
            _row("/predict", 900, 2, 30.0, 4, 12, 25),
            _row("Aggregated", 950, 3, 31.7, 5, 14, 30),
        ]
    )
    stats = {row.name: row for row in parse_stats(text)}
    assert stats["/predict"].requests == 900 and stats["/predict"].failures == 2
    assert (stats["Aggregated"].p50_ms, stats["Aggregated"].p95_ms) == (5.0, 14.0)
    assert stats["Aggregated"].p99_ms == 30.0
    assert stats["Aggregated"].requests_per_s == pytest.approx(31.7)


def test_an_incompatible_csv_names_the_missing_columns() -> None:
    with pytest.raises(ConfigError, match="99%"):
        parse_stats("Type,Name,Request Count,Failure Count,Requests/s,50%,95%\nPOST,/p,1,0,1,1,1")


def test_request_rows_are_json_ready_feature_dicts() -> None:
    rows = row_pool(seed=3)
    assert len(rows) == 2_000
    assert not set(ID_COLUMNS) & set(rows[0])
    assert any(value is None for row in rows for value in row.values())  # missing values kept
    assert all(value == value for row in rows for value in row.values() if value is not None)
