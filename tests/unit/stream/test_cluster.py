"""The cluster checks without a broker: which topics an input topic needs, how a lookup's answer becomes
"held" or "released", the start-up wait (stop, backoff, health beats), and the settings behind them.
The same paths run against the real broker in tests/integration (test_missing_topics, test_broker_absent_at_start)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from worker.settings import SettingsError, load_settings
from worker.stream.common.ports import NullHealth, NullMetrics
from worker.stream.kafka.cluster import Cluster, TopicCheck
from worker.stream.kafka.watch import BrokerWatch
from worker.stream.sink import producer_config

pytestmark = pytest.mark.unit
LABELS = ("NEGATIVE", "POSITIVE")


class Admin:
    """describe_topics/create_topics answers of a cluster that holds ``topics`` ({name: partitions})."""

    def __init__(self, topics: dict[str, int]) -> None:
        self.topics = dict(topics)
        self.created: dict[str, dict[str, int]] = {}

    def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        return [
            {"name": n, "error_code": 0, "partitions": [{}] * self.topics[n]}
            if n in self.topics
            else {"name": n, "error_code": 3, "partitions": []}
            for n in names
        ]

    def create_topics(self, spec: dict[str, dict[str, int]], **_: Any) -> dict[str, Any]:
        self.created.update(spec)
        for name, options in spec.items():
            self.topics[name] = options["num_partitions"] if options["num_partitions"] > 0 else 1
        return {"topics": [{"name": n, "error_code": 0} for n in spec]}


class Health(NullHealth):
    def __init__(self) -> None:
        self.missing: list[str] = []
        self.beats = 0
        self.reachable: list[bool] = []

    def set_topics_missing(self, topics: Any) -> None:
        self.missing = list(topics)

    def beat(self) -> None:
        self.beats += 1

    def set_broker_reachable(self, ok: bool) -> None:
        self.reachable.append(ok)


class Producer:
    def __init__(self, answers: dict[str, set[int]]) -> None:
        self.answers = answers

    def partitions_for(self, name: str) -> set[int]:
        if name not in self.answers:
            raise TimeoutError("not there")  # kafka-python: KafkaTimeoutError after max_block_ms
        return self.answers[name]


def _check(producer: Producer | None = None, **overrides: Any) -> tuple[TopicCheck, Health]:
    settings = load_settings(input_topics="in", **overrides)
    health = Health()
    check = TopicCheck(
        settings.kafka, settings.output, LABELS, health, producer=lambda: producer, input_topics=settings.input_topics
    )
    return check, health


def test_targets_cover_every_label_of_the_output_template_and_the_dead_letter_topic() -> None:
    check, _ = _check(output_topic="{topic}.{label}")
    assert check.targets("in") == ["in.dlq", "in.negative", "in.positive"]
    assert _check()[0].targets("in") == ["in.dlq", "in.sentiment"]


def test_wait_reports_what_is_missing_and_holds_until_it_exists() -> None:
    check, health = _check(missing_topics="wait")
    admin = Admin({"in": 2, "in.sentiment": 2})
    check.assigned({"in"})
    assert check.held() == {"in"}  # not checked yet: held
    problems = check.check(admin, {"in"})
    check._publish({"in"}, problems)
    assert problems == {"in": ["in.dlq (does not exist)"]} and check.held() == {"in"}
    assert health.missing == ["in.dlq"] and admin.created == {}
    admin.topics["in.dlq"] = 2
    check._publish({"in"}, check.check(admin, {"in"}))
    assert check.held() == set() and health.missing == []


def test_create_sizes_new_topics_like_the_input_topic_or_as_configured() -> None:
    check, _ = _check(missing_topics="create")
    admin = Admin({"in": 6})
    assert check.check(admin, {"in"}) == {}
    assert admin.created == {n: {"num_partitions": 6, "replication_factor": -1} for n in ("in.dlq", "in.sentiment")}
    check, _ = _check(missing_topics="create", topic_partitions=2, topic_replication_factor=3)
    admin = Admin({"in": 6})
    check.check(admin, {"in"})
    assert admin.created["in.sentiment"] == {"num_partitions": 2, "replication_factor": 3}


def test_auto_asks_as_a_send_does_and_waits_if_the_cluster_does_not_create_it() -> None:
    check, _ = _check(Producer({"in.sentiment": {0, 1}}), missing_topics="auto")
    assert check.check(Admin({"in": 2}), {"in"}) == {"in": ["in.dlq (does not exist)"]}
    check, _ = _check(None, missing_topics="auto")  # no producer yet (between two pipelines): looked up again later
    missing = set(check.check(Admin({"in": 2}), {"in"})["in"])
    assert missing == {"in.dlq (does not exist)", "in.sentiment (does not exist)"}


def test_source_partitioning_needs_as_many_output_partitions() -> None:
    check, _ = _check(output_partitioning="source")
    problems = check.check(Admin({"in": 4, "in.sentiment": 2, "in.dlq": 1}), {"in"})
    assert list(problems) == ["in"] and "in.sentiment (has 2 partitions, in has 4" in problems["in"][0]


def _cluster(probe: Any, **overrides: Any) -> tuple[Cluster, Health]:
    settings = load_settings(input_topics="in", reconnect_backoff_max_ms=200, log_interval_s=0.1, **overrides)
    health = Health()
    watch = BrokerWatch(health, NullMetrics(), log_interval_s=settings.log_interval_s)
    return Cluster(
        settings.kafka, settings.input, settings.output, LABELS, health, watch, sink=lambda: None, probe=probe
    ), health


def test_wait_reachable_retries_with_backoff_until_the_cluster_answers() -> None:
    answers = iter([False, False, False, True])
    cluster, health = _cluster(lambda _s: next(answers))
    started = time.monotonic()
    assert cluster.wait_reachable(threading.Event()) is True
    assert health.reachable == [False, False, False, True] and health.beats >= 3
    assert time.monotonic() - started >= 0.25 + 0.2 + 0.2  # paused between attempts (backoff capped at 200 ms)


def test_a_stop_ends_the_wait_at_once_even_inside_an_attempt() -> None:
    cluster, _ = _cluster(lambda _s: time.sleep(5) or False)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    assert cluster.wait_reachable(stop) is False
    assert time.monotonic() - started < 1.0


def test_an_error_that_is_not_unreachability_is_raised() -> None:
    def probe(_s: Any) -> bool:
        raise FileNotFoundError("ssl_cafile")

    cluster, _ = _cluster(probe)
    with pytest.raises(FileNotFoundError):
        cluster.wait_reachable(threading.Event())


def test_settings_bound_the_producer_and_validate_topic_creation() -> None:
    settings = load_settings(producer_max_block_ms=1234)
    assert producer_config(settings.kafka, settings.output)["max_block_ms"] == 1234
    with pytest.raises(SettingsError, match="topic_replication_factor"):
        load_settings(topic_replication_factor=0)
    with pytest.raises(SettingsError, match="missing_topics"):
        load_settings(missing_topics="sometimes")


def test_a_name_that_cannot_be_a_topic_is_left_to_the_sink() -> None:
    check, _ = _check(missing_topics="wait", output_topic="{topic}.out!")  # the sink stops the worker with its reason
    assert check.check(Admin({"in": 1, "in.dlq": 1}), {"in"}) == {}
