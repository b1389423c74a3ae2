"""Keep training libraries out of the serving process.

``xgboost.compat`` imports scikit-learn (and with it scipy.stats and pandas) whenever it is
installed, which costs seconds of cold start and ~150 MB of memory. A bento image does not
install them; the development virtualenv does. :func:`block_training_imports` installs an import
hook that makes those packages look absent, so XGBoost takes its no-scikit-learn path and any
other attempt to import them fails loudly instead of slowing every worker down.

It changes the whole process, so only the serving process calls it (when the setting
``LOOPLINE_SERVING__LEAN_IMPORTS`` is on), never a test or training process.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

BLOCKED_PACKAGES = ("sklearn", "pandas", "mlflow")


class _TrainingImportBlocker(importlib.abc.MetaPathFinder):
    """A finder that answers ModuleNotFoundError for the blocked top-level packages."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        top = fullname.partition(".")[0]
        if top in BLOCKED_PACKAGES:
            raise ModuleNotFoundError(
                f"{fullname} is not importable in the serving process "
                "(LOOPLINE_SERVING__LEAN_IMPORTS is on)",
                name=fullname,
            )
        return None


def block_training_imports() -> None:
    """Make scikit-learn, pandas and MLflow unimportable in this process (idempotent).

    Raises:
        RuntimeError: if one of them is already imported, since blocking would come too late.
    """
    if any(isinstance(finder, _TrainingImportBlocker) for finder in sys.meta_path):
        return
    already = sorted(name for name in BLOCKED_PACKAGES if name in sys.modules)
    if already:
        raise RuntimeError(
            f"{', '.join(already)} already imported: LOOPLINE_SERVING__LEAN_IMPORTS must be set "
            "before anything imports xgboost or training code"
        )
    sys.meta_path.insert(0, _TrainingImportBlocker())
