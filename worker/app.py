"""Assemble a worker from :class:`~worker.settings.Settings` and run it: the one place that puts the pieces together.

Two kinds of worker, built the same way (:class:`_Assembly`): the metrics and health servers (and the HTTP API) start
first, so probes answer while the model loads; then model resolution and loading, shadow mode, the model roll-out
(SIGHUP, ``model_watch_s``, ``POST /admin/model``: ``worker/rollout/``) and the signal handling; then

- :class:`Worker` (``run``): the stream pipeline (:class:`~worker.stream.runner.Runner`), with the HTTP API on the
  same inference stage when ``http_port`` is set;
- :class:`HttpOnly` (``serve``): the HTTP API alone (no Kafka), on the inference queue and stage the stream uses
  (:class:`~worker.stream.batcher.InferQueue`, :class:`~worker.stream.infer.InferStage`: its batching, its circuit
  breaker).

The CLI (``run``, ``serve``), ``run --processes N`` (``worker/supervisor/``), the demo (``devtools/``), the
benchmarks and the tests all build their workers here::

    worker = Worker(settings)            # nothing started yet
    threading.Thread(target=...).start() # e.g. something that later calls worker.stop()
    rc = worker.run()                    # blocks until stopped; 0 = everything acknowledged was committed

Signals (on the main thread): SIGINT/SIGTERM stop gracefully (``run``: the stream drains; ``serve``: no new requests,
those in flight are answered, at most ``min(http_timeout_s, shutdown_timeout_s)``); a second one forces the stop
(exit 1), and interrupts a start still loading the model. SIGHUP reloads the model: a changed one is loaded beside the
serving one, checked and swapped in between two model calls.
"""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from worker.model.loading import load_model
from worker.observability import get_logger, quiet_client_connection_errors, redact_secrets
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.health import HealthState
    from worker.metrics import WorkerMetrics
    from worker.rollout.controller import Rollout
    from worker.serve.front import Servers
    from worker.stream.batcher import InferQueue
    from worker.stream.common.ports import Model
    from worker.stream.common.swap import ModelSlot
    from worker.stream.encode import OutRecord
    from worker.stream.runner import Runner

log = get_logger(__name__)

BEAT_S = 1.0  # serve: the main thread's heartbeat while the inference thread is alive


class _Assembly:
    """What both kinds of worker share. A subclass builds its pipeline around the loaded model (:meth:`_build`: the
    slot a swap replaces the model in, the queue the roll-out wakes) and runs it until stopped (:meth:`_serve`)."""

    mode = "run"
    metrics: WorkerMetrics  # created by run(), with the health state
    health: HealthState

    def __init__(self, settings: Settings, *, model_dir: Path | None = None) -> None:
        self.settings = settings
        self.model_dir = model_dir  # an exported folder at hand: no model resolution
        self.servers: Servers | None = None
        self.rollout: Rollout | None = None
        self.started = threading.Event()  # the pipeline is built (or the run failed before that)

    def run(self) -> int:
        """Serve metrics, load the model, run until stopped; the exit code (0: a complete, graceful stop)."""
        from worker.health import HealthState
        from worker.metrics import WorkerMetrics
        from worker.model.resolve import resolve_model
        from worker.rollout.controller import Rollout
        from worker.rollout.shadow import Shadow
        from worker.serve.front import Servers

        s = self.settings
        redact_secrets(s.secret_values())
        log.info("settings", **s.safe_dump())
        quiet_client_connection_errors(s.log_level)
        self.metrics, self.health = WorkerMetrics(), HealthState()
        self.servers = Servers(
            s.http,
            s.observability,
            self.metrics,
            self.health,
            mode=self.mode,
            http_port=self._http_port(),
            input=s.input,
            batching=s.batching,
        ).start()
        shadow = None
        try:
            with _Signals(self._signalled, self._reload, up=self.started.is_set):
                inference = s.inference
                model = load_model(self.model_dir or resolve_model(inference), inference)
                if s.shadow_model:
                    shadow = Shadow(s.rollout, inference, s.batching, self.metrics.registry, load=load_model).start()
                slot, inbox = self._build(model, on_scored=shadow.offer if shadow is not None else None)
                target = inference  # what a reload resolves and loads: the model given, or the folder at hand
                if self.model_dir is not None:
                    target = inference.model_copy(update={"model": str(self.model_dir)})
                self.rollout = Rollout(s.rollout, target, slot, load=load_model, wake=inbox.wake, metrics=self.metrics)
                self.rollout.start()
                self.servers.attach(model, inbox, self.rollout)
                del model  # the slot holds it: a swap releases it
                self.started.set()
                return self._serve()
        finally:
            self.started.set()
            for part in (self.rollout, shadow):
                if part is not None:
                    part.stop()
            self.servers.stop(f"the {'worker' if self.mode == 'run' else 'server'} stopped")
            self._release()

    def _http_port(self) -> int | None:
        return self.settings.http_port

    def _build(self, model: Model, on_scored: Callable[..., None] | None) -> tuple[ModelSlot, InferQueue]:
        raise NotImplementedError

    def _serve(self) -> int:
        raise NotImplementedError

    def stop(self, force: bool = False) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        """After the servers stopped: what else the pipeline holds (the default: nothing)."""

    def _signalled(self, force: bool) -> None:
        """SIGINT/SIGTERM: the stop a signal asks for (the default: :meth:`stop`)."""
        self.stop(force)

    def _reload(self) -> None:
        if self.rollout is not None:
            self.rollout.signal()
        else:
            log.info("reload_ignored", reason="the model is still loading")


