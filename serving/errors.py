"""The service's client-error contract: one bounded JSON body for every 4xx, and its OpenAPI.

Every refused request is answered ``{"error": summary, "detail": [{"loc", "msg", "type"}]}``:
``loc`` is where the problem is (``["body"]``, ``["header", "content-type"]``, or a field path
like pydantic's, e.g. ``["root", 3, "plan"]``), ``msg`` what was expected, ``type`` a stable
machine name. The body never carries the refused value (pydantic's ``input`` is never copied)
and is at most :data:`MAX_ERROR_BYTES`: names taken from the request (an unknown key) are
shortened, and only the first problems are listed.

:func:`document_client_errors` writes the same contract into the served OpenAPI document.
Pure functions only: :mod:`serving.guard` does the I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError

MAX_ERROR_BYTES = 2048
MAX_DETAILS = 5
MAX_LOC_PARTS = 4
MAX_LOC_PART_CHARS = 64
MAX_MSG_CHARS = 200
_ELLIPSIS = "..."


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request: where, what was expected, and a stable type name."""

    loc: tuple[str | int, ...]
    msg: str
    type: str


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(_ELLIPSIS)] + _ELLIPSIS


def _loc_part(part: object) -> str | int:
    if isinstance(part, int) and not isinstance(part, bool):
        return part
    # A key the client sent may hold anything: shorten it, and drop what UTF-8 cannot carry.
    text = str(part).encode("utf-8", "replace").decode("utf-8")
    return _clip(text, MAX_LOC_PART_CHARS)


def bounded_problem(loc: Iterable[object], msg: str, type_: str) -> Problem:
    """A :class:`Problem` whose parts are cut to the contract's limits."""
    parts = [_loc_part(part) for part in loc][:MAX_LOC_PARTS]
    return Problem(tuple(parts), _clip(msg, MAX_MSG_CHARS), _clip(type_, MAX_LOC_PART_CHARS))


def error_body(summary: str, problems: Sequence[Problem]) -> bytes:
    """The JSON body of a client error, at most :data:`MAX_ERROR_BYTES` bytes.

    Only the first :data:`MAX_DETAILS` problems are listed (fewer if they would not fit); the
    summary says how many there were.
    """
    listed = list(problems[:MAX_DETAILS])
    while True:
        more = len(problems) - len(listed)
        text = _clip(summary, MAX_MSG_CHARS) + (f" ({more} more not listed)" if more else "")
        body = json.dumps(
            {
                "error": text,
                "detail": [{"loc": list(p.loc), "msg": p.msg, "type": p.type} for p in listed],
            },
            ensure_ascii=True,
            separators=(",", ":"),
        ).encode("ascii")
        if len(body) <= MAX_ERROR_BYTES or not listed:
            return body
        listed.pop()


def problems_from_response(status: int, body: bytes) -> tuple[str, list[Problem]]:
    """Read BentoML's own 4xx body (whatever its shape) as a summary and bounded problems.

    BentoML answers a pydantic error ``{"error", "detail": [{"type", "loc", "msg", ...}]}``,
    another client error ``[{"error": text}]``, and Starlette a plain-text phrase.
    """
    phrase = _phrase(status)
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        return phrase, [bounded_problem(["body"], phrase, "http_error")]
    if isinstance(parsed, list) and len(parsed) == 1:
        parsed = parsed[0]
    if not isinstance(parsed, dict):
        return phrase, [bounded_problem(["body"], phrase, "http_error")]
    summary = str(parsed.get("error") or phrase)
    detail = parsed.get("detail")
    if isinstance(detail, list) and detail and all(isinstance(d, Mapping) for d in detail):
        problems = [
            bounded_problem(
                d.get("loc") or ["body"], str(d.get("msg", phrase)), str(d.get("type", "invalid"))
            )
            for d in detail
        ]
        return f"{len(problems)} invalid field(s)", problems
    return summary, [bounded_problem(["body"], summary, "http_error")]


def problems_from_validation(
    error: ValidationError, root: Sequence[str | int] = ()
) -> tuple[str, list[Problem]]:
    """Read a request model's validation error as a summary and bounded problems.

    ``root`` prefixes every location (``("root",)`` for a list body, as BentoML names it); a
    problem with the body as a whole is located at ``["body"]``.
    """
    problems = [
        bounded_problem([*root, *detail["loc"]] or ["body"], detail["msg"], detail["type"])
        for detail in error.errors(include_url=False, include_context=False, include_input=False)
    ]
    return f"{len(problems)} invalid field(s)", problems


def describe(problems: Sequence[Problem]) -> str:
    """A one-line account of ``problems`` for the log: locations and types, never values."""
    shown = ", ".join(
        f"{'.'.join(str(part) for part in p.loc)}: {p.type}" for p in problems[:MAX_DETAILS]
    )
    more = len(problems) - MAX_DETAILS
    return shown + (f" (+{more} more)" if more > 0 else "")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


# The statuses a prediction route answers with the client-error body, and why.
CLIENT_ERRORS: dict[int, str] = {
    400: "Invalid request: not JSON, not UTF-8, too deep, or a field of the wrong form",
    413: "Request body over LOOPLINE_SERVING__MAX_BODY_BYTES",
    415: "Content type other than application/json (UTF-8)",
}
_ERROR_DETAIL = {
    "type": "object",
    "title": "ErrorDetail",
    "required": ["loc", "msg", "type"],
    "properties": {
        "loc": {
            "type": "array",
            "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "description": "where: body, header name, or the field's path",
        },
        "msg": {"type": "string", "description": "what was expected"},
        "type": {"type": "string", "description": "a stable name of the problem"},
    },
}
_CLIENT_ERROR = {
    "type": "object",
    "title": "ClientError",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string"},
        "detail": {
            "type": "array",
            "items": {"$ref": "#/components/schemas/ErrorDetail"},
            "maxItems": MAX_DETAILS,
        },
    },
}
_SERVER_ERROR = {
    "type": "object",
    "title": "ServerError",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}


def document_client_errors(document: dict[str, Any], routes: Iterable[str]) -> dict[str, Any]:
    """Write the client-error contract into an OpenAPI document for ``routes`` (in place).

    Each route's POST gets the :data:`CLIENT_ERRORS` statuses with the ``ClientError`` schema,
    and 503 (the batcher's overload answer) with ``ServerError``. A request body is marked
    required when its schema requires something (an empty body is read as ``{}``, which only
    a schema without required fields accepts); BentoML leaves that out.

    Returns:
        ``document``, changed.
    """
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorDetail"] = _ERROR_DETAIL
    schemas["ClientError"] = _CLIENT_ERROR
    schemas["ServerError"] = _SERVER_ERROR
    for route in routes:
        operation = document.get("paths", {}).get(route, {}).get("post")
        if operation is None:
            continue
        body_schema = (
            operation.get("requestBody", {})
            .get("content", {})
            .get("application/json", {})
            .get("schema", {})
        )
        if body_schema.get("type") == "array" or body_schema.get("required"):
            operation["requestBody"]["required"] = True
        responses = operation.setdefault("responses", {})
        for status, description in CLIENT_ERRORS.items():
            responses[str(status)] = _json_response(description, "ClientError")
        responses["503"] = _json_response("Overloaded: try again later", "ServerError")
    return document


def _json_response(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }
