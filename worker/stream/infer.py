"""Inference stage: batches from the inbox → the model → (items, probabilities) to the outbox.

One short loop on its own thread (ONNX Runtime releases the GIL, so polling and producing overlap with compute):
take a batch, merge what queued up behind it, run the model, hand the result on. The batches that queued up while
the model was busy run as one call, within the batcher's budgets (``max_batch_size`` records and, if set,
``max_batch_tokens`` real tokens, counted as the batcher counts them: ``Item.tokens``): fewer, fuller model calls
when the load nears capacity, so the queue drains instead of growing.

A batch the model fails on is split in halves until the failing record(s) are found; those go to ``on_failed``
(the runner dead-letters them), the rest is processed. A ``None`` in the inbox ends the stage (passed on to the
outbox); when ``drop`` is set, results are no longer handed on.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from worker.observability import get_logger
from worker.stream.batcher import Batch
from worker.stream.stats import RunStats
from worker.stream.timing import Deadline
from worker.stream.types import Item, Scored

log = get_logger(__name__)


class InferenceResult(Protocol):
    @property
    def probs(self) -> np.ndarray: ...

    @property
    def real_tokens(self) -> int: ...

    @property
    def padded_tokens(self) -> int: ...


class Model(Protocol):
    def infer_ids(self, ids: Sequence[Sequence[int]], *, chunk_size: int | None = None) -> InferenceResult: ...


class InferQueue:
    """The inference stage's input: a bounded queue of batches, and the full batches it had no room for yet
    (``ready``). The poll loop adds and pushes; the stage reads :attr:`batches`. A backlog in ``ready`` is the
    signal for backpressure (the runner pauses the consumer)."""

    def __init__(self, max_batches: int) -> None:
        self.batches: queue.Queue[Batch | None] = queue.Queue(maxsize=max_batches)
        self._ready: deque[Batch] = deque()
        self._lock = threading.Lock()  # the poll loop and a rebalance drain (consumer IO thread) add batches

    def add(self, batches: Sequence[Batch]) -> None:
        if batches:
            with self._lock:
                self._ready.extend(batches)

    def push(self) -> int:
        """Move ready batches into the bounded queue while it has room; the number still waiting (the backlog)."""
        with self._lock:
            while self._ready:
                try:
                    self.batches.put_nowait(self._ready[0])
                except queue.Full:
                    break
                self._ready.popleft()
            return len(self._ready)

    def backlog(self) -> int:
        with self._lock:
            return len(self._ready)

    def depth(self) -> int:
        """Batches waiting for the stage: queued and ready."""
        return self.batches.qsize() + self.backlog()

    def items_held(self) -> dict[str, int]:
        with self._lock:
            ready = sum(len(batch) for batch in self._ready)
        return {"ready": ready, "infer_queue": sum(len(b) for b in peek(self.batches) if b is not None)}

    def end(self, deadline: Deadline) -> None:
        """After the queued batches, the stage ends (waits for room until the deadline)."""
        with contextlib.suppress(queue.Full):
            self.batches.put(None, timeout=deadline.remaining(at_least=0.1))

    def drop_and_end(self, deadline: Deadline) -> bool:
        """Drop every waiting batch; the stage ends after its current one. False if it could not be told so
        by the deadline."""
        with self._lock:
            self._ready.clear()
        while True:
            with contextlib.suppress(queue.Empty):
                while True:
                    self.batches.get_nowait()
            try:
                self.batches.put_nowait(None)
                return True
            except queue.Full:  # a batch pushed meanwhile (a rebalance drain): drop it too
                if deadline.expired():
                    return False


class InferStage:
    def __init__(
        self,
        model: Model,
        inbox: queue.Queue[Batch | None],
        outbox: queue.Queue[Scored | None],
        *,
        max_batch_size: int,
        max_batch_tokens: int | None,
        chunk_size: int,
        stats: RunStats,
        on_failed: Callable[[Item, str], None],
    ) -> None:
        self.model = model
        self.inbox = inbox
        self.outbox = outbox
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.chunk_size = chunk_size
        self.stats = stats
        self.on_failed = on_failed

    def run(self, drop: threading.Event) -> None:
        for items, reason in self._merged():
            self._infer(items, reason, drop)
        self.outbox.put(None)

    # ---- collate ---------------------------------------------------------------------------------------
    def _merged(self) -> Iterator[tuple[list[Item], str]]:
        """The inbox's batches, in order, each with what queued up behind it that fits the budgets."""
        carry: Batch | None = None
        while True:
            batch = carry if carry is not None else self.inbox.get()
            carry = None
            if batch is None:
                return
            items, reason = list(batch.items), batch.flushed_by
            tokens = _tokens(items)
            while self._room(len(items), tokens):
                try:
                    queued = self.inbox.get_nowait()
                except queue.Empty:
                    break
                if queued is None:  # the end: this call is the last
                    yield items, reason
                    return
                more = _tokens(queued.items)
                if not self._fits(len(items) + len(queued.items), tokens + more):
                    carry = queued  # the next call starts with it
                    break
                items.extend(queued.items)
                tokens += more
                reason = "merged"
            yield items, reason

    def _fits(self, size: int, tokens: int) -> bool:
        return size <= self.max_batch_size and (self.max_batch_tokens is None or tokens <= self.max_batch_tokens)

    def _room(self, size: int, tokens: int) -> bool:
        return size < self.max_batch_size and (self.max_batch_tokens is None or tokens < self.max_batch_tokens)

    # ---- predict, hand on -----------------------------------------------------------------------------
    def _infer(self, items: list[Item], reason: str, drop: threading.Event) -> None:
        try:
            start = time.perf_counter()
            result = self.model.infer_ids([item.ids for item in items], chunk_size=self.chunk_size)
            elapsed = time.perf_counter() - start
        except Exception as exc:
            log.warning("batch_inference_failed", size=len(items), error=repr(exc))
            self._isolate(items, drop)
            return
        self.stats.count_batch(len(items), result.real_tokens, result.padded_tokens, elapsed)
        log.debug(
            "batch_inferred",
            size=len(items),
            tokens=result.real_tokens,
            padded=result.padded_tokens,
            ms=round(elapsed * 1000, 2),
            reason=reason,
        )
        self._put_out(items, result.probs, drop)

    def _isolate(self, items: list[Item], drop: threading.Event) -> None:
        """A failing batch is split in halves until the bad record(s) are found; the rest is processed."""
        if len(items) == 1:
            try:
                result = self.model.infer_ids([items[0].ids])
            except Exception as exc:
                self.on_failed(items[0], repr(exc))
                return
            self._put_out(items, result.probs, drop)
            return
        mid = len(items) // 2
        for half in (items[:mid], items[mid:]):
            try:
                result = self.model.infer_ids([item.ids for item in half])
            except Exception:
                self._isolate(half, drop)
                continue
            self._put_out(half, result.probs, drop)

    def _put_out(self, items: list[Item], probs: np.ndarray, drop: threading.Event) -> None:
        while not drop.is_set():
            try:
                self.outbox.put((items, probs), timeout=0.5)
                return
            except queue.Full:
                pass


def _tokens(items: Sequence[Item]) -> int:
    return sum(item.tokens for item in items)


def peek(q: queue.Queue[Any]) -> list[Any]:
    """A snapshot of what waits in ``q``."""
    with q.mutex:
        return list(q.queue)
