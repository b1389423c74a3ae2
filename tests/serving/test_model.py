"""Tests for serving/model.py: reading a model directory, refusing what cannot be served."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from serving.model import (
    ModelDirError,
    SklearnPredictor,
    XGBoostPredictor,
    load_predictor,
    read_model_dir,
)
from tests.fixtures.serving import METADATA, REPO, TinyModel, sample_rows


def _copy(model: TinyModel, tmp_path: Path) -> Path:
    directory = tmp_path / "model"
    shutil.copytree(model.directory, directory)
    return directory


def test_bundle_holds_kind_spec_and_metadata(tiny_model: TinyModel) -> None:
    bundle = read_model_dir(tiny_model.directory)
    assert bundle.kind == "xgboost"
    assert bundle.spec == tiny_model.spec
    assert bundle.metadata.model_dump() == METADATA


def test_predictor_matches_booster_predict_on_a_dmatrix(tiny_model: TinyModel) -> None:
    rows = sample_rows(200)
    predictor = load_predictor(read_model_dir(tiny_model.directory))
    assert isinstance(predictor, XGBoostPredictor)
    got = predictor.predict_proba(tiny_model.spec.encode_rows(rows))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, tiny_model.booster_probability(rows), atol=1e-6)
    assert 0.05 < got.mean() < 0.95  # a real model, not a constant


def test_numeric_model_version_is_read_as_text(tiny_model: TinyModel, tmp_path: Path) -> None:
    directory = _copy(tiny_model, tmp_path)
    (directory / "metadata.json").write_text(json.dumps({**METADATA, "model_version": 12}))
    assert read_model_dir(directory).metadata.model_version == "12"


@pytest.mark.parametrize("missing", ["feature_spec.json", "metadata.json"])
def test_a_missing_file_is_named(tiny_model: TinyModel, tmp_path: Path, missing: str) -> None:
    directory = _copy(tiny_model, tmp_path)
    (directory / missing).unlink()
    with pytest.raises(ModelDirError, match=missing):
        read_model_dir(directory)


def test_metadata_without_a_key_names_the_key(tiny_model: TinyModel, tmp_path: Path) -> None:
    directory = _copy(tiny_model, tmp_path)
    (directory / "metadata.json").write_text(
        json.dumps({k: v for k, v in METADATA.items() if k != "run_id"})
    )
    with pytest.raises(ModelDirError, match="run_id"):
        read_model_dir(directory)


def test_no_model_file_is_refused(tiny_model: TinyModel, tmp_path: Path) -> None:
    directory = _copy(tiny_model, tmp_path)
    (directory / "model.ubj").unlink()
    with pytest.raises(ModelDirError, match=r"exactly one model file \(model.ubj or model.pkl\)"):
        read_model_dir(directory)


def test_a_sklearn_model_is_served_with_its_own_probabilities(
    tiny_sklearn_model: TinyModel,
) -> None:
    bundle = read_model_dir(tiny_sklearn_model.directory)
    assert bundle.kind == "sklearn"
    predictor = load_predictor(bundle)
    assert isinstance(predictor, SklearnPredictor)
    rows = sample_rows(200)
    got = predictor.predict_proba(tiny_sklearn_model.spec.encode_rows(rows))
    assert got.dtype == np.float64 and got.shape == (200,)
    np.testing.assert_allclose(got, tiny_sklearn_model.reference_probability(rows), atol=1e-12)
    assert 0.05 < got.mean() < 0.95 and got.std() > 0.01
    assert predictor.predict_proba(np.empty((0, len(bundle.spec.order)), np.float32)).shape == (0,)


_CHECK_WITH_LEAN_IMPORTS = """
import sys
from pathlib import Path
from serving.lean_imports import block_training_imports
from serving.model import ModelDirError, check_servable, read_model_dir
bundle = read_model_dir(Path(sys.argv[2]))
block_training_imports(sys.argv[1])
try:
    check_servable(bundle)
except ModelDirError as err:
    print("refused:", err)
else:
    print("servable:", bundle.kind)
"""


@pytest.mark.parametrize("blocked_for", ["xgboost", "sklearn"])
def test_a_kind_whose_library_this_process_cannot_import_is_refused(
    tiny_model: TinyModel, tiny_sklearn_model: TinyModel, blocked_for: str
) -> None:
    # A process blocking imports for one kind stands for the other kind's image.
    other = tiny_sklearn_model if blocked_for == "xgboost" else tiny_model
    done = subprocess.run(
        [sys.executable, "-c", _CHECK_WITH_LEAN_IMPORTS, blocked_for, str(other.directory)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    out = done.stdout.strip()
    if blocked_for == "xgboost":
        assert out.startswith("refused: model kind sklearn (model.pkl in ")
        assert "needs scikit-learn (module sklearn)" in out
        assert "serving/requirements-sklearn.lock" in out
    else:
        assert out.startswith("refused: model kind xgboost (model.ubj in ")
        assert "needs xgboost-cpu (module xgboost)" in out
        assert "serving/requirements.lock" in out


def test_a_corrupt_pickle_is_named(tiny_sklearn_model: TinyModel, tmp_path: Path) -> None:
    directory = _copy(tiny_sklearn_model, tmp_path)
    (directory / "model.pkl").write_bytes(b"not a model")
    with pytest.raises(ModelDirError, match=r"model\.pkl is not a model joblib can load: KeyError"):
        load_predictor(read_model_dir(directory))


def test_a_pickle_that_is_no_classifier_over_the_spec_is_refused(
    tiny_sklearn_model: TinyModel, tmp_path: Path
) -> None:
    import joblib
    from sklearn.linear_model import LogisticRegression

    directory = _copy(tiny_sklearn_model, tmp_path)
    joblib.dump({"weights": [1, 2]}, directory / "model.pkl")
    with pytest.raises(
        ModelDirError, match=r"holds a dict .* expected a fitted binary scikit-learn"
    ):
        load_predictor(read_model_dir(directory))
    narrow = LogisticRegression().fit(np.array([[0.0, 1.0], [1.0, 0.0]]), [0, 1])
    joblib.dump(narrow, directory / "model.pkl")
    with pytest.raises(ModelDirError, match=r"n_features_in_=2.* over the 5 encoded columns"):
        load_predictor(read_model_dir(directory))


def test_a_pickle_from_another_scikit_learn_version_is_refused(
    tiny_sklearn_model: TinyModel, tmp_path: Path
) -> None:
    import sklearn

    directory = _copy(tiny_sklearn_model, tmp_path)
    pickled = (directory / "model.pkl").read_bytes()
    here = sklearn.__version__.encode()
    other = b"0." + here[2:]  # the same length: the pickle stays well-formed
    assert here in pickled and len(other) == len(here)
    (directory / "model.pkl").write_bytes(pickled.replace(here, other))
    with pytest.raises(ModelDirError, match=f"pickled with scikit-learn {other.decode()}, this"):
        SklearnPredictor(directory / "model.pkl", n_features=5)


def test_a_corrupt_model_file_is_named(tiny_model: TinyModel, tmp_path: Path) -> None:
    directory = _copy(tiny_model, tmp_path)
    (directory / "model.ubj").write_bytes(b"not a model")
    with pytest.raises(ModelDirError, match=r"model\.ubj is not a model XGBoost can load"):
        load_predictor(read_model_dir(directory))
