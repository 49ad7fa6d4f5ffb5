"""What the pipeline reports to: the metrics and the health state, as Protocols, with typed no-op stand-ins.

:class:`worker.metrics.WorkerMetrics` and :class:`worker.metrics.HealthState` implement these; a worker built
without them (tests, benchmarks) gets :class:`NullMetrics` / :class:`NullHealth`. Each Protocol lists exactly
the methods the pipeline calls, nothing more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from worker.stream.types import Item

TopicPartition = tuple[str, int]


class PipelineMetrics(Protocol):
    def set_model_info(
        self, *, model_id: str, revision: str | None, provider: str, precision: str, sha256: str
    ) -> None: ...

    def record_consumed(self, topic: str, n: int) -> None: ...

    def record_produced(self, topic: str, n: int) -> None: ...

    def record_dead_letter(self, reason: str, n: int = 1) -> None: ...

    def record_batch(self, size: int, real_tokens: int, padded_tokens: int, infer_seconds: float) -> None: ...

    def observe_latencies(self, seconds: Sequence[float]) -> None: ...

    def set_queue_depth(self, batches: int) -> None: ...

    def set_paused_partitions(self, n: int) -> None: ...

    def set_assigned_partitions(self, n: int) -> None: ...

    def record_commit(self, offsets: Mapping[TopicPartition, int]) -> None: ...

    def set_lag(self, lags: Mapping[TopicPartition, int]) -> None: ...

    def forget_partitions(self, partitions: Iterable[TopicPartition]) -> None: ...


class HealthReporter(Protocol):
    def beat(self) -> None: ...

    def set_model_loaded(self, ok: bool) -> None: ...

    def set_broker_reachable(self, ok: bool) -> None: ...

    def set_assignment(self, partitions: int, waiting: bool) -> None: ...

    def set_inference_ok(self, ok: bool) -> None: ...

    def set_stage_failed(self, name: str) -> None: ...

    def set_topics_missing(self, topics: Sequence[str]) -> None: ...


class NullMetrics:
    """Metrics that go nowhere."""

    def set_model_info(
        self, *, model_id: str, revision: str | None, provider: str, precision: str, sha256: str
    ) -> None:
        pass

    def record_consumed(self, topic: str, n: int) -> None:
        pass

    def record_produced(self, topic: str, n: int) -> None:
        pass

    def record_dead_letter(self, reason: str, n: int = 1) -> None:
        pass

    def record_batch(self, size: int, real_tokens: int, padded_tokens: int, infer_seconds: float) -> None:
        pass

    def observe_latencies(self, seconds: Sequence[float]) -> None:
        pass

    def set_queue_depth(self, batches: int) -> None:
        pass

    def set_paused_partitions(self, n: int) -> None:
        pass

    def set_assigned_partitions(self, n: int) -> None:
        pass

    def record_commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        pass

    def set_lag(self, lags: Mapping[TopicPartition, int]) -> None:
        pass

    def forget_partitions(self, partitions: Iterable[TopicPartition]) -> None:
        pass


class NullHealth:
    """Health facts that go nowhere."""

    def beat(self) -> None:
        pass

    def set_model_loaded(self, ok: bool) -> None:
        pass

    def set_broker_reachable(self, ok: bool) -> None:
        pass

    def set_assignment(self, partitions: int, waiting: bool) -> None:
        pass

    def set_inference_ok(self, ok: bool) -> None:
        pass

    def set_stage_failed(self, name: str) -> None:
        pass

    def set_topics_missing(self, topics: Sequence[str]) -> None:
        pass


class BatchTracer(Protocol):
    """Trace spans of the inference stage: called once per model batch, after the call, with its duration and
    the error it raised (None when it succeeded). ``worker/tracing/`` builds one from the ``OTEL_*`` environment;
    :class:`NullBatchTracer` is the default (tracing off)."""

    def model_batch(self, items: Sequence[Item], seconds: float, error: BaseException | None = None) -> None: ...


class NullBatchTracer:
    """Tracing off: each call returns at once, without looking at the batch."""

    def model_batch(self, items: Sequence[Item], seconds: float, error: BaseException | None = None) -> None:
        pass

    def close(self) -> None:
        pass
