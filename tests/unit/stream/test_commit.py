"""Commit scheduling (no broker: a fake commit target, a fake clock): periodic, on revoke, final; the deadline."""

from __future__ import annotations

from typing import Any

import pytest
import structlog

from worker.metrics import WorkerMetrics
from worker.stream.commit import Committer
from worker.stream.common.timing import Deadline, RestartBackoff
from worker.stream.offsets import OffsetTracker

pytestmark = pytest.mark.unit

TP0, TP1 = ("in", 0), ("in", 1)


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Target:
    """Records commits; async commits complete when the test says so."""

    def __init__(self) -> None:
        self.async_commits: list[tuple[dict[Any, int], Any]] = []
        self.sync_commits: list[tuple[dict[Any, int], float]] = []
        self.fail_sync = False
        self.before_sync: list[Any] = []  # run inside commit_sync, as kafka-python runs answered async callbacks

    def commit_async(self, offsets: dict[Any, int], callback: Any = None) -> None:
        self.async_commits.append((dict(offsets), callback))

    def commit_sync(self, offsets: dict[Any, int], timeout_s: float = 10.0) -> None:
        for hook in self.before_sync:
            hook()
        if self.fail_sync:
            raise TimeoutError("commit timed out")
        self.sync_commits.append((dict(offsets), timeout_s))


def _committer(clock: Clock, metrics: WorkerMetrics | None = None) -> tuple[Committer, OffsetTracker]:
    tracker = OffsetTracker()
    tracker.assign([TP0, TP1])
    committer = Committer(tracker, metrics or WorkerMetrics(), interval_s=1.0, log_interval_s=10.0, clock=clock)
    return committer, tracker


def _done(tracker: OffsetTracker, tp: tuple[str, int], offsets: list[int]) -> None:
    tracker.track(tp, offsets)
    for offset in offsets:
        tracker.ack(tp, offset)


# ---- deadline, restart pause --------------------------------------------------------------------
def test_a_deadline_counts_down_and_gives_minimums_past_its_end() -> None:
    clock = Clock()
    deadline = Deadline(5.0, clock=clock)
    assert deadline.remaining() == 5.0 and not deadline.expired()
    clock.now += 4.0
    assert deadline.remaining() == 1.0 and deadline.remaining(at_least=2.0) == 2.0
    clock.now += 1.0
    assert deadline.expired() and deadline.remaining() == 0.0 and deadline.remaining(at_least=0.1) == 0.1


def test_restart_pause_doubles_while_restarts_keep_coming_and_starts_over_after_two_quiet_minutes() -> None:
    backoff = RestartBackoff()
    assert [backoff.next_pause(t) for t in (1000.0, 1001.0, 1003.0, 1007.0, 1015.0, 1031.0, 1062.0)] == [
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        30.0,
        30.0,
    ]
    assert backoff.next_pause(1062.0 + 121.0) == 1.0


# ---- periodic -----------------------------------------------------------------------------------
def test_periodic_commit_runs_once_per_interval_and_only_for_what_advanced() -> None:
    clock, target = Clock(), Target()
    committer, tracker = _committer(clock)
    _done(tracker, TP0, [0, 1, 2])
    committer.tick(target)
    assert target.async_commits == [], "not before the interval"
    clock.now += 1.0
    committer.tick(target)
    committer.tick(target)
    assert [offsets for offsets, _ in target.async_commits] == [{TP0: 3}]
    clock.now += 1.0
    committer.tick(target)
    assert len(target.async_commits) == 1, "nothing advanced: nothing to commit"


def test_a_skipped_turn_commits_nothing_and_the_next_interval_does() -> None:
    clock, target = Clock(), Target()
    committer, tracker = _committer(clock)
    _done(tracker, TP0, [0])
    clock.now += 1.0
    committer.tick(target, skip=True)  # e.g. the broker is unreachable
    assert target.async_commits == []
    clock.now += 1.0
    committer.tick(target)
    assert [offsets for offsets, _ in target.async_commits] == [{TP0: 1}]


