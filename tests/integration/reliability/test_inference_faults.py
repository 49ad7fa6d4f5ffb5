"""Faults no record is to blame for, in a real worker (``worker.app.Worker`` in-process, its /readyz and /healthz
served), against the real embedded broker and the real exported tiny ONNX model.

- The ONNX Runtime session throws on every call, rebuilt sessions too (a GPU that failed): the worker pauses,
  answers /readyz 503, rebuilds the session with backoff, gives up and exits 1; nothing is dead-lettered and the
  committed offset stays at the first failed record, so a healthy worker then enriches every record.
- The session throws until it is rebuilt: every record enriched once, in order, none dead-lettered, exit 0.
- The inference thread dies (an exception escapes its loop): /healthz 503, exit 1, the in-flight records are not
  committed, and a healthy worker finishes them.
(A record that fails on its own among good ones is still dead-lettered alone: ``test_fuzz_dead_letter.py``.)

The faults are injected from here only: the loaded model's session is wrapped (``FailingSession``), the module's
session factory is patched so a rebuild gets a failing session too, or a stage method is patched to raise.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import worker.app as app_module
import worker.model.runtime as runtime
from devtools.ports import free_port
from tests.support.feeds import message
from tests.support.http import http_status
from tests.support.kafka_utils import committed_offsets, consume_all, create_topic, produce_values
from tests.support.waits import wait_committed, wait_for
from tests.support.worker_thread import AppThread, WorkerThread, worker_settings
from worker.model.runtime import SentimentModel
from worker.stream.infer import InferStage

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FIRST, SECOND = 100, 100  # records before and after the fault (one partition: offsets are record numbers)
BREAKER = {"inference_failures_to_open": 3, "inference_rebuild_attempts": 2, "inference_rebuild_backoff_s": 0.2}
CUDA_FAILURE = "[ONNXRuntimeError] : 1 : FAIL : CUDA failure 700: an illegal memory access was encountered"


class FailingSession:
    """An ONNX Runtime session that throws on every run while ``fault`` is set; otherwise the real one."""

    def __init__(self, real: Any, fault: threading.Event) -> None:
        self.real = real
        self.fault = fault

    def run(self, *args: Any, **kwargs: Any) -> Any:
        if self.fault.is_set():
            raise RuntimeError(CUDA_FAILURE)
        return self.real.run(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class Probe(threading.Thread):
    """Polls a health URL every 10 ms; ``seen`` is (seconds since start, status) at each change."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.seen: list[tuple[float, int | None]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self.halt.is_set():
            status = http_status(self.url, timeout=1.0)
            if not self.seen or self.seen[-1][1] != status:
                self.seen.append((round(time.monotonic() - started, 3), status))
            time.sleep(0.01)

    def statuses(self) -> list[int | None]:
        return [status for _, status in self.seen]


def _failing_session(fault: threading.Event, reloads: list[float]) -> Callable[[SentimentModel], None]:
    """``prepare`` for :class:`InProcessWorker`: the loaded model's session fails while ``fault`` is set; each
    session rebuild the worker asks for is timed into ``reloads``."""

    def prepare(model: SentimentModel) -> None:
        model._session = FailingSession(model._session, fault)
        real_reload = model.reload

        def reload() -> None:
            reloads.append(time.monotonic())
            real_reload()

        model.reload = reload  # type: ignore[method-assign]

    return prepare


class InProcessWorker(AppThread):
    """The whole worker on a thread (:class:`AppThread`); the model it loads goes through ``prepare`` first."""

    def __init__(self, settings: Any, model_dir: Path, prepare: Callable[[SentimentModel], None], monkeypatch) -> None:
        real_load = app_module.load_model
        self.model: SentimentModel | None = None

        def load(path: Path, s: Any) -> SentimentModel:
            self.model = real_load(path, s)
            prepare(self.model)
            return self.model

        monkeypatch.setattr(app_module, "load_model", load)
        super().__init__(settings, model_dir)


def _records(start: int, count: int) -> list[tuple[bytes, bytes]]:
    return [(f"k{i % 7}".encode(), message(i)) for i in range(start, start + count)]


def _ids(records: list[Any]) -> list[int]:
    return [json.loads(r.value)["id"] for r in records]


def _setup(bootstrap: str, topic: str) -> str:
    create_topic(bootstrap, topic, 1)
    create_topic(bootstrap, f"{topic}.sentiment", 1)
    return f"{topic}.sentiment"


