"""The run contract: every name one step writes and another reads, defined once.

MLflow run artifacts and tags, registry aliases and model-version tags, and the output parameters
each step writes to ``--out-dir`` (which the Argo templates in ``pipelines/`` declare). A step
imports these names from here, never from another step.
"""

from __future__ import annotations

# --- MLflow run: artifacts the train step logs, read by evaluate, register, build and drift --
MODEL_IN_RUN = "model"
"""``name`` of the pyfunc model in a training run (``runs:/<run>/model``)."""
NATIVE_ARTIFACT = "native"
"""The pyfunc artifact directory holding the native model file and ``feature_spec.json``."""
NATIVE_IN_MODEL = f"artifacts/{NATIVE_ARTIFACT}"
"""Where that directory sits inside a logged model."""
HOLDOUT_ARTIFACT = "data/holdout.parquet"
SMOKE_ROWS_FILE = "smoke_rows.json"
"""In a bento's model directory: held-out rows and the MLflow model's probabilities for them,
which the built image must answer (``steps.image.smoke``)."""
"""The held-out rows with their row keys."""
TRAIN_KEYS_ARTIFACT = "data/train_keys.parquet"
"""The key of every row the model was trained on (validation rows included)."""
REFERENCE_ARTIFACT = "reference/reference.parquet"
"""A sample of the training rows with the model's predictions: the drift reference."""
RECIPE_ARTIFACT = "recipe.json"
"""What the run trained with, and where each field came from (``steps.ml.recipe``)."""
VALIDATION_CURVE_DIR = "training"
"""The validation-curve PNG of a boosted model."""
EVALUATION_DIR = "evaluation"
"""The evaluation report (metrics JSON, PNGs, HTML) on the challenger's run."""

# --- MLflow run tags ----------------------------------------------------------------------------
MODEL_ID_TAG = "loopline.model_id"
DATA_HASH_TAG = "loopline.data_hash"
GIT_COMMIT_TAG = "loopline.git_commit"
PIPELINE_RUN_TAG = "loopline.pipeline_run"
RECIPE_SOURCE_TAG = "loopline.recipe.source"
HOLDOUT_TAG = "loopline.holdout"
DECISION_TAG = "loopline.gate.decision"
"""``promote`` or ``reject``: register only registers a run whose gate said ``promote``."""
GATE_TAG_PREFIX = "loopline.gate."

# --- Registry: aliases, and the tags of a model version ------------------------------------------
CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous_champion"
VERSION_TAGS = ("run_id", "data_hash", "git_commit", "pipeline_run", "model_kind")
"""Lineage tags register puts on each model version."""
IMAGE_REF_TAG = "image.ref"
"""The version's model image as pushed, ``registry/name:tag@sha256:...`` (set by deploy from the
containerize step's output; the image pod holds no MLflow credentials)."""
DEPLOY_TRACK_TAG = "deploy.track"
"""Model-version tags the deploy step writes: the track (``stable``/``canary``) it went to, ..."""
DEPLOY_ARTIFACT_TAG = "deploy.artifact"
"""... the artifact serving it (image reference with digest, or bento archive URI), ..."""
DEPLOY_BENTO_TAG = "deploy.bento_tag"
"""... the bento tag the served track reports (empty when unknown), ..."""
DEPLOY_WEIGHTS_TAG = "deploy.weights"
"""... the route's split it set (``stable=90,canary=10``), ..."""
DEPLOY_WORKFLOW_TAG = "deploy.workflow"
"""... the workflow that deployed it, ..."""
DEPLOY_TIME_TAG = "deploy.time"
"""... and when (UTC, ISO 8601)."""
CANARY_STATE_TAG = "canary.state"
"""Model-version tags the canary promotion writes: ``in_progress``, ``promoted`` or
``rolled_back``, ..."""
CANARY_DECISION_TAG = "canary.last_decision"
"""... the last check's outcome, weight and action (``pass at 30%: advance``), ..."""
CANARY_REASONS_TAG = "canary.reasons"
"""... the reasons of the outcome (rolled back: why), ..."""
CANARY_TIME_TAG = "canary.time"
"""... when the state was set (UTC, ISO 8601), ..."""
CANARY_REPORT_TAG = "canary.report"
"""... and where the analysis record is (``report_uri``)."""
CANARY_REPORT_DIR = "canary"
"""The artifact directory of the analysis record (JSON, HTML, PNGs) on the version's run."""

# --- Step output parameters (files in --out-dir; Argo reads them with valueFrom.path) -----------
STEP_OUTPUTS: dict[str, tuple[str, ...]] = {
    "data": ("data_uri", "rows"),
    "train": ("run_id", "data_hash", "model_uri"),
    "evaluate": ("decision", "reasons", "report_uri"),
    "register": ("model_version",),
    "build": ("bento_tag", "archive_uri", "model_tag"),
    "containerize": ("image_ref", "image_built"),
    "drift": ("drifted", "reason", "report_uri", "status", "model_version", "drifted_share"),
    "deploy": ("track", "canary_weight", "endpoint"),
    "promote": ("outcome", "final_weight", "reasons", "report_uri"),
}

SETTING_DEFAULTS_ANNOTATION = "loopline.dev/parameter-settings"
"""A workflow annotation: a JSON object naming, for a workflow parameter, the Loopline setting
whose value is its default when the local runner runs it (``{"data-uri": "data.uri"}``): the
YAML keeps the cluster's default, a machine's settings give the local one."""
