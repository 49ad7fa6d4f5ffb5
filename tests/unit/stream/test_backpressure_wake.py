"""Under backpressure the poll loop wakes as soon as the inference stage takes a batch (it used to sleep in the
paused consumer's poll() for its whole timeout while the stage sat idle)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from worker.stream.batcher import Batch
from worker.stream.infer import InferQueue
from worker.stream.runner import Runner

pytestmark = pytest.mark.unit


def _batch() -> Batch:
    return Batch(items=[], created=time.monotonic(), flushed_by="size")


def _full_queue_with_backlog() -> InferQueue:
    inbox = InferQueue(max_batches=2)
    inbox.add([_batch(), _batch(), _batch()])
    assert inbox.push() == 1, "two queued, one waiting: backpressure"
    return inbox


def test_wait_for_room_returns_when_the_stage_takes_a_batch() -> None:
    inbox = _full_queue_with_backlog()
    threading.Timer(0.05, inbox.batches.get).start()
    started = time.monotonic()
    assert inbox.wait_for_room(2.0) is True
    assert time.monotonic() - started < 1.0
    assert inbox.wait_for_room(0.0) is True, "room: no wait"
    inbox.batches.put_nowait(_batch())
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
    runner = SimpleNamespace(source=source, inbox=inbox, batcher=SimpleNamespace(time_until_due=lambda: None))
    Runner._poll(runner)  # type: ignore[arg-type]


def test_a_paused_consumer_is_polled_without_waiting_once_the_stage_has_taken_a_batch() -> None:
    inbox = _full_queue_with_backlog()
    threading.Timer(0.05, inbox.batches.get).start()
    source = Source(paused=True)
    started = time.monotonic()
    _poll(source, inbox)
    assert source.timeouts == [0] and time.monotonic() - started < 0.09, "woke on the stage, not after 0.1 s"
    running = Source(paused=False)
    _poll(running, InferQueue(max_batches=2))
    assert running.timeouts == [0.1], "not paused: the usual wait for records"
