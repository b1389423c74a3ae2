"""Inference logging for drift monitoring, off the request path.

This module owns the log's layout and columns; the drift reader (``steps/monitor/window.py``)
and the drift benchmark import them from here:
``<log_dir>/model=<model_name>/date=YYYY-MM-DD/part-<epoch_ms>-<uuid8>.parquet`` (:data:`LAYOUT`,
:func:`part_path`) with columns
``row_id`` (string), ``timestamp`` (timestamp[ms, tz=UTC]), ``model_name`` (string),
``model_version`` (string), ``prediction`` (float64), then one column per feature in spec order
(numeric float64, categorical string; both nullable).

Requests hand rows to :meth:`InferenceLog.append`, which only appends to a bounded in-memory
buffer. A background thread writes a file once ``flush_rows`` rows wait or every
``flush_interval_s``, and :meth:`InferenceLog.close` writes what is left (the service calls it on
shutdown). ``log_dir`` is a local directory or ``s3://bucket/prefix`` (uploaded with boto3).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from serving.features import FeatureSpec

logger = logging.getLogger("loopline.inference_log")

DropHandler = Callable[[int, str], None]


@dataclass(frozen=True)
class LoggedBatch:
    """Rows scored together: one timestamp, a row id and probability per row."""

    timestamp_ms: int
    row_ids: Sequence[str]
    predictions: Sequence[float]
    rows: Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class LogTarget:
    """Where files go: a local directory, or an S3 bucket and key prefix."""

    local_dir: Path | None = None
    bucket: str | None = None
    prefix: str = ""
    s3_endpoint_url: str | None = None

    @classmethod
    def parse(cls, log_dir: str, s3_endpoint_url: str | None = None) -> LogTarget:
        """Read ``log_dir`` as ``s3://bucket/prefix`` or a local path.

        Returns:
            The target.
        """
        if log_dir.startswith("s3://"):
            bucket, _, prefix = log_dir.removeprefix("s3://").partition("/")
            return cls(bucket=bucket, prefix=prefix.strip("/"), s3_endpoint_url=s3_endpoint_url)
        return cls(local_dir=Path(log_dir).expanduser())


ROW_ID = "row_id"
TIMESTAMP = "timestamp"
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
PREDICTION = "prediction"
"""The model's P(positive) column: in the log, and in the training run's reference sample."""
LAYOUT = "<log>/model=<model_name>/date=YYYY-MM-DD/part-<epoch_ms>-<suffix>.parquet"
DATE_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
PART_FILE = re.compile(r"^part-.+\.parquet$")


def model_partition(model_name: str) -> str:
    """The folder, relative to the log root, holding every file of ``model_name``."""
    return f"model={model_name}"


def part_path(model_name: str, day: str, epoch_ms: int, suffix: str) -> str:
    """The path, relative to the log root, of one log file written on ``day`` (YYYY-MM-DD)."""
    return f"{model_partition(model_name)}/date={day}/part-{epoch_ms}-{suffix}.parquet"


def arrow_schema(spec: FeatureSpec) -> pa.Schema:
    """Return the Parquet schema of the inference log for a model with ``spec``."""
    fields = [
        pa.field(ROW_ID, pa.string(), nullable=False),
        pa.field(TIMESTAMP, pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field(MODEL_NAME, pa.string(), nullable=False),
        pa.field(MODEL_VERSION, pa.string(), nullable=False),
        pa.field(PREDICTION, pa.float64(), nullable=False),
    ]
    for name in spec.order:
        fields.append(pa.field(name, pa.string() if name in spec.categorical else pa.float64()))
    return pa.schema(fields)


class InferenceLog:
    """A bounded buffer of scored rows and the thread that writes it out as Parquet files."""

    def __init__(
        self,
        target: LogTarget,
        spec: FeatureSpec,
        model_name: str,
        model_version: str,
        *,
        flush_rows: int = 1000,
        flush_interval_s: float = 5.0,
        capacity_rows: int = 100_000,
        on_drop: DropHandler | None = None,
    ) -> None:
        """Prepare the log; nothing runs until :meth:`start`."""
        self._target = target
        self._spec = spec
        self._schema = arrow_schema(spec)
        self._model_name = model_name
        self._model_version = model_version
        self._flush_rows = flush_rows
        self._flush_interval_s = flush_interval_s
        self._capacity_rows = capacity_rows
        self._on_drop = on_drop
        self._pending: deque[LoggedBatch] = deque()
        self._pending_rows = 0
        self._wake = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._s3: Any = None

    def start(self) -> None:
        """Start the writer thread."""
        self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
        self._thread.start()

    def append(self, batch: LoggedBatch) -> bool:
        """Queue a batch for writing; never blocks on I/O.

        Returns:
            False when the buffer is full or the log is closed (the rows are dropped and counted
            through ``on_drop``), True otherwise.
        """
        size = len(batch.row_ids)
        with self._wake:
            reason = "closed" if self._closing else None
            if reason is None and self._pending_rows + size > self._capacity_rows:
                reason = "buffer_full"
            if reason is None:
                self._pending.append(batch)
                self._pending_rows += size
                if self._pending_rows >= self._flush_rows:
                    self._wake.notify()
                return True
        logger.warning("inference log dropped %d rows: %s", size, reason)
        if self._on_drop is not None:
            self._on_drop(size, reason)
        return False

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop taking rows, write everything buffered and wait for the writer thread."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.error("inference log writer did not finish within %.0f s", timeout_s)

    def _run(self) -> None:
        deadline = time.monotonic() + self._flush_interval_s
        while True:
            with self._wake:
                while not self._closing and self._pending_rows < self._flush_rows:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wake.wait(remaining)
                batches = list(self._pending)
                self._pending.clear()
                self._pending_rows = 0
                closing = self._closing
            if batches:
                self._write_safely(batches)
            deadline = time.monotonic() + self._flush_interval_s
            if closing:
                return

    def _write_safely(self, batches: list[LoggedBatch]) -> None:
        try:
            self.write(batches)
        except Exception:  # the writer thread must outlive a failed upload or a full disk
            rows = sum(len(batch.row_ids) for batch in batches)
            logger.exception("inference log could not write %d rows", rows)
            if self._on_drop is not None:
                self._on_drop(rows, "write_error")

    def write(self, batches: Sequence[LoggedBatch]) -> list[str]:
        """Write ``batches`` now, one file per UTC date; used by the writer thread.

        Returns:
            The paths or ``s3://`` URIs written.
        """
        by_date: dict[str, list[LoggedBatch]] = {}
        for batch in batches:
            day = datetime.fromtimestamp(batch.timestamp_ms / 1000, tz=UTC).date().isoformat()
            by_date.setdefault(day, []).append(batch)
        return [self._write_file(day, group) for day, group in sorted(by_date.items())]

    def _table(self, batches: Sequence[LoggedBatch]) -> pa.Table:
        columns: dict[str, list[Any]] = {name: [] for name in self._schema.names}
        for batch in batches:
            size = len(batch.row_ids)
            columns[ROW_ID].extend(batch.row_ids)
            columns[TIMESTAMP].extend([batch.timestamp_ms] * size)
            columns[PREDICTION].extend(float(p) for p in batch.predictions)
            for name in self._spec.order:
                columns[name].extend(row.get(name) for row in batch.rows)
        rows = len(columns[ROW_ID])
        columns[MODEL_NAME] = [self._model_name] * rows
        columns[MODEL_VERSION] = [self._model_version] * rows
        return pa.table(columns, schema=self._schema)

    def _write_file(self, day: str, batches: Sequence[LoggedBatch]) -> str:
        table = self._table(batches)
        relative = part_path(
            self._model_name, day, time.time_ns() // 1_000_000, uuid.uuid4().hex[:8]
        )
        name = relative.rsplit("/", 1)[1]
        if self._target.local_dir is not None:
            path = self._target.local_dir / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            # Readers skip files starting with "."; the rename makes the file appear whole.
            partial = path.with_name(f".{name}.partial")
            pq.write_table(table, partial)
            partial.replace(path)
            return str(path)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        key = f"{self._target.prefix}/{relative}" if self._target.prefix else relative
        self._s3_client().put_object(
            Bucket=self._target.bucket, Key=key, Body=sink.getvalue().to_pybytes()
        )
        return f"s3://{self._target.bucket}/{key}"

    def _s3_client(self) -> Any:
        if self._s3 is None:
            import boto3  # only a log going to S3 pays for boto3

            self._s3 = boto3.client("s3", endpoint_url=self._target.s3_endpoint_url)
        return self._s3
