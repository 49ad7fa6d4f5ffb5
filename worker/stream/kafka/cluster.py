"""What the worker needs from the Kafka cluster around the pipeline: a reachable cluster at start, the topics its
records go to, and clients that release what they created when they fail to start.

- :meth:`Cluster.open`: before any client exists the bootstrap servers are probed (one bounded attempt, then a
  pause doubling up to ``reconnect_backoff_max_ms``) until they answer. Meanwhile ``/readyz`` answers 503,
  ``/healthz`` 200 (the wait beats), ``broker_unreachable`` is logged once per ``log_interval_s`` and a stop ends
  the wait at once. Then the clients are opened; a failure releases what was opened (and a cluster that went away
  again in between is waited for again).
- :class:`TopicCheck`: the output and dead-letter topics of every assigned input topic (one output topic per label
  for a template with ``{label}``) are looked up on a thread of their own, before that input topic's records are
  consumed and again every ``RECHECK_S``. Missing ones are requested the way a send requests them
  (``missing_topics=auto``: a cluster that auto-creates topics creates them), created by the worker (``create``) or
  waited for (``wait``). Until they exist the input topic's partitions stay paused, the worker is not ready and
  ``topics_missing`` is logged (error) when the set changes and once per ``log_interval_s`` while it lasts; they are
  looked up again after 1 s, doubling up to ``RETRY_MAX_S``. Nothing is consumed, so nothing is lost.
- :func:`new_client`: a kafka-python client whose constructor fails (e.g. it can't bootstrap) leaves no network
  thread behind.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from kafka.errors import KafkaTimeoutError, for_code
from kafka.net import KafkaNetClient

from worker.observability import get_logger
from worker.settings import Input, Kafka, Output
from worker.stream.common.ports import HealthReporter
from worker.stream.kafka.mend import topic_name_problem
from worker.stream.kafka.watch import BrokerWatch

log = get_logger(__name__)

T = TypeVar("T")
PROBE_TIMEOUT_S = 5.0  # one bootstrap attempt (connect, TLS/SASL, ApiVersions, metadata)
RECHECK_S = 30.0  # topics found are looked up again this often (a topic deleted meanwhile holds its input again)
RETRY_MAX_S = 10.0  # missing topics are looked up again after 1 s, doubling up to this
# Kafka error codes
UNKNOWN_TOPIC = 3  # UNKNOWN_TOPIC_OR_PARTITION
LEADER_NOT_AVAILABLE = 5  # a topic just created: it exists
TOPIC_ALREADY_EXISTS = 36


def new_client(cls: Callable[..., T], config: dict[str, Any]) -> T:
    """``cls(**config)`` (KafkaConsumer, KafkaProducer, KafkaAdminClient); if the constructor raises, the network
    client it had created is closed (kafka-python leaves its IO thread running otherwise)."""
    created: list[KafkaNetClient] = []

    def factory(**kwargs: Any) -> KafkaNetClient:
        client = KafkaNetClient(**kwargs)
        created.append(client)
        return client

    try:
        return cls(**config, kafka_client=factory)
    except BaseException:
        for client in created:
            with contextlib.suppress(Exception):
                client.close()
        raise


def cluster_answers(kafka: Kafka, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """One bootstrap attempt with the worker's connection settings: True when the cluster answered."""
    client = KafkaNetClient(
        **kafka.kafka_security(),
        client_id=f"{kafka.client_id}-probe",
        reconnect_backoff_max_ms=min(1000, kafka.reconnect_backoff_max_ms),
    )
    try:
        client.get_broker_version(timeout_ms=int(timeout_s * 1000))
        return True
    except KafkaTimeoutError:  # kafka-python retries refused connections and handshake errors until then
        return False
    finally:
        with contextlib.suppress(Exception):
            client.close()


class _Answer:
    """A :class:`~worker.stream.kafka.watch.Probe` that reports a bootstrap attempt's outcome."""

    def __init__(self, reachable: bool) -> None:
        self.reachable = reachable

    def broker_reachable(self) -> bool:
        return self.reachable

    def lag(self) -> dict[tuple[str, int], int]:
        return {}


