"""Hostile input edge cases: size counted over value + key + headers, out-of-range numbers, huge dead letters."""

from __future__ import annotations

import json

import pytest
from kafka.errors import MessageSizeTooLargeError
from kafka.future import Future

from worker.records import ErrorType
from worker.stream.sink import HEADER_DLQ_HEADERS_DROPPED, HEADER_DLQ_KEY_TRUNCATED, HEADER_DLQ_TRUNCATED, Sink

from .helpers import Rec
from .test_decode import decoder

pytestmark = pytest.mark.unit


def test_key_and_headers_count_toward_max_message_bytes() -> None:
    value = json.dumps({"text": "fine"}).encode()
    small = Rec(value=value, key=b"k", headers=[("h", b"v")])
    big_key = Rec(value=value, key=b"k" * 2000)
    big_headers = Rec(value=value, key=None, headers=[("h", b"v" * 600), ("i", b"v" * 600)])
    items, rejected = decoder(max_message_bytes=1000).decode([small, big_key, big_headers])
    assert [i.record for i in items] == [small]
    assert [r.error_type for r in rejected] == [ErrorType.TOO_LARGE, ErrorType.TOO_LARGE]
    assert "key 2000" in rejected[0].message and "headers 1202" in rejected[1].message


@pytest.mark.parametrize("number", [b"1e400", b"-1e999", b"1.5e308000"])
def test_numbers_that_overflow_to_infinity_are_invalid_json(number: bytes) -> None:
    # Python parses them as inf, which would reach the output as the non-JSON token Infinity
    _, rejected = decoder().decode([Rec(value=b'{"text": "ok", "x": ' + number + b"}")])
    assert [r.error_type for r in rejected] == [ErrorType.INVALID_JSON]
    assert "out of range" in rejected[0].message


class TooLargeProducer:
    """Rejects records above ``limit`` bytes (value + key + headers) like kafka-python's size check."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sent: list[tuple[bytes | None, bytes | None, list]] = []
        self._transaction_manager = None  # what worker.stream.kafka.kafka_compat reads: no idempotence

    def send(self, topic, value=None, key=None, headers=None, partition=None):
        size = len(value or b"") + len(key or b"") + sum(len(k) + len(v) for k, v in headers or [])
        if size > self.limit:
            raise MessageSizeTooLargeError(f"{size} bytes")
        self.sent.append((key, value, list(headers or [])))
        future = Future()
        future.success(None)
        return future

    def close(self, timeout=None):
        pass


def test_a_dead_letter_too_large_for_the_producer_is_cut_down_to_fit_key_and_headers_included() -> None:
    producer = TooLargeProducer(limit=1_000_000)
    done, fatal = [], []
    sink = Sink(
        producer,
        dlq_topic="{topic}.dlq",
        worker="w",
        on_done=lambda record, out: done.append(record.offset),
        on_fatal=fatal.append,
    )
    record = Rec(offset=9, value=b"v" * 3_000_000, key=b"k" * 2_000_000, headers=[("big", b"h" * 500_000)] * 3)
    sink.dead_letter(record, ErrorType.TOO_LARGE, "huge")
    assert not fatal and done == [9]
    key, value, headers = producer.sent[0]
    names = dict(headers)
    assert len(key) == 65_536 and len(value) == 65_536
    assert names[HEADER_DLQ_TRUNCATED] == b"true" and names[HEADER_DLQ_KEY_TRUNCATED] == b"true"
    assert names[HEADER_DLQ_HEADERS_DROPPED] == b"3" and "big" not in names
    assert names["x-dlq-error-type"] == b"too_large"
    sink.close(0.1)
