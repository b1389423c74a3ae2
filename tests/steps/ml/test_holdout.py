"""The held-out split is a function of the rows alone: by key or by time, never by seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from steps.core.errors import DataError
from steps.core.settings import DataSettings
from steps.ml import holdout
from steps.ml.dataset import dataset_from_frame


def _table(rows: int = 2_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": np.arange(rows) + 10_000,
            "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 365 * 24, rows), unit="h"),
            "income": rng.normal(50, 10, rows),
            "plan": rng.choice(["a", "b", "c"], rows),
            "label": rng.integers(0, 2, rows),
        }
    )


def _split(frame: pd.DataFrame, **policy: object) -> holdout.Split:
    dataset = dataset_from_frame(frame, "table", "label")
    return holdout.split(dataset, DataSettings(**policy), 0.2)


def _held_ids(frame: pd.DataFrame, **policy: object) -> set[int]:
    dataset = dataset_from_frame(frame, "table", "label")
    chosen = holdout.split(dataset, DataSettings(**policy), 0.2)
    keys = set(chosen.holdout_keys.tolist())
    all_keys, _ = holdout.row_keys(dataset, DataSettings(**policy).key_columns)
    assert dataset.ids is not None
    return {
        int(i) for i, k in zip(dataset.ids["customer_id"], all_keys, strict=True) if int(k) in keys
    }


def test_key_split_holds_out_the_same_rows_whatever_the_order_and_share() -> None:
    frame = _table()
    first = _held_ids(frame, holdout="key")
    shuffled = _held_ids(frame.sample(frac=1.0, random_state=3), holdout="key")
    assert first == shuffled
    assert len(first) == pytest.approx(400, abs=60)


def test_key_split_keeps_each_old_row_on_its_side_when_the_table_grows() -> None:
    old = _table(1_000)
    grown = pd.concat([old, _table(1_000, seed=1).assign(customer_id=lambda f: f.customer_id + 5)])
    grown = grown.drop_duplicates("customer_id", keep="first")
    old_held = _held_ids(old, holdout="key", key_columns=("customer_id",))
    grown_held = _held_ids(grown, holdout="key", key_columns=("customer_id",))
    assert old_held == {i for i in grown_held if i in set(old.customer_id)}


def test_time_split_holds_out_the_newest_share() -> None:
    frame = _table()
    chosen = _split(frame, holdout="time")
    dataset = dataset_from_frame(frame, "table", "label")
    assert dataset.ids is not None
    held = holdout.newest_share(dataset, "event_timestamp", 0.2)
    times = dataset.ids["event_timestamp"]
    assert times[held].min() >= times[~held].max()
    assert held.sum() == len(chosen.holdout) == pytest.approx(400, abs=5)
    assert chosen.how == "newest 20% by event_timestamp"


def test_auto_is_time_with_a_time_column_and_key_without() -> None:
    frame = _table()
    assert _split(frame).how.startswith("newest 20% by event_timestamp")
    without = frame.drop(columns=["event_timestamp"])
    assert _split(without).how == "20% by hash of customer_id"
    bare = without.drop(columns=["customer_id"])
    assert _split(bare).how == "20% by hash of every column"


def test_train_and_holdout_keys_are_disjoint_and_counted_by_seen_rows() -> None:
    chosen = _split(_table(), holdout="key")
    assert holdout.seen_rows(chosen.holdout_keys, chosen.train_keys) == 0
    assert holdout.seen_rows(chosen.holdout_keys, chosen.holdout_keys[:7]) == 7
    assert len(chosen.train) + len(chosen.holdout) == 2_000


def test_unknown_key_column_names_the_setting() -> None:
    with pytest.raises(DataError, match=r"LOOPLINE_DATA__KEY_COLUMNS names 'account'"):
        _split(_table(), holdout="key", key_columns=("account",))


def test_missing_or_unparseable_times_are_named() -> None:
    frame = _table()
    frame.loc[3, "event_timestamp"] = pd.NaT
    with pytest.raises(DataError, match=r"time column 'event_timestamp' .* 1 missing"):
        _split(frame, holdout="time")
    text = _table().assign(event_timestamp="not a time")
    with pytest.raises(DataError, match=r"expected timestamps or numbers"):
        _split(text, holdout="time")


def test_a_side_with_one_class_is_refused() -> None:
    frame = _table()
    newest = frame["event_timestamp"] >= frame["event_timestamp"].quantile(0.8)
    frame.loc[newest, "label"] = 0
    with pytest.raises(DataError, match=r"held-out split .* both classes are needed"):
        _split(frame, holdout="time")
