"""Tests for steps/data.py (loader, CLI) and steps/data_generate.py (synthetic churn data)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from steps.core.errors import ConfigError, DataError
from steps.data import app
from steps.ml.dataset import dataset_from_frame, load_dataset
from steps.ml.synthetic import (
    CATEGORIES,
    DEFAULT_START,
    NUMERIC_FEATURES,
    SCENARIOS,
    WINDOW,
    _reference_std,
    churn_frame,
    generate_churn,
)
from tests.fixtures.s3 import S3Server

REPO = Path(__file__).resolve().parents[2]
FEATURES = (*NUMERIC_FEATURES, *CATEGORIES)
ROWS = 20_000


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def positive(frame: pd.DataFrame) -> pd.Series:
    return frame["churned"] == "Yes"


def write_csv(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def baseline() -> pd.DataFrame:
    """20k rows of the no-drift scenario, seed 11: what every scenario is compared against."""
    return churn_frame(ROWS, seed=11)


# --- generator ---------------------------------------------------------------------------------


def test_churn_frame_is_deterministic_per_seed(baseline: pd.DataFrame) -> None:
    again = churn_frame(ROWS, seed=11)
    other = churn_frame(ROWS, seed=12)

    pd.testing.assert_frame_equal(baseline, again)
    assert not baseline["monthly_charges"].equals(other["monthly_charges"])
    assert not baseline["churned"].equals(other["churned"])


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".csv.gz"])
def test_generate_writes_identical_bytes_for_identical_arguments(
    tmp_path: Path, suffix: str
) -> None:
    first = generate_churn(tmp_path / f"a{suffix}", rows=3_000, seed=5, chunk_rows=1_000)
    second = generate_churn(tmp_path / f"b{suffix}", rows=3_000, seed=5, chunk_rows=1_000)
    other = generate_churn(tmp_path / f"c{suffix}", rows=3_000, seed=6, chunk_rows=1_000)

    assert sha256(first.path) == sha256(second.path)
    assert sha256(first.path) != sha256(other.path)


def test_csv_bytes_and_parquet_content_do_not_depend_on_chunk_rows(tmp_path: Path) -> None:
    csv_small = generate_churn(tmp_path / "small.csv", rows=5_000, seed=3, chunk_rows=777)
    csv_large = generate_churn(tmp_path / "large.csv", rows=5_000, seed=3, chunk_rows=4_096)
    pq_small = generate_churn(tmp_path / "small.parquet", rows=5_000, seed=3, chunk_rows=777)
    pq_large = generate_churn(tmp_path / "large.parquet", rows=5_000, seed=3, chunk_rows=4_096)

    assert sha256(csv_small.path) == sha256(csv_large.path)
    pd.testing.assert_frame_equal(pd.read_parquet(pq_small.path), pd.read_parquet(pq_large.path))
    assert pq.ParquetFile(pq_small.path).metadata.num_row_groups == 7  # ceil(5000 / 777)


def test_generate_writes_exact_row_count_for_a_partial_last_chunk(tmp_path: Path) -> None:
    result = generate_churn(tmp_path / "d.parquet", rows=2_501, seed=1, chunk_rows=1_000)

    frame = pd.read_parquet(result.path)
    assert result.rows == len(frame) == 2_501
    assert pq.ParquetFile(result.path).metadata.num_row_groups == 3
    assert frame["customer_id"].iloc[0] == "C0000001"
    assert frame["customer_id"].iloc[-1] == "C0002501"
    assert frame["customer_id"].is_unique
    assert result.positive_share == pytest.approx(positive(frame).mean())


def test_generated_columns_dtypes_and_class_balance(baseline: pd.DataFrame) -> None:
    assert list(baseline.columns) == ["customer_id", "event_timestamp", *FEATURES, "churned"]
    assert str(baseline["event_timestamp"].dtype) == "datetime64[ms, UTC]"
    for name in ("tenure_months", "support_calls", "late_payments", "age"):
        assert baseline[name].dtype == np.int64, name
    for name in ("monthly_charges", "total_charges", "data_usage_gb", "satisfaction_score"):
        assert baseline[name].dtype == np.float64, name
    for name, values in CATEGORIES.items():
        assert set(baseline[name]) == set(values), name
    assert set(baseline["churned"]) == {"Yes", "No"}
    assert 0.20 <= positive(baseline).mean() <= 0.27


def test_total_charges_follow_tenure_times_monthly_charges(baseline: pd.DataFrame) -> None:
    product = baseline["tenure_months"].clip(lower=1) * baseline["monthly_charges"]
    assert product.corr(baseline["total_charges"]) > 0.95


def test_generated_data_has_a_few_missing_values_in_some_columns(baseline: pd.DataFrame) -> None:
    missing_share = baseline.isna().mean()

    assert set(missing_share[missing_share > 0].index) == {
        "total_charges",
        "data_usage_gb",
        "satisfaction_score",
    }
    assert missing_share[missing_share > 0].between(0.005, 0.04).all()


def test_timestamps_stay_in_the_window_and_mostly_increase() -> None:
    start = datetime(2025, 6, 1, tzinfo=UTC)
    frame = churn_frame(5_000, seed=2, start=start)
    stamps = frame["event_timestamp"]

    assert stamps.min() >= pd.Timestamp(start)
    assert stamps.max() <= pd.Timestamp(start + WINDOW)
    assert stamps.max() - stamps.min() > WINDOW * 0.99
    assert (stamps.diff().dropna() >= pd.Timedelta(0)).mean() > 0.6
    assert stamps.is_monotonic_increasing is False  # jittered, like real event times
    assert churn_frame(10, seed=2)["event_timestamp"].min() >= pd.Timestamp(DEFAULT_START)
    naive = churn_frame(10, seed=2, start=start.replace(tzinfo=None))  # taken as UTC
    pd.testing.assert_frame_equal(naive, churn_frame(10, seed=2, start=start))


def test_covariate_moves_only_the_shifted_features(baseline: pd.DataFrame) -> None:
    shifted = churn_frame(ROWS, seed=11, scenario="covariate", shift_sigma=1.0)
    moved = ("monthly_charges", "data_usage_gb", "support_calls")

    for name in moved:
        expected = _reference_std()[name]
        change = shifted[name].mean() - baseline[name].mean()
        assert change == pytest.approx(expected, rel=0.1), name
    for name in (set(FEATURES) - set(moved)) | {"customer_id", "event_timestamp"}:
        pd.testing.assert_series_equal(shifted[name], baseline[name])
    assert shifted["support_calls"].dtype == np.int64
    # P(churn | features) is kept, so more charges and calls mean more churn.
    assert positive(shifted).mean() > positive(baseline).mean() + 0.05


def test_covariate_shift_of_a_few_features_among_twenty() -> None:
    chosen = ("extra_01", "extra_02", "age")
    base = churn_frame(ROWS, seed=4, extra_features=8)
    shifted = churn_frame(
        ROWS,
        seed=4,
        scenario="covariate",
        shift_sigma=0.3,
        shift_features=chosen,
        extra_features=8,
    )

    features = [c for c in base.columns if c not in ("customer_id", "event_timestamp", "churned")]
    assert len(features) == 20
    for name in features:
        if name in chosen:
            change = (shifted[name].mean() - base[name].mean()) / base[name].std()
            assert change == pytest.approx(0.3, abs=0.03), name
        else:
            pd.testing.assert_series_equal(shifted[name], base[name])


def test_concept_keeps_features_and_changes_how_they_relate_to_churn(
    baseline: pd.DataFrame,
) -> None:
    concept = churn_frame(ROWS, seed=11, scenario="concept")

    pd.testing.assert_frame_equal(concept.drop(columns="churned"), baseline.drop(columns="churned"))
    assert 0.18 <= positive(concept).mean() <= 0.28

    def rate_ratio(frame: pd.DataFrame) -> float:
        rate = positive(frame).groupby(frame["contract"]).mean()
        return float(rate["month-to-month"] / rate["two-year"])

    # Usually month-to-month customers churn far more than two-year ones; not after the change.
    assert rate_ratio(baseline) > 3
    assert rate_ratio(concept) < 2


def test_new_category_adds_an_unseen_payment_method_only(baseline: pd.DataFrame) -> None:
    drifted = churn_frame(ROWS, seed=11, scenario="new-category")

    assert "crypto" not in set(baseline["payment_method"])
    assert (drifted["payment_method"] == "crypto").mean() == pytest.approx(0.15, abs=0.015)
    changed = drifted["payment_method"] != baseline["payment_method"]
    assert (drifted.loc[changed, "payment_method"] == "crypto").all()
    pd.testing.assert_frame_equal(
        drifted.drop(columns="payment_method"), baseline.drop(columns="payment_method")
    )


def test_a_good_model_learns_the_signal_but_not_perfectly_and_concept_drift_hurts_it() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    def encode(frame: pd.DataFrame) -> pd.DataFrame:
        matrix = frame[list(NUMERIC_FEATURES)].copy()
        for name, values in CATEGORIES.items():
            matrix[name] = pd.Categorical(frame[name], categories=values).codes
        return matrix

    train, holdout = churn_frame(ROWS, seed=21), churn_frame(8_000, seed=22)
    concept = churn_frame(8_000, seed=22, scenario="concept")
    model = HistGradientBoostingClassifier(max_iter=100, random_state=0)
    model.fit(encode(train), positive(train))

    auc = roc_auc_score(positive(holdout), model.predict_proba(encode(holdout))[:, 1])
    drifted_auc = roc_auc_score(positive(concept), model.predict_proba(encode(concept))[:, 1])
    assert 0.8 <= auc <= 0.9
    assert drifted_auc < auc - 0.12


def test_reference_std_matches_a_fresh_sample(baseline: pd.DataFrame) -> None:
    for name, std in _reference_std().items():
        assert baseline[name].std() == pytest.approx(std, rel=0.05), name


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"scenario": "seasonal"}, "unknown scenario 'seasonal'; expected one of none, covariate"),
        ({"scenario": "covariate", "shift_features": ("region",)}, "cannot shift region"),
        ({"scenario": "covariate", "shift_features": ("nope",)}, "features of the generator: "),
        ({"rows": 0}, "rows must be at least 1 (got 0)"),
        ({"seed": -1}, "seed must be a non-negative integer (got -1)"),
        ({"shift_sigma": float("nan")}, "shift_sigma must be a finite number"),
    ],
)
def test_churn_frame_rejects_bad_arguments(kwargs: dict[str, object], expected: str) -> None:
    arguments: dict[str, object] = {"rows": 10, **kwargs}
    with pytest.raises(ConfigError) as raised:
        churn_frame(**arguments)  # type: ignore[arg-type]
    assert expected in str(raised.value)


def test_generate_rejects_an_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"out\.json must end with one of \.parquet, \.pq"):
        generate_churn(tmp_path / "out.json", rows=10)
    assert not (tmp_path / "out.json").exists()


def test_generate_reports_an_unwritable_path(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a directory", encoding="utf-8")
    target = tmp_path / "taken" / "d.parquet"

    with pytest.raises(DataError) as raised:
        generate_churn(target, rows=10)
    assert str(raised.value).startswith(f"cannot write {target}: ")


def test_chunked_writing_keeps_peak_memory_bounded(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import json, resource, sys
        from pathlib import Path
        from steps.ml.synthetic import generate_churn
        out = Path(sys.argv[1])
        generate_churn(out / "warm.parquet", rows=1_000, show_progress=False)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = generate_churn(
            out / "big.parquet", rows=1_000_000, chunk_rows=100_000, show_progress=False
        )
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"growth_kb": after - before, "rows": result.rows}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=REPO,
    )
    measured = json.loads(done.stdout)
    full_frame_bytes = churn_frame(100_000).memory_usage(deep=True).sum() * 10

    assert measured["rows"] == pq.ParquetFile(tmp_path / "big.parquet").metadata.num_rows
    assert measured["growth_kb"] * 1024 < full_frame_bytes / 3


# --- loader ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def churn_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same 3k generated rows as Parquet, CSV and gzipped CSV."""
    folder = tmp_path_factory.mktemp("churn")
    return {
        suffix: generate_churn(folder / f"churn{suffix}", rows=3_000, seed=9).path
        for suffix in (".parquet", ".csv", ".csv.gz")
    }


