"""Synthetic customer-churn data: seeded, any size, with named drift scenarios.

Every row is a customer snapshot: ids, eight numeric and four categorical features, and the label
``churned`` ("Yes"/"No", about a quarter positive) drawn from a logistic model of the features, so
a good model reaches a ROC AUC near 0.85 rather than 1.0.

Determinism: rows are made in fixed blocks of :data:`BLOCK_ROWS`, each from its own random stream
seeded by ``(seed, block index)``. A row's values therefore depend only on the seed, the scenario
parameters, the total row count (timestamps spread over the window) and the row's index, never on
``chunk_rows``: a CSV file is byte-identical for any chunk size, and a Parquet file is
byte-identical for a given chunk size (its row groups follow the chunks).

Scenarios (:data:`SCENARIOS`) describe what changes against ``none`` with the same seed: the
features left untouched by a scenario are identical value for value, which is what drift tests
compare against.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from pydantic import BaseModel
from rich.progress import Progress

from steps.core.cli_support import console
from steps.core.errors import ConfigError, DataError

SCENARIOS: dict[str, str] = {
    "none": "no drift: the training distribution",
    "covariate": "shift_features move by shift_sigma reference std-devs; P(churn | features) kept",
    "concept": "same feature distributions, a different relation between features and churn",
    "new-category": "payment_method 'crypto', never seen in training, in ~15% of rows",
}
OUTPUT_SUFFIXES = (".parquet", ".pq", ".csv", ".csv.gz")
BLOCK_ROWS = 8_192
WINDOW = timedelta(days=90)
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT_SHIFT_FEATURES = ("monthly_charges", "data_usage_gb", "support_calls")
NEW_CATEGORY = ("payment_method", "crypto", 0.15)

INTEGER_FEATURES = ("tenure_months", "support_calls", "late_payments", "age")
FLOAT_FEATURES = ("monthly_charges", "total_charges", "data_usage_gb", "satisfaction_score")
NUMERIC_FEATURES = (
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "support_calls",
    "data_usage_gb",
    "late_payments",
    "age",
    "satisfaction_score",
)
CATEGORIES: dict[str, tuple[str, ...]] = {
    "contract": ("month-to-month", "one-year", "two-year"),
    "payment_method": ("electronic-check", "mailed-check", "bank-transfer", "credit-card"),
    "internet_service": ("dsl", "fiber-optic", "none"),
    "region": ("north", "south", "east", "west"),
}
TARGET = "churned"
_MISSING_SHARE = {"total_charges": 0.01, "data_usage_gb": 0.02, "satisfaction_score": 0.03}
# Logistic coefficients; the intercepts put the positive share near 23% in both relations.
_RELATIONS: dict[str, dict[str, float]] = {
    "usual": {
        "intercept": -2.064,
        "month_to_month": 1.1,
        "two_year": -1.0,
        "tenure_months": -0.035,
        "monthly_charges": 0.02,
        "support_calls": 0.3,
        "late_payments": 0.45,
        "satisfaction_score": -0.5,
        "electronic_check": 0.35,
        "fiber_optic": 0.3,
        "age": -0.01,
    },
    "concept": {
        "intercept": -1.162,
        "month_to_month": 0.3,
        "two_year": -0.2,
        "tenure_months": 0.0,
        "monthly_charges": 0.045,
        "support_calls": -0.15,
        "late_payments": 0.45,
        "satisfaction_score": 0.0,
        "electronic_check": -0.3,
        "fiber_optic": -0.5,
        "age": 0.02,
    },
}


class GenerateResult(BaseModel):
    """What :func:`generate_churn` wrote."""

    path: Path
    rows: int
    seed: int
    scenario: str
    shift_sigma: float | None
    shift_features: tuple[str, ...]
    positive_share: float
    seconds: float


@dataclass(frozen=True)
class _Recipe:
    seed: int
    scenario: str
    shift_sigma: float
    shift_features: tuple[str, ...]
    extra_features: int
    start: datetime


def churn_frame(
    rows: int,
    seed: int = 42,
    scenario: str = "none",
    shift_sigma: float = 1.0,
    shift_features: Sequence[str] = DEFAULT_SHIFT_FEATURES,
    extra_features: int = 0,
    start: datetime | None = None,
) -> pd.DataFrame:
    """Return ``rows`` synthetic customers in memory (the same rows :func:`generate_churn` writes).

    Args:
        rows: number of rows, at least 1.
        seed: random seed; the same arguments always give the same frame.
        scenario: a key of :data:`SCENARIOS`.
        shift_sigma: with ``covariate``, the shift in reference standard deviations.
        shift_features: with ``covariate``, the numeric features to shift.
        extra_features: extra standard-normal columns ``extra_01``... with no signal, to widen
            the frame (e.g. 12 for 20 features); they can be shifted like any numeric feature.
        start: start of the 90-day timestamp window (UTC); default 2026-01-01.

    Returns:
        The frame: ``customer_id``, ``event_timestamp``, the features, ``churned`` ("Yes"/"No").

    Raises:
        ConfigError: for an unknown scenario or shift feature, or fewer than one row.
    """
    recipe = _recipe(rows, seed, scenario, shift_sigma, shift_features, extra_features, start)
    frame: pd.DataFrame = _table(recipe, 0, rows, rows).to_pandas()
    return frame


def generate_churn(
    path: Path,
    rows: int,
    seed: int = 42,
    scenario: str = "none",
    chunk_rows: int = 200_000,
    start: datetime | None = None,
    shift_sigma: float = 1.0,
    shift_features: Sequence[str] = DEFAULT_SHIFT_FEATURES,
    extra_features: int = 0,
    show_progress: bool = True,
) -> GenerateResult:
    """Write ``rows`` synthetic customers to ``path`` (.parquet, .pq, .csv or .csv.gz) in chunks.

    Peak memory follows ``chunk_rows``, not ``rows``. The module docstring says what is
    byte-stable; :func:`churn_frame` describes the other arguments.

    Args:
        path: the output file; its suffix picks the format. Parent directories are created.
        rows: number of rows, at least 1.
        seed: random seed.
        scenario: a key of :data:`SCENARIOS`.
        chunk_rows: rows generated and written at a time (a Parquet row group each).
        start: start of the timestamp window (UTC).
        shift_sigma: see :func:`churn_frame`.
        shift_features: see :func:`churn_frame`.
        extra_features: see :func:`churn_frame`.
        show_progress: show a rich progress bar on stderr.

    Returns:
        The path, row count, seed, scenario, shift, positive share and seconds taken.

    Raises:
        ConfigError: for an unknown suffix, scenario or shift feature, or non-positive sizes.
        DataError: when the file cannot be written (naming it and the OS error).
    """
    if not path.name.endswith(OUTPUT_SUFFIXES):
        raise ConfigError(f"output {path} must end with one of {', '.join(OUTPUT_SUFFIXES)}")
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be at least 1 (got {chunk_rows})")
    recipe = _recipe(rows, seed, scenario, shift_sigma, shift_features, extra_features, start)
    began = time.perf_counter()
    try:
        positives = _write(path, recipe, rows, chunk_rows, show_progress)
    except OSError as err:
        raise DataError(f"cannot write {path}: {err}") from err
    return GenerateResult(
        path=path,
        rows=rows,
        seed=seed,
        scenario=scenario,
        shift_sigma=shift_sigma if scenario == "covariate" else None,
        shift_features=recipe.shift_features,
        positive_share=positives / rows,
        seconds=round(time.perf_counter() - began, 3),
    )


def _write(path: Path, recipe: _Recipe, rows: int, chunk_rows: int, show_progress: bool) -> int:
    """Write the rows chunk by chunk; return the number of positives."""
    path.parent.mkdir(parents=True, exist_ok=True)
    positives = 0
    parquet = path.name.endswith((".parquet", ".pq"))
    gzip = path.name.endswith(".gz")
    sink = pa.CompressedOutputStream(str(path), "gzip") if gzip else pa.OSFile(str(path), "wb")
    writer: pq.ParquetWriter | pa_csv.CSVWriter | None = None
    with sink, Progress(console=console, transient=True, disable=not show_progress) as progress:
        task = progress.add_task(f"writing {path.name}", total=rows)
        for first in range(0, rows, chunk_rows):
            table = _table(recipe, first, min(first + chunk_rows, rows), rows)
            if writer is None:
                writer = (
                    pq.ParquetWriter(sink, table.schema)
                    if parquet
                    else pa_csv.CSVWriter(sink, table.schema)
                )
            writer.write_table(table)
            positives += pc.sum(pc.equal(table[TARGET], "Yes")).as_py() or 0
            progress.advance(task, table.num_rows)
        if writer is not None:
            writer.close()
    return positives


def _recipe(
    rows: int,
    seed: int,
    scenario: str,
    shift_sigma: float,
    shift_features: Sequence[str],
    extra_features: int,
    start: datetime | None,
) -> _Recipe:
    if rows < 1:
        raise ConfigError(f"rows must be at least 1 (got {rows})")
    if scenario not in SCENARIOS:
        raise ConfigError(f"unknown scenario {scenario!r}; expected one of {', '.join(SCENARIOS)}")
    if not 0 <= seed < 2**63:
        raise ConfigError(f"seed must be a non-negative integer (got {seed})")
    if not 0 <= extra_features <= 1000:
        raise ConfigError(f"extra_features must be between 0 and 1000 (got {extra_features})")
    if not math.isfinite(shift_sigma):
        raise ConfigError(f"shift_sigma must be a finite number (got {shift_sigma})")
    numeric = (*NUMERIC_FEATURES, *_extra_names(extra_features))
    unknown = [name for name in shift_features if name not in numeric]
    if scenario == "covariate" and (unknown or not shift_features):
        raise ConfigError(
            f"cannot shift {', '.join(unknown) or 'no feature'}: shift features must be numeric "
            f"features of the generator: {', '.join(numeric)}"
        )
    return _Recipe(
        seed=seed,
        scenario=scenario,
        shift_sigma=shift_sigma,
        shift_features=tuple(shift_features) if scenario == "covariate" else (),
        extra_features=extra_features,
        start=_as_utc(start or DEFAULT_START),
    )


def _as_utc(moment: datetime) -> datetime:
    """A naive datetime is taken as UTC, never as the machine's local time."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _extra_names(count: int) -> tuple[str, ...]:
    return tuple(f"extra_{index:02d}" for index in range(1, count + 1))


