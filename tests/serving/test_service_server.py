"""The service as a real ``bentoml serve`` subprocess: HTTP answers, metrics, batching, log."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.fixtures.serving import (
    METADATA,
    REPO,
    Server,
    TinyModel,
    sample_rows,
    serving_env,
    start_server,
)

pytestmark = pytest.mark.integration

TRAINING_PACKAGES = ("sklearn", "pandas", "mlflow", "scipy.stats")
VALID = sample_rows(1)[0]


PROBABILITY_BOUNDS = ("0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1.0")


@pytest.fixture(scope="module")
def server(
    tiny_model: TinyModel, serving_pycache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One server from source, the model by tag from a BentoML home.

    Queueing may take up to 5 s here (default 40 ms): these tests check answers, not load
    shedding, and other processes share the machine's two cores.
    """
    tmp = tmp_path_factory.mktemp("server")
    env = serving_env(
        tiny_model, tmp / "inference-log", serving_pycache, batch_max_latency_ms="5000"
    )
    running = start_server(env, tmp / "server.log")
    print(f"cold start {running.cold_start_s:.2f} s")
    yield running
    running.stop()


def _post(server: Server, path: str, body: object) -> httpx.Response:
    return server.http.post(path, json=body)


def _counter(metrics: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith((name + "{", name + " ")) and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_row_gets_the_boosters_probability(server: Server, tiny_model: TinyModel) -> None:
    response = _post(server, "/predict", VALID)
    assert response.status_code == 200
    (expected,) = tiny_model.booster_probability([VALID])
    assert response.json()["probability"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("/predict", {**VALID, "support_calls": "many"}, ["support_calls"]),
        ("/predict", {k: v for k, v in VALID.items() if k != "region"}, ["region"]),
        ("/predict", {**VALID, "surname": "x"}, ["surname"]),
        ("/predict_batch", [], ["root"]),
        ("/predict_batch", sample_rows(1001), ["root"]),
    ],
    ids=["type", "missing", "unknown", "empty-batch", "batch-over-1000"],
)
def test_bad_input_is_a_400_naming_the_field(
    server: Server, path: str, body: object, field: list[str]
) -> None:
    response = _post(server, path, body)
    assert response.status_code == 400
    assert [d["loc"] for d in response.json()["detail"]] == [field]


