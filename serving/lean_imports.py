"""Keep what a model kind does not need out of the serving process.

``xgboost.compat`` imports scikit-learn (and with it scipy.stats and pandas) whenever it is
installed, which costs seconds of cold start and ~150 MB of memory. A bento image installs only
its kind's library (``serving/requirements*.lock``); the development virtualenv has everything.
:func:`block_training_imports` installs an import hook that makes the packages the served kind
does not need look absent, so the process behaves as in its image: XGBoost takes its
no-scikit-learn path, a scikit-learn model loads without XGBoost, and any other attempt to import
them fails loudly instead of slowing every worker down. Neither kind needs pandas or MLflow
(scikit-learn scores a NumPy matrix without importing pandas).

It changes the whole process, so only the serving process calls it (when the setting
``LOOPLINE_SERVING__LEAN_IMPORTS`` is on), after reading the model directory's kind and before
loading the model; never a test or training process.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

from serving.model import ModelKind

BLOCKED_PACKAGES: dict[ModelKind, tuple[str, ...]] = {
    "xgboost": ("sklearn", "pandas", "mlflow"),
    "sklearn": ("xgboost", "pandas", "mlflow"),
}
"""Top-level packages a serving process of each model kind refuses to import."""


class _TrainingImportBlocker(importlib.abc.MetaPathFinder):
    """A finder that answers ModuleNotFoundError for the blocked top-level packages."""

    def __init__(self, kind: ModelKind) -> None:
        self.kind = kind

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        top = fullname.partition(".")[0]
        if top in BLOCKED_PACKAGES[self.kind]:
            raise ModuleNotFoundError(
                f"{fullname} is not importable in the serving process of a {self.kind} model "
                "(LOOPLINE_SERVING__LEAN_IMPORTS is on)",
                name=fullname,
            )
        return None


def block_training_imports(kind: ModelKind) -> None:
    """Make the packages a ``kind`` model does not need unimportable (idempotent per kind).

    Raises:
        RuntimeError: if one of them is already imported, since blocking would come too late,
            or if this process already blocks for another kind.
    """
    installed = [f for f in sys.meta_path if isinstance(f, _TrainingImportBlocker)]
    if installed:
        if installed[0].kind != kind:
            raise RuntimeError(
                f"this process already blocks imports for a {installed[0].kind} model; "
                f"it cannot serve a {kind} model"
            )
        return
    already = sorted(name for name in BLOCKED_PACKAGES[kind] if name in sys.modules)
    if already:
        raise RuntimeError(
            f"{', '.join(already)} already imported: LOOPLINE_SERVING__LEAN_IMPORTS must be set "
            "before anything imports a model library or training code"
        )
    sys.meta_path.insert(0, _TrainingImportBlocker(kind))
