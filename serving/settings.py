"""Serving's own typed settings: the only place the serving process reads the environment.

Serving must not import ``steps/*`` (it would drag training libraries onto the request path), so
it has this small pydantic-settings model with the prefix ``LOOPLINE_SERVING__``, e.g.
``LOOPLINE_SERVING__MODEL_TAG=churn:abc123`` or ``LOOPLINE_SERVING__MODEL_DIR=/models/churn``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "LOOPLINE_SERVING__"


class ServingConfigError(Exception):
    """The serving settings are missing or invalid; the message names each setting."""


class ServingSettings(BaseSettings):
    """How the service finds its model, batches requests and logs inferences."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    model_tag: str | None = Field(None, description="BentoML model tag, e.g. churn:abc123")
    model_dir: Path | None = Field(
        None, description="a directory with model.ubj, feature_spec.json, metadata.json"
    )
    max_batch_rows: int = Field(
        1000, ge=1, le=100_000, description="most rows per /predict_batch and per model call"
    )
    batch_max_latency_ms: int = Field(
        40, ge=1, le=60_000, description="queueing beyond this answers 503"
    )
    workers: int = Field(1, ge=1, le=64, description="worker processes of the public service")
    log_dir: str = Field(
        ".loopline/inference-log", description="local directory or s3://bucket/prefix"
    )
    log_flush_rows: int = Field(1000, ge=1, description="write a file once this many rows wait")
    log_flush_interval_s: float = Field(5.0, gt=0, description="write a file at least this often")
    log_queue_rows: int = Field(100_000, ge=1, description="rows buffered before dropping")
    s3_endpoint_url: str | None = Field(None, description="e.g. http://minio:9000")
    max_body_bytes: int = Field(
        1_048_576,
        ge=1024,
        le=1_073_741_824,
        description="largest request body accepted; a larger one is refused (413) unread",
    )
    max_string_chars: int = Field(
        256, ge=1, le=1_000_000, description="longest string a request field may hold"
    )
    access_log: bool = Field(False, description="log every request line (costs throughput)")
    standalone: bool = Field(
        False,
        description="the worker is the whole server (set by serving.launch): it keeps serving "
        "when the process that started it exits",
    )
    trace_predictions: bool = Field(
        False,
        description="OpenTelemetry spans for /predict and /predict_batch too, when BentoML's "
        "tracing is configured (costs ~0.8 ms of CPU per request even unsampled)",
    )
    lean_imports: bool = Field(
        False,
        description="refuse to import what the model's kind does not need (pandas, MLflow, "
        "and scikit-learn or XGBoost) in this process",
    )
    # Faults for canary drills only (see serving.service.FaultInjection): off by default.
    fault_error_ratio: float = Field(
        0.0, ge=0.0, le=1.0, description="drills only: share of prediction requests answered 500"
    )
    fault_delay_ms: float = Field(
        0.0,
        ge=0.0,
        le=10_000.0,
        description="drills only: latency added to every prediction request",
    )

    @field_validator("log_dir")
    @classmethod
    def _log_dir_form(cls, value: str) -> str:
        if "://" in value and not value.startswith("s3://"):
            raise ValueError("expected a local directory or an s3://bucket/prefix URI")
        if value.startswith("s3://") and not value.removeprefix("s3://").split("/")[0]:
            raise ValueError("expected s3://bucket/prefix with a bucket name")
        return value

    @model_validator(mode="after")
    def _one_model_source(self) -> ServingSettings:
        if (self.model_tag is None) == (self.model_dir is None):
            raise ValueError(
                f"set exactly one of {ENV_PREFIX}MODEL_TAG (a BentoML model tag) or "
                f"{ENV_PREFIX}MODEL_DIR (a directory holding model.ubj, feature_spec.json "
                "and metadata.json)"
            )
        return self


def load_serving_settings() -> ServingSettings:
    """Read the serving settings from the environment.

    Returns:
        The validated settings.

    Raises:
        ServingConfigError: naming every bad setting, its environment variable and the problem.
    """
    try:
        return ServingSettings()
    except ValidationError as err:
        lines = ["invalid serving settings:"]
        for problem in err.errors():
            field = "__".join(str(part) for part in problem["loc"]).upper()
            if field:
                given = problem.get("input")
                lines.append(f"  {ENV_PREFIX}{field}: {problem['msg']} (got {given!r})")
            else:
                lines.append(f"  {problem['msg'].removeprefix('Value error, ')}")
        raise ServingConfigError("\n".join(lines)) from err


def server_environment(environ: Mapping[str, str], own: Mapping[str, str]) -> dict[str, str]:
    """The environment of a ``bentoml serve`` of this service, started by another process.

    ``environ`` without its ``LOOPLINE_SERVING__*`` settings (the server's come from ``own``
    only) and without ``PYTHONDONTWRITEBYTECODE`` (a bytecode cache makes the next start
    faster); lean imports on; then ``own``, full variable names, which win.
    """
    env = {key: value for key, value in environ.items() if not key.startswith(ENV_PREFIX)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env[f"{ENV_PREFIX}LEAN_IMPORTS"] = "true"
    return {**env, **own}
