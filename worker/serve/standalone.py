"""``sentiment-worker serve``: the HTTP API alone (no Kafka), on the same inference stage as the stream uses.

The process: the API server (and the metrics port, if set) → the model → an :class:`~worker.stream.batcher.InferQueue`
and its :class:`~worker.stream.infer.InferStage` on the ``sentiment-infer`` thread (the stream's batch policy:
requests that queue while the model is busy run together, up to ``max_batch_size`` / ``max_batch_tokens``; the
stream's circuit breaker: a session failing on everything is rebuilt, ``/health`` answers 503 meanwhile, and the
process exits 1 if that fails) → ``/predict`` goes live. The main thread is the "main loop" ``/healthz`` watches:
it beats every second while the inference thread is alive.

SIGHUP (and ``model_watch_s``, ``POST /admin/model``) reloads the model as ``run`` does (``worker/rollout/``): a
changed one is loaded beside the serving one, checked, and the stage switches between two model calls.

SIGINT/SIGTERM: stop accepting (new requests 503, the socket closes), answer the requests in flight (at most
``min(http_timeout_s, shutdown_timeout_s)``), end the stage, exit 0 (1 if requests were still waiting). A second
signal exits 1 at once.
"""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from worker.observability import get_logger, quiet_client_connection_errors, redact_secrets
from worker.serve.front import SERVE_DEFAULT_PORT, Servers
from worker.settings import Settings

log = get_logger(__name__)

BEAT_S = 1.0


