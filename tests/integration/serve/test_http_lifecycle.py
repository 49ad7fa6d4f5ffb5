"""The HTTP API as real processes: ``serve`` and ``run --http-port`` answer, share model calls with the stream,
and on SIGTERM stop accepting, answer what is in flight and exit 0.

The model is slowed (``tests.integration.reliability.slow_worker``: each model call first sleeps), so requests are
surely inside the server when the signal comes, and stream records and HTTP inputs surely queue up together.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest

from devtools.ports import free_port
from tests.integration.serve.helpers import predict, request
from tests.support.http import get
from tests.support.kafka_utils import SAFER_GROUP_CONFIG, committed_offsets, consume_all, create_topic, produce_values
from tests.support.metrics import metric
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration

SLOW = "tests.integration.reliability.slow_worker"
SECRET = "lifecycle-key-77-not-real"


def _env(model_dir: Path, port: int, delay_s: float, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")}
    env.update(
        SENTIMENT_MODEL=str(model_dir),
        SENTIMENT_DEVICE="cpu",
        SENTIMENT_HTTP_PORT=str(port),
        SENTIMENT_HTTP_HOST="127.0.0.1",
        SENTIMENT_LOG_FORMAT="json",
        SENTIMENT_THREADS="1",
        RELIABILITY_INFER_DELAY_S=str(delay_s),
        **extra,
    )
    return env


def _wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    def healthy() -> bool:
        assert proc.poll() is None, "the process exited early"
        return get(port, "/health", timeout=2)[0] == 200

    wait_for(healthy, timeout, 0.2, "/health to answer 200")


def _in_flight(port: int, n: int, headers: dict[str, str] | None = None) -> tuple[ThreadPoolExecutor, list[Any]]:
    pool = ThreadPoolExecutor(n)
    futures = [pool.submit(predict, port, {"inputs": f"in flight {i} good"}, headers=headers) for i in range(n)]
    return pool, futures


def test_serve_sigterm_answers_in_flight_requests_and_exits_0(tiny_onnx_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = _env(tiny_onnx_dir, port, 0.5, SENTIMENT_HTTP_API_KEY=SECRET)
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", SLOW, "serve"], env=env, stdout=log, stderr=log)
    try:
        _wait_healthy(port, proc)
        auth = {"Authorization": f"Bearer {SECRET}"}
        pool, futures = _in_flight(port, 8, auth)
        time.sleep(0.25)  # all 8 are inside: the model sleeps 0.5 s per call
        proc.send_signal(signal.SIGTERM)
        answers = [f.result(timeout=30) for f in futures]
        pool.shutdown()
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log_path.read_text()
    assert [a.status for a in answers] == [200] * 8, answers
    assert rc == 0, text[-3000:]
    assert '"event": "server_stopped"' in text and '"complete": true' in text
    assert SECRET not in text
    with pytest.raises(OSError):
        request(port, "GET", "/health", timeout=2)


def test_run_with_http_port_shares_batches_with_the_stream_and_stops_cleanly(
    broker, topic_name: str, tiny_onnx_dir: Path, tmp_path: Path
) -> None:
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, 2)
    out_topic = f"{topic_name}.sentiment"
    create_topic(bootstrap, out_topic, 2)
    group = f"g-{topic_name[-8:]}"
    port = free_port()
    env = _env(
        tiny_onnx_dir,
        port,
        0.05,
        SENTIMENT_BOOTSTRAP_SERVERS=bootstrap,
        SENTIMENT_INPUT_TOPICS=topic_name,
        SENTIMENT_GROUP_ID=group,
        SENTIMENT_COMMIT_INTERVAL_MS="200",
        SENTIMENT_SESSION_TIMEOUT_MS=str(SAFER_GROUP_CONFIG["session_timeout_ms"]),
        SENTIMENT_HEARTBEAT_INTERVAL_MS=str(SAFER_GROUP_CONFIG["heartbeat_interval_ms"]),
        SENTIMENT_FETCH_MAX_WAIT_MS="20",
    )
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", SLOW, "run"], env=env, stdout=log, stderr=log)
    total = 1200
    stop_feed = threading.Event()
    answers: list[tuple[float, int, str, str]] = []  # (started, status, text, label)
    lock = threading.Lock()

    def feed() -> None:  # ~200 records/s in small steps, while HTTP clients send
        for start in range(0, total, 10):
            rows = [
                (f"k{i % 8}".encode(), json.dumps({"id": i, "text": f"good {i}"}).encode())
                for i in range(start, start + 10)
            ]
            produce_values(bootstrap, topic_name, rows)
            time.sleep(0.03)

    def client(c: int) -> None:
        conn = HTTPConnection("127.0.0.1", port, timeout=30)
        n = 0
        while not stop_feed.is_set():
            text = f"http client {c} request {n} awful"
            started = time.monotonic()
            try:
                answer = predict(port, {"inputs": text}, conn=conn)
                status, label = answer.status, answer.json()[0]["label"] if answer.status == 200 else ""
            except OSError:
                status, label = -1, ""
                conn = HTTPConnection("127.0.0.1", port, timeout=30)
            with lock:
                answers.append((started, status, text, label))
            n += 1
        conn.close()

    try:
        _wait_healthy(port, proc)
        produce_values(bootstrap, topic_name, [(None, json.dumps({"id": -1, "text": "good warm-up"}).encode())])
        assert len(consume_all(bootstrap, out_topic, 1, timeout_s=60)) == 1  # joined the group, caught up
        feeder = threading.Thread(target=feed)
        feeder.start()
        clients = [threading.Thread(target=client, args=(c,)) for c in range(6)]
        for thread in clients:
            thread.start()
        out = consume_all(bootstrap, out_topic, 700, timeout_s=90)
        assert len(out) >= 700
        metrics_text = request(port, "GET", "/metrics").body.decode()
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=90)
        stop_feed.set()
        for thread in clients:
            thread.join(30)
        feeder.join(60)
    finally:
        stop_feed.set()
        if proc.poll() is None:
            proc.kill()
    log_text = log_path.read_text()
    assert rc == 0, log_text[-3000:]
    assert '"event": "worker_stopped"' in log_text and '"complete": true' in log_text

    # HTTP: answered all along; whatever had started before the signal was answered 200
    before = [h for h in answers if h[0] < signalled - 0.05]
    assert len(before) >= 20
    assert all(status == 200 for _, status, _, _ in before), Counter(s for _, s, _, _ in before)
    assert {status for _, status, _, _ in answers} <= {200, 503, -1}
    # shared model calls: HTTP inputs were inferred together with Kafka records
    shared = metric(metrics_text, "sentiment_http_inputs_batched_with_stream_total")
    inputs = metric(metrics_text, "sentiment_http_inputs_total")
    print(f"\nrun --http-port: {int(inputs)} HTTP inputs, {int(shared)} in model calls with stream records")
    assert inputs > 0 and shared > 0
    # the stream: every output is a Kafka record (never an HTTP input), each once, and a graceful stop committed them
    outputs = consume_all(bootstrap, out_topic, total + 1, timeout_s=5, settle_s=1.0)
    values = [json.loads(r.value) for r in outputs]
    assert all(v["text"].startswith("good ") for v in values)
    ids = Counter(v["id"] for v in values)
    assert max(ids.values()) == 1
    assert sum(committed_offsets(bootstrap, group, topic_name).values()) == len(values)
