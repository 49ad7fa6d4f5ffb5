"""The inference queue: the one owner of batching, for stream records and HTTP inputs alike.

Records wait here in arrival order: the stream's (the poll loop, :meth:`InferQueue.put`) and HTTP inputs
(``worker/serve/lane.py``, :meth:`InferQueue.submit`). The inference stage takes the next batch when the model is
ready for one (:meth:`InferQueue.take`, the way text-embeddings-inference's queue works): the longest prefix of what
waits within ``max_batch_size`` records and ``max_batch_tokens`` real tokens (``Item.tokens``; a record over the
budget runs alone). Records queued while the model was busy therefore run as one call, the stream's and HTTP inputs
together; nothing else forms, merges or splits batches (the stage only halves a failing one to find a bad record).

When the model is idle and fewer than ``max_batch_size`` records wait, the batch runs at once when

- its oldest record waited ``max_wait_ms`` (``time``), an HTTP input waits (``direct``: a client is blocked on it),
  or the queue drains (``drain``: a revoke, a shutdown);
- or waiting can't pay (``pace``, :class:`~worker.stream.pacing.Pacer`): the model, at this batch size, keeps up
  with the arrival rate the queue measures, no record is expected before ``max_wait_ms`` is up, or the batch
  expected by then would cost the model about as much per record. It learns the model's time per batch size from
  the stage (:meth:`InferQueue.observe`).

Otherwise it waits for company, at most until the oldest record's ``max_wait_ms``. At saturation the model finds a
full batch waiting whenever it is ready, so this only decides at moderate load, where waiting costs latency.

Backpressure and memory: past ``capacity`` records waiting (stream and HTTP) the queue is :meth:`full` and the poll
loop pauses the consumer; :meth:`wait_for_room` wakes it as soon as the stage takes a batch. A poll's records are
always taken in, so at most ``capacity`` + ``max_poll_records`` stream records wait. HTTP inputs are admitted past the
bound (the lane bounds them itself). Order: a batch is a prefix of the queue, so each partition's records reach the
model in their order.

Thread-safe (one lock, two conditions): the poll loop puts, a rebalance drain (the consumer's IO thread) flushes,
request handlers submit, the inference thread takes.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from worker.stream.common.types import Item
from worker.stream.pacing import Pacer

DROPPED = "dropped: the pipeline is stopping or restarting"


class BatchingSection(Protocol):
    """What the queue reads of the settings' batching section (resolved: sizes are numbers)."""

    @property
    def batch_size(self) -> int: ...

    @property
    def max_wait_s(self) -> float: ...

    @property
    def max_batch_tokens(self) -> int | None: ...

    @property
    def queue_max_batches(self) -> int: ...


@dataclass(slots=True)
class Batch:
    """What the stage runs in one model call (split only to isolate a failing record)."""

    items: list[Item]
    created: float  # monotonic time the oldest item arrived in the queue
    tokens: int = 0  # real tokens (sum of item lengths)
    seq: int = 0  # batch sequence number, for logs
    flushed_by: str = ""  # why it ran: size | tokens | time | pace | direct | drain | wake

    def __len__(self) -> int:
        return len(self.items)


