"""CloudEvents 1.0 over Kafka: binary and structured mode read per record, written back in the same mode."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import numpy as np
import pytest

from tests.unit.stream.helpers import Rec
from worker.formats import build_shape
from worker.formats.cloudevents import CloudEventsInput, CloudEventsOutput
from worker.formats.fields import TextFields
from worker.records import CloudEventOutput, EnrichedRecord, ErrorType
from worker.settings import load_settings
from worker.stream.decode import Decoder
from worker.stream.encode import Encoder

pytestmark = pytest.mark.unit

META = {"id": "m", "revision": "r1", "onnx_sha256": "ab" * 32, "precision": "fp32", "provider": "CPUExecutionProvider"}
DATA = {"review": {"id": "r-1", "body": "Great battery life."}, "stars": 5}


def tokenize(texts):
    return [[101, 7, 102]] * len(texts), [False] * len(texts)


def binary(data: bytes = json.dumps(DATA).encode(), **attrs: str | None) -> Rec:
    base = {"specversion": "1.0", "id": "e-1", "source": "/shop/reviews", "type": "com.example.review.created"}
    base.update(attrs)
    headers = [(f"ce_{k}", v.encode()) for k, v in base.items() if v is not None]
    headers += [("content-type", b"application/json"), ("traceparent", b"00-abc-def-01")]
    return Rec(value=data, headers=headers, key=b"r-1")


def structured(event: dict, content_type: bytes = b"application/cloudevents+json; charset=UTF-8") -> Rec:
    return Rec(value=json.dumps(event).encode(), headers=[("content-type", content_type)], key=b"r-1")


EVENT = {
    "specversion": "1.0",
    "id": "e-2",
    "source": "/shop/reviews",
    "type": "com.example.review.created",
    "subject": "review/r-1",
    "dataschema": "https://example.com/review.json",
    "tenant": "acme",  # an extension attribute
    "datacontenttype": "application/json",
    "data": DATA,
}


def pipeline(**overrides):
    settings = load_settings(input_format="cloudevents", text_field="/review/body", **overrides)
    decoder = Decoder.from_settings(settings, tokenize)
    encoder = Encoder.from_settings(settings, labels=["NEGATIVE", "POSITIVE"], model_meta=META)
    return decoder, encoder


def test_binary_mode_reads_headers_and_data_and_writes_binary_mode_back() -> None:
    decoder, encoder = pipeline(cloudevents_source="urn:enricher", cloudevents_type_suffix=".tone")
    items, rejected = decoder.decode([binary(tenant="acme")])
    assert not rejected and items[0].text == "Great battery life."
    (out,) = encoder.encode(items, np.array([[0.2, 0.8]], dtype=np.float32))
    headers = dict(out.headers)
    assert headers["ce_type"] == b"com.example.review.created.tone"
    assert headers["ce_source"] == b"urn:enricher"
    assert headers["ce_specversion"] == b"1.0" and headers["content-type"] == b"application/json"
    assert headers["ce_tenant"] == b"acme", "extension attributes are kept"
    assert headers["traceparent"] == b"00-abc-def-01", "other headers are kept"
    assert uuid.UUID(headers["ce_id"].decode()) and headers["ce_id"] != b"e-1"
    assert datetime.fromisoformat(headers["ce_time"].decode().replace("Z", "+00:00")).tzinfo is not None
    assert [k for k, _ in out.headers].count("ce_id") == 1, "the input's ce_* headers are replaced, not repeated"
    data = json.loads(out.value)
    assert data["review"] == DATA["review"] and data["sentiment"]["label"] == "POSITIVE"
    EnrichedRecord.model_validate(data)
    assert out.key == b"r-1"


def test_structured_mode_is_written_back_structured_with_extensions_kept_and_dataschema_dropped() -> None:
    decoder, encoder = pipeline()
    items, rejected = decoder.decode([structured(EVENT)])
    assert not rejected
    (out,) = encoder.encode(items, np.array([[0.9, 0.1]], dtype=np.float32))
    event = json.loads(out.value)
    CloudEventOutput.model_validate(event)
    assert event["type"] == "com.example.review.created.sentiment" and event["source"] == "sentiment-worker"
    assert event["tenant"] == "acme" and event["subject"] == "review/r-1"
    assert "dataschema" not in event and event["datacontenttype"] == "application/json"
    assert event["data"]["sentiment"]["label"] == "NEGATIVE" and event["data"]["stars"] == 5
    assert dict(out.headers)["content-type"].startswith(b"application/cloudevents+json")


def test_the_output_id_is_new_and_the_same_for_the_same_input_event() -> None:
    output = CloudEventsOutput()
    reader = CloudEventsInput(TextFields("/review/body"), output)
    first = output.attributes(reader.read(structured(EVENT)).context)
    again = output.attributes(reader.read(structured(EVENT)).context)
    other = output.attributes(reader.read(structured({**EVENT, "id": "e-3"})).context)
    assert first["id"] == again["id"] != other["id"] and first["id"] != EVENT["id"]
    fixed = output.attributes(reader.read(binary()).context, now=datetime(2026, 12, 6, 10, 0, tzinfo=UTC))
    assert fixed["time"] == "2026-12-06T10:00:00.000Z"


@pytest.mark.parametrize(
    ("record", "error_type", "message"),
    [
        (Rec(value=json.dumps(DATA).encode(), headers=[("content-type", b"application/json")]),
         ErrorType.INVALID_CLOUDEVENT, "not a CloudEvent"),
        (binary(id=None), ErrorType.INVALID_CLOUDEVENT, "without required attribute(s) id"),
        (binary(specversion="0.3"), ErrorType.INVALID_CLOUDEVENT, "specversion '0.3' is not 1.0"),
        (structured({k: v for k, v in EVENT.items() if k not in ("source", "type")}), ErrorType.INVALID_CLOUDEVENT,
         "source, type"),
        (structured({**EVENT, "id": 7}), ErrorType.INVALID_CLOUDEVENT, "id not a string"),
        (structured({**EVENT, "data_base64": "AAA="}), ErrorType.INVALID_CLOUDEVENT, "data_base64"),
        (structured({**EVENT, "datacontenttype": "text/plain"}), ErrorType.INVALID_CLOUDEVENT, "JSON data"),
        (structured(EVENT, b"application/cloudevents+avro"), ErrorType.INVALID_CLOUDEVENT, "is not read"),
        (structured([EVENT]), ErrorType.INVALID_CLOUDEVENT, "not a JSON object"),
        (Rec(value=b"{oops", headers=[("content-type", b"application/cloudevents+json")]), ErrorType.INVALID_JSON, ""),
        (structured({k: v for k, v in EVENT.items() if k != "data"}), ErrorType.MISSING_TEXT, "no data"),
        (structured({**EVENT, "data": "text"}), ErrorType.NOT_AN_OBJECT, "data is a str"),
        (structured({**EVENT, "data": {"review": {}}}), ErrorType.MISSING_TEXT, "'/review/body' is missing"),
        (binary(b"[1]"), ErrorType.NOT_AN_OBJECT, "CloudEvent data is a list"),
        (binary(json.dumps({"review": {"body": 5}}).encode()), ErrorType.INVALID_TEXT, "not a string"),
    ],
)  # fmt: skip
def test_invalid_events_are_dead_lettered_with_a_reason(record: Rec, error_type: ErrorType, message: str) -> None:
    decoder, _ = pipeline()
    items, rejected = decoder.decode([record])
    assert not items and len(rejected) == 1
    assert rejected[0].error_type == error_type
    assert message in rejected[0].message


def test_modes_are_detected_per_record_in_one_poll() -> None:
    decoder, encoder = pipeline(output_mode="slim", output_id_fields="/review/id")
    items, rejected = decoder.decode([binary(), structured(EVENT), Rec(value=b"{}", offset=3)])
    assert len(items) == 2 and [r.error_type for r in rejected] == [ErrorType.INVALID_CLOUDEVENT]
    first, second = encoder.encode(items, np.array([[0.2, 0.8], [0.3, 0.7]], dtype=np.float32))
    assert "ce_id" in dict(first.headers)
    slim = json.loads(first.value)
    assert slim == {"key": "r-1", "review": {"id": "r-1"}, **{k: slim[k] for k in ("sentiment", "sentiment_meta")}}
    assert json.loads(second.value)["data"]["review"] == {"id": "r-1"}


def test_build_shape_reads_the_output_section() -> None:
    shape = build_shape(load_settings(output_field="/enrichment/tone", output_mode="slim", output_id_fields="a,b.c"))
    assert shape.slim and shape.meta_name == "tone_meta" and [p.spec for p in shape.id_fields] == ["a", "b.c"]
