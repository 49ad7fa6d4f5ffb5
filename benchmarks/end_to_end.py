"""End-to-end benchmark: load generator → Kafka → worker (or the naive consumer) → Kafka → output consumer.

The system under test runs in its own process (``multiprocessing`` spawn), like a deployed worker, so the
harness (producer, output consumer, lag sampler: threads of this process) does not share its GIL. Phases of
one run, each tagged in the messages (``phase``) so outputs are attributed exactly:

- ``warmup``: a few messages; waiting for their outputs also waits for the consumer-group join;
- ``saturation``: a burst of N messages produced as fast as possible (the producer outruns the worker many
  times over), drained by the worker; throughput = outputs after the first arriving group ÷ time from the first
  to the last arrival (the first group's work started before the clock);
- ``load-<p>``: messages paced at p × the measured saturation rate for a fixed time; end-to-end latency =
  arrival time at the output consumer − ``sent_at`` (epoch ms, stamped just before ``send``).

Consumer lag over time is sampled every ``lag_interval_s``: Σ over input partitions of (last acknowledged
produced offset + 1 − the group's committed offset). The log end comes from our own producer's delivery
reports, not from ``end_offsets()`` (wrong on Tansu, FINDINGS §1). Also sampled: the backlog, produced −
outputs received.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worker.observability import get_logger

log = get_logger(__name__)

WARMUP_MESSAGES = 16
COLLECTOR_FETCH_WAIT_MS = 10
# During a saturation burst no latency is measured: a longer fetch wait makes the instrument ~10x cheaper (at
# 10 ms its fetch loop took ~15% of a core of the 2 the worker needs) for <= 100 ms on the last arrival (~1%).
SATURATION_FETCH_WAIT_MS = 100
KEYS = 16


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
def _worker_child(overrides: dict[str, Any], model_dir: str, conn: Any) -> None:
    """Child entry: the real worker (``run_worker``); answers "stats", stops on "stop"."""
    from worker.cli.stream_cmds import run_worker
    from worker.observability import configure_logging
    from worker.settings import load_settings

    configure_logging("json", "warning")
    settings = load_settings(**overrides)
    holder: dict[str, Any] = {}
    ready = threading.Event()

    def on_runner(runner: Any) -> None:
        holder["runner"] = runner
        ready.set()

    def stats() -> dict[str, Any]:
        runner = holder.get("runner")
        if runner is None:
            return {}
        s = runner.stats
        return {
            "consumed": s.consumed,
            "produced": s.produced,
            "dead_lettered": s.dead_lettered,
            "batches": s.batches,
            "batch_items": s.batch_items,
            "real_tokens": s.real_tokens,
            "padded_tokens": s.padded_tokens,
            "infer_seconds": s.infer_seconds,
            "provider": runner.model.provider,
        }

    def control() -> None:
        while True:
            try:
                message = conn.recv()
            except EOFError:
                message = "stop"
            if message == "stats":
                conn.send({"stats": stats()})
            elif message == "stop":
                ready.wait(120)
                runner = holder.get("runner")
                if runner is not None:
                    runner.stop()
                return

    threading.Thread(target=control, daemon=True).start()
    rc = run_worker(settings, Path(model_dir), on_runner=on_runner)
    conn.send({"rc": rc, "final": stats()})


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


# ---- harness threads ----------------------------------------------------------------------------------------
class Producer:
    """Paced JSON producer (kafka-python) that keeps per-partition acknowledged end offsets."""

    def __init__(self, bootstrap: list[str], topic: str) -> None:
        from kafka import KafkaProducer

        from worker.loadgen import DEFAULT_PRODUCER_CONFIG

        self.topic = topic
        self.producer = KafkaProducer(**{**DEFAULT_PRODUCER_CONFIG, "bootstrap_servers": bootstrap})
        self.lock = threading.Lock()
        self.ends: dict[int, int] = {}
        self.acked = 0
        self.failed = 0
        self.seq = 0

    def _ok(self, metadata: Any) -> None:
        with self.lock:
            self.acked += 1
            if metadata.offset + 1 > self.ends.get(metadata.partition, 0):
                self.ends[metadata.partition] = metadata.offset + 1

    def _err(self, _exc: BaseException) -> None:
        with self.lock:
            self.failed += 1

    def send(
        self, phase: str, texts: list[str], *, rate: float = 0.0, duration_s: float | None = None
    ) -> dict[str, Any]:
        """Send texts (cycled when ``duration_s`` is set) at ``rate`` msgs/s (0 = burst); returns counts, seconds."""
        count = len(texts) if duration_s is None or rate <= 0 else max(1, round(rate * duration_s))
        start = time.monotonic()
        behind = 0.0
        for n in range(count):
            if rate > 0:
                delay = start + n / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    behind = max(behind, -delay)
            seq = self.seq
            self.seq += 1
            value = {
                "id": f"{phase}-{n}",
                "text": texts[n % len(texts)],
                "seq": seq,
                "phase": phase,
                "sent_at": time.time_ns() // 1_000_000,
            }
            future = self.producer.send(
                self.topic, key=f"key-{seq % KEYS}".encode(), value=json.dumps(value, separators=(",", ":")).encode()
            )
            future.add_callback(self._ok)
            future.add_errback(self._err)
        self.producer.flush()
        seconds = time.monotonic() - start
        return {"phase": phase, "sent": count, "seconds": round(seconds, 3), "max_behind_s": round(behind, 3)}

    def close(self) -> None:
        self.producer.close()


class Collector(threading.Thread):
    """Reads the output topic from the beginning; records (phase, seq, sent_at ms, arrival ms) per output."""

    def __init__(self, bootstrap: list[str], topic: str) -> None:
        super().__init__(name=f"collector-{topic}", daemon=True)
        self.bootstrap = bootstrap
        self.topic = topic
        self.cond = threading.Condition()
        self.arrivals: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
        self._seen: set[int] = set()
        self.duplicates = 0
        self._halt = threading.Event()
        self.ready = threading.Event()
        self.error: str | None = None
        self.fetch_wait_ms = COLLECTOR_FETCH_WAIT_MS  # applied before each poll

    def run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        try:
            # a short fetch wait: Tansu holds a fetch for fetch_max_wait_ms even when data arrives (measured:
            # delivery p50 145 ms at kafka-python's default 500 ms, 10 ms at 10 ms); the instrument must not add it
            consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=None,
                enable_auto_commit=False,
                client_id="bench-collector",
                fetch_max_wait_ms=COLLECTOR_FETCH_WAIT_MS,
            )
            deadline = time.monotonic() + 30
            partitions = None
            while not partitions and time.monotonic() < deadline:
                partitions = consumer.partitions_for_topic(self.topic)
                if not partitions:
                    time.sleep(0.2)
            if not partitions:
                raise RuntimeError(f"output topic {self.topic} has no partitions")
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            self.ready.set()
            fetcher_config = consumer._fetcher.config  # read at each fetch request (kafka-python 3.0)
            while not self._halt.is_set():
                fetcher_config["fetch_max_wait_ms"] = self.fetch_wait_ms
                polled = consumer.poll(timeout_ms=100)
                if not polled:
                    continue
                arrival = time.time() * 1000.0
                with self.cond:
                    for records in polled.values():
                        for record in records:
                            try:
                                value = json.loads(record.value)
                                seq = int(value["seq"])
                                phase = str(value.get("phase", "?"))
                                sent_at = float(value.get("sent_at", 0))
                            except (ValueError, KeyError, TypeError):
                                continue
                            if seq in self._seen:
                                self.duplicates += 1
                                continue
                            self._seen.add(seq)
                            self.arrivals[phase].append((seq, sent_at, arrival))
                    self.cond.notify_all()
            consumer.close()
        except Exception as exc:  # surfaced by wait_for
            self.error = f"{type(exc).__name__}: {exc}"
            self.ready.set()
            with self.cond:
                self.cond.notify_all()

    def count(self, phase: str) -> int:
        with self.cond:
            return len(self.arrivals.get(phase, ()))

    def total(self) -> int:
        with self.cond:
            return len(self._seen)

    def wait_for(self, phase: str, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.arrivals.get(phase, ())) < count and self.error is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(min(remaining, 0.5))
        return self.error is None

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


class LagSampler(threading.Thread):
    """Samples committed-offset lag and backlog of the group every ``interval`` seconds."""

    def __init__(
        self,
        bootstrap: list[str],
        topic: str,
        group_id: str,
        partitions: int,
        producer: Producer,
        collector: Collector,
        interval: float,
    ) -> None:
        super().__init__(name=f"lag-{topic}", daemon=True)
        self.bootstrap = bootstrap
        self.topic = topic
        self.group_id = group_id
        self.partitions = partitions
        self.producer = producer
        self.collector = collector
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self.phase = "start"
        self.t0 = time.monotonic()
        self._halt = threading.Event()

    def run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            client_id="bench-lag",
        )
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        try:
            while not self._halt.wait(self.interval):
                with self.producer.lock:
                    ends = dict(self.producer.ends)
                    acked = self.producer.acked
                lag = 0
                try:
                    for tp in tps:
                        committed = consumer.committed(tp) or 0
                        lag += max(0, ends.get(tp.partition, 0) - committed)
                except Exception:
                    lag = -1
                self.samples.append(
                    {
                        "t": round(time.monotonic() - self.t0, 2),
                        "phase": self.phase,
                        "lag": lag,
                        "backlog": max(0, acked - self.collector.total()),
                    }
                )
        finally:
            consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


# ---- analysis ------------------------------------------------------------------------------------------------
def drain_rate(arrivals_ms: list[float]) -> float | None:
    """msgs/s of a drained burst: outputs after the first arrival ÷ time from the first to the last arrival.

    Outputs arrive in groups (one micro-batch at a time), so the first group, whose work started before the
    first arrival, is left out; every message counted was completed inside the measured span.
    """
    if len(arrivals_ms) < 2:
        return None
    times = np.sort(np.array(arrivals_ms))
    first_group = int(np.searchsorted(times, times[0], side="right"))
    span = (times[-1] - times[0]) / 1000.0
    if span <= 0:
        return None
    return float((len(times) - first_group) / span)


def latency_summary(items: list[tuple[int, float, float]]) -> dict[str, Any]:
    if not items:
        return {"count": 0}
    lat = np.array([arrival - sent for _seq, sent, arrival in items])
    return {
        "count": len(items),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p95_ms": round(float(np.percentile(lat, 95)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "max_ms": round(float(lat.max()), 1),
        "mean_ms": round(float(lat.mean()), 1),
    }


def cdf_points(items: list[tuple[int, float, float]], points: int = 200) -> list[list[float]]:
    if not items:
        return []
    lat = np.sort(np.array([arrival - sent for _seq, sent, arrival in items]))
    qs = np.linspace(0, 1, min(points, len(lat)))
    return [[round(float(np.quantile(lat, q)), 2), round(float(q), 4)] for q in qs]


class CpuAccount:
    """CPU used over a phase, in cores (CPU seconds ÷ wall seconds), by the system under test (worker or naive
    consumer process), the harness (this process: load generator, output consumer, lag sampler) and the broker."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        from benchmarks.machine import pid_jiffies

        self._read = pid_jiffies
        self.pids = {name: pid for name, pid in pids.items() if pid}
        self.tick = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0

    def snapshot(self) -> tuple[float, dict[str, float | None]]:
        return time.monotonic(), {name: self._read(pid) for name, pid in self.pids.items()}

    def cores(self, before: tuple[float, dict[str, float | None]]) -> dict[str, float]:
        now, after = self.snapshot()
        wall = now - before[0]
        out: dict[str, float] = {}
        for name, value in after.items():
            start = before[1].get(name)
            if value is not None and start is not None and wall > 0:
                out[name] = round((value - start) / self.tick / wall, 2)
        return out


