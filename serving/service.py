"""Loopline's BentoML service: ``bentoml serve serving.service:Loopline``.

Endpoints: ``/predict`` (one row), ``/predict_batch`` (a JSON list of rows), ``/metadata``, plus
BentoML's ``/livez``, ``/readyz`` and ``/metrics``. A request row is validated against a pydantic
model generated from the model's feature spec (so the API, its OpenAPI document and the training
features cannot drift apart), encoded, scored and logged for drift monitoring.

Concurrent requests of a worker are scored together by :class:`~serving.batcher.MicroBatcher`
inside the worker. BentoML's own adaptive batching needs a second service reached through
``bentoml.depends``, i.e. a second HTTP hop and process per request: measured here (2 cores,
wrk, 32 connections) it served ~220 req/s with 503s, in-process batching ~900-1000 req/s.

Metrics on ``/metrics``, besides BentoML's own ``bentoml_service_request_total`` (by endpoint and
``http_response_code``) and ``bentoml_service_request_duration_seconds`` histogram:

- ``loopline_batch_requests``: histogram of the requests scored together in one model call;
- ``loopline_inference_log_dropped_rows``: counter of scored rows the inference log could not
  keep, by ``reason``;
- ``loopline_prediction_probability``: histogram (buckets 0.1, 0.2, ..., 1.0) of the predicted
  probability of every row answered by ``/predict`` and ``/predict_batch``, what the canary judge
  compares between the tracks.

None carries a model label: a server serves one model version, and the scrape adds ``track``,
``model_name`` and ``model_version`` target labels (the cluster's PodMonitor, the local stack's
Prometheus), so per-version series come from the scrape.

The model and the knobs come from :mod:`serving.settings` (``LOOPLINE_SERVING__*``). Building
the request schema needs the feature spec, so importing this module reads the settings and the
model directory; it starts nothing. With ``LOOPLINE_SERVING__LEAN_IMPORTS`` on, what the
model's kind does not need (see :mod:`serving.lean_imports`) is blocked before the model loads.
"""

import asyncio
import functools
import gc
import logging
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, cast

import bentoml
import numpy as np
import prometheus_client
from bentoml.exceptions import ServiceUnavailable
from pydantic import Field, TypeAdapter, ValidationError

from serving.batcher import MicroBatcher, Overloaded
from serving.errors import problems_from_validation
from serving.guard import Refused, RequestGuard, Unavailable, quiet_client_errors
from serving.inference_log import InferenceLog, LoggedBatch, LogTarget
from serving.lean_imports import block_training_imports
from serving.model import (
    ModelBundle,
    ModelDirError,
    check_servable,
    load_predictor,
    read_model_dir,
)
from serving.schema import Prediction, ServiceMetadata, row_model, row_values
from serving.settings import ENV_PREFIX, ServingSettings, load_serving_settings

logger = logging.getLogger("loopline.service")

# Prometheus buckets that resolve a 50 ms latency SLO.
DURATION_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
LABEL_THRESHOLD = 0.5
PROBABILITY_BUCKETS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]

SETTINGS: ServingSettings = load_serving_settings()


def _model_ref(settings: ServingSettings) -> bentoml.models.BentoModel | None:
    return None if settings.model_tag is None else bentoml.models.BentoModel(settings.model_tag)


def _model_dir(settings: ServingSettings, ref: bentoml.models.BentoModel | None) -> Path:
    if ref is None:
        assert settings.model_dir is not None  # the settings require one of the two
        return settings.model_dir
    stored = ref.stored  # the local store only: never reach out to BentoCloud
    if stored is None:
        raise ModelDirError(
            f"model {ref.tag} is not in the BentoML model store "
            "(BENTOML_HOME); import it first, or set LOOPLINE_SERVING__MODEL_DIR"
        )
    return Path(stored.path)


