"""Read a window of the inference log, in bounded memory, as a seeded uniform sample.

The serving process writes the log in a fixed layout (see ``serving/inference_log.py``)::

    <log_uri>/model=<model_name>/date=YYYY-MM-DD/part-<epoch_ms>-<uuid8>.parquet

with columns ``row_id``, ``timestamp`` (timestamp[ms, tz=UTC]), ``model_name``,
``model_version``, ``prediction`` (float64) and one column per feature (numeric float64,
categorical string; both nullable). A row lives under the directory of its own UTC date.

:func:`read_window` never holds the whole window in memory, whatever its size:

1. it lists only the date directories the window can reach (``since`` prunes older dates;
   ``last_rows`` walks dates newest first until the footers' row counts cover N rows);
2. each file's footer is checked for the columns needed and their types (a clear
   :class:`~steps.core.errors.DataError` names the file, the column and the expected type);
3. for ``last_rows`` a pass over the ``timestamp`` column alone finds the N-th newest timestamp;
4. a pass over ``model_version`` alone counts the window's rows of *other* model versions
   (they are excluded, and the count reported);
5. the sampling pass reads only the needed columns with the time and version filters pushed down
   to Parquet (row groups whose statistics rule them out are skipped) and keeps a uniform sample
   of at most ``sample_cap`` rows: every row gets a seeded random key and the rows with the
   ``sample_cap`` smallest keys are kept (bottom-k reservoir), merged every ``2 * sample_cap``
   candidates, so memory follows ``sample_cap`` and the batch size, not the window.

Files are read in path order (date, then the epoch in the name) with one random stream per file,
so the same files, window and seed always give the same sample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pa_dataset
import pyarrow.fs as pa_fs

from serving.inference_log import (
    DATE_DIR,
    LAYOUT,
    MODEL_VERSION,
    PART_FILE,
    PREDICTION,
    TIMESTAMP,
    model_partition,
)
from steps.core.errors import DataError
from steps.core.settings import S3Settings

BATCH_ROWS = 65_536
_FORMAT = pa_dataset.ParquetFileFormat()
T = TypeVar("T")


@dataclass(frozen=True)
class Window:
    """Which logged rows to look at: newer than ``since`` and/or the newest ``last_rows``.

    With both, a row must satisfy both; with neither, the whole log is the window.
    """

    since: datetime | None = None
    last_rows: int | None = None

    def describe(self) -> str:
        """The window in words, e.g. ``since 2026-01-01T00:00:00+00:00, last 5000 rows``."""
        parts = []
        if self.since is not None:
            parts.append(f"since {self.since.astimezone(UTC).isoformat(timespec='seconds')}")
        if self.last_rows is not None:
            parts.append(f"last {self.last_rows} rows")
        return ", ".join(parts) or "the whole log"


@dataclass(frozen=True)
class WindowSample:
    """A seeded uniform sample of one model version's rows in a window, and the counts."""

    frame: pd.DataFrame
    rows: int
    excluded: dict[str, int]
    files: int
    location: str
    first: datetime | None = None
    last: datetime | None = None

    @property
    def excluded_rows(self) -> int:
        """Rows of other model versions in the window (left out of the sample)."""
        return sum(self.excluded.values())


@dataclass(frozen=True)
class _Log:
    uri: str
    filesystem: pa_fs.FileSystem
    base: str


@dataclass
class _Reservoir:
    """Bottom-k sample: keeps the rows with the ``cap`` smallest random keys seen so far."""

    cap: int
    threshold: float = 1.0
    pending: list[pa.RecordBatch] = field(default_factory=list)
    pending_keys: list[np.ndarray] = field(default_factory=list)
    pending_rows: int = 0

    def offer(self, batch: pa.RecordBatch, keys: np.ndarray) -> None:
        mask = keys < self.threshold
        if not mask.any():
            return
        self.pending.append(batch.filter(pa.array(mask)))
        self.pending_keys.append(keys[mask])
        self.pending_rows += int(mask.sum())
        if self.pending_rows >= 2 * self.cap:
            self._compact()

    def table(self, schema: pa.Schema) -> pa.Table:
        self._compact()
        if not self.pending:
            return schema.empty_table()
        return pa.Table.from_batches(self.pending, schema=schema)

    def _compact(self) -> None:
        if self.pending_rows <= self.cap:
            return
        table = pa.Table.from_batches(self.pending)
        keys = np.concatenate(self.pending_keys)
        # Sorted positions keep the kept rows in reading (time) order.
        kept = np.sort(np.argpartition(keys, self.cap - 1)[: self.cap])
        keys = keys[kept]
        self.pending = table.take(pa.array(kept)).combine_chunks().to_batches()
        self.pending_keys = [keys]
        self.pending_rows = self.cap
        self.threshold = float(keys.max())


