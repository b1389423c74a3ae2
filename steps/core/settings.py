"""Loopline's typed settings: the only place that reads the environment.

Layers, later wins: defaults in code, then ``LOOPLINE_*`` environment variables (nested with
``__``, e.g. ``LOOPLINE_GATE__MIN_VALUE=0.8``), then CLI flags passed as overrides to
:func:`load_settings`. With no configuration at all everything lives under one local state
directory (``.loopline/``): a SQLite MLflow tracking store and registry and a local artifact store.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from steps.core.errors import ConfigError
from steps.core.redact import is_secret_name, redact, redact_value

ENV_PREFIX = "LOOPLINE_"
ModelKind = Literal["xgboost", "sklearn-logreg", "sklearn-hgb"]
HoldoutMode = Literal["auto", "key", "time"]
ClassWeight = Literal["none", "balanced"]


class _RedactedRepr:
    """Settings render without credentials: ``repr`` and ``str`` mask a URI's password, a signed
    query and any secret-looking field (see :mod:`steps.core.redact`); the values themselves and
    ``model_dump`` stay whole, as the steps pass them on to MLflow, boto3 and child settings."""

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():  # type: ignore[misc]
            yield name, value if name is None else redact_value(name, value)


class _Section(_RedactedRepr, BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class S3Settings(_Section):
    """How to reach S3 or an S3-compatible store (MinIO, moto, Ceph)."""

    endpoint_url: str | None = Field(None, description="e.g. http://minio:9000; unset for AWS")
    region: str = "us-east-1"


class DataSettings(_Section):
    """Where the training data is, which columns matter and which rows are held out."""

    uri: str | None = Field(None, description="CSV or Parquet path or s3:// URI; unset: demo data")
    target: str = "churned"
    features: tuple[str, ...] | None = Field(None, description="unset: every non-id column")
    id_columns: tuple[str, ...] = ("customer_id", "event_timestamp")
    holdout: HoldoutMode = Field(
        "auto", description="auto: by time when time_column is in the data, else by key"
    )
    key_columns: tuple[str, ...] | None = Field(
        None, description="row key hashed for the split; unset: the id columns present, else all"
    )
    time_column: str = Field("event_timestamp", description="out-of-time split: newest rows")


class TrainSettings(_Section):
    """The estimator and its hyper-parameters."""

    model_kind: ModelKind = "xgboost"
    test_size: float = Field(0.2, gt=0.0, lt=1.0, description="share of rows held out")
    n_estimators: int = Field(1000, ge=1, le=10_000, description="most boosting rounds")
    max_depth: int = Field(4, ge=1, le=32)
    learning_rate: float = Field(0.05, gt=0.0, le=1.0)
    validation_size: float = Field(
        0.2, gt=0.0, lt=1.0, description="share of the training split for early stopping"
    )
    early_stopping_rounds: int = Field(
        50, ge=0, le=10_000, description="rounds without improvement; 0: no early stopping"
    )
    class_weight: ClassWeight = Field(
        "none", description="balanced: weight positives by negatives/positives"
    )
    reference_rows: int = Field(5_000, ge=100, description="training rows kept as drift reference")


class GateSettings(_Section):
    """The quality gate a challenger must pass."""

    metric: Literal["roc_auc", "pr_auc"] = "roc_auc"
    min_value: float = Field(0.70, ge=0.0, le=1.0, description="absolute minimum of the metric")
    max_regression: float = Field(0.01, ge=0.0, description="largest drop allowed vs champion")
    gross_numeric_shift: float = Field(
        1.0, gt=0.0, description="Wasserstein distance in reference std-devs: a unit change"
    )
    gross_categorical_shift: float = Field(
        0.5, gt=0.0, le=1.0, description="Jensen-Shannon distance: a recoded category column"
    )
    block_on_gross_shift: bool = Field(
        True, description="a gross change of a feature vs the champion's data rejects"
    )


# Evidently's stat tests by the names it registers, per column type it accepts.
NumericDriftMethod = Literal[
    "wasserstein", "ks", "psi", "jensenshannon", "kl_div", "hellinger", "anderson",
    "cramer_von_mises", "ed", "es", "mannw", "empirical_mmd", "t_test",
]  # fmt: skip
CategoricalDriftMethod = Literal[
    "jensenshannon", "chisquare", "z", "psi", "kl_div", "hellinger", "TVD", "g_test",
    "fisher_exact",
]  # fmt: skip
_DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


class DriftSettings(_Section):
    """The drift monitor: which logged rows to compare with the champion's reference, and when
    to call it drift (see steps/drift.py). Methods unset: Evidently's defaults."""

    log_uri: str | None = Field(None, description="dir or s3://bucket/prefix; unset: state")
    since: str = Field("24h", pattern=r"^(all|[1-9][0-9]*[smhdw])$", description="90m, 24h, all")
    last_rows: int | None = Field(None, ge=1, description="at most the newest N rows")
    min_rows: int = Field(500, ge=1, description="fewer rows in the window: insufficient data")
    sample_cap: int = Field(50_000, ge=100, description="rows sampled from the window")
    drift_share: float = Field(0.3, gt=0.0, le=1.0, description="share of drifted features")
    critical_features: tuple[str, ...] = Field((), description="any drifting one is drift")
    numeric_method: NumericDriftMethod | None = None
    categorical_method: CategoricalDriftMethod | None = None
    numeric_threshold: float | None = Field(None, gt=0.0)
    categorical_threshold: float | None = Field(None, gt=0.0)
    column_thresholds: dict[str, float] = Field(default_factory=dict, description="per column")

    @field_validator("log_uri")
    @classmethod
    def _log_uri_form(cls, value: str | None) -> str | None:
        if value is not None and "://" in value and not value.startswith(("s3://", "file://")):
            raise ValueError("expected a local directory, file:// or s3://bucket/prefix")
        if value is not None and value.startswith("s3://") and not value[5:].split("/")[0]:
            raise ValueError("expected s3://bucket/prefix with a bucket name")
        return value

    @property
    def since_delta(self) -> timedelta | None:
        """The time window as a duration; None for ``all``."""
        if self.since == "all":
            return None
        return timedelta(seconds=int(self.since[:-1]) * _DURATION_SECONDS[self.since[-1]])


