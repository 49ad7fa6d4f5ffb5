"""The FastAPI app: ``POST /predict``, ``GET /info``, ``GET /health``, and ``/metrics``, ``/healthz``, ``/readyz``.

Needs the ``[http]`` extra (fastapi, starlette, uvicorn). Every answer other than 200 has TEI's error shape
``{"error": ..., "error_type": ...}`` (unknown routes, wrong methods and unexpected failures too): a bad request
gets a 4xx, never a 500, and nothing a client sends stops the process. The body of ``/predict`` is read as a
stream against ``http_max_body_bytes`` (413 from the ``Content-Length`` alone, or as soon as a chunked body passes
the limit), then parsed by :mod:`worker.serve.api`. ``/openapi.json`` documents the routes.

A request refused before its body was read whole (413, and 401/503 on the routes that take a body) gets its answer
at once, whole, with ``Connection: close``; the response then stays open while the rest of the body is read and
thrown away (:class:`DrainingAnswer`), at most :func:`drain_bound` bytes (16 MiB, or 4x ``http_max_body_bytes`` if
more) for at most ``DRAIN_MAX_S`` seconds, in uvicorn's 64 KiB flow-control steps (memory stays flat). A client
that reads before it sends the body (curl, which asks ``Expect: 100-continue`` and never gets a ``100 Continue``
here) reads the answer at once; one that sends its whole body first (Python's urllib, requests) reads it after, as
the connection closes with nothing left unread (closing with the body unread gave it a connection reset). A body
declared beyond the bound is not read at all, one that goes past it is cut off there.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker import __version__
from worker.observability import get_logger
from worker.serve.api import ApiError, ErrorBody, LabelScore, PredictRequest, parse_body
from worker.serve.service import Service

log = get_logger(__name__)

OPS_ROUTES = ("/metrics", "/healthz", "/readyz")
API_ROUTES = ("/predict", "/info", "/health", "/admin/model", "/openapi.json", "/docs")
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "invalid JSON, or empty inputs (error_type empty)"),
        (401, "API key missing or wrong (with http_api_key set)"),
        (413, "body, number of inputs or a text (with truncate false) over its limit"),
        (422, "wrong types: inputs must be a string or a list of strings"),
        (429, "too many inputs waiting for the model (Retry-After)"),
        (503, "loading, shutting down, inference failing, or no answer within http_timeout_s (Retry-After)"),
    )
}


def error_response(exc: ApiError, *, close: bool = False) -> JSONResponse:
    headers = exc.headers()
    if close:
        headers["Connection"] = "close"
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


DRAIN_MIN_BYTES = 16 * 1024 * 1024  # what an over-limit (or refused) body may still be read, to be thrown away ...
DRAIN_LIMIT_FACTOR = 4  # ... or this many times http_max_body_bytes, if more
DRAIN_MAX_S = 10.0  # and for no longer than this


def drain_bound(limit: int) -> int:
    """Bytes of a refused body the server reads and throws away after its answer."""
    return max(DRAIN_MIN_BYTES, DRAIN_LIMIT_FACTOR * limit)


class BodyTooLarge(Exception):
    """The body is over the limit: ``error`` is the 413; ``seen`` bytes of it were read, ``ended``: all of it."""

    def __init__(self, error: ApiError, seen: int, ended: bool) -> None:
        super().__init__(error.message)
        self.error = error
        self.seen = seen
        self.ended = ended


async def read_body(request: Request, limit: int) -> bytes:
    """The request body; :class:`BodyTooLarge` as soon as it is known to be over ``limit`` bytes (never held
    whole then)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ApiError(400, "validation", "invalid Content-Length")
        if int(declared) > limit:
            raise BodyTooLarge(ApiError(413, "validation", _too_large(int(declared), limit)), 0, False)
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk, more = message.get("body", b""), bool(message.get("more_body", False))
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(ApiError(413, "validation", _too_large(size, limit, at_least=more)), size, not more)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_or_refuse(request: Request, limit: int) -> bytes | Response:
    """The body, or the 413 answer (:func:`refuse`)."""
    try:
        return await read_body(request, limit)
    except BodyTooLarge as unread:
        return refuse(request, unread.error, limit, seen=unread.seen, ended=unread.ended)
    except ClientDisconnect:  # gone before its body ended: nobody reads this answer
        return error_response(ApiError(400, "validation", "the client disconnected before its body ended"), close=True)


def refuse(request: Request, error: ApiError, limit: int, *, seen: int = 0, ended: bool = False) -> Response:
    """The answer to a request refused before its body was read whole (see the module's doc): sent at once, whole;
    then the rest of the body is read and thrown away, unless the client waits for ``100 Continue`` or the body
    is declared beyond :func:`drain_bound`; then the connection closes."""
    budget = drain_bound(limit) - seen
    declared = request.headers.get("content-length", "").strip()
    if ended or (request.headers.get("expect", "").strip().lower() == "100-continue" and seen == 0):
        budget = 0  # nothing more will come (a 100-continue client sends nothing once it has a final answer)
    elif declared.isdigit() and int(declared) > drain_bound(limit):
        budget = 0  # it can't be read to its end: don't start
    return DrainingAnswer(error, budget)