def log_location(log_uri: str, model_name: str) -> str:
    """Return where ``model_name``'s files live under ``log_uri`` (for messages)."""
    return f"{log_uri.rstrip('/')}/{model_partition(model_name)}"


def read_window(
    log_uri: str,
    model_name: str,
    model_version: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
    window: Window,
    sample_cap: int,
    seed: int,
    s3: S3Settings | None = None,
) -> WindowSample:
    """Sample the rows of ``model_name`` version ``model_version`` in ``window`` from the log.

    Args:
        log_uri: the log root: a local directory, ``file://`` URI or ``s3://bucket/prefix``.
        model_name: the ``model=<name>`` partition to read.
        model_version: rows of other versions are excluded and counted.
        numeric: numeric feature columns (read as float64).
        categorical: categorical feature columns (read as strings).
        window: the time and/or row-count window.
        sample_cap: the most rows kept; a larger window is sampled uniformly down to this.
        seed: seed of the sample.
        s3: endpoint and region for ``s3://`` logs; credentials come from the AWS chain.

    Returns:
        The sample (features in the given order, then ``prediction``), the window's row count
        for the version, the excluded rows per other version, and the files read.

    Raises:
        DataError: when the log root does not exist or cannot be listed or read, or a file
            lacks a needed column or has one of the wrong type (naming file, column and the
            expected type).
    """
    log = _open(log_uri, s3 or S3Settings())
    location = log_location(log_uri, model_name)
    fragments = _fragments(log, model_name, window)
    expected = _expected_types(numeric, categorical)
    for fragment in fragments:
        _check_schema(log, fragment, expected)
    lower = window.since
    if window.last_rows is not None:
        # Found among rows newer than ``since``, so never earlier than it.
        lower = _nth_newest(log, fragments, window.last_rows, lower) or lower
    version = pa.scalar(model_version, pa.string())
    excluded = _count_other_versions(log, fragments, lower, version)
    columns = [*numeric, *categorical, PREDICTION]
    schema = pa.schema(
        [(name, pa.string() if name in categorical else pa.float64()) for name in columns]
    )
    reservoir = _Reservoir(max(sample_cap, 1))
    rows, first, last = 0, None, None
    for index, fragment in enumerate(fragments):
        rng = np.random.default_rng([seed, index])
        wanted = _window_filter(fragment, lower) & (pa_dataset.field(MODEL_VERSION) == version)
        for batch in _batches(log, fragment, [*columns, TIMESTAMP], wanted):
            if batch.num_rows == 0:
                continue
            rows += batch.num_rows
            span = pc.min_max(batch.column(TIMESTAMP))
            first = _earliest(first, span["min"].as_py())
            last = _latest(last, span["max"].as_py())
            reservoir.offer(_conform(batch, schema), rng.random(batch.num_rows))
    frame: pd.DataFrame = reservoir.table(schema).to_pandas()
    return WindowSample(
        frame=frame,
        rows=rows,
        excluded=excluded,
        files=len(fragments),
        location=location,
        first=first,
        last=last,
    )


def _open(log_uri: str, s3: S3Settings) -> _Log:
    if log_uri.startswith("s3://"):
        bucket = log_uri.removeprefix("s3://").split("/")[0]
        filesystem: pa_fs.FileSystem = _s3_filesystem(s3)
        base = log_uri.removeprefix("s3://").rstrip("/")
        root = bucket
    else:
        filesystem = pa_fs.LocalFileSystem()
        base = root = str(_local_path(log_uri))
    log = _Log(log_uri, filesystem, base)
    info = _call(log_uri, lambda: filesystem.get_file_info(root))
    if info.type == pa_fs.FileType.NotFound:
        raise DataError(
            f"inference log {log_uri} does not exist; expected the directory (or S3 bucket) the "
            f"serving process writes to, laid out as {LAYOUT}: set LOOPLINE_DRIFT__LOG_URI or "
            "pass --log-uri"
        )
    return log


