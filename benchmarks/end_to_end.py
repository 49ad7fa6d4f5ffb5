"""End-to-end benchmark: load generator → Kafka → worker (or the naive consumer) → Kafka → output consumer.

The system under test runs in its own process (``multiprocessing`` spawn), like a deployed worker, so the
harness (:mod:`benchmarks.harness`: producer, output consumer, lag sampler, threads of this process) does not
share its GIL. Phases of one run, each tagged in the messages (``phase``) so outputs are attributed exactly:

- ``warmup``: a few messages; waiting for their outputs also waits for the consumer-group join;
- ``saturation``: a burst of N messages produced as fast as possible (the producer outruns the worker many
  times over), drained by the worker; throughput = outputs after the first arriving group ÷ time from the first
  to the last arrival (the first group's work started before the clock);
- ``load-<p>``: messages paced at p × the measured saturation rate for a fixed time; end-to-end latency =
  arrival time at the output consumer − ``sent_at`` (epoch ms, stamped just before ``send``).

Consumer lag over time is sampled every ``lag_interval_s``: Σ over input partitions of (last acknowledged
produced offset + 1 − the group's committed offset). The log end comes from our own producer's delivery
reports, not from ``end_offsets()``: Tansu answers that with the last batch's base offset + 1, not the log end.
Also sampled: the backlog, produced − outputs received.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    COLLECTOR_FETCH_WAIT_MS,
    SATURATION_FETCH_WAIT_MS,
    Collector,
    CpuAccount,
    LagSampler,
    Producer,
    cdf_points,
    drain_rate,
    latency_summary,
)
from worker.observability import get_logger

log = get_logger(__name__)

WARMUP_MESSAGES = 16
# What the benchmark reads of the worker's Runner (worker/stream/runner.py), besides ``runner.model.provider``:
# these counters of ``runner.stats``, cumulative since the worker started; a phase's numbers are differences.
RUNNER_COUNTERS = (
    "consumed",
    "produced",
    "dead_lettered",
    "batches",
    "batch_items",
    "real_tokens",
    "padded_tokens",
    "infer_seconds",
)


@dataclass
class E2EConfig:
    bootstrap: list[str]
    partitions: int = 4
    max_batch_size: int = 64
    max_wait_ms: int = 20
    inference_batch_size: int = 8
    max_length: int = 128
    threads: int = 0
    device: str = "auto"
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    lag_interval_s: float = 0.5
    cache_dir: str | None = None
    broker_pid: int | None = None  # the embedded broker's process, for the CPU accounting (None: external)


# ---- child processes --------------------------------------------------------------------------------------
def runner_counters(runner: Any) -> dict[str, Any]:
    """:data:`RUNNER_COUNTERS` of a running worker and its model's execution provider; ``error`` if unreadable.

    Read without the runner's lock: each counter is one attribute read; two counters may be one batch apart.
    """
    try:
        out: dict[str, Any] = {name: getattr(runner.stats, name) for name in RUNNER_COUNTERS}
        out["provider"] = runner.model.provider
    except AttributeError as exc:  # the Runner changed: say so instead of reporting zeros
        return {"error": f"worker stats unavailable: {exc}"}
    return out


def _worker_child(overrides: dict[str, Any], model_dir: str, conn: Any) -> None:
    """Child entry: the real worker (:class:`worker.app.Worker`); answers "stats", stops on "stop"."""
    from worker.app import Worker
    from worker.observability import configure_logging
    from worker.settings import load_settings

    configure_logging("json", "warning")
    worker = Worker(load_settings(**overrides), model_dir=Path(model_dir))
    send_lock = threading.Lock()

    def stats() -> dict[str, Any]:
        runner = worker.runner
        return {} if runner is None else runner_counters(runner)

    def send(message: dict[str, Any]) -> None:
        with send_lock:
            conn.send(message)

    def control() -> None:
        while True:
            try:
                message = conn.recv()
            except EOFError:
                message = "stop"
            if message == "stats":
                send({"stats": stats()})
            elif message == "stop":
                worker.stop()  # graceful; also when the worker is still loading its model
                return

    threading.Thread(target=control, daemon=True).start()
    rc = worker.run()
    send({"rc": rc, "final": stats()})


class Child:
    """A system under test in a spawned process, controlled through a pipe."""

    def __init__(self, target: Any, args: tuple[Any, ...], name: str) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=target, args=(*args, child_conn), name=name, daemon=True)
        self._lock = threading.Lock()
        self.messages: list[dict[str, Any]] = []

    def start(self) -> Child:
        self.process.start()
        return self

    def request_stats(self, timeout: float = 10.0) -> dict[str, Any]:
        with self._lock:
            self.conn.send("stats")
            while self.conn.poll(timeout):
                message = self.conn.recv()
                if "stats" in message:
                    return dict(message["stats"])
                self.messages.append(message)
        return {}

    def stop(self, timeout: float = 60.0) -> dict[str, Any]:
        final: dict[str, Any] = {}
        with self._lock:
            with contextlib.suppress(BrokenPipeError, OSError):
                self.conn.send("stop")
            deadline = time.monotonic() + timeout
            while (time.monotonic() < deadline and self.process.is_alive()) or self.conn.poll(0):
                if self.conn.poll(0.2):
                    try:
                        message = self.conn.recv()
                    except EOFError:
                        break
                    self.messages.append(message)
                    if "rc" in message or "processed" in message:
                        final = message
        self.process.join(timeout=10)
        if self.process.is_alive():
            log.warning("child_killed", name=self.process.name)
            self.process.kill()
            self.process.join(5)
        final["exitcode"] = self.process.exitcode
        return final


# ---- worker counters --------------------------------------------------------------------------------------
def _stats_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """A phase's worker numbers from its counters before and after (see :func:`runner_counters`)."""
    if not before or not after or "error" in before or "error" in after:
        return {}
    delta = {k: after[k] - before.get(k, 0) for k in after if isinstance(after[k], int | float)}
    batches = delta.get("batches", 0)
    out: dict[str, Any] = {"batches": batches}
    if batches:
        out["avg_batch_size"] = round(delta["batch_items"] / batches, 1)
        out["ms_per_batch_mean"] = round(delta["infer_seconds"] / batches * 1000, 2)
    if delta.get("real_tokens"):
        out["padding_waste"] = round(delta["padded_tokens"] / delta["real_tokens"] - 1, 4)
    out["dead_lettered"] = delta.get("dead_lettered", 0)
    return out


