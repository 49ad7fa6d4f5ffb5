"""The web app's data side, plain Python: parse what the worker writes to Kafka, aggregate it for the page.

- :func:`parse_enriched`: an output record (``worker.records.EnrichedRecord``: the input object plus
  ``sentiment`` and ``sentiment_meta``) → :class:`LiveRecord`; anything else → ``None``.
- :func:`dead_letter_reason`: the reason a dead letter carries in its ``x-dlq-error-type`` header, or ``None`` for
  a record that is not a dead letter.
- :class:`LiveStats`: a bounded history of records and dead letters → :class:`Snapshot` (latest records, label mix
  per time bucket, throughput, latency percentiles, dead letters by reason). Thread-safe: a Kafka thread adds, the
  page reads.
- :func:`parse_lag`: ``sentiment_consumer_lag`` per (topic, partition) from a worker's ``/metrics`` text.

Times: throughput and the label mix are bucketed by ``sentiment_meta.processed_at`` (the worker's clock), so a
backlog read at start shows when the records were enriched, not when the page read them. End-to-end latency is
``processed_at`` − the Kafka timestamp of the input record (``sentiment_meta.source.timestamp``: the producer's
create time unless the topic uses log-append time); "in worker" is ``sentiment_meta.latency_ms``.
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from worker.records import DLQ_HEADER_ERROR_TYPE

HISTORY = 5000  # records kept for the aggregates
UNKNOWN_REASON = "unknown"


@dataclass(frozen=True, slots=True)
class LiveRecord:
    topic: str
    partition: int
    offset: int
    text: str
    label: str
    score: float
    processed_at: float | None  # epoch seconds (the worker's clock)
    e2e_ms: float | None  # processed_at − the input record's Kafka timestamp
    worker_ms: float | None  # sentiment_meta.latency_ms: received from Kafka → produced


def _epoch(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def parse_enriched(
    topic: str, partition: int, offset: int, value: bytes | None, text_field: str = "text"
) -> LiveRecord | None:
    """An enriched output record, or ``None`` when ``value`` is not one (not JSON, no ``sentiment``, ...)."""
    if not value:
        return None
    try:
        payload = json.loads(value)
    except (ValueError, RecursionError):
        return None
    if not isinstance(payload, dict):
        return None
    sentiment = payload.get("sentiment")
    if not isinstance(sentiment, dict) or not isinstance(sentiment.get("label"), str):
        return None
    meta = payload.get("sentiment_meta")
    meta = meta if isinstance(meta, dict) else {}
    source = meta.get("source") if isinstance(meta.get("source"), dict) else {}
    processed_at = _epoch(meta.get("processed_at"))
    produced_ms = _number(source.get("timestamp"))
    e2e_ms = None
    if processed_at is not None and produced_ms is not None:
        e2e_ms = max(0.0, processed_at * 1000.0 - produced_ms)
    text = payload.get(text_field)
    if not isinstance(text, str):
        text = payload.get("text") if isinstance(payload.get("text"), str) else ""
    return LiveRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        text=text,
        label=sentiment["label"],
        score=_number(sentiment.get("score")) or 0.0,
        processed_at=processed_at,
        e2e_ms=e2e_ms,
        worker_ms=_number(meta.get("latency_ms")),
    )


def dead_letter_reason(headers: Iterable[tuple[str, bytes | None]] | None) -> str | None:
    """The ``x-dlq-error-type`` of a dead letter (``unknown`` when empty or not UTF-8); ``None``: not a dead letter."""
    for key, value in headers or ():
        if key == DLQ_HEADER_ERROR_TYPE:
            try:
                reason = (value or b"").decode("utf-8").strip()
            except UnicodeDecodeError:
                reason = ""
            return reason or UNKNOWN_REASON
    return None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0–100, linear interpolation as numpy's default); ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def throughput(times: Iterable[float | None], now: float, window_s: float) -> float:
    """Records per second over the ``window_s`` seconds before ``now`` (by processed_at)."""
    if window_s <= 0:
        raise ValueError("window_s must be > 0")
    start = now - window_s
    return sum(1 for t in times if t is not None and start < t <= now) / window_s


def label_mix(
    records: Iterable[LiveRecord], now: float, window_s: float, bucket_s: float
) -> list[tuple[float, str, int]]:
    """(bucket start, label, count) for every complete bucket of ``bucket_s`` seconds in the last ``window_s``
    seconds that has records, by processed_at, in time then label order."""
    counts: Counter[tuple[float, str]] = Counter()
    start = now - window_s
    for record in records:
        t = record.processed_at
        if t is None or not start < t <= now:
            continue
        bucket = math.floor(t / bucket_s) * bucket_s
        if bucket + bucket_s <= now:  # the bucket still filling is left out (it would always dip)
            counts[(bucket, record.label)] += 1
    return [(bucket, label, n) for (bucket, label), n in sorted(counts.items())]


def parse_lag(text: str, metric: str = "sentiment_consumer_lag") -> dict[tuple[str, int], int]:
    """Consumer lag per (topic, partition) from Prometheus text; raises ``ValueError`` if the text is not that."""
    from prometheus_client.parser import text_string_to_metric_families

    lags: dict[tuple[str, int], int] = {}
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as exc:  # the parser raises ValueError, IndexError, ... on text that isn't the format
        raise ValueError(f"not Prometheus text: {exc}") from None
    for family in families:
        for sample in family.samples:
            if sample.name != metric:
                continue
            topic, partition = sample.labels.get("topic"), sample.labels.get("partition")
            if topic is None or partition is None or not partition.isdigit() or math.isnan(sample.value):
                continue
            lags[(topic, int(partition))] = int(sample.value)
    return lags


@dataclass(frozen=True)
class Snapshot:
    """What the page shows, computed at one instant."""

    records: int  # enriched records read since the app started
    dead_letters: int
    latest: list[LiveRecord]  # newest first
    mix: list[tuple[float, str, int]]
    labels: dict[str, int]  # label counts over the history
    per_s: float  # records/s over the throughput window
    e2e_p50: float | None
    e2e_p99: float | None
    worker_p50: float | None
    worker_p99: float | None
    reasons: dict[str, int] = field(default_factory=dict)  # dead letters by reason, most first


class LiveStats:
    """Records and dead letters as they are read; :meth:`snapshot` aggregates them for the page."""

    def __init__(self, *, history: int = HISTORY, window_s: float = 60.0, bucket_s: float = 2.0) -> None:
        self.window_s = window_s
        self.bucket_s = bucket_s
        self.rate_window_s = 10.0
        self._records: deque[LiveRecord] = deque(maxlen=history)
        self._count = 0
        self._reasons: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, record: LiveRecord) -> None:
        with self._lock:
            self._records.append(record)
            self._count += 1

    def add_dead_letter(self, reason: str) -> None:
        with self._lock:
            self._reasons[reason] += 1

    def snapshot(self, now: float, latest: int = 20) -> Snapshot:
        with self._lock:
            records = list(self._records)
            count = self._count
            reasons = dict(self._reasons.most_common())
        e2e = [r.e2e_ms for r in records if r.e2e_ms is not None]
        worker = [r.worker_ms for r in records if r.worker_ms is not None]
        return Snapshot(
            records=count,
            dead_letters=sum(reasons.values()),
            latest=records[-latest:][::-1] if latest > 0 else [],
            mix=label_mix(records, now, self.window_s, self.bucket_s),
            labels=dict(Counter(r.label for r in records).most_common()),
            per_s=throughput((r.processed_at for r in records), now, self.rate_window_s),
            e2e_p50=percentile(e2e, 50),
            e2e_p99=percentile(e2e, 99),
            worker_p50=percentile(worker, 50),
            worker_p99=percentile(worker, 99),
            reasons=reasons,
        )
