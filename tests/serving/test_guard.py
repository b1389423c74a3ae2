"""Tests for serving/guard.py and serving/errors.py: the checks and the error contract, pure."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from serving.errors import (
    MAX_DETAILS,
    MAX_ERROR_BYTES,
    bounded_problem,
    document_client_errors,
    error_body,
    problems_from_response,
    problems_from_validation,
)
from serving.guard import (
    MAX_JSON_DEPTH,
    QuietClientErrors,
    Refused,
    RequestGuard,
    Unavailable,
    check_content_type,
    check_json,
)


@pytest.mark.parametrize(
    "header", [None, "application/json", "Application/JSON; charset=UTF-8", "application/json;"]
)
def test_json_content_types_pass(header: str | None) -> None:
    check_content_type(header)


@pytest.mark.parametrize(
    "header",
    ["multipart/form-data", "text/plain", "application/json; charset=latin-1", "application/x"],
)
def test_other_content_types_are_a_415(header: str) -> None:
    with pytest.raises(Refused) as caught:
        check_content_type(header)
    assert caught.value.status == 415
    assert caught.value.problem.loc == ("header", "content-type")


@pytest.mark.parametrize(
    "body, kind, words",
    [
        (b"\xc3\x28", "utf8_invalid", "byte 0"),
        (b"[1] [2]", "json_invalid", "trailing data"),
        (b'{"a": }', "json_invalid", "line 1 column 7"),
        (b"[" + b"9" * (sys.get_int_max_str_digits() + 1) + b"]", "json_number_invalid", "integer"),
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), "json_too_deep", "nested"),
        (b"[" * 100_000, "json_too_deep", "nested"),
        (b'[{"a": "\\ud800"}]', "string_unicode", "surrogate"),
        (b'{"\\udc00": 1}', "string_unicode", "key"),
    ],
)
def test_malformed_json_is_a_400_naming_the_problem(body: bytes, kind: str, words: str) -> None:
    with pytest.raises(Refused) as caught:
        check_json(body)
    assert (caught.value.status, caught.value.problem.type) == (400, kind)
    assert words in caught.value.problem.msg


def test_a_surrogate_is_located_at_its_path() -> None:
    with pytest.raises(Refused) as caught:
        check_json(b'[{"a": 1}, {"b": ["x", "\\ud83d"]}]')
    assert caught.value.problem.loc == ("root", 1, "b", 1)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b'{"a": null}',
        b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH,
        b'["\\ud83d\\ude00", "\\\\ud800"]',  # a surrogate pair, and an escaped backslash
        b'{"x": NaN}',  # left to the field's rule, which names it
    ],
)
def test_acceptable_json_passes(body: bytes) -> None:
    check_json(body)


def test_an_error_body_is_bounded_and_says_how_many_are_left_out() -> None:
    problems = [bounded_problem(["k" * 10_000, i], "m" * 10_000, "t") for i in range(50)]
    body = error_body("s" * 10_000, problems)
    assert len(body) <= MAX_ERROR_BYTES
    parsed = json.loads(body)
    assert 1 <= len(parsed["detail"]) <= MAX_DETAILS
    assert parsed["detail"][0]["loc"][0].endswith("...")
    assert f"({50 - len(parsed['detail'])} more not listed)" in parsed["error"]


def test_bentomls_validation_body_is_read_without_its_input() -> None:
    body = json.dumps(
        {
            "error": "1 validation error for X",
            "detail": [{"type": "missing", "loc": ["a"], "msg": "Field required", "input": "v"}],
        }
    ).encode()
    summary, problems = problems_from_response(400, body)
    assert summary == "1 invalid field(s)"
    assert [(p.loc, p.type) for p in problems] == [(("a",), "missing")]
    assert b'"v"' not in error_body(summary, problems)


@pytest.mark.parametrize("body", [b'[{"error": "bad thing"}]', b"Method Not Allowed"])
def test_other_client_error_bodies_become_the_contract(body: bytes) -> None:
    _, problems = problems_from_response(405, body)
    assert problems[0].loc == ("body",)


def test_the_document_gets_the_error_statuses_and_a_required_body() -> None:
    document: dict[str, Any] = {
        "paths": {
            "/p": {
                "post": {
                    "responses": {"200": {}},
                    "requestBody": {"content": {"application/json": {"schema": {"type": "array"}}}},
                }
            },
            "/m": {
                "post": {
                    "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}
                }
            },
        }
    }
    document_client_errors(document, ["/p", "/m"])
    post = document["paths"]["/p"]["post"]
    assert set(post["responses"]) == {"200", "400", "413", "415", "503"}
    assert post["requestBody"]["required"] is True
    assert "required" not in document["paths"]["/m"]["post"]["requestBody"]
    detail = document["components"]["schemas"]["ClientError"]["properties"]["detail"]
    assert detail["items"] == {"$ref": "#/components/schemas/ErrorDetail"}


def _record(error: BaseException | None) -> logging.LogRecord:
    exc_info = (type(error), error, None) if error is not None else None
    return logging.LogRecord("b", logging.ERROR, "f", 1, "Exception on /p", None, exc_info)


def test_client_errors_are_dropped_from_bentomls_log_and_server_errors_kept() -> None:
    from bentoml.exceptions import BadInput, InternalServerError

    class M(BaseModel):
        a: int

    with pytest.raises(ValidationError) as caught:
        M.model_validate({"a": "x"})
    quiet = QuietClientErrors()
    assert not quiet.filter(_record(caught.value))
    assert not quiet.filter(_record(BadInput("bad")))
    assert quiet.filter(_record(InternalServerError("boom")))
    assert quiet.filter(_record(RuntimeError("boom")))
    assert quiet.filter(_record(None))


class _Answered:
    """Drive a RequestGuard whose app behind must not be reached for answered routes."""

    def __init__(self, answer: Any) -> None:
        async def behind(scope: Any, receive: Any, send: Any) -> None:
            raise AssertionError("an answered route reached the app behind")

        self.guard = RequestGuard(
            behind,
            routes=["/predict"],
            max_body_bytes=1024,
            docs_path="/docs.json",
            answers={"/predict": answer},
        )

    def post(self, body: bytes) -> tuple[int, dict[bytes, bytes], Any]:
        sent: list[dict[str, Any]] = []
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/predict",
            "headers": [(b"content-type", b"application/json")],
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(dict(message))

        asyncio.run(self.guard(scope, receive, send))
        start, end = sent
        return start["status"], dict(start["headers"]), json.loads(end["body"])


def test_an_answered_route_gets_the_answers_body_from_the_parsed_json() -> None:
    seen: list[Any] = []

    async def answer(value: Any) -> bytes:
        seen.append(value)
        return json.dumps({"echo": value}).encode()

    status, headers, body = _Answered(answer).post(b'{"a": [1, 2.5, null]}')
    assert (status, body) == (200, {"echo": {"a": [1, 2.5, None]}})
    assert seen == [{"a": [1, 2.5, None]}]
    assert headers[b"content-length"] == str(len(json.dumps(body))).encode()


def test_a_malformed_body_never_reaches_the_answer() -> None:
    async def answer(value: Any) -> bytes:
        raise AssertionError("reached")

    status, _, body = _Answered(answer).post(b'{"a": ')
    assert status == 400 and body["detail"][0]["type"] == "json_invalid"


def test_an_answer_refusing_is_a_bounded_4xx_with_every_problem() -> None:
    class Row(BaseModel):
        model_config = ConfigDict(extra="forbid")
        a: int
        b: int

    async def answer(value: Any) -> bytes:
        try:
            Row.model_validate(value)
        except ValidationError as err:
            summary, problems = problems_from_validation(err, ("root",))
            raise Refused(400, *problems, summary=summary) from None
        return b"{}"

    status, _, body = _Answered(answer).post(b'{"a": "x", "c": 1}')
    assert status == 400
    assert body["error"] == "3 invalid field(s)"
    assert [d["loc"] for d in body["detail"]] == [["root", "a"], ["root", "b"], ["root", "c"]]
    assert all("input" not in d for d in body["detail"])


def test_an_unavailable_answer_is_a_503_saying_when_to_retry() -> None:
    async def answer(value: Any) -> bytes:
        raise Unavailable("queued too long")

    status, headers, body = _Answered(answer).post(b"{}")
    assert status == 503
    assert headers[b"retry-after"] == b"1"
    assert body == {"error": "service unavailable: queued too long"}


def test_a_failing_answer_is_a_500_without_detail_and_logged_whole(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def answer(value: Any) -> bytes:
        raise RuntimeError("secret internals")

    with caplog.at_level(logging.ERROR, logger="loopline.guard"):
        status, _, body = _Answered(answer).post(b"{}")
    assert status == 500
    assert "secret" not in json.dumps(body)
    (record,) = caplog.records
    assert record.exc_info is not None and "secret internals" in str(record.exc_info[1])