def test_load_types_generated_columns_and_keeps_missing_values(
    churn_files: dict[str, Path],
) -> None:
    dataset = load_dataset(str(churn_files[".parquet"]), target="churned")
    raw = pd.read_parquet(churn_files[".parquet"])

    assert dataset.numeric == NUMERIC_FEATURES
    assert dataset.categorical == tuple(CATEGORIES)
    assert list(dataset.frame.columns) == [*FEATURES, "churned"]
    assert dataset.frame["churned"].dtype == np.int8
    assert dataset.n_rows == 3_000
    assert dataset.class_balance == pytest.approx(positive(raw).mean())
    assert dataset.frame["total_charges"].isna().sum() == raw["total_charges"].isna().sum() > 0
    assert dataset.dropped_missing_target == 0
    assert dataset.source == str(churn_files[".parquet"])


def test_csv_and_parquet_of_the_same_rows_load_alike(churn_files: dict[str, Path]) -> None:
    from_parquet = load_dataset(str(churn_files[".parquet"]), target="churned")
    from_csv = load_dataset(str(churn_files[".csv"]), target="churned")
    from_gzip = load_dataset(str(churn_files[".csv.gz"]), target="churned")

    pd.testing.assert_frame_equal(from_parquet.frame, from_csv.frame)
    pd.testing.assert_frame_equal(from_csv.frame, from_gzip.frame)
    assert (from_csv.numeric, from_csv.categorical) == (
        from_parquet.numeric,
        from_parquet.categorical,
    )


