"""The Schema Registry format against the stand-in registry (tests/support), with bytes from confluent-kafka's own
serializers: wire-format errors, schema caching, an unreachable registry, Avro output, JSON Schema and Protobuf."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest

from tests.support.schema_registry_standin import SchemaRegistryStandIn
from tests.unit.stream.helpers import Rec
from worker.formats import build_input
from worker.formats.base import Unavailable
from worker.formats.registry_client import RegistryClient, client_config
from worker.records import ErrorType
from worker.settings import load_settings
from worker.stream.decode import Decoder
from worker.stream.encode import Encoder

pytestmark = pytest.mark.unit

META = {"id": "m-1", "revision": None, "onnx_sha256": "ab" * 32, "precision": "fp32", "provider": "CPU"}
LABELS = ["NEGATIVE", "POSITIVE"]
REVIEW = {
    "type": "record",
    "name": "Review",
    "namespace": "shop",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "review", "type": {"type": "record", "name": "Body", "fields": [{"name": "body", "type": "string"}]}},
        {"name": "photo", "type": ["null", "bytes"], "default": None},
    ],
}


def tokenize(texts):
    return [[101, 7, 102]] * len(texts), [False] * len(texts)


@pytest.fixture
def registry() -> Iterator[SchemaRegistryStandIn]:
    with SchemaRegistryStandIn() as standin:
        yield standin


def avro_bytes(url: str, topic: str, records: list[dict], schema: dict = REVIEW) -> list[bytes]:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    serialize = AvroSerializer(SchemaRegistryClient({"url": url}), json.dumps(schema))
    return [serialize(r, SerializationContext(topic, MessageField.VALUE)) for r in records]


def review(i: int, body: str = "great battery") -> dict:
    return {"id": f"r{i}", "review": {"body": body}, "photo": None}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def decoder_for(registry: SchemaRegistryStandIn, clock: Clock | None = None, **overrides) -> tuple[Decoder, list]:
    options = {"input_format": "schema-registry", "schema_registry_url": registry.url, "text_field": "/review/body"}
    settings = load_settings(**{**options, **overrides})
    calls: list = []
    decoder = Decoder(
        input_format=build_input(settings, labels=LABELS),
        max_message_bytes=100_000,
        max_text_chars=1000,
        text_overflow="truncate",
        tokenize=tokenize,
        on_unavailable=calls.append,
        **({"clock": clock} if clock else {}),
    )
    return decoder, calls


def test_avro_is_decoded_and_each_schema_fetched_once(registry: SchemaRegistryStandIn) -> None:
    values = avro_bytes(registry.url, "reviews", [review(i, f"text {i}") for i in range(50)])
    decoder, _ = decoder_for(registry)
    items, rejected = decoder.decode([Rec(topic="reviews", offset=i, value=v) for i, v in enumerate(values)])
    assert not rejected and [it.text for it in items] == [f"text {i}" for i in range(50)]
    assert items[7].payload == {"id": "r7", "review": {"body": "text 7"}, "photo": None}
    assert registry.count("GET", "/schemas/ids/") == 1, "the schema is fetched once, then cached"
    more, _ = decoder.decode([Rec(topic="reviews", offset=50, value=values[0])])
    assert len(more) == 1 and registry.count("GET", "/schemas/ids/") == 1


def test_bad_bytes_and_unknown_ids_are_dead_lettered_with_their_reason(registry: SchemaRegistryStandIn) -> None:
    (good,) = avro_bytes(registry.url, "reviews", [review(1)])
    string_schema = avro_bytes(registry.url, "words", [{"s": "x"}], {"type": "record", "name": "W", "fields": [
        {"name": "s", "type": "string"}]})[0]  # fmt: skip
    cases = {
        b"\x00\x00\x00": (ErrorType.UNDECODABLE, "shorter than the Confluent wire format's 5-byte header"),
        b'{"text": "json, not the wire format"}': (ErrorType.UNDECODABLE, "magic byte 0x7b, expected 0x00"),
        b"\x00\x00\x00\x00\x63" + good[5:]: (ErrorType.UNKNOWN_SCHEMA, "schema id 99 not found"),
        good[:-4]: (ErrorType.UNDECODABLE, "AVRO schema id 1"),
        good + b"\x01\x02": (ErrorType.UNDECODABLE, "2 bytes left after the record"),
        string_schema: (ErrorType.MISSING_TEXT, "'/review' is missing"),
    }
    decoder, calls = decoder_for(registry)
    records = [Rec(topic="reviews", offset=i, value=v) for i, v in enumerate(cases)]
    items, rejected = decoder.decode(records)
    assert not items and not calls
    assert [(r.error_type, r.record.offset) for r in rejected] == [(t, i) for i, (t, _) in enumerate(cases.values())]
    for bad, (_, message) in zip(rejected, cases.values(), strict=True):
        assert message in bad.message, bad.message
    unknown = b"\x00\x00\x00\x00\x63" + good[5:]
    decoder.decode([Rec(offset=9, value=unknown), Rec(offset=10, value=unknown)])
    assert registry.count("GET", "/schemas/ids/99") == 1, "an unknown id is remembered for a while"


def test_an_unreachable_registry_defers_records_instead_of_dead_lettering_them(registry: SchemaRegistryStandIn) -> None:
    values = avro_bytes(registry.url, "reviews", [review(i) for i in range(4)])
    clock = Clock()
    decoder, calls = decoder_for(registry, clock)
    registry.stop()
    records = [Rec(topic="reviews", partition=p, offset=10 + i, value=values[i]) for p in (0, 1) for i in range(2)]
    items, rejected = decoder.decode(records)
    assert not items and not rejected, "nothing is dead-lettered for a fault that isn't the record's"
    assert decoder.take_deferred() == {("reviews", 0): 10, ("reviews", 1): 10}
    assert decoder.waiting() and len(calls) == 1 and "did not answer" in calls[0]
    # while waiting, whatever arrives is deferred without asking the registry again
    asked = len(registry.requests)
    assert decoder.decode([Rec(topic="reviews", partition=2, offset=3, value=values[0])]) == ([], [])
    assert decoder.take_deferred() == {("reviews", 2): 3} and len(registry.requests) == asked
    clock.now += 1.0  # the first pause is 1 s
    assert not decoder.waiting()
    decoder.decode(records)  # still down: deferred again, the pause doubles
    decoder.take_deferred()
    clock.now += 1.5
    assert decoder.waiting(), "the second pause is 2 s"
    registry.start()
    clock.now += 1.0
    items, rejected = decoder.decode(records)
    assert len(items) == 4 and not rejected and not decoder.take_deferred()
    assert calls == [calls[0], None], "not ready once (with the reason), ready again when it answers"


def test_read_again_forgets_and_rewinds_each_deferred_partition() -> None:
    class Tracker:
        def __init__(self) -> None:
            self.calls: list = []

        def untrack_from(self, tp, offset) -> None:
            self.calls.append(("untrack", tp, offset))

    class Source:
        def __init__(self) -> None:
            self.calls: list = []

        def seek(self, tp, offset) -> None:
            self.calls.append(("seek", tp, offset))

    decoder = Decoder(input_format="json", max_message_bytes=10, max_text_chars=10, text_overflow="truncate",
                      tokenize=tokenize)  # fmt: skip
    decoder._defer(Rec(topic="t", partition=1, offset=5))
    decoder._defer(Rec(topic="t", partition=1, offset=6))
    tracker, source = Tracker(), Source()
    assert decoder.read_again(tracker, source) == 1
    assert tracker.calls == [("untrack", ("t", 1), 5)] and source.calls == [("seek", ("t", 1), 5)]
    assert decoder.read_again(tracker, source) == 0


def test_avro_output_adds_a_sentiment_record_registered_once_per_output_subject(
    registry: SchemaRegistryStandIn,
) -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    values = avro_bytes(registry.url, "reviews", [{**review(i), "photo": b"\x89PNG"} for i in range(20)])
    settings = load_settings(
        input_format="schema-registry",
        output_format="schema-registry",
        schema_registry_url=registry.url,
        text_field="review.body",
        output_topic="{topic}.{label}",
    )
    decoder = Decoder.from_settings(settings, tokenize, labels=LABELS)
    items, rejected = decoder.decode([Rec(topic="reviews", offset=i, value=v) for i, v in enumerate(values)])
    assert len(items) == 20 and not rejected
    registered = [p for m, p, _ in registry.requests if m == "POST"]
    assert sorted(set(registered) - {"/subjects/reviews-value/versions"}) == [
        "/subjects/reviews.negative-value/versions",
        "/subjects/reviews.positive-value/versions",
    ]
    assert registered.count("/subjects/reviews.negative-value/versions") == 1, "registered once"
    encoder = Encoder.from_settings(settings, labels=LABELS, model_meta=META)
    probs = np.array([[0.9, 0.1], [0.2, 0.8]] * 10, dtype=np.float32)
    outs = encoder.encode(items, probs)
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": registry.url}))
    first = deserialize(outs[0].value, SerializationContext(outs[0].topic, MessageField.VALUE))
    assert outs[0].topic == "reviews.negative" and outs[1].topic == "reviews.positive"
    assert first["id"] == "r0" and first["photo"] == b"\x89PNG" and first["review"] == {"body": "great battery"}
    assert first["sentiment"]["label"] == "NEGATIVE" and first["sentiment"]["model"] == "m-1"
    assert first["sentiment"]["scores"]["NEGATIVE"] == pytest.approx(0.9)
    assert "sentiment_meta" not in first
    assert outs[0].value[1:5] != values[0][1:5], "framed with the output schema's id"


def test_json_output_of_avro_input_writes_bytes_as_base64(registry: SchemaRegistryStandIn) -> None:
    (value,) = avro_bytes(registry.url, "reviews", [{**review(1), "photo": b"\x89PNG"}])
    decoder, _ = decoder_for(registry)
    items, _ = decoder.decode([Rec(topic="reviews", value=value)])
    settings = load_settings(output_mode="slim", output_id_fields="id,photo")
    (out,) = Encoder.from_settings(settings, labels=LABELS, model_meta=META).encode(items, np.array([[0.1, 0.9]]))
    record = json.loads(out.value)
    assert record["photo"] == "iVBORw==" and record["id"] == "r1" and record["sentiment"]["label"] == "POSITIVE"


def test_json_schema_records_are_validated_and_read(registry: SchemaRegistryStandIn) -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.json_schema import JSONSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    schema = {
        "type": "object",
        "properties": {"text": {"type": "string"}, "stars": {"type": "integer", "maximum": 5}},
        "required": ["text"],
    }
    client = SchemaRegistryClient({"url": registry.url})
    ctx = SerializationContext("posts", MessageField.VALUE)
    good = JSONSerializer(json.dumps(schema), client)({"text": "lovely", "stars": 5}, ctx)
    bad = good[:5] + b'{"text": "lovely", "stars": 9}'  # framed right, but not valid against its schema
    decoder, _ = decoder_for(registry, text_field="text")
    items, rejected = decoder.decode([Rec(topic="posts", value=good), Rec(topic="posts", offset=1, value=bad)])
    assert [it.payload for it in items] == [{"text": "lovely", "stars": 5}]
    assert rejected[0].error_type == ErrorType.UNDECODABLE and "JSON schema id" in rejected[0].message


def test_protobuf_records_are_read_with_a_message_class_built_from_the_registered_descriptor(
    registry: SchemaRegistryStandIn,
) -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext
    from google.protobuf import descriptor_pb2, descriptor_pool
    from google.protobuf.message_factory import GetMessageClass

    proto = descriptor_pb2.FileDescriptorProto(name="review.proto", package="shop", syntax="proto3")
    outer = proto.message_type.add(name="Envelope")
    outer.field.add(name="id", number=1, type=9, label=1)
    inner = outer.nested_type.add(name="Review")
    inner.field.add(name="review_body", number=1, type=9, label=1)
    inner.field.add(name="stars", number=2, type=5, label=1)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    cls = GetMessageClass(pool.FindMessageTypeByName("shop.Envelope.Review"))
    serialize = ProtobufSerializer(cls, SchemaRegistryClient({"url": registry.url}), {"use.deprecated.format": False})
    value = serialize(cls(review_body="works well", stars=4), SerializationContext("pb", MessageField.VALUE))
    decoder, _ = decoder_for(registry, text_field="review_body")
    items, rejected = decoder.decode([Rec(topic="pb", value=value)])
    assert not rejected and items[0].payload == {"review_body": "works well", "stars": 4}
    assert registry.count("GET", "/schemas/ids/") == 2, "its type, then the descriptor (format=serialized)"
    again, _ = decoder.decode([Rec(topic="pb", offset=1, value=value)])
    assert len(again) == 1 and registry.count("GET", "/schemas/ids/") == 2


def test_unreachable_and_unauthorised_registries_are_unavailable_not_the_records_fault() -> None:
    with SchemaRegistryStandIn(username="svc", password="pw-secret-1") as registry:
        settings = load_settings(schema_registry_url=registry.url, schema_registry_username="svc",
                                 schema_registry_password="wrong-password")  # fmt: skip
        with pytest.raises(Unavailable, match="HTTP status code 401"):
            RegistryClient.from_settings(settings).schema(1)
    with pytest.raises(Unavailable, match="did not answer"):
        RegistryClient.from_settings(load_settings(schema_registry_url=registry.url)).schema(1)


@pytest.mark.parametrize("auth", ["basic", "bearer"])
def test_credentials_reach_the_registry_and_no_log_line(auth: str) -> None:
    import io
    import logging

    from worker.observability import configure_logging

    secret = f"sr-{auth}-secret-Qz7"
    kind = {"username": "svc", "password": secret} if auth == "basic" else {"token": secret}
    with SchemaRegistryStandIn(**kind) as registry:
        registry.register("s-value", json.dumps({"type": "record", "name": "R", "fields": []}))
        fields = (
            {"schema_registry_username": "svc", "schema_registry_password": secret}
            if auth == "basic"
            else {"schema_registry_token": secret}
        )
        settings = load_settings(schema_registry_url=registry.url, **fields)
        stream = io.StringIO()
        configure_logging("json", "debug", stream=stream)
        try:
            conf = client_config(settings)
            assert RegistryClient(conf).schema(1).schema_str
            sent = registry.requests[-1][2]["authorization"]
            logging.getLogger("httpx2").debug("request headers %s, client conf %s", {"Authorization": sent}, conf)
        finally:
            logging.getLogger().handlers.clear()
        text = stream.getvalue()
    assert secret in sent or auth == "basic", "the bearer token is sent as it is"
    assert "request headers" in text and secret not in text and sent.split()[-1] not in text


def test_slim_output_with_avro_output_is_refused_at_start(registry: SchemaRegistryStandIn) -> None:
    settings = load_settings(input_format="schema-registry", output_format="schema-registry", output_mode="slim",
                             schema_registry_url=registry.url)  # fmt: skip
    with pytest.raises(ValueError, match="needs output_mode copy"):
        build_input(settings)
    with pytest.raises(ValueError, match="top-level name"):
        build_input(settings.model_copy(update={"output_mode": "copy", "output_field": "/a/b"}))