def test_a_failed_async_commit_is_retried_and_logged_once_per_log_interval() -> None:
    clock, target = Clock(), Target()
    metrics = WorkerMetrics()
    committer, tracker = _committer(clock, metrics)
    _done(tracker, TP0, [0, 1])
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            clock.now += 1.0
            committer.tick(target)
            _offsets, callback = target.async_commits[-1]
            callback(_offsets, RuntimeError("coordinator not available"))
        assert len(target.async_commits) == 3, "retried at every interval"
        clock.now += 10.0
        committer.tick(target)
        offsets, callback = target.async_commits[-1]
        callback(offsets, None)
    events = [entry["event"] for entry in logs]
    assert events.count("commit_failed") == 1, events
    assert events.count("commit_recovered") == 1
    assert metrics.registry.get_sample_value("sentiment_commits_total") == 1
    assert metrics.registry.get_sample_value("sentiment_committed_offset", {"topic": "in", "partition": "0"}) == 2


def test_an_async_commit_is_not_sent_again_while_in_flight_and_is_sent_again_after_failing() -> None:
    clock, target = Clock(), Target()
    committer, tracker = _committer(clock)
    _done(tracker, TP0, [0])
    clock.now += 1.0
    committer.tick(target)
    clock.now += 1.0
    committer.tick(target)
    assert len(target.async_commits) == 1, "the same offset is in flight: not sent twice"
    offsets, callback = target.async_commits[0]
    callback(offsets, RuntimeError("rebalance in progress"))
    clock.now += 1.0
    committer.tick(target)
    assert [o for o, _ in target.async_commits] == [{TP0: 1}, {TP0: 1}]


def test_a_late_answer_of_an_older_async_commit_changes_nothing() -> None:
    clock, target = Clock(), Target()
    metrics = WorkerMetrics()
    committer, tracker = _committer(clock, metrics)
    _done(tracker, TP0, [0])
    clock.now += 1.0
    committer.tick(target)  # A: offset 1
    _done(tracker, TP0, [1])
    clock.now += 1.0
    committer.tick(target)  # B: offset 2, while A is still in flight
    (offsets_a, callback_a), (offsets_b, callback_b) = target.async_commits
    assert (offsets_a, offsets_b) == ({TP0: 1}, {TP0: 2})
    callback_b(offsets_b, None)
    callback_a(offsets_a, None)  # late success of the older one
    gauge = {"topic": "in", "partition": "0"}
    assert metrics.registry.get_sample_value("sentiment_committed_offset", gauge) == 2, "regressed to 1"
    callback_a(offsets_a, RuntimeError("late failure"))  # or a late failure
    assert tracker.committable() == {} and tracker.uncommitted() == {}
    clock.now += 1.0
    committer.tick(target)
    assert len(target.async_commits) == 2, "offset 2 is committed: nothing to send again"
    assert metrics.registry.get_sample_value("sentiment_commits_total") == 1


def test_an_answer_for_an_earlier_ownership_of_the_partition_is_ignored() -> None:
    clock, target = Clock(), Target()
    metrics = WorkerMetrics()
    committer, tracker = _committer(clock, metrics)
    _done(tracker, TP0, [0, 1])
    clock.now += 1.0
    committer.tick(target)
    tracker.remove([TP0])  # revoked (or lost) ...
    tracker.assign([TP0])  # ... and assigned again before the answer came
    _done(tracker, TP0, [40])
    offsets, callback = target.async_commits[0]
    callback(offsets, None)
    assert tracker.uncommitted() == {TP0: 41} and tracker.committable() == {TP0: 41}
    assert metrics.registry.get_sample_value("sentiment_committed_offset", {"topic": "in", "partition": "0"}) is None


# ---- on revoke ----------------------------------------------------------------------------------
def test_revoke_commits_again_what_a_periodic_commit_still_has_in_flight() -> None:
    """kafka-python answers an async commit on the poll thread, later: during the revoke it is unanswered, and a
    commit sent as the group starts rebalancing typically fails. The revoke commit must cover it."""
    clock, target = Clock(), Target()
    committer, tracker = _committer(clock)
    _done(tracker, TP0, [0, 1, 2])
    _done(tracker, TP1, [7])
    clock.now += 1.0
    committer.tick(target)
    assert [o for o, _ in target.async_commits] == [{TP0: 3, TP1: 8}]
    done = committer.drain_then_commit(
        [TP0, TP1], drain=lambda: None, deadline=Deadline(5.0, clock=clock), give_up=lambda: False
    )
    assert done() == {TP0: 3, TP1: 8}, "the revoke skipped offsets whose commit was only sent"
    committer.committed_on_revoke({TP0: 3, TP1: 8})
    offsets, callback = target.async_commits[0]
    callback(offsets, RuntimeError("rebalance in progress"))  # the answer, after the revoke
    assert tracker.uncommitted() == {}


