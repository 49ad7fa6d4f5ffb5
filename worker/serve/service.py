"""What the HTTP routes do, framework aside: authorise, validate, tokenise, submit, wait, score; health and info.

One :class:`Service` per process, created before the model loads (the probes answer meanwhile; ``/predict``
answers 503 until :meth:`Service.attach`). ``mode`` is ``serve`` (HTTP only: ready = model loaded, inference working,
accepting) or ``run`` (the streaming worker too: ``/readyz`` keeps the stream's meaning, see ``worker/metrics.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from worker import __version__
from worker.observability import get_logger
from worker.serve.api import ApiError, check_tokens, label_scores, parse_predict, parse_reload
from worker.serve.http_metrics import HttpMetrics
from worker.serve.lane import InferenceFailed, Lane, Overloaded, Unavailable
from worker.settings import Batching, Http, Input

if TYPE_CHECKING:
    from worker.health import HealthState
    from worker.metrics import WorkerMetrics
    from worker.model.runtime import SentimentModel
    from worker.stream.batcher import InferQueue

log = get_logger(__name__)

# Texts of more characters than this (all inputs of a request together) are tokenised off the event loop.
INLINE_TOKENIZE_CHARS = 16_384
RETRY_AFTER_OVERLOADED_S = 1
RETRY_AFTER_UNAVAILABLE_S = 5


class Service:
    def __init__(
        self, http: Http, input: Input, batching: Batching, metrics: WorkerMetrics, health: HealthState, *, mode: str
    ) -> None:
        """``http``: the API's settings (``self.settings``); ``input``: the text limits a stream record has too;
        ``batching``: reported by ``/info`` (``"auto"`` resolved by :meth:`attach`)."""
        self.settings = http
        self.input = input
        self.metrics = metrics
        self.health = health
        self.mode = mode
        self.http_metrics = HttpMetrics(metrics.registry)
        self.model: SentimentModel | None = None
        self.lane: Lane | None = None
        self.batching = batching  # resolved by attach(), once the model's provider is known
        self.rollout: Any = None
        self._api_key = http.http_api_key.get_secret_value() if http.http_api_key else None
        self._closing = False
        self._in_flight = 0
        self._idle = threading.Condition()

    # ---- lifecycle ------------------------------------------------------------------------------------------------
    def attach(self, model: SentimentModel, inbox: InferQueue, rollout: Any = None) -> Lane:
        """The model is loaded and its inference stage reads ``inbox``: ``/predict`` goes live. With ``rollout``
        (``worker/rollout/controller.py``) ``POST /admin/model`` reloads, and a swapped-in model is used from then on
        (to tokenise, for ``/info``)."""
        from worker.model.buckets import resolve_batching

        s = self.settings
        self.batching = resolve_batching(self.batching, model.provider)  # "auto": by the provider the session got
        self.rollout = rollout
        if rollout is not None:
            rollout.listeners.append(self._swapped)
        self.lane = Lane(
            inbox,
            max_queued=s.http_max_queued,
            on_release=lambda _n: self.http_metrics.queued.set(self.lane.held if self.lane else 0),
        )
        self.model = model
        return self.lane

    def _swapped(self, _old: SentimentModel, new: SentimentModel) -> None:
        self.model = new

    def close(self) -> None:
        """Refuse new ``/predict`` requests (503); those in flight go on."""
        self._closing = True
        if self.lane is not None:
            self.lane.close()

    @property
    def closing(self) -> bool:
        return self._closing

    def wait_idle(self, timeout: float) -> bool:
        """Block until no ``/predict`` request is in flight (or ``timeout``); True if idle."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.1))
        return True

    @contextlib.contextmanager
    def _tracked(self) -> Iterator[None]:
        with self._idle:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    # ---- checks ---------------------------------------------------------------------------------------------------
    def check_auth(self, authorization: str | None) -> None:
        """With ``http_api_key`` set, ``Authorization: Bearer <key>`` is required (401 otherwise)."""
        if self._api_key is None:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._api_key.encode()):
            raise ApiError(401, "unauthorized", "a valid API key is required: Authorization: Bearer <key>")

    def check_live(self) -> None:
        """503 unless a request can be answered now (model attached, not shutting down, inference working)."""
        if self._closing or (self.lane is not None and self.lane.closed):
            raise ApiError(503, "unhealthy", "the server is shutting down", retry_after=RETRY_AFTER_UNAVAILABLE_S)
        if self.model is None or self.lane is None:
            raise ApiError(503, "unhealthy", "the model is loading", retry_after=RETRY_AFTER_UNAVAILABLE_S)
        if not self._inference_ok():
            message = "the model's session is failing and being rebuilt"
            raise ApiError(503, "unhealthy", message, retry_after=RETRY_AFTER_UNAVAILABLE_S)

    def _inference_ok(self) -> bool:
        return bool(self.health.readiness()[1].get("inference_ok", True))

    # ---- predict --------------------------------------------------------------------------------------------------
    async def predict(self, data: Any) -> Any:
        with self._tracked():
            self.check_live()
            assert self.model is not None and self.lane is not None
            model, lane, s = self.model, self.lane, self.settings
            call = parse_predict(
                data,
                max_inputs=min(s.http_max_inputs, s.http_max_queued),  # more could never be admitted
                default_truncate=self.input.text_overflow == "truncate",
                max_text_chars=self.input.max_text_chars,
            )
            if sum(len(text) for text in call.texts) > INLINE_TOKENIZE_CHARS:
                ids, truncated = await asyncio.to_thread(model.tokenize, call.texts)
            else:
                ids, truncated = model.tokenize(call.texts)
            check_tokens(truncated, call, model.max_length)
            try:
                pending = lane.submit(ids, call.texts, truncated, model.vocab)
            except Overloaded as exc:
                raise ApiError(429, "overloaded", str(exc), retry_after=RETRY_AFTER_OVERLOADED_S) from None
            except Unavailable as exc:
                raise ApiError(503, "unhealthy", str(exc), retry_after=RETRY_AFTER_UNAVAILABLE_S) from None
            self.http_metrics.queued.set(lane.held)
            try:
                rows = await asyncio.wait_for(asyncio.wrap_future(pending.future), s.http_timeout_s)
            except TimeoutError:
                raise ApiError(
                    503,
                    "overloaded",
                    f"no answer from the model within {s.http_timeout_s:g} s (http_timeout_s)",
                    retry_after=RETRY_AFTER_OVERLOADED_S,
                ) from None
            except InferenceFailed as exc:
                if exc.transient:
                    raise ApiError(503, "unhealthy", str(exc), retry_after=RETRY_AFTER_UNAVAILABLE_S) from None
                raise ApiError(500, "backend", f"the model failed on this input: {exc}") from None
            self.http_metrics.classified([row.stream_in_batch for row in rows])
            results = [
                label_scores(r.labels or model.labels, r.probs, r.logits, call.function, call.top_k) for r in rows
            ]
            return results[0] if call.single else results

    # ---- admin ----------------------------------------------------------------------------------------------------
    def check_admin(self, authorization: str | None) -> None:
        """The admin routes are off (403) without ``http_api_key``, and need the key (401)."""
        if self._api_key is None:
            raise ApiError(403, "forbidden", "the admin routes are off: they need http_api_key")
        self.check_auth(authorization)

    async def reload_model(self, data: Any) -> tuple[int, dict[str, Any]]:
        """``POST /admin/model`` (after :meth:`check_admin`): reload, optionally another ``model`` / ``revision``;
        the outcome: 200 swapped or unchanged, 409 refused, 202 still running after ``http_timeout_s`` (it goes on:
        see the logs, ``/info``)."""
        if self.rollout is None:
            raise ApiError(503, "unhealthy", "the model is loading", retry_after=RETRY_AFTER_UNAVAILABLE_S)
        target = parse_reload(data)
        future = self.rollout.request("admin", **target)
        try:
            outcome = await asyncio.wait_for(asyncio.wrap_future(future), self.settings.http_timeout_s)
        except TimeoutError:
            return 202, {"outcome": "pending", "note": "still loading or checking; see the logs and /info"}
        body = outcome.as_dict()
        if outcome.outcome == "refused":
            return 409, {"error": f"{outcome.reason}: {outcome.detail}", "error_type": "refused", **body}
        return 200, body

    # ---- health, info ---------------------------------------------------------------------------------------------
    def status(self) -> tuple[bool, dict[str, Any]]:
        """``GET /health``: can ``/predict`` be answered now."""
        alive, live = self.health.liveness()
        inference_ok = self._inference_ok()
        accepting = not self._closing and self.lane is not None and not self.lane.closed
        ok = alive and inference_ok and accepting and self.model is not None
        return ok, {
            "status": "ok" if ok else "unavailable",
            "model_loaded": self.model is not None,
            "inference_ok": inference_ok,
            "accepting": accepting,
            "alive": alive,
            "failed_stage": live.get("failed_stage"),
            "queued_inputs": self.lane.held if self.lane is not None else 0,
        }

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """``GET /readyz``: the stream's readiness in ``run`` mode, :meth:`status` in ``serve`` mode."""
        if self.mode == "run":
            return self.health.readiness()
        ok, details = self.status()
        return ok, {"ready": ok, **details}

    def render_metrics(self) -> bytes:
        self.metrics.set_health(self.health)
        if self.mode == "serve":
            self.metrics.ready.set(1 if self.status()[0] else 0)
        return self.metrics.render()

    def info(self) -> dict[str, Any]:
        if self.model is None:
            raise ApiError(503, "unhealthy", "the model is loading", retry_after=RETRY_AFTER_UNAVAILABLE_S)
        m, s = self.model, self.settings
        return {
            # Text Embeddings Inference's keys
            "model_id": m.model_id,
            "model_sha": m.revision,
            "model_dtype": m.precision,
            "model_type": {
                "classifier": {
                    "id2label": {str(i): label for i, label in enumerate(m.labels)},
                    "label2id": {label: i for i, label in enumerate(m.labels)},
                }
            },
            "max_concurrent_requests": s.http_max_queued,
            "max_input_length": m.max_length,
            "max_batch_tokens": self.batching.max_batch_tokens,
            "max_batch_requests": self.batching.max_batch_size,
            "max_client_batch_size": s.http_max_inputs,
            "version": __version__,
            # ours
            "revision": m.revision,
            "onnx_sha256": m.sha256,
            "precision": m.precision,
            "provider": m.provider,
            "labels": list(m.labels),
            "max_batch_size": self.batching.max_batch_size,
            "inference_batch_size": self.batching.inference_batch_size,
            "max_queued_inputs": s.http_max_queued,
            "timeout_s": s.http_timeout_s,
            "mode": self.mode,
            "auth": self._api_key is not None,
        }
