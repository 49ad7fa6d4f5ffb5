"""/healthz, /readyz and /metrics of a running worker on the embedded broker; counters move with the stream."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request

import pytest

from devtools.ports import free_port
from tests.support.kafka_utils import consume_all, create_topic, produce_values
from worker.app import Worker

from .harness import worker_settings

pytestmark = pytest.mark.integration


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _committed(text: str, topic: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("sentiment_committed_offset{") and f'topic="{topic}"' in line
    )


def test_health_and_metrics_follow_the_stream(broker, topic_name, tiny_onnx_dir) -> None:
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, 2)
    port = free_port()
    settings = worker_settings(bootstrap, topic_name, tiny_onnx_dir, metrics_port=port)
    worker = Worker(settings, model_dir=tiny_onnx_dir)
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.setdefault("rc", worker.run()), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        ready = (0, "")
        while time.monotonic() < deadline:
            ready = _get(port, "/readyz") if worker.runner is not None else (0, "")
            if ready[0] == 200:
                break
            time.sleep(0.3)
        assert ready[0] == 200, ready
        body = json.loads(ready[1])
        assert body["model_loaded"] and body["broker_reachable"]
        status, health = _get(port, "/healthz")
        assert status == 200 and json.loads(health)["alive"]

        _, before = _get(port, "/metrics")
        assert _metric(before, "sentiment_messages_produced_total") == 0
        info = [line for line in before.splitlines() if line.startswith("sentiment_model_info{")]
        assert info and 'provider="CPUExecutionProvider"' in info[0]

        items = [(None, json.dumps({"id": i, "text": f"good thing {i}"}).encode()) for i in range(200)]
        items.append((None, b"{broken json"))
        produce_values(bootstrap, topic_name, items)
        assert len(consume_all(bootstrap, f"{topic_name}.sentiment", 200, timeout_s=60)) == 200
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            _, after = _get(port, "/metrics")
            if _metric(after, "sentiment_messages_produced_total") >= 200 and _committed(after, topic_name) == 201:
                break
            time.sleep(0.3)
        assert _metric(after, "sentiment_messages_consumed_total", topic=topic_name) == 201
        assert _metric(after, "sentiment_messages_produced_total") == 200
        assert _metric(after, "sentiment_dead_letters_total", reason="invalid_json") == 1
        assert _metric(after, "sentiment_batches_total") >= 1
        assert _metric(after, "sentiment_batch_size_count") >= 1
        assert _metric(after, "sentiment_end_to_end_latency_seconds_count") == 200
        assert _metric(after, "sentiment_commits_total") >= 1
        assert _metric(after, "sentiment_assigned_partitions") == 2
        assert _committed(after, topic_name) == 201  # both partitions committed to their ends (offsets from 0)
        assert re.search(r"^sentiment_padding_ratio \d", after, re.M)
    finally:
        worker.stop()
        thread.join(60)
    assert result.get("rc") == 0