Platform = Literal["local", "kubernetes"]


class DeploySettings(_Section):
    """Where and how a version is deployed as the canary (``steps/deploy.py``)."""

    traffic_steps: tuple[int, ...] = Field(
        (10, 30, 50, 100), description="canary traffic percentages, in order; the first is set"
    )
    rollout_timeout_s: float = Field(600.0, gt=0, description="deadline for a ready rollout")
    namespace: str = Field("loopline-serving", description="Kubernetes namespace of the tracks")
    route: str = Field("loopline", description="the HTTPRoute splitting traffic")

    @field_validator("traffic_steps")
    @classmethod
    def _increasing_to_100(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or list(value) != sorted(set(value)) or value[-1] != 100 or value[0] <= 0:
            raise ValueError(
                "expected increasing percentages above 0 ending at 100, e.g. 10,30,50,100"
            )
        return value


class CanarySettings(_Section):
    """The canary promotion's analysis policy (``steps/canary/``, ``loopline canary``).

    Defaults mirror the serving SLO of ``steps/platform/slo.py``. Every field can also come from
    a YAML policy file (``--policy FILE``, or ``policy_file``), whose keys are these names.
    """

    interval_s: float | None = Field(
        None, gt=0, le=86_400, description="analysis interval; unset: 300 (kubernetes), 12 (local)"
    )
    max_error_ratio: float = Field(0.01, ge=0.0, le=1.0, description="canary 5xx / all requests")
    max_p99_ms: float = Field(50.0, gt=0.0, description="canary p99 latency")
    p99_ratio: float = Field(1.2, ge=1.0, description="canary p99 <= stable p99 x this + slack")
    p99_slack_ms: float = Field(5.0, ge=0.0, description="added to stable's p99 x p99_ratio")
    error_ratio_slack: float = Field(
        0.005, ge=0.0, le=1.0, description="canary error ratio <= stable's + this (0.005: 0.5 pt)"
    )
    min_requests: int | None = Field(
        None,
        ge=1,
        description="canary requests per check, fewer: inconclusive; unset: 200 (kubernetes), "
        "60 (local)",
    )
    max_psi: float = Field(
        0.2, gt=0.0, description="PSI of canary vs stable predicted probabilities"
    )
    alpha: float = Field(
        0.05,
        gt=0.0,
        lt=1.0,
        description="chance over a whole promotion of rolling back, by chance, a canary no worse "
        "than stable (each test runs at alpha / the tests the promotion can run)",
    )
    failure_limit: int = Field(0, ge=0, le=100, description="failed checks tolerated")
    max_inconclusive: int = Field(
        3, ge=0, le=1000, description="inconclusive checks held at one step before rollback"
    )
    error_retries: int = Field(
        3, ge=0, le=100, description="query errors retried (with backoff) before rollback"
    )
    error_backoff_s: float = Field(1.0, gt=0.0, le=600.0, description="first retry wait; doubles")
    prometheus_url: str | None = Field(
        None, description="Prometheus' HTTP API; unset: the local stack's (local platform)"
    )
    lock_ttl_s: float = Field(
        900.0, gt=0.0, description="a promotion lock not renewed for this long is stale"
    )

    @field_validator("prometheus_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL of Prometheus")
        return value

    def interval_for(self, platform: str) -> float:
        """The analysis interval in seconds on ``platform`` (the field, or its default)."""
        if self.interval_s is not None:
            return self.interval_s
        return 300.0 if platform == "kubernetes" else LOCAL_INTERVAL_S

    def min_requests_for(self, platform: str) -> int:
        """The fewest canary requests a check judges on ``platform`` (the field, or its
        default: the local stand-in's traffic is smaller)."""
        if self.min_requests is not None:
            return self.min_requests
        return 200 if platform == "kubernetes" else 60


LOCAL_INTERVAL_S = 12.0
"""The local stand-in's analysis interval: Prometheus scrapes every second there."""


class StackSettings(_Section):
    """The local serving stand-in (``loopline stack``): ports and the traffic it generates."""

    host: str = "127.0.0.1"
    router_port: int = Field(8080, ge=1, le=65535, description="HAProxy: the weighted route")
    router_metrics_port: int = Field(8404, ge=1, le=65535, description="HAProxy exporter")
    prometheus_port: int = Field(9090, ge=1, le=65535)
    stable_port: int = Field(3001, ge=1, le=65535, description="bentoml serve, stable track")
    canary_port: int = Field(3002, ge=1, le=65535, description="bentoml serve, canary track")
    traffic_rps: float = Field(100.0, ge=0.0, le=2000.0, description="Locust rate; 0: no traffic")
    start_timeout_s: float = Field(120.0, gt=0, description="deadline for a part to be ready")
    canary_fault_error_ratio: float = Field(
        0.0, ge=0.0, le=1.0, description="drills: share of canary requests answered 500"
    )
    canary_fault_delay_ms: float = Field(
        0.0, ge=0.0, le=10_000.0, description="drills: latency added to every canary request"
    )


class ImageSettings(_Section):
    """The model image: where it is pushed and what it is built from (``steps.image``).

    Registry credentials are never a setting: the builder reads a docker ``config.json`` from
    the environment variable ``DOCKER_AUTH_CONFIG`` (on a cluster, the ``loopline-registry``
    Secret) and hands it to skopeo in a private file.
    """

    registry: str = Field(
        "127.0.0.1:5050/loopline",
        pattern=r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[a-z0-9._-]+)*$",
        description="host[:port]/path the image is pushed to; 127.0.0.1: the project's own",
    )
    tls_verify: bool | None = Field(
        None, description="unset: plain HTTP for 127.0.0.1 and localhost, TLS verified otherwise"
    )
    platforms: str = Field("linux/arm64", description="e.g. linux/amd64,linux/arm64")
    debian_mirror: str = Field(
        "http://deb.debian.org/debian", description="where the base root's packages come from"
    )
    smoke_timeout_s: float = Field(
        300.0, gt=0, le=3600, description="deadline for the image to answer /readyz when smoked"
    )
    cache_dir: Path | None = Field(
        None, description="base and site layers kept between builds; unset: <state_dir>/cache"
    )

    @property
    def registry_host(self) -> str:
        """The registry's ``host[:port]``."""
        return self.registry.split("/", 1)[0]

    @property
    def is_local(self) -> bool:
        """True when the registry is on this machine's loopback (the project starts it)."""
        return self.registry_host.split(":")[0] in ("127.0.0.1", "localhost")

    @property
    def verify_tls(self) -> bool:
        """Whether pushes verify TLS: the field, or off only for a loopback registry."""
        return self.tls_verify if self.tls_verify is not None else not self.is_local