def test_content_hash_is_stable_and_follows_the_values(churn_files: dict[str, Path]) -> None:
    first = load_dataset(str(churn_files[".parquet"]), target="churned")
    second = load_dataset(str(churn_files[".parquet"]), target="churned")
    tiny = pd.DataFrame({"x": [1.5, None, 3.0], "c": ["a", "b", None], "y": ["Yes", "No", "no"]})
    changed = tiny.assign(x=[1.5, float("nan"), 3.25])

    assert first.content_hash == second.content_hash
    assert len(first.content_hash) == 64
    # A golden value: the hash must not change between runs, processes or machines.
    assert dataset_from_frame(tiny, "tiny", "y").content_hash == (
        "0792783cddc008888a2c3414690977b302425e9bf489a40c1c47d55ec00501ff"
    )
    assert dataset_from_frame(changed, "tiny", "y").content_hash != (
        dataset_from_frame(tiny, "tiny", "y").content_hash
    )


def test_a_directory_of_parquet_files_loads_as_one_table(tmp_path: Path) -> None:
    generate_churn(tmp_path / "part-0.parquet", rows=1_000, seed=1)
    generate_churn(tmp_path / "part-1.parquet", rows=500, seed=2)
    (tmp_path / "_SUCCESS").write_text("", encoding="utf-8")

    dataset = load_dataset(str(tmp_path), target="churned")

    assert dataset.n_rows == 1_500
    assert dataset.numeric == NUMERIC_FEATURES


