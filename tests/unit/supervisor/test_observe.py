"""The supervisor's /healthz, /readyz and /metrics over fake children (answers given) and real multiprocess files."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from tests.support.http import get
from worker.supervisor import clean_metrics_dir
from worker.supervisor.observe import Probe, SupervisorServer
from worker.supervisor.supervisor import Supervisor

from .fakes import Clock, Spawner

pytestmark = pytest.mark.unit

OK = (200, json.dumps({"ok": True}).encode())
DOWN = (503, json.dumps({"ok": False}).encode())
CHILD_METRICS = b"""# HELP sentiment_ready 1 when /readyz answers 200.
# TYPE sentiment_ready gauge
sentiment_ready %s
# HELP sentiment_main_loop_age_seconds Seconds since the main loop last iterated.
# TYPE sentiment_main_loop_age_seconds gauge
sentiment_main_loop_age_seconds %s
# HELP sentiment_model_info Model in use.
# TYPE sentiment_model_info gauge
sentiment_model_info{model_id="m",provider="CPUExecutionProvider"} 1.0
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 1000.0
"""


def _started(n: int = 2) -> tuple[Supervisor, Spawner, Clock]:
    spawner, clock = Spawner(internal_port=1234), Clock()
    sup = Supervisor(list(range(n)), spawner, stop_timeout_s=10, clock=clock)
    sup.start_all()
    return sup, spawner, clock


def _answer(child, healthz=OK, readyz=OK, ready=b"1.0", age=b"0.5") -> None:
    child.answers = {"/healthz": healthz, "/readyz": readyz, "/metrics": (200, CHILD_METRICS % (ready, age))}


def test_alive_and_ready_when_every_child_is() -> None:
    sup, spawner, _ = _started()
    for child in spawner.started:
        _answer(child)
    probe = Probe(sup)
    assert probe.verdict("/healthz")[0] and probe.verdict("/readyz")[0]
    _answer(spawner.latest(1), readyz=DOWN)
    ready, details = probe.verdict("/readyz")
    assert not ready and [p["ok"] for p in details["processes"]] == [True, False]
    assert details["processes"][1]["answer"] == {"ok": False}
    _answer(spawner.latest(1), healthz=DOWN)
    assert not probe.verdict("/healthz")[0]


def test_a_restarting_or_starting_child_is_alive_not_ready_and_a_silent_one_is_dead() -> None:
    sup, spawner, _ = _started()
    _answer(spawner.latest(0))
    spawner.latest(1).exit(-signal.SIGKILL)
    sup.step()  # waiting for its restart
    probe = Probe(sup)
    assert probe.verdict("/healthz")[0], "restarting within the crash budget counts as alive"
    assert not probe.verdict("/readyz")[0]
    starting = spawner.latest(1)
    starting.internal_port = None
    sup.slots[1].child, sup.slots[1].restart_at = starting, None
    starting.returncode = None
    assert probe.verdict("/healthz")[0], "no port yet: starting"
    starting.internal_port = 4321  # listening, but it does not answer
    assert not probe.verdict("/healthz")[0]


def test_not_alive_once_given_up() -> None:
    sup, spawner, _ = _started()
    for child in spawner.started:
        _answer(child)
    sup.gave_up = "process 0 crashed too often"
    assert not Probe(sup).verdict("/healthz")[0]


def _write(path: Path, pid: int, kind: str, name: str, sample: str, labels: dict[str, str], value: float) -> None:
    mm = MmapedDict(str(path / f"{kind}_{pid}.db"))
    mm.write_value(mmap_key(name, sample, list(labels), list(labels.values()), "help"), value, 0.0)
    mm.close()


def test_metrics_merge_the_children_files_and_add_the_supervisor_own(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"stale")  # a previous run's: removed at start
    clean_metrics_dir(metrics_dir)
    assert list(metrics_dir.iterdir()) == []
    consumed = "sentiment_messages_consumed"
    _write(metrics_dir, 11, "counter", consumed, f"{consumed}_total", {"topic": "t"}, 5)
    _write(metrics_dir, 12, "counter", consumed, f"{consumed}_total", {"topic": "t"}, 7)
    assigned = "sentiment_assigned_partitions"
    _write(metrics_dir, 11, "gauge_livesum", assigned, assigned, {}, 2)
    _write(metrics_dir, 12, "gauge_livesum", assigned, assigned, {}, 2)
    _write(metrics_dir, 11, "gauge_all", "sentiment_ready", "sentiment_ready", {}, 0)  # the supervisor's own
    sup, spawner, _ = _started()
    _answer(spawner.latest(0), age=b"0.5")
    _answer(spawner.latest(1), age=b"2.5")
    server = SupervisorServer(0, sup, metrics_dir, host="127.0.0.1").start()
    try:
        status, text = get(server.port, "/metrics")
        assert status == 200
        assert 'sentiment_messages_consumed_total{topic="t"} 12.0' in text, "counters summed over processes"
        assert "sentiment_assigned_partitions 4.0" in text
        assert "sentiment_ready 1.0" in text and "sentiment_ready{" not in text, "the children's own is dropped"
        assert "sentiment_alive 1.0" in text
        assert "sentiment_main_loop_age_seconds 2.5" in text, "the oldest main loop"
        assert 'sentiment_model_info{model_id="m",process="0",provider="CPUExecutionProvider"} 1.0' in text
        assert 'process_resident_memory_bytes{process="1"} 1000.0' in text
        assert 'sentiment_worker_processes{state="running"} 2.0' in text
        assert 'sentiment_worker_process_restarts_total{process="0"} 0.0' in text
        assert "sentiment_worker_info{version=" in text
        _answer(spawner.latest(1), ready=b"0.0")
        assert "sentiment_ready 0.0" in get(server.port, "/metrics")[1]
        assert get(server.port, "/readyz")[0] == 200
        _answer(spawner.latest(1), readyz=DOWN)
        status, body = get(server.port, "/readyz")
        assert status == 503 and json.loads(body)["ready"] is False
        assert get(server.port, "/healthz")[0] == 200
        assert get(server.port, "/nope")[0] == 404
    finally:
        server.stop()
