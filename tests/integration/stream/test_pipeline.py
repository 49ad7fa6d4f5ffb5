"""The streaming worker against the real embedded broker and a real exported ONNX model (no mocks)."""

from __future__ import annotations

import json
import time
from collections import defaultdict

import pytest

from tests.support.kafka_utils import consume_all, create_topic, produce_values
from tests.support.tiny_model import toy_label
from tests.support.waits import wait_committed
from tests.support.worker_thread import WorkerThread, worker_settings
from worker.model.runtime import SentimentModel
from worker.records import DeadLetter, EnrichedRecord, ErrorType

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def model(tiny_onnx_dir) -> SentimentModel:
    return SentimentModel.load(tiny_onnx_dir, device="cpu")


def test_2000_keyed_messages_exactly_once_in_order_and_committed(broker, topic_name, tiny_onnx_dir, model) -> None:
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, 4)
    out_topic = f"{topic_name}.sentiment"
    create_topic(bootstrap, out_topic, 4)
    words = ["good", "bad", "great", "awful", "fine", "movie", "service", "food"]
    items = []
    for i in range(2000):
        text = " ".join(words[(i * 7 + j) % len(words)] for j in range(1 + i % 12))
        value = json.dumps({"id": f"m{i}", "text": text, "extra": {"n": i}}).encode()
        items.append((f"key-{i % 50}".encode(), value, [("trace", str(i).encode())], None))
    metas = produce_values(bootstrap, topic_name, items)
    end = defaultdict(int)
    for meta in metas:
        end[meta.partition] = max(end[meta.partition], meta.offset + 1)

    settings = worker_settings(bootstrap, topic_name, tiny_onnx_dir)
    worker = WorkerThread(settings, model).start()
    try:
        out = consume_all(bootstrap, out_topic, 2000, timeout_s=120, settle_s=1.0)
        committed = wait_committed(bootstrap, settings.group_id, topic_name, dict(end), 20)
    finally:
        rc = worker.stop()
    assert rc == 0
    assert len(out) == 2000, f"expected exactly 2000 outputs, got {len(out)}"
    by_id = {}
    for rec in out:
        value = json.loads(rec.value)
        EnrichedRecord.model_validate(value)
        assert value["id"] not in by_id, "duplicate output"
        by_id[value["id"]] = (rec, value)
        i = int(value["id"][1:])
        assert rec.key == f"key-{i % 50}".encode()
        assert value["extra"] == {"n": i}
        assert value["sentiment"]["label"] in ("NEGATIVE", "POSITIVE")
        assert 0.5 <= value["sentiment"]["score"] <= 1.0
        assert abs(sum(value["sentiment"]["scores"].values()) - 1.0) < 1e-4
        headers = dict(rec.headers)
        assert headers["trace"] == str(i).encode()
        assert headers["x-sentiment-label"].decode() == value["sentiment"]["label"]
    assert set(by_id) == {f"m{i}" for i in range(2000)}
    # per input partition, outputs keep input order (within each output partition, and per key overall)
    last: dict[tuple[int, int], int] = {}
    for rec in out:  # consume_all returns each output partition in order
        src = json.loads(rec.value)["sentiment_meta"]["source"]
        key = (rec.partition, src["partition"])
        assert src["offset"] > last.get(key, -1), "output order differs from input order"
        last[key] = src["offset"]
    assert committed == dict(end), "group offsets not committed up to the end"


def test_source_partitioning_keeps_partition_streams(broker, topic_name, tiny_onnx_dir, model) -> None:
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, 3)
    out_topic = f"{topic_name}.by-label"
    # the tiny model's rule: POSITIVE iff more positive than negative words (tests/support/tiny_model.py)
    texts = {i: f"item {i} {'bad' if i % 2 else 'good'}" for i in range(300)}
    expected = {i: "POSITIVE" if toy_label(text) else "NEGATIVE" for i, text in texts.items()}
    n_negative = sum(label == "NEGATIVE" for label in expected.values())
    assert n_negative == 150
    items = [(None, json.dumps({"id": i, "text": text}).encode(), None, i % 3) for i, text in texts.items()]
    produce_values(bootstrap, topic_name, items)
    for label in ("negative", "positive"):
        create_topic(bootstrap, f"{out_topic}.{label}", 3)
    settings = worker_settings(
        bootstrap, topic_name, tiny_onnx_dir, output_topic="{topic}.by-label.{label}", output_partitioning="source"
    )
    worker = WorkerThread(settings, model).start()
    try:
        neg = consume_all(bootstrap, f"{out_topic}.negative", n_negative, timeout_s=60)
        pos = consume_all(bootstrap, f"{out_topic}.positive", 300 - n_negative, timeout_s=60)
    finally:
        assert worker.stop() == 0
    assert len(neg) + len(pos) == 300
    assert len(neg) == n_negative, "the NEGATIVE texts reach the negative route"
    for records, label in ((neg, "NEGATIVE"), (pos, "POSITIVE")):
        offsets: dict[int, list[int]] = defaultdict(list)
        for rec in records:
            value = json.loads(rec.value)
            assert value["sentiment"]["label"] == label
            assert expected[value["id"]] == label, (value["text"], label)
            src = value["sentiment_meta"]["source"]
            assert rec.partition == src["partition"]
            offsets[rec.partition].append(src["offset"])
        for seq in offsets.values():
            assert seq == sorted(seq)


