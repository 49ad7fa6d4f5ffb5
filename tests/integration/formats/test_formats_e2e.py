"""Each input format end to end: the real worker (Runner), the embedded broker, the tiny exported model, records
produced by confluent-kafka (CloudEvents in both modes; Avro through the stand-in schema registry), bad records of
each kind dead-lettered with their reason while the stream goes on, offsets committed to the end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.kafka_utils import committed_offsets, consume_all, create_topic
from tests.support.schema_registry_standin import SchemaRegistryStandIn
from tests.support.second_client import produce_any
from tests.support.tiny_model import toy_label
from tests.support.waits import wait_committed, wait_for
from tests.support.worker_thread import WorkerThread, worker_settings
from worker.model.runtime import SentimentModel
from worker.records import CloudEventOutput, DeadLetter, EnrichedRecord, ErrorType

pytestmark = pytest.mark.integration

WORDS = ["good", "bad", "great", "awful", "fine", "movie", "service", "food"]


@pytest.fixture(scope="module")
def model(tiny_onnx_dir) -> SentimentModel:
    return SentimentModel.load(tiny_onnx_dir, device="cpu")


@pytest.fixture
def registry() -> Iterator[SchemaRegistryStandIn]:
    with SchemaRegistryStandIn() as standin:
        yield standin


def text_of(i: int) -> str:
    return " ".join(WORDS[(i * 3 + j) % len(WORDS)] for j in range(1 + i % 5))


def ends(placed: list[tuple[int, int]]) -> dict[int, int]:
    end: dict[int, int] = {}
    for partition, offset in placed:
        end[partition] = max(end.get(partition, 0), offset + 1)
    return end


def dead_letters(bootstrap: str, topic: str, n: int) -> dict[int, DeadLetter]:
    records = consume_all(bootstrap, f"{topic}.dlq", n, timeout_s=60, settle_s=1.0)
    letters = [DeadLetter.from_headers(r.headers) for r in records]
    return {letter.source_offset: letter for letter in letters}


def ce_binary(i: int, **attrs: Any) -> tuple[bytes, bytes, list, int]:
    headers = {"specversion": "1.0", "id": f"b-{i}", "source": "/shop", "type": "review.created", "tenant": "acme"}
    headers.update(attrs)
    kafka_headers = [(f"ce_{k}", str(v).encode()) for k, v in headers.items() if v is not None]
    kafka_headers.append(("content-type", b"application/json"))
    body = {"review": {"id": i, "body": text_of(i)}}
    return f"k{i}".encode(), json.dumps(body).encode(), kafka_headers, 0


def ce_structured(i: int, **attrs: Any) -> tuple[bytes, bytes, list, int]:
    event = {"specversion": "1.0", "id": f"s-{i}", "source": "/shop", "type": "review.created", "subject": f"r/{i}"}
    event.update(attrs)
    event["data"] = {"review": {"id": i, "body": text_of(i)}}
    headers = [("content-type", b"application/cloudevents+json; charset=UTF-8")]
    return f"k{i}".encode(), json.dumps({k: v for k, v in event.items() if v is not None}).encode(), headers, 0


def test_cloudevents_in_both_modes_are_enriched_in_their_mode_and_bad_events_dead_lettered(
    broker, topic_name, tiny_onnx_dir, model
) -> None:
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, 1)
    items, bad = [], {}
    for i in range(60):
        if i % 10 == 3:
            items.append(ce_binary(i, id=None))  # a required attribute missing
            bad[i] = "without required attribute(s) id"
        elif i % 10 == 6:
            items.append(ce_structured(i, specversion="0.3"))
            bad[i] = "specversion '0.3' is not 1.0"
        elif i % 10 == 9:
            items.append((b"k", json.dumps({"review": {"body": "x"}}).encode(), [("content-type", b"text/x")], 0))
            bad[i] = "not a CloudEvent"
        else:
            items.append(ce_binary(i) if i % 2 else ce_structured(i))
    placed = produce_any(bootstrap, topic_name, items)
    settings = worker_settings(bootstrap, topic_name, tiny_onnx_dir, input_format="cloudevents",
                               text_field="/review/body", cloudevents_source="urn:test:enricher")  # fmt: skip
    worker = WorkerThread(settings, model).start()
    try:
        out = consume_all(bootstrap, f"{topic_name}.sentiment", 60 - len(bad), timeout_s=90, settle_s=1.0)
        letters = dead_letters(bootstrap, topic_name, len(bad))
        committed = wait_committed(bootstrap, settings.group_id, topic_name, ends(placed))
    finally:
        assert worker.stop() == 0
    assert len(out) == 60 - len(bad)
    seen = []
    for rec in out:
        headers = dict(rec.headers)
        if "ce_id" in headers:  # binary mode in, binary mode out
            data = json.loads(rec.value)
            assert headers["ce_type"] == b"review.created.sentiment" and headers["ce_source"] == b"urn:test:enricher"
            assert headers["ce_tenant"] == b"acme" and headers["content-type"] == b"application/json"
            assert data["review"]["id"] % 2 == 1
        else:
            event = json.loads(rec.value)
            CloudEventOutput.model_validate(event)
            assert (
                event["type"] == "review.created.sentiment" and event["subject"] == f"r/{event['data']['review']['id']}"
            )
            data = event["data"]
            assert data["review"]["id"] % 2 == 0
        EnrichedRecord.model_validate(data)
        i = data["review"]["id"]
        assert data["sentiment"]["label"] == ("POSITIVE" if toy_label(text_of(i)) else "NEGATIVE")
        seen.append((rec.partition, i))
    assert sorted(i for _, i in seen) == sorted(set(range(60)) - set(bad)), "every good event once"
    for partition in {p for p, _ in seen}:
        order = [i for p, i in seen if p == partition]
        assert order == sorted(order), "input order kept within each output partition"
    assert sorted(letters) == sorted(bad)
    for offset, letter in letters.items():
        assert letter.error_type == ErrorType.INVALID_CLOUDEVENT and bad[offset] in letter.error_message
    assert committed == ends(placed)


REVIEW = {
    "type": "record",
    "name": "Review",
    "namespace": "shop",
    "fields": [
        {"name": "id", "type": "int"},
        {"name": "review", "type": {"type": "record", "name": "Body", "fields": [{"name": "body", "type": "string"}]}},
    ],
}


def avro_values(url: str, topic: str, ids: range) -> list[bytes]:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    serialize = AvroSerializer(SchemaRegistryClient({"url": url}), json.dumps(REVIEW))
    ctx = SerializationContext(topic, MessageField.VALUE)
    return [serialize({"id": i, "review": {"body": text_of(i)}}, ctx) for i in ids]


def read_avro(url: str, records: list) -> list[dict]:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    deserialize = AvroDeserializer(SchemaRegistryClient({"url": url}))
    return [deserialize(r.value, SerializationContext(r.topic, MessageField.VALUE)) for r in records]


def test_avro_through_the_schema_registry_in_and_out_with_bad_records_dead_lettered(
    broker, topic_name, tiny_onnx_dir, model, registry
) -> None:
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, 2)
    values = avro_values(registry.url, topic_name, range(80))
    bad = {
        10: (b"\x00\x00\x00\x03\xe7" + values[10][5:], ErrorType.UNKNOWN_SCHEMA),  # schema id 999
        25: (json.dumps({"review": {"body": "plain json"}}).encode(), ErrorType.UNDECODABLE),
        40: (values[40][:-3], ErrorType.UNDECODABLE),  # truncated
    }
    items = [(f"k{i}".encode(), bad[i][0] if i in bad else v, None, i % 2) for i, v in enumerate(values)]
    placed = produce_any(bootstrap, topic_name, items)
    by_offset = {place: i for i, place in enumerate(placed)}
    settings = worker_settings(
        bootstrap,
        topic_name,
        tiny_onnx_dir,
        input_format="schema-registry",
        output_format="schema-registry",
        schema_registry_url=registry.url,
        text_field="review.body",
    )
    worker = WorkerThread(settings, model).start()
    try:
        out = consume_all(bootstrap, f"{topic_name}.sentiment", 80 - len(bad), timeout_s=90, settle_s=1.0)
        letters = consume_all(bootstrap, f"{topic_name}.dlq", len(bad), timeout_s=60, settle_s=1.0)
        committed = wait_committed(bootstrap, settings.group_id, topic_name, ends(placed))
    finally:
        assert worker.stop() == 0
    records = read_avro(registry.url, out)
    assert sorted(r["id"] for r in records) == sorted(set(range(80)) - set(bad))
    for record in records:
        assert record["sentiment"]["label"] == ("POSITIVE" if toy_label(text_of(record["id"])) else "NEGATIVE")
        assert record["sentiment"]["model"] == model.model_id and record["review"]["body"] == text_of(record["id"])
    assert registry.count("POST", f"/subjects/{topic_name}.sentiment-value/versions") == 1, "registered once"
    assert len(letters) == len(bad)
    for rec in letters:
        letter = DeadLetter.from_headers(rec.headers)
        i = by_offset[(letter.source_partition, letter.source_offset)]
        assert letter.error_type == bad[i][1] and rec.value == bad[i][0], letter
    assert committed == ends(placed)


def test_registry_down_means_not_ready_nothing_committed_no_dead_letters_then_it_recovers(
    broker, topic_name, tiny_onnx_dir, model, registry
) -> None:
    from worker.health import HealthState
    from worker.stream.runner import Runner

    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, 2)
    values = avro_values(registry.url, topic_name, range(40))
    placed = produce_any(bootstrap, topic_name, [(None, v, None, i % 2) for i, v in enumerate(values)])
    registry.stop()  # the worker starts while the registry is unreachable
    settings = worker_settings(bootstrap, topic_name, tiny_onnx_dir, input_format="schema-registry",
                               schema_registry_url=registry.url, text_field="/review/body")  # fmt: skip
    health = HealthState()
    worker = WorkerThread(settings, model)
    worker.runner = Runner(settings, model, health=health)
    worker.start()
    try:
        wait_for(lambda: health.readiness()[1]["input_unavailable"], 30, what="not ready: registry unreachable")
        ready, details = health.readiness()
        assert not ready and "did not answer" in details["input_unavailable"]
        wait_for(lambda: worker.runner.decoder.deferrals >= 3, 30, what="three tries while it stays down")
        assert not health.readiness()[0]
        assert consume_all(bootstrap, f"{topic_name}.sentiment", 1, timeout_s=1) == []
        assert consume_all(bootstrap, f"{topic_name}.dlq", 1, timeout_s=1) == [], "no dead letters"
        assert committed_offsets(bootstrap, settings.group_id, topic_name) in ({}, {0: 0, 1: 0}), "nothing committed"
        assert worker.alive
        registry.start()  # back on the same port
        out = consume_all(bootstrap, f"{topic_name}.sentiment", 40, timeout_s=90, settle_s=1.0)
        committed = wait_committed(bootstrap, settings.group_id, topic_name, ends(placed))
        assert health.readiness()[1]["input_unavailable"] is None
    finally:
        assert worker.stop() == 0
    assert sorted(json.loads(r.value)["id"] for r in out) == list(range(40)), "each record once, none lost"
    assert consume_all(bootstrap, f"{topic_name}.dlq", 1, timeout_s=1) == []
    assert committed == ends(placed)