def _runs_normally(bootstrap: str, topic: str, group: str) -> None:
    """Before the fault: ready, and the first ``FIRST`` records enriched and committed."""
    produce_values(bootstrap, topic, _records(0, FIRST))
    assert len(consume_all(bootstrap, f"{topic}.sentiment", FIRST, timeout_s=60)) == FIRST
    wait_committed(bootstrap, group, topic, {0: FIRST}, 30, what="first commit")


def _fault_stops_it(worker: InProcessWorker, fault: threading.Event, bootstrap: str, topic: str) -> float:
    """The fault, then ``SECOND`` more records: the worker must stop by itself. Returns when the fault began."""
    fault.set()
    fault_at = time.monotonic()
    produce_values(bootstrap, topic, _records(FIRST, SECOND))
    worker.wait_exit(60)
    return fault_at


def _healthy_worker_finishes(bootstrap: str, topic: str, model_dir: Path, group: str, total: int) -> list[int]:
    """A healthy worker of the same group: the records the failed one left enriched, committed to the end."""
    model = SentimentModel.load(model_dir, device="cpu")
    worker = WorkerThread(worker_settings(bootstrap, topic, model_dir, group_id=group), model).start()
    try:
        out = consume_all(bootstrap, f"{topic}.sentiment", total, timeout_s=60, settle_s=1.0)
        wait_committed(bootstrap, group, topic, {0: total}, 30, what="commit to the end")
    finally:
        assert worker.stop() == 0
    return _ids(out)


def test_a_session_that_fails_for_good_stops_the_worker_without_committing_or_dead_lettering(
    broker, topic_name, tiny_onnx_dir, monkeypatch
) -> None:
    bootstrap = broker.bootstrap
    out_topic = _setup(bootstrap, topic_name)
    fault = threading.Event()
    reloads: list[float] = []
    prepare = _failing_session(fault, reloads)
    # a rebuilt session fails too: the device is gone
    real_create = runtime._create_session
    monkeypatch.setattr(runtime, "_create_session", lambda *a, **kw: FailingSession(real_create(*a, **kw), fault))
    port = free_port()
    settings = worker_settings(bootstrap, topic_name, tiny_onnx_dir, metrics_port=port, threads=1, **BREAKER)
    worker = InProcessWorker(settings, tiny_onnx_dir, prepare, monkeypatch).start()
    ready, alive = Probe(f"http://127.0.0.1:{port}/readyz"), Probe(f"http://127.0.0.1:{port}/healthz")
    try:
        worker.wait_ready(port)
        ready.start()
        alive.start()
        _runs_normally(bootstrap, topic_name, settings.group_id)
        fault_at = _fault_stops_it(worker, fault, bootstrap, topic_name)
    finally:
        ready.halt.set()
        alive.halt.set()
        if worker.alive:
            worker.stop()
    committed = committed_offsets(bootstrap, settings.group_id, topic_name)
    out = consume_all(bootstrap, out_topic, FIRST + SECOND, timeout_s=3, settle_s=0.5)
    dead = consume_all(bootstrap, f"{topic_name}.dlq", 1, timeout_s=3)
    assert worker.ended_at is not None
    print(
        f"\nsession down for good: records={FIRST}+{SECOND} rc={worker.rc} "
        f"exit_after_fault_s={worker.ended_at - fault_at:.2f} rebuilds_tried={len(reloads)} "
        f"enriched={len(out)} dead_lettered={len(dead)} committed={committed} "
        f"readyz={ready.seen} healthz={alive.seen}"
    )
    assert worker.rc == 1
    assert len(reloads) == BREAKER["inference_rebuild_attempts"]
    assert dead == [], "no record is to blame: nothing dead-lettered"
    assert _ids(out) == list(range(FIRST)), "nothing after the fault was produced"
    assert committed == {0: FIRST}, "the committed offset stays at the first failed record"
    statuses = ready.statuses()
    assert statuses[0] == 200 and 503 in statuses, "not ready while the session was being rebuilt"
    assert 503 not in alive.statuses(), "alive (paused, rebuilding) until it gave up"

    # the records stayed in Kafka: a healthy worker of the same group enriches exactly them
    monkeypatch.undo()
    ids = _healthy_worker_finishes(bootstrap, topic_name, tiny_onnx_dir, settings.group_id, FIRST + SECOND)
    print(f"next worker: enriched {len(ids) - FIRST} more, total {len(ids)}, duplicates {len(ids) - len(set(ids))}")
    assert ids == list(range(FIRST + SECOND))


