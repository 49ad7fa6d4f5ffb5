"""The inference circuit breaker and the stage-thread guard (no broker, a fake model).

A record is dead-lettered only when it fails on its own (a known-good probe runs right after); a session that fails
on everything keeps its records, opens the circuit (consumer paused, not ready), is rebuilt with backoff, and either
comes back (everything processed, in order, nothing dead-lettered) or the stage gives up (InferenceDown: nothing
handed on, nothing dead-lettered). A stage loop that raises fails liveness and is reported as fatal.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence

import pytest

from tests.unit.stream.helpers import FakeModel, item
from worker.health import HealthState
from worker.model.runtime import InferenceResult
from worker.settings import SettingsError, load_settings
from worker.stream.batcher import InferQueue
from worker.stream.common.guard import Breaker, BreakerPolicy, InferenceDown, start_stage_threads
from worker.stream.common.stats import RunStats
from worker.stream.common.types import Item
from worker.stream.infer import InferStage

pytestmark = pytest.mark.unit

FAST = BreakerPolicy(failures_to_open=3, rebuild_attempts=2, backoff_s=0.01)


class SessionModel(FakeModel):
    """A FakeModel whose session can break: ``broken_after`` calls succeed, then every call fails (probe included)
    until :meth:`reload`, which fixes it from reload number ``fixed_by_reload`` on (never when None)."""

    def __init__(
        self, *, broken_after: int | None = None, fixed_by_reload: int | None = 1, fail_at_tokens: int | None = None
    ) -> None:
        super().__init__(fail_at_tokens=fail_at_tokens)
        self.broken_after = broken_after
        self.fixed_by_reload = fixed_by_reload
        self.attempts = 0  # every model call, failed ones and probes included
        self.reloads = 0
        self.broken = broken_after == 0

    def infer_ids(self, ids: Sequence[Sequence[int]], *, chunk_size: int | None = None) -> InferenceResult:
        self.attempts += 1
        if self.broken_after is not None and self.attempts > self.broken_after and self.reloads == 0:
            self.broken = True
        if self.broken:
            raise RuntimeError("CUDA failure 700: an illegal memory access was encountered")
        return super().infer_ids(ids, chunk_size=chunk_size)

    def reload(self) -> None:
        self.reloads += 1
        if self.fixed_by_reload is not None and self.reloads >= self.fixed_by_reload:
            self.broken = False
        else:
            raise RuntimeError("CUDA error: device unavailable")


class Recorder:
    def __init__(self) -> None:
        self.health = HealthState()
        self.health.set_model_loaded(True)
        self.health.set_broker_reachable(True)
        self.health.set_assignment(1, waiting=False)
        self.down = threading.Event()
        self.ready_seen: list[bool] = []
        self.down_seen: list[bool] = []


def _stage(
    model: SessionModel, batches: list[list[Item]], policy: BreakerPolicy = FAST
) -> tuple[InferStage, Breaker, queue.Queue, list[tuple[Item, str]], Recorder]:
    inbox = InferQueue(max_batch_size=64, max_wait_s=1.0)
    for items in batches:
        inbox.put(items)
    inbox.end()
    rec = Recorder()
    real_reload = model.reload

    def reload() -> None:  # what the worker reports while the session is rebuilt
        rec.ready_seen.append(rec.health.readiness()[0])
        rec.down_seen.append(rec.down.is_set())
        real_reload()

    model.reload = reload  # type: ignore[method-assign]
    breaker = Breaker(model, policy, health=rec.health, down=rec.down)  # type: ignore[arg-type]
    failed: list[tuple[Item, str]] = []
    stage = InferStage(
        model,  # type: ignore[arg-type]
        inbox,
        queue.Queue(),
        chunk_size=8,
        stats=RunStats(),
        on_failed=lambda it, error: failed.append((it, error)),
        breaker=breaker,
    )
    return stage, breaker, stage.outbox, failed, rec


def _handed_on(outbox: queue.Queue) -> list[int]:
    offsets: list[int] = []
    while (out := outbox.get_nowait()) is not None:
        offsets.extend(it.record.offset for it in out[0])
    return offsets


def test_a_record_that_fails_on_its_own_is_dead_lettered_alone() -> None:
    model = SessionModel(fail_at_tokens=7)
    items = [item(i, tokens=7 if i in (5, 6) else 5) for i in range(16)]
    stage, breaker, outbox, failed, rec = _stage(model, [items])
    stage.run(threading.Event())
    assert [it.record.offset for it, _ in failed] == [5, 6]
    assert _handed_on(outbox) == [i for i in range(16) if i not in (5, 6)]
    assert model.reloads == 0 and breaker.failures == 0 and not rec.down.is_set()
    assert rec.health.readiness()[0]


def test_a_session_that_fails_on_everything_gives_up_without_dead_lettering_or_handing_on() -> None:
    model = SessionModel(broken_after=0, fixed_by_reload=None)
    stage, _breaker, outbox, failed, rec = _stage(model, [[item(i) for i in range(8)], [item(8)]])
    started = time.monotonic()
    with pytest.raises(InferenceDown, match="after 2 session rebuild"):
        stage.run(threading.Event())
    elapsed = time.monotonic() - started
    print(f"\nsession down: model calls={model.attempts} reloads={model.reloads} seconds={elapsed:.3f}")
    assert failed == [], "no record is to blame"
    assert outbox.empty(), "nothing handed on"
    # 3 failures in a row (each: the batch and the probe), then 2 rebuilds, then it gives up
    assert model.attempts == 2 * FAST.failures_to_open
    assert model.reloads == FAST.rebuild_attempts
    assert rec.down_seen == [True, True] and rec.ready_seen == [False, False], "paused and not ready meanwhile"
    assert rec.down.is_set() and not rec.health.readiness()[0], "stays not ready while the worker stops"
    assert rec.health.readiness()[1]["inference_ok"] is False


def test_a_session_that_a_rebuild_fixes_processes_everything_in_order() -> None:
    model = SessionModel(broken_after=4, fixed_by_reload=1, fail_at_tokens=7)
    batches = [[item(b * 8 + i, tokens=7 if b * 8 + i == 3 else 5) for i in range(8)] for b in range(4)]
    stage, breaker, outbox, failed, rec = _stage(model, batches)
    stage.run(threading.Event())
    assert [it.record.offset for it, _ in failed] == [3], "the poison record, and only it"
    assert _handed_on(outbox) == [i for i in range(32) if i != 3], "every other record once, in order"
    assert model.reloads == 1 and breaker.rebuilds == 1
    assert rec.down_seen == [True] and rec.ready_seen == [False]
    assert not rec.down.is_set() and rec.health.readiness()[0], "the circuit closed: consuming and ready again"


def test_a_session_breaking_in_the_middle_of_an_isolation_keeps_the_rest_in_order() -> None:
    # call 1: the batch fails (poison); 2: probe ok; 3: first half ok; then the session breaks
    model = SessionModel(broken_after=3, fixed_by_reload=2, fail_at_tokens=7)
    items = [item(i, tokens=7 if i == 6 else 5) for i in range(8)]
    stage, _breaker, outbox, failed, _rec = _stage(model, [items])
    stage.run(threading.Event())
    assert model.reloads == 2, "the first rebuild failed, the second worked"
    assert [it.record.offset for it, _ in failed] == [6]
    assert _handed_on(outbox) == [0, 1, 2, 3, 4, 5, 7]


def test_one_failure_that_goes_away_opens_nothing() -> None:
    model = SessionModel()
    model.broken = True
    model.reload = lambda: pytest.fail("no rebuild for a single failure")  # type: ignore[method-assign]
    original = model.infer_ids

    def flaky(ids, *, chunk_size=None):
        if model.attempts == 2:  # after the batch and the probe failed once, the session is fine again
            model.broken = False
        return original(ids, chunk_size=chunk_size)

    model.infer_ids = flaky  # type: ignore[method-assign]
    failed: list = []
    rec = Recorder()
    inbox = InferQueue(max_batch_size=64, max_wait_s=1.0)
    inbox.put([item(i) for i in range(4)])
    inbox.end()
    breaker = Breaker(model, FAST, health=rec.health, down=rec.down)  # type: ignore[arg-type]
    stage = InferStage(
        model,  # type: ignore[arg-type]
        inbox,
        queue.Queue(),
        chunk_size=8,
        stats=RunStats(),
        on_failed=lambda it, error: failed.append(it),
        breaker=breaker,
    )
    stage.run(threading.Event())
    assert _handed_on(stage.outbox) == [0, 1, 2, 3] and failed == []
    assert breaker.failures == 0 and not rec.down.is_set()


def test_dropping_during_a_rebuild_ends_it_and_closes_the_circuit() -> None:
    model = SessionModel(broken_after=0, fixed_by_reload=None)
    stage, _breaker, outbox, failed, rec = _stage(model, [[item(0)]], BreakerPolicy(1, 5, backoff_s=30.0))
    drop = threading.Event()
    thread = threading.Thread(target=stage.run, args=(drop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not rec.down.is_set():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    drop.set()
    thread.join(5)
    assert not thread.is_alive(), "a forced stop or restart does not wait for the rebuild pause"
    assert failed == [] and model.reloads == 0
    assert not rec.down.is_set(), "the next pipeline generation starts over"
    assert outbox.get_nowait() is None


def test_the_end_marker_never_blocks_on_a_full_queue_while_dropping() -> None:
    model = SessionModel()
    inbox = InferQueue(max_batch_size=8, max_wait_s=1.0)
    inbox.end()
    outbox: queue.Queue = queue.Queue(maxsize=1)
    outbox.put(([item(0)], None))  # nobody takes it (a dead sink thread)
    stage = InferStage(
        model,  # type: ignore[arg-type]
        inbox,
        outbox,
        chunk_size=8,
        stats=RunStats(),
        on_failed=lambda it, error: None,
    )
    drop = threading.Event()
    thread = threading.Thread(target=stage.run, args=(drop,), daemon=True)
    thread.start()
    thread.join(0.7)
    assert thread.is_alive(), "waits for room while not dropping"
    drop.set()
    thread.join(3)
    assert not thread.is_alive() and outbox.get_nowait() is None


def test_a_stage_loop_that_raises_fails_liveness_and_is_fatal() -> None:
    health = HealthState()
    health.beat()
    fatal: list[BaseException] = []

    def dies(drop: threading.Event) -> None:
        raise KeyError("unexpected")

    def ends(drop: threading.Event) -> None:
        return

    threads = start_stage_threads(
        {"sentiment-infer": dies, "sentiment-sink": ends}, threading.Event(), health=health, on_fatal=fatal.append
    )
    for thread in threads:
        thread.join(5)
    assert [type(exc) for exc in fatal] == [KeyError]
    alive, details = health.liveness()
    assert not alive and details["failed_stage"] == "sentiment-infer"


def test_a_stage_loop_that_raises_while_its_work_is_dropped_is_not_fatal() -> None:
    health = HealthState()
    health.beat()
    fatal: list[BaseException] = []
    drop = threading.Event()
    drop.set()

    def dies(drop: threading.Event) -> None:
        raise RuntimeError("producer closed")

    (thread,) = start_stage_threads({"sentiment-sink": dies}, drop, health=health, on_fatal=fatal.append)
    thread.join(5)
    assert fatal == [] and health.liveness()[0]


def test_giving_up_is_fatal_but_not_a_dead_thread() -> None:
    health = HealthState()
    health.beat()
    fatal: list[BaseException] = []

    def down(drop: threading.Event) -> None:
        raise InferenceDown("gave up")

    (thread,) = start_stage_threads({"sentiment-infer": down}, threading.Event(), health=health, on_fatal=fatal.append)
    thread.join(5)
    assert [type(exc) for exc in fatal] == [InferenceDown] and health.liveness()[0]


def test_policy_backoff_doubles_up_to_the_cap_and_settings_are_validated() -> None:
    policy = BreakerPolicy(failures_to_open=2, rebuild_attempts=10, backoff_s=1.0)
    assert [policy.pause(a) for a in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert policy.pause(10) == 60.0
    with pytest.raises(ValueError):
        BreakerPolicy(failures_to_open=0)
    settings = load_settings(bootstrap_servers="h:1")
    assert (
        settings.inference_failures_to_open,
        settings.inference_rebuild_attempts,
        settings.inference_rebuild_backoff_s,
    ) == (3, 3, 1.0)
    for bad in (
        {"inference_failures_to_open": 0},
        {"inference_rebuild_attempts": -1},
        {"inference_rebuild_backoff_s": 0},
    ):
        with pytest.raises(SettingsError, match=next(iter(bad))):
            load_settings(bootstrap_servers="h:1", **bad)


class PausableSource:
    def __init__(self) -> None:
        self.paused = False

    def pause_all(self) -> int:
        self.paused = True
        return 2

    def resume_all(self) -> None:
        self.paused = False


def test_the_runner_consumes_nothing_while_the_circuit_is_open() -> None:
    from worker.stream.runner import Runner

    runner = Runner(load_settings(bootstrap_servers="h:1", input_topics="in"), FakeModel())  # type: ignore[arg-type]
    runner.source = source = PausableSource()  # type: ignore[assignment]
    runner._backpressure()
    assert not source.paused
    runner._infer_down.set()  # what the breaker sets while it rebuilds the session
    runner._backpressure()
    assert source.paused
    runner._backpressure()
    assert source.paused, "no resume while the session is down, even with an empty queue"
    runner._infer_down.clear()
    runner._backpressure()
    assert not source.paused
