"""The web app's Kafka reader without a browser: started while no broker listens, it says so and picks up once a
broker appears; it reads output and dead-letter records by what they are, and never joins a consumer group."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from devtools.broker import EmbeddedBroker
from devtools.ports import free_port
from tests.integration.ui.helpers import ui_settings
from tests.support.kafka_utils import create_topic, produce_values
from webapp.data import LiveStats
from webapp.feed import TopicFeed
from worker.records import DeadLetter, ErrorType

pytestmark = pytest.mark.integration


def _until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_broker_that_appears_later_is_picked_up() -> None:
    port = free_port()
    stats = LiveStats()
    feed = TopicFeed(ui_settings(f"127.0.0.1:{port}"), ["out", "dlq"], stats).start()
    try:
        _until(lambda: "is unreachable" in feed.status.message, 15, "the unreachable message")
        assert not feed.status.ok
        with EmbeddedBroker(port=port) as broker:
            create_topic(broker.bootstrap, "out", 2)
            create_topic(broker.bootstrap, "dlq", 1)
            _until(lambda: feed.status.ok, 30, "the feed to connect")
            letter = DeadLetter(error_type=ErrorType.MISSING_TEXT, error_message="no text", source_topic="in",
                                source_partition=0, source_offset=1, source_timestamp=None,
                                failed_at=datetime.now(UTC), worker="w")  # fmt: skip
            output = (b'{"text": "ok", "sentiment": {"label": "POSITIVE", "score": 0.9}, "sentiment_meta": '
                      b'{"processed_at": "2026-01-01T00:00:00+00:00", "latency_ms": 1.0}}')  # fmt: skip
            produce_values(broker.bootstrap, "out", [(None, output), (None, b"not an output record")])
            produce_values(broker.bootstrap, "dlq", [(None, b"{bad", letter.headers())])
            _until(lambda: stats.snapshot(time.time()).records == 1, 20, "the enriched record")
            _until(lambda: stats.snapshot(time.time()).reasons == {"missing_text": 1}, 20, "the dead letter")
            from kafka.admin import KafkaAdminClient

            admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
            try:
                groups = admin.list_groups()
            finally:
                admin.close()
            assert not groups, f"the app joined a consumer group: {groups}"
    finally:
        feed.stop()
