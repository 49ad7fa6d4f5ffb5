"""The web app's background readers: Kafka topics into :class:`~webapp.data.LiveStats`, and a worker's
``/metrics`` for consumer lag. Each runs on a daemon thread and publishes a :class:`Status` the page shows; nothing
they meet stops them (an unreachable broker, a missing topic, a worker that does not answer): they say so, wait and
try again, and recover when the thing comes back.

The Kafka reader has no consumer group: it assigns itself every partition of the topics and seeks, so it never
joins (or commits for) the worker's group. At start it reads back the last ``backlog`` records of each partition,
then follows. It never creates a topic (``allow_auto_create_topics`` off). A record with an ``x-dlq-error-type``
header counts as a dead letter (by reason), one with ``sentiment`` in its JSON value as an enriched record; so
output and dead-letter topics can be given in one list.
"""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from webapp.data import LiveStats, dead_letter_reason, parse_enriched, parse_lag
from worker.observability import get_logger
from worker.settings import Kafka

log = get_logger(__name__)

CHECK_EVERY_S = 2.0  # topic metadata (and so the broker) is checked this often
RETRY_S = 2.0
PROBE_S = 3.0  # one bootstrap attempt


class BrokerUnreachable(ConnectionError):
    """No broker of the bootstrap list answered a bounded attempt."""


@dataclass(frozen=True)
class Status:
    ok: bool
    message: str
    since: float  # when this status began (time.time())


class _StatusBox:
    def __init__(self, message: str) -> None:
        self._lock = threading.Lock()
        self._status = Status(False, message, time.time())

    def set(self, ok: bool, message: str) -> None:
        with self._lock:
            if (ok, message) != (self._status.ok, self._status.message):
                self._status = Status(ok, message, time.time())
                (log.info if ok else log.warning)("ui_status", ok=ok, message=message)

    def get(self) -> Status:
        with self._lock:
            return self._status