def test_feature_selection_and_default_id_columns(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "d.csv",
        """
        customer_id,event_timestamp,age,plan,score,churned
        C1,2026-01-01,30,basic,0.5,Yes
        C2,2026-01-02,40,pro,0.7,No
        """,
    )

    chosen = load_dataset(str(path), target="churned", features=["plan", "age"])
    default = load_dataset(str(path), target="churned")

    assert list(chosen.frame.columns) == ["plan", "age", "churned"]
    assert (chosen.numeric, chosen.categorical) == (("age",), ("plan",))
    assert default.features == ("age", "score", "plan")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["Yes", "No", " yes ", "NO"], [1, 0, 1, 0]),
        (["true", "False", "TRUE", "false"], [1, 0, 1, 0]),
        (["1", "0", " 1", "0 "], [1, 0, 1, 0]),
        ([True, False, True, False], [1, 0, 1, 0]),
        ([1, 0, 1, 0], [1, 0, 1, 0]),
        ([1.0, 0.0, 1.0, 0.0], [1, 0, 1, 0]),
    ],
)
def test_labels_map_to_zero_and_one(values: list[object], expected: list[int]) -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "label": values})

    dataset = dataset_from_frame(frame, "memory", "label")

    assert dataset.frame["label"].tolist() == expected
    assert dataset.frame["label"].dtype == np.int8