def _table(recipe: _Recipe, first: int, last: int, total_rows: int) -> pa.Table:
    """Rows ``[first, last)`` of a ``total_rows`` data set as an Arrow table."""
    first_block, last_block = first // BLOCK_ROWS, (last - 1) // BLOCK_ROWS
    blocks = [_block(recipe, index) for index in range(first_block, last_block + 1)]
    offset = first - first_block * BLOCK_ROWS
    columns = {
        name: np.concatenate([block[name] for block in blocks])[offset : offset + last - first]
        for name in blocks[0]
    }
    index = np.arange(first, last, dtype=np.int64)
    window_ms = WINDOW.total_seconds() * 1000
    offset_ms = np.clip((index + columns.pop("time_jitter")) / total_rows * window_ms, 0, window_ms)
    start_ms = int(recipe.start.timestamp() * 1000)
    ids = pc.binary_join_element_wise(
        "C", pc.utf8_lpad(pa.array(index + 1).cast(pa.string()), 7, "0"), ""
    )
    arrays: dict[str, pa.Array] = {
        "customer_id": ids,
        "event_timestamp": pa.array(
            start_ms + offset_ms.astype(np.int64), pa.timestamp("ms", "UTC")
        ),
    }
    for name in (*NUMERIC_FEATURES, *_extra_names(recipe.extra_features)):
        arrays[name] = pa.array(columns[name], from_pandas=True)
    for name, labels in CATEGORIES.items():
        vocabulary = labels + ((NEW_CATEGORY[1],) if name == NEW_CATEGORY[0] else ())
        codes = pa.array(columns[name].astype(np.int8))
        arrays[name] = pa.DictionaryArray.from_arrays(codes, vocabulary).cast(pa.string())
    arrays[TARGET] = pa.DictionaryArray.from_arrays(
        pa.array(columns[TARGET].astype(np.int8)), ["No", "Yes"]
    ).cast(pa.string())
    return pa.table(arrays)


