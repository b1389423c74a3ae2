"""The MLflow pyfunc wrapper: ``models:/NAME@alias`` predicts probabilities from raw rows.

The logged model keeps the native files (``model.ubj`` or ``model.pkl`` and
``feature_spec.json``) in one pyfunc artifact directory, ``artifacts/native/``, so the build
step can take them out unchanged for serving, while any MLflow tool can score raw frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel

from serving.features import FeatureSpec
from serving.model import load_model_file, model_kind
from steps.core import names


class LooplineModel(PythonModel):
    """Raw feature frame in, P(positive) out."""

    def load_context(self, context: Any) -> None:
        """Load the feature spec and the native model from the logged artifacts."""
        native = Path(context.artifacts[names.NATIVE_ARTIFACT])
        self._spec = FeatureSpec.load(native)
        self._model = load_model_file(native, model_kind(native), self._spec)

    # A DataFrame hint: MLflow neither infers a schema from it nor warns (the signature is
    # logged explicitly from the training frame).
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        """Return the positive-class probability for each row of ``model_input``."""
        columns = {name: model_input[name].to_numpy() for name in self._spec.order}
        return self._model.predict_proba(self._spec.encode(columns))