@dataclass
class RunSpec:
    name: str  # e.g. "ours-starter-fp32", "naive-starter"
    kind: str  # "worker" or "naive"
    model_key: str
    precision: str | None
    model_dir: Path  # exported dir (worker) or HF dir (naive)
    texts: list[str]
    saturation_messages: int
    loads: list[float] = field(default_factory=list)
    load_seconds: float = 10.0
    saturation_estimate: float | None = None  # msgs/s, to size timeouts (None: measured on the warm-up)
    saturation_seconds: float | None = None  # if set: burst size = this × the estimate (overrides the count)
    worker_settings: dict[str, Any] | None = None  # what-if: settings that differ from the defaults
    min_burst: int = 20  # smallest burst when sized from saturation_seconds


# ---- one run ---------------------------------------------------------------------------------------------------
@dataclass
class _Harness:
    """One run's system under test (its own process) and the instruments watching it (this process)."""

    spec: RunSpec
    child: Child
    producer: Producer
    collector: Collector
    sampler: LagSampler
    cpu: CpuAccount
    progress: bool

    def worker_stats(self) -> dict[str, Any]:
        """The worker's counters now (empty for the naive consumer, which has none)."""
        if self.spec.kind != "worker":
            return {}
        stats = self.child.request_stats()
        if "error" in stats:
            log.warning("bench.worker_stats_unavailable", run=self.spec.name, error=stats["error"])
        return stats


