"""A record that can't be written vs. a cluster that refuses the worker (the sink's error classification; no broker).

A record's own problem (too large, invalid for the producer or the broker) is never a reason to stop: the output is
dead-lettered, a dead letter is written cut down. A cluster that refuses the worker (not authorised, a topic that
can't exist) stops it with one :class:`ClusterRefusedError`, without acknowledging the record (so nothing past it is
committed) and without a producer restart. A producer that lost its state still restarts.
"""

from __future__ import annotations

import threading
import time

import pytest
from kafka.errors import (
    ClusterAuthorizationFailedError,
    CorruptRecordError,
    InvalidRecordError,
    InvalidTopicError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumberError,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
    UnsupportedForMessageFormatError,
)
from kafka.future import Future

from worker.records import DeadLetter, ErrorType
from worker.stream.encode import OutRecord
from worker.stream.kafka.mend import ClusterRefusedError, topic_name_problem
from worker.stream.sink import Sink

from .helpers import Rec, item

pytestmark = pytest.mark.unit


class ScriptedProducer:
    """``send`` raises, fails the future, or succeeds, as ``script`` says for each call in turn (then succeeds)."""

    def __init__(self, *script: tuple[str, BaseException] | None) -> None:
        self.script = list(script)
        self.sent: list[dict] = []
        self._transaction_manager = None

    def send(self, topic, value=None, key=None, headers=None, partition=None):
        self.sent.append({"topic": topic, "key": key, "value": value, "headers": list(headers or [])})
        step = self.script.pop(0) if self.script else None
        future = Future()
        if step is None:
            future.success(None)
        elif step[0] == "raise":
            raise step[1]
        else:  # a failed delivery, reported from the producer's IO thread
            threading.Thread(target=future.failure, args=(step[1],), name="fake-io").start()
        return future

    def close(self, timeout=None):
        pass


def _sink(producer, dlq_topic: str = "{topic}.dlq"):
    calls: dict[str, list] = {"done": [], "fatal": [], "dlq": []}
    sink = Sink(
        producer,
        dlq_topic=dlq_topic,
        worker="w",
        on_done=lambda record, out: calls["done"].append(record.offset),
        on_fatal=lambda exc: calls["fatal"].append(exc),
        on_dead_letter=lambda reason: calls["dlq"].append(reason),
    )
    return sink, calls


def _out(offset: int, topic: str = "in.sentiment") -> OutRecord:
    it = item(offset)
    return OutRecord(topic=topic, key=b"k", value=b"{}", headers=[], partition=None, item=it, label="POSITIVE")