class Holder(Protocol):
    """What the check holds (the source): its assigned partitions, and keeping some topics paused."""

    def assignment(self) -> Iterable[Any]: ...

    def hold(self, topics: set[str]) -> None: ...


class Cluster:
    def __init__(
        self,
        kafka: Kafka,
        input: Input,
        output: Output,
        labels: Iterable[str],
        health: HealthReporter,
        watch: BrokerWatch,
        *,
        sink: Callable[[], Any],
        probe: Callable[[Kafka], bool] = cluster_answers,
    ) -> None:
        """``sink()``: the current sink (or None), whose producer ``missing_topics=auto`` looks topics up with.
        Input topics named in ``input`` are checked before the assignment (a pattern's once assigned); missing
        topics are logged at the ``watch``'s interval (``log_interval_s``)."""
        self.kafka = kafka
        self.health = health
        self.watch = watch
        self.probe = probe
        self.topics = TopicCheck(
            kafka,
            output,
            labels,
            health,
            producer=lambda: getattr(sink(), "producer", None),
            input_topics=input.input_topics,
            log_interval_s=watch.log_interval_s,
        )

    def open(self, stop: threading.Event, open_clients: Callable[[], None], release: Callable[[], None]) -> bool:
        """Wait for the cluster, then ``open_clients()`` and start checking topics. False: stopped while waiting.

        If ``open_clients`` raises, ``release()`` closes what it opened; on a bootstrap timeout (the cluster went
        away again) the wait starts over, any other error is raised.
        """
        while self.wait_reachable(stop):
            try:
                open_clients()
            except BaseException as exc:
                log.error("worker_start_failed", error=repr(exc), note="closing the clients opened so far")
                release()
                if not isinstance(exc, KafkaTimeoutError):
                    raise
                continue
            self.topics.start()
            return True
        log.info("worker_stopped", complete=True, pending=0, note="stopped while waiting for the cluster")
        return False

    def wait_reachable(self, stop: threading.Event) -> bool:
        """Block until the bootstrap servers answer (True) or ``stop`` is set (False)."""
        pause = 0.25
        while not stop.is_set():
            answer: list[bool | BaseException] = []
            attempt = threading.Thread(target=self._attempt, args=(answer,), name="sentiment-probe", daemon=True)
            attempt.start()
            while attempt.is_alive():  # a stop ends the wait at once; the attempt ends on its own
                self.health.beat()
                if self.watch.unreachable:  # still no answer: keep logging once per interval
                    self.watch.tick(_Answer(False))
                if stop.wait(0.1):
                    return False
            if answer and isinstance(answer[0], BaseException):
                raise answer[0]  # not an unreachable cluster: e.g. a TLS file that can't be read
            reachable = bool(answer and answer[0])
            if not reachable and not self.watch.unreachable:
                log.warning(
                    "waiting_for_cluster",
                    bootstrap_servers=self.kafka.bootstrap_servers,
                    security_protocol=self.kafka.security_protocol,
                    note="it doesn't answer, or refuses these security settings (the debug log says which); "
                    "retrying with backoff, nothing is consumed meanwhile",
                )
            self.watch.check(_Answer(reachable))  # broker_unreachable once per log interval; /readyz
            if reachable:
                return True
            self.health.beat()
            if stop.wait(pause):
                return False
            pause = min(pause * 2, self.kafka.reconnect_backoff_max_ms / 1000.0)
        return False

    def _attempt(self, answer: list[bool | BaseException]) -> None:
        try:
            answer.append(self.probe(self.kafka))
        except BaseException as exc:
            answer.append(exc)

    def assigned(self, source: Holder) -> None:
        """(consumer IO thread, at each assignment) Hold the input topics whose output topics are not known to exist."""
        self.topics.assigned({tp[0] for tp in source.assignment()})
        self.topics.apply(source, force=True)

    def tick(self, source: Holder) -> None:
        """(poll loop) Hold or release input topics as the check found their output topics."""
        self.topics.apply(source)

    def close(self) -> None:
        self.topics.close()


