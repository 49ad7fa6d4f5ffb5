"""Output and dead-letter topics that don't exist, on a cluster that doesn't create them on its own.

The embedded broker (Tansu) has no switch for topic auto-creation, and it creates any topic a client's metadata
request names (kafka-python's consumer and producer always ask with auto-creation allowed, whatever their
``allow_auto_create_topics`` says). So the tests use ``missing_topics=wait``, with which the worker never asks for a
topic to be created: its lookups (the admin client's metadata requests) create nothing, so a topic the test did not
create stays missing, as on a cluster with ``auto.create.topics.enable=false``.

- ``wait``: a pattern subscription matches two input topics; one has its output and dead-letter topics, the other
  not. The first is processed; the second stays unconsumed (its partitions paused, nothing committed) while
  ``/readyz`` answers 503 and ``topics_missing`` names the missing topics once per log interval, without spinning;
  once the test creates them the worker consumes it, enriches the valid records and dead-letters the others.
- ``create``: the worker creates the missing topics itself, with as many partitions as the input topic.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from kafka.admin import KafkaAdminClient

from devtools.ports import free_port
from tests.support.feeds import group_ids, message
from tests.support.http import http_status
from tests.support.kafka_utils import committed_offsets, consume_all, create_topic, produce_values, topic_names
from tests.support.waits import wait_for
from tests.support.worker_process import WorkerProcess, worker_env
from tests.support.worker_thread import WorkerThread, worker_settings
from worker.model.runtime import SentimentModel
from worker.records import ErrorType

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOG_INTERVAL_S = 2
HELD_S = 8.0
VALID, INVALID = 60, 6


def _feed(bootstrap: str, topic: str, start: int, invalid: int = 0) -> dict[int, int]:
    items = [(f"k{i % 5}".encode(), message(i)) for i in range(start, start + VALID)]
    items += [(b"bad", b"{not json") for _ in range(invalid)]
    end: dict[int, int] = {}
    for meta in produce_values(bootstrap, topic, items):
        end[meta.partition] = max(end.get(meta.partition, 0), meta.offset + 1)
    return end


def test_missing_output_topics_hold_their_input_topic_until_they_exist(
    broker, topic_name, tiny_onnx_dir, tmp_path
) -> None:
    bootstrap = broker.bootstrap
    ready_in, held_in = f"{topic_name}-a", f"{topic_name}-b"
    for name in (ready_in, f"{ready_in}.sentiment", f"{ready_in}.dlq", held_in):
        create_topic(bootstrap, name, 2)
    _feed(bootstrap, ready_in, 0)
    held_end = _feed(bootstrap, held_in, 1000, invalid=INVALID)
    port = free_port()
    (group,) = group_ids(1, "missing")
    env = worker_env(
        bootstrap,
        None,
        group,
        tiny_onnx_dir,
        input_pattern=re.escape(topic_name) + "-[ab]$",  # not their .sentiment/.dlq topics
        missing_topics="wait",
        metrics_port=port,
        log_interval_s=LOG_INTERVAL_S,
    )
    ready_url = f"http://127.0.0.1:{port}/readyz"
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        first = consume_all(bootstrap, f"{ready_in}.sentiment", VALID, timeout_s=120)
        worker.wait_event("topics_missing", 30)
        cpu_from, held_from = worker.cpu_seconds(), time.monotonic()
        statuses: set[int | None] = set()
        while time.monotonic() - held_from < HELD_S:
            statuses.add(http_status(ready_url))
            assert worker.alive(), worker.log_text()[-3000:]
            time.sleep(0.5)
        cpu_share = (worker.cpu_seconds() - cpu_from) / (time.monotonic() - held_from)
        held_logs = len(worker.events("topics_missing"))
        committed_while_held = committed_offsets(bootstrap, group, held_in)
        exists_while_held = topic_names(bootstrap) & {f"{held_in}.sentiment", f"{held_in}.dlq"}

        created_at = time.monotonic()
        create_topic(bootstrap, f"{held_in}.sentiment", 2)
        create_topic(bootstrap, f"{held_in}.dlq", 2)
        wait_for(lambda: http_status(ready_url) == 200, 60, what="readiness once the topics exist")
        ready_s = time.monotonic() - created_at
        out = consume_all(bootstrap, f"{held_in}.sentiment", VALID, timeout_s=90)
        dlq = consume_all(bootstrap, f"{held_in}.dlq", INVALID, timeout_s=60)
        wait_for(lambda: committed_offsets(bootstrap, group, held_in) == held_end, 30, what="the held topic committed")
        rc = worker.stop(60)
    finally:
        if worker.alive():
            worker.kill()

    missing = worker.events("topics_missing")
    named = set(missing[0]["problems"].get(held_in, [])) if missing else set()
    reasons = {dict(r.headers)["x-dlq-error-type"].decode() for r in dlq}
    print(
        f"\nmissing topics: first_topic_enriched={len(first)}/{VALID} readyz_while_held={sorted(statuses, key=str)} "
        f"topics_missing_logs={held_logs} in {HELD_S:.0f}s+ (interval {LOG_INTERVAL_S}s) "
        f"committed_while_held={committed_while_held} cpu_while_held={100 * cpu_share:.1f}% of one core; "
        f"after creating them: ready_in_s={ready_s:.1f} enriched={len(out)}/{VALID} dead_lettered={len(dlq)}/{INVALID} "
        f"rc={rc}"
    )
    assert len(first) == VALID, "the input topic whose output topics exist is processed meanwhile"
    assert named == {f"{held_in}.sentiment (does not exist)", f"{held_in}.dlq (does not exist)"}, missing[:1]
    assert ready_in not in missing[0]["problems"]
    assert statuses == {503}, statuses
    assert HELD_S / LOG_INTERVAL_S - 1 <= held_logs <= HELD_S / LOG_INTERVAL_S + 6, held_logs
    assert committed_while_held == {} and not exists_while_held, "nothing consumed, nothing created"
    assert cpu_share < 0.1, "waiting must not spin"
    assert sorted(json.loads(r.value)["id"] for r in out) == list(range(1000, 1000 + VALID))
    assert reasons == {ErrorType.INVALID_JSON.value} and len(dlq) == INVALID
    assert rc == 0


def test_missing_topics_create_makes_them_like_the_input_topic(broker, topic_name, tiny_onnx_dir) -> None:
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, 3)
    _feed(bootstrap, topic_name, 0, invalid=INVALID)
    settings = worker_settings(bootstrap, topic_name, tiny_onnx_dir, missing_topics="create")
    started = time.monotonic()
    worker = WorkerThread(settings, SentimentModel.load(tiny_onnx_dir, device="cpu")).start()
    try:
        out = consume_all(bootstrap, f"{topic_name}.sentiment", VALID, timeout_s=120)
        dlq = consume_all(bootstrap, f"{topic_name}.dlq", INVALID, timeout_s=60)
        took = time.monotonic() - started
    finally:
        rc = worker.stop()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        described = admin.describe_topics([f"{topic_name}.sentiment", f"{topic_name}.dlq"])
    finally:
        admin.close()
    partitions = {t["name"]: len(t["partitions"]) for t in described}
    print(f"\nmissing_topics=create: created={partitions} enriched={len(out)} dead_lettered={len(dlq)} in {took:.1f}s")
    assert partitions == {f"{topic_name}.sentiment": 3, f"{topic_name}.dlq": 3}
    assert len(out) == VALID and len(dlq) == INVALID and rc == 0