@dataclass(frozen=True)
class FaultInjection:
    """Faults added to every prediction request, for canary drills only (off by default).

    The canary drill (``make canary-drill``) needs a canary that really answers 5xx and really is
    slower, measured by the same server metrics the canary judge reads on a cluster. So an
    injected error is raised where a real failure would be, answered 500 and counted by
    ``bentoml_service_request_total{http_response_code="500"}`` and the duration histogram
    exactly as one, and the delay is spent inside the request it slows.
    """

    error_ratio: float
    delay_ms: float

    @classmethod
    def from_settings(cls, settings: ServingSettings) -> "FaultInjection | None":
        """The faults ``settings`` ask for, or None when there are none (the normal case)."""
        if settings.fault_error_ratio == 0 and settings.fault_delay_ms == 0:
            return None
        return cls(settings.fault_error_ratio, settings.fault_delay_ms)

    def describe(self) -> str:
        """The settings that set these faults, as environment variables."""
        return (
            f"{ENV_PREFIX}FAULT_ERROR_RATIO={self.error_ratio!r}, "
            f"{ENV_PREFIX}FAULT_DELAY_MS={self.delay_ms!r}"
        )

    async def inject(self) -> None:
        """Wait the delay without blocking the event loop, then maybe fail.

        Raises:
            InjectedFault: with probability ``error_ratio`` (an HTTP 500).
        """
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        # The operating system's generator: no library seeding the random module's shared one
        # can make the draws repeat across workers or restarts.
        if _SYSTEM_RANDOM.random() < self.error_ratio:
            raise InjectedFault(
                f"injected fault ({ENV_PREFIX}FAULT_ERROR_RATIO={self.error_ratio!r})"
            )


class InjectedFault(RuntimeError):
    """A server error drawn by :class:`FaultInjection`."""


_SYSTEM_RANDOM = random.SystemRandom()
FAULTS = FaultInjection.from_settings(SETTINGS)
MODEL_REF = _model_ref(SETTINGS)
# The directory names the model kind without importing its library; the imports to block
# depend on that kind, so they are blocked after reading it and before anything loads the model.
_MODEL_DIR = read_model_dir(_model_dir(SETTINGS, MODEL_REF))
if SETTINGS.lean_imports:
    block_training_imports(_MODEL_DIR.kind)
BUNDLE: ModelBundle = check_servable(_MODEL_DIR)
Row = row_model(BUNDLE.spec, SETTINGS.max_string_chars)
RowBatch = Annotated[list[Row], Field(min_length=1, max_length=SETTINGS.max_batch_rows)]  # type: ignore[valid-type]
PREDICTION_ROUTES = ("/predict", "/predict_batch")
_ROW = TypeAdapter(Row)
_ROW_BATCH: TypeAdapter[list[Any]] = TypeAdapter(RowBatch)
_PREDICTIONS: TypeAdapter[list[Prediction]] = TypeAdapter(list[Prediction])


