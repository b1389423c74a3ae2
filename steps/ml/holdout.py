"""The held-out split: which rows a model is scored on and never trained on, the same in every run.

A random split depends on the seed, so two runs on the same table (or on a table that grew) hold
out different rows, and the champion ends up scored on rows it was trained on. Here the split is
a function of the rows alone:

* **time** (out-of-time): the newest ``test_size`` share of rows by ``time_column`` is held out.
  Scheduled and drift retrains see more recent data, whose newest rows no earlier model saw.
* **key**: a row is held out when the hash of its key (``key_columns``; by default the id
  columns present, e.g. ``customer_id``, else every feature and the target) falls in the lowest
  ``test_size`` share of the hash range. A row keeps its side in every run and every table that
  contains it.

``auto`` (the default) is *time* when the data has ``time_column``, else *key*. Every row also
gets a 64-bit key (:func:`row_keys`); the train step logs the keys of the rows it trained on, so
the evaluate step can count how many held-out rows each model has seen (expected: none).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from steps.core.errors import DataError
from steps.core.settings import DataSettings, TrainSettings
from steps.ml.dataset import Dataset

ROW_KEY_COLUMN = "loopline_row_key"
"""Column of the logged held-out rows and training keys holding each row's 64-bit key."""

_HASH_KEY = "loopline-holdout"  # 16 bytes: pandas' siphash key, fixed so keys never change


@dataclass(frozen=True)
class Split:
    """The training and held-out rows of a data set, with each row's key."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    train_keys: np.ndarray
    holdout_keys: np.ndarray
    how: str
    """One line saying how rows were held out, e.g. ``newest 20% by event_timestamp``."""


def row_keys(dataset: Dataset, key_columns: tuple[str, ...] | None) -> tuple[np.ndarray, str]:
    """Return each row's 64-bit key and a description of what was hashed.

    Raises:
        DataError: when a configured key column is not in the data.
    """
    columns = key_columns if key_columns is not None else _default_key(dataset)
    frame = _columns(dataset, columns, "LOOPLINE_DATA__KEY_COLUMNS")
    keys = pd.util.hash_pandas_object(frame, index=False, hash_key=_HASH_KEY).to_numpy()
    everything = key_columns is None and len(columns) == len(dataset.features) + 1
    return keys.astype(np.uint64), "every column" if everything else ", ".join(columns)


def split(dataset: Dataset, policy: DataSettings, test_size: float) -> Split:
    """Split ``dataset`` into training and held-out rows by time or by key (module docstring).

    Returns:
        The split, both sides with their row keys.

    Raises:
        DataError: when the time or key columns are missing or malformed, or a side would lack
            one of the two classes.
    """
    keys, key_text = row_keys(dataset, policy.key_columns)
    by_time = policy.holdout == "time" or (
        policy.holdout == "auto" and _has_column(dataset, policy.time_column)
    )
    if by_time:
        held = newest_share(dataset, policy.time_column, test_size)
        how = f"newest {test_size:.0%} by {policy.time_column}"
    else:
        held = key_share(keys, test_size)
        how = f"{test_size:.0%} by hash of {key_text}"
    frame = dataset.frame
    train, holdout = frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)
    for side, rows in (("training", train), ("held-out", holdout)):
        classes = rows[dataset.target].nunique()
        if classes < 2:
            raise DataError(
                f"{dataset.source}: the {side} split ({how}) has {len(rows)} rows and "
                f"{classes} class(es) of {dataset.target!r}; both classes are needed: use more "
                "data or another LOOPLINE_DATA__HOLDOUT / LOOPLINE_TRAIN__TEST_SIZE"
            )
    return Split(train, holdout, keys[~held], keys[held], how)


def key_share(keys: np.ndarray, share: float) -> np.ndarray:
    """Return a mask of the keys whose hash falls in the lowest ``share`` of the range."""
    unit = (keys >> np.uint64(11)).astype(np.float64) * 2.0**-53  # uniform in [0, 1)
    return np.asarray(unit < share)


def newest_share(dataset: Dataset, column: str, share: float) -> np.ndarray:
    """Return a mask of the newest ``share`` of rows by ``column`` (ties stay together).

    Raises:
        DataError: when the column is missing, has missing values or is not a time or number.
    """
    values = _columns(dataset, (column,), "LOOPLINE_DATA__TIME_COLUMN")[column]
    if values.isna().any():
        raise DataError(
            f"time column {column!r} of {dataset.source} has {int(values.isna().sum())} missing "
            "values; fill them, or hold out by key (LOOPLINE_DATA__HOLDOUT=key)"
        )
    if not pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_datetime64_any_dtype(
        values
    ):
        try:
            values = pd.to_datetime(values, utc=True)
        except (ValueError, TypeError) as err:
            raise DataError(
                f"time column {column!r} of {dataset.source} holds values such as "
                f"{values.iloc[0]!r}; expected timestamps or numbers: {err}"
            ) from err
    ordered = np.sort(values.to_numpy())
    cutoff = ordered[min(len(ordered) - 1, int(np.floor(len(ordered) * (1.0 - share))))]
    return np.asarray(values.to_numpy() >= cutoff)


def seen_rows(holdout_keys: np.ndarray, trained_keys: np.ndarray) -> int:
    """Return how many held-out rows have a key among the keys a model was trained on."""
    return int(np.isin(holdout_keys, trained_keys).sum())


def _default_key(dataset: Dataset) -> tuple[str, ...]:
    if dataset.ids is not None and len(dataset.ids.columns):
        return tuple(str(c) for c in dataset.ids.columns)
    return (*dataset.features, dataset.target)


def _has_column(dataset: Dataset, column: str) -> bool:
    in_ids = dataset.ids is not None and column in dataset.ids.columns
    return in_ids or column in dataset.frame.columns


def _columns(dataset: Dataset, columns: tuple[str, ...], setting: str) -> pd.DataFrame:
    parts = []
    for name in columns:
        if dataset.ids is not None and name in dataset.ids.columns:
            parts.append(dataset.ids[name])
        elif name in dataset.frame.columns:
            parts.append(dataset.frame[name])
        else:
            available = [*dataset.frame.columns, *(() if dataset.ids is None else dataset.ids)]
            raise DataError(
                f"{setting} names {name!r}, not a column of {dataset.source}; columns: "
                f"{', '.join(map(str, available))}"
            )
    return pd.concat(parts, axis=1)


def carve_validation(
    train: pd.DataFrame, target: str, params: TrainSettings, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Split the training rows into rows to fit and rows for early stopping (stratified, seeded).

    Returns:
        ``(fit, validation)``; validation is None when the kind does not boost or early stopping
        is off.

    Raises:
        DataError: when a class has too few training rows to appear on both sides.
    """
    if params.model_kind == "sklearn-logreg" or not params.early_stopping_rounds:
        return train, None
    from sklearn.model_selection import train_test_split

    counts = train[target].value_counts()
    if counts.min() < 2:
        raise DataError(
            f"the training split has {counts.to_dict()} rows per class of {target!r}: too few "
            "to carve a validation split; use more data or LOOPLINE_TRAIN__EARLY_STOPPING_ROUNDS=0"
        )
    fit, validation = train_test_split(
        train, test_size=params.validation_size, random_state=seed, stratify=train[target]
    )
    return fit.reset_index(drop=True), validation.reset_index(drop=True)
