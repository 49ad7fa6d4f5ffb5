"""Records any Kafka client may produce, made producible again (no broker).

kafka-python's producer refuses null header values, header names it can't encode and records with neither key
nor value; its fetch parser refuses header names that aren't UTF-8. Each case: what the worker would send is
checked against the real ``KafkaProducer.send`` validation (a producer with no broker: a send that passes
validation ends in a metadata timeout), and the headers say what was changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError
from kafka.future import Future
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

from worker.records import DLQ_HEADER_HEADERS_MENDED, DLQ_HEADER_VALUE_NULL, HEADER_HEADERS_MENDED, DeadLetter
from worker.records import ErrorType as E
from worker.stream.encode import Encoder
from worker.stream.kafka import kafka_compat
from worker.stream.kafka.mend import producible_headers
from worker.stream.sink import Sink

from .helpers import Rec, item

pytestmark = pytest.mark.unit

META = {"id": "m", "revision": "r1", "onnx_sha256": "ab" * 32, "precision": "fp32", "provider": "CPUExecutionProvider"}


@pytest.fixture(scope="module")
def real_producer() -> Iterator[KafkaProducer]:
    producer = KafkaProducer(bootstrap_servers="127.0.0.1:1", api_version=(3, 0), max_block_ms=1)
    yield producer
    producer.close(timeout=0)


def accepted_by_kafka_python(producer: KafkaProducer, key, value, headers) -> bool:
    """True when kafka-python's send validation passes (it then waits for metadata that never comes)."""
    try:
        producer.send("t", key=key, value=value, headers=headers)
    except KafkaTimeoutError:
        return True
    except (TypeError, ValueError):
        return False
    raise AssertionError("a send without a broker can't succeed")


class RecordingProducer:
    """Accepts every send and acknowledges it at once; what kafka-python reads of a producer is present."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, list]] = []
        self._transaction_manager = None

    def send(self, topic, value=None, key=None, headers=None, partition=None):
        self.sent.append((topic, key, value, list(headers or [])))
        future = Future()
        future.success(None)
        return future

    def close(self, timeout=None):
        pass


HOSTILE_HEADERS = [
    ("", b"empty name"),
    ("dup", b"1"),
    ("dup", b"2"),
    ("null", None),
    ("dup", None),
    ("big", b"h" * 200_000),
    *[(f"h{i}", str(i).encode()) for i in range(300)],
]


def test_producible_headers_mends_null_values_keeps_the_rest_in_order(real_producer) -> None:
    assert not accepted_by_kafka_python(real_producer, b"k", b"v", HOSTILE_HEADERS), "kafka-python refuses them"
    headers, mended = producible_headers(HOSTILE_HEADERS, "x-sentiment-")
    print(f"\nmend: {len(HOSTILE_HEADERS)} headers in, {len(headers)} out, mended={mended}")
    assert accepted_by_kafka_python(real_producer, b"k", b"v", headers)
    assert mended == "null_value=2"
    assert headers == [(k, b"" if v is None else v) for k, v in HOSTILE_HEADERS]
    assert producible_headers([("a", b"1")], "x-") == ([("a", b"1")], None)
    assert producible_headers(None, "x-") == ([], None)


def test_producible_headers_drops_the_workers_own_prefix_and_converts_odd_types(real_producer) -> None:
    odd = [("x-sentiment-label", b"old"), (b"\xff", b"v"), ("bytes-like", bytearray(b"b")), ("sur\udcff", b"s")]
    headers, mended = producible_headers(odd, "x-sentiment-")
    assert accepted_by_kafka_python(real_producer, None, b"v", headers)
    assert headers == [("\\xff", b"v"), ("bytes-like", b"b"), ("sur\\xff", b"s")]
    assert mended == "not_str_or_bytes=1,key_not_utf8=1"


def _batch(records: list[tuple[bytes | None, bytes | None, list]], compression: int = 0) -> bytes:
    """A record batch as a broker returns it; header names given as bytes are written as they are."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=compression,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    swaps: list[tuple[bytes, bytes]] = []
    for offset, (key, value, headers) in enumerate(records):
        named = []
        for name, header_value in headers:
            if isinstance(name, bytes):  # same length placeholder, swapped for the raw bytes below
                placeholder = f"~{offset:0{len(name) - 1}d}"[: len(name)]
                swaps.append((placeholder.encode(), name))
                name = placeholder
            named.append((name, header_value))
        builder.append(offset, timestamp=1, key=key, value=value, headers=named)
    data = bytes(builder.build())
    if compression:
        assert not swaps, "raw names only in uncompressed batches"
    for placeholder, raw in swaps:
        data = data.replace(placeholder, raw, 1)
    return data


