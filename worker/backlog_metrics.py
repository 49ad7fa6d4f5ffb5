"""``sentiment_backlog_seconds``: how long the backlog a worker owns takes to clear at its current throughput.

Fed by :class:`worker.metrics.WorkerMetrics`: ``set_lag`` about once a second from the poll loop (each call is a
*tick*), ``record_commit`` at each acknowledged commit. Per owned partition, labels ``topic`` and ``partition``::

    backlog_seconds = lag / throughput

- **lag**: ``sentiment_consumer_lag`` of the partition (high-water mark − consumer position, in offsets);
- **throughput**: records committed per *busy* second in that partition over a sliding window of ``WINDOW_S``
  (60 s): how far the committed offset advanced within the window, divided by the time within the window the
  partition had work (a lag above 0 at either end of a tick, or a commit during it). Counting busy time, not wall
  time, makes it the rate the worker clears records at when it has them: a burst after an idle minute isn't
  divided by the idle minute. A committed offset counts a record once it was produced or dead-lettered, so this
  is what the worker really got done. The advance is counted from the first commit this worker saw;
- **all**: one more series per topic, ``partition="all"``: the topic's total lag over the topic's throughput (the
  partitions' advances summed, divided by the time any partition of the topic had work): the time this worker
  needs for all its backlog of that topic. It is the series to alert and scale on; exclude it
  (``partition!="all"``) when aggregating the per-partition series.

Special values, chosen for KEDA's Prometheus scaler (which turns ``+Inf``/``NaN`` into 0 when ``ignoreNullValues``
is true, its default, and into an error otherwise, and which multiplies the value by 1000 into an int64): never
``+Inf``, ``NaN`` or a negative value.

- lag 0 → ``0`` (nothing to do), whatever the throughput;
- lag > 0, busy for a whole window and nothing committed in it → ``STALLED_S`` (one day); a computed value is
  capped there too;
- lag > 0 and not measurable yet (less than ``MIN_SPAN_S`` of busy time behind a first advance, or nothing
  committed while busy for less than a window) → no series: the value would be noise.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Gauge

TopicPartition = tuple[str, int]

WINDOW_S = 60.0  # throughput window: a few Prometheus scrapes / KEDA polls, long enough to smooth commit steps
MIN_SPAN_S = 5.0  # busy time needed before a throughput is trusted (commits land every commit_interval_ms)
STALLED_S = 86_400.0  # the value for "not moving": busy a whole window and nothing committed; also the cap
ALL = "all"  # the partition label of the per-topic total


@dataclass
class _Partition:
    lag: int | None = None  # None: no lag at the last tick (not sampled yet, or the high-water mark unknown)
    committed: int | None = None  # the last committed offset seen (the next record to read)
    ticked_committed: int | None = None  # ``committed`` at the last tick
    last_lag: int = 0
    last_t: float | None = None
    busy: float = 0.0  # cumulative busy seconds
    ticks: deque[tuple[float, int | None, float]] = field(default_factory=deque)  # (time, committed, busy)


@dataclass
class _Topic:
    last_t: float | None = None
    busy: float = 0.0
    ticks: deque[tuple[float, float]] = field(default_factory=deque)  # (time, busy)


@dataclass(frozen=True)
class Rate:
    """Over the window: ``advance`` offsets committed in ``busy`` seconds of work; ``per_s`` (records/s) is None
    while not measurable and 0.0 when stalled (busy the whole window, nothing committed)."""

    advance: int
    busy: float
    per_s: float | None
    since: float | None = None  # when the advance is counted from (the window's first tick with a commit)


class BacklogEstimator:
    """The computation (no Prometheus): commits and lags in, seconds of backlog out."""

    def __init__(
        self,
        *,
        window_s: float = WINDOW_S,
        min_span_s: float = MIN_SPAN_S,
        stalled_s: float = STALLED_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < min_span_s <= window_s:
            raise ValueError("need 0 < min_span_s <= window_s")
        self.window_s, self.min_span_s, self.stalled_s = float(window_s), float(min_span_s), float(stalled_s)
        self._clock = clock
        self._parts: dict[TopicPartition, _Partition] = {}
        self._topics: dict[str, _Topic] = {}

    def record_commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Committed offsets (the next record to read) acknowledged now."""
        for tp, offset in offsets.items():
            part = self._parts.setdefault(tp, _Partition())
            if part.committed is None or offset > part.committed:
                part.committed = int(offset)

    def set_lag(self, lags: Mapping[TopicPartition, int]) -> None:
        """A tick: the lag of every partition whose lag is known now (the others keep their history, no value)."""
        now = self._clock()
        for part in self._parts.values():
            part.lag = None
        busy_topics: set[str] = set()
        for tp, raw in lags.items():
            lag = max(0, int(raw))
            part = self._parts.setdefault(tp, _Partition())
            worked = lag > 0 or part.last_lag > 0 or part.committed != part.ticked_committed
            if part.last_t is not None and worked:
                part.busy += now - part.last_t
                busy_topics.add(tp[0])
            part.lag, part.last_lag, part.last_t, part.ticked_committed = lag, lag, now, part.committed
            part.ticks.append((now, part.committed, part.busy))
            _trim(part.ticks, now - self.window_s)
        for name in {tp[0] for tp in lags}:
            topic = self._topics.setdefault(name, _Topic())
            if topic.last_t is not None and name in busy_topics:
                topic.busy += now - topic.last_t
            topic.last_t = now
            topic.ticks.append((now, topic.busy))
            _trim(topic.ticks, now - self.window_s)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions this worker no longer owns (revoked): their history goes."""
        for tp in partitions:
            self._parts.pop(tp, None)
        owned = {tp[0] for tp in self._parts}
        for name in set(self._topics) - owned:
            del self._topics[name]

    def rate(self, tp: TopicPartition) -> Rate:
        """The partition's throughput over the window ending at its last tick."""
        part = self._parts.get(tp)
        if part is None or not part.ticks:
            return Rate(0, 0.0, None)
        busy = part.busy - part.ticks[0][2]
        base = next((tick for tick in part.ticks if tick[1] is not None), None)
        last = part.ticks[-1][1]
        advance = 0 if base is None or base[1] is None or last is None else last - base[1]
        busy_since_base = busy if base is None else part.busy - base[2]
        since = None if base is None else base[0]
        return Rate(advance, busy_since_base, self._per_s(advance, busy_since_base, busy), since)

    def estimate(self) -> dict[tuple[str, str], float]:
        """{(topic, partition or "all"): seconds}, for the partitions (and topics) that have a value now."""
        out: dict[tuple[str, str], float] = {}
        per_topic: dict[str, tuple[int, int, float | None]] = {}  # topic: (total lag, total advance, since)
        for tp, part in sorted(self._parts.items()):
            if part.lag is None:
                continue
            rate = self.rate(tp)
            lag, advance, since = per_topic.get(tp[0], (0, 0, None))
            if rate.advance > 0 and rate.since is not None:
                since = rate.since if since is None else min(since, rate.since)
            per_topic[tp[0]] = (lag + part.lag, advance + rate.advance, since)
            value = self._seconds(part.lag, rate.per_s)
            if value is not None:
                out[(tp[0], str(tp[1]))] = value
        for name, (lag, advance, since) in per_topic.items():
            topic = self._topics[name]
            busy = topic.busy - topic.ticks[0][1]
            # the busy time the advances were made in: from the earliest tick an advance is counted from
            base = next((b for t, b in topic.ticks if since is not None and t >= since), topic.ticks[0][1])
            value = self._seconds(lag, self._per_s(advance, topic.busy - base, busy))
            if value is not None:
                out[(name, ALL)] = value
        return out

    def _per_s(self, advance: int, busy_since_base: float, busy_in_window: float) -> float | None:
        if advance > 0:
            return advance / busy_since_base if busy_since_base >= self.min_span_s else None
        # Nothing committed: stalled only when there was work during the whole window.
        return 0.0 if busy_in_window >= self.window_s else None

    def _seconds(self, lag: int, per_s: float | None) -> float | None:
        if lag <= 0:
            return 0.0
        if per_s is None:
            return None
        if per_s <= 0:
            return self.stalled_s
        return min(lag / per_s, self.stalled_s)


