"""The memory bound holds while the broker stops acknowledging the worker's writes.

``sentiment-worker run`` (a real process, the real model and broker) works through a backlog of ~2 KB records; a
proxy in front of the broker (``ack_proxy.py``) then holds back every answer to the worker's producer for
``HOLD_S`` seconds while the consumer goes on fetching. Without a bound on what awaits acks the worker kept
consuming and queued everything in kafka-python's producer (it has no ``buffer_memory``): with
``producer_buffer_bytes`` at 1 GiB (no bound in effect) it consumed 8,728 records during the hold and grew by
133 MiB (about 15.6 KiB per record awaiting its ack; the budget charges 21 KiB for these records). With
``producer_buffer_bytes`` the outputs wait, the queues fill and the consumer pauses: the peak RSS minus the RSS
after warm-up stays within ``memory_bound(...)`` (plus ``SLACK_MIB`` for the Python allocator: freed memory
is not always returned, arenas are per size class). The figures are printed.
"""

from __future__ import annotations

import json
import random
import time

import pytest
from kafka import KafkaProducer

from devtools.broker import EmbeddedBroker
from tests.support.feeds import WORDS, create_input_and_output, group_ids
from tests.support.waits import wait_for
from tests.support.worker_process import WorkerProcess, worker_env
from worker.settings import load_settings
from worker.stream.common.budget import memory_bound

from .ack_proxy import AckHoldProxy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MiB = 1024 * 1024
PARTITIONS = 4
BACKLOG = 10_000
TEXT_CHARS = 2_000
WARM_UP = 3_000  # records produced before the baseline
HOLD_S = 8.0
SLACK_MIB = 8
SETTINGS = {
    "client_id": "memtest",
    "producer_buffer_bytes": 4 * MiB,
    "producer_max_request_size": 1 * MiB,
    "max_message_bytes": 64 * 1024,
    "fetch_max_bytes": 4 * MiB,
    "queue_max_batches": 2,
    "max_batch_size": 32,
    "max_poll_records": 100,
    "log_interval_s": 0.5,
}


def _backlog(bootstrap: str, topic: str) -> int:
    """BACKLOG keyed records of about TEXT_CHARS characters; the largest record's size (value + key)."""
    rng = random.Random(11)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20, batch_size=262_144)
    largest = 0
    try:
        for i in range(BACKLOG):
            words: list[str] = []
            chars = 0
            while chars < TEXT_CHARS:  # a running count: summing the list each time took ~1 min of CPU here
                words.append(rng.choice(WORDS))
                chars += len(words[-1]) + 1
            key = f"key-{i % 97}".encode()
            value = json.dumps({"id": i, "text": " ".join(words)}).encode()
            largest = max(largest, len(key) + len(value))
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=120)
    finally:
        producer.close()
    return largest


def _last(worker: WorkerProcess, field: str) -> int:
    events = worker.events("throughput")
    return int(events[-1][field]) if events else 0


def test_peak_rss_stays_within_the_bound_while_the_broker_holds_the_producers_acks(
    topic_name, tiny_onnx_dir, tmp_path
) -> None:
    proxy = AckHoldProxy(held_client_id=f"{SETTINGS['client_id']}-producer")
    broker = EmbeddedBroker(advertised_port=proxy.port).start()
    proxy.start(broker.port)
    worker: WorkerProcess | None = None
    try:
        bootstrap = proxy.bootstrap
        create_input_and_output(bootstrap, topic_name, PARTITIONS)
        largest = _backlog(bootstrap, topic_name)
        (group,) = group_ids(1, "memory")
        worker = WorkerProcess(
            worker_env(bootstrap, topic_name, group, tiny_onnx_dir, **SETTINGS), tmp_path / "worker.log"
        ).start()
        wait_for(lambda: _last(worker, "produced") >= WARM_UP, 180, 0.2, f"{WARM_UP} outputs (warm-up)")
        baseline_samples = []
        for _ in range(100):  # 2 s at full speed, then the baseline
            baseline_samples.append(worker.rss_mib())
            time.sleep(0.02)
        baseline = baseline_samples[-1]
        before = {"consumed": _last(worker, "consumed"), "produced": _last(worker, "produced")}
        proxy.hold()
        samples = []
        started = time.monotonic()
        while time.monotonic() - started < HOLD_S:
            samples.append(worker.rss_mib())
            time.sleep(0.02)
        time.sleep(0.6)  # one more throughput line from inside the hold
        during = {"consumed": _last(worker, "consumed"), "produced": _last(worker, "produced")}
        proxy.release()
        for _ in range(100):  # 2 s after: the held answers arrive, the queues drain
            samples.append(worker.rss_mib())
            time.sleep(0.02)
        peak = max(max(samples), worker.peak_rss_mib())
        # after the hold the worker carries on to the end of the backlog (on a quiet machine it may be near there)
        wait_for(lambda: _last(worker, "produced") >= BACKLOG, 120, 0.2, "every record enriched after the hold")
        full_logged = worker.events("awaiting_acks_full")
        rc = worker.stop(90)
    finally:
        if worker is not None and worker.alive():
            worker.kill()
        proxy.close()
        broker.stop()
    settings = load_settings(bootstrap_servers="127.0.0.1:1", **SETTINGS)
    sections = (settings.input, settings.output, settings.batching)
    bound = memory_bound(*sections, max_length=settings.max_length, input_bytes=largest, partitions=PARTITIONS)
    growth = peak - baseline
    allowed = bound.total / MiB + SLACK_MIB
    print(
        f"\nmemory bound: record<= {largest} B, producer_buffer_bytes={settings.producer_buffer_bytes / MiB:.0f} MiB, "
        f"hold={HOLD_S:.0f}s; RSS baseline={baseline:.1f} MiB (warm-up min/max {min(baseline_samples):.1f}/"
        f"{max(baseline_samples):.1f}) peak={peak:.1f} MiB growth={growth:.1f} MiB; bound={bound.total / MiB:.1f} MiB "
        f"(in stages {bound.records_in_stages} records x {bound.per_record / 1024:.1f} KiB = "
        f"{bound.in_stages / MiB:.1f}, awaiting acks {bound.awaiting_acks / MiB:.1f}, fetched "
        f"{bound.fetched / MiB:.1f}) + slack {SLACK_MIB} MiB; consumed during hold="
        f"{during['consumed'] - before['consumed']} produced during hold={during['produced'] - before['produced']}; "
        f"proxy held {proxy.held_bytes / 1024:.1f} KiB of answers; awaiting_acks_full logged {len(full_logged)}x; "
        f"rc={rc}"
    )
    assert proxy.held_bytes > 0, "the proxy held nothing back: the test measured no slow acks"
    assert full_logged, "the ack budget was never full: the hold did not stress it"
    assert growth <= allowed, f"RSS grew {growth:.1f} MiB, bound {bound.total / MiB:.1f} MiB + {SLACK_MIB} MiB slack"
    assert rc == 0