def _local_path(log_uri: str) -> str:
    if log_uri.startswith("file://"):
        return str(Path(unquote(urlparse(log_uri).path)))
    return str(Path(log_uri).expanduser().resolve())


def _s3_filesystem(s3: S3Settings) -> pa_fs.S3FileSystem:
    if s3.endpoint_url is None:
        return pa_fs.S3FileSystem(region=s3.region)
    scheme, _, host = s3.endpoint_url.partition("://")
    if not host:
        scheme, host = "https", s3.endpoint_url
    return pa_fs.S3FileSystem(region=s3.region, endpoint_override=host, scheme=scheme)


def _call(what: str, action: Callable[[], T]) -> T:
    try:
        return action()
    except (OSError, pa.ArrowException) as err:
        raise DataError(f"cannot read inference log {what}: {err}") from err


def _fragments(log: _Log, model_name: str, window: Window) -> list[pa_dataset.Fragment]:
    """The window's candidate files, oldest first, pruned by their date directories."""
    model_dir = f"{log.base}/{model_partition(model_name)}"
    listing = _list(log, model_dir)
    days: list[tuple[date, str]] = []
    for info in listing:
        matched = DATE_DIR.match(info.base_name)
        if info.type == pa_fs.FileType.Directory and matched:
            day = date.fromisoformat(matched.group(1))
            if window.since is None or day >= window.since.astimezone(UTC).date():
                days.append((day, info.path))
    by_day = {day: _day_fragments(log, path) for day, path in sorted(days)}
    if window.last_rows is None:
        return [fragment for fragments in by_day.values() for fragment in fragments]
    # Rows live under their own date, so the newest dates holding N rows hold the last N.
    chosen: list[list[pa_dataset.Fragment]] = []
    covered = 0
    for day in sorted(by_day, reverse=True):
        chosen.insert(0, by_day[day])
        covered += sum(_num_rows(log, fragment) for fragment in by_day[day])
        if covered >= window.last_rows:
            break
    return [fragment for fragments in chosen for fragment in fragments]


def _list(log: _Log, path: str) -> list[pa_fs.FileInfo]:
    selector = pa_fs.FileSelector(path, allow_not_found=True, recursive=False)
    infos: list[pa_fs.FileInfo] = _call(
        f"{log.uri} ({path})", lambda: log.filesystem.get_file_info(selector)
    )
    return sorted(infos, key=lambda info: info.path)


def _day_fragments(log: _Log, path: str) -> list[pa_dataset.Fragment]:
    return [
        _FORMAT.make_fragment(info.path, filesystem=log.filesystem)
        for info in _list(log, path)
        if info.type == pa_fs.FileType.File and PART_FILE.match(info.base_name)
    ]


def _num_rows(log: _Log, fragment: pa_dataset.Fragment) -> int:
    return int(_call(_name(log, fragment), lambda: fragment.metadata.num_rows))


def _name(log: _Log, fragment: pa_dataset.Fragment) -> str:
    path = str(fragment.path)
    return f"s3://{path}" if log.uri.startswith("s3://") else path


def _expected_types(numeric: Sequence[str], categorical: Sequence[str]) -> dict[str, str]:
    expected = {TIMESTAMP: "timestamp", MODEL_VERSION: "string", PREDICTION: "number"}
    expected.update({name: "number" for name in numeric})
    expected.update({name: "string" for name in categorical})
    return expected


_TYPE_HELP = {
    "timestamp": "timestamp[ms, tz=UTC]",
    "string": "string",
    "number": "float64 (or another number type)",
}