class Settings(_RedactedRepr, BaseSettings):
    """Every setting of a Loopline run; see the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    state_dir: Path = Field(Path(".loopline"), description="local state: MLflow db, artifacts")
    tracking_uri: str | None = Field(None, description="unset: sqlite under state_dir")
    artifact_store: str | None = Field(None, description="file:// or s3:// root; unset: local")
    model_name: str = Field("churn", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    experiment: str = "loopline"
    seed: int = Field(42, ge=0, le=2**32 - 1)
    git_commit: str | None = Field(None, description="source commit; unset: ask git")
    bentoml_home: Path | None = Field(None, description="BentoML store; unset: under state_dir")
    s3: S3Settings = S3Settings()
    data: DataSettings = DataSettings()
    train: TrainSettings = TrainSettings()
    gate: GateSettings = GateSettings()
    drift: DriftSettings = DriftSettings()
    platform: Platform = Field("local", description="where deploy runs: local stack or kubernetes")
    deploy: DeploySettings = DeploySettings()
    canary: CanarySettings = CanarySettings()
    stack: StackSettings = StackSettings()
    image: ImageSettings = ImageSettings()

    @field_validator("tracking_uri")
    @classmethod
    def _tracking_scheme(cls, value: str | None) -> str | None:
        allowed = ("sqlite:///", "http://", "https://", "file://", "databricks")
        if value is not None and not value.startswith(allowed):
            raise ValueError(f"expected a URI starting with one of {', '.join(allowed)}")
        return value

    @field_validator("artifact_store")
    @classmethod
    def _artifact_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("file:///", "s3://")):
            raise ValueError(
                "expected a file:// or s3:// URI: file:///absolute/dir or s3://bucket/prefix"
            )
        if value is not None and value.startswith("s3://") and not value[5:].split("/")[0]:
            raise ValueError("expected s3://bucket/prefix with a bucket name")
        return value

    @property
    def state_path(self) -> Path:
        """The state directory as an absolute path (not created here)."""
        return self.state_dir.expanduser().resolve()

    @property
    def resolved_tracking_uri(self) -> str:
        """The MLflow tracking (and registry) URI: configured, or SQLite under the state dir."""
        return self.tracking_uri or f"sqlite:///{self.state_path / 'mlflow.db'}"

    @property
    def resolved_artifact_store(self) -> str:
        """The artifact store root URI, without a trailing slash."""
        store = self.artifact_store or (self.state_path / "artifacts").as_uri()
        return store.rstrip("/")

    @property
    def image_cache(self) -> Path:
        """Where the image's base and site layers are cached between builds."""
        return (self.image.cache_dir or self.state_path / "cache" / "image").expanduser().resolve()

    @property
    def resolved_bentoml_home(self) -> Path:
        """Where bentos and BentoML models are stored (BENTOML_HOME for the build step)."""
        return (self.bentoml_home or self.state_path / "bentoml").expanduser().resolve()

    @property
    def tracking_is_local(self) -> bool:
        """True when MLflow runs embedded (SQLite or file store) rather than as a server."""
        return not self.resolved_tracking_uri.startswith(("http://", "https://", "databricks"))


