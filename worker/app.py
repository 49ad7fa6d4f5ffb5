"""Assemble a worker from :class:`~worker.settings.Settings` and run it.

The one place that puts the pieces together: the metrics/health server, model resolution and loading, the
stream pipeline (:class:`~worker.stream.runner.Runner`) and the signal handling. The CLI (``run``, ``demo``),
the benchmarks and the tests all start a worker through here::

    worker = Worker(settings)            # nothing started yet
    threading.Thread(target=...).start() # e.g. something that later calls worker.stop()
    rc = worker.run()                    # blocks until stopped; 0 = everything acknowledged was committed

SIGINT/SIGTERM (when run on the main thread) stop it gracefully; a second signal forces the stop. SIGHUP reloads the
model: a changed one is loaded beside the serving one, checked and swapped in without stopping the stream
(``worker/rollout/``, README "Rolling out a model").
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from worker.observability import get_logger, quiet_client_connection_errors, redact_secrets
from worker.settings import Inference, Settings

if TYPE_CHECKING:
    from worker.model.runtime import SentimentModel
    from worker.rollout.controller import Rollout
    from worker.serve.front import Servers
    from worker.stream.encode import OutRecord
    from worker.stream.runner import Runner

log = get_logger(__name__)


def load_model(exported: Path, settings: Inference) -> SentimentModel:
    """The exported model in an ONNX Runtime session configured by the model section (device, threads, length)."""
    from worker.model.runtime import SentimentModel  # imports onnxruntime: only when a command needs the model

    # The fast tokenizer's whole-batch encode runs on the poll thread with the GIL released; its own thread pool
    # (Rayon) cost 62 µs of CPU per tweet against 47 µs on one thread, measured with the worker's other threads
    # busy on 2 cores: the cores are better spent on them (and on other worker processes). Set
    # TOKENIZERS_PARALLELISM=true to have it back.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    model = SentimentModel.load(
        Path(exported).resolve(),  # a symlink's target: a reload after the link moved finds this model's files
        device=settings.device,
        device_id=settings.device_id,
        threads=settings.threads,
        spinning=settings.intra_op_spinning,
        max_length=settings.max_length,
        cuda_graph=settings.cuda_graph,  # shape buckets and IO binding: on by themselves on CUDA
    )
    if settings.simulate_device_rate:  # the forward pass replaced by a wait (worker/model/simulated.py)
        from worker.model.simulated import simulate_device

        return simulate_device(model, settings.simulate_device_rate)
    return model


class Worker:
    """One streaming worker: consumer group member → batcher → ONNX model → producers.

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
        self.settings = settings
        self.model_dir = model_dir
        self.on_output = on_output
        self.runner: Runner | None = None
        self._lock = threading.Lock()
        self._stop_requested: bool | None = None  # None: not asked; else the requested `force`
        self._started = threading.Event()
        self.servers: Servers | None = None
        self.rollout: Rollout | None = None  # SIGHUP, model_watch_s, POST /admin/model (worker/rollout/)

    def run(self) -> int:
        """Serve metrics, load the model, run the pipeline until stopped; the exit code (see ``Runner.run``)."""
        from worker.metrics import HealthState, WorkerMetrics
        from worker.model.resolve import resolve_model
        from worker.rollout.controller import Rollout
        from worker.rollout.shadow import Shadow
        from worker.serve.front import Servers
        from worker.stream.runner import Runner
        from worker.tracing.setup import open_tracer

        settings = self.settings
        redact_secrets(settings.secret_values())
        log.info("settings", **settings.safe_dump())
        quiet_client_connection_errors(settings.log_level)
        metrics = WorkerMetrics()
        health = HealthState()
        # metrics_port, and the HTTP API with http_port (worker/serve/front.py: /predict shares the runner's stage)
        self.servers = servers = Servers(
            settings.http,
            settings.observability,
            metrics,
            health,
            mode="run",
            http_port=settings.http_port,
            input=settings.input,
            batching=settings.batching,
        ).start()
        shadow = rollout = None
        tracer = open_tracer(consumer_group=settings.group_id)  # OTEL_* (docs/tracing.md); off: a no-op
        sighup = _hold_sighup()  # until the rollout exists (SIGHUP's default would end the process)
        try:
            inference = settings.inference
            model = load_model(self.model_dir or resolve_model(inference), inference)
            shadow = None
            if settings.shadow_model:
                shadow = Shadow(settings.rollout, inference, settings.batching, metrics.registry, load=load_model)
                shadow.start()
            runner = Runner(settings, model, metrics=metrics, health=health, on_output=self.on_output,
                            on_scored=shadow.offer if shadow is not None else None, tracer=tracer)  # fmt: skip
            target = inference  # what a reload resolves and loads: the model given, or the folder at hand
            if self.model_dir is not None:
                target = inference.model_copy(update={"model": str(self.model_dir)})
            self.rollout = rollout = Rollout(
                settings.rollout, target, runner.slot, load=load_model, wake=runner.inbox.wake, metrics=metrics
            ).start()
            servers.attach(model, runner.inbox, rollout)
            del model  # the slot holds it: a swap releases it
            with self._lock:
                self.runner = runner
                if self._stop_requested is not None:
                    runner.stop(force=self._stop_requested)
            self._started.set()
            with _StopOnSignals(servers.stopper(runner), reload=rollout.signal):
                return runner.run()
        finally:
            self._started.set()
            for part in (rollout, shadow):
                if part is not None:
                    part.stop()
            if sighup is not None:
                signal.signal(signal.SIGHUP, sighup)
            servers.stop("the worker stopped")
            tracer.close()  # the spans still buffered are exported

    def wait_started(self, timeout: float | None = None) -> Runner | None:
        """Block until the pipeline is built (model loaded) or the run failed before that; the runner if built."""
        self._started.wait(timeout)
        return self.runner

    def stop(self, force: bool = False) -> None:
        """Graceful stop (drain, produce, commit); ``force`` skips the drain. Safe before ``run`` got going."""
        with self._lock:
            if self.runner is None:
                self._stop_requested = force or bool(self._stop_requested)
                return
        self.runner.stop(force=force)


def run_worker(settings: Settings, model_dir: Path | None = None) -> int:
    """Build a worker from settings and run it on this thread until a signal stops it."""
    return Worker(settings, model_dir=model_dir).run()


def _hold_sighup() -> Any:
    """On the main thread: SIGHUP is logged and ignored (the model is loading); the handler it replaced."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGHUP, lambda *_: log.info("signal_received", signal="SIGHUP", action="ignored"))


class _StopOnSignals:
    """SIGINT/SIGTERM → graceful stop; a second signal → forced stop; SIGHUP → ``reload`` (it only queues the
    request: ``Rollout.signal``). Only on the main thread."""

    def __init__(self, runner: Runner, reload: Callable[[], None] | None = None) -> None:
        self.runner = runner
        self.reload = reload
        self.previous: dict[int, signal.Handlers | Callable[[int, FrameType | None], object] | int | None] = {}

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        if self.reload is not None:
            self.previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._reload)

    def _reload(self, _signum: int, _frame: FrameType | None) -> None:
        log.info("signal_received", signal="SIGHUP", action="reload the model")
        if self.reload is not None:
            self.reload()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        forced = self.runner.stopping
        log.info("signal_received", signal=signal.Signals(signum).name, action="force" if forced else "drain")
        self.runner.stop(force=forced)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