def _stats_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    if not before or not after:
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


# ---- one run ---------------------------------------------------------------------------------------------------
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


def run_one(spec: RunSpec, config: E2EConfig, *, progress: bool = True) -> dict[str, Any]:
    """Warm-up, saturation burst, then fixed offered loads; returns the run's results (JSON-ready)."""
    from tqdm import tqdm

    from worker.broker import create_topics

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
        child = Child(_worker_child, (overrides, str(spec.model_dir)), name=f"bench-worker-{spec.name}").start()
    else:
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
        child = Child(naive_consumer_main, (naive_config,), name=f"bench-naive-{spec.name}").start()

    cpu = CpuAccount({"sut": child.process.pid, "harness": os.getpid(), "broker": config.broker_pid})
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
        # warm-up (includes process start, model load and the group join)
        sampler.phase = "warmup"
        warm = producer.send("warmup", spec.texts[:WARMUP_MESSAGES])
        if not collector.wait_for("warmup", warm["sent"], timeout=180):
            raise RuntimeError(
                f"{spec.name}: no outputs for the warm-up messages within 180 s "
                f"(got {collector.count('warmup')}/{warm['sent']}; collector error: {collector.error})"
            )
        warm_items = collector.arrivals["warmup"]
        result["startup_s"] = round(time.monotonic() - started, 1)
        estimate = spec.saturation_estimate
        if estimate is None:  # the naive consumer: estimate from the warm-up burst
            arrivals = sorted(a for _s, _t, a in warm_items)
            span = (arrivals[-1] - arrivals[0]) / 1000.0
            estimate = (len(arrivals) - 1) / span if span > 0 else 10.0
        n_sat = max(0, spec.saturation_messages)
        if spec.saturation_seconds is not None:  # size the burst from the estimate: about that many seconds
            n_sat = min(len(spec.texts), max(spec.min_burst, round(spec.saturation_seconds * estimate)))
        # saturation
        if n_sat:
            before = child.request_stats() if spec.kind == "worker" else {}
            sampler.phase = "saturation"
            cpu_before = cpu.snapshot()
            collector.fetch_wait_ms = SATURATION_FETCH_WAIT_MS
            sat_texts = spec.texts[:n_sat]
            sent = producer.send("saturation", sat_texts)
            timeout = 60 + 3 * n_sat / max(estimate, 0.5)
            bar = tqdm(
                total=sent["sent"], desc=f"{spec.name} saturation", unit="msg", disable=not progress, leave=False
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                done = collector.count("saturation")
                bar.update(done - bar.n)
                if done >= sent["sent"]:
                    break
                collector.wait_for("saturation", sent["sent"], timeout=1.0)
            bar.close()
            collector.fetch_wait_ms = COLLECTOR_FETCH_WAIT_MS
            items = list(collector.arrivals["saturation"])
            rate = drain_rate([a for _s, _t, a in items])
            phase = {
                "sent": sent["sent"],
                "received": len(items),
                "complete": len(items) >= sent["sent"],
                "msgs_per_s": round(rate, 1) if rate else None,
                "drain_s": round((max(a for *_x, a in items) - min(t for _s, t, _a in items)) / 1000, 2)
                if items
                else None,
            }
            phase["cpu_cores"] = cpu.cores(cpu_before)
            if spec.kind == "worker":
                phase["worker"] = _stats_delta(before, child.request_stats())
            result["phases"]["saturation"] = phase
            saturation_rate = rate
        else:
            saturation_rate = estimate
        # fixed offered loads
        for fraction in spec.loads:
            if not saturation_rate:
                break
            name = f"load-{round(fraction * 100)}"
            offered = fraction * saturation_rate
            before = child.request_stats() if spec.kind == "worker" else {}
            sampler.phase = name
            cpu_before = cpu.snapshot()
            count = max(1, round(offered * spec.load_seconds))
            texts = spec.texts[n_sat : n_sat + count] if len(spec.texts) >= n_sat + count else spec.texts
            bar_desc = f"{spec.name} {name} ({offered:.0f} msg/s)"
            with tqdm(total=1, desc=bar_desc, disable=not progress, leave=False) as bar:
                sent = producer.send(name, texts, rate=offered, duration_s=spec.load_seconds)
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
                "cpu_cores": cpu.cores(cpu_before),
            }
            if spec.kind == "worker":
                phase["worker"] = _stats_delta(before, child.request_stats())
            result["phases"][name] = phase
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