def env_name(loc: tuple[int | str, ...]) -> str:
    """Return the environment variable that sets the field at pydantic location ``loc``."""
    return ENV_PREFIX + "__".join(str(part) for part in loc if not isinstance(part, int)).upper()


OTHER_VARIABLES = frozenset({"LOOPLINE_SCHEMAS_DIR"})
"""``LOOPLINE_*`` variables read outside the settings (``scripts/manifest_schemas.py``)."""


@functools.cache
def setting_variables() -> frozenset[str]:
    """Every ``LOOPLINE_*`` environment variable that means something: each field of
    :class:`Settings` (``LOOPLINE_SECTION__FIELD`` for a section's), of the service's
    ``ServingSettings`` (``LOOPLINE_SERVING__FIELD``) and :data:`OTHER_VARIABLES`."""
    from serving.settings import ENV_PREFIX as SERVING_PREFIX
    from serving.settings import ServingSettings

    names = set(OTHER_VARIABLES)
    for name, field in Settings.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, _Section):
            names |= {f"{ENV_PREFIX}{name}__{sub}".upper() for sub in section.model_fields}
        else:
            names.add(f"{ENV_PREFIX}{name}".upper())
    names |= {f"{SERVING_PREFIX}{sub}".upper() for sub in ServingSettings.model_fields}
    return frozenset(names)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One line per ``LOOPLINE_*`` variable of ``environ`` that is no setting, naming the
    closest one (a single ``_`` where a section needs ``__`` is the usual slip)."""
    known = setting_variables()
    lines = []
    for name in sorted(n for n in environ if n.startswith(ENV_PREFIX) and n not in known):
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        lines.append(f"  {name}: not a Loopline setting (value not shown){hint}")
    return lines


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from defaults, the environment and ``overrides`` (CLI flags).

    Overrides are nested dicts or values keyed like the fields; ``None`` at any depth means
    "not given" and keeps the lower layer's value.

    Raises:
        ConfigError: naming every bad setting, its environment variable and expected form, and
            every ``LOOPLINE_*`` variable that is no setting (:func:`unknown_variables`).
    """
    unknown = unknown_variables(os.environ)
    if unknown:
        raise ConfigError(
            "unknown settings in the environment (a misspelled one would be ignored):\n"
            + "\n".join(unknown)
            + "\nsettings of a section take a double underscore: LOOPLINE_GATE__MIN_VALUE"
        )
    given = {key: value for key, value in _without_empty(overrides).items() if value is not None}
    base = _from_environment()
    try:
        if not given:
            return base
        merged = _deep_merge(base.model_dump(), given)
        return Settings.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err)) from err