def _trim(ticks: deque[Any], start: float) -> None:
    """Keep the newest tick at or before ``start`` (the window's base) and every later one."""
    while len(ticks) >= 2 and ticks[1][0] <= start:
        ticks.popleft()


class BacklogGauge:
    """The estimator published in ``gauge``: ``sentiment_backlog_seconds{topic,partition}``, declared with the
    worker's other metrics (``worker/metrics.py``)."""

    def __init__(self, gauge: Gauge, estimator: BacklogEstimator | None = None) -> None:
        self.estimator = estimator if estimator is not None else BacklogEstimator()
        self.gauge = gauge
        self._lock = threading.Lock()
        self._series: set[tuple[str, str]] = set()

    def record_commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        with self._lock:
            self.estimator.record_commit(offsets)

    def set_lag(self, lags: Mapping[TopicPartition, int]) -> None:
        """New lag samples: every value is recomputed and published (series without a value are removed)."""
        with self._lock:
            self.estimator.set_lag(lags)
            self._publish()

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        with self._lock:
            self.estimator.forget(partitions)
            self._publish()

    def _publish(self) -> None:
        values = self.estimator.estimate()
        for topic, partition in self._series - set(values):
            self.gauge.remove(topic, partition)
        for (topic, partition), seconds in values.items():
            self.gauge.labels(topic=topic, partition=partition).set(seconds)
        self._series = set(values)
