"""How to build the service into a bento: the options for ``bentoml.bentos.build``.

The build step (``steps/build.py``) imports the model directory into the BentoML model store as
``model_tag``, then, in a process whose environment has ``LOOPLINE_SERVING__MODEL_TAG=model_tag``
(building imports the service, which reads its settings at import), calls::

    bentoml.bentos.build(**bento_build_options(model_tag, labels={...}), build_ctx=repo_root)

The bento holds ``serving/*.py`` only and pins the serving dependencies (no scikit-learn, pandas
or MLflow: they stay out of the image, so XGBoost takes its fast import path there without any
guard). The service records the exact model tag in the bento's ``envs``, so the image serves the
model it was built with.
Importing this module imports nothing but the standard library.
"""

from __future__ import annotations

from typing import Any

SERVICE = "serving.service:Loopline"
BENTO_NAME = "loopline"

# Pinned to the versions in uv.lock (tests/serving/test_bento.py checks they agree).
PYTHON_PACKAGES = (
    "bentoml==1.4.39",
    "xgboost-cpu==3.2.0",
    "numpy==2.4.6",
    "pyarrow==25.0.1",
    "pydantic==2.14.3",
    "pydantic-settings==2.16.3",
    "boto3==1.44.5",
    "prometheus-client==0.26.0",
)
INCLUDE = ("serving/*.py",)
EXCLUDE = ("**/__pycache__", "**/*.pyc", "tests/", ".loopline/", ".venv/")


def bento_build_options(
    model_tag: str,
    *,
    labels: dict[str, str] | None = None,
    version: str | None = None,
    lock_packages: bool = True,
) -> dict[str, Any]:
    """Return the keyword arguments of ``bentoml.bentos.build`` for serving ``model_tag``.

    Args:
        model_tag: the exact ``name:version`` of the model in the BentoML store.
        labels: bento labels (e.g. model name, version, alias, git commit).
        version: the bento version; BentoML generates one when None.
        lock_packages: let BentoML resolve and lock the transitive dependencies (needs the
            package index); False keeps the direct pins only.

    Returns:
        The options, ready to pass as ``bentoml.bentos.build(**options, build_ctx=...)``.

    Raises:
        ValueError: if ``model_tag`` is not ``name:version`` with an explicit version.
    """
    name, _, model_version = model_tag.partition(":")
    if not name or not model_version or model_version == "latest":
        raise ValueError(f"model_tag must be name:version with an exact version, got {model_tag!r}")
    return {
        "service": SERVICE,
        "name": BENTO_NAME,
        "labels": dict(labels or {}),
        "version": version,
        "include": list(INCLUDE),
        "exclude": list(EXCLUDE),
        "python": {"packages": list(PYTHON_PACKAGES), "lock_packages": lock_packages},
    }