def _settle(calls, producer, n_sent: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not (calls["done"] or calls["fatal"]) or len(producer.sent) < n_sent:
        assert time.monotonic() < deadline, (calls, producer.sent)
        time.sleep(0.01)
    time.sleep(0.05)  # anything more (a second dead letter, a second fatal) would show now


RECORD_ERRORS = [
    ("raise", MessageSizeTooLargeError("1 MB")),
    ("raise", TypeError("All headers items must be (str, bytes) tuples")),
    ("raise", ValueError("Need at least one: key or value")),
    ("fail", InvalidRecordError()),
    ("fail", CorruptRecordError()),
    ("fail", UnsupportedForMessageFormatError()),
]


@pytest.mark.parametrize("step", RECORD_ERRORS, ids=lambda s: type(s[1]).__name__)
def test_an_output_the_producer_or_broker_refuses_is_dead_lettered_and_the_worker_goes_on(step) -> None:
    producer = ScriptedProducer(step)
    sink, calls = _sink(producer)
    sink.send_output(_out(7))
    _settle(calls, producer, 2)
    assert not calls["fatal"] and calls["done"] == [7] and calls["dlq"] == ["produce_failed"]
    envelope = DeadLetter.from_headers(producer.sent[1]["headers"])
    assert envelope.error_type == ErrorType.PRODUCE_FAILED and type(step[1]).__name__ in envelope.error_message
    sink.close(0.1)


@pytest.mark.parametrize("step", RECORD_ERRORS, ids=lambda s: type(s[1]).__name__)
def test_a_dead_letter_the_producer_or_broker_refuses_is_written_cut_down(step) -> None:
    producer = ScriptedProducer(step)
    sink, calls = _sink(producer)
    record = Rec(offset=4, key=b"K" * 100_000, value=b"V" * 100_000, headers=[("trace", b"1"), ("n", None)])
    sink.dead_letter(record, ErrorType.INVALID_JSON, "bad")
    _settle(calls, producer, 2)
    assert not calls["fatal"] and calls["done"] == [4] and calls["dlq"] == ["invalid_json"]
    second = producer.sent[1]
    envelope = DeadLetter.from_headers(second["headers"])
    too_large = isinstance(step[1], MessageSizeTooLargeError)
    print(f"\n{type(step[1]).__name__}: cut down to key {len(second['key'])} value {len(second['value'])} bytes")
    assert len(second["key"]) == len(second["value"]) == 65_536
    assert envelope.value_truncated and envelope.key_truncated and envelope.headers_mended == "null_value=1"
    # merely too large: small original headers are kept; refused as invalid: they are left out (they may be why)
    assert envelope.headers_dropped == (None if too_large else 2)
    assert ("trace", b"1") in second["headers"] if too_large else "trace" not in dict(second["headers"])
    sink.close(0.1)


@pytest.mark.parametrize(
    "step",
    [
        ("fail", TopicAuthorizationFailedError({"in.sentiment"})),
        ("fail", ClusterAuthorizationFailedError()),
        ("fail", InvalidTopicError()),
        ("raise", TopicAuthorizationFailedError({"in.sentiment"})),
    ],
    ids=lambda s: f"{s[0]}-{type(s[1]).__name__}",
)
def test_a_cluster_that_refuses_the_output_stops_the_worker_with_one_clear_error(step) -> None:
    producer = ScriptedProducer(step)
    sink, calls = _sink(producer)
    sink.send_output(_out(7))
    _settle(calls, producer, 1)
    assert len(producer.sent) == 1, "not dead-lettered: the record is not to blame"
    assert not calls["done"], "not acknowledged: never committed"
    (fatal,) = calls["fatal"]
    assert isinstance(fatal, ClusterRefusedError) and "in.sentiment" in str(fatal)
    assert type(step[1]).__name__ in str(fatal)
    assert not sink.producer_failed(), "no restart: a new producer would be refused alike"
    sink.close(0.1)


def test_a_cluster_refusal_is_not_a_producer_restart_even_when_the_producer_is_in_a_fatal_state() -> None:
    class FatalManager:
        def has_fatal_error(self) -> bool:  # e.g. InitProducerId refused with ClusterAuthorizationFailed
            return True

    producer = ScriptedProducer(("fail", ClusterAuthorizationFailedError()))
    producer._transaction_manager = FatalManager()
    sink, calls = _sink(producer)
    sink.send_output(_out(1))
    _settle(calls, producer, 1)
    assert isinstance(calls["fatal"][0], ClusterRefusedError) and not sink.producer_failed()
    sink.close(0.1)


def test_a_lost_producer_state_still_restarts_the_producer() -> None:
    producer = ScriptedProducer(("fail", OutOfOrderSequenceNumberError()))
    sink, calls = _sink(producer)
    sink.send_output(_out(1))
    _settle(calls, producer, 1)
    assert isinstance(calls["fatal"][0], OutOfOrderSequenceNumberError) and sink.producer_failed()
    sink.close(0.1)


@pytest.mark.parametrize(
    ("dlq_topic", "source_topic"),
    [("{topic}:dlq", "in"), ("{topic}.dlq", "t" * 246), ("{topic} dead letters", "in")],
    ids=["colon", "too-long", "space"],
)
def test_a_dead_letter_topic_that_cannot_exist_stops_the_worker_without_sending(dlq_topic, source_topic) -> None:
    producer = ScriptedProducer()
    sink, calls = _sink(producer, dlq_topic=dlq_topic)
    sink.dead_letter(Rec(topic=source_topic, offset=2), ErrorType.INVALID_JSON, "bad")
    (fatal,) = calls["fatal"]
    print(f"\n{dlq_topic!r}: {fatal}")
    assert isinstance(fatal, ClusterRefusedError) and "dlq_topic template" in str(fatal)
    assert not producer.sent and not calls["done"]
    sink.close(0.1)


def test_an_output_topic_that_cannot_exist_is_a_refusal_not_a_dead_letter() -> None:
    producer = ScriptedProducer()
    sink, calls = _sink(producer)
    sink.send_output(_out(3, topic="in.very positive"))
    assert not producer.sent and not calls["done"]
    assert isinstance(calls["fatal"][0], ClusterRefusedError)
    sink.close(0.1)


def test_a_dead_letter_refused_even_cut_down_stops_the_worker_once() -> None:
    producer = ScriptedProducer(("fail", MessageSizeTooLargeError()), ("fail", MessageSizeTooLargeError()))
    sink, calls = _sink(producer)
    sink.dead_letter(Rec(offset=9, value=b"v" * 10), ErrorType.INVALID_JSON, "bad")
    _settle(calls, producer, 2)
    (fatal,) = calls["fatal"]
    assert isinstance(fatal, ClusterRefusedError) and "cut down" in str(fatal) and "max.message.bytes" in str(fatal)
    assert not calls["done"]
    sink.close(0.1)


def test_other_dead_letter_failures_stay_fatal() -> None:
    producer = ScriptedProducer(("fail", RequestTimedOutError()))
    sink, calls = _sink(producer)
    sink.dead_letter(Rec(offset=4), ErrorType.INVALID_JSON, "bad")
    _settle(calls, producer, 1)
    assert isinstance(calls["fatal"][0], RequestTimedOutError) and len(producer.sent) == 1
    sink.close(0.1)


def test_topic_name_rules() -> None:
    assert topic_name_problem("in.sentiment") is None and topic_name_problem("a" * 249) is None
    for bad in ["", ".", "..", "a b", "a:b", "ü", "a" * 250]:
        assert topic_name_problem(bad), bad


def test_the_runner_reports_a_refusal_once_commits_nothing_past_it_and_does_not_restart() -> None:
    from structlog.testing import capture_logs

    from worker.settings import load_settings
    from worker.stream.runner import Runner

    from .helpers import FakeModel

    settings = load_settings(bootstrap_servers="h:1", input_topics="in", dlq_topic="{topic}:dlq")
    runner = Runner(settings, FakeModel())  # type: ignore[arg-type]
    producer = ScriptedProducer()
    runner.sink = Sink(
        producer, dlq_topic=settings.dlq_topic, worker="w", on_done=runner._on_done, on_fatal=runner._on_fatal
    )
    runner.tracker.assign([("in", 0)])
    records = [Rec(offset=i, value=b"{nope") for i in range(5)]
    with capture_logs() as logs:
        runner._ingest(records)  # all five go to the dead-letter topic, whose name can't exist
    errors = [e for e in logs if e["log_level"] == "error"]
    print(f"\nrefusal: error lines={len(errors)} {errors[0]['error'] if errors else None}")
    assert len(errors) == 1 and errors[0]["event"] == "fatal_delivery_error"
    assert "ClusterRefusedError" in errors[0]["error"] and "'in:dlq'" in errors[0]["error"]
    assert isinstance(runner._fatal, ClusterRefusedError) and not runner._restartable()
    assert not producer.sent and runner.tracker.pending_count() == 5, "nothing acknowledged: nothing committable"
    runner.sink.close(0.1)
