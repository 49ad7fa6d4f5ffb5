"""`sentiment-worker run` as a real process: SIGTERM mid-stream drains, commits and exits 0; a restart finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from tests.support.kafka_utils import SAFER_GROUP_CONFIG, committed_offsets, consume_all, create_topic, produce_values
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration


def _env(bootstrap: str, topic: str, group: str, model_dir) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")}
    env.update(
        SENTIMENT_BOOTSTRAP_SERVERS=bootstrap,
        SENTIMENT_INPUT_TOPICS=topic,
        SENTIMENT_GROUP_ID=group,
        SENTIMENT_MODEL=str(model_dir),
        SENTIMENT_DEVICE="cpu",
        SENTIMENT_COMMIT_INTERVAL_MS="200",
        SENTIMENT_LOG_FORMAT="json",
        SENTIMENT_SESSION_TIMEOUT_MS=str(SAFER_GROUP_CONFIG["session_timeout_ms"]),
        SENTIMENT_HEARTBEAT_INTERVAL_MS=str(SAFER_GROUP_CONFIG["heartbeat_interval_ms"]),
        SENTIMENT_SASL_PASSWORD="not-a-real-secret-3141",
        SENTIMENT_SECURITY_PROTOCOL="PLAINTEXT",
    )
    return env


def _start(env: dict[str, str], log_path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "worker", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log_path, "wb"),
    )


def _wait_for_output(bootstrap: str, topic: str, at_least: int, timeout: float) -> None:
    def enough() -> bool:
        return len(consume_all(bootstrap, topic, at_least, timeout_s=1)) >= at_least

    wait_for(enough, timeout, 0, f"{at_least} outputs on {topic}")


def test_sigterm_mid_stream_exits_0_and_restart_finishes_without_loss(broker, topic_name, tiny_onnx_dir, tmp_path):
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, 4)
    out_topic = f"{topic_name}.sentiment"
    create_topic(bootstrap, out_topic, 4)
    total = 3000
    env = _env(bootstrap, topic_name, f"g-{topic_name[-8:]}", tiny_onnx_dir)

    def feed() -> None:  # a continuous stream while the worker runs and is stopped
        for start in range(0, total, 100):
            items = [
                (f"k{i % 20}".encode(), json.dumps({"id": i, "text": f"good {i}"}).encode())
                for i in range(start, start + 100)
            ]
            produce_values(bootstrap, topic_name, items)
            time.sleep(0.05)

    feeder = threading.Thread(target=feed)
    feeder.start()
    first = _start(env, tmp_path / "first.log")
    try:
        _wait_for_output(bootstrap, out_topic, 200, timeout=90)
        first.send_signal(signal.SIGTERM)
        rc = first.wait(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    log_text = (tmp_path / "first.log").read_text()
    assert rc == 0, log_text[-3000:]
    assert "not-a-real-secret-3141" not in log_text, "secret leaked into logs"
    assert '"event": "worker_stopped"' in log_text and '"complete": true' in log_text
    feeder.join()
    produced_by_first = len(consume_all(bootstrap, out_topic, total, timeout_s=3))
    committed = sum(committed_offsets(bootstrap, env["SENTIMENT_GROUP_ID"], topic_name).values())
    assert committed == produced_by_first, "graceful stop must commit exactly what it produced"
    assert 0 < produced_by_first < total, "stop should land mid-stream"

    second = _start(env, tmp_path / "second.log")
    try:
        out = consume_all(bootstrap, out_topic, total, timeout_s=120, settle_s=1.0)
    finally:
        second.send_signal(signal.SIGTERM)
        rc2 = second.wait(timeout=60)
    assert rc2 == 0
    counts = Counter(json.loads(r.value)["id"] for r in out)
    lost = set(range(total)) - set(counts)
    duplicates = sum(c - 1 for c in counts.values())
    print(f"\nSIGTERM test: messages={total} first_run={produced_by_first} lost={len(lost)} duplicates={duplicates}")
    assert not lost
    assert duplicates == 0, "a graceful stop commits everything it produced: no duplicates expected"