@bentoml.service(
    name="loopline",
    workers=SETTINGS.workers,
    traffic={"timeout": 10},
    metrics={"enabled": True, "duration": {"buckets": DURATION_BUCKETS_S}},
    logging={"access": {"enabled": SETTINGS.access_log}},
    # OpenTelemetry's middleware costs ~0.8 ms of CPU per request even when nothing is sampled
    # (BentoML's default sample rate is 0): the prediction routes skip it unless asked for.
    tracing={"excluded_urls": [] if SETTINGS.trace_predictions else list(PREDICTION_ROUTES)},
)
class Loopline:
    """The public API: validate, encode, score through the batcher, log."""

    if MODEL_REF is not None:
        model = MODEL_REF

    def __init__(self) -> None:
        """Load the model, warm it up and start the inference log's writer thread."""
        if not SETTINGS.standalone:
            _stop_when_orphaned()
        predictor = load_predictor(BUNDLE)
        predictor.predict_proba(np.full((1, len(BUNDLE.spec.order)), np.nan, np.float32))
        self._batcher = MicroBatcher(
            predictor.predict_proba,
            max_rows=SETTINGS.max_batch_rows,
            max_wait_ms=SETTINGS.batch_max_latency_ms,
            on_batch=_observe_batch,
        )
        self._log = InferenceLog(
            LogTarget.parse(SETTINGS.log_dir, SETTINGS.s3_endpoint_url),
            BUNDLE.spec,
            BUNDLE.metadata.model_name,
            BUNDLE.metadata.model_version,
            flush_rows=SETTINGS.log_flush_rows,
            flush_interval_s=SETTINGS.log_flush_interval_s,
            capacity_rows=SETTINGS.log_queue_rows,
            on_drop=_count_dropped_rows,
        )
        self._log.start()
        if FAULTS is not None:
            logger.warning(
                "drill faults on every prediction request of this worker (%s): unset them "
                "outside a canary drill",
                FAULTS.describe(),
            )
        quiet_client_errors()
        # Everything allocated so far (imports, schemas, the model) lives as long as the worker.
        # Freezing it spares each full garbage collection from walking it: p99 at one client
        # went from ~80 ms to ~7 ms here.
        gc.collect()
        gc.freeze()

    # Over HTTP the guard answers these two routes through answer_predict and
    # answer_predict_batch (same validation, scoring and answers, without BentoML's per-request
    # layer); the declarations stay the service's contract: OpenAPI, clients, in-process calls.
    @bentoml.api(route="/predict")  # type: ignore[untyped-decorator]  # _bentoml_sdk has no py.typed
    async def predict(self, row: Row, /) -> Prediction:  # type: ignore[valid-type]
        """Score one row."""
        (prediction,) = await self._score([row_values(row)], ServiceUnavailable)
        return prediction

    @bentoml.api(route="/predict_batch")  # type: ignore[untyped-decorator]  # _bentoml_sdk has no py.typed
    async def predict_batch(self, rows: RowBatch, /) -> list[Prediction]:
        """Score a non-empty list of rows (at most LOOPLINE_SERVING__MAX_BATCH_ROWS)."""
        return await self._score([row_values(row) for row in rows], ServiceUnavailable)

    async def answer_predict(self, body: Any) -> bytes:
        """The JSON answer of ``/predict`` to a parsed body.

        Raises:
            Refused: a 400 naming the invalid fields.
            Unavailable: when the batcher is overloaded.
        """
        try:
            row = _ROW.validate_python({} if body is None else body)
        except ValidationError as err:
            raise _refused(err) from None
        (prediction,) = await self._score([row_values(row)], Unavailable)
        return prediction.__pydantic_serializer__.to_json(prediction)

    async def answer_predict_batch(self, body: Any) -> bytes:
        """The JSON answer of ``/predict_batch`` to a parsed body (see :meth:`answer_predict`)."""
        try:
            rows = _ROW_BATCH.validate_python({} if body is None else body)
        except ValidationError as err:
            raise _refused(err, ("root",)) from None
        predictions = await self._score([row_values(row) for row in rows], Unavailable)
        return _PREDICTIONS.dump_json(predictions)

    @bentoml.api(route="/metadata")  # type: ignore[untyped-decorator]  # _bentoml_sdk has no py.typed
    def metadata(self) -> ServiceMetadata:
        """Describe the served model and the bento serving it."""
        context = bentoml.server_context
        from_bento = context.bento_version not in ("", "not available")
        bento_tag = f"{context.bento_name}:{context.bento_version}" if from_bento else None
        return ServiceMetadata(**BUNDLE.metadata.model_dump(), bento_tag=bento_tag)

    @bentoml.on_shutdown  # type: ignore[untyped-decorator]  # _bentoml_sdk has no py.typed
    async def flush_inference_log(self) -> None:
        """Write every logged row before the worker exits."""
        await self._batcher.close()
        self._log.close()

    async def _score(
        self, rows: list[dict[str, Any]], unavailable: Callable[[str], Exception]
    ) -> list[Prediction]:
        """Score, log and answer ``rows``; an overloaded batcher raises ``unavailable``."""
        if FAULTS is not None:
            await FAULTS.inject()
        features = BUNDLE.spec.encode_rows(rows)
        try:
            probabilities = await self._batcher.predict(features)
        except Overloaded as err:
            raise unavailable(str(err)) from err
        timestamp_ms = time.time_ns() // 1_000_000
        row_ids = [uuid.uuid4().hex for _ in rows]
        values: list[float] = probabilities.tolist()
        _observe_probabilities(values)
        self._log.append(LoggedBatch(timestamp_ms, row_ids, values, rows))
        version = BUNDLE.metadata.model_version
        return [
            Prediction(
                probability=float(p),
                label=int(p >= LABEL_THRESHOLD),
                model_version=version,
                row_id=row_id,
            )
            for p, row_id in zip(probabilities, row_ids, strict=True)
        ]