class Worker(_Assembly):
    """One streaming worker: consumer group member → inference queue → ONNX model → producers.

    ``model_dir`` skips model resolution (an exported folder already at hand); ``on_output`` is called on the
    producer's IO thread for every enriched record once the broker acknowledged it.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        model_dir: Path | None = None,
        on_output: Callable[[OutRecord], None] | None = None,
    ) -> None:
        settings.require_input()
        super().__init__(settings, model_dir=model_dir)
        self.on_output = on_output
        self.runner: Runner | None = None
        self._tracer: Any = None  # the inference stage's span tracer (OTEL_*: docs/tracing.md), once opened
        self._stopper: Any = None  # what a signal stops: the runner, or the API first and then the runner
        self._lock = threading.Lock()
        self._stop_requested: bool | None = None  # None: not asked; else the requested `force`

    def _build(self, model: Model, on_scored: Callable[..., None] | None) -> tuple[ModelSlot, InferQueue]:
        from worker.stream.runner import Runner
        from worker.tracing.setup import open_tracer

        self._tracer = open_tracer(consumer_group=self.settings.group_id)  # off: a no-op
        runner = Runner(
            self.settings,
            model,
            metrics=self.metrics,
            health=self.health,
            on_output=self.on_output,
            on_scored=on_scored,
            tracer=self._tracer,
        )
        assert self.servers is not None
        self._stopper = self.servers.stopper(runner)
        with self._lock:
            self.runner = runner
            if self._stop_requested is not None:
                runner.stop(force=self._stop_requested)
        return runner.slot, runner.inbox

    def _serve(self) -> int:
        assert self.runner is not None
        return self.runner.run()

    def _release(self) -> None:
        if self._tracer is not None:
            self._tracer.close()  # the spans still buffered are exported

    def wait_started(self, timeout: float | None = None) -> Runner | None:
        """Block until the pipeline is built (model loaded) or the run failed before that; the runner if built."""
        self.started.wait(timeout)
        return self.runner

    def stop(self, force: bool = False) -> None:
        """Graceful stop (drain, produce, commit); ``force`` skips the drain. Safe before ``run`` got going."""
        with self._lock:
            if self.runner is None:
                self._stop_requested = force or bool(self._stop_requested)
                return
        self.runner.stop(force=force)

    def _signalled(self, force: bool) -> None:
        """With the HTTP API the API stops accepting first and the stream drains once its requests are answered."""
        if self._stopper is None:
            self.stop(force)
        else:
            self._stopper.stop(force=force)


class HttpOnly(_Assembly):
    """The HTTP API alone (``serve``); :meth:`run` blocks until stopped (a signal, or :meth:`stop`). The main thread
    is the "main loop" ``/healthz`` watches: it beats every second while the inference thread is alive."""

    mode = "serve"

    def __init__(self, settings: Settings, *, model_dir: Path | None = None) -> None:
        super().__init__(settings, model_dir=model_dir)
        self._stop = threading.Event()
        self._force = threading.Event()
        self._drop = threading.Event()
        self._thread: threading.Thread | None = None
        self._inbox: InferQueue | None = None
        self._serving: dict[str, str] = {}

    def _http_port(self) -> int:
        from worker.serve.front import SERVE_DEFAULT_PORT

        return self.settings.http_port if self.settings.http_port is not None else SERVE_DEFAULT_PORT

    def _build(self, model: Model, on_scored: Callable[..., None] | None) -> tuple[ModelSlot, InferQueue]:
        from worker.model.buckets import resolve_batching
        from worker.stream.batcher import InferQueue
        from worker.stream.common.guard import Breaker, start_stage_threads
        from worker.stream.common.ports import model_info
        from worker.stream.common.stats import RunStats
        from worker.stream.common.swap import ModelSlot
        from worker.stream.infer import InferStage

        s = self.settings
        self.metrics.set_model_info(**model_info(model))
        batching = resolve_batching(s.batching, model.provider)  # "auto": by the session's provider
        self._inbox = inbox = InferQueue.from_batching(batching)
        slot = ModelSlot(model)
        stage = InferStage(
            model,
            inbox,
            queue.Queue(maxsize=1),  # only the end marker: every item is answered by its reply
            chunk_size=batching.chunk_size,
            stats=RunStats(self.metrics),
            on_failed=lambda item, error: log.error("inference_failed_without_reply", error=error),
            breaker=Breaker.from_settings(s.inference, model, health=self.health, down=threading.Event()),
            slot=slot,
            on_scored=on_scored,
        )
        (self._thread,) = start_stage_threads(
            {"sentiment-infer": stage.run}, self._drop, health=self.health, on_fatal=self._inference_down
        )
        self.health.set_model_loaded(True)
        self._serving = {"model": model.model_id, "provider": model.provider}
        return slot, inbox

    def _serve(self) -> int:
        assert self.servers is not None and self._thread is not None
        log.info("serving", port=self.servers.port, **self._serving)
        self._watch(self._thread)
        return self._shutdown(self.servers, self._thread)

    def stop(self, force: bool = False) -> None:
        if force or self._stop.is_set():
            self._force.set()
        self._stop.set()
        if self.servers is not None:
            self.servers.close()

    def _inference_down(self, exc: BaseException) -> None:
        """The inference stage ended on an error (the session fails on a known-good text and rebuilding it did not
        help, or the loop raised): stop, exit 1."""
        log.error("inference_stage_ended", error=repr(exc))
        self.stop(force=True)

    def _watch(self, thread: threading.Thread) -> None:
        while not self._stop.wait(BEAT_S):
            if thread.is_alive():
                self.health.beat()
            else:
                self.health.set_stage_failed("infer")
                log.error("stage_thread_died", stage="infer")
                self._force.set()
                return
        self.health.beat()

    def _shutdown(self, servers: Servers, thread: threading.Thread) -> int:
        """No new requests; those in flight answered (a second signal ends the wait); the stage ended."""
        assert self._inbox is not None
        log.info("shutdown_started", forced=self._force.is_set())
        servers.close()
        wait_s = min(self.settings.http_timeout_s, self.settings.shutdown_timeout_s)
        idle = True
        if not self._force.is_set():
            idle = servers.wait_idle(wait_s)
            while not idle and not self._force.is_set():
                idle = servers.wait_idle(0.2)
        if self._force.is_set():
            self._drop.set()
            self._inbox.drop_and_end()
        else:
            self._inbox.end()
        thread.join(timeout=0.5 if self._force.is_set() else wait_s)
        held = servers.service.lane.held if servers.service and servers.service.lane else 0
        complete = idle and not self._force.is_set() and not thread.is_alive()
        log.info("server_stopped", complete=complete, waiting_inputs=held)
        return 0 if complete else 1


def run_worker(settings: Settings, model_dir: Path | None = None) -> int:
    """Build a streaming worker from settings and run it on this thread until a signal stops it."""
    return Worker(settings, model_dir=model_dir).run()


def run_http_only(settings: Settings, model_dir: Path | None = None) -> int:
    """Build the HTTP-only service from settings and run it on this thread until a signal stops it."""
    return HttpOnly(settings, model_dir=model_dir).run()


class _Signals:
    """SIGINT/SIGTERM → ``stop(force)``: the first asks for a graceful stop (made once the pipeline is up when it
    isn't yet), a second forces it, and interrupts a start that isn't up yet (``KeyboardInterrupt``: nothing to
    drain). SIGHUP → ``reload()``. Only on the main thread; the handlers they replaced are put back on exit."""

    def __init__(self, stop: Callable[[bool], None], reload: Callable[[], None], up: Callable[[], bool]) -> None:
        self.stop = stop
        self.reload = reload
        self.up = up
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
        force = self.count > 1
        log.info("signal_received", signal=signal.Signals(signum).name, action="force" if force else "drain")
        if force and not self.up():
            raise KeyboardInterrupt
        self.stop(force)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
