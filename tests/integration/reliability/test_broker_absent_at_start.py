"""A broker absent at start: the worker process (``run``) waits for it instead of exiting with a traceback.

While nothing answers on the bootstrap address the worker must stay alive (``/healthz`` 200), report not-ready
(``/readyz`` 503), log ``broker_unreachable`` once per ``log_interval_s`` (no per-attempt client chatter, no
traceback) and not spin; when a broker starts on that address it consumes and enriches what is produced there.
A SIGTERM while it waits ends it promptly with exit code 0 (nothing was consumed, so nothing is left undone).
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from devtools.broker import EmbeddedBroker
from devtools.ports import free_port
from tests.support.feeds import create_input_and_output, group_ids, message
from tests.support.http import http_status
from tests.support.kafka_utils import consume_all, produce_values
from tests.support.waits import wait_for
from tests.support.worker_process import WorkerProcess, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOG_INTERVAL_S = 2
ABSENT_S = 8.0
RECORDS = 200


def _worker(tmp_path, bootstrap: str, topic: str, model_dir, name: str) -> tuple[WorkerProcess, int]:
    port = free_port()
    (group,) = group_ids(1, name)
    env = worker_env(bootstrap, topic, group, model_dir, metrics_port=port, log_interval_s=LOG_INTERVAL_S)
    return WorkerProcess(env, tmp_path / f"{name}.log").start(), port


def test_worker_waits_for_an_absent_broker_then_consumes(topic_name, tiny_onnx_dir, tmp_path) -> None:
    broker_port = free_port()
    bootstrap = f"127.0.0.1:{broker_port}"  # nothing listens here yet
    worker, port = _worker(tmp_path, bootstrap, topic_name, tiny_onnx_dir, "absent")
    broker = EmbeddedBroker(port=broker_port)
    ready_url, alive_url = f"http://127.0.0.1:{port}/readyz", f"http://127.0.0.1:{port}/healthz"
    try:
        wait_for(lambda: http_status(alive_url) is not None, 90, what="the metrics server")
        worker.wait_event("broker_unreachable", 60)
        cpu_from, waited_from = worker.cpu_seconds(), time.monotonic()
        samples: list[tuple[int | None, int | None]] = []
        while time.monotonic() - waited_from < ABSENT_S:
            samples.append((http_status(ready_url), http_status(alive_url)))
            assert worker.alive(), worker.log_text()[-3000:]
            time.sleep(0.5)
        cpu_share = (worker.cpu_seconds() - cpu_from) / (time.monotonic() - waited_from)
        absent_s = time.monotonic() - worker.started
        logged_while_absent = len(worker.events("broker_unreachable"))

        broker.start()  # the same address, now answering
        started_at = time.monotonic()
        out_topic = create_input_and_output(bootstrap, topic_name, 2)
        produce_values(bootstrap, topic_name, [(f"k{i % 5}".encode(), message(i)) for i in range(RECORDS)])
        wait_for(lambda: http_status(ready_url) == 200, 60, what="readiness once the broker is there")
        ready_s = time.monotonic() - started_at
        out = consume_all(bootstrap, out_topic, RECORDS, timeout_s=90)
        enriched_s = time.monotonic() - started_at
        rc = worker.stop(60)
    finally:
        if worker.alive():
            worker.kill()
        broker.close()

    noisy = [e["event"] for e in worker.events() if e.get("level") in ("warning", "error")]
    text = worker.log_text()
    ids = {json.loads(r.value)["id"] for r in out}
    readyz, healthz = sorted({r for r, _ in samples}, key=str), sorted({a for _, a in samples}, key=str)
    print(
        f"\nbroker absent at start: waited_s={absent_s:.1f} readyz_while_absent={readyz} healthz_while_absent={healthz}"
        f" broker_unreachable_logs={logged_while_absent}"
        f" cpu_while_waiting={100 * cpu_share:.1f}% of one core; after the broker started: ready_in_s={ready_s:.1f}"
        f" enriched={len(ids)}/{RECORDS} in {enriched_s:.1f}s rc={rc} warning_or_error_lines={len(noisy)}"
    )
    assert readyz == [503] and healthz == [200], samples
    # once per log interval, not per connection attempt; no client chatter, no traceback
    assert ABSENT_S / LOG_INTERVAL_S - 1 <= logged_while_absent <= absent_s / LOG_INTERVAL_S + 2, logged_while_absent
    assert set(noisy) <= {"broker_unreachable", "waiting_for_cluster", "commit_failed"}, noisy
    assert "Traceback" not in text and "Unable to bootstrap" not in text
    assert cpu_share < 0.1, "waiting must not spin"
    assert ids == set(range(RECORDS)) and rc == 0


def test_sigterm_while_waiting_for_the_broker_exits_0_promptly(topic_name, tiny_onnx_dir, tmp_path) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"  # never answers
    worker, _ = _worker(tmp_path, bootstrap, topic_name, tiny_onnx_dir, "sigterm")
    try:
        worker.wait_event("broker_unreachable", 90)
        time.sleep(1.0)  # inside the wait: an attempt or the pause between two
        signalled = time.monotonic()
        worker.signal(signal.SIGTERM)
        rc = worker.wait(30)
        exit_s = time.monotonic() - signalled
    finally:
        if worker.alive():
            worker.kill()
    stopped = worker.events("worker_stopped")
    print(f"\nSIGTERM while waiting for the broker: rc={rc} exit_s={exit_s:.2f} worker_stopped={stopped}")
    assert rc == 0 and exit_s < 5.0
    assert stopped and stopped[-1]["complete"] is True
    assert "Traceback" not in worker.log_text()