def _block(recipe: _Recipe, index: int) -> dict[str, np.ndarray]:
    """One block of raw columns (categoricals as codes, label as 0/1) for block ``index``."""
    base = np.random.default_rng([recipe.seed, index, 0])
    columns = _base_features(base, BLOCK_ROWS)
    if recipe.extra_features:
        extra = np.random.default_rng([recipe.seed, index, 2])
        for name in _extra_names(recipe.extra_features):
            columns[name] = extra.standard_normal(BLOCK_ROWS)
    drift = np.random.default_rng([recipe.seed, index, 1])
    if recipe.scenario == "covariate":
        _shift(columns, recipe, drift)
    relation = _RELATIONS["concept" if recipe.scenario == "concept" else "usual"]
    churn_probability = 1.0 / (1.0 + np.exp(-_logit(columns, relation)))
    columns[TARGET] = (columns.pop("label_draw") < churn_probability).astype(np.int8)
    for name, share in _MISSING_SHARE.items():
        columns[name] = np.where(columns.pop(f"{name}_draw") < share, np.nan, columns[name])
    if recipe.scenario == "new-category":
        name, _, share = NEW_CATEGORY
        columns[name] = np.where(
            drift.random(BLOCK_ROWS) < share, len(CATEGORIES[name]), columns[name]
        )
    return columns


