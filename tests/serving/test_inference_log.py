"""Tests for serving/inference_log.py: the fixed Parquet layout, flushing, bounds, S3."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from serving.features import FeatureSpec
from serving.inference_log import InferenceLog, LoggedBatch, LogTarget
from tests.fixtures.s3 import S3Server

SPEC = FeatureSpec(
    target="churned",
    numeric=("tenure", "charges"),
    categorical={"plan": ("basic", "pro")},
    order=("tenure", "charges", "plan"),
)
# 2026-11-23T23:59:59.500Z and half a second later, the next UTC day.
BEFORE_MIDNIGHT_MS = 1_795_478_399_500
AFTER_MIDNIGHT_MS = BEFORE_MIDNIGHT_MS + 1_000


def _batch(timestamp_ms: int, *ids: str) -> LoggedBatch:
    rows = [
        {"tenure": float(i), "charges": None, "plan": "pro" if i % 2 else None}
        for i in range(len(ids))
    ]
    return LoggedBatch(timestamp_ms, list(ids), [0.25 * (i + 1) for i in range(len(ids))], rows)


def _log(target: LogTarget, **options: object) -> InferenceLog:
    return InferenceLog(target, SPEC, "churn", "7", **options)  # type: ignore[arg-type]


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("part-*.parquet"))


def test_files_follow_the_fixed_layout_and_schema(tmp_path: Path) -> None:
    log = _log(LogTarget.parse(str(tmp_path)))
    written = log.write([_batch(BEFORE_MIDNIGHT_MS, "a", "b")])
    (path,) = (Path(p) for p in written)
    assert path.parent == tmp_path / "model=churn" / "date=2026-11-23"
    assert path.name.startswith("part-") and path.suffix == ".parquet"
    epoch_ms, uuid8 = path.stem.removeprefix("part-").split("-")
    assert abs(int(epoch_ms) - time.time() * 1000) < 60_000
    assert len(uuid8) == 8
    table = pq.read_table(path)
    assert table.schema.names == [
        "row_id",
        "timestamp",
        "model_name",
        "model_version",
        "prediction",
        "tenure",
        "charges",
        "plan",
    ]
    assert table.schema.field("timestamp").type == pa.timestamp("ms", tz="UTC")
    assert table.schema.field("prediction").type == pa.float64()
    assert table.schema.field("tenure").type == pa.float64()
    assert table.schema.field("plan").type == pa.string()
    assert table.to_pylist()[1] == {
        "row_id": "b",
        "timestamp": datetime(2026, 11, 23, 23, 59, 59, 500_000, tzinfo=UTC),
        "model_name": "churn",
        "model_version": "7",
        "prediction": 0.5,
        "tenure": 1.0,
        "charges": None,
        "plan": "pro",
    }


def test_rows_either_side_of_midnight_go_to_their_own_date(tmp_path: Path) -> None:
    log = _log(LogTarget.parse(str(tmp_path)))
    log.write([_batch(BEFORE_MIDNIGHT_MS, "a"), _batch(AFTER_MIDNIGHT_MS, "b", "c")])
    by_date = {
        p.parent.name: pq.read_table(p).column("row_id").to_pylist() for p in _files(tmp_path)
    }
    assert by_date == {"date=2026-11-23": ["a"], "date=2026-11-24": ["b", "c"]}


def test_a_file_is_written_once_flush_rows_wait(tmp_path: Path) -> None:
    log = _log(LogTarget.parse(str(tmp_path)), flush_rows=3, flush_interval_s=3600)
    log.start()
    log.append(_batch(BEFORE_MIDNIGHT_MS, "a", "b"))
    time.sleep(0.2)
    assert _files(tmp_path) == []
    log.append(_batch(BEFORE_MIDNIGHT_MS, "c"))
    deadline = time.monotonic() + 5
    while not _files(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    (path,) = _files(tmp_path)
    assert pq.read_table(path).column("row_id").to_pylist() == ["a", "b", "c"]
    log.close()


def test_a_file_is_written_every_flush_interval(tmp_path: Path) -> None:
    log = _log(LogTarget.parse(str(tmp_path)), flush_rows=1000, flush_interval_s=0.2)
    log.start()
    log.append(_batch(BEFORE_MIDNIGHT_MS, "a"))
    time.sleep(0.6)
    assert [pq.read_table(p).num_rows for p in _files(tmp_path)] == [1]
    log.close()


def test_close_writes_everything_buffered_and_refuses_more(tmp_path: Path) -> None:
    dropped: list[tuple[int, str]] = []
    log = _log(
        LogTarget.parse(str(tmp_path)),
        flush_rows=1000,
        flush_interval_s=3600,
        on_drop=lambda n, why: dropped.append((n, why)),
    )
    log.start()
    for index in range(50):
        log.append(_batch(BEFORE_MIDNIGHT_MS, f"r{index}"))
    log.close()
    assert sum(pq.read_table(p).num_rows for p in _files(tmp_path)) == 50
    assert log.append(_batch(BEFORE_MIDNIGHT_MS, "late")) is False
    assert dropped == [(1, "closed")]


def test_a_full_buffer_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    dropped: list[tuple[int, str]] = []
    log = _log(
        LogTarget.parse(str(tmp_path)),
        flush_rows=1000,
        capacity_rows=3,
        on_drop=lambda n, why: dropped.append((n, why)),
    )
    assert log.append(_batch(BEFORE_MIDNIGHT_MS, "a", "b")) is True
    assert log.append(_batch(BEFORE_MIDNIGHT_MS, "c", "d")) is False
    assert dropped == [(2, "buffer_full")]


def test_a_failed_write_is_counted_and_the_writer_keeps_going(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the log directory should be")
    dropped: list[tuple[int, str]] = []
    log = _log(
        LogTarget.parse(str(blocked)), flush_rows=1, on_drop=lambda n, why: dropped.append((n, why))
    )
    log.start()
    log.append(_batch(BEFORE_MIDNIGHT_MS, "a", "b"))
    deadline = time.monotonic() + 5
    while not dropped and time.monotonic() < deadline:
        time.sleep(0.02)
    log.close()
    assert dropped == [(2, "write_error")]


def test_s3_uri_is_split_into_bucket_and_prefix() -> None:
    target = LogTarget.parse("s3://logs/serving/churn/", "http://127.0.0.1:9000")
    assert (target.bucket, target.prefix, target.s3_endpoint_url) == (
        "logs",
        "serving/churn",
        "http://127.0.0.1:9000",
    )
    assert target.local_dir is None


@pytest.mark.integration
def test_files_are_uploaded_to_s3_with_the_same_layout(s3_server: S3Server, s3_bucket: str) -> None:
    log = _log(LogTarget.parse(f"s3://{s3_bucket}/inference", s3_server.endpoint_url), flush_rows=2)
    log.start()
    log.append(_batch(BEFORE_MIDNIGHT_MS, "a", "b"))
    log.close()
    client = s3_server.client()
    (item,) = client.list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert item["Key"].startswith("inference/model=churn/date=2026-11-23/part-")
    body = client.get_object(Bucket=s3_bucket, Key=item["Key"])["Body"].read()
    assert pq.read_table(io.BytesIO(body)).column("row_id").to_pylist() == ["a", "b"]
