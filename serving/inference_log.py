"""Inference logging for drift monitoring, off the request path, and its write-ahead spool.

This module owns the log's layout and columns; the drift reader (``steps/monitor/window.py``)
and the drift benchmark import them from here:
``<log_dir>/model=<model_name>/date=YYYY-MM-DD/part-<epoch_ms>-<uuid8>.parquet`` (:data:`LAYOUT`,
:func:`part_path`) with columns
``row_id`` (string), ``timestamp`` (timestamp[ms, tz=UTC]), ``model_name`` (string),
``model_version`` (string), ``prediction`` (float64), then one column per feature in spec order
(numeric float64, categorical string; both nullable).

Requests hand rows to :meth:`InferenceLog.append`, which appends them to a bounded in-memory
buffer and to this process's spool segment (one ``write()`` of one line). A background thread
writes a Parquet file once ``flush_rows`` rows wait or every ``flush_interval_s``, then deletes
the spool segment that file covers; :meth:`InferenceLog.close` writes what is left (the service
calls it on shutdown). ``log_dir`` is a local directory or ``s3://bucket/prefix`` (boto3).

The spool is what keeps a killed worker's rows: once ``write()`` returns, the bytes are in the
kernel's page cache and survive the death of the process (SIGKILL, OOM kill) without an fsync;
a crash of the machine itself is not covered. Segments live in ``<log_dir>/.spool/`` for a local
log (readers skip names starting with "."), or under the system temp directory for S3 (see
:func:`default_spool_dir`); they are named ``spool-<pid>-<token>-<seq>.jsonl`` and each is held
under an exclusive ``flock`` while its process lives, so workers never share one and a starting
worker recovers exactly the segments whose process is gone (:meth:`InferenceLog.start`). A
segment is a header line (model name, version, feature columns) and then one line per batch,
``<rows> <json>``; a line that does not decode (torn by a kill) is skipped and counted.
Delivery is at least once: a worker killed between writing a file and deleting its segment has
those rows written again at the next start (``row_id`` tells them apart).

Rows that cannot be written (e.g. a string that is not valid Unicode) are dropped one by one and
counted under ``bad_row``; the rest of their flush is written.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import tempfile
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
SPOOL_DIR = ".spool"
SPOOL_FILE = re.compile(r"^spool-\d+-[0-9a-f]{8}-\d+\.jsonl$")
SPOOL_FORMAT = 1

BAD_ROW = "bad_row"
"""Drop reason: a row Parquet cannot hold (e.g. a lone surrogate in a string)."""
TORN_SPOOL_RECORD = "torn_spool_record"
"""Drop reason: a spool line that does not decode (cut short by a kill, or damaged)."""
WRITE_ERROR = "write_error"
"""Drop reason: the file could not be written (disk, S3); its spool segment is kept for a retry."""
_ROW_ERRORS = (pa.ArrowException, ValueError, TypeError, OverflowError)


def model_partition(model_name: str) -> str:
    """The folder, relative to the log root, holding every file of ``model_name``."""
    return f"model={model_name}"


def part_path(model_name: str, day: str, epoch_ms: int, suffix: str) -> str:
    """The path, relative to the log root, of one log file written on ``day`` (YYYY-MM-DD)."""
    return f"{model_partition(model_name)}/date={day}/part-{epoch_ms}-{suffix}.parquet"


def default_spool_dir(target: LogTarget) -> Path:
    """Where the spool of ``target`` lives unless the caller names a directory.

    ``<log_dir>/.spool`` for a local log; for S3, ``<temp dir>/loopline-inference-spool/<bucket>/
    <prefix>``, which outlives a killed process but, in a container, only a container restart
    when it is on a volume (mount one there, or pass ``spool_dir``).
    """
    if target.local_dir is not None:
        return target.local_dir / SPOOL_DIR
    root = Path(tempfile.gettempdir()) / "loopline-inference-spool" / str(target.bucket)
    return root / target.prefix if target.prefix else root


@dataclass(frozen=True)
class _Stream:
    """What rows are logged as: model name and version, and (name, is categorical) per feature."""

    model_name: str
    model_version: str
    features: tuple[tuple[str, bool], ...]

    @classmethod
    def of(cls, spec: FeatureSpec, model_name: str, model_version: str) -> _Stream:
        features = tuple((name, name in spec.categorical) for name in spec.order)
        return cls(model_name, model_version, features)

    def schema(self) -> pa.Schema:
        fields = [
            pa.field(ROW_ID, pa.string(), nullable=False),
            pa.field(TIMESTAMP, pa.timestamp("ms", tz="UTC"), nullable=False),
            pa.field(MODEL_NAME, pa.string(), nullable=False),
            pa.field(MODEL_VERSION, pa.string(), nullable=False),
            pa.field(PREDICTION, pa.float64(), nullable=False),
        ]
        for name, categorical in self.features:
            fields.append(pa.field(name, pa.string() if categorical else pa.float64()))
        return pa.schema(fields)

    def header(self) -> bytes:
        """The first line of a spool segment."""
        header = {
            "spool": SPOOL_FORMAT,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "features": [[name, categorical] for name, categorical in self.features],
        }
        return json.dumps(header).encode("ascii") + b"\n"

    @classmethod
    def from_header(cls, line: bytes) -> _Stream:
        """Raises ValueError (or KeyError/TypeError) when ``line`` is not a spool header."""
        header = json.loads(line)
        if header["spool"] != SPOOL_FORMAT:
            raise ValueError(f"spool format {header['spool']!r}, expected {SPOOL_FORMAT}")
        features = tuple((str(name), bool(categorical)) for name, categorical in header["features"])
        return cls(str(header["model_name"]), str(header["model_version"]), features)

    def encode(self, batch: LoggedBatch) -> bytes:
        """One spool line: ``<rows> <json>\\n``, ASCII (JSON escapes any string, lone surrogates
        included), so no row can make it fail."""
        rows = [[row.get(name) for name, _ in self.features] for row in batch.rows]
        record = [batch.timestamp_ms, list(batch.row_ids), list(batch.predictions), rows]
        return b"%d %s\n" % (len(rows), json.dumps(record).encode("ascii"))

    def decode(self, line: bytes) -> LoggedBatch:
        """Raises ValueError (or KeyError/TypeError) when ``line`` is not a whole record."""
        count, _, payload = line.partition(b" ")
        timestamp_ms, row_ids, predictions, values = json.loads(payload)
        size = int(count)
        if not len(row_ids) == len(predictions) == len(values) == size:
            raise ValueError(f"record of {size} rows holds {len(row_ids)}")
        names = [name for name, _ in self.features]
        rows = [dict(zip(names, row, strict=True)) for row in values]
        return LoggedBatch(int(timestamp_ms), row_ids, predictions, rows)


def arrow_schema(spec: FeatureSpec) -> pa.Schema:
    """Return the Parquet schema of the inference log for a model with ``spec``."""
    return _Stream.of(spec, "", "").schema()


@dataclass
class _Segment:
    """An open spool file, locked by this process until it is deleted or handed back."""

    path: Path
    fd: int


class _Spool:
    """This process's spool segments: one open at a time, rotated at every flush."""

    def __init__(self, directory: Path, stream: _Stream) -> None:
        self._directory = directory
        self._header = stream.header()
        self._token = uuid.uuid4().hex[:8]
        self._sequence = 0
        self._segment: _Segment | None = None

    def append(self, record: bytes) -> None:
        """Write ``record`` with one ``write()`` (two for a new segment's first record).

        Raises:
            OSError: when the spool cannot be written (the caller keeps the rows in memory).
        """
        if self._segment is None:
            self._segment = self._open()
            record = self._header + record
        _write_all(self._segment.fd, record)

    def rotate(self) -> _Segment | None:
        """Hand over the open segment (still locked); the next append starts a new one."""
        segment, self._segment = self._segment, None
        return segment

    def _open(self) -> _Segment:
        self._directory.mkdir(parents=True, exist_ok=True)
        self._sequence += 1
        path = self._directory / f"spool-{os.getpid()}-{self._token}-{self._sequence:06d}.jsonl"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(path, flags, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return _Segment(path, fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _release(segment: _Segment, *, delete: bool) -> None:
    """Delete ``segment`` (its rows are written) or keep it for the next start, and unlock it."""
    try:
        if delete:
            segment.path.unlink(missing_ok=True)
    finally:
        os.close(segment.fd)


def _claim_dead_segment(path: Path) -> _Segment | None:
    """Lock a segment whose process is gone; None when it is live or already recovered."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if os.fstat(fd).st_nlink == 0:  # recovered and deleted by another process meanwhile
        os.close(fd)
        return None
    return _Segment(path, fd)


def _read_segment(data: bytes) -> tuple[_Stream | None, list[LoggedBatch], int]:
    """Decode a spool segment's bytes.

    Returns:
        Its stream (None when the header is unreadable), its whole records, and the rows of
        the records that do not decode (a record whose row count is unreadable counts as 1).
    """
    lines = [line for line in data.split(b"\n") if line]
    if not lines:
        return None, [], 0
    try:
        stream: _Stream | None = _Stream.from_header(lines[0])
    except (ValueError, KeyError, TypeError):
        stream = None
    batches: list[LoggedBatch] = []
    torn_rows = 0
    for line in lines[1:]:
        try:
            if stream is None:
                raise ValueError("no header")
            batches.append(stream.decode(line))
        except (ValueError, KeyError, TypeError):
            count = line.partition(b" ")[0]
            torn_rows += int(count) if count.isdigit() else 1
    return stream, batches, torn_rows


class InferenceLog:
    """A bounded buffer of scored rows, its spool, and the thread that writes Parquet files."""

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
        spool_dir: Path | None = None,
    ) -> None:
        """Prepare the log; nothing runs and no file is touched until :meth:`start`/:meth:`append`.

        Args:
            spool_dir: where the spool segments go [default: :func:`default_spool_dir`].
        """
        self._target = target
        self._stream = _Stream.of(spec, model_name, model_version)
        self._spool_dir = spool_dir or default_spool_dir(target)
        self._spool = _Spool(self._spool_dir, self._stream)
        self._spool_failed = False
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
        """Write the rows of spool segments left by dead processes, then start the writer."""
        self.recover()
        self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
        self._thread.start()

    def append(self, batch: LoggedBatch) -> bool:
        """Queue a batch for writing and spool it; never waits for the writer.

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
                self._spool_append(batch)
                self._pending.append(batch)
                self._pending_rows += size
                if self._pending_rows >= self._flush_rows:
                    self._wake.notify()
                return True
        logger.warning("inference log dropped %d rows: %s", size, reason)
        self._drop(size, reason)
        return False

    def _spool_append(self, batch: LoggedBatch) -> None:
        try:
            self._spool.append(self._stream.encode(batch))
        except (OSError, ValueError, TypeError):
            # The rows are still written from memory; only a kill before then would lose them.
            if not self._spool_failed:
                logger.exception("inference log spool %s cannot be written", self._spool_dir)
            self._spool_failed = True
        else:
            self._spool_failed = False

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop taking rows, write everything buffered and wait for the writer thread."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.error("inference log writer did not finish within %.0f s", timeout_s)

    def recover(self) -> int:
        """Write the rows of every spool segment whose process is gone, deleting each segment.

        A segment that cannot be written is logged and kept for the next start.

        Returns:
            The rows recovered.
        """
        try:
            paths = sorted(p for p in self._spool_dir.iterdir() if SPOOL_FILE.match(p.name))
        except (FileNotFoundError, NotADirectoryError):
            return 0  # no spool yet (or no log directory: the writes will say so)
        recovered = 0
        for path in paths:
            segment = _claim_dead_segment(path)
            if segment is None:
                continue
            written = False
            try:
                recovered += self._recover_segment(segment)
                written = True
            except Exception:  # a start must not fail on a log outage; the segment is kept
                logger.exception("inference log could not recover spool segment %s", path)
            finally:
                _release(segment, delete=written)
        if recovered:
            logger.info("inference log recovered %d rows from %s", recovered, self._spool_dir)
        return recovered

    def _recover_segment(self, segment: _Segment) -> int:
        with os.fdopen(os.dup(segment.fd), "rb") as source:
            stream, batches, torn_rows = _read_segment(source.read())
        if torn_rows:
            logger.warning("spool segment %s: %d rows torn, skipped", segment.path, torn_rows)
            self._drop(torn_rows, TORN_SPOOL_RECORD)
        if stream is None or not batches:
            return 0
        self._write_stream(stream, batches)
        return sum(len(batch.row_ids) for batch in batches)

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
                segment = self._spool.rotate()
                closing = self._closing
            if batches:
                self._write_safely(batches, segment)
            elif segment is not None:
                _release(segment, delete=True)
            deadline = time.monotonic() + self._flush_interval_s
            if closing:
                return

    def _write_safely(self, batches: list[LoggedBatch], segment: _Segment | None) -> None:
        written = False
        try:
            self.write(batches)
            written = True
        except Exception:  # the writer thread must outlive a failed upload or a full disk
            rows = sum(len(batch.row_ids) for batch in batches)
            logger.exception("inference log could not write %d rows", rows)
            self._drop(rows, WRITE_ERROR)
        finally:
            if segment is not None:
                _release(segment, delete=written)

    def write(self, batches: Sequence[LoggedBatch]) -> list[str]:
        """Write ``batches`` now, one file per UTC date; used by the writer thread.

        Rows that cannot be written are left out and counted (``bad_row``).

        Returns:
            The paths or ``s3://`` URIs written.
        """
        return self._write_stream(self._stream, batches)

    def _write_stream(self, stream: _Stream, batches: Sequence[LoggedBatch]) -> list[str]:
        by_date: dict[str, list[LoggedBatch]] = {}
        for batch in batches:
            day = datetime.fromtimestamp(batch.timestamp_ms / 1000, tz=UTC).date().isoformat()
            by_date.setdefault(day, []).append(batch)
        written = []
        for day, group in sorted(by_date.items()):
            table = self._table(stream, group)
            if table.num_rows:
                written.append(self._write_file(stream.model_name, day, table))
        return written

    def _table(self, stream: _Stream, batches: Sequence[LoggedBatch]) -> pa.Table:
        """The rows of ``batches`` that Parquet can hold; the others are dropped and counted."""
        try:
            return _build_table(stream, batches)
        except _ROW_ERRORS:
            pass  # find the bad rows one by one below
        tables: list[pa.Table] = []
        bad = 0
        for batch in batches:
            for index, row_id in enumerate(batch.row_ids):
                single = LoggedBatch(
                    batch.timestamp_ms, [row_id], [batch.predictions[index]], [batch.rows[index]]
                )
                try:
                    tables.append(_build_table(stream, [single]))
                except _ROW_ERRORS as err:
                    bad += 1
                    logger.warning("inference log dropped row %r: %s", row_id, err)
        self._drop(bad, BAD_ROW)
        return pa.concat_tables(tables) if tables else stream.schema().empty_table()

    def _drop(self, rows: int, reason: str) -> None:
        if rows and self._on_drop is not None:
            self._on_drop(rows, reason)

    def _write_file(self, model_name: str, day: str, table: pa.Table) -> str:
        relative = part_path(model_name, day, time.time_ns() // 1_000_000, uuid.uuid4().hex[:8])
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


def _build_table(stream: _Stream, batches: Sequence[LoggedBatch]) -> pa.Table:
    schema = stream.schema()
    columns: dict[str, list[Any]] = {name: [] for name in schema.names}
    for batch in batches:
        size = len(batch.row_ids)
        columns[ROW_ID].extend(batch.row_ids)
        columns[TIMESTAMP].extend([batch.timestamp_ms] * size)
        columns[PREDICTION].extend(float(p) for p in batch.predictions)
        for name, _ in stream.features:
            columns[name].extend(row.get(name) for row in batch.rows)
    rows = len(columns[ROW_ID])
    columns[MODEL_NAME] = [stream.model_name] * rows
    columns[MODEL_VERSION] = [stream.model_version] * rows
    return pa.table(columns, schema=schema)