class TopicFeed:
    """Reads ``topics`` from the cluster ``kafka`` names (its connection and security options) on a thread."""

    def __init__(
        self,
        kafka: Kafka,
        topics: Sequence[str],
        stats: LiveStats,
        *,
        backlog: int = 100,
        text_field: str = "text",
        check_every_s: float = CHECK_EVERY_S,
    ) -> None:
        if not topics:
            raise ValueError("no topics to show")
        self.kafka = kafka
        self.topics = list(dict.fromkeys(topics))
        self.stats = stats
        self.backlog = backlog
        self.text_field = text_field
        self.check_every_s = check_every_s
        self.where = ",".join(kafka.bootstrap_servers)
        self._status = _StatusBox(f"connecting to Kafka at {self.where} ...")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ui-kafka-feed", daemon=True)
        self._assigned: set[tuple[str, int]] = set()

    @property
    def status(self) -> Status:
        return self._status.get()

    def start(self) -> TopicFeed:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout_s)

    # ---- the thread ------------------------------------------------------------------------------------------
    def _run(self) -> None:
        consumer = None
        next_check = 0.0
        while not self._stop.is_set():
            try:
                if consumer is None:
                    consumer = self._open()
                    self._assigned = set()
                    next_check = 0.0
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + self.check_every_s
                    self._check(consumer)
                for batch in consumer.poll(timeout_ms=250).values():
                    for record in batch:
                        self._take(record)
            except Exception as exc:
                self._status.set(False, self._explain(exc))
                if consumer is not None:
                    _close(consumer)
                    consumer = None
                self._stop.wait(RETRY_S)
        if consumer is not None:
            _close(consumer)

    def _open(self) -> Any:
        from kafka import KafkaConsumer

        from worker.stream.kafka.cluster import cluster_answers, new_client

        # One bounded bootstrap attempt first: the consumer's constructor alone waits ~30 s for an absent broker.
        if not cluster_answers(self.kafka, timeout_s=PROBE_S):
            raise BrokerUnreachable(self.where)

        config = {
            **self.kafka.kafka_security(),
            "client_id": f"{self.kafka.client_id}-ui",
            "group_id": None,  # no group: never joins or commits the worker's group
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",  # a broker that restarted empty: read its new records from the start
            "allow_auto_create_topics": False,
            "reconnect_backoff_max_ms": 1000,
            "request_timeout_ms": 10_000,
        }
        return new_client(KafkaConsumer, config)

    def _check(self, consumer: Any) -> None:
        """Look the topics up (a remote call: raises while the broker is away); assign new partitions."""
        existing = consumer.topics()
        missing = [t for t in self.topics if t not in existing]
        wanted = {(t, p) for t in self.topics if t in existing for p in consumer.partitions_for_topic(t)}
        if wanted != self._assigned:
            self._assign(consumer, wanted)
        if missing:
            self._status.set(
                False,
                f"topic{'s' if len(missing) > 1 else ''} {', '.join(missing)} not found on Kafka at "
                f"{self.where} (waiting for {'them' if len(missing) > 1 else 'it'} to be created)",
            )
        else:
            self._status.set(True, f"reading {', '.join(self.topics)} from Kafka at {self.where}")

    def _assign(self, consumer: Any, wanted: set[tuple[str, int]]) -> None:
        from kafka import TopicPartition

        new = [TopicPartition(t, p) for t, p in sorted(wanted - self._assigned)]
        consumer.assign([TopicPartition(t, p) for t, p in sorted(wanted)])
        if new:
            # Tansu answers end_offsets() with the last batch's base offset + 1, so a few more records than
            # `backlog` may be read back there: harmless for a live view.
            begin = consumer.beginning_offsets(new)
            end = consumer.end_offsets(new)
            for tp in new:
                consumer.seek(tp, max(begin.get(tp) or 0, (end.get(tp) or 0) - self.backlog))
        self._assigned = wanted

    def _take(self, record: Any) -> None:
        reason = dead_letter_reason(record.headers)
        if reason is not None:
            self.stats.add_dead_letter(reason)
            return
        live = parse_enriched(record.topic, record.partition, record.offset, record.value, self.text_field)
        if live is not None:
            self.stats.add(live)

    def _explain(self, exc: BaseException) -> str:
        name = type(exc).__name__
        if name in {"BrokerUnreachable", "NoBrokersAvailable", "KafkaConnectionError", "KafkaTimeoutError"}:
            return f"Kafka at {self.where} is unreachable ({name}); retrying every {RETRY_S:.0f} s"
        return f"reading Kafka at {self.where} failed: {name}: {str(exc)[:200]}; retrying every {RETRY_S:.0f} s"


def _close(consumer: Any) -> None:
    with contextlib.suppress(Exception):
        consumer.close(timeout_ms=1000)


class LagFeed:
    """Scrapes a worker's ``/metrics`` every ``every_s`` seconds for ``sentiment_consumer_lag``."""

    def __init__(
        self,
        url: str,
        *,
        every_s: float = 2.0,
        timeout_s: float = 2.0,
        fetch: Callable[[str, float], str] | None = None,
    ) -> None:
        self.url = url
        self.every_s = every_s
        self.timeout_s = timeout_s
        self._fetch = fetch or _get_text
        self._lock = threading.Lock()
        self._lags: dict[tuple[str, int], int] | None = None
        self._status = _StatusBox(f"reading consumer lag from {url} ...")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ui-metrics-feed", daemon=True)

    @property
    def status(self) -> Status:
        return self._status.get()

    @property
    def lags(self) -> dict[tuple[str, int], int] | None:
        with self._lock:
            return None if self._lags is None else dict(self._lags)

    def start(self) -> LagFeed:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout_s)

    def poll_once(self) -> None:
        try:
            lags = parse_lag(self._fetch(self.url, self.timeout_s))
        except (OSError, ValueError) as exc:
            with self._lock:
                self._lags = None
            self._status.set(False, f"worker metrics at {self.url} do not answer ({_reason(exc)}); retrying")
            return
        with self._lock:
            self._lags = lags
        self._status.set(True, f"consumer lag from {self.url}")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.every_s)


def _get_text(url: str, timeout_s: float) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as answer:
        return str(answer.read().decode("utf-8", "replace"))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)[:200]
    return f"{type(exc).__name__}: {str(exc)[:200]}"
