"""Tests for serving/model.py: reading a model directory, refusing what cannot be served."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from serving.model import ModelDirError, check_servable, load_predictor, read_model_dir
from tests.fixtures.serving import METADATA, TinyModel, sample_rows


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


def test_a_sklearn_model_is_refused_with_the_reason(tiny_model: TinyModel, tmp_path: Path) -> None:
    directory = _copy(tiny_model, tmp_path)
    (directory / "model.ubj").rename(directory / "model.pkl")
    bundle = read_model_dir(directory)
    assert bundle.kind == "sklearn"
    with pytest.raises(ModelDirError, match="model kind sklearn is served only by a service image"):
        check_servable(bundle)
    with pytest.raises(ModelDirError, match="model kind sklearn"):
        load_predictor(bundle)


def test_a_corrupt_model_file_is_named(tiny_model: TinyModel, tmp_path: Path) -> None:
    directory = _copy(tiny_model, tmp_path)
    (directory / "model.ubj").write_bytes(b"not a model")
    with pytest.raises(ModelDirError, match=r"model\.ubj is not a model XGBoost can load"):
        load_predictor(read_model_dir(directory))