def test_rows_without_a_target_are_dropped_and_counted(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"x": [1.0, 2.0, 3.0, 4.0, 5.0], "label": ["Yes", None, "No", "  ", "yes"]}
    )
    path = tmp_path / "d.parquet"
    frame.to_parquet(path)

    dataset = load_dataset(str(path), target="label")

    assert dataset.dropped_missing_target == 2
    assert dataset.frame["x"].tolist() == [1.0, 3.0, 5.0]
    assert dataset.frame["label"].tolist() == [1, 0, 1]


def test_types_of_other_feature_columns() -> None:
    frame = pd.DataFrame(
        {
            "flag": [True, False, True],
            "maybe": pd.Series([True, None, False], dtype=object),
            "tier": pd.Categorical(["a", "b", "a"]),
            "blank": pd.Series([None, None, None], dtype=object),
            "y": [1, 0, 1],
        }
    )

    dataset = dataset_from_frame(frame, "memory", "y")

    assert dataset.numeric == ("flag", "maybe")
    assert dataset.categorical == ("tier", "blank")
    assert dataset.frame["maybe"].tolist()[::2] == [1.0, 0.0]


def load_error(path: Path | str, **kwargs: object) -> str:
    with pytest.raises(DataError) as raised:
        load_dataset(str(path), **{"target": "churned", **kwargs})  # type: ignore[arg-type]
    return str(raised.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    assert load_error(tmp_path / "nope.csv") == f"data file {tmp_path / 'nope.csv'} does not exist"


def test_an_unknown_format_names_the_file_and_the_accepted_extensions(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text("{}", encoding="utf-8")

    message = load_error(path)

    assert str(path) in message
    assert ".csv, .csv.gz, .parquet, .pq" in message


def test_a_corrupt_parquet_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    path.write_bytes(b"certainly not parquet")

    assert load_error(path).startswith(f"cannot read {path} as Parquet:")


def test_an_empty_directory_is_named(tmp_path: Path) -> None:
    assert load_error(tmp_path) == f"directory {tmp_path} holds no .parquet or .pq files"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "is empty: no header and no rows"),
        ("age,churned\n", "has no rows (columns: age, churned)"),
        ("age,label\n1,Yes\n", "target column 'churned' is not in {path}; columns: age, label"),
        ("age,churned\n1,Yes\n2,yes\n", "has only class 1 (positive) in all 2 rows"),
        ("age,churned\n1,No\n2,\n", "has only class 0 (negative) in all 1 rows"),
        ("age,churned\n1,\n2,\n", "every row of {path} lacks a value in target column"),
        ("customer_id,churned\nC1,Yes\nC2,No\n", "has no feature columns besides 'churned'"),
    ],
)
def test_bad_csv_content_gives_a_data_error(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "d.csv"
    path.write_text(text, encoding="utf-8")

    message = load_error(path)

    assert expected.format(path=path) in message
    assert str(path) in message


def test_unexpected_labels_are_listed_up_to_five(tmp_path: Path) -> None:
    labels = ["Yes", "No", "maybe", "2", "y", "n", "unknown", "later", "never"]
    path = write_csv(tmp_path / "d.csv", "x,churned\n" + "".join(f"1,{v}\n" for v in labels))

    message = load_error(path)

    assert "target column 'churned' has 7 unexpected value(s): 'maybe', 2, 'y', 'n', 'unknown'" in (
        message.replace("'2'", "2")
    )
    assert "later" not in message
    assert "expected yes/no, true/false or 1/0" in message


def test_a_requested_feature_that_is_absent_is_named(churn_files: dict[str, Path]) -> None:
    message = load_error(churn_files[".csv"], features=["age", "income"])

    assert message.startswith(f"feature 'income' not in {churn_files['.csv']}; columns: ")
    assert "tenure_months" in message


def test_the_target_cannot_also_be_a_feature(churn_files: dict[str, Path]) -> None:
    message = load_error(churn_files[".csv"], features=["age", "churned"])

    assert message == "target column 'churned' is also listed as a feature"


def test_text_in_a_mostly_numeric_column_is_named(tmp_path: Path) -> None:
    rows = "".join(f"{i}.5,{'Yes' if i % 2 else 'No'}\n" for i in range(8))
    path = write_csv(tmp_path / "d.csv", "charges,churned\n" + rows + "unknown,No\n")

    message = load_error(path)

    assert message.startswith("feature 'charges' (dtype object) is mostly numbers")
    assert "'unknown'" in message


def test_a_nested_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pd.DataFrame({"tags": [[1, 2], [3], []], "churned": ["Yes", "No", "No"]}).to_parquet(path)

    message = load_error(path)

    assert message.startswith("feature 'tags' (dtype object) holds ndarray values such as")
    assert "not nested or mixed values" in message


def test_a_timestamp_feature_is_named(churn_files: dict[str, Path]) -> None:
    message = load_error(churn_files[".parquet"], id_columns=["customer_id"])

    assert message.startswith("feature 'event_timestamp' has dtype datetime64[ms, UTC] (e.g. ")
    assert "list it as an id column" in message


# --- command line ------------------------------------------------------------------------------


runner = CliRunner()


def test_cli_generate_writes_the_file_and_argo_outputs(tmp_path: Path) -> None:
    target = tmp_path / "data" / "churn.parquet"
    out_dir = tmp_path / "out"

    done = runner.invoke(
        app, ["generate", str(target), "--rows", "1500", "--seed", "3", "--out-dir", str(out_dir)]
    )

    assert done.exit_code == 0, done.output
    assert (out_dir / "data_uri").read_text(encoding="utf-8") == str(target.resolve())
    assert (out_dir / "rows").read_text(encoding="utf-8") == "1500"
    assert json.loads((out_dir / "result.json").read_text(encoding="utf-8"))["seed"] == 3
    pd.testing.assert_frame_equal(pd.read_parquet(target), churn_frame(1500, seed=3))


def test_cli_generate_covariate_with_chosen_features(tmp_path: Path) -> None:
    target = tmp_path / "drift.csv"

    done = runner.invoke(
        app,
        [
            *("generate", str(target), "--rows", "800", "--scenario", "covariate", "--seed", "1"),
            *("--shift-sigma", "2", "--shift-features", "age, tenure_months"),
        ],
    )

    assert done.exit_code == 0, done.output
    expected = churn_frame(
        800, seed=1, scenario="covariate", shift_sigma=2.0, shift_features=("age", "tenure_months")
    )
    assert pd.read_csv(target)["age"].tolist() == expected["age"].tolist()


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--scenario", "seasonal"], "unknown scenario 'seasonal'; expected one of none"),
        (["--shift-sigma", "0.5"], "--shift-sigma and --shift-features need --scenario covariate"),
        (["--scenario", "covariate", "--shift-features", "zip"], "cannot shift zip"),
    ],
)
def test_cli_generate_reports_bad_flags_without_a_traceback(
    tmp_path: Path, arguments: list[str], expected: str
) -> None:
    done = runner.invoke(app, ["generate", str(tmp_path / "d.csv"), "--rows", "10", *arguments])

    assert done.exit_code == 2
    assert expected in done.output
    assert "Traceback" not in done.output


