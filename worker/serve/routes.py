"""The FastAPI app: ``POST /predict``, ``GET /info``, ``GET /health``, and ``/metrics``, ``/healthz``, ``/readyz``.

Needs the ``[http]`` extra (fastapi, starlette, uvicorn). Every answer other than 200 has TEI's error shape
``{"error": ..., "error_type": ...}`` (unknown routes, wrong methods and unexpected failures too): a bad request
gets a 4xx, never a 500, and nothing a client sends stops the process. The body of ``/predict`` is read as a
stream against ``http_max_body_bytes`` (413 from the ``Content-Length`` alone, or as soon as a chunked body passes
the limit), then parsed by :mod:`worker.serve.api`. ``/openapi.json`` documents the routes.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
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


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 as soon as it is known to be over ``limit`` bytes (never read whole then)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ApiError(400, "validation", "invalid Content-Length")
        if int(declared) > limit:
            raise ApiError(413, "validation", _too_large(int(declared), limit))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "validation", _too_large(size, limit, at_least=True))
        chunks.append(chunk)
    return b"".join(chunks)


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
            body = await read_body(request, limit)
        except ApiError as exc:
            return error_response(exc, close=True)  # the body was not read (whole): don't read the rest, close
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
            body = await read_body(request, limit)
        except ApiError as exc:
            return error_response(exc, close=True)  # the body was not read (whole): don't read the rest, close
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
