"""The embedded broker, the test helpers and the broker/produce CLI commands against a real Tansu broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from devtools import loadgen
from devtools.broker import BrokerError, EmbeddedBroker, api_versions_ok, create_topics
from tests.support.kafka_utils import (
    committed_offsets,
    consume_all,
    create_topic,
    fast_group_config,
    produce_values,
    topic_names,
)

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "worker"]


def _gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (missing, or a zombie waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")


def _wait_gone(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return _gone(pid)


def _readline(stream: object, timeout_s: float) -> str:
    """One line from a subprocess pipe, or '' on timeout (reads in a thread; pipes have no timeout)."""
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)  # type: ignore[attr-defined]
    reader.start()
    reader.join(timeout_s)
    return result[0] if result else ""


# ---- EmbeddedBroker -----------------------------------------------------------------------------------
def test_broker_starts_on_free_port_and_answers(broker: EmbeddedBroker) -> None:
    host, port = broker.bootstrap.rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) == broker.port > 0
    assert broker.is_running()
    assert api_versions_ok(host, broker.port)
    assert broker.startup_s is not None and broker.startup_s < 15
    assert broker.log_path is not None and "tansu broker" in broker.log_tail()


def test_round_trip_with_keys_headers_and_partitions(broker: EmbeddedBroker, topic_name: str) -> None:
    create_topic(broker.bootstrap, topic_name, partitions=4)
    items = [
        (f"k{i % 3}".encode(), f"value-{i}".encode(), [("h", str(i).encode()), ("x-two", b"\x00\xff")], None)
        for i in range(20)
    ]
    items += [(None, b"unkeyed-on-2", None, 2), (b"pinned", b"pinned-on-3", [("h", b"p")], 3)]
    metadata = produce_values(broker.bootstrap, topic_name, items)
    assert len(metadata) == len(items)

    records = consume_all(broker.bootstrap, topic_name, expected=len(items), timeout_s=10, settle_s=0.3)
    assert len(records) == len(items)
    by_value = {r.value: r for r in records}
    for key, value, headers, partition in items:
        record = by_value[value]
        assert record.key == key
        assert list(record.headers) == list(headers or [])
        if partition is not None:
            assert record.partition == partition
    # Same key -> same partition, and per-partition order is kept.
    for key in (b"k0", b"k1", b"k2"):
        same = [r for r in records if r.key == key]
        assert len({r.partition for r in same}) == 1
        assert [int(r.value.split(b"-")[1]) for r in same] == sorted(int(r.value.split(b"-")[1]) for r in same)


def test_create_topics_is_idempotent(broker: EmbeddedBroker, topic_name: str) -> None:
    other = topic_name + "-b"
    assert create_topics(broker.bootstrap, {topic_name: 2}) == [topic_name]
    assert create_topics(broker.bootstrap, {topic_name: 2, other: 1}) == [other]
    assert {topic_name, other} <= topic_names(broker.bootstrap)


def test_two_brokers_at_once(broker: EmbeddedBroker, fresh_broker: EmbeddedBroker, topic_name: str) -> None:
    assert fresh_broker.port != broker.port
    create_topic(fresh_broker.bootstrap, topic_name, partitions=1)
    produce_values(fresh_broker.bootstrap, topic_name, [(None, b"only-on-fresh")])
    assert [r.value for r in consume_all(fresh_broker.bootstrap, topic_name, 1)] == [b"only-on-fresh"]
    assert topic_name not in topic_names(broker.bootstrap)


def test_stop_then_restart_on_the_same_port(fresh_broker: EmbeddedBroker, topic_name: str) -> None:
    port, pid = fresh_broker.port, fresh_broker.pid
    assert pid is not None
    create_topic(fresh_broker.bootstrap, topic_name, partitions=1)
    produce_values(fresh_broker.bootstrap, topic_name, [(None, b"before")])

    started = time.monotonic()
    assert fresh_broker.stop() == 0  # SIGINT: clean exit
    assert time.monotonic() - started < 3
    assert not fresh_broker.is_running() and _wait_gone(pid)
    assert not api_versions_ok("127.0.0.1", port)

    fresh_broker.restart()
    assert fresh_broker.port == port and fresh_broker.is_running()
    assert topic_name not in topic_names(fresh_broker.bootstrap)  # memory storage: nothing survives
    fresh_broker.close()

    # A new broker object can take over the port at once.
    with EmbeddedBroker(port=port) as again:
        assert again.bootstrap == f"127.0.0.1:{port}"
        create_topic(again.bootstrap, topic_name, partitions=1)
        produce_values(again.bootstrap, topic_name, [(None, b"after")])
        assert [r.value for r in consume_all(again.bootstrap, topic_name, 1)] == [b"after"]


def test_port_in_use_is_a_clear_error(broker: EmbeddedBroker) -> None:
    with pytest.raises(BrokerError, match="already in use"):
        EmbeddedBroker(port=broker.port).start()


def test_broker_dies_with_its_parent(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import time
        from devtools.broker import EmbeddedBroker
        from worker.observability import configure_logging
        configure_logging("json", "warning")  # logs to stderr; stdout carries only the pid
        b = EmbeddedBroker(log_dir=LOG_DIR).start()
        print(b.pid, flush=True)
        time.sleep(60)
        """
    ).replace("LOG_DIR", repr(str(tmp_path)))
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        line = _readline(parent.stdout, timeout_s=15)
        assert line.strip().isdigit(), f"no pid from the parent: {line!r}"
        tansu_pid = int(line)
        assert not _gone(tansu_pid)
        parent.kill()  # SIGKILL: no atexit, only PR_SET_PDEATHSIG can clean up
        parent.wait()
        assert _wait_gone(tansu_pid), "tansu outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


