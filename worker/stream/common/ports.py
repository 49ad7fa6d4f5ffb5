"""The pipeline's seams, as Protocols: the model it runs, and what it reports to (metrics, health state).

:class:`Model` is what every stage, the hot swap (``swap.py``), the circuit breaker (``guard.py``), the HTTP API and
shadow mode use of a model: :class:`worker.model.runtime.SentimentModel` implements it, and loading one is
``worker/model/``'s job (``worker/app.py`` hands the loaded model in), so nothing under ``worker/stream/`` imports
ONNX Runtime. :class:`worker.metrics.WorkerMetrics` and :class:`worker.health.HealthState` implement the
reporting Protocols; a worker built without them (tests, benchmarks) gets :class:`NullMetrics` / :class:`NullHealth`.
Each Protocol lists exactly what the pipeline uses, nothing more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from worker.stream.common.types import Item

TopicPartition = tuple[str, int]


class InferenceResult(Protocol):
    """One model call's output, rows in input order."""

    @property
    def probs(self) -> np.ndarray: ...  # (n, len(labels)) float32

    @property
    def real_tokens(self) -> int: ...  # tokens of the inputs (incl. special tokens)

    @property
    def padded_tokens(self) -> int: ...  # positions fed to the model, padding included

    @property
    def logits(self) -> np.ndarray | None: ...  # raw scores (HTTP raw_scores), when the model gives them


class Model(Protocol):
    """A loaded sentiment model: its tokenizer, its forward pass and what the outputs say about it."""

    model_id: str
    revision: str | None
    sha256: str  # of the ONNX file
    precision: str
    provider: str  # the execution provider the session got
    labels: Sequence[str]  # the columns of ``InferenceResult.probs``
    vocab: str  # the tokenizer's fingerprint: ids made by another one are tokenised again after a swap

    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]: ...  # ids, truncated

    def infer_ids(self, ids: Sequence[Sequence[int]], *, chunk_size: int | None = None) -> InferenceResult: ...

    def model_meta(self) -> dict[str, Any]: ...  # id, revision, onnx_sha256, precision, provider

    def reload(self) -> None: ...  # a new session on the same files (the circuit breaker's rebuild)


def model_info(model: Model) -> dict[str, Any]:
    """What the metrics show of the model in use (``PipelineMetrics.set_model_info``: ``sentiment_model``)."""
    keys = ("model_id", "revision", "provider", "precision", "sha256")
    return {key: getattr(model, key) for key in keys}


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

    def set_input_unavailable(self, reason: str | None) -> None: ...  # a service the input format needs (registry)


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

    def set_input_unavailable(self, reason: str | None) -> None:
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
