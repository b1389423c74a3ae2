"""The service in-process over ASGI (BentoML's testing guide): answers, errors, schema, log."""

from __future__ import annotations

import asyncio
import importlib
import json
import math
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio.from_thread
import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.fixtures.serving import METADATA, TinyModel, sample_rows

MAX_BATCH_ROWS = 5
VALID = {
    "tenure_months": 3,
    "monthly_charges": 80.5,
    "support_calls": 2,
    "plan": "basic",
    "region": "east",
}


class Client:
    """A synchronous face over an httpx client on the ASGI app, run in a blocking portal."""

    def __init__(self, portal: anyio.from_thread.BlockingPortal, http: httpx.AsyncClient) -> None:
        self._portal = portal
        self._http = http

    def get(self, path: str) -> httpx.Response:
        return self._portal.call(self._http.get, path)

    def post(self, path: str, body: Any = None, *, content: bytes | None = None) -> httpx.Response:
        if content is None:
            content = b"" if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"}
        return self._portal.call(lambda: self._http.post(path, content=content, headers=headers))


@pytest.fixture(scope="module")
def service(
    tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModuleType]:
    """serving.service imported with the tiny model given as a plain directory."""
    log_dir = tmp_path_factory.mktemp("inference-log")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENTOML_HOME", str(tmp_path_factory.mktemp("bentoml-home")))
        patch.setenv("BENTOML_DO_NOT_TRACK", "True")
        patch.setenv("LOOPLINE_SERVING__MODEL_DIR", str(tiny_model.directory))
        patch.setenv("LOOPLINE_SERVING__LOG_DIR", str(log_dir))
        patch.setenv("LOOPLINE_SERVING__LOG_FLUSH_INTERVAL_S", "0.1")
        patch.setenv("LOOPLINE_SERVING__MAX_BATCH_ROWS", str(MAX_BATCH_ROWS))
        sys.modules.pop("serving.service", None)
        yield importlib.import_module("serving.service")
    sys.modules.pop("serving.service", None)


@pytest.fixture(scope="module")
def client(service: ModuleType) -> Iterator[Client]:
    app = service.Loopline.to_asgi()
    with anyio.from_thread.start_blocking_portal() as portal:
        lifespan = portal.wrap_async_context_manager(app.router.lifespan_context(app))
        with lifespan:
            http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://asgi")
            yield Client(portal, http)
            portal.call(http.aclose)


def _error_locations(response: httpx.Response) -> list[list[Any]]:
    return [detail["loc"] for detail in response.json()["detail"]]


def test_ready_and_alive(client: Client) -> None:
    assert client.get("/readyz").status_code == 200
    assert client.get("/livez").status_code == 200


def test_a_row_gets_the_boosters_probability(client: Client, tiny_model: TinyModel) -> None:
    response = client.post("/predict", VALID)
    assert response.status_code == 200
    body = response.json()
    (expected,) = tiny_model.booster_probability([VALID])
    assert body["probability"] == pytest.approx(expected, abs=1e-6)
    assert body["label"] == int(expected >= 0.5)
    assert body["model_version"] == "7"
    assert re.fullmatch(r"[0-9a-f]{32}", body["row_id"])


def test_a_batch_gets_one_answer_per_row_in_order(client: Client, tiny_model: TinyModel) -> None:
    rows = sample_rows(MAX_BATCH_ROWS)
    response = client.post("/predict_batch", rows)
    assert response.status_code == 200
    answers = response.json()
    np.testing.assert_allclose(
        [a["probability"] for a in answers], tiny_model.booster_probability(rows), atol=1e-6
    )
    assert len({a["row_id"] for a in answers}) == MAX_BATCH_ROWS


BAD_ROWS = [
    ({**VALID, "tenure_months": "three"}, ["tenure_months"]),
    ({k: v for k, v in VALID.items() if k != "plan"}, ["plan"]),
    ({**VALID, "coupon": "x"}, ["coupon"]),
    ({**VALID, "region": 4}, ["region"]),
]


@pytest.mark.parametrize("row, location", BAD_ROWS, ids=["type", "missing", "unknown", "cat-type"])
def test_a_bad_row_is_a_400_naming_the_field(
    client: Client, row: dict[str, Any], location: list[Any]
) -> None:
    response = client.post("/predict", row)
    assert response.status_code == 400
    assert _error_locations(response) == [location]


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_a_400_naming_the_field(client: Client, token: str) -> None:
    body = json.dumps({**VALID, "monthly_charges": 0.0}).replace("0.0", token).encode()
    response = client.post("/predict", content=body)
    assert response.status_code == 400
    assert _error_locations(response) == [["monthly_charges"]]


