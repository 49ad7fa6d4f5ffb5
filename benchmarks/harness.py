"""The instruments of an end-to-end run, threads of the benchmark process (:mod:`benchmarks.end_to_end`).

- :class:`Producer`: the load generator (paced or burst), keeping our own acknowledged end offsets;
- :class:`Collector`: the output consumer, stamping each output's arrival time;
- :class:`LagSampler`: the group's committed-offset lag and the backlog over time;
- :class:`CpuAccount`: CPU cores used over a phase by the system under test, the harness and the broker;
- :func:`drain_rate`, :func:`latency_summary`, :func:`cdf_points`: the collector's arrivals as numbers.

Only kafka-python's public API is used.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import defaultdict
from typing import Any

import numpy as np

from worker.observability import get_logger

log = get_logger(__name__)

# Tansu holds a fetch for the whole fetch_max_wait_ms even when data arrives (Apache Kafka answers as soon as
# data is there), so the output consumer's own wait adds up to that much to every latency it measures: short.
COLLECTOR_FETCH_WAIT_MS = 10
# During a saturation burst no latency is measured: a longer fetch wait makes the instrument ~10x cheaper (at
# 10 ms its fetch loop took ~15% of a core of the 2 the worker needs) for <= 100 ms on the last arrival (~1%).
SATURATION_FETCH_WAIT_MS = 100
KEYS = 16


class Producer:
    """Paced JSON producer (kafka-python) that keeps per-partition acknowledged end offsets."""

    def __init__(self, bootstrap: list[str], topic: str) -> None:
        from kafka import KafkaProducer

        from devtools.loadgen import DEFAULT_PRODUCER_CONFIG

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
    """Reads the output topic from the beginning; records (phase, seq, sent_at ms, arrival ms) per output.

    Its consumer's fetch wait is set with :meth:`set_fetch_wait`: kafka-python fixes ``fetch_max_wait_ms`` when a
    consumer is built, so the collector replaces its consumer by one built with the new wait, assigned the same
    partitions at the old one's positions (nothing skipped; anything read twice is dropped by ``seq``).
    """

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
        self._wanted_wait_ms = COLLECTOR_FETCH_WAIT_MS  # under cond
        self._polled_wait_ms: int | None = None  # the wait of the consumer whose poll last returned (under cond)

    def _consumer(self, fetch_wait_ms: int) -> Any:
        from kafka import KafkaConsumer

        return KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            client_id="bench-collector",
            fetch_max_wait_ms=fetch_wait_ms,
        )

    def _partitions(self, consumer: Any) -> list[Any]:
        from kafka import TopicPartition

        deadline = time.monotonic() + 30
        partitions = None
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(self.topic)
            if not partitions:
                time.sleep(0.2)
        if not partitions:
            raise RuntimeError(f"output topic {self.topic} has no partitions")
        return [TopicPartition(self.topic, p) for p in sorted(partitions)]

    def _reopen(self, consumer: Any, tps: list[Any], fetch_wait_ms: int) -> Any:
        """A consumer with ``fetch_wait_ms`` that goes on where ``consumer`` (closed here) stopped."""
        positions = {tp: consumer.position(tp, timeout_ms=10_000) for tp in tps}
        consumer.close()
        consumer = self._consumer(fetch_wait_ms)
        consumer.assign(tps)
        for tp, offset in positions.items():
            if offset is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)
        return consumer

    def run(self) -> None:
        try:
            current = self._wanted_wait_ms
            consumer = self._consumer(current)
            tps = self._partitions(consumer)
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            self.ready.set()
            while not self._halt.is_set():
                with self.cond:
                    wanted = self._wanted_wait_ms
                if wanted != current:
                    consumer = self._reopen(consumer, tps, wanted)
                    current = wanted
                polled = consumer.poll(timeout_ms=100)
                if not polled and self._polled_wait_ms == current:
                    continue
                arrival = time.time() * 1000.0
                with self.cond:
                    self._polled_wait_ms = current
                    self._record(polled, arrival)
                    self.cond.notify_all()
            consumer.close()
        except Exception as exc:  # surfaced by wait_for
            self.error = f"{type(exc).__name__}: {exc}"
            self.ready.set()
            with self.cond:
                self.cond.notify_all()

    def _record(self, polled: dict[Any, list[Any]], arrival: float) -> None:
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

    def set_fetch_wait(self, fetch_wait_ms: int, timeout: float = 30.0) -> bool:
        """Make the output consumer's fetches wait up to ``fetch_wait_ms``; returns once a poll used it.

        The caller waits, so no phase is timed across the switch. False if it did not happen within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        with self.cond:
            self._wanted_wait_ms = fetch_wait_ms
            while self._polled_wait_ms != fetch_wait_ms:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.error is not None or not self.is_alive():
                    log.warning("bench.collector_fetch_wait_not_applied", wanted_ms=fetch_wait_ms, error=self.error)
                    return False
                self.cond.wait(min(remaining, 0.5))
        return True

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


# ---- readings --------------------------------------------------------------------------------------------
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
