"""Load a labelled table (CSV or Parquet, local or S3) and check it for training.

:func:`load_dataset` reads the file, picks the feature columns, types them as numeric or
categorical and maps the label to 0/1; anything it cannot use is a :class:`DataError` naming the
file or column and the expected form. ``python -m steps.data`` (``loopline data``) is the command
line over it and the synthetic generator (:mod:`steps.ml.synthetic`).
"""

from __future__ import annotations

import hashlib
import io
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np
import pandas as pd
import pyarrow.dataset as pa_dataset

from serving.features import FeatureSpec
from steps.core.errors import DataError
from steps.core.settings import S3Settings

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
DEFAULT_ID_COLUMNS = ("customer_id", "event_timestamp")
_LABELS = {"yes": 1, "no": 0, "true": 1, "false": 0, "1": 1, "0": 0}
_NUMERIC_OBJECTS = ("integer", "floating", "mixed-integer-float", "decimal", "boolean")
_S3_HINTS = {
    "NoSuchKey": "no object with that key (NoSuchKey)",
    "NoSuchBucket": "the bucket does not exist (NoSuchBucket)",
    "AccessDenied": "access denied (AccessDenied): check the AWS credentials' permissions",
    "InvalidAccessKeyId": "unknown access key (InvalidAccessKeyId): check AWS_ACCESS_KEY_ID",
    "SignatureDoesNotMatch": "wrong secret (SignatureDoesNotMatch): check AWS_SECRET_ACCESS_KEY",
}
FeatureKind = Literal["numeric", "categorical"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded, checked data set: feature columns plus the target as int8 0/1."""

    frame: pd.DataFrame
    target: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    source: str
    content_hash: str
    dropped_missing_target: int = 0
    ids: pd.DataFrame | None = None
    """The id columns present in the source (row keys, timestamps), row-aligned with ``frame``;
    never features, used to split and to recognise rows across data sets."""

    @property
    def features(self) -> tuple[str, ...]:
        """Numeric then categorical feature names."""
        return (*self.numeric, *self.categorical)

    @property
    def n_rows(self) -> int:
        """Number of rows kept (rows with a target)."""
        return len(self.frame)

    @property
    def class_balance(self) -> float:
        """Share of positive rows."""
        return float(self.frame[self.target].mean())


def load_dataset(
    uri: str,
    target: str,
    features: Sequence[str] | None = None,
    id_columns: Sequence[str] = DEFAULT_ID_COLUMNS,
    s3: S3Settings | None = None,
) -> Dataset:
    """Read a CSV or Parquet table from a local path, a Parquet directory or ``s3://bucket/key``.

    Args:
        uri: the data: ``.csv``, ``.csv.gz``, ``.parquet`` or ``.pq`` file, a directory of
            Parquet files, or an ``s3://`` URI to such a file.
        target: the label column; yes/no, true/false, 1/0 (any case) or booleans.
        features: the feature columns; default every column but the target and ``id_columns``.
        id_columns: columns that are never features unless listed in ``features``.
        s3: endpoint and region for ``s3://`` URIs; credentials come from the AWS chain.

    Returns:
        The checked data set. Rows without a target are dropped and counted.

    Raises:
        DataError: naming the file or column, for a missing or unreadable file, a missing or
            malformed target or feature, a feature of an unusable type, or an empty table.
    """
    if uri.startswith("s3://"):
        frame = _parse(io.BytesIO(_fetch_s3(uri, s3 or S3Settings())), uri)
    else:
        frame = _read_local(Path(uri.removeprefix("file://")))
    return dataset_from_frame(frame, uri, target, features, id_columns)


def dataset_from_frame(
    frame: pd.DataFrame,
    source: str,
    target: str,
    features: Sequence[str] | None = None,
    id_columns: Sequence[str] = DEFAULT_ID_COLUMNS,
) -> Dataset:
    """Check an in-memory table the way :func:`load_dataset` checks a file.

    Returns:
        The checked data set (see :func:`load_dataset`).

    Raises:
        DataError: as :func:`load_dataset`, with ``source`` standing for the file.
    """
    if frame.empty:
        raise DataError(f"{source} has no rows (columns: {', '.join(map(str, frame.columns))})")
    available = ", ".join(map(str, frame.columns))
    if target not in frame.columns:
        raise DataError(f"target column {target!r} is not in {source}; columns: {available}")
    chosen = _choose_features(frame, source, target, features, id_columns)
    labels, missing = _labels(frame[target], target)
    if missing.all():
        raise DataError(f"every row of {source} lacks a value in target column {target!r}")
    kept = frame.loc[~missing, list(chosen)] if missing.any() else frame[list(chosen)]
    kept = kept.reset_index(drop=True)
    id_present = [str(c) for c in frame.columns if c in id_columns and c not in chosen]
    ids = frame.loc[~missing, id_present].reset_index(drop=True) if id_present else None
    kinds: dict[str, FeatureKind] = {}
    for name in chosen:
        kinds[name], kept[name] = _typed_feature(name, kept[name])
    kept[target] = labels[~missing]
    positives = int(kept[target].sum())
    if positives in (0, len(kept)):
        only = "1 (positive)" if positives else "0 (negative)"
        raise DataError(
            f"target column {target!r} in {source} has only class {only} in all {len(kept)} rows;"
            " a model needs both classes"
        )
    return Dataset(
        frame=kept,
        target=target,
        numeric=tuple(name for name in chosen if kinds[name] == "numeric"),
        categorical=tuple(name for name in chosen if kinds[name] == "categorical"),
        source=source,
        content_hash=_content_hash(kept),
        dropped_missing_target=int(missing.sum()),
        ids=ids,
    )


def _read_local(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    if not path.is_dir():
        with path.open("rb") as handle:
            return _parse(handle, str(path))
    files = sorted(p for p in path.iterdir() if p.name.endswith(PARQUET_SUFFIXES))
    if not files:
        raise DataError(f"directory {path} holds no {' or '.join(PARQUET_SUFFIXES)} files")
    try:
        table = pa_dataset.dataset([str(p) for p in files], format="parquet").to_table()
    except (ValueError, OSError) as err:
        raise DataError(f"cannot read the Parquet files in {path}: {err}") from err
    frame: pd.DataFrame = table.to_pandas()
    return frame


def _parse(handle: IO[bytes], name: str) -> pd.DataFrame:
    """Parse CSV or Parquet by the name's suffix."""
    if not name.endswith((*CSV_SUFFIXES, *PARQUET_SUFFIXES)):
        accepted = ", ".join((*CSV_SUFFIXES, *PARQUET_SUFFIXES))
        raise DataError(f"cannot read {name}: unknown format; expected a file ending {accepted}")
    parquet = name.endswith(PARQUET_SUFFIXES)
    try:
        if parquet:
            frame: pd.DataFrame = pd.read_parquet(handle)
        else:
            gzip = name.endswith(".gz")
            frame = pd.read_csv(handle, compression="gzip" if gzip else None, low_memory=False)
    except pd.errors.EmptyDataError as err:
        raise DataError(f"{name} is empty: no header and no rows") from err
    except (ValueError, OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read {name} as {'Parquet' if parquet else 'CSV'}: {err}") from err
    return frame


def _fetch_s3(uri: str, s3: S3Settings) -> bytes:
    # boto3 costs ~0.5 s to import; only S3 users pay it.
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key or key.endswith("/"):
        raise DataError(f"{uri} is not an s3://bucket/key URI of one file")
    # A fresh session resolves credentials now; boto3's default session caches them forever.
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=s3.endpoint_url,
        region_name=s3.region,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10),
    )
    try:
        body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", "unknown"))
        raise DataError(f"cannot read {uri}: {_S3_HINTS.get(code, f'{code}: {err}')}") from err
    except NoCredentialsError as err:
        raise DataError(
            f"cannot read {uri}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or an AWS profile), or train on a local file: "
            "LOOPLINE_DATA__URI=PATH, or `loopline run FILE -p data-uri=PATH` (`loopline data "
            "generate` writes demo data)"
        ) from err
    except BotoCoreError as err:  # endpoint unreachable, bad endpoint URL, ...
        raise DataError(f"cannot read {uri}: {err}") from err
    return body