def run_one(spec: RunSpec, config: E2EConfig, *, progress: bool = True) -> dict[str, Any]:
    """Warm-up, saturation burst, then fixed offered loads; returns the run's results (JSON-ready)."""
    from devtools.broker import create_topics

    run_id = f"{spec.name}-{uuid.uuid4().hex[:6]}"
    topic = f"bench.{run_id}"
    output_topic = f"{topic}.sentiment"
    group_id = f"bench-{run_id}"
    create_topics(config.bootstrap, {topic: config.partitions, output_topic: config.partitions})
    producer = Producer(config.bootstrap, topic)
    collector = Collector(config.bootstrap, output_topic)
    collector.start()
    collector.ready.wait(30)
    sampler = LagSampler(
        config.bootstrap, topic, group_id, config.partitions, producer, collector, config.lag_interval_s
    )
    sampler.start()
    child = _start_system_under_test(spec, config, topic, output_topic, group_id)
    cpu = CpuAccount({"sut": child.process.pid, "harness": os.getpid(), "broker": config.broker_pid})
    h = _Harness(spec, child, producer, collector, sampler, cpu, progress)
    result: dict[str, Any] = {
        "name": spec.name,
        "kind": spec.kind,
        "model": spec.model_key,
        "precision": spec.precision,
        "topic": topic,
        "worker_settings": spec.worker_settings,
        "phases": {},
    }
    started = time.monotonic()
    try:
        estimate = _warmup(h)
        result["startup_s"] = round(time.monotonic() - started, 1)
        n_sat = _burst_size(spec, estimate)
        saturation_rate = estimate
        if n_sat:
            result["phases"]["saturation"], saturation_rate = _saturation(h, n_sat, estimate)
        for fraction in spec.loads:
            if not saturation_rate:
                break
            name = f"load-{round(fraction * 100)}"
            result["phases"][name] = _fixed_load(h, name, fraction * saturation_rate, n_sat, fraction)
        sampler.phase = "stop"
    finally:
        final = child.stop()
        sampler.stop()
        collector.stop()
        producer.close()
    result["final"] = final
    result["duplicates"] = collector.duplicates
    result["lag_timeline"] = sampler.samples
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


def _start_system_under_test(spec: RunSpec, config: E2EConfig, topic: str, output_topic: str, group_id: str) -> Child:
    """Our worker (settings as the benchmark's config) or the naive consumer, started in its own process."""
    if spec.kind == "worker":
        overrides = {
            "bootstrap_servers": ",".join(config.bootstrap),
            "input_topics": topic,
            "group_id": group_id,
            "model": str(spec.model_dir),
            "device": config.device,
            "threads": config.threads,
            "max_length": config.max_length,
            "max_batch_size": config.max_batch_size,
            "max_wait_ms": config.max_wait_ms,
            "inference_batch_size": config.inference_batch_size,
            "session_timeout_ms": config.session_timeout_ms,
            "heartbeat_interval_ms": config.heartbeat_interval_ms,
            "log_format": "json",
            "log_level": "warning",
        }
        if config.cache_dir:
            overrides["cache_dir"] = config.cache_dir
        if spec.worker_settings:
            overrides.update(spec.worker_settings)
        return Child(_worker_child, (overrides, str(spec.model_dir)), name=f"bench-worker-{spec.name}").start()
    from benchmarks.baselines import naive_consumer_main

    naive_config = {
        "hf_dir": str(spec.model_dir),
        "topic": topic,
        "output_topic": output_topic,
        "bootstrap": config.bootstrap,
        "group_id": group_id,
        "threads": config.threads,
        "max_length": config.max_length,
        "session_timeout_ms": config.session_timeout_ms,
        "heartbeat_interval_ms": config.heartbeat_interval_ms,
    }
    return Child(naive_consumer_main, (naive_config,), name=f"bench-naive-{spec.name}").start()


def _warmup(h: _Harness) -> float:
    """A few messages through (process start, model load, group join); the saturation estimate in msgs/s."""
    spec = h.spec
    h.sampler.phase = "warmup"
    warm = h.producer.send("warmup", spec.texts[:WARMUP_MESSAGES])
    if not h.collector.wait_for("warmup", warm["sent"], timeout=180):
        raise RuntimeError(
            f"{spec.name}: no outputs for the warm-up messages within 180 s "
            f"(got {h.collector.count('warmup')}/{warm['sent']}; collector error: {h.collector.error})"
        )
    if spec.saturation_estimate is not None:
        return spec.saturation_estimate
    # the naive consumer: estimate from the warm-up burst
    arrivals = sorted(a for _s, _t, a in h.collector.arrivals["warmup"])
    span = (arrivals[-1] - arrivals[0]) / 1000.0
    return (len(arrivals) - 1) / span if span > 0 else 10.0


