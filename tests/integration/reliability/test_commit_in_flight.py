"""A periodic commit still in flight when partitions move or the worker stops: the next owner re-reads nothing.

The worker (Runner, in this process), the broker and the model are real. Only the periodic ``commit_async`` is
held back: it never reaches the broker, and once the revoke or the stop is over it is answered with
``RebalanceInProgressError``, as kafka-python answers a commit caught by a rebalance (it reports answers on the
poll loop's thread, at a later poll: during the revoke the commit is still unanswered). Before the fix the worker
counted an offset as committed when its commit was sent, so the revoke and the final commit skipped it and the next
owner re-read every record since the last acknowledged commit.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import pytest
from kafka import KafkaConsumer
from kafka.errors import RebalanceInProgressError

from tests.support.feeds import create_input_and_output, group_ids
from tests.support.kafka_utils import SAFER_GROUP_CONFIG, committed_offsets, consume_all, produce_values
from tests.support.waits import wait_for
from tests.support.worker_thread import WorkerThread, worker_settings
from worker.model.runtime import SentimentModel
from worker.stream.source import Source

pytestmark = pytest.mark.integration

PARTITIONS = 4
MESSAGES = 400


class HeldCommits:
    """Stands in for ``Source.commit_async``: keeps every periodic commit in flight until :meth:`fail_all`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: list[tuple[dict[Any, int], Any]] = []
        self.answered = 0

    def commit_async(self, _source: Source, offsets: dict[Any, int], callback: Any = None) -> None:
        with self.lock:
            self.held.append((dict(offsets), callback))

    def highest(self) -> dict[int, int]:
        with self.lock:
            best: dict[int, int] = {}
            for offsets, _ in self.held:
                for (_topic, partition), offset in offsets.items():
                    best[partition] = max(best.get(partition, 0), offset)
            return best

    def fail_all(self) -> None:
        with self.lock:
            pending, self.held = self.held, []
        for offsets, callback in pending:
            callback(offsets, RebalanceInProgressError("commit caught by a rebalance"))
            self.answered += 1


@pytest.fixture(scope="module")
def model(tiny_onnx_dir) -> SentimentModel:
    return SentimentModel.load(tiny_onnx_dir, device="cpu")


@pytest.fixture
def held(monkeypatch) -> HeldCommits:
    holder = HeldCommits()
    monkeypatch.setattr(
        Source, "commit_async", lambda source, offsets, callback=None: holder.commit_async(source, offsets, callback)
    )
    return holder


def _produce(bootstrap: str, topic: str) -> dict[int, int]:
    """MESSAGES keyed records; the end offset (next to read) of each partition."""
    metas = produce_values(
        bootstrap,
        topic,
        [(f"key-{i % 37}".encode(), json.dumps({"id": i, "text": "good"}).encode()) for i in range(MESSAGES)],
    )
    ends: dict[int, int] = {}
    for meta in metas:
        ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    return ends


def _consume_as_member(bootstrap: str, topic: str, group: str, listen_s: float) -> tuple[Counter[int], list[int]]:
    """Join ``group`` as a plain consumer (the next owner of what it gets), read for ``listen_s`` seconds after
    its first assignment; the records it was given per partition, and its partitions. Commits nothing."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        **SAFER_GROUP_CONFIG,
    )
    got: Counter[int] = Counter()
    try:
        deadline = time.monotonic() + 60
        assigned_at = None
        while time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=200).items():
                got[tp.partition] += len(records)
            if assigned_at is None and consumer.assignment():
                assigned_at = time.monotonic()
            if assigned_at is not None and time.monotonic() - assigned_at > listen_s:
                break
        assert assigned_at is not None, "the second member never got partitions"
        return got, sorted(tp.partition for tp in consumer.assignment())
    finally:
        consumer.close(autocommit=False)


def _start_and_finish(settings, model, held: HeldCommits, bootstrap: str, topic: str) -> tuple[WorkerThread, dict]:
    worker = WorkerThread(settings, model).start()
    ends = _produce(bootstrap, topic)
    wait_for(lambda: worker.runner.stats.produced >= MESSAGES, 120, 0.2, f"{MESSAGES} outputs")
    wait_for(lambda: held.highest() == ends, 30, 0.1, f"a periodic commit of every end offset {ends} in flight")
    return worker, ends


def test_a_second_member_joining_while_a_periodic_commit_is_in_flight_gets_no_record_again(
    broker, topic_name, tiny_onnx_dir, model, held
) -> None:
    bootstrap = broker.bootstrap
    out_topic = create_input_and_output(bootstrap, topic_name, PARTITIONS)
    (group,) = group_ids(1, "inflight-revoke")
    settings = worker_settings(bootstrap, topic_name, tiny_onnx_dir, group_id=group, commit_interval_ms=200)
    worker, ends = _start_and_finish(settings, model, held, bootstrap, topic_name)
    try:
        in_flight = len(held.held)
        redelivered, moved = _consume_as_member(bootstrap, topic_name, group, listen_s=4.0)
        held.fail_all()  # the held commits' answers come after the revoke
        committed_after_move = committed_offsets(bootstrap, group, topic_name)
    finally:
        rc = worker.stop()
    committed = committed_offsets(bootstrap, group, topic_name)
    outputs = Counter(json.loads(r.value)["id"] for r in consume_all(bootstrap, out_topic, MESSAGES, 30, settle_s=1.0))
    duplicates = sum(outputs.values()) - len(outputs)
    print(
        f"\ncommit in flight at revoke: messages={MESSAGES} periodic_commits_in_flight={in_flight} "
        f"moved_partitions={moved} redelivered_to_next_owner={sum(redelivered.values())} {dict(redelivered)} "
        f"committed_after_move={committed_after_move} committed_at_end={committed} end_offsets={ends} "
        f"output_duplicates={duplicates} failed_answers={held.answered} rc={rc}"
    )
    assert moved, "no partition moved"
    assert sum(redelivered.values()) == 0, f"the next owner got records again: {dict(redelivered)}"
    assert all(committed_after_move.get(p) == ends[p] for p in moved), (committed_after_move, ends)
    assert rc == 0 and committed == ends
    assert len(outputs) == MESSAGES and duplicates == 0


def test_a_graceful_stop_while_a_periodic_commit_is_in_flight_commits_everything(
    broker, topic_name, tiny_onnx_dir, model, held
) -> None:
    bootstrap = broker.bootstrap
    create_input_and_output(bootstrap, topic_name, PARTITIONS)
    (group,) = group_ids(1, "inflight-stop")
    settings = worker_settings(bootstrap, topic_name, tiny_onnx_dir, group_id=group, commit_interval_ms=200)
    worker, ends = _start_and_finish(settings, model, held, bootstrap, topic_name)
    in_flight = len(held.held)
    try:
        rc = worker.stop()
    finally:
        held.fail_all()
    committed = committed_offsets(bootstrap, group, topic_name)
    redelivered, _ = _consume_as_member(bootstrap, topic_name, group, listen_s=3.0)
    print(
        f"\ncommit in flight at stop: messages={MESSAGES} periodic_commits_in_flight={in_flight} rc={rc} "
        f"committed={committed} end_offsets={ends} redelivered_to_next_owner={sum(redelivered.values())}"
    )
    assert rc == 0
    assert committed == ends, "the final commit skipped offsets whose periodic commit was only in flight"
    assert sum(redelivered.values()) == 0