def test_revoke_after_an_acknowledged_periodic_commit_has_nothing_to_commit() -> None:
    clock, target = Clock(), Target()
    committer, tracker = _committer(clock)
    _done(tracker, TP0, [0, 1])
    clock.now += 1.0
    committer.tick(target)
    offsets, callback = target.async_commits[0]
    callback(offsets, None)
    done = committer.drain_then_commit(
        [TP0], drain=lambda: None, deadline=Deadline(5.0, clock=clock), give_up=lambda: False
    )
    assert done() == {}


def test_revoke_waits_for_the_in_flight_records_then_commits_them() -> None:
    clock = Clock()
    committer, tracker = _committer(clock)
    tracker.track(TP0, [0, 1])
    drains: list[int] = []
    done = committer.drain_then_commit(
        [TP0], drain=lambda: drains.append(1), deadline=Deadline(5.0, clock=clock), give_up=lambda: False
    )
    assert done() is None
    tracker.ack(TP0, 0)
    assert done() is None
    tracker.ack(TP0, 1)
    assert done() == {TP0: 2}
    assert len(drains) == 3, "the pipeline is pushed on at every check"


def test_revoke_commits_what_was_acknowledged_at_the_deadline_or_when_giving_up() -> None:
    clock = Clock()
    committer, tracker = _committer(clock)
    tracker.track(TP0, [0, 1, 2])
    tracker.ack(TP0, 0)
    tracker.track(TP1, [7])
    done = committer.drain_then_commit(
        [TP0, TP1], drain=lambda: None, deadline=Deadline(5.0, clock=clock), give_up=lambda: False
    )
    assert done() is None
    clock.now += 5.0
    assert done() == {TP0: 1}
    forced = committer.drain_then_commit(
        [TP1], drain=lambda: None, deadline=Deadline(5.0, clock=clock), give_up=lambda: True
    )
    assert forced() == {}


# ---- final --------------------------------------------------------------------------------------
def test_final_commit_commits_everything_acknowledged_synchronously() -> None:
    clock, target = Clock(), Target()
    metrics = WorkerMetrics()
    committer, tracker = _committer(clock, metrics)
    _done(tracker, TP0, [0, 1])
    _done(tracker, TP1, [4])
    offsets, ok = committer.commit_final(target, timeout_s=2.0)
    assert ok and offsets == {TP0: 2, TP1: 5}
    assert target.sync_commits == [({TP0: 2, TP1: 5}, 2.0)]
    assert tracker.committable() == {}, "a later revoke has nothing left to commit"
    assert metrics.registry.get_sample_value("sentiment_commits_total") == 1


def test_a_failed_final_commit_says_so_and_leaves_the_offsets_committable() -> None:
    clock, target = Clock(), Target()
    committer, tracker = _committer(clock)
    _done(tracker, TP0, [0])
    target.fail_sync = True
    offsets, ok = committer.commit_final(target, timeout_s=2.0)
    assert not ok and offsets == {TP0: 1}
    assert tracker.committable() == {TP0: 1}


def test_final_commit_covers_a_periodic_commit_in_flight_or_failed_meanwhile() -> None:
    """A periodic commit sent just before the stop: its failure is reported only inside the final commit_sync
    (kafka-python runs answered callbacks there), after the offsets to commit were chosen."""
    clock, target = Clock(), Target()
    metrics = WorkerMetrics()
    committer, tracker = _committer(clock, metrics)
    _done(tracker, TP0, [0, 1])
    _done(tracker, TP1, [4])
    clock.now += 1.0
    committer.tick(target)
    offsets_sent, callback = target.async_commits[0]
    target.before_sync.append(lambda: callback(offsets_sent, RuntimeError("rebalance in progress")))
    offsets, ok = committer.commit_final(target, timeout_s=2.0)
    assert ok and offsets == {TP0: 2, TP1: 5}
    assert target.sync_commits == [({TP0: 2, TP1: 5}, 2.0)], "the final commit skipped the in-flight offsets"
    assert tracker.uncommitted() == {} and tracker.committable() == {}