# ---- helpers ------------------------------------------------------------------------------------------
def test_committed_offsets_and_fast_group_join(broker: EmbeddedBroker, topic_name: str) -> None:
    create_topic(broker.bootstrap, topic_name, partitions=2)
    produce_values(broker.bootstrap, topic_name, [(None, b"a", None, 0), (None, b"b", None, 0), (None, b"c", None, 1)])
    group = f"g-{topic_name}"
    consumer = KafkaConsumer(
        topic_name,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **fast_group_config(),
    )
    try:
        started = time.monotonic()
        seen = 0
        while seen < 3 and time.monotonic() - started < 15:
            seen += sum(len(v) for v in consumer.poll(timeout_ms=200).values())
        joined_s = time.monotonic() - started
        assert seen == 3
        assert joined_s < 8, f"group join took {joined_s:.1f} s"
        consumer.commit()
    finally:
        consumer.close()
    assert committed_offsets(broker.bootstrap, group, topic_name) == {0: 2, 1: 1}
    assert committed_offsets(broker.bootstrap, group + "-none", topic_name) == {}


def test_consume_all_of_a_missing_topic_is_empty(broker: EmbeddedBroker, topic_name: str) -> None:
    assert consume_all(broker.bootstrap, topic_name, expected=1, timeout_s=0.5) == []
    assert topic_name not in topic_names(broker.bootstrap)


def test_rate_limit_is_roughly_honoured(broker: EmbeddedBroker, topic_name: str) -> None:
    create_topic(broker.bootstrap, topic_name, partitions=1)
    stats = loadgen.produce(broker.bootstrap, topic_name, loadgen.generate_messages(50, seed=1), rate=100)
    assert stats.sent == 50 and stats.failed == 0
    assert stats.seconds >= 0.45  # message 50 is due 0.49 s after the first
    assert stats.seconds < 10


# ---- CLI ----------------------------------------------------------------------------------------------
def test_broker_cli_prints_address_and_stops_on_sigterm(topic_name: str) -> None:
    env = {**os.environ, "SENTIMENT_LOG_FORMAT": "json"}
    proc = subprocess.Popen([*CLI, "broker"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = _readline(proc.stdout, timeout_s=20).strip()
        host, _, port = line.rpartition(":")
        assert host == "127.0.0.1" and port.isdigit(), f"unexpected first stdout line {line!r}"
        produce_values(line, topic_name, [(b"k", b"via-cli-broker")])
        assert [r.value for r in consume_all(line, topic_name, 1)] == [b"via-cli-broker"]

        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        started = [json.loads(x) for x in err.splitlines() if '"broker_started"' in x]
        assert started and _wait_gone(started[0]["pid"])
        assert not api_versions_ok("127.0.0.1", int(port))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_produce_cli_sends_generated_messages(broker: EmbeddedBroker, topic_name: str) -> None:
    count = 300
    result = subprocess.run(
        [
            *CLI,
            "produce",
            "--topic",
            topic_name,
            "--bootstrap-servers",
            broker.bootstrap,
            "--count",
            str(count),
            "--keys",
            "5",
            "--partitions",
            "3",
            "--length",
            "mixed",
            "--seed",
            "7",
            "--log-level",
            "warning",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"sent {count} messages" in result.stdout

    records = consume_all(broker.bootstrap, topic_name, expected=count, timeout_s=15, settle_s=0.3)
    assert len(records) == count
    values = [json.loads(r.value) for r in records]
    assert len({v["id"] for v in values}) == count
    assert sorted(v["seq"] for v in values) == list(range(count))
    assert all(v["text"] and isinstance(v["sent_at"], int) for v in values)
    assert {r.key for r in records} == {f"key-{i}".encode() for i in range(5)}
    assert {r.partition for r in records} <= {0, 1, 2}


def test_produce_cli_sends_a_file(broker: EmbeddedBroker, topic_name: str, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a1", "text": "kept as is", "extra": 1}\nplain line\n\nsecond plain\n')
    result = subprocess.run(
        [*CLI, "produce", "--topic", topic_name, "--bootstrap-servers", broker.bootstrap, "--file", str(source)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    records = consume_all(broker.bootstrap, topic_name, expected=3, timeout_s=10, settle_s=0.3)
    values = sorted((json.loads(r.value) for r in records), key=lambda v: v["text"])
    assert [v["text"] for v in values] == ["kept as is", "plain line", "second plain"]
    assert values[0] == {"id": "a1", "text": "kept as is", "extra": 1}
    assert values[1]["id"] != values[2]["id"]
