"""Measure drift per column with Evidently 0.7 and keep its HTML report.

:func:`measure` runs ``Report([DataDriftPreset(...)], include_tests=True)`` on the sampled window
(current) against the champion's reference sample and returns one
:class:`~steps.monitor.policy.ColumnScore` per column: Evidently's method, threshold and score, and
Evidently's own drifted/not verdict (its per-column test: ``FAIL`` means drifted). The decision
itself is :func:`steps.monitor.policy.decide`'s.

Methods, and why the defaults stay Evidently's: unset, Evidently picks per column from the
*reference* size (the champion's reference holds ``train.reference_rows``, 5,000 by default).
Above 1,000 reference rows that is the Wasserstein distance normed by the reference standard
deviation (threshold 0.1) for numeric columns with more than 5 distinct values, and the
Jensen-Shannon distance (threshold 0.1) for categorical and few-valued numeric ones; at 1,000
rows or fewer it is p-value tests (K-S, chi-square, z) at 0.05. A distance measures *how far* a
distribution moved, in units of the reference's spread, so its noise shrinks with the sample
while its signal does not: a shift of 0.3 standard deviations scores ~0.3 (three times the
threshold) and two samples of one distribution score below 0.05, at any window size once the
window is sampled down to ``drift.sample_cap`` (50,000; the noise is then set by the 5,000
reference rows, more current rows would not help). A p-value test instead asks whether *any*
difference exists: its power grows with the row count until it flags differences too small to
matter, and at p < 0.05 over 20 columns a stable window gets at least one false alarm about
half the time. ``scripts/bench_drift.py`` measures both: normed Wasserstein finds a 0.3 sigma
shift in 3 of 20 features and leaves stable windows alone at 100k, 1M and 10M rows (shifted
>= 0.29, stable <= 0.03); K-S on the same 100k stable window flags ``extra_03`` (p = 0.035).
Few-valued numeric columns get Jensen-Shannon, which scores a 0.3 sigma shift near its 0.1
threshold: set ``numeric_method=wasserstein`` when such columns matter.

A column with no value at all on one side (every row missing) cannot be tested by Evidently; it
is scored here without it: drifted, method ``all values missing``, score 1.0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from serving.inference_log import PREDICTION
from steps.core.errors import ConfigError, DataError
from steps.core.settings import DriftSettings
from steps.monitor.policy import ColumnKind, ColumnScore

ALL_MISSING = "all values missing"
_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"


@dataclass(frozen=True)
class Measurement:
    """Per-column scores (features in the given order, then ``prediction``) and the Evidently
    snapshot; None when no column had values on both sides to test."""

    scores: tuple[ColumnScore, ...]
    snapshot: Any | None

    def save_html(self, path: Path) -> Path | None:
        """Write Evidently's HTML report to ``path``.

        Returns:
            The path, or None when there is no Evidently report (nothing was testable).
        """
        if self.snapshot is None:
            return None
        self.snapshot.save_html(str(path))
        return path


def measure(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    policy: DriftSettings,
) -> Measurement:
    """Compare ``current`` with ``reference`` column by column (features and ``prediction``).

    Args:
        reference: the champion's reference sample (features and ``prediction``).
        current: the sampled window, same columns.
        numeric: numeric features.
        categorical: categorical features.
        policy: methods and thresholds (``numeric_method``, ``categorical_method``,
            ``numeric_threshold``, ``categorical_threshold``, ``column_thresholds``);
            unset ones are Evidently's defaults.

    Returns:
        The scores and the Evidently snapshot (for :meth:`Measurement.save_html`).

    Raises:
        ConfigError: when Evidently rejects a configured method for the data.
        DataError: when Evidently leaves a column without a verdict.
    """
    kinds: dict[str, ColumnKind] = {name: "numeric" for name in numeric}
    kinds.update({name: "categorical" for name in categorical})
    kinds[PREDICTION] = "prediction"
    empty = {
        name
        for name in kinds
        if current[name].notna().sum() == 0 or reference[name].notna().sum() == 0
    }
    testable = [name for name in kinds if name not in empty]
    snapshot = _run_evidently(reference, current, testable, kinds, policy)
    measured = _scores(snapshot.dict(), kinds) if snapshot is not None else {}
    scores = []
    for name, kind in kinds.items():
        if name in measured:
            scores.append(measured[name])
        elif name in empty:
            both = current[name].notna().sum() == 0 and reference[name].notna().sum() == 0
            scores.append(
                ColumnScore(
                    column=name,
                    kind=kind,
                    method=ALL_MISSING,
                    threshold=1.0,
                    score=1.0,
                    drifted=not both,
                )
            )
        else:
            raise DataError(f"Evidently gave no drift verdict for column {name!r}")
    return Measurement(scores=tuple(scores), snapshot=snapshot)


def _run_evidently(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    kinds: dict[str, ColumnKind],
    policy: DriftSettings,
) -> Any:
    """Features in a ``DataDriftPreset``, ``prediction`` in a ValueDrift of its own, so the
    report's "share of drifted columns" counts features only, like the policy."""
    # Evidently costs ~16 s to import: only a window worth testing pays for it.
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    features = [name for name in columns if kinds[name] != "prediction"]
    metrics: list[Any] = []
    if features:
        thresholds = {k: v for k, v in policy.column_thresholds.items() if k in features}
        metrics.append(
            DataDriftPreset(
                columns=features,
                drift_share=policy.drift_share,
                num_method=policy.numeric_method,
                cat_method=policy.categorical_method,
                num_threshold=policy.numeric_threshold,
                cat_threshold=policy.categorical_threshold,
                per_column_threshold=thresholds or None,
            )
        )
    if PREDICTION in columns:
        threshold = policy.column_thresholds.get(PREDICTION, policy.numeric_threshold)
        metrics.append(
            ValueDrift(column=PREDICTION, method=policy.numeric_method, threshold=threshold)
        )
    if not metrics:
        return None
    definition = DataDefinition(
        numerical_columns=[name for name in columns if kinds[name] != "categorical"],
        categorical_columns=[name for name in columns if kinds[name] == "categorical"],
    )
    try:
        return Report(metrics, include_tests=True).run(
            current_data=Dataset.from_pandas(current[columns], data_definition=definition),
            reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
        )
    except (ValueError, TypeError) as err:
        if policy.numeric_method is None and policy.categorical_method is None:
            raise
        raise ConfigError(
            f"Evidently cannot test drift with numeric_method={policy.numeric_method!r}, "
            f"categorical_method={policy.categorical_method!r} on this data: "
            f"{' '.join(str(err).split())}; choose another method "
            "(LOOPLINE_DRIFT__NUMERIC_METHOD / __CATEGORICAL_METHOD)"
        ) from err


def _scores(snapshot: dict[str, Any], kinds: dict[str, ColumnKind]) -> dict[str, ColumnScore]:
    """Join each ValueDrift metric (method, threshold, score) with its test's status."""
    status = {
        test["metric_config"]["params"]["column"]: test["status"]
        for test in snapshot["tests"]
        if test["metric_config"]["params"].get("type") == _VALUE_DRIFT
    }
    scores: dict[str, ColumnScore] = {}
    for metric in snapshot["metrics"]:
        config = metric.get("config", {})
        if config.get("type") != _VALUE_DRIFT:
            continue
        name = config["column"]
        verdict = status.get(name)
        if verdict not in ("FAIL", "SUCCESS"):
            raise DataError(f"Evidently's drift test for column {name!r} ended {verdict!r}")
        scores[name] = ColumnScore(
            column=name,
            kind=kinds[name],
            method=str(config["method"]),
            threshold=float(config["threshold"]),
            score=float(metric["value"]),
            drifted=verdict == "FAIL",
        )
    return scores