def _burst_size(spec: RunSpec, estimate: float) -> int:
    """Messages of the saturation burst: the spec's count, or about ``saturation_seconds`` at the estimate."""
    if spec.saturation_seconds is not None:
        return min(len(spec.texts), max(spec.min_burst, round(spec.saturation_seconds * estimate)))
    return max(0, spec.saturation_messages)


def _saturation(h: _Harness, n_sat: int, estimate: float) -> tuple[dict[str, Any], float | None]:
    """A burst of ``n_sat`` messages drained by the system under test: the phase's results and its msgs/s."""
    from tqdm import tqdm

    spec, collector = h.spec, h.collector
    collector.set_fetch_wait(SATURATION_FETCH_WAIT_MS)  # before the clock: the switch is not timed
    before = h.worker_stats()
    h.sampler.phase = "saturation"
    cpu_before = h.cpu.snapshot()
    sent = h.producer.send("saturation", spec.texts[:n_sat])
    timeout = 60 + 3 * n_sat / max(estimate, 0.5)
    bar = tqdm(total=sent["sent"], desc=f"{spec.name} saturation", unit="msg", disable=not h.progress, leave=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = collector.count("saturation")
        bar.update(done - bar.n)
        if done >= sent["sent"]:
            break
        collector.wait_for("saturation", sent["sent"], timeout=1.0)
    bar.close()
    items = list(collector.arrivals["saturation"])
    rate = drain_rate([a for _s, _t, a in items])
    phase = {
        "sent": sent["sent"],
        "received": len(items),
        "complete": len(items) >= sent["sent"],
        "msgs_per_s": round(rate, 1) if rate else None,
        "drain_s": round((max(a for *_x, a in items) - min(t for _s, t, _a in items)) / 1000, 2) if items else None,
    }
    phase["cpu_cores"] = h.cpu.cores(cpu_before)
    if spec.kind == "worker":
        phase["worker"] = _stats_delta(before, h.worker_stats())
    collector.set_fetch_wait(COLLECTOR_FETCH_WAIT_MS)  # latencies are measured again from here
    return phase, rate


def _fixed_load(h: _Harness, name: str, offered: float, n_sat: int, fraction: float) -> dict[str, Any]:
    """Messages paced at ``offered`` msgs/s for ``load_seconds``: latency, achieved rate, CPU, worker batches."""
    from tqdm import tqdm

    spec, collector = h.spec, h.collector
    before = h.worker_stats()
    h.sampler.phase = name
    cpu_before = h.cpu.snapshot()
    count = max(1, round(offered * spec.load_seconds))
    texts = spec.texts[n_sat : n_sat + count] if len(spec.texts) >= n_sat + count else spec.texts
    bar_desc = f"{spec.name} {name} ({offered:.0f} msg/s)"
    with tqdm(total=1, desc=bar_desc, disable=not h.progress, leave=False) as bar:
        sent = h.producer.send(name, texts, rate=offered, duration_s=spec.load_seconds)
        collector.wait_for(name, sent["sent"], timeout=30 + 2 * spec.load_seconds)
        bar.update(1)
    items = list(collector.arrivals[name])
    arrivals = [a for _s, _t, a in items]
    phase = {
        "offered_fraction": fraction,
        "offered_msgs_per_s": round(offered, 1),
        "sent": sent["sent"],
        "producer_seconds": sent["seconds"],
        "producer_max_behind_s": sent["max_behind_s"],
        "received": len(items),
        "complete": len(items) >= sent["sent"],
        "achieved_msgs_per_s": round(len(items) / sent["seconds"], 1) if sent["seconds"] > 0 else None,
        "latency": latency_summary(items),
        "latency_cdf": cdf_points(items),
        "arrival_span_s": round((max(arrivals) - min(arrivals)) / 1000, 2) if arrivals else None,
        "cpu_cores": h.cpu.cores(cpu_before),
    }
    if spec.kind == "worker":
        phase["worker"] = _stats_delta(before, h.worker_stats())
    return phase
