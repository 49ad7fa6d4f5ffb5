import json

import numpy as np
import pytest

from worker.records import EnrichedRecord
from worker.stream.encode import Encoder

from .helpers import Rec, item

pytestmark = pytest.mark.unit

META = {"id": "m", "revision": "r1", "onnx_sha256": "ab" * 32, "precision": "fp32", "provider": "CPUExecutionProvider"}


def test_output_keeps_fields_key_headers_and_validates() -> None:
    it = item(7, partition=2)
    it.record = Rec(offset=7, partition=2, key=b"user-1", headers=[("trace", b"1"), ("x-sentiment-label", b"old")])
    it.payload = {"text": "great", "id": "a1", "nested": {"x": [1, 2]}}
    enc = Encoder(labels=["NEGATIVE", "POSITIVE"], model_meta=META, output_topic="{topic}.sentiment")
    (out,) = enc.encode([it], np.array([[0.1, 0.9]], dtype=np.float32))
    value = json.loads(out.value)
    assert value["id"] == "a1" and value["nested"] == {"x": [1, 2]} and value["text"] == "great"
    assert value["sentiment"]["label"] == "POSITIVE"
    assert value["sentiment"]["score"] == pytest.approx(0.9)
    assert set(value["sentiment"]["scores"]) == {"NEGATIVE", "POSITIVE"}
    assert value["sentiment_meta"]["source"] == {"topic": "in", "partition": 2, "offset": 7, "timestamp": 1700000000000}
    EnrichedRecord.model_validate(value)
    assert out.topic == "in.sentiment" and out.key == b"user-1" and out.partition is None
    headers = dict(out.headers)
    assert headers["trace"] == b"1" and headers["x-sentiment-label"] == b"POSITIVE"
    assert [k for k, _ in out.headers].count("x-sentiment-label") == 1
    assert headers["x-sentiment-model-revision"] == b"r1"


def test_route_by_label_and_source_partitioning() -> None:
    labels = ["NEGATIVE", "POSITIVE"]
    enc = Encoder(labels=labels, model_meta=META, output_topic="{topic}-{label}", partitioning="source")
    outs = enc.encode([item(0, partition=3), item(1, partition=3)], np.array([[0.8, 0.2], [0.3, 0.7]]))
    assert [o.topic for o in outs] == ["in-negative", "in-positive"]
    assert [o.partition for o in outs] == [3, 3]


def test_length_mismatch_is_an_error() -> None:
    enc = Encoder(labels=["A", "B"], model_meta=META, output_topic="{topic}.s")
    with pytest.raises(ValueError):
        enc.encode([item(0)], np.zeros((2, 2)))


def test_values_orjson_cannot_write_go_through_the_standard_library_and_sizes_are_counted() -> None:
    enc = Encoder(labels=["NEGATIVE", "POSITIVE"], model_meta=META, output_topic="{topic}.s")
    big, plain = item(0), item(1)
    big.payload = {"text": "great", "id": 2**70, "name": "é"}  # beyond 64 bits: orjson refuses it
    plain.payload = {"text": "fine", "v": 1.5}
    plain.record = Rec(offset=1, key=b"k", headers=[])
    plain.header_bytes = 30  # what decode counted of the input's headers
    outs = enc.encode([big, plain], np.array([[0.1, 0.9], [0.6, 0.4]], dtype=np.float32))
    assert json.loads(outs[0].value)["id"] == 2**70 and "é" in outs[0].value.decode("utf-8")
    assert [json.loads(o.value)["sentiment"]["label"] for o in outs] == ["POSITIVE", "NEGATIVE"]
    assert dict(outs[1].headers)["x-sentiment-score"] == b"0.600000"
    assert outs[1].size == len(outs[1].value) + 1 + 30 + sum(len(k) + len(v) for k, v in outs[1].headers)
