"""Estimators: early stopping on a validation split, the saved model equals the fitted one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serving.features import FeatureSpec
from serving.model import load_model_file, model_kind
from steps.core.settings import TrainSettings
from steps.ml import estimators


def _noisy(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(rows, 6)).astype(np.float32)
    labels = (matrix[:, 0] + rng.normal(scale=2.0, size=rows) > 1.5).astype(np.int8)
    return matrix, labels


SPEC = FeatureSpec.fit(target="y", numeric=tuple(f"x{i}" for i in range(6)), categories={})


@pytest.mark.parametrize("kind", ["xgboost", "sklearn-hgb"])
def test_boosting_stops_early_on_noise_and_the_saved_model_scores_the_same(
    kind: str, tmp_path: Path
) -> None:
    matrix, labels = _noisy(3_000, 1)
    valid_matrix, valid_labels = _noisy(800, 2)
    params = TrainSettings(n_estimators=400, max_depth=6, learning_rate=0.3)
    fitted = estimators.fit(
        kind,  # type: ignore[arg-type]
        matrix,
        labels,
        SPEC,
        params,
        seed=3,
        validation=estimators.Validation(valid_matrix, valid_labels),
    )
    assert fitted.history is not None
    assert fitted.history.stopped_early
    assert 1 <= fitted.history.best_iteration < 400
    curve = fitted.history.curve
    assert min(curve) == pytest.approx(curve[fitted.history.best_iteration - 1])
    fitted.save(tmp_path)
    probe, _ = _noisy(200, 9)
    saved = load_model_file(tmp_path, model_kind(tmp_path), SPEC).predict_proba(probe)
    assert np.allclose(saved, fitted.positive_probability(probe), atol=1e-6)


def test_without_validation_or_with_stopping_off_every_round_is_kept() -> None:
    matrix, labels = _noisy(1_000, 1)
    params = TrainSettings(n_estimators=30, early_stopping_rounds=0)
    validation = estimators.Validation(*_noisy(300, 2))
    fitted = estimators.fit("xgboost", matrix, labels, SPEC, params, 3, validation=validation)
    assert fitted.history is None
    assert fitted.estimator.get_booster().num_boosted_rounds() == 30


def test_balanced_class_weight_is_negatives_over_positives() -> None:
    labels = np.array([1, 0, 0, 0, 0, 1, 0, 0], dtype=np.int8)
    assert estimators.positive_weight(labels, TrainSettings(class_weight="balanced")) == 3.0
    assert estimators.positive_weight(labels, TrainSettings()) == 1.0
