"""The worker's Prometheus metrics, all declared here (the HTTP API's are ``worker/serve/http_metrics.py``, roll-out and
shadow mode's ``worker/rollout/metrics.py``, the supervisor's ``worker/supervisor/observe.py``).

One :class:`WorkerMetrics` per worker (its own registry: tests build many), fed by the runner; served on
``/metrics`` by ``worker/probes.py`` (or the HTTP API), beside the health verdicts of ``worker/health.py``.

Metric names (all prefixed ``sentiment_``):

=========================================  =========  ==================================================
name                                       type       meaning
=========================================  =========  ==================================================
messages_consumed_total{topic}             counter    records taken from the input topics
messages_produced_total{topic}             counter    output records acknowledged by the brokers
dead_letters_total{reason}                 counter    records sent to the dead-letter topic, by reason
batches_total                              counter    model batches run
batch_size                                 histogram  records per batch
tokens_real_total / tokens_padded_total    counter    tokens fed to the model without / with padding
padding_ratio                              gauge      padded / real tokens of the last batch (1.0 = no waste)
batch_padding_ratio                        histogram  padded / real tokens per batch
inference_seconds                          histogram  model time per batch
end_to_end_latency_seconds                 histogram  per record: received from Kafka → output acknowledged
queue_depth_batches                        gauge      batches waiting between stages
paused_partitions                          gauge      partitions paused for back-pressure
assigned_partitions                        gauge      partitions this worker owns
commits_total                              counter    offset commits
committed_offset{topic,partition}          gauge      last committed offset (next record to read)
consumer_lag{topic,partition}              gauge      high-water mark − position, per owned partition
backlog_seconds{topic,partition}           gauge      lag ÷ committed records per busy second (backlog_metrics.py)
model_info{model_id,revision,...}          info       model id, revision, active execution provider, ...
ready / alive                              gauge      1/0: what /readyz and /healthz answer (set at scrape)
main_loop_age_seconds                      gauge      seconds since the main loop last iterated
worker_info{version}                       info       package version
=========================================  =========  ==================================================
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)

from worker import __version__
from worker.backlog_metrics import STALLED_S, WINDOW_S, BacklogGauge

if TYPE_CHECKING:
    from worker.health import HealthState

PREFIX = "sentiment"

# Seconds: 1 ms (a small GPU batch) … 30 s (a large CPU batch at max length, or a slow broker ack).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Records per batch: powers of two up to Settings.max_batch_size's upper bound (4096).
BATCH_SIZE_BUCKETS: tuple[float, ...] = tuple(float(2**i) for i in range(13))
# padded / real tokens: 1.0 means no padding waste, 2.0 means half the compute was padding.
PADDING_RATIO_BUCKETS: tuple[float, ...] = (1.0, 1.05, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)

TopicPartition = tuple[str, int]
# How a gauge merges over the processes of `run --processes N` (prometheus-client multiprocess mode, worker/supervisor/;
# ignored in one process). sentiment_ready/alive/main_loop_age are the supervisor's own there, not merged.
_SUM, _LAST = {"multiprocess_mode": "livesum"}, {"multiprocess_mode": "livemostrecent"}


class WorkerMetrics:
    """Every metric of one worker, in one registry (a fresh one unless given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        own = registry is None
        self.registry: CollectorRegistry = registry if registry is not None else CollectorRegistry()
        if own:
            # Memory, CPU and open files of the worker process (the global registry has this by default).
            ProcessCollector(registry=self.registry)
        r = self.registry
        self.consumed = Counter(
            f"{PREFIX}_messages_consumed", "Records taken from the input topics.", ["topic"], registry=r
        )
        self.produced = Counter(
            f"{PREFIX}_messages_produced",
            "Output records acknowledged by the brokers.",
            ["topic"],
            registry=r,
        )
        self.dead_letters = Counter(
            f"{PREFIX}_dead_letters", "Records sent to the dead-letter topic, by reason.", ["reason"], registry=r
        )
        self.batches = Counter(f"{PREFIX}_batches", "Model batches run.", registry=r)
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size", "Records per model batch.", buckets=BATCH_SIZE_BUCKETS, registry=r
        )
        self.tokens_real = Counter(f"{PREFIX}_tokens_real", "Real (non-padding) tokens fed to the model.", registry=r)
        self.tokens_padded = Counter(
            f"{PREFIX}_tokens_padded", "Tokens fed to the model including padding.", registry=r
        )
        self.padding_ratio = Gauge(
            f"{PREFIX}_padding_ratio",
            "Padded / real tokens of the last batch (1.0 = no padding waste).",
            registry=r,
            **_LAST,
        )
        self.padding_ratio_hist = Histogram(
            f"{PREFIX}_batch_padding_ratio",
            "Padded / real tokens per batch (1.0 = no padding waste).",
            buckets=PADDING_RATIO_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            f"{PREFIX}_inference_seconds", "Model time per batch.", buckets=LATENCY_BUCKETS, registry=r
        )
        self.latency = Histogram(
            f"{PREFIX}_end_to_end_latency_seconds",
            "Per record: received from Kafka until the output record is acknowledged.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            f"{PREFIX}_queue_depth_batches", "Batches waiting between pipeline stages.", registry=r, **_SUM
        )
        self.paused_partitions = Gauge(
            f"{PREFIX}_paused_partitions", "Partitions paused for back-pressure.", registry=r, **_SUM
        )
        self.assigned_partitions = Gauge(
            f"{PREFIX}_assigned_partitions", "Partitions assigned to this worker.", registry=r, **_SUM
        )
        self.commits = Counter(f"{PREFIX}_commits", "Offset commits.", registry=r)
        self.committed_offset = Gauge(
            f"{PREFIX}_committed_offset",
            "Last committed offset (the next record to read) per partition.",
            ["topic", "partition"],
            registry=r,
            **_LAST,
        )
        self.lag = Gauge(
            f"{PREFIX}_consumer_lag",
            "High-water mark minus consumer position, per partition owned by this worker.",
            ["topic", "partition"],
            registry=r,
            **_LAST,
        )
        self.model_info = Info(
            f"{PREFIX}_model",
            "Model in use: id, revision, active execution provider, precision, ONNX file sha256.",
            registry=r,
        )
        self.worker_info = Info(f"{PREFIX}_worker", "Worker build information.", registry=r)
        self.ready = Gauge(f"{PREFIX}_ready", "1 when /readyz answers 200 (set at each scrape).", registry=r)
        self.alive = Gauge(f"{PREFIX}_alive", "1 when /healthz answers 200 (set at each scrape).", registry=r)
        self.loop_age = Gauge(
            f"{PREFIX}_main_loop_age_seconds",
            "Seconds since the main loop last iterated (-1 before it started).",
            registry=r,
        )
        backlog = Gauge(
            f"{PREFIX}_backlog_seconds",
            "Seconds to clear the owned lag at the current throughput (records committed per busy second over "
            f'the last {WINDOW_S:.0f} s); partition="all": per topic; {STALLED_S:.0f} when nothing moves.',
            ["topic", "partition"],
            registry=r,
            multiprocess_mode="livemax",  # `run --processes N`: a pod shows its slowest process (one process: unused)
        )
        self.backlog = BacklogGauge(backlog)  # its values, from the lags and commits below (backlog_metrics.py)
        self.worker_info.info({"version": __version__})
        self._lock = threading.Lock()
        self._lag_series: set[TopicPartition] = set()
        self._offset_series: set[TopicPartition] = set()

    # ---- counters ---------------------------------------------------------------------------------
    def record_consumed(self, topic: str, n: int) -> None:
        self.consumed.labels(topic=topic).inc(_count(n))

    def record_produced(self, topic: str, n: int) -> None:
        self.produced.labels(topic=topic).inc(_count(n))

    def record_dead_letter(self, reason: str, n: int = 1) -> None:
        self.dead_letters.labels(reason=reason).inc(_count(n))

    def record_batch(self, size: int, real_tokens: int, padded_tokens: int, infer_seconds: float) -> None:
        """One model batch: ``padded_tokens`` counts every position fed to the model, padding included."""
        self.batches.inc()
        self.batch_size.observe(_count(size))
        self.inference_seconds.observe(max(0.0, float(infer_seconds)))
        real, padded = _count(real_tokens), _count(padded_tokens)
        self.tokens_real.inc(real)
        self.tokens_padded.inc(padded)
        if real > 0:
            ratio = padded / real
            self.padding_ratio.set(ratio)
            self.padding_ratio_hist.observe(ratio)

    def observe_latencies(self, seconds: Sequence[float]) -> None:
        for value in seconds:
            self.latency.observe(max(0.0, float(value)))

    # ---- gauges -----------------------------------------------------------------------------------
    def set_queue_depth(self, batches: int) -> None:
        self.queue_depth.set(batches)

    def set_paused_partitions(self, n: int) -> None:
        self.paused_partitions.set(n)

    def set_assigned_partitions(self, n: int) -> None:
        self.assigned_partitions.set(n)

    def record_commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """One commit of ``offsets`` ({(topic, partition): next offset to read})."""
        self.commits.inc()
        with self._lock:
            for (topic, partition), offset in offsets.items():
                self.committed_offset.labels(topic=topic, partition=str(partition)).set(offset)
                self._offset_series.add((topic, partition))
        self.backlog.record_commit(offsets)

    def set_lag(self, lags: Mapping[TopicPartition, int]) -> None:
        """Lag of every owned partition; series of partitions not in ``lags`` are removed."""
        with self._lock:
            for (topic, partition), lag in lags.items():
                self.lag.labels(topic=topic, partition=str(partition)).set(max(0, lag))
            stale = self._lag_series - set(lags)
            for topic, partition in stale:
                self.lag.remove(topic, str(partition))
            self._lag_series = set(lags)
        self.backlog.set_lag(lags)

    def forget_partitions(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop the per-partition series (lag, committed offset, backlog) of revoked partitions."""
        partitions = list(partitions)
        self.backlog.forget(partitions)
        with self._lock:
            for tp in partitions:
                if tp in self._lag_series:
                    self.lag.remove(tp[0], str(tp[1]))
                    self._lag_series.discard(tp)
                if tp in self._offset_series:
                    self.committed_offset.remove(tp[0], str(tp[1]))
                    self._offset_series.discard(tp)

    def set_model_info(
        self, *, model_id: str, revision: str | None, provider: str, precision: str, sha256: str
    ) -> None:
        """``provider`` is what the session really got (``session.get_providers()[0]``), not what was asked."""
        self.model_info.info(
            {
                "model_id": model_id,
                "revision": revision or "",
                "provider": provider,
                "precision": precision,
                "sha256": sha256,
            }
        )

    def set_health(self, health: HealthState) -> None:
        """Copy the health verdicts into gauges, so alerts need no probe data (MetricsServer calls it)."""
        alive, live = health.liveness()
        ready, _ = health.readiness()
        self.alive.set(1 if alive else 0)
        self.ready.set(1 if ready else 0)
        age = live["last_beat_age_s"]
        self.loop_age.set(-1 if age is None else age)

    def render(self) -> bytes:
        """The registry in Prometheus text format (what ``/metrics`` serves)."""
        return generate_latest(self.registry)


def _count(n: int | float) -> float:
    if n < 0:
        raise ValueError(f"a count can't be negative: {n}")
    return float(n)