BAD = [
    (b"{not json", ErrorType.INVALID_JSON),
    (b'{"body": "no text field"}', ErrorType.MISSING_TEXT),
    (b'{"text": 42}', ErrorType.INVALID_TEXT),
    (b'["not", "an", "object"]', ErrorType.NOT_AN_OBJECT),
    (b"\xff\xfe\xfa invalid utf-8", ErrorType.INVALID_UTF8),
    (json.dumps({"text": "x" * 5000}).encode(), ErrorType.TOO_LARGE),
    (b"", ErrorType.EMPTY_VALUE),
]


def test_bad_records_go_to_dead_letter_with_reasons(broker, topic_name, tiny_onnx_dir, model) -> None:
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, 2)
    items = []
    expected_bad = {}
    for i in range(140):
        if i % 5 == 0:
            value, reason = BAD[(i // 5) % len(BAD)]
            expected_bad[i] = reason
        else:
            value = json.dumps({"id": i, "text": f"message number {i} is good"}).encode()
        items.append((f"k{i}".encode(), value, [("n", str(i).encode())], i % 2))
    produce_values(bootstrap, topic_name, items)
    settings = worker_settings(bootstrap, topic_name, tiny_onnx_dir, max_message_bytes=4096)
    worker = WorkerThread(settings, model).start()
    try:
        good = consume_all(bootstrap, f"{topic_name}.sentiment", 140 - len(expected_bad), timeout_s=60, settle_s=0.5)
        dlq = consume_all(bootstrap, f"{topic_name}.dlq", len(expected_bad), timeout_s=30, settle_s=0.5)
        assert worker.alive, "worker stopped on bad input"
    finally:
        assert worker.stop() == 0
    assert sorted(json.loads(r.value)["id"] for r in good) == sorted(set(range(140)) - set(expected_bad))
    assert len(dlq) == len(expected_bad)
    for rec in dlq:
        n = int(dict(rec.headers)["n"])
        envelope = DeadLetter.from_headers(rec.headers)
        assert envelope.error_type == expected_bad[n], (n, envelope)
        assert envelope.source_topic == topic_name
        assert envelope.source_partition == n % 2
        assert envelope.error_message
        assert rec.key == f"k{n}".encode()
        assert rec.value == items[n][1] or (rec.value is None and items[n][1] == b"")


def test_two_workers_split_partitions_and_process_each_once(broker, topic_name, tiny_onnx_dir, model) -> None:
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, 4)
    create_topic(bootstrap, f"{topic_name}.sentiment", 4)
    group = f"g-two-{topic_name[-8:]}"
    s1 = worker_settings(bootstrap, topic_name, tiny_onnx_dir, group_id=group, client_id="w1")
    s2 = worker_settings(bootstrap, topic_name, tiny_onnx_dir, group_id=group, client_id="w2")
    w1 = WorkerThread(s1, model).start()
    w2 = WorkerThread(s2, model).start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            a1, a2 = w1.runner.tracker.partitions(), w2.runner.tracker.partitions()
            if len(a1) + len(a2) == 4 and a1 and a2:
                break
            time.sleep(0.2)
        assert a1 and a2 and not set(a1) & set(a2), (a1, a2)
        items = [(f"k{i}".encode(), json.dumps({"id": i, "text": "fine good"}).encode()) for i in range(1000)]
        produce_values(bootstrap, topic_name, items)
        out = consume_all(bootstrap, f"{topic_name}.sentiment", 1000, timeout_s=90, settle_s=1.0)
    finally:
        rc1, rc2 = w1.stop(), w2.stop()
    ids = [json.loads(r.value)["id"] for r in out]
    assert sorted(ids) == list(range(1000)), f"{len(ids)} outputs, {len(set(ids))} distinct"
    assert w1.runner.stats.produced > 0 and w2.runner.stats.produced > 0
    assert (rc1, rc2) == (0, 0)