def test_null_means_missing_and_is_scored(client: Client, tiny_model: TinyModel) -> None:
    row = {**VALID, "monthly_charges": None, "plan": None}
    response = client.post("/predict", row)
    assert response.status_code == 200
    (expected,) = tiny_model.booster_probability([row])
    assert response.json()["probability"] == pytest.approx(expected, abs=1e-6)


def test_a_body_that_is_not_json_is_a_400(client: Client) -> None:
    response = client.post("/predict", content=b"tenure_months=3")
    assert response.status_code == 400
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_an_empty_batch_is_a_400(client: Client) -> None:
    response = client.post("/predict_batch", [])
    assert response.status_code == 400
    assert response.json()["detail"][0]["type"] == "too_short"


def test_a_batch_over_the_limit_is_a_400_saying_the_limit(client: Client) -> None:
    response = client.post("/predict_batch", sample_rows(MAX_BATCH_ROWS + 1))
    assert response.status_code == 400
    (detail,) = response.json()["detail"]
    assert detail["type"] == "too_long"
    assert f"at most {MAX_BATCH_ROWS} items" in detail["msg"]


def test_a_bad_row_in_a_batch_names_its_index_and_field(client: Client) -> None:
    rows = [VALID, {**VALID, "support_calls": math.nan}]
    response = client.post("/predict_batch", content=json.dumps(rows).encode())
    assert response.status_code == 400
    assert _error_locations(response) == [["root", 1, "support_calls"]]


def test_metadata_is_the_model_metadata_and_no_bento_from_source(client: Client) -> None:
    response = client.post("/metadata")
    assert response.status_code == 200
    assert response.json() == {**METADATA, "bento_tag": None}


def test_openapi_document_lists_the_features_of_the_spec(
    client: Client, tiny_model: TinyModel
) -> None:
    document = client.get("/docs.json").json()
    schema = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    assert list(schema["properties"]) == list(tiny_model.spec.order)
    assert schema["additionalProperties"] is False


def test_every_answered_row_reaches_the_inference_log(client: Client, service: ModuleType) -> None:
    rows = sample_rows(3, seed=99)
    answers = client.post("/predict_batch", rows).json()
    log_dir = Path(service.SETTINGS.log_dir)
    wanted = {a["row_id"] for a in answers}
    deadline = time.monotonic() + 10
    logged: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline and not wanted <= logged.keys():
        time.sleep(0.1)
        for path in log_dir.rglob("part-*.parquet"):
            for record in pq.read_table(path).to_pylist():
                logged[record["row_id"]] = record
    assert wanted <= logged.keys()
    first = logged[answers[0]["row_id"]]
    assert first["prediction"] == pytest.approx(answers[0]["probability"])
    assert {k: first[k] for k in rows[0]} == rows[0]
    assert (first["model_name"], first["model_version"]) == ("churn", "7")


def test_no_fault_is_injected_by_default(service: ModuleType) -> None:
    assert service.FAULTS is None
    settings = service.SETTINGS.model_copy(update={"fault_delay_ms": 0.0})
    assert service.FaultInjection.from_settings(settings) is None


def test_an_injected_error_is_a_server_error_naming_its_setting(service: ModuleType) -> None:
    settings = service.SETTINGS.model_copy(update={"fault_error_ratio": 1.0})
    faults = service.FaultInjection.from_settings(settings)
    assert faults == service.FaultInjection(error_ratio=1.0, delay_ms=0.0)
    with pytest.raises(service.InjectedFault) as caught:
        asyncio.run(faults.inject())
    assert str(caught.value) == "injected fault (LOOPLINE_SERVING__FAULT_ERROR_RATIO=1.0)"


def test_a_partial_error_ratio_fails_some_requests_not_all(service: ModuleType) -> None:
    faults = service.FaultInjection(error_ratio=0.5, delay_ms=0.0)

    async def failed() -> bool:
        try:
            await faults.inject()
        except service.InjectedFault:
            return True
        return False

    outcomes = [asyncio.run(failed()) for _ in range(200)]
    assert 40 < sum(outcomes) < 160  # 0.5 of 200; outside this band with p < 1e-18


def test_an_injected_delay_does_not_block_the_event_loop(service: ModuleType) -> None:
    faults = service.FaultInjection(error_ratio=0.0, delay_ms=200.0)

    async def two_requests() -> float:
        started = time.monotonic()
        await asyncio.gather(faults.inject(), faults.inject())
        return time.monotonic() - started

    elapsed_s = asyncio.run(two_requests())
    assert elapsed_s >= 0.2
    assert elapsed_s < 0.4  # both waited at once: a blocking sleep would take 0.4 s