class DrainingAnswer(JSONResponse):
    """An error answer sent whole at once (``Connection: close``); the response then stays open while the rest of
    the request body is read and thrown away (at most ``budget`` bytes and ``DRAIN_MAX_S``) and ends after it, so
    the connection closes with nothing unread when the body ended: the client reads the answer, not a reset."""

    def __init__(self, error: ApiError, budget: int) -> None:
        super().__init__(error.body(), status_code=error.status, headers={**error.headers(), "Connection": "close"})
        self.budget = budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": self.budget > 0})
        if self.budget > 0:
            await _discard(receive, self.budget)
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _discard(receive: Receive, budget: int) -> bool:
    """Read the rest of the body and throw it away; True when it ended within ``budget`` bytes and DRAIN_MAX_S."""
    read = 0
    try:
        async with asyncio.timeout(DRAIN_MAX_S):
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return False  # http.disconnect: the client went away
                read += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return read <= budget
                if read > budget:
                    return False
    except TimeoutError:
        return False


def _too_large(size: int, limit: int, *, at_least: bool = False) -> str:
    return f"the body has {'more than ' if at_least else ''}{size} bytes; the limit is {limit} (http_max_body_bytes)"


class Observe:
    """ASGI middleware: count every answer by route and status code, and its time."""

    def __init__(self, app: ASGIApp, service: Service, routes: tuple[str, ...]) -> None:
        self.app = app
        self.service = service
        self.routes = set(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = path if path in self.routes else "other"
        status = 500
        started = time.perf_counter()

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        metrics = self.service.http_metrics
        metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_observed)
        finally:
            metrics.in_flight.dec()
            metrics.answered(route, status, time.perf_counter() - started)


def create_app(service: Service, *, api: bool = True) -> ASGIApp:
    """The API app (``api``) or only the operations routes (``/metrics``, ``/healthz``, ``/readyz``)."""
    app = FastAPI(
        title="sentiment-worker",
        version=__version__,
        description="Sentiment classification, compatible with Text Embeddings Inference's POST /predict.",
        docs_url="/docs" if api else None,
        redoc_url=None,
        openapi_url="/openapi.json" if api else None,
    )
    _error_handlers(app)
    _ops_routes(app, service)
    if api:
        _api_routes(app, service)
        _document_predict_body(app)
    return Observe(app, service, (*OPS_ROUTES, *(API_ROUTES if api else ())))


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "validation")
        return JSONResponse(
            {"error": str(exc.detail), "error_type": kind}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": str(exc.errors()[:3]), "error_type": "validation"}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("http_request_failed", error=repr(exc))
        return JSONResponse({"error": "internal error", "error_type": "backend"}, status_code=500)


def _ops_routes(app: FastAPI, service: Service) -> None:
    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(service.render_metrics(), media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        ok, details = service.health.liveness()
        return JSONResponse(details, status_code=200 if ok else 503, headers={"Cache-Control": "no-store"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        ok, details = service.readiness()
        return JSONResponse(details, status_code=200 if ok else 503, headers={"Cache-Control": "no-store"})


def _api_routes(app: FastAPI, service: Service) -> None:
    limit = service.settings.http_max_body_bytes

    @app.post(
        "/predict",
        summary="Classify one text or a list of texts",
        description='`{"inputs": "text"}` → every label with its score, best first; `{"inputs": ["a", "b"]}` → one '
        "such list per text. Options: `truncate`, `raw_scores` (TEI) and `parameters.top_k`, "
        "`parameters.function_to_apply` (Hugging Face Inference API).",
        response_model=None,
        responses={200: {"model": list[LabelScore] | list[list[LabelScore]], "description": "scores"}, **ERRORS},
    )
    async def predict(request: Request) -> Response:
        try:
            service.check_auth(request.headers.get("authorization"))
            service.check_live()
        except ApiError as exc:
            return refuse(request, exc, limit)  # the body is unread: answer, then read (bounded) and drop it
        body = await read_or_refuse(request, limit)
        if isinstance(body, Response):
            return body
        try:
            result = await service.predict(parse_body(body))
        except ApiError as exc:
            return error_response(exc)
        return JSONResponse(result)

    @app.get("/info", summary="Model and limits (TEI's keys, plus provider, ONNX sha256, precision)")
    async def info(request: Request) -> JSONResponse:
        service.check_auth(request.headers.get("authorization"))
        return JSONResponse(service.info())

    @app.post(
        "/admin/model",
        summary="Reload the model (hot swap behind the validation gate); needs http_api_key (403 without it)",
        description='Body: empty, or `{"model": "<hub id or dir>", "revision": "<rev>"}` (another model or revision). '
        "200: swapped or unchanged; 409: refused (the serving model stays); 202: still loading after http_timeout_s.",
        responses={409: {"model": ErrorBody}, 403: {"model": ErrorBody}, **ERRORS},
    )
    async def admin_model(request: Request) -> JSONResponse:
        try:
            service.check_admin(request.headers.get("authorization"))
        except ApiError as exc:
            return refuse(request, exc, limit)
        body = await read_or_refuse(request, limit)
        if isinstance(body, Response):
            return body
        status, answer = await service.reload_model(parse_body(body) if body.strip() else None)
        return JSONResponse(answer, status_code=status)

    @app.get(
        "/health",
        summary="200 when /predict can be answered now, else 503 (never needs the API key)",
        responses={503: {"model": ErrorBody}},
    )
    async def health() -> JSONResponse:
        ok, details = service.status()
        if ok:
            return JSONResponse(details)
        reason = "the model is loading" if not details["model_loaded"] else "not accepting requests"
        if details["model_loaded"] and not details["inference_ok"]:
            reason = "the model's session is failing"
        return JSONResponse({"error": reason, "error_type": "unhealthy", **details}, status_code=503)


def _document_predict_body(app: FastAPI) -> None:
    """The body of /predict is read by hand (size limit first), so its schema is added to the OpenAPI document."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        body = PredictRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(body.pop("$defs", {}))
        components["PredictRequest"] = body
        schema["paths"]["/predict"]["post"]["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}},
        }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
