"""The pipeline's counters: each event is counted once, here, and forwarded to the metrics.

The summary logs (``throughput``, ``worker_stopped``) read :meth:`RunStats.snapshot`; the Prometheus metrics get
the same events through :class:`~worker.stream.common.ports.PipelineMetrics`. Thread-safe: the poll loop, the inference
thread and the producer's IO thread all count. Acknowledged outputs, counted one by one on the producer's IO
thread, reach the metrics in batches (:meth:`RunStats.flush`, called by the poll loop and by :meth:`snapshot`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from worker.stream.common.ports import NullMetrics, PipelineMetrics
from worker.stream.common.types import SourceRecord


@dataclass
class RunStats:
    metrics: PipelineMetrics = field(default_factory=NullMetrics, repr=False)
    consumed: int = 0
    produced: int = 0
    dead_lettered: int = 0
    batches: int = 0
    batch_items: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0
    infer_seconds: float = 0.0
    labels: Counter[str] = field(default_factory=Counter)
    dlq_reasons: Counter[str] = field(default_factory=Counter)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _unflushed: list[tuple[str, float]] = field(default_factory=list, repr=False)  # (topic, latency) not yet in metrics

    def count_consumed(self, records: Sequence[SourceRecord]) -> None:
        """Records taken from the input topics (one poll may span several topics: counted per topic)."""
        per_topic = Counter(record.topic for record in records)
        with self._lock:
            self.consumed += len(records)
        for topic, n in per_topic.items():
            self.metrics.record_consumed(topic, n)

    def count_batch(self, size: int, real_tokens: int, padded_tokens: int, seconds: float) -> None:
        """One model batch of ``size`` records."""
        with self._lock:
            self.batches += 1
            self.batch_items += size
            self.real_tokens += real_tokens
            self.padded_tokens += padded_tokens
            self.infer_seconds += seconds
        self.metrics.record_batch(size, real_tokens, padded_tokens, seconds)

    def count_produced(self, topic: str, label: str, latency_s: float) -> None:
        """One output record acknowledged by the broker, ``latency_s`` after it was polled."""
        with self._lock:
            self.produced += 1
            self.labels[label] += 1
            self.latencies.append(latency_s)
            self._unflushed.append((topic, latency_s))

    def flush(self) -> None:
        """Hand the outputs counted since the last flush to the metrics, per topic and as one set of latencies."""
        with self._lock:
            if not self._unflushed:
                return
            done, self._unflushed = self._unflushed, []
        for topic, n in Counter(topic for topic, _ in done).items():
            self.metrics.record_produced(topic, n)
        self.metrics.observe_latencies([latency for _, latency in done])

    def count_dead_letter(self, reason: str) -> None:
        """One dead-letter record acknowledged by the broker."""
        with self._lock:
            self.dead_lettered += 1
            self.dlq_reasons[reason] += 1
        self.metrics.record_dead_letter(reason)

    def snapshot(self) -> dict[str, Any]:
        self.flush()
        with self._lock:
            elapsed = max(1e-9, time.monotonic() - self.started)
            lat = np.array(self.latencies) if self.latencies else None
            snap: dict[str, Any] = {
                "consumed": self.consumed,
                "produced": self.produced,
                "dead_lettered": self.dead_lettered,
                "batches": self.batches,
                "avg_batch_size": round(self.batch_items / self.batches, 2) if self.batches else 0.0,
                "padding_ratio": round(self.padded_tokens / self.real_tokens, 3) if self.real_tokens else 0.0,
                "msgs_per_s": round(self.produced / elapsed, 1),
            }
            labels, dlq_reasons = dict(self.labels), dict(self.dlq_reasons)
        snap["latency_p50_ms"] = round(float(np.percentile(lat, 50)) * 1000, 1) if lat is not None else None
        snap["latency_p99_ms"] = round(float(np.percentile(lat, 99)) * 1000, 1) if lat is not None else None
        snap["labels"], snap["dlq_reasons"] = labels, dlq_reasons
        return snap