class TopicCheck:
    """The output and dead-letter topics of each assigned input topic exist before its records are consumed."""

    def __init__(
        self,
        kafka: Kafka,
        output: Output,
        labels: Iterable[str],
        health: HealthReporter,
        *,
        producer: Callable[[], Any],
        input_topics: Iterable[str] = (),
        log_interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kafka = kafka
        self.output = output
        self.log_interval_s = log_interval_s
        self.labels = sorted({label.lower() for label in labels})
        self.health = health
        self.producer = producer  # the sink's producer (or None): missing_topics=auto asks as its sends do
        self._clock = clock
        self._lock = threading.Lock()
        self._assigned: set[str] = set(input_topics)  # checked from the start, before the assignment
        self._ok: set[str] = set()  # input topics whose output topics were found
        self._problems: dict[str, list[str]] = {}
        self._applied: set[str] | None = None
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_log = 0.0

    def targets(self, topic: str) -> list[str]:
        """Where the records of input topic ``topic`` can go: its output topic(s) and its dead-letter topic."""
        s = self.output
        outputs = {s.output_topic.format(topic=topic, label=label) for label in self.labels}
        return sorted(outputs | {s.dlq_topic.format(topic=topic)})

    # ---- poll loop and rebalance listener --------------------------------------------------------------
    def held(self) -> set[str]:
        """Assigned input topics whose output topics are not known to exist (not checked yet, or missing)."""
        with self._lock:
            return self._assigned - self._ok

    def assigned(self, topics: set[str]) -> None:
        with self._lock:
            self._assigned = set(topics)
            new = bool(self._assigned - self._ok)
        if new:
            self._wake.set()

    def apply(self, source: Holder, force: bool = False) -> None:
        held = self.held()
        if force or held != self._applied:
            source.hold(held)
            self._applied = held
        if self._problems and self._clock() >= self._next_log:
            self._log_missing()

    # ---- the check thread -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sentiment-topics", daemon=True)
            self._thread.start()

    def close(self, timeout_s: float = 1.0) -> None:
        if self._thread is None:  # not started (a failed start): nothing to end, start() still works
            return
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout_s)  # a daemon thread: one blocked in a lookup ends with the process

    def _run(self) -> None:
        admin: Any = None
        retry = 1.0
        try:
            while not self._closed.is_set():
                with self._lock:
                    todo = set(self._assigned)
                problems: dict[str, list[str]] | None = None
                if todo:
                    try:
                        if admin is None:
                            admin = self._admin()
                        problems = self.check(admin, todo)
                    except Exception as exc:  # unreachable cluster (reported by the broker watch): look again later
                        log.debug("topic_check_failed", error=repr(exc))
                if problems is not None:
                    self._publish(todo, problems)
                if problems == {} or not todo:
                    wait, retry = RECHECK_S, 1.0
                else:  # missing topics, or the lookup failed: again soon
                    wait, retry = retry, min(retry * 2, RETRY_MAX_S)
                self._wake.wait(wait)
                self._wake.clear()
        finally:
            if admin is not None:
                with contextlib.suppress(Exception):
                    admin.close()

    def _admin(self) -> Any:
        from kafka.admin import KafkaAdminClient

        config = {
            **self.kafka.kafka_security(),
            "client_id": f"{self.kafka.client_id}-admin",
            "reconnect_backoff_max_ms": self.kafka.reconnect_backoff_max_ms,
            "bootstrap_timeout_ms": 10_000,
            "request_timeout_ms": 10_000,
        }
        return new_client(KafkaAdminClient, config)

    def check(self, admin: Any, inputs: set[str]) -> dict[str, list[str]]:
        """Per input topic, what is wrong with its output topics (missing, unusable); topics that are fine: absent."""
        # A name that can't be a topic is not looked up: the sink stops the worker with its reason when a record
        # goes there (waiting would not help).
        wanted = {topic: [n for n in self.targets(topic) if topic_name_problem(n) is None] for topic in inputs}
        names = sorted(set(inputs).union(*wanted.values()))
        partitions, errors = _describe(admin, names)
        absent = [name for name in names if errors.get(name) == UNKNOWN_TOPIC and name not in inputs]
        if absent and self.output.missing_topics == "create":
            self._create(admin, absent, wanted, partitions)
            found, still = _describe(admin, absent)
            partitions.update(found)
            errors.update(still)
        elif absent and self.output.missing_topics == "auto":
            for name in absent:
                if count := self._request(name):
                    partitions[name] = count
        problems: dict[str, list[str]] = {}
        for topic, targets in wanted.items():
            bad = [_problem(name, errors.get(name)) for name in targets if name not in partitions]
            need = partitions.get(topic, 0)
            if self.output.output_partitioning == "source":
                dlq = self.output.dlq_topic.format(topic=topic)
                bad += [
                    f"{name} (has {partitions[name]} partitions, {topic} has {need}: output_partitioning=source "
                    "needs at least as many)"
                    for name in targets
                    if name != dlq and 0 < partitions.get(name, need) < need
                ]
            if bad:
                problems[topic] = bad
        return problems

    def _create(self, admin: Any, names: list[str], wanted: dict[str, list[str]], partitions: dict[str, int]) -> None:
        """Create ``names`` (partitions: ``topic_partitions``, or as the input topic; ``topic_replication_factor``)."""
        s = self.output
        spec: dict[str, dict[str, int]] = {}
        for name in names:
            inputs = [partitions.get(topic, 0) for topic, targets in wanted.items() if name in targets]
            count = s.topic_partitions or max(inputs, default=0) or -1  # -1: the broker's default
            spec[name] = {"num_partitions": count, "replication_factor": s.topic_replication_factor}
        result = admin.create_topics(spec, timeout_ms=10_000, raise_errors=False)
        for topic in result.get("topics", []):
            name, code = topic.get("name"), topic.get("error_code", 0)
            if code == 0:
                log.info("topic_created", topic=name, **spec.get(name, {}))
            elif code != TOPIC_ALREADY_EXISTS:  # someone else was faster: fine
                error = for_code(code).__name__
                log.error("topic_create_failed", topic=name, error=error, message=topic.get("error_message"))

    def _request(self, name: str) -> int:
        """Look ``name`` up the way a send does (a cluster that auto-creates topics creates it): its partition count,
        0 if it did not appear within the producer's ``max_block_ms``."""
        producer = self.producer()
        if producer is None:
            return 0
        try:
            return len(producer.partitions_for(name) or ())
        except Exception:  # KafkaTimeoutError: not there (or a closed producer during a restart): looked up again
            return 0

    def _publish(self, checked: set[str], problems: dict[str, list[str]]) -> None:
        with self._lock:
            newly_ok = checked - set(problems) - self._ok
            self._ok = (self._ok - checked) | (checked - set(problems))
            changed = problems != self._problems
            self._problems = dict(problems)
        self.health.set_topics_missing(sorted({p.split(" ", 1)[0] for ps in problems.values() for p in ps}))
        if problems and changed:
            self._log_missing()
        for topic in sorted(newly_ok):
            log.info("output_topics_found", input_topic=topic, topics=self.targets(topic))

    def _log_missing(self) -> None:
        """When the missing topics change, then once per log interval while any are missing."""
        self._next_log = self._clock() + self.log_interval_s
        log.error(
            "topics_missing",
            problems=self._problems,
            missing_topics=self.output.missing_topics,
            note="these input topics' records stay in Kafka, unconsumed, until their output and dead-letter topics "
            "exist: create them (or set missing_topics=create)",
        )


def _describe(admin: Any, names: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """The partition count of each topic found, and the error code of each not found.

    Asks without auto-creation (the admin client's metadata request), so a lookup never creates a topic.
    """
    partitions: dict[str, int] = {}
    errors: dict[str, int] = {}
    for topic in admin.describe_topics(names):
        code, count = topic.get("error_code", 0), len(topic.get("partitions") or ())
        if code in (0, LEADER_NOT_AVAILABLE) and count:
            partitions[topic["name"]] = count
        else:
            errors[topic["name"]] = code or UNKNOWN_TOPIC
    return partitions, errors


def _problem(name: str, code: int | None) -> str:
    if code is None or code == UNKNOWN_TOPIC:
        return f"{name} (does not exist)"
    return f"{name} ({for_code(code).__name__})"