def _choose_features(
    frame: pd.DataFrame,
    source: str,
    target: str,
    features: Sequence[str] | None,
    id_columns: Sequence[str],
) -> tuple[str, ...]:
    if features is None:
        chosen = tuple(str(c) for c in frame.columns if c != target and c not in id_columns)
    else:
        chosen = tuple(dict.fromkeys(features))
        absent = [name for name in chosen if name not in frame.columns]
        if absent:
            raise DataError(
                f"feature {', '.join(map(repr, absent))} not in {source}; "
                f"columns: {', '.join(map(str, frame.columns))}"
            )
        if target in chosen:
            raise DataError(f"target column {target!r} is also listed as a feature")
    if not chosen:
        raise DataError(f"{source} has no feature columns besides {target!r} and the id columns")
    return chosen


def _labels(column: pd.Series, target: str) -> tuple[np.ndarray, np.ndarray]:
    """Map the target to int8 0/1; return the labels and a mask of rows without a target."""
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    mapped = np.array([_label_value(value) for value in uniques] + [-1], dtype=np.int8)
    bad = [value for value, label in zip(uniques, mapped, strict=False) if label == -2]
    if bad:
        shown = ", ".join(repr(value) for value in bad[:5])
        raise DataError(
            f"target column {target!r} has {len(bad)} unexpected value(s): {shown}; expected "
            "yes/no, true/false or 1/0 (any case) or booleans"
        )
    labels = mapped[codes]  # the -1 sentinel code picks the trailing "missing" entry
    return labels, labels < 0