def test_a_header_name_that_is_not_utf8_is_escaped_while_parsing_and_the_other_records_are_untouched() -> None:
    records = [
        (b"k0", b"v0", [("ok", b"1")]),
        (None, b"v1", [(b"\xff\xfe", b"bad"), ("ok", None), (b"caf\xe9", b"x")]),
        (b"k2", None, []),
    ]
    kafka_compat.escape_undecodable_header_keys()
    parsed = list(DefaultRecordBatch(_batch(records)))
    assert [(r.key, r.value) for r in parsed] == [(k, v) for k, v, _ in records]
    assert parsed[1].headers == [("\\xff\\xfe", b"bad"), ("ok", None), ("caf\\xe9", b"x")]
    assert kafka_compat.escaped_header_keys(parsed[1].headers) == 2
    assert type(parsed[0].headers) is list and parsed[0].headers == [("ok", b"1")]
    assert kafka_compat.escaped_header_keys(parsed[0].headers) == 0
    # the same records through MemoryRecords (the consumer's path), and a compressed batch of valid ones
    memory = MemoryRecords(_batch(records))
    assert [r.offset for r in memory.next_batch()] == [0, 1, 2]
    gz = [(b"k", b"v", [("a", None), ("b", b"x")])] * 3
    assert [r.headers for r in DefaultRecordBatch(_batch(gz, compression=1))] == [[("a", None), ("b", b"x")]] * 3


def test_an_escaped_header_name_reaches_the_output_and_the_dead_letter_described(real_producer) -> None:
    kafka_compat.escape_undecodable_header_keys()
    (parsed,) = DefaultRecordBatch(_batch([(None, b'{"text": "hi"}', [(b"\xff", b"v"), ("n", None)])]))
    it = item(3)
    it.record = Rec(offset=3, key=None, value=parsed.value, headers=parsed.headers)
    enc = Encoder(labels=["NEGATIVE", "POSITIVE"], model_meta=META, output_topic="{topic}.sentiment")
    (out,) = enc.encode([it], np.array([[0.2, 0.8]], dtype=np.float32))
    assert accepted_by_kafka_python(real_producer, out.key, out.value, out.headers)
    headers = dict(out.headers)
    assert headers["\\xff"] == b"v" and headers["n"] == b""
    assert headers[HEADER_HEADERS_MENDED] == b"key_not_utf8=1,null_value=1"
    assert json.loads(out.value)["sentiment"]["label"] == "POSITIVE"

    producer = RecordingProducer()
    sink = Sink(producer, dlq_topic="{topic}.dlq", worker="w", on_done=lambda r, o: None, on_fatal=pytest.fail)
    sink.dead_letter(it.record, E.INVALID_JSON, "bad")
    (_topic, key, value, dlq_headers) = producer.sent[0]
    assert accepted_by_kafka_python(real_producer, key, value, dlq_headers)
    assert DeadLetter.from_headers(dlq_headers).headers_mended == "key_not_utf8=1,null_value=1"
    sink.close(0.1)


@pytest.mark.parametrize(
    ("key", "value", "expected_value", "value_null"),
    [
        (None, None, b"", True),  # kafka-python: "Need at least one: key or value"
        (b"", None, None, False),  # key-only (a tombstone with an empty key) stays a tombstone
        (b"k", None, None, False),
        (None, b"", b"", False),
        (b"", b"\xef\xbb\xbf{}", b"\xef\xbb\xbf{}", False),
    ],
)
def test_dead_letters_of_records_without_key_or_value_are_producible(
    real_producer, key, value, expected_value, value_null
) -> None:
    producer = RecordingProducer()
    done: list[int] = []
    sink = Sink(
        producer, dlq_topic="{topic}.dlq", worker="w", on_done=lambda r, o: done.append(r.offset), on_fatal=pytest.fail
    )
    record = Rec(offset=5, key=key, value=value, headers=[("n", None)])
    sink.dead_letter(record, E.EMPTY_VALUE, "record value is null or empty")
    (_topic, sent_key, sent_value, headers) = producer.sent[0]
    assert accepted_by_kafka_python(real_producer, sent_key, sent_value, headers)
    assert sent_key == key and sent_value == expected_value and done == [5]
    names = dict(headers)
    assert (names.get(DLQ_HEADER_VALUE_NULL) == b"true") is value_null
    assert names[DLQ_HEADER_HEADERS_MENDED] == b"null_value=1"
    envelope = DeadLetter.from_headers(headers)
    assert envelope.value_null is value_null and envelope.error_type == E.EMPTY_VALUE
    sink.close(0.1)


def test_escaping_installs_once_and_fails_loudly_over_someone_elses_patch(monkeypatch) -> None:
    kafka_compat.escape_undecodable_header_keys()
    kafka_compat.escape_undecodable_header_keys()  # idempotent
    monkeypatch.setattr(DefaultRecordBatch, "_read_msg", lambda self, *a, **k: None)
    with pytest.raises(kafka_compat.KafkaCompatError, match="replaced"):
        kafka_compat.escape_undecodable_header_keys()
