"""A worker whose start-up fails releases what it had already created: the consumer is closed (it leaves the group),
no kafka-python network thread, producer or topic-check thread is left (against the real embedded broker and model).
(Tansu's group listing can't tell members apart, so the consumer's close is checked on the consumer itself.)

- the producer can't be created after the consumer subscribed (``compression_type=lz4`` without the lz4 package:
  kafka-python refuses it once it has bootstrapped);
- the consumer can't subscribe (a pattern that is not a regular expression).
"""

from __future__ import annotations

import importlib.util
import re
import threading
import time

import pytest

from tests.support.kafka_utils import create_topic, produce_values
from tests.support.worker_thread import worker_settings
from worker.model.runtime import SentimentModel
from worker.stream.runner import Runner

pytestmark = pytest.mark.integration


def _new_threads(before: set[threading.Thread], timeout: float = 5.0) -> list[str]:
    """Threads started since ``before`` that are still alive after ``timeout`` (daemon threads included)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


@pytest.mark.skipif(importlib.util.find_spec("lz4") is not None, reason="needs lz4 to be absent")
def test_producer_failure_after_subscribing_closes_the_consumer(broker, topic_name, tiny_onnx_dir) -> None:
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, 2)
    produce_values(bootstrap, topic_name, [(None, b'{"text": "fine"}')])
    settings = worker_settings(bootstrap, topic_name, tiny_onnx_dir, compression_type="lz4")
    runner = Runner(settings, SentimentModel.load(tiny_onnx_dir, device="cpu"))
    before = set(threading.enumerate())
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="lz4") as failure:
        runner.run()
    failed_s = time.monotonic() - started
    leaked = _new_threads(before)
    consumer_closed = runner.source is not None and runner.source.consumer._closed
    print(
        f"\nproducer can't be created: error={failure.value!r} after {failed_s:.1f}s; consumer_created="
        f"{runner.source is not None} consumer_closed={consumer_closed} leaked_threads={leaked}"
    )
    assert runner.source is not None and consumer_closed, "the consumer had subscribed: it must be closed"
    assert runner.sink is None
    assert leaked == [], "a kafka-python IO thread (a client) left behind"


def test_consumer_failure_leaves_no_client_behind(broker, topic_name, tiny_onnx_dir) -> None:
    settings = worker_settings(broker.bootstrap, None, tiny_onnx_dir, input_pattern="(unclosed")
    runner = Runner(settings, SentimentModel.load(tiny_onnx_dir, device="cpu"))
    before = set(threading.enumerate())
    with pytest.raises(re.error, match=r"unterminated subpattern") as failure:
        runner.run()
    leaked = _new_threads(before)
    print(f"\nconsumer can't subscribe: error={failure.value!r} leaked_threads={leaked}")
    assert runner.source is None and runner.sink is None and leaked == []
