import threading

import pytest

from worker.stream.offsets import OffsetTracker

pytestmark = pytest.mark.unit
TP = ("in", 0)


def tracker(*tps: tuple[str, int]) -> OffsetTracker:
    t = OffsetTracker()
    t.assign(tps or [TP])
    return t


def test_out_of_order_acks_commit_only_contiguous() -> None:
    t = tracker()
    t.track(TP, [10, 11, 12, 13, 14])
    assert t.committable() == {}
    t.ack(TP, 12)
    t.ack(TP, 14)
    assert t.committable() == {}  # 10 still in flight
    t.ack(TP, 10)
    assert t.committable() == {TP: 11}
    t.ack(TP, 11)
    assert t.committable() == {TP: 13}
    t.ack(TP, 13)
    assert t.committable() == {TP: 15}
    assert t.pending_count() == 0


def test_gaps_in_offsets_are_fine() -> None:
    t = tracker()
    t.track(TP, [3, 7, 9])  # compacted topic / transaction markers
    t.ack(TP, 7)
    t.ack(TP, 3)
    assert t.committable() == {TP: 8}


def test_mark_committed_only_reports_advances() -> None:
    t = tracker()
    t.track(TP, [0, 1])
    t.ack(TP, 0)
    offsets = t.committable()
    t.mark_committed(offsets)
    assert t.committable() == {}
    t.ack(TP, 1)
    assert t.committable() == {TP: 2}


def test_an_async_commit_counts_only_once_acknowledged() -> None:
    t = tracker()
    t.track(TP, [0, 1, 2])
    t.ack(TP, 0)
    first = t.commit_sent(t.committable())
    assert t.committable() == {}, "in flight: not sent again periodically"
    assert t.uncommitted() == {TP: 1}, "in flight is not committed: revoke and final commits cover it"
    t.commit_failed(first)
    assert t.committable() == {TP: 1}
    second = t.commit_sent(t.committable())
    t.ack(TP, 1)
    third = t.commit_sent(t.committable())  # offset 2, while offset 1 is still in flight
    assert t.commit_acknowledged(third) == {TP: 2}
    assert t.commit_acknowledged(second) == {}, "an older answer moves nothing back"
    t.commit_failed(first)  # a stale failure
    assert t.committable() == {} and t.uncommitted() == {}
    assert t.mark_committed({TP: 2}) == {} and t.mark_committed({TP: 1}) == {}
    t.ack(TP, 2)
    assert t.uncommitted() == {TP: 3} and t.mark_committed({TP: 3}) == {TP: 3}


def test_partitions_are_independent_and_unowned_ignored() -> None:
    a, b = ("in", 0), ("in", 1)
    t = tracker(a, b)
    t.track(a, [0, 1])
    t.track(b, [5])
    t.ack(b, 5)
    assert t.committable() == {b: 6}
    assert t.track(("other", 0), [1]) is False
    t.remove([b])
    t.ack(b, 6)  # late ack after revoke: ignored
    assert t.committable() == {}
    assert t.partitions() == [a]


def test_out_of_order_tracking_rejected() -> None:
    t = tracker()
    t.track(TP, [5])
    with pytest.raises(ValueError):
        t.track(TP, [5])


def test_wait_drained_wakes_on_last_ack() -> None:
    t = tracker()
    t.track(TP, [0, 1, 2])
    assert t.wait_drained(timeout=0.01) is False

    def ack_all() -> None:
        for off in (2, 0, 1):
            t.ack(TP, off)

    threading.Timer(0.05, ack_all).start()
    assert t.wait_drained([TP], timeout=5) is True
    assert t.committable() == {TP: 3}


def test_many_random_orders_never_pass_unacked() -> None:
    import random

    rng = random.Random(7)
    for _ in range(200):
        t = tracker()
        offsets = list(range(50))
        t.track(TP, offsets)
        order = offsets[:]
        rng.shuffle(order)
        acked: set[int] = set()
        for off in order:
            t.ack(TP, off)
            acked.add(off)
            commit = t.committable().get(TP)
            if commit is not None:
                t.mark_committed({TP: commit})
                assert all(o in acked for o in range(commit))  # nothing below the commit is in flight
            expected = next((o for o in offsets if o not in acked), 50)
            assert (commit or t._parts[TP].committed or 0) <= expected
