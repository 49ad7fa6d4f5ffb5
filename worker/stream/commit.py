"""Commit stage: when acknowledged offsets (see ``offsets.py``) are committed.

- periodically, every ``commit_interval_ms``: ``commit_async``; a failed commit is retried at the next interval
  and logged at most once per ``log_interval_s`` (an outage would otherwise log every interval);
- for revoked partitions: drain them (their in-flight records get acknowledged), then commit, before the
  consumer rejoins; the source's rebalance listener polls the function :meth:`Committer.drain_then_commit` returns;
- at shutdown: ``commit_sync`` of everything acknowledged.

An async commit counts only once the broker acknowledged it. kafka-python reports its answer on the poll loop's
thread, at a later ``poll()`` or commit: a commit sent just before a rebalance or a stop is typically still
unanswered when the revoke or final commit runs, and it may then fail (the group is rebalancing). So those two
commit everything whose commit was not acknowledged, in flight or not (``OffsetTracker.uncommitted``); committing
an offset twice is harmless, leaving it uncommitted makes the next owner redo the records.

A shutdown has one :class:`~worker.stream.common.timing.Deadline`, shared by its steps (drain, stopping the
stages, flushing, the final commit, and a revoke that the consumer's close triggers).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from worker.observability import get_logger
from worker.stream.common.ports import PipelineMetrics
from worker.stream.common.timing import Deadline
from worker.stream.offsets import TP, OffsetTracker

log = get_logger(__name__)

Clock = Callable[[], float]


class CommitTarget(Protocol):
    """What commits go to (the source's consumer)."""

    def commit_async(self, offsets: dict[Any, int], callback: Callable[[Any, Any], None] | None = None) -> None: ...

    def commit_sync(self, offsets: dict[Any, int], timeout_s: float = 10.0) -> None: ...


class Committer:
    def __init__(
        self,
        tracker: OffsetTracker,
        metrics: PipelineMetrics,
        *,
        interval_s: float,
        log_interval_s: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self.tracker = tracker
        self.metrics = metrics
        self.interval_s = interval_s
        self.log_interval_s = log_interval_s
        self._clock = clock
        self._next = clock() + interval_s
        self._failures = 0
        self._last_failure_log = 0.0

    # ---- periodic ------------------------------------------------------------------------------------
    def tick(self, target: CommitTarget, *, skip: bool = False) -> None:
        """Commit what was acknowledged if ``interval_s`` passed since the last time; ``skip`` lets a turn pass
        (during a broker outage a commit can't land: don't churn)."""
        now = self._clock()
        if now < self._next:
            return
        self._next = now + self.interval_s
        if not skip:
            self.commit_async(target)

    def commit_async(self, target: CommitTarget) -> None:
        offsets = self.tracker.committable()
        if not offsets:
            return
        commit_id = self.tracker.commit_sent(offsets)

        def done(_offsets: Any, response: Any) -> None:
            if isinstance(response, BaseException):
                self.tracker.commit_failed(commit_id)  # committable again: retried at the next interval
                self._failed(response)
            else:
                self._succeeded(self.tracker.commit_acknowledged(commit_id))

        try:
            target.commit_async(offsets, callback=done)
        except BaseException:
            self.tracker.commit_failed(commit_id)  # never sent: not in flight
            raise
        log.debug("commit", offsets={f"{t}:{p}": o for (t, p), o in offsets.items()})

    def _failed(self, error: BaseException) -> None:
        self._failures += 1
        now = self._clock()
        if now - self._last_failure_log >= self.log_interval_s:
            self._last_failure_log = now
            log.warning("commit_failed", error=repr(error), failures=self._failures)

    def _succeeded(self, moved: dict[TP, int]) -> None:
        """A commit was acknowledged; ``moved``: the offsets it advanced (a late answer may advance nothing)."""
        if self._failures:
            log.info("commit_recovered", failures=self._failures)
            self._failures = 0
            self._last_failure_log = 0.0
        if moved:
            self.metrics.record_commit(moved)

    # ---- on revoke ---------------------------------------------------------------------------------
    def drain_then_commit(
        self,
        partitions: list[Any],
        *,
        drain: Callable[[], None],
        deadline: Deadline,
        give_up: Callable[[], bool],
    ) -> Callable[[], dict[TP, int] | None]:
        """A function to call until it returns the offsets of ``partitions`` to commit: None while records of
        theirs are in flight (``drain`` runs at each call), the deadline isn't reached and ``give_up()`` is false.
        The offsets: all not acknowledged as committed, including those a periodic commit still has in flight."""
        keys = [(tp[0], tp[1]) for tp in partitions]
        started = self._clock()

        def done() -> dict[TP, int] | None:
            drain()
            pending = self.tracker.pending_count(keys)
            if pending and not deadline.expired() and not give_up():
                return None
            if pending:
                log.warning("revoke_drain_incomplete", pending=pending)
            log.info("revoke_drained", seconds=round(self._clock() - started, 3))
            return self.tracker.uncommitted(keys)

        return done

    def committed_on_revoke(self, offsets: dict[TP, int]) -> None:
        """The rebalance listener committed ``offsets`` of revoked partitions."""
        self.tracker.mark_committed(offsets)
        if offsets:
            self.metrics.record_commit(offsets)

    # ---- final -------------------------------------------------------------------------------------
    def commit_final(self, target: CommitTarget, timeout_s: float) -> tuple[dict[TP, int], bool]:
        """``commit_sync`` of everything acknowledged and not yet committed (periodic commits in flight included);
        the offsets, and whether the commit succeeded."""
        offsets = self.tracker.uncommitted()
        try:
            target.commit_sync(offsets, timeout_s=timeout_s)
        except Exception as exc:
            log.error("final_commit_failed", error=repr(exc))
            return offsets, False
        if offsets:
            self.tracker.mark_committed(offsets)  # the close() revoke that follows has nothing left to commit
            self.metrics.record_commit(offsets)
        return offsets, True
