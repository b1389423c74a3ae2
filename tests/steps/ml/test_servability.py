"""Servability: the serving locks per model kind, and the served-vs-MLflow score comparison."""

from __future__ import annotations

from importlib.metadata import version

import numpy as np
import pytest

from steps.core.errors import ServabilityError
from steps.ml import servability


def _pins(lock: str) -> dict[str, str]:
    text = (servability.REPO / lock).read_text()
    pins = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert all("==" in pin for pin in pins)
    return {name.lower(): rest.split(" ")[0] for name, _, rest in (p.partition("==") for p in pins)}


def test_the_xgboost_lock_holds_no_training_library() -> None:
    pins = _pins(servability.requirements_lock("xgboost"))
    assert {"bentoml", "xgboost-cpu", "numpy", "pyarrow"} <= pins.keys()
    assert pins["xgboost-cpu"] == version("xgboost-cpu")
    # scipy stays: xgboost/core.py imports scipy.sparse (~0.5 s), never scipy.stats.
    assert not pins.keys() & {"scikit-learn", "pandas", "mlflow", "xgboost", "nvidia-nccl-cu12"}


def test_the_sklearn_lock_holds_the_training_scikit_learn_and_no_xgboost() -> None:
    pins = _pins(servability.requirements_lock("sklearn"))
    assert {"bentoml", "numpy", "pyarrow", "scipy"} <= pins.keys()
    # A pickle loads only with the scikit-learn (and joblib) that wrote it: uv.lock's versions.
    assert (pins["scikit-learn"], pins["joblib"]) == (version("scikit-learn"), version("joblib"))
    assert not pins.keys() & {"xgboost-cpu", "xgboost", "pandas", "mlflow", "nvidia-nccl-cu12"}


def test_equal_scores_pass_and_any_difference_beyond_tolerance_is_named() -> None:
    expected = np.array([0.1, 0.5, 0.9])
    assert servability.compare_scores("xgboost", "model.ubj", expected, expected + 4e-7) == (
        pytest.approx(4e-7)
    )
    off = expected.copy()
    off[1] += 2e-6
    with pytest.raises(
        ServabilityError,
        match=r"model kind sklearn \(model\.pkl\) scores its input example differently when "
        r"served: max abs difference 2e-06 from the MLflow model, expected <= 1e-06",
    ):
        servability.compare_scores("sklearn", "model.pkl", expected, off)
    with pytest.raises(ServabilityError, match="max abs difference nan"):
        servability.compare_scores("sklearn", "model.pkl", expected, np.array([0.1, np.nan, 0.9]))
    with pytest.raises(ServabilityError, match=r"served \(2,\) probabilities .* gives \(3,\)"):
        servability.compare_scores("sklearn", "model.pkl", expected, expected[:2])
    with pytest.raises(ServabilityError, match="at least one row"):
        servability.compare_scores("sklearn", "model.pkl", expected[:0], expected[:0])