def test_a_session_that_a_rebuild_fixes_loses_nothing_and_dead_letters_nothing(
    broker, topic_name, tiny_onnx_dir, monkeypatch
) -> None:
    bootstrap = broker.bootstrap
    out_topic = _setup(bootstrap, topic_name)
    fault = threading.Event()
    reloads: list[float] = []
    prepare = _failing_session(fault, reloads)  # only this session: a rebuild gets a good one
    port = free_port()
    settings = worker_settings(bootstrap, topic_name, tiny_onnx_dir, metrics_port=port, threads=1, **BREAKER)
    worker = InProcessWorker(settings, tiny_onnx_dir, prepare, monkeypatch).start()
    ready = Probe(f"http://127.0.0.1:{port}/readyz")
    try:
        worker.wait_ready(port)
        ready.start()
        produce_values(bootstrap, topic_name, _records(0, FIRST))
        assert len(consume_all(bootstrap, out_topic, FIRST, timeout_s=60)) == FIRST
        fault.set()
        fault_at = time.monotonic()
        produce_values(bootstrap, topic_name, _records(FIRST, SECOND))
        out = consume_all(bootstrap, out_topic, FIRST + SECOND, timeout_s=60, settle_s=1.0)
        recovered_s = time.monotonic() - fault_at
        wait_committed(bootstrap, settings.group_id, topic_name, {0: FIRST + SECOND}, 30)
        assert worker.alive
        wait_for(lambda: http_status(f"http://127.0.0.1:{port}/readyz") == 200, 10, what="ready again")
    finally:
        ready.halt.set()
        rc = worker.stop()
    dead = consume_all(bootstrap, f"{topic_name}.dlq", 1, timeout_s=3)
    ids = _ids(out)
    print(
        f"\nsession fixed by a rebuild: records={FIRST}+{SECOND} rebuilds={len(reloads)} "
        f"all_enriched_after_s={recovered_s:.2f} enriched={len(ids)} duplicates={len(ids) - len(set(ids))} "
        f"dead_lettered={len(dead)} "
        f"readyz={ready.seen} rc={rc}"
    )
    assert rc == 0
    assert len(reloads) == 1
    assert dead == []
    assert ids == list(range(FIRST + SECOND)), "every record once, in order"
    statuses = ready.statuses()
    assert 503 in statuses and statuses[-1] == 200, "not ready while rebuilding, ready again after"


def test_a_dead_inference_thread_fails_healthz_and_exits_1_without_committing_in_flight_records(
    broker, topic_name, tiny_onnx_dir, monkeypatch
) -> None:
    bootstrap = broker.bootstrap
    out_topic = _setup(bootstrap, topic_name)
    armed = threading.Event()
    real_put_out = InferStage._put_out

    def put_out(self: InferStage, items: Any, probs: Any, drop: threading.Event, *rest: Any) -> None:
        if armed.is_set():
            raise RuntimeError("injected: a bug in the inference loop")
        real_put_out(self, items, probs, drop, *rest)

    monkeypatch.setattr(InferStage, "_put_out", put_out)
    port = free_port()
    settings = worker_settings(bootstrap, topic_name, tiny_onnx_dir, metrics_port=port, threads=1)
    worker = InProcessWorker(settings, tiny_onnx_dir, lambda model: None, monkeypatch).start()
    alive = Probe(f"http://127.0.0.1:{port}/healthz")
    try:
        worker.wait_ready(port)
        alive.start()
        _runs_normally(bootstrap, topic_name, settings.group_id)
        armed_at = _fault_stops_it(worker, armed, bootstrap, topic_name)
    finally:
        alive.halt.set()
        if worker.alive:
            worker.stop()
    committed = committed_offsets(bootstrap, settings.group_id, topic_name)
    out = consume_all(bootstrap, out_topic, FIRST + SECOND, timeout_s=3, settle_s=0.5)
    assert worker.ended_at is not None
    print(
        f"\ndead inference thread: rc={worker.rc} exit_after_fault_s={worker.ended_at - armed_at:.2f} "
        f"enriched={len(out)} committed={committed} healthz={alive.seen}"
    )
    assert worker.rc == 1
    assert 503 in alive.statuses(), "/healthz failed once the thread was dead"
    assert _ids(out) == list(range(FIRST))
    assert committed == {0: FIRST}, "the in-flight records are not committed"
    monkeypatch.undo()
    ids = _healthy_worker_finishes(bootstrap, topic_name, tiny_onnx_dir, settings.group_id, FIRST + SECOND)
    assert ids == list(range(FIRST + SECOND))
