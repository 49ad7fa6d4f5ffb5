"""Offset tracking for at-least-once delivery.

Every polled offset is tracked per partition, in poll order. An offset is *done* once its output record
(or its dead-letter record) is acknowledged by the broker. The committable offset of a partition is the
first offset that is not done (or last tracked + 1 when all are done): a commit never passes a record that
is still in flight, whatever order the acknowledgements arrive in.

Commits are tracked too. An asynchronous commit is *in flight* from :meth:`OffsetTracker.commit_sent` until its
answer; only a success (:meth:`OffsetTracker.commit_acknowledged`, or :meth:`OffsetTracker.mark_committed` after a
synchronous commit) moves a partition's *committed* offset, and it never moves back. :meth:`committable` (for the
periodic commit) leaves out what is committed or in flight; :meth:`uncommitted` (for the revoke and final commits)
leaves out only what the broker acknowledged, so a commit that is in flight, or failed and not yet reported, is
covered again. The answer of an old commit (of an earlier ownership of the partition, or overtaken by a newer
one) changes nothing it should not.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from worker.observability import get_logger
from worker.stream.common.types import SourceRecord

log = get_logger(__name__)

TP = tuple[str, int]  # kafka-python's TopicPartition is a (topic, partition) namedtuple


@dataclass(slots=True)
class _PartitionState:
    pending: deque[int] = field(default_factory=deque)  # tracked, not yet contiguous-done, in order
    done: set[int] = field(default_factory=set)  # done but behind an unfinished offset
    next_commit: int | None = None  # offset to commit (next record to read)
    committed: int | None = None  # highest offset whose commit the broker acknowledged
    in_flight: dict[int, int] = field(default_factory=dict)  # async commit id -> offset, not answered yet


class OffsetTracker:
    def __init__(self) -> None:
        self._parts: dict[TP, _PartitionState] = {}
        self._cond = threading.Condition()
        self._commit_ids = itertools.count(1)

    # -- ownership (rebalance) --------------------------------------------------------------------
    def assign(self, tps: Iterable[TP]) -> None:
        with self._cond:
            for tp in tps:
                self._parts.setdefault(_key(tp), _PartitionState())

    def remove(self, tps: Iterable[TP]) -> None:
        """Forget partitions (revoked or lost). Late acks for them are ignored."""
        with self._cond:
            for tp in tps:
                self._parts.pop(_key(tp), None)
            self._cond.notify_all()

    def owned(self, tp: TP) -> bool:
        with self._cond:
            return _key(tp) in self._parts

    def partitions(self) -> list[TP]:
        with self._cond:
            return list(self._parts)

    # -- data path ---------------------------------------------------------------------------------
    def track(self, tp: TP, offsets: Iterable[int]) -> bool:
        """Register polled offsets (increasing). False (nothing tracked) if the partition isn't owned."""
        with self._cond:
            state = self._parts.get(_key(tp))
            if state is None:
                return False
            for offset in offsets:
                if state.pending and offset <= state.pending[-1]:
                    raise ValueError(f"offset {offset} of {tp} tracked out of order")
                state.pending.append(offset)
            return True

    def track_polled(self, records: Sequence[SourceRecord]) -> list[SourceRecord]:
        """Track a poll's records (in partition order); those of partitions still owned. A partition revoked
        mid-poll is neither tracked nor committed: the next owner reads it."""
        accepted: list[SourceRecord] = []
        for tp, group in itertools.groupby(records, key=lambda r: (r.topic, r.partition)):
            part = list(group)
            if self.track(tp, [r.offset for r in part]):
                accepted.extend(part)
            else:
                log.debug("records_dropped_unowned", topic=tp[0], partition=tp[1], count=len(part))
        return accepted

    def ack(self, tp: TP, offset: int) -> None:
        with self._cond:
            state = self._parts.get(_key(tp))
            if state is None:
                return
            pending = state.pending
            if pending and pending[0] == offset:
                pending.popleft()
                state.next_commit = offset + 1
                done = state.done
                while pending and pending[0] in done:
                    head = pending.popleft()
                    done.discard(head)
                    state.next_commit = head + 1
                if not pending:
                    self._cond.notify_all()
            else:
                state.done.add(offset)

    # -- commit ------------------------------------------------------------------------------------
    def committable(self, tps: Iterable[TP] | None = None) -> dict[TP, int]:
        """Offsets to commit periodically: advanced past what is committed and not already in flight."""
        with self._cond:
            return {
                key: state.next_commit
                for key, state in self._states(tps)
                if state.next_commit != state.committed and state.next_commit not in state.in_flight.values()
            }

    def uncommitted(self, tps: Iterable[TP] | None = None) -> dict[TP, int]:
        """Offsets to commit on revoke and at shutdown: advanced past what the broker acknowledged, in flight or
        not (an async commit's answer may never be seen in time: it may fail or arrive after the revoke)."""
        with self._cond:
            return {key: state.next_commit for key, state in self._states(tps) if state.next_commit != state.committed}

    def commit_sent(self, offsets: dict[TP, int]) -> int:
        """An async commit of ``offsets`` was sent; the id to report its answer with."""
        commit_id = next(self._commit_ids)
        with self._cond:
            for tp, offset in offsets.items():
                state = self._parts.get(_key(tp))
                if state is not None:
                    state.in_flight[commit_id] = offset
        return commit_id

    def commit_acknowledged(self, commit_id: int) -> dict[TP, int]:
        """The broker acknowledged async commit ``commit_id``; the offsets that moved a partition's committed
        offset (none for a partition revoked meanwhile, or already committed further)."""
        with self._cond:
            return self._advance(
                {
                    key: state.in_flight.pop(commit_id)
                    for key, state in self._parts.items()
                    if commit_id in state.in_flight
                }
            )

    def commit_failed(self, commit_id: int) -> None:
        """Async commit ``commit_id`` failed: what it carried is committable again (nothing else changes)."""
        with self._cond:
            for state in self._parts.values():
                state.in_flight.pop(commit_id, None)

    def mark_committed(self, offsets: dict[TP, int]) -> dict[TP, int]:
        """The broker acknowledged a (synchronous) commit of ``offsets``; the offsets that moved anything."""
        with self._cond:
            return self._advance({_key(tp): offset for tp, offset in offsets.items() if _key(tp) in self._parts})

    def _advance(self, offsets: dict[TP, int]) -> dict[TP, int]:
        moved = {}
        for key, offset in offsets.items():
            state = self._parts[key]
            if state.committed is None or offset > state.committed:
                state.committed = moved[key] = offset
        return moved

    def _states(self, tps: Iterable[TP] | None) -> list[tuple[TP, _PartitionState]]:
        keys = list(self._parts) if tps is None else [_key(tp) for tp in tps]
        return [
            (key, state)
            for key in keys
            if (state := self._parts.get(key)) is not None and state.next_commit is not None
        ]

    def rewind(self) -> dict[TP, int]:
        """Forget all unfinished work; return, per partition that had some, the offset to read again from.

        That is the first offset not done. Offsets acknowledged out of order behind it are forgotten too (they
        will be done again: duplicates, never a gap). What is committable stays committable.
        """
        with self._cond:
            resume: dict[TP, int] = {}
            for tp, state in self._parts.items():
                if state.pending:
                    resume[tp] = state.pending[0]
                    state.pending.clear()
                    state.done.clear()
            self._cond.notify_all()
            return resume

    def untrack_from(self, tp: TP, offset: int) -> None:
        """Forget ``tp``'s tracked offsets from ``offset`` on (none of them done): they will be polled again."""
        with self._cond:
            state = self._parts.get(_key(tp))
            while state is not None and state.pending and state.pending[-1] >= offset:
                state.done.discard(state.pending.pop())
            self._cond.notify_all()

    def pending_count(self, tps: Iterable[TP] | None = None) -> int:
        with self._cond:
            keys = self._parts if tps is None else [_key(tp) for tp in tps]
            return sum(len(self._parts[k].pending) for k in keys if k in self._parts)

    def wait_drained(self, tps: Iterable[TP] | None = None, timeout: float | None = None) -> bool:
        """Block until nothing is pending for ``tps`` (all partitions by default). False on timeout."""
        tps = None if tps is None else list(tps)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.pending_count(tps) > 0:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining if remaining is None else min(remaining, 0.5))
            return True


def _key(tp: TP) -> TP:
    return (tp[0], tp[1])