def _from_environment() -> Settings:
    """The settings of the environment alone.

    Raises:
        ConfigError: naming the variables of a value that does not parse or validate.
    """
    try:
        return Settings()
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err)) from err
    except SettingsError as err:
        field = re.search(r'field "([a-z_]+)"', str(err))
        prefix = f"{ENV_PREFIX}{field.group(1).upper() if field else ''}"
        named = sorted(name for name in os.environ if name.startswith(prefix)) or [prefix + "*"]
        raise ConfigError(
            f"{', '.join(named)}: cannot parse the value; a list setting takes JSON, e.g. "
            f'{ENV_PREFIX}DATA__ID_COLUMNS=\'["customer_id", "event_timestamp"]\''
        ) from err


def explicit_fields(**overrides: Any) -> frozenset[str]:
    """Return the dotted names (``train.max_depth``) of the settings given explicitly: by a
    ``LOOPLINE_*`` environment variable or by a non-empty override (CLI flag).

    Everything else holds a default, which a recipe inherited from the champion may replace.

    Raises:
        ConfigError: as :func:`load_settings`, when the environment holds a bad value.
    """
    from_env = _from_environment()
    return frozenset(_set_paths(from_env, "")) | frozenset(_given_paths(overrides, ""))


def _set_paths(model: BaseModel, prefix: str) -> list[str]:
    paths = []
    for name in model.model_fields_set:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            paths += _set_paths(value, f"{prefix}{name}.")
        else:
            paths.append(prefix + name)
    return paths


def _given_paths(overrides: dict[str, Any], prefix: str) -> list[str]:
    paths = []
    for name, value in overrides.items():
        if isinstance(value, dict):
            paths += _given_paths(value, f"{prefix}{name}.")
        elif value is not None and value != "":
            paths.append(prefix + name)
    return paths


def describe_validation_error(err: ValidationError) -> str:
    """Render a pydantic error as one line per setting: name, expected form, value given.

    The value given is never shown for a secret-looking setting (``..._PASSWORD``,
    ``..._TOKEN``, see :func:`steps.core.redact.is_secret_name`), and is shown without
    credentials otherwise (a URI's password, a signed query).
    """
    lines = ["invalid settings:"]
    for problem in err.errors():
        name = env_name(problem["loc"])
        if any(is_secret_name(str(part)) for part in problem["loc"]):
            given = "the value is not shown: the setting holds a secret"
        else:
            given = f"got {redact(repr(_without_secrets(problem.get('input'))))}"
        lines.append(f"  {name}: {problem['msg']} ({given})")
    return "\n".join(lines)


def _without_secrets(value: Any) -> Any:
    """``value`` with every secret-looking mapping key's value masked, at any depth."""
    if isinstance(value, dict):
        return {key: redact_value(str(key), _without_secrets(item)) for key, item in value.items()}
    return value


def _without_empty(overrides: dict[str, Any]) -> dict[str, Any]:
    """Drop empty-string overrides at any depth: an empty workflow parameter means "not given"."""
    return {
        key: _without_empty(value) if isinstance(value, dict) else value
        for key, value in overrides.items()
        if value != ""
    }


def _deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
