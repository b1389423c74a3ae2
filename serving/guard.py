"""A pure-ASGI guard in front of BentoML's routes: refuse malformed requests, answer predictions.

BentoML 1.4 reads a body whole, parses a list body with ``json.loads`` outside its validation
and logs every refused request at ERROR with a traceback; a malformed body (invalid UTF-8, a
huge integer, deep nesting, multipart without a boundary) then becomes a 500. So
:class:`RequestGuard`, added with ``Service.add_asgi_middleware`` (inside BentoML's metrics
middleware, which still counts its answers), checks every POST to the service's API routes:

1. the size, from ``Content-Length`` and again while the body streams in (chunked bodies): over
   ``max_body_bytes`` is a 413 before anything is parsed, and the rest is never buffered;
2. the content type: only ``application/json`` (charset, if given, UTF-8), else a 415;
3. the JSON itself: strict UTF-8, valid JSON with no trailing data, integers the parser can
   convert, at most :data:`MAX_JSON_DEPTH` levels, and no lone UTF-16 surrogate
   (``"\\ud800"``) in a key or a string, else a 400 naming where.

A route given an :data:`Answer` is then answered here, from the JSON already parsed: the answer
validates, scores and returns the body of a 200, or raises :class:`Refused` (a 4xx),
:class:`Unavailable` (a 503) or anything else (a 500, logged with its traceback). BentoML's
per-request layer (routing, its own parse and validation, dependency injection, response
models) costs more than the model here: see :mod:`serving.service`. The other routes go on to
BentoML with the body already read, and its 4xx answers are rewritten into the bounded body of
:mod:`serving.errors`. Every refused request is logged once, on one line, with locations and
types only. The served OpenAPI document (``/docs.json``) gets the same error contract.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from pydantic import ValidationError

from serving.errors import (
    Problem,
    bounded_problem,
    describe,
    document_client_errors,
    error_body,
    problems_from_response,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# The body of a 200 for a request's parsed JSON body (None when the body is empty).
Answer = Callable[[Any], Awaitable[bytes]]

MAX_JSON_DEPTH = 32
JSON_MEDIA_TYPE = "application/json"
# BentoML's logger of request exceptions (bentoml._internal.server.http_app.log_exception).
BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"
# JSON can carry a lone surrogate only as an escape; look for the rest only when one is there.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")

logger = logging.getLogger("loopline.guard")


class Refused(Exception):
    """A request the guard answers itself: its status, a summary and the problems."""

    def __init__(
        self, status: int, problem: Problem, *more: Problem, summary: str = "invalid request"
    ) -> None:
        super().__init__(problem.msg)
        self.status = status
        self.problem = problem
        self.problems = [problem, *more]
        self.summary = summary


class Unavailable(Exception):
    """The service cannot take the request now (overload, shutting down): a 503."""


RETRY_AFTER_S = 1


def check_content_type(header: str | None) -> None:
    """Accept no content type (BentoML reads it as JSON) or ``application/json`` in UTF-8.

    Raises:
        Refused: 415 naming the header and the expected form.
    """
    if header is None:
        return
    media_type, *params = (part.strip().lower() for part in header.split(";"))
    charsets = [p.partition("=")[2].strip('"') for p in params if p.startswith("charset=")]
    if media_type == JSON_MEDIA_TYPE and all(c in ("utf-8", "utf8") for c in charsets):
        return
    raise Refused(
        415,
        bounded_problem(
            ["header", "content-type"],
            "expected application/json (charset, if given, utf-8)",
            "media_type_unsupported",
        ),
    )


def check_json(body: bytes) -> Any:
    """Parse ``body`` as JSON that the request models (and BentoML's parser) can take safely.

    An empty body passes as None (BentoML reads it as ``{}``).

    Returns:
        The parsed value.

    Raises:
        Refused: 400 naming the problem: ``utf8_invalid``, ``json_invalid`` (with its line and
            column; trailing data included), ``json_too_deep``, ``json_number_invalid`` (an
            integer too long to convert) or ``string_unicode`` (a lone surrogate, at its path).
    """
    if not body:
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _bad_body(f"not valid UTF-8 (byte {err.start})", "utf8_invalid") from err
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        reason = "trailing data after the JSON value" if err.msg == "Extra data" else err.msg
        where = f"line {err.lineno} column {err.colno}"
        raise _bad_body(f"invalid JSON at {where}: {reason}", "json_invalid") from err
    except RecursionError as err:
        raise _too_deep() from err
    except ValueError as err:  # the interpreter's limit on integer digits
        raise _bad_body(
            "an integer literal too long to be a number", "json_number_invalid"
        ) from err
    if _deeper_than(value, MAX_JSON_DEPTH):
        raise _too_deep()
    if _SURROGATE_ESCAPE.search(text):
        _check_text(value)
    return value


def _bad_body(msg: str, type_: str) -> Refused:
    return Refused(400, bounded_problem(["body"], msg, type_))


def _too_deep() -> Refused:
    return _bad_body(f"JSON nested deeper than {MAX_JSON_DEPTH} levels", "json_too_deep")


def _deeper_than(value: object, limit: int) -> bool:
    level: list[object] = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        children: list[object] = []
        for item in level:
            members = item.values() if isinstance(item, dict) else item
            children.extend(m for m in members if isinstance(m, dict | list))  # type: ignore[attr-defined]
        level = children
    return False


def _check_text(value: object) -> None:
    """Refuse the first key or string holding a lone surrogate, naming its path."""
    root: tuple[str | int, ...] = ("root",) if isinstance(value, list) else ()
    stack: list[tuple[tuple[str | int, ...], object]] = [(root, value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str) and not _is_unicode(item):
            raise Refused(400, bounded_problem(path or ["body"], _SURROGATE_MSG, "string_unicode"))
        if isinstance(item, dict):
            for key, member in item.items():
                if not _is_unicode(key):
                    msg = "an object key holds a lone UTF-16 surrogate; expected Unicode text"
                    raise Refused(400, bounded_problem(path or ["body"], msg, "string_unicode"))
                stack.append(((*path, key), member))
        elif isinstance(item, list):
            stack.extend(((*path, index), member) for index, member in enumerate(item))


_SURROGATE_MSG = "a lone UTF-16 surrogate (\\ud800-\\udfff); expected Unicode text"


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class RequestGuard:
    """ASGI middleware enforcing :func:`check_content_type`, the size limit and :func:`check_json`.

    Args:
        app: the ASGI app behind (BentoML's).
        routes: paths of the API routes to guard (POST only); other paths pass untouched.
        max_body_bytes: the largest body accepted; a larger one is a 413.
        docs_path: the OpenAPI document's path, whose client errors are filled in.
        answers: the guarded routes answered here rather than by the app behind.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Iterable[str],
        max_body_bytes: int,
        docs_path: str,
        answers: Mapping[str, Answer] | None = None,
    ) -> None:
        self.app = app
        self.routes = frozenset(routes)
        self.max_body_bytes = max_body_bytes
        self.docs_path = docs_path
        self.answers = dict(answers or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Guard a POST to an API route, document errors on the docs path, pass the rest."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif scope["path"] in self.routes and scope["method"] == "POST":
            await self._guard(scope, receive, send)
        elif scope["path"] == self.docs_path and scope["method"] == "GET":
            await self.app(scope, receive, _document_errors(send, self.routes))
        else:
            await self.app(scope, receive, send)

    async def _guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        try:
            check_content_type(headers.get("content-type"))
            self._check_declared_length(headers.get("content-length"))
            body = await self._read_body(receive)
            if body is None:
                return  # the client went away
            value = check_json(body)
            answer = self.answers.get(scope["path"])
            if answer is None:
                await self.app(scope, _replay(body, receive), _bound_client_errors(scope, send))
                return
            payload = await answer(value)
        except Refused as refused:
            await _refuse(scope, send, refused.status, refused.summary, refused.problems)
            return
        except Unavailable as err:
            retry = [(b"retry-after", str(RETRY_AFTER_S).encode())]
            await _respond(send, 503, _server_error(f"service unavailable: {err}"), retry)
            return
        except Exception:  # a server error: logged whole, answered without detail
            logger.exception("%s %s failed", scope["method"], scope["path"])
            await _respond(send, 500, _server_error(SERVER_ERROR))
            return
        await _respond(send, 200, payload)

    def _check_declared_length(self, header: str | None) -> None:
        if header is None:
            return
        if not header.isdigit():
            raise Refused(
                400,
                bounded_problem(
                    ["header", "content-length"],
                    "expected a non-negative integer",
                    "content_length_invalid",
                ),
            )
        if int(header) > self.max_body_bytes:
            raise self._too_large()

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self) -> Refused:
        return Refused(
            413,
            bounded_problem(
                ["body"],
                f"request body over {self.max_body_bytes} bytes (LOOPLINE_SERVING__MAX_BODY_BYTES)",
                "body_too_large",
            ),
        )


_BODY_HEADERS = (b"content-length", b"content-type")
SERVER_ERROR = "an unexpected error has occurred; the server log has the details"


def _server_error(message: str) -> bytes:
    return json.dumps({"error": message}).encode("utf-8")


async def _respond(
    send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Send a whole JSON response; ``headers`` keep all but their own length and type."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *((k, v) for k, v in headers if k.lower() not in _BODY_HEADERS),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body already read, then whatever comes next."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


async def _refuse(
    scope: Scope,
    send: Send,
    status: int,
    summary: str,
    problems: list[Problem],
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    logger.warning(
        "refused %s %s: %d %s", scope["method"], scope["path"], status, describe(problems)
    )
    await _respond(send, status, error_body(summary, problems), headers)


class _HeldResponse:
    """A ``send`` that holds a whole response whose status ``held`` accepts, then hands its start
    message and body to ``rewrite``; other responses pass untouched."""

    def __init__(
        self,
        send: Send,
        held: Callable[[int], bool],
        rewrite: Callable[[Message, bytes], Awaitable[None]],
    ) -> None:
        self._send = send
        self._held = held
        self._rewrite = rewrite
        self._start: Message | None = None
        self._chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and self._held(message["status"]):
            self._start = message
            return
        if self._start is None or message["type"] != "http.response.body":
            await self._send(message)
            return
        self._chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            await self._rewrite(self._start, b"".join(self._chunks))


def _bound_client_errors(scope: Scope, send: Send) -> Send:
    """A ``send`` that rewrites BentoML's 4xx answers into the bounded error body."""

    async def rewrite(start: Message, body: bytes) -> None:
        status: int = start["status"]
        summary, problems = problems_from_response(status, body)
        await _refuse(scope, send, status, summary, problems, start.get("headers", []))

    return _HeldResponse(send, lambda status: 400 <= status < 500, rewrite)


def _document_errors(send: Send, routes: Iterable[str]) -> Send:
    """A ``send`` that fills the client-error contract into the OpenAPI document."""

    async def rewrite(start: Message, body: bytes) -> None:
        document = document_client_errors(json.loads(body), routes)
        await _respond(
            send, start["status"], json.dumps(document).encode("utf-8"), start.get("headers", [])
        )

    return _HeldResponse(send, lambda status: status == 200, rewrite)


class QuietClientErrors(logging.Filter):
    """Drop BentoML's ERROR-with-traceback records of requests it refused with a 4xx.

    BentoML logs each refused request with its traceback, and pydantic's message in it quotes
    the refused values: the guard logs such a request once instead, without any value. Real
    server errors (5xx) keep their traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a record of a client error, True for everything else."""
        if not record.exc_info or record.exc_info[1] is None:
            return True
        error = record.exc_info[1]
        if isinstance(error, ValidationError):
            return False
        code = getattr(getattr(error, "error_code", None), "value", None)
        return not (isinstance(code, int) and 400 <= code < 500)


def quiet_client_errors() -> None:
    """Install :class:`QuietClientErrors` on BentoML's request logger (once per process)."""
    request_logger = logging.getLogger(BENTOML_REQUEST_LOGGER)
    if not any(isinstance(f, QuietClientErrors) for f in request_logger.filters):
        request_logger.addFilter(QuietClientErrors())
