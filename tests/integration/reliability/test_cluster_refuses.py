"""A fault that is not the record's stops the worker once, clearly, without committing: here a dead-letter topic
template that names a topic that can never exist (Kafka topic names are [a-zA-Z0-9._-]{1,249}).

The bad record (it must be dead-lettered) stops the worker with exit 1 and one error line naming the topic; nothing
past it is committed, so a worker with a fixed template picks up there.
"""

from __future__ import annotations

import time

import pytest

from tests.support.feeds import group_ids, message
from tests.support.kafka_utils import committed_offsets, consume_all, create_topic, produce_values
from tests.support.worker_process import WorkerProcess, worker_env

pytestmark = pytest.mark.integration


def test_a_dead_letter_topic_that_cannot_exist_stops_the_worker_once(broker, topic_name, tiny_onnx_dir, tmp_path):
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, 1)
    create_topic(bootstrap, f"{topic_name}.sentiment", 1)
    records = (
        [(b"k", message(i)) for i in range(20)] + [(b"k", b"{not json")] + [(b"k", message(i)) for i in range(20, 30)]
    )
    produce_values(bootstrap, topic_name, records)
    group = group_ids(1, "refused")[0]
    env = worker_env(bootstrap, topic_name, group, tiny_onnx_dir, dlq_topic="{topic} dead letters!")
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    started = time.monotonic()
    try:
        rc = worker.wait(120)
    finally:
        if worker.alive():
            worker.kill()
    elapsed = time.monotonic() - started
    errors = [e for e in worker.events() if e.get("level") == "error"]
    out = consume_all(bootstrap, f"{topic_name}.sentiment", 0, timeout_s=5)
    committed = committed_offsets(bootstrap, group, topic_name)
    print(
        f"\ncluster refusal: rc={rc} exit_s={elapsed:.1f} errors={[e['event'] for e in errors]} committed={committed}"
    )
    assert rc == 1
    assert len(errors) == 1 and "dead letters!" in str(errors[0]), errors
    assert "Traceback" not in worker.log_text()
    print(f"error line: {errors[0]}\nenriched before the stop: {len(out)}")
    assert all(offset <= 20 for offset in committed.values()), committed  # never past the record it could not write
