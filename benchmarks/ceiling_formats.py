"""Pipeline ceiling, per input format: the worker on the same records as JSON, as CloudEvents and as Avro.

The ceiling section's JSON topic (``benchmarks.ceiling.preload``) is written again, record for record, as
CloudEvents (binary mode: ``ce_*`` headers, the same JSON as data) and as Avro in the Confluent wire format (a
record schema with the same four fields, registered in the stand-in registry of ``devtools``, which runs in the
benchmark's process for the run). The variants ``worker_cloudevents`` and ``worker_avro`` run ``sentiment-worker
run`` on those topics (Avro in, Avro out: ``output_format=schema-registry``), beside ``worker`` on JSON, so the CPU
per message of each format is measured side by side in one run.

:func:`decode_costs` adds what reading one record costs in the decode stage alone (no Kafka, no model), per format,
and confluent-kafka's ``AvroDeserializer`` on the same bytes: the reason the Avro reader calls fastavro directly.
"""

from __future__ import annotations

import json
import time
from typing import Any

AVRO_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Tweet",
    "namespace": "bench",
    "fields": [{"name": n, "type": "string"} for n in ("id", "user", "lang", "text")],
}
FORMAT_VARIANTS = ("worker_cloudevents", "worker_avro")


def record(n: int, texts: list[str]) -> dict[str, str]:
    """The ``n``-th record of the ceiling's input (as ``benchmarks.ceiling.preload`` writes it)."""
    return {"id": f"c-{n}", "user": f"u{n % 997}", "lang": "en", "text": texts[n % len(texts)]}


def ce_headers(n: int) -> list[tuple[str, bytes]]:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", f"c-{n}".encode()),
        ("ce_source", b"/bench/tweets"),
        ("ce_type", b"bench.tweet.created"),
        ("content-type", b"application/json"),
    ]


def avro_serializer(registry_url: str, topic: str) -> Any:
    """confluent-kafka's AvroSerializer for :data:`AVRO_SCHEMA` (registers it under ``<topic>-value``)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    serialize = AvroSerializer(SchemaRegistryClient({"url": registry_url}), json.dumps(AVRO_SCHEMA))
    ctx = SerializationContext(topic, MessageField.VALUE)
    return lambda value: serialize(value, ctx)


def preload(
    bootstrap: list[str], topic: str, texts: list[str], total: int, partitions: int, registry_url: str | None
) -> dict[str, str]:
    """The CloudEvents topic (and the Avro one with a registry); {variant: its input topic}."""
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    topics = {"worker_cloudevents": f"{topic}-cloudevents"}
    if registry_url:
        topics["worker_avro"] = f"{topic}-avro"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1) for name in topics.values()])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=65_536)
    avro = avro_serializer(registry_url, topics["worker_avro"]) if registry_url else None
    for n in range(total):
        value = record(n, texts)
        key = f"k{n % 64}".encode()
        producer.send(topics["worker_cloudevents"], key=key, value=json.dumps(value).encode(), headers=ce_headers(n))
        if avro is not None:
            producer.send(topics["worker_avro"], key=key, value=avro(value))
    producer.flush(timeout=180)
    producer.close()
    return topics


def settings_for(variant: str, registry_url: str | None) -> dict[str, Any]:
    """The worker settings a format variant adds to the ceiling's."""
    if variant == "worker_cloudevents":
        return {"input_format": "cloudevents"}
    if variant == "worker_avro":
        return {
            "input_format": "schema-registry",
            "output_format": "schema-registry",
            "schema_registry_url": registry_url,
        }
    raise ValueError(variant)


def decode_costs(texts: list[str], n: int = 4096, repeats: int = 5) -> dict[str, float]:
    """CPU µs per record of the decode stage alone (``Decoder.decode`` with a no-op tokenizer), per format; best of
    ``repeats`` over the same ``n`` records. Also confluent-kafka's AvroDeserializer alone on the Avro bytes."""
    from devtools.schema_registry_standin import SchemaRegistryStandIn
    from worker.formats import build_input
    from worker.settings import load_settings
    from worker.stream.decode import Decoder

    def tokenize(batch: Any) -> tuple[list[list[int]], list[bool]]:
        return [[]] * len(batch), [False] * len(batch)

    class Rec:
        __slots__ = ("headers", "key", "offset", "partition", "timestamp", "topic", "value")

        def __init__(self, value: bytes, headers: list[tuple[str, bytes]], offset: int) -> None:
            self.topic, self.partition, self.offset, self.timestamp = "bench", 0, offset, None
            self.key, self.value, self.headers = b"k", value, headers

    out: dict[str, float] = {}
    with SchemaRegistryStandIn() as registry:
        avro = avro_serializer(registry.url, "bench")
        values = [record(i, texts) for i in range(n)]
        structured = [
            json.dumps({"specversion": "1.0", "id": f"c-{i}", "source": "/b", "type": "t", "data": v}).encode()
            for i, v in enumerate(values)
        ]
        inputs = {
            "json": ("json", [Rec(json.dumps(v).encode(), [], i) for i, v in enumerate(values)]),
            "cloudevents_binary": (
                "cloudevents",
                [Rec(json.dumps(v).encode(), ce_headers(i), i) for i, v in enumerate(values)],
            ),
            "cloudevents_structured": (
                "cloudevents",
                [Rec(s, [("content-type", b"application/cloudevents+json")], i) for i, s in enumerate(structured)],
            ),
            "avro": ("schema-registry", [Rec(avro(v), [], i) for i, v in enumerate(values)]),
        }
        for name, (kind, records) in inputs.items():
            settings = load_settings(input_format=kind, schema_registry_url=registry.url)
            decoder = Decoder(
                input_format=build_input(settings),
                max_message_bytes=1 << 20,
                max_text_chars=20_000,
                text_overflow="truncate",
                tokenize=tokenize,
            )
            decoder.decode(records[:8])  # the schema is fetched once, outside the timing
            out[name] = _best(lambda recs=records, d=decoder: d.decode(recs), repeats) / n
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroDeserializer

        deserialize = AvroDeserializer(SchemaRegistryClient({"url": registry.url}))
        raw = [r.value for r in inputs["avro"][1]]
        deserialize(raw[0], None)
        out["avro_confluent_deserializer_alone"] = _best(lambda: [deserialize(v, None) for v in raw], repeats) / n
        from fastavro import parse_schema, schemaless_reader

        parsed = parse_schema(AVRO_SCHEMA)

        def fastavro_alone() -> None:
            import io

            for v in raw:
                schemaless_reader(io.BytesIO(v[5:]), parsed, None)

        out["avro_fastavro_alone"] = _best(fastavro_alone, repeats) / n
    return {k: round(v, 2) for k, v in out.items()}


def _best(run: Any, repeats: int) -> float:
    """The lowest process CPU time of ``repeats`` runs, in µs."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return best * 1e6