def _refused(err: ValidationError, root: tuple[str, ...] = ()) -> Refused:
    summary, problems = problems_from_validation(err, root)
    return Refused(400, *problems, summary=summary)


def _service() -> Loopline:
    return cast(Loopline, bentoml.get_current_service())


# Malformed requests are refused before BentoML parses them, and predictions answered without
# BentoML's per-request layer (see serving.guard).
_SERVICE = cast("bentoml.Service[Loopline]", Loopline)  # what the decorator returned
_SERVICE.add_asgi_middleware(
    RequestGuard,
    routes=[api.route for api in _SERVICE.apis.values()],
    max_body_bytes=SETTINGS.max_body_bytes,
    docs_path="/docs.json",
    answers={
        "/predict": lambda body: _service().answer_predict(body),
        "/predict_batch": lambda body: _service().answer_predict_batch(body),
    },
)


ORPHAN_POLL_S = 1.0


def _stop_when_orphaned(poll_s: float = ORPHAN_POLL_S) -> None:
    """Stop this worker (SIGTERM: the inference log is flushed) once its server is gone.

    ``bentoml serve`` starts each worker in a process group of its own, so a ``kill -9`` of the
    server or of its group would otherwise leave the worker running and answering on the shared
    socket. A daemon thread notices the parent change (re-parented to init or a subreaper)
    within ``poll_s``. A worker started by :mod:`serving.launch` is the server itself: no watch.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        logging.getLogger("loopline.service").warning(
            "the server (pid %d) is gone: this worker stops", parent
        )
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def _count_dropped_rows(rows: int, reason: str) -> None:
    _dropped_rows_counter().labels(reason=reason).inc(rows)


def _observe_batch(requests: int, rows: int) -> None:
    _batch_requests_histogram().observe(requests)


def _observe_probabilities(probabilities: list[float]) -> None:
    # prometheus_client has no bulk observe. One observe per row costs ~3 us here in multiprocess
    # mode: ~2.7 ms of a 1000-row /predict_batch's ~25 ms, ~3 us of a /predict's ~3 ms.
    observe = _probability_histogram().observe
    for probability in probabilities:
        observe(probability)


# Created on first use, inside the worker, where BentoML has set up Prometheus' multiprocess
# directory; /metrics then shows them next to BentoML's own.
@functools.cache
def _batch_requests_histogram() -> prometheus_client.Histogram:
    return prometheus_client.Histogram(
        "loopline_batch_requests",
        "Requests scored together in one model call",
        buckets=[1, 2, 4, 8, 16, 32, 64, 128, 256],
    )


@functools.cache
def _dropped_rows_counter() -> prometheus_client.Counter:
    return prometheus_client.Counter(
        "loopline_inference_log_dropped_rows",
        "Scored rows the inference log could not keep",
        ["reason"],
    )


@functools.cache
def _probability_histogram() -> prometheus_client.Histogram:
    return prometheus_client.Histogram(
        "loopline_prediction_probability",
        "Predicted probability of each scored row",
        buckets=PROBABILITY_BUCKETS,
    )