def _check_schema(log: _Log, fragment: pa_dataset.Fragment, expected: dict[str, str]) -> None:
    schema: pa.Schema = _call(_name(log, fragment), lambda: fragment.physical_schema)
    missing = [name for name in expected if name not in schema.names]
    if missing:
        raise DataError(
            f"inference log file {_name(log, fragment)} lacks column(s) {', '.join(missing)}; "
            f"the log must hold row_id, timestamp, model_name, model_version, prediction and "
            f"every model feature (it has: {', '.join(schema.names)})"
        )
    wrong = [
        f"{name} is {schema.field(name).type}, expected {_TYPE_HELP[kind]}"
        for name, kind in expected.items()
        if not _fits(schema.field(name).type, kind)
    ]
    if wrong:
        raise DataError(
            f"inference log file {_name(log, fragment)} has column(s) of the wrong type: "
            + "; ".join(wrong)
        )


def _fits(arrow_type: pa.DataType, kind: str) -> bool:
    if kind == "timestamp":
        return bool(pa.types.is_timestamp(arrow_type) and arrow_type.tz is not None)
    if pa.types.is_null(arrow_type):  # a part where every value was missing
        return True
    if kind == "number":
        return bool(pa.types.is_floating(arrow_type) or pa.types.is_integer(arrow_type))
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    return bool(pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type))


def _window_filter(fragment: pa_dataset.Fragment, lower: datetime | None) -> pa_dataset.Expression:
    if lower is None:
        return pa_dataset.scalar(True)
    kind = fragment.physical_schema.field(TIMESTAMP).type
    # Truncating to the file's unit moves the bound by less than one unit (a millisecond).
    bound = pa.scalar(lower.astimezone(UTC), pa.timestamp("us", "UTC")).cast(kind, safe=False)
    return pa_dataset.field(TIMESTAMP) >= bound


def _batches(
    log: _Log,
    fragment: pa_dataset.Fragment,
    columns: list[str],
    wanted: pa_dataset.Expression,
) -> Iterator[pa.RecordBatch]:
    try:
        yield from fragment.to_batches(
            columns=columns, filter=wanted, batch_size=BATCH_ROWS, batch_readahead=2
        )
    except (OSError, pa.ArrowException) as err:
        raise DataError(f"cannot read inference log file {_name(log, fragment)}: {err}") from err


def _nth_newest(
    log: _Log, fragments: list[pa_dataset.Fragment], count: int, lower: datetime | None
) -> datetime | None:
    """The timestamp of the ``count``-th newest row (all versions), or None if fewer rows."""
    newest = np.empty(0, dtype=np.int64)
    for fragment in fragments:
        for batch in _batches(log, fragment, [TIMESTAMP], _window_filter(fragment, lower)):
            stamps = batch.column(TIMESTAMP).cast(pa.timestamp("ms", "UTC")).cast(pa.int64())
            newest = np.concatenate([newest, stamps.to_numpy(zero_copy_only=False)])
            if len(newest) > 2 * count:
                newest = np.partition(newest, len(newest) - count)[-count:]
    if len(newest) < count:
        return None
    cutoff = int(np.partition(newest, len(newest) - count)[len(newest) - count])
    return datetime.fromtimestamp(cutoff / 1000, tz=UTC)


def _count_other_versions(
    log: _Log, fragments: list[pa_dataset.Fragment], lower: datetime | None, version: pa.Scalar
) -> dict[str, int]:
    counts: dict[str, int] = {}
    for fragment in fragments:
        others = _window_filter(fragment, lower) & (pa_dataset.field(MODEL_VERSION) != version)
        for batch in _batches(log, fragment, [MODEL_VERSION], others):
            for item in pc.value_counts(batch.column(MODEL_VERSION)).to_pylist():
                key = str(item["values"])
                counts[key] = counts.get(key, 0) + int(item["counts"])
    return dict(sorted(counts.items()))


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Cast the batch to the sample's schema (float64 numbers, plain strings)."""
    arrays = []
    for target in schema:
        column = batch.column(target.name)
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        arrays.append(column if column.type == target.type else column.cast(target.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _earliest(current: datetime | None, value: datetime | None) -> datetime | None:
    if value is None:
        return current
    return value if current is None else min(current, value)


def _latest(current: datetime | None, value: datetime | None) -> datetime | None:
    if value is None:
        return current
    return value if current is None else max(current, value)
