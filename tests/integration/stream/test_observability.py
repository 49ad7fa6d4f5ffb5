"""/healthz, /readyz and /metrics of a running worker on the embedded broker; counters move with the stream."""

from __future__ import annotations

import json
import re
import time

import pytest

from devtools.ports import free_port
from tests.support.http import get
from tests.support.kafka_utils import consume_all, create_topic, produce_values
from tests.support.metrics import metric, scrape
from tests.support.worker_thread import AppThread, worker_settings

pytestmark = pytest.mark.integration


def test_health_and_metrics_follow_the_stream(broker, topic_name, tiny_onnx_dir) -> None:
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, 2)
    port = free_port()
    settings = worker_settings(bootstrap, topic_name, tiny_onnx_dir, metrics_port=port)
    with AppThread(settings, tiny_onnx_dir) as app:
        app.wait_ready(port)
        status, ready = get(port, "/readyz")
        assert status == 200, ready
        body = json.loads(ready)
        assert body["model_loaded"] and body["broker_reachable"]
        status, health = get(port, "/healthz")
        assert status == 200 and json.loads(health)["alive"]

        before = scrape(port)
        assert metric(before, "sentiment_messages_produced_total") == 0
        info = [line for line in before.splitlines() if line.startswith("sentiment_model_info{")]
        assert info and 'provider="CPUExecutionProvider"' in info[0]

        items = [(None, json.dumps({"id": i, "text": f"good thing {i}"}).encode()) for i in range(200)]
        items.append((None, b"{broken json"))
        produce_values(bootstrap, topic_name, items)
        assert len(consume_all(bootstrap, f"{topic_name}.sentiment", 200, timeout_s=60)) == 200
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            after = scrape(port)
            committed = metric(after, "sentiment_committed_offset", topic=topic_name)
            if metric(after, "sentiment_messages_produced_total") >= 200 and committed == 201:
                break
            time.sleep(0.3)
        assert metric(after, "sentiment_messages_consumed_total", topic=topic_name) == 201
        assert metric(after, "sentiment_messages_produced_total") == 200
        assert metric(after, "sentiment_dead_letters_total", reason="invalid_json") == 1
        assert metric(after, "sentiment_batches_total") >= 1
        assert metric(after, "sentiment_batch_size_count") >= 1
        assert metric(after, "sentiment_end_to_end_latency_seconds_count") == 200
        assert metric(after, "sentiment_commits_total") >= 1
        assert metric(after, "sentiment_assigned_partitions") == 2
        # both partitions committed to their ends (offsets from 0)
        assert metric(after, "sentiment_committed_offset", topic=topic_name) == 201
        assert re.search(r"^sentiment_padding_ratio \d", after, re.M)
    assert app.rc == 0
