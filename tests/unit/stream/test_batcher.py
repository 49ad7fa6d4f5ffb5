import pytest

from worker.stream.batcher import Batcher

from .helpers import item

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_size_flush_keeps_order() -> None:
    b = Batcher(max_size=3, max_wait_s=10, clock=Clock())
    ready = b.add(item(i) for i in range(7))
    assert [len(x) for x in ready] == [3, 3]
    assert [it.record.offset for x in ready for it in x.items] == list(range(6))
    assert all(x.flushed_by == "size" for x in ready)
    assert len(b) == 1
    rest = b.flush()
    assert rest is not None and [it.record.offset for it in rest.items] == [6]
    assert b.flush() is None


def test_time_flush_after_max_wait() -> None:
    clock = Clock()
    b = Batcher(max_size=100, max_wait_s=0.02, clock=clock)
    assert b.time_until_due() is None
    b.add([item(0)])
    clock.t += 0.01
    assert b.poll_due() is None
    assert b.time_until_due() == pytest.approx(0.01)
    b.add([item(1)])  # wait counts from the first item, not the last
    clock.t += 0.011
    batch = b.poll_due()
    assert batch is not None and len(batch) == 2 and batch.flushed_by == "time"
    assert b.poll_due() is None


def test_zero_wait_flushes_on_next_check() -> None:
    b = Batcher(max_size=100, max_wait_s=0, clock=Clock())
    b.add([item(0)])
    assert b.time_until_due() == 0
    assert b.poll_due() is not None


def test_token_budget() -> None:
    b = Batcher(max_size=100, max_wait_s=10, max_tokens=20, clock=Clock())
    ready = b.add([item(0, tokens=8), item(1, tokens=8), item(2, tokens=8), item(3, tokens=30), item(4, tokens=1)])
    # 8+8 fits, +8 would exceed 20 → flush; 8 then 30 exceeds → flush [8]; 30 alone ≥ budget → flush
    assert [[it.record.offset for it in x.items] for x in ready] == [[0, 1], [2], [3]]
    assert [x.tokens for x in ready] == [16, 8, 30]
    assert all(x.flushed_by == "tokens" for x in ready)
    assert len(b) == 1


def test_rejects_bad_size() -> None:
    with pytest.raises(ValueError):
        Batcher(max_size=0, max_wait_s=1)
