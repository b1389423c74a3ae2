"""Reading a window of the inference log: time and row windows, version exclusion, bad files.

The logs are written with the serving process's own writer (tests/fixtures/inference_log.py), so
these tests also pin the layout both sides share.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from steps.core.errors import DataError
from steps.ml.synthetic import CATEGORIES, NUMERIC_FEATURES, churn_frame
from steps.monitor.window import Window, read_window
from tests.fixtures.inference_log import MODEL, write_log, write_raw_part
from tests.fixtures.s3 import S3Server

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
NUMERIC = list(NUMERIC_FEATURES)
CATEGORICAL = list(CATEGORIES)
SECOND = timedelta(seconds=1)


def read(log: Path | str, version: str = "1", window: Window | None = None, cap: int = 100_000):
    return read_window(
        str(log), MODEL, version, NUMERIC, CATEGORICAL, window or Window(), cap, seed=42
    )


def ramp(count: int) -> np.ndarray:
    """Predictions that double as row numbers: row i has prediction i / 1e6."""
    return np.arange(count) / 1e6


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """Two days of log: 600 rows of v1 two days ago, 1000 of v1 and 300 of v2 today."""
    root = tmp_path / "log"
    write_log(str(root), churn_frame(600, seed=1), "1", NOW - timedelta(days=2), SECOND)
    write_log(
        str(root), churn_frame(1000, seed=2), "1", NOW - timedelta(hours=3), SECOND, 10, ramp(1000)
    )
    write_log(str(root), churn_frame(300, seed=3), "2", NOW - timedelta(hours=1), SECOND)
    return root


def test_time_window_keeps_newer_rows_of_the_version_and_counts_the_others(log: Path) -> None:
    sample = read(log, window=Window(since=NOW - timedelta(hours=24)))
    assert sample.rows == 1000
    assert sample.excluded == {"2": 300}
    assert sample.excluded_rows == 300
    assert sample.files == 2  # the day two days ago is not even listed
    assert list(sample.frame.columns) == [*NUMERIC, *CATEGORICAL, "prediction"]
    assert sample.frame["prediction"].tolist() == ramp(1000).tolist()  # all rows, in order
    assert sample.first == NOW - timedelta(hours=3)
    assert sample.last == NOW - timedelta(hours=3) + 99 * SECOND  # 100 batches of 10 rows
    assert sample.location == f"{log}/model={MODEL}"


def test_time_window_cuts_inside_a_day(log: Path) -> None:
    # 100 batches of 10 rows, one second apart: the last 30 seconds hold 30 batches.
    since = NOW - timedelta(hours=3) + 70 * SECOND
    sample = read(log, window=Window(since=since))
    assert sample.rows == 300
    assert sample.frame["prediction"].min() == pytest.approx(700 / 1e6)


def test_no_window_reads_every_day(log: Path) -> None:
    sample = read(log)
    assert (sample.rows, sample.excluded, sample.files) == (1600, {"2": 300}, 3)


def test_values_arrive_as_logged(log: Path) -> None:
    expected = churn_frame(1000, seed=2)
    sample = read(log, window=Window(since=NOW - timedelta(hours=24)))
    for name in NUMERIC:
        assert sample.frame[name].dtype == np.float64
        np.testing.assert_array_equal(sample.frame[name], expected[name].astype(float))
    for name in CATEGORICAL:
        assert sample.frame[name].tolist() == expected[name].tolist()
    assert sample.frame["total_charges"].isna().sum() == expected["total_charges"].isna().sum()


def test_last_rows_counts_every_version_then_excludes_the_others(log: Path) -> None:
    # The newest 500 rows: 300 of v2 (an hour ago) and the last 200 of v1 (three hours ago).
    sample = read(log, window=Window(last_rows=500))
    assert sample.rows == 200
    assert sample.excluded == {"2": 300}
    assert sample.frame["prediction"].min() == pytest.approx(800 / 1e6)
    assert sample.files == 2  # today's rows cover 500: the older day is not read


def test_last_rows_reaching_into_an_older_day(log: Path) -> None:
    sample = read(log, window=Window(last_rows=1500))
    assert (sample.rows, sample.excluded_rows, sample.files) == (1200, 300, 3)


def test_last_rows_beyond_the_log_is_the_whole_log(log: Path) -> None:
    assert read(log, window=Window(last_rows=10_000)).rows == 1600


def test_since_and_last_rows_together_keep_the_smaller_window(log: Path) -> None:
    since = NOW - timedelta(minutes=30)  # after every row: nothing newer
    assert read(log, window=Window(since=since, last_rows=500)).rows == 0
    since = NOW - timedelta(hours=24)
    both = read(log, window=Window(since=since, last_rows=5_000))
    assert (both.rows, both.excluded_rows) == (1000, 300)


def test_only_other_versions_in_the_window_leaves_nothing(log: Path) -> None:
    sample = read(log, version="9", window=Window(since=NOW - timedelta(hours=24)))
    assert sample.rows == 0
    assert len(sample.frame) == 0
    assert list(sample.frame.columns) == [*NUMERIC, *CATEGORICAL, "prediction"]
    assert sample.excluded == {"1": 1000, "2": 300}
    assert sample.first is None


def test_sample_cap_keeps_a_seeded_uniform_sample(tmp_path: Path) -> None:
    root = tmp_path / "log"
    write_log(str(root), churn_frame(20_000, seed=4), "1", NOW, SECOND, 500, ramp(20_000))

    def sample(seed: int) -> np.ndarray:
        window = read_window(str(root), MODEL, "1", NUMERIC, CATEGORICAL, Window(), 1000, seed)
        assert window.rows == 20_000
        return window.frame["prediction"].to_numpy() * 1e6

    first, again, other = sample(7), sample(7), sample(8)
    assert len(first) == 1000
    assert len(np.unique(first)) == 1000  # without replacement
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert np.all(np.diff(first) > 0)  # kept in reading order
    # Uniform over the window: each fifth of the rows gets about a fifth of the sample.
    counts = np.bincount((first // 4000).astype(int), minlength=5)
    assert counts.min() > 150 and counts.max() < 250, counts


def test_a_missing_column_names_the_file_and_the_column(tmp_path: Path) -> None:
    root = tmp_path / "log"
    frame = churn_frame(50, seed=5).drop(columns=["age"])
    columns = {
        "timestamp": pa.array([NOW] * 50, pa.timestamp("ms", "UTC")),
        "model_version": pa.array(["1"] * 50),
        "prediction": pa.array(ramp(50)),
        **{name: pa.array(frame[name]) for name in frame.columns if name in NUMERIC + CATEGORICAL},
    }
    path = write_raw_part(root, "2026-03-10", columns)
    with pytest.raises(DataError, match=rf"file {path} lacks column\(s\) age;"):
        read(root)


@pytest.mark.parametrize(
    ("column", "array", "expected"),
    [
        ("age", pa.array(["old"] * 10), "age is string, expected float64"),
        ("region", pa.array([1.0] * 10), "region is double, expected string"),
        ("timestamp", pa.array(range(10), pa.int64()), "timestamp is int64, expected timestamp"),
        ("timestamp", pa.array([NOW] * 10, pa.timestamp("ms")), "expected timestamp[ms, tz=UTC]"),
        ("prediction", pa.array(["0.5"] * 10), "prediction is string, expected float64"),
        ("model_version", pa.array([1] * 10), "model_version is int64, expected string"),
    ],
)
def test_a_wrongly_typed_column_names_it_and_the_expected_type(
    tmp_path: Path, column: str, array: pa.Array, expected: str
) -> None:
    columns = _good_columns(10)
    columns[column] = array
    path = write_raw_part(tmp_path, "2026-03-10", columns)
    with pytest.raises(DataError, match="wrong type") as caught:
        read(tmp_path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_compatible_types_are_accepted_and_converted(tmp_path: Path) -> None:
    columns = _good_columns(10)
    columns["age"] = pa.array(range(10), pa.int32())
    columns["region"] = pa.array(["north"] * 10).dictionary_encode()
    columns["late_payments"] = pa.nulls(10)  # a part where a feature was always missing
    columns["timestamp"] = pa.array([NOW] * 10, pa.timestamp("us", "UTC"))
    write_raw_part(tmp_path, "2026-03-10", columns)
    sample = read(tmp_path, window=Window(since=NOW - SECOND))
    assert sample.rows == 10
    assert sample.frame["age"].tolist() == [float(i) for i in range(10)]
    assert sample.frame["region"].tolist() == ["north"] * 10
    assert sample.frame["late_payments"].isna().all()


def test_only_part_files_in_date_folders_are_read(tmp_path: Path) -> None:
    write_raw_part(tmp_path, "2026-03-10", _good_columns(10))
    day = tmp_path / f"model={MODEL}" / "date=2026-03-10"
    (day / ".part-1-abcdef12.parquet.partial").write_bytes(b"half written")
    (day / "_SUCCESS").write_bytes(b"")
    (tmp_path / f"model={MODEL}" / "notes").mkdir()
    assert read(tmp_path).rows == 10


def test_days_before_the_window_are_never_opened(tmp_path: Path) -> None:
    write_raw_part(tmp_path, "2026-03-10", _good_columns(10))
    old = tmp_path / f"model={MODEL}" / "date=2026-03-01"
    old.mkdir(parents=True)
    (old / "part-1-00000000.parquet").write_bytes(b"not parquet")
    assert read(tmp_path, window=Window(since=NOW - timedelta(days=1))).rows == 10
    with pytest.raises(DataError, match=r"date=2026-03-01/part-1-00000000\.parquet"):
        read(tmp_path)


def test_another_model_is_not_read(tmp_path: Path) -> None:
    write_raw_part(tmp_path, "2026-03-10", _good_columns(10), model_name="other")
    sample = read(tmp_path)
    assert (sample.rows, sample.files) == (0, 0)


def test_a_missing_log_root_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=rf"inference log {tmp_path}/nowhere does not exist"):
        read(tmp_path / "nowhere")


def test_a_file_uri_reads_like_a_path(log: Path) -> None:
    assert read(log.as_uri()).rows == 1600


@pytest.mark.integration
def test_s3_prefix_reads_like_a_directory(s3_server: S3Server, s3_bucket: str) -> None:
    uri = f"s3://{s3_bucket}/serving/log"
    written = write_log(
        uri,
        churn_frame(800, seed=6),
        "1",
        NOW - timedelta(hours=2),
        SECOND,
        prediction=ramp(800),
        s3_endpoint_url=s3_server.endpoint_url,
    )
    write_log(uri, churn_frame(200, seed=7), "2", NOW, s3_endpoint_url=s3_server.endpoint_url)
    assert written[0].startswith(f"s3://{s3_bucket}/serving/log/model={MODEL}/date=2026-03-10/")
    window = Window(since=NOW - timedelta(hours=3), last_rows=900)
    sample = read_window(
        uri, MODEL, "1", NUMERIC, CATEGORICAL, window, 500, seed=1, s3=s3_server.settings
    )
    assert (sample.rows, sample.excluded, sample.files) == (700, {"2": 200}, 2)
    assert len(sample.frame) == 500
    assert sample.frame["prediction"].min() >= 100 / 1e6


@pytest.mark.integration
def test_s3_errors_name_the_log(s3_server: S3Server, s3_bucket: str) -> None:
    with pytest.raises(DataError, match="inference log s3://no-such-bucket/log does not exist"):
        read_window(
            "s3://no-such-bucket/log", MODEL, "1", NUMERIC, CATEGORICAL, Window(), 10, 1,
            s3=s3_server.settings,
        )  # fmt: skip
    empty = read_window(
        f"s3://{s3_bucket}/nothing", MODEL, "1", NUMERIC, CATEGORICAL, Window(), 10, 1,
        s3=s3_server.settings,
    )  # fmt: skip
    assert (empty.rows, empty.files) == (0, 0)


def _good_columns(count: int) -> dict[str, pa.Array]:
    frame = churn_frame(count, seed=8)
    columns: dict[str, pa.Array] = {
        "row_id": pa.array([f"r{i}" for i in range(count)]),
        "timestamp": pa.array([NOW] * count, pa.timestamp("ms", "UTC")),
        "model_name": pa.array([MODEL] * count),
        "model_version": pa.array(["1"] * count),
        "prediction": pa.array(ramp(count)),
    }
    columns.update({name: pa.array(frame[name].astype(float)) for name in NUMERIC})
    columns.update({name: pa.array(frame[name]) for name in CATEGORICAL})
    return columns
