"""Under backpressure the poll loop wakes as soon as the inference stage takes a batch from the inference queue (it
used to sleep in the paused consumer's poll() for its whole timeout while the stage sat idle)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from tests.unit.stream.helpers import item
from worker.stream.batcher import InferQueue
from worker.stream.runner import POLL_WAIT_S, Runner

pytestmark = pytest.mark.unit


def _queue() -> InferQueue:
    return InferQueue(max_batch_size=2, max_wait_s=10.0, capacity=4)


def _full_queue_with_backlog() -> InferQueue:
    inbox = _queue()
    inbox.put([item(i) for i in range(5)])
    assert inbox.full() and inbox.items_held()["ready"] == 1, "two batches' worth queued, one record past: backpressure"
    return inbox


def test_wait_for_room_returns_when_the_stage_takes_a_batch() -> None:
    inbox = _full_queue_with_backlog()
    threading.Timer(0.05, inbox.take).start()
    started = time.monotonic()
    assert inbox.wait_for_room(2.0) is True
    assert time.monotonic() - started < 1.0
    assert inbox.wait_for_room(0.0) is True, "room: no wait"
    inbox.put([item(9), item(10)])
    started = time.monotonic()
    assert inbox.wait_for_room(0.1) is False and time.monotonic() - started >= 0.09, "nobody takes one: timeout"


class Source:
    def __init__(self, paused: bool) -> None:
        self.paused = paused
        self.timeouts: list[float] = []

    def poll(self, timeout_s: float) -> list[Any]:
        self.timeouts.append(timeout_s)
        return []


def _poll(source: Source, inbox: InferQueue) -> None:
    runner = SimpleNamespace(source=source, inbox=inbox)
    Runner._poll(runner)  # type: ignore[arg-type]


def test_a_paused_consumer_is_polled_without_waiting_once_the_stage_has_taken_a_batch() -> None:
    inbox = _full_queue_with_backlog()
    threading.Timer(0.05, inbox.take).start()
    source = Source(paused=True)
    started = time.monotonic()
    _poll(source, inbox)
    assert source.timeouts == [0] and time.monotonic() - started < 0.09, "woke on the stage, not after 0.1 s"
    running = Source(paused=False)
    _poll(running, _queue())
    assert running.timeouts == [POLL_WAIT_S], "not paused: the usual wait for records"