def _label_value(value: object) -> int:
    """0 or 1, -1 for a blank string, -2 for anything else."""
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return int(value) if value in (0, 1) else -2
    if isinstance(value, str):
        text = value.strip().lower()
        return -1 if not text else _LABELS.get(text, -2)
    return -2


def _typed_feature(name: str, column: pd.Series) -> tuple[FeatureKind, pd.Series]:
    """Classify a feature column; numeric features (ints, bools, numbers in text) become float64."""
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype) or (
        pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)
    ):
        # One numeric type everywhere (model signature, serving schema): float64 carries NaN.
        return "numeric", column.astype("float64")
    if isinstance(dtype, pd.CategoricalDtype):
        return "categorical", column
    values = column.dropna()
    if pd.api.types.is_object_dtype(dtype) or isinstance(dtype, pd.StringDtype):
        inferred = pd.api.types.infer_dtype(values, skipna=True)
        if inferred in ("string", "empty"):
            _reject_text_in_numbers(name, values)
            return "categorical", column
        if inferred in _NUMERIC_OBJECTS:
            return "numeric", pd.to_numeric(column.astype(object), errors="raise").astype(float)
        example = next(v for v in values if not isinstance(v, str))
        raise DataError(
            f"feature {name!r} (dtype {dtype}) holds {type(example).__name__} values such as "
            f"{example!r}; expected numbers, booleans or strings, not nested or mixed values"
        )
    example = values.iloc[0] if len(values) else None
    raise DataError(
        f"feature {name!r} has dtype {dtype} (e.g. {example!r}); expected numbers, booleans or "
        "strings: leave it out of the features or list it as an id column"
    )


def _reject_text_in_numbers(name: str, values: pd.Series) -> None:
    """A text column whose values are mostly numbers is a numeric column with typos in it."""
    counts = values.value_counts()
    numeric = pd.to_numeric(counts.index.to_series(), errors="coerce").notna().to_numpy()
    numeric_rows = int(counts[numeric].sum())
    if numeric_rows * 2 >= len(values) and numeric_rows < len(values):
        text = ", ".join(repr(value) for value in counts.index[~numeric][:5])
        raise DataError(
            f"feature {name!r} (dtype {values.dtype}) is mostly numbers but holds text such as "
            f"{text}; fix or blank those values"
        )


def _content_hash(frame: pd.DataFrame) -> str:
    """sha256 over column names, dtypes and every value; stable across runs."""
    digest = hashlib.sha256(
        json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode()
    )
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def fit_spec(dataset: Dataset, train: pd.DataFrame) -> FeatureSpec:
    """Fit the feature contract (category vocabularies) on the training split only."""
    return FeatureSpec.fit(
        target=dataset.target,
        numeric=dataset.numeric,
        categories={name: train[name].tolist() for name in dataset.categorical},
    )


def encode(spec: FeatureSpec, frame: pd.DataFrame) -> np.ndarray:
    """Encode a frame's feature columns with ``spec``."""
    return spec.encode({name: frame[name].to_numpy() for name in spec.order})