class HttpOnly:
    """An HTTP-only worker; :meth:`run` blocks until stopped (a signal, or :meth:`stop` from another thread)."""

    def __init__(self, settings: Settings, *, model_dir: Path | None = None) -> None:
        self.settings = settings
        self.model_dir = model_dir
        self.servers: Servers | None = None
        self.rollout: Any = None  # worker.rollout.controller.Rollout, once the model is loaded
        self._stop = threading.Event()
        self._force = threading.Event()
        self.started = threading.Event()

    def stop(self, force: bool = False) -> None:
        if force or self._stop.is_set():
            self._force.set()
        self._stop.set()
        if self.servers is not None:
            self.servers.close()

    def run(self) -> int:
        from worker.app import load_model
        from worker.metrics import HealthState, WorkerMetrics
        from worker.model.buckets import resolve_batching
        from worker.model.resolve import resolve_model
        from worker.rollout.controller import Rollout
        from worker.rollout.shadow import Shadow
        from worker.stream.batcher import InferQueue
        from worker.stream.guard import Breaker, start_stage_threads
        from worker.stream.infer import InferStage
        from worker.stream.stats import RunStats
        from worker.stream.swap import ModelSlot

        s = self.settings
        redact_secrets(s.secret_values())
        log.info("settings", **s.safe_dump())
        quiet_client_connection_errors(s.log_level)
        metrics, health = WorkerMetrics(), HealthState()
        port = s.http_port if s.http_port is not None else SERVE_DEFAULT_PORT
        self.servers = servers = Servers(
            s.http, s.observability, metrics, health, mode="serve", http_port=port, input=s.input, batching=s.batching
        ).start()
        thread: threading.Thread | None = None
        inbox: InferQueue | None = None
        shadow = rollout = None
        try:
            with _Signals(self.stop, reload=self._reload):
                inference = s.inference
                model = load_model(self.model_dir or resolve_model(inference), inference)
                metrics.set_model_info(
                    model_id=model.model_id,
                    revision=model.revision,
                    provider=model.provider,
                    precision=model.precision,
                    sha256=model.sha256,
                )
                batching = resolve_batching(s.batching, model.provider)  # "auto": by the session's provider
                inbox = InferQueue.from_batching(batching)
                slot = ModelSlot(model)
                shadow = None
                if s.shadow_model:
                    shadow = Shadow(s.rollout, inference, s.batching, metrics.registry, load=load_model).start()
                stage = InferStage(
                    model,
                    inbox,
                    queue.Queue(maxsize=1),  # only the end marker: every item is answered by its reply
                    chunk_size=batching.chunk_size,
                    stats=RunStats(metrics),
                    on_failed=lambda item, error: log.error("inference_failed_without_reply", error=error),
                    breaker=Breaker.from_settings(inference, model, health=health, down=threading.Event()),
                    slot=slot,
                    on_scored=shadow.offer if shadow is not None else None,
                )
                drop = threading.Event()
                (thread,) = start_stage_threads(
                    {"sentiment-infer": stage.run}, drop, health=health, on_fatal=self._inference_down
                )
                health.set_model_loaded(True)
                target = inference
                if self.model_dir is not None:
                    target = inference.model_copy(update={"model": str(self.model_dir)})
                self.rollout = rollout = Rollout(
                    s.rollout, target, slot, load=load_model, wake=inbox.wake, metrics=metrics
                )
                rollout.start()
                servers.attach(model, inbox, rollout)
                self.started.set()
                log.info("serving", port=servers.port, model=model.model_id, provider=model.provider)
                del model  # the slot holds it: a swap releases it
                self._watch(thread, health)
                return self._shutdown(servers, inbox, thread, drop)
        finally:
            self.started.set()
            for part in (rollout, shadow):
                if part is not None:
                    part.stop()
            servers.stop("the server stopped")

    def _reload(self) -> None:
        if self.rollout is not None:
            self.rollout.signal()
        else:
            log.info("reload_ignored", reason="the model is still loading")

    def _inference_down(self, exc: BaseException) -> None:
        """The inference stage ended on an error (the session fails on a known-good text and rebuilding it did not
        help, or the loop raised): stop, exit 1."""
        log.error("inference_stage_ended", error=repr(exc))
        self.stop(force=True)

    def _watch(self, thread: threading.Thread, health: Any) -> None:
        while not self._stop.wait(BEAT_S):
            if thread.is_alive():
                health.beat()
            else:
                health.set_stage_failed("infer")
                log.error("stage_thread_died", stage="infer")
                self._force.set()
                return
        health.beat()

    def _shutdown(self, servers: Servers, inbox: Any, thread: threading.Thread, drop: threading.Event) -> int:
        s = self.settings
        log.info("shutdown_started", forced=self._force.is_set())
        servers.close()
        wait_s = min(s.http_timeout_s, s.shutdown_timeout_s)
        idle = True
        if not self._force.is_set():
            idle = servers.wait_idle(wait_s)
            while not idle and not self._force.is_set():  # a second signal ends the wait
                idle = servers.wait_idle(0.2)
        if self._force.is_set():
            drop.set()
            inbox.drop_and_end()
        else:
            inbox.end()
        thread.join(timeout=0.5 if self._force.is_set() else wait_s)
        held = servers.service.lane.held if servers.service and servers.service.lane else 0
        complete = idle and not self._force.is_set() and not thread.is_alive()
        log.info("server_stopped", complete=complete, waiting_inputs=held)
        return 0 if complete else 1


class _Signals:
    """SIGINT/SIGTERM → ``stop()``; a second one → ``stop(force=True)``; SIGHUP → ``reload()``. Only on the main
    thread."""

    def __init__(self, stop: Callable[..., None], reload: Callable[[], None]) -> None:
        self.stop = stop
        self.reload = reload
        self.count = 0
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        self.previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._reload)

    def _reload(self, _signum: int, _frame: FrameType | None) -> None:
        log.info("signal_received", signal="SIGHUP", action="reload the model")
        self.reload()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        log.info("signal_received", signal=signal.Signals(signum).name, action="force" if self.count > 1 else "drain")
        self.stop(force=self.count > 1)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def run_http_only(settings: Settings, model_dir: Path | None = None) -> int:
    return HttpOnly(settings, model_dir=model_dir).run()