class InferQueue:
    """Records waiting for the model; the inference stage takes them as batches (see the module's doc)."""

    def __init__(
        self,
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_batch_tokens: int | None = None,
        capacity: int | None = None,
        pacer: Pacer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_batch_size <= 0:
            raise ValueError("max_batch_size must be positive")
        if capacity is not None and capacity <= 0:
            raise ValueError("capacity must be positive")
        self.max_batch_size = max_batch_size
        self.max_wait_s = max(0.0, max_wait_s)
        self.max_batch_tokens = max_batch_tokens
        self.capacity = capacity if capacity is not None else 4 * max_batch_size
        self.pacer = pacer if pacer is not None else Pacer()
        self._clock = clock
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)  # the stage waits for a batch
        self._room = threading.Condition(self._lock)  # the poll loop waits for room (backpressure)
        self._waiting: deque[tuple[Item, float]] = deque()  # (item, monotonic arrival), in arrival order
        self._direct = 0  # HTTP inputs waiting
        self._flush_left = 0  # this many at the head are due at once (a drain)
        self._wake = False
        self._ending = False
        self._seq = 0

    @classmethod
    def from_batching(cls, batching: BatchingSection) -> InferQueue:
        """The queue a (resolved) batching section describes: its budgets, ``max_wait_ms``, and room for
        ``queue_max_batches`` full batches."""
        return cls(
            max_batch_size=batching.batch_size,
            max_wait_s=batching.max_wait_s,
            max_batch_tokens=batching.max_batch_tokens,
            capacity=batching.queue_max_batches * batching.batch_size,
        )

    # ---- in -------------------------------------------------------------------------------------------------
    def put(self, items: Sequence[Item]) -> None:
        """The stream's records, in order (always taken in: :meth:`full` is the signal to pause the consumer)."""
        if items:
            with self._lock:
                self._append(items)

    def submit(self, items: Sequence[Item]) -> bool:
        """Directly requested items (HTTP inputs with a ``reply``), past the bound (their own admission bounds
        them); they run at the model's next call, with whatever waits. False when the stage is ending."""
        with self._lock:
            if self._ending:
                return False
            if items:
                self._direct += len(items)
                self._append(items)
        return True

    def _append(self, items: Sequence[Item]) -> None:
        now = self._clock()
        self._waiting.extend((item, now) for item in items)
        self.pacer.arrived(len(items), now)
        self._ready.notify()

    def observe(self, size: int, seconds: float) -> None:
        """The stage's model call on ``size`` records took ``seconds`` (the pacing learns from it)."""
        with self._lock:
            self.pacer.observe(size, seconds)

    # ---- out (the inference stage) -----------------------------------------------------------------------------
    def take(self) -> Batch | None:
        """The next batch, when it is due (see the module's doc); an empty batch after :meth:`wake`; None when the
        queue ended and nothing waits. Blocks until then."""
        with self._lock:
            while True:
                if self._waiting:
                    now = self._clock()
                    reason, wait_s = self._due(now)
                    if reason:
                        return self._cut(reason)
                    self._ready.wait(wait_s)
                elif self._wake:
                    self._wake = False
                    self._seq += 1
                    return Batch(items=[], created=self._clock(), seq=self._seq, flushed_by="wake")
                elif self._ending:
                    return None
                else:
                    self._ready.wait()

    def _due(self, now: float) -> tuple[str, float]:
        """Why the head batch runs now ("" if it should wait) and, if it waits, for how long at most."""
        size, tokens, more = self._head()
        if size >= self.max_batch_size:
            return "size", 0.0
        budget = self.max_batch_tokens
        if budget is not None and (tokens >= budget or (more is not None and tokens + more > budget)):
            return "tokens", 0.0
        if self._flush_left:
            return "drain", 0.0
        if self._direct:
            return "direct", 0.0
        left = self._waiting[0][1] + self.max_wait_s - now
        if left <= 0:
            return "time", 0.0
        if self.pacer.run_now(size, left, now, self.max_batch_size):
            return "pace", 0.0
        return "", left

    def _head(self) -> tuple[int, int, int | None]:
        """Records and tokens of the batch the head of the queue forms now, and the tokens of the next record."""
        size = tokens = 0
        budget = self.max_batch_tokens
        for item, _ in self._waiting:
            if size >= self.max_batch_size:
                return size, tokens, None
            if budget is not None and size and tokens + item.tokens > budget:
                return size, tokens, item.tokens
            size += 1
            tokens += item.tokens
        return size, tokens, None

    def _cut(self, reason: str) -> Batch:
        size, tokens, _ = self._head()
        created = self._waiting[0][1]
        items = [self._waiting.popleft()[0] for _ in range(size)]
        self._direct -= sum(1 for item in items if item.reply is not None)
        self._flush_left = max(0, self._flush_left - size)
        self._wake = False  # this batch is the boundary a wake asked for
        self._seq += 1
        self._room.notify_all()
        return Batch(items=items, created=created, tokens=tokens, seq=self._seq, flushed_by=reason)

    # ---- control ------------------------------------------------------------------------------------------------
    def flush(self) -> None:
        """What waits now is due at once (a revoke or a shutdown drains the queue)."""
        with self._lock:
            self._flush_left = len(self._waiting)
            self._ready.notify()

    def wake(self) -> None:
        """An idle stage reaches a batch boundary now (a model swap waits for one): it takes an empty batch.
        Nothing when the stage is ending."""
        with self._lock:
            if not self._ending:
                self._wake = True
                self._ready.notify()

    def end(self) -> None:
        """The stage ends once what waits has run (at once, no waiting for company); HTTP inputs are refused."""
        with self._lock:
            self._ending = True
            self._flush_left = len(self._waiting)
            self._ready.notify_all()

    def drop_and_end(self, error: str = DROPPED) -> int:
        """Drop everything waiting (an HTTP input's request fails with ``error``); the stage ends after its current
        batch. How many records were dropped."""
        with self._lock:
            dropped = [item for item, _ in self._waiting]
            self._waiting.clear()
            self._direct = self._flush_left = 0
            self._wake = False
            self._ending = True
            self._ready.notify_all()
            self._room.notify_all()
        for item in dropped:
            if item.reply is not None:
                item.reply.fail(error)
        return len(dropped)

    def reopen(self) -> None:
        """Take batches and HTTP inputs again after :meth:`end` or :meth:`drop_and_end` (a new pipeline generation;
        the previous stage thread has ended)."""
        with self._lock:
            self._ending = False

    # ---- backpressure, diagnostics -----------------------------------------------------------------------------
    def full(self) -> bool:
        """At least ``capacity`` records wait: the consumer should pause."""
        with self._lock:
            return len(self._waiting) >= self.capacity

    def wait_for_room(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds until the queue is not full (the stage took a batch); whether it is not."""
        with self._lock:
            if len(self._waiting) >= self.capacity and not self._ending:
                self._room.wait(timeout)
            return len(self._waiting) < self.capacity

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting)

    def depth(self) -> int:
        """Batches waiting for the model (full ones, rounded up)."""
        return math.ceil(len(self) / self.max_batch_size)

    def items_held(self) -> dict[str, int]:
        """Records waiting: within ``capacity`` (``infer_queue``) and past it (``ready``: one poll's worth at most,
        while the consumer is paused)."""
        n = len(self)
        return {"infer_queue": min(n, self.capacity), "ready": max(0, n - self.capacity)}