def _base_features(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """The no-drift features. Draw order is fixed: changing it changes every data set."""
    age = np.clip(np.round(rng.normal(44, 14, n)), 18, 85)
    tenure = np.clip(np.floor(rng.gamma(1.3, 20, n)), 0, 72)
    internet = _pick(rng, n, np.array([0.34, 0.44, 0.22]))
    month_to_month_p = np.clip(0.78 - 0.009 * tenure, 0.15, 0.8)
    two_year_p = np.clip(0.04 + 0.007 * tenure, 0.0, 0.5)
    contract_draw = rng.random(n)
    contract = np.where(
        contract_draw < month_to_month_p, 0, np.where(contract_draw < 1 - two_year_p, 1, 2)
    )
    payment = _pick(rng, n, np.array([0.34, 0.23, 0.22, 0.21]))
    region = _pick(rng, n, np.array([0.28, 0.26, 0.24, 0.22]))
    monthly = np.clip(np.array([55.0, 85.0, 25.0])[internet] + rng.normal(0, 9, n), 18, 120)
    total = monthly * np.maximum(tenure, 1) * (1 + rng.normal(0, 0.04, n))
    usage = rng.lognormal(np.log(np.array([40.0, 90.0, 0.5]))[internet], 0.6)
    satisfaction = np.clip(np.round(rng.normal(3.6 - 0.015 * (monthly - 65), 1.0)), 1, 5)
    support = rng.poisson(0.5 + 0.45 * (5 - satisfaction))
    late = rng.poisson(0.25 + 0.35 * (payment == 0) + 0.15 * (contract == 0))
    columns: dict[str, np.ndarray] = {
        "tenure_months": tenure.astype(np.int64),
        "monthly_charges": np.round(monthly, 2),
        "total_charges": np.round(total, 2),
        "support_calls": support.astype(np.int64),
        "data_usage_gb": np.round(usage, 2),
        "late_payments": late.astype(np.int64),
        "age": age.astype(np.int64),
        "satisfaction_score": satisfaction,
        "contract": contract,
        "payment_method": payment,
        "internet_service": internet,
        "region": region,
        "label_draw": rng.random(n),
        "time_jitter": rng.uniform(-3, 3, n),
    }
    for name in _MISSING_SHARE:
        columns[f"{name}_draw"] = rng.random(n)
    return columns


def _pick(rng: np.random.Generator, n: int, shares: np.ndarray) -> np.ndarray:
    codes: np.ndarray = np.searchsorted(np.cumsum(shares), rng.random(n) * shares.sum(), "right")
    return codes


def _shift(columns: dict[str, np.ndarray], recipe: _Recipe, rng: np.random.Generator) -> None:
    """Move each shift feature by ``shift_sigma`` reference std-devs, keeping kind and bounds."""
    reference_std = _reference_std()
    for name in recipe.shift_features:
        sigma = reference_std.get(name, 1.0)
        moved = columns[name] + recipe.shift_sigma * sigma
        if name in INTEGER_FEATURES:
            # Stochastic rounding keeps the mean shift exact for count-like columns.
            moved = np.floor(moved + rng.random(moved.shape[0])).astype(np.int64)
        elif name in FLOAT_FEATURES:
            moved = np.round(moved, 2)
        if name in NUMERIC_FEATURES:
            moved = np.maximum(moved, 0)
        columns[name] = moved


@functools.cache
def _reference_std() -> dict[str, float]:
    """Standard deviation of each numeric feature with no drift, from a fixed large sample."""
    recipe = _Recipe(0, "none", 0.0, (), 0, DEFAULT_START)
    blocks = [_block(recipe, index) for index in range(16)]
    return {
        name: float(np.nanstd(np.concatenate([block[name] for block in blocks])))
        for name in NUMERIC_FEATURES
    }


def _logit(columns: dict[str, np.ndarray], coef: dict[str, float]) -> np.ndarray:
    result: np.ndarray = np.asarray(
        coef["intercept"]
        + coef["month_to_month"] * (columns["contract"] == 0)
        + coef["two_year"] * (columns["contract"] == 2)
        + coef["tenure_months"] * columns["tenure_months"]
        + coef["monthly_charges"] * (columns["monthly_charges"] - 65)
        + coef["support_calls"] * columns["support_calls"]
        + coef["late_payments"] * columns["late_payments"]
        + coef["satisfaction_score"] * (columns["satisfaction_score"] - 3.5)
        + coef["electronic_check"] * (columns["payment_method"] == 0)
        + coef["fiber_optic"] * (columns["internet_service"] == 1)
        + coef["age"] * (columns["age"] - 44)
    )
    return result