@pytest.mark.parametrize("content", [b'{"tenure_months": NaN}', b"not json", b""])
def test_nan_and_non_json_bodies_are_a_400(server: Server, content: bytes) -> None:
    response = httpx.post(
        f"{server.url}/predict", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["detail"]


def test_metrics_count_requests_by_status(server: Server) -> None:
    labels = {"endpoint": "/predict", "service_name": "loopline"}
    before = server.metrics()
    for _ in range(3):
        assert _post(server, "/predict", VALID).status_code == 200
    for _ in range(2):
        assert _post(server, "/predict", {"nope": 1}).status_code == 400
    after = server.metrics()
    name = "bentoml_service_request_total"
    ok = _counter(after, name, http_response_code="200", **labels)
    bad = _counter(after, name, http_response_code="400", **labels)
    assert ok - _counter(before, name, http_response_code="200", **labels) == 3
    assert bad - _counter(before, name, http_response_code="400", **labels) == 2
    assert 'le="0.05"' in after and 'le="0.075"' in after  # buckets resolve the 50 ms SLO


def test_concurrent_rows_are_scored_in_shared_batches(server: Server) -> None:
    before = server.metrics()
    with ThreadPoolExecutor(max_workers=24) as pool:
        codes = list(
            pool.map(lambda row: _post(server, "/predict", row).status_code, sample_rows(240))
        )
    assert codes == [200] * 240
    after = server.metrics()
    requests = _counter(after, "loopline_batch_requests_sum") - _counter(
        before, "loopline_batch_requests_sum"
    )
    batches = _counter(after, "loopline_batch_requests_count") - _counter(
        before, "loopline_batch_requests_count"
    )
    assert requests == 240
    assert batches < requests  # at least one model call scored several requests


def _probability_buckets(metrics: str) -> dict[str, float]:
    name = "loopline_prediction_probability_bucket"
    return {le: _counter(metrics, name, le=le) for le in (*PROBABILITY_BOUNDS, "+Inf")}


def test_metrics_hold_a_histogram_of_every_answered_probability(server: Server) -> None:
    before = server.metrics()
    singles = [_post(server, "/predict", row).json() for row in sample_rows(7, seed=21)]
    batch = _post(server, "/predict_batch", sample_rows(120, seed=22)).json()
    after = server.metrics()
    probabilities = np.array([answer["probability"] for answer in [*singles, *batch]])
    # Prometheus buckets are cumulative and inclusive: le="0.3" counts p <= 0.3.
    expected = {le: float(np.sum(probabilities <= float(le))) for le in PROBABILITY_BOUNDS}
    expected["+Inf"] = float(len(probabilities))
    assert len({e for e in expected.values()}) >= 4  # the rows spread over several buckets
    counted_before = _probability_buckets(before)
    counted = {le: n - counted_before[le] for le, n in _probability_buckets(after).items()}
    assert counted == expected
    name = "loopline_prediction_probability"
    count = _counter(after, f"{name}_count") - _counter(before, f"{name}_count")
    total = _counter(after, f"{name}_sum") - _counter(before, f"{name}_sum")
    assert count == 127
    assert total == pytest.approx(probabilities.sum(), abs=1e-6)


def test_metadata_is_the_models_and_no_bento_from_source(server: Server) -> None:
    response = _post(server, "/metadata", {})
    assert response.status_code == 200
    assert response.json() == {**METADATA, "bento_tag": None}


def test_workers_load_no_training_libraries(server: Server) -> None:
    (worker,) = server.worker_pids()
    mapped = Path(f"/proc/{worker}/maps").read_text()
    assert "libxgboost" in mapped  # the model is loaded in this worker
    for package in ("sklearn", "pandas", "scipy/stats"):
        assert f"/{package}/" not in mapped
    status = Path(f"/proc/{worker}/status").read_text()
    rss_kb = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
    rss_mb = int(rss_kb) / 1024
    print(f"worker RSS {rss_mb:.0f} MB")
    assert rss_mb < 240  # scikit-learn and scipy.stats alone would add ~150 MB


_IMPORT_AND_LOAD = """
import json, sys
import serving.service as service
service.load_predictor(service.BUNDLE)
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize("lean", [True, False])
def test_the_serving_process_imports_no_training_library(
    tiny_model: TinyModel, tmp_path: Path, serving_pycache: Path, lean: bool
) -> None:
    env = serving_env(tiny_model, tmp_path, serving_pycache, lean_imports=str(lean).lower())
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_AND_LOAD], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=120, check=True,
    )  # fmt: skip
    modules = set(json.loads(done.stdout.splitlines()[-1]))
    assert "xgboost" in modules
    loaded = {p for p in TRAINING_PACKAGES if p in modules}
    # The development venv has scikit-learn: only the lean-imports guard keeps it out.
    assert loaded == (set() if lean else {"sklearn", "scipy.stats", "pandas"})


def test_a_lean_sklearn_serving_process_imports_sklearn_but_no_xgboost_pandas_or_mlflow(
    tiny_sklearn_model: TinyModel, tmp_path: Path, serving_pycache: Path
) -> None:
    env = serving_env(tiny_sklearn_model, tmp_path, serving_pycache, lean_imports="true")
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_AND_LOAD], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=120, check=True,
    )  # fmt: skip
    modules = set(json.loads(done.stdout.splitlines()[-1]))
    # scikit-learn imports scipy.stats itself; the image of this kind installs both.
    assert {"sklearn", "joblib", "scipy.stats"} <= modules
    assert not {"xgboost", "pandas", "mlflow"} & modules


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_every_row_is_logged_by_a_normal_stop(
    serve: Callable[..., Server], tmp_path: Path, stop_signal: int
) -> None:
    log_dir = tmp_path / "log"
    # Nothing is written before the stop: only the shutdown flush can produce the files.
    server = serve(
        log_dir, log_flush_rows="1000000", log_flush_interval_s="3600", batch_max_latency_ms="5000"
    )
    singles = sample_rows(150, seed=3)
    batches = [sample_rows(10, seed=s) for s in range(5)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        single = list(pool.map(lambda row: _post(server, "/predict", row), singles))
        batched = list(pool.map(lambda rows: _post(server, "/predict_batch", rows), batches))
    answered = {r.json()["row_id"] for r in single} | {
        a["row_id"] for r in batched for a in r.json()
    }
    assert len(answered) == 200
    assert list(log_dir.rglob("*.parquet")) == []
    assert server.stop(stop_signal) == 0
    files = list(log_dir.glob("model=churn/date=*/part-*.parquet"))
    logged = [
        row_id for path in files for row_id in pq.read_table(path).column("row_id").to_pylist()
    ]
    assert len(logged) == 200
    assert set(logged) == answered


def test_an_error_ratio_of_one_answers_every_prediction_500_counted_by_bentoml(
    serve: Callable[..., Server],
) -> None:
    server = serve(fault_error_ratio="1.0")
    predict = [_post(server, "/predict", VALID).status_code for _ in range(4)]
    batch = _post(server, "/predict_batch", sample_rows(3)).status_code
    assert (predict, batch) == ([500] * 4, 500)
    metadata = _post(server, "/metadata", {})
    assert metadata.status_code == 200
    assert metadata.json() == {**METADATA, "bento_tag": None}
    assert server.http.get("/readyz").status_code == 200
    metrics = server.metrics()
    requests = "bentoml_service_request_total"
    assert _counter(metrics, requests, endpoint="/predict", http_response_code="500") == 4
    assert _counter(metrics, requests, endpoint="/predict_batch", http_response_code="500") == 1
    assert _counter(metrics, requests, http_response_code="200", endpoint="/metadata") == 1
    assert _counter(metrics, "loopline_prediction_probability_count") == 0  # nothing scored
    output = server.output()
    assert "LOOPLINE_SERVING__FAULT_ERROR_RATIO=1.0, LOOPLINE_SERVING__FAULT_DELAY_MS=0.0" in output
    assert "injected fault (LOOPLINE_SERVING__FAULT_ERROR_RATIO=1.0)" in output


def test_an_injected_delay_slows_every_prediction_and_errors_are_drawn_per_request(
    serve: Callable[..., Server],
) -> None:
    delay_s = 0.2
    server = serve(fault_error_ratio="0.5", fault_delay_ms="200", batch_max_latency_ms="5000")

    def timed_predict(row: dict[str, object]) -> tuple[int, float]:
        started = time.monotonic()
        code = _post(server, "/predict", row).status_code
        return code, time.monotonic() - started

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(timed_predict, sample_rows(40, seed=5)))
    codes = [code for code, _ in answers]
    assert set(codes) == {200, 500}  # all one code: p = 2 x 0.5^40
    assert min(elapsed_s for _, elapsed_s in answers) >= delay_s
    metrics = server.metrics()
    duration = "bentoml_service_request_duration_seconds"
    labels = {"endpoint": "/predict"}
    # BentoML's own histogram times the delay: no request under it (its bucket le=0.1).
    assert _counter(metrics, f"{duration}_count", **labels) == 40
    assert f'{duration}_bucket{{endpoint="/predict",http_response_code="200",le="0.1"' in metrics
    assert _counter(metrics, f"{duration}_bucket", le="0.1", **labels) == 0
    requests = "bentoml_service_request_total"
    assert _counter(metrics, requests, http_response_code="500", **labels) == codes.count(500)
    assert _counter(metrics, "loopline_prediction_probability_count") == codes.count(200)