def test_cli_inspect_json_matches_the_loader(
    churn_files: dict[str, Path], loopline_env: Path
) -> None:
    done = runner.invoke(app, ["inspect", str(churn_files[".csv"]), "--json"])

    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    dataset = load_dataset(str(churn_files[".csv"]), target="churned")
    assert summary["rows"] == dataset.n_rows == 3_000
    assert summary["content_hash"] == dataset.content_hash
    assert summary["class_balance"] == pytest.approx(dataset.class_balance, abs=1e-6)
    assert summary["categorical"] == list(CATEGORIES)


def test_cli_inspect_table_and_target_flag(tmp_path: Path, loopline_env: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "x,plan,left\n1,a,yes\n2,b,no\n3,a,no\n4,b,no\n")

    done = runner.invoke(app, ["inspect", str(path), "--target", "left"])

    assert done.exit_code == 0, done.output
    assert "class_balance" in done.stdout
    assert "0.25" in done.stdout
    assert "plan" in done.stdout


def test_cli_inspect_reports_a_missing_file(tmp_path: Path, loopline_env: Path) -> None:
    done = runner.invoke(app, ["inspect", str(tmp_path / "gone.parquet")])

    assert done.exit_code == 2
    assert "does not exist" in done.output
    assert "Traceback" not in done.output


def test_cli_lists_scenarios_in_help_and_joins_the_root_cli() -> None:
    from steps import cli  # imports every step (MLflow, scikit-learn): only this test pays

    done = subprocess.run(
        [sys.executable, "-m", "steps.data", "generate", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
        cwd=REPO,
    )
    root = runner.invoke(cli.app, ["data", "--help"])

    for name in SCENARIOS:
        assert f"{name}: " in done.stdout
    assert "generate" in root.output
    assert "inspect" in root.output


# --- S3 ----------------------------------------------------------------------------------------


@pytest.mark.integration
def test_load_from_s3_matches_the_local_file(
    s3_server: S3Server, s3_bucket: str, churn_files: dict[str, Path]
) -> None:
    client = s3_server.client()
    for suffix, path in churn_files.items():
        client.upload_file(str(path), s3_bucket, f"data/churn{suffix}")

    for suffix, path in churn_files.items():
        remote = load_dataset(
            f"s3://{s3_bucket}/data/churn{suffix}", "churned", s3=s3_server.settings
        )
        local = load_dataset(str(path), "churned")
        assert remote.source == f"s3://{s3_bucket}/data/churn{suffix}"
        assert remote.content_hash == local.content_hash
        assert remote.n_rows == 3_000


@pytest.mark.integration
def test_s3_missing_key_and_bucket_name_the_uri(s3_server: S3Server, s3_bucket: str) -> None:
    missing_key = f"s3://{s3_bucket}/nope.parquet"
    missing_bucket = "s3://loopline-no-such-bucket/churn.csv"

    key_error = load_error(missing_key, s3=s3_server.settings)
    bucket_error = load_error(missing_bucket, s3=s3_server.settings)

    assert key_error == f"cannot read {missing_key}: no object with that key (NoSuchKey)"
    assert bucket_error == (
        f"cannot read {missing_bucket}: the bucket does not exist (NoSuchBucket)"
    )
    assert load_error("s3://bucket-only", s3=s3_server.settings) == (
        "s3://bucket-only is not an s3://bucket/key URI of one file"
    )


@pytest.mark.integration
def test_s3_without_credentials_says_which_variables_to_set(
    s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"s3://{s3_bucket}/churn.csv"
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")

    message = load_error(uri, s3=s3_server.settings)

    assert message.startswith(f"cannot read {uri}: no AWS credentials found; set AWS_ACCESS_KEY_ID")


@pytest.mark.integration
def test_cli_inspect_reads_s3_with_the_endpoint_from_settings(
    s3_server: S3Server,
    s3_bucket: str,
    churn_files: dict[str, Path],
    loopline_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s3_server.client().upload_file(str(churn_files[".parquet"]), s3_bucket, "churn.parquet")
    monkeypatch.setenv("LOOPLINE_S3__ENDPOINT_URL", s3_server.endpoint_url)

    done = runner.invoke(app, ["inspect", f"s3://{s3_bucket}/churn.parquet", "--json"])

    assert done.exit_code == 0, done.output
    expected = load_dataset(str(churn_files[".parquet"]), "churned").content_hash
    assert json.loads(done.stdout)["content_hash"] == expected


def test_dataset_is_frozen(churn_files: dict[str, Path]) -> None:
    dataset = load_dataset(str(churn_files[".csv"]), target="churned")
    with pytest.raises(AttributeError):
        dataset.target = "other"  # type: ignore[misc]
    assert dataset.target == "churned"
