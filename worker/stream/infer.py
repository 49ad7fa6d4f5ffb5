"""Inference stage: batches from the inbox → the model → (items, probabilities) to the outbox.

One short loop on its own thread (ONNX Runtime releases the GIL, so polling and producing overlap with compute):
take a batch, merge what queued up behind it, run the model, hand the result on. The batches that queued up while
the model was busy run as one call, within the batcher's budgets (``max_batch_size`` records and, if set,
``max_batch_tokens`` real tokens, counted as the batcher counts them: ``Item.tokens``): fewer, fuller model calls
when the load nears capacity, so the queue drains instead of growing.

A batch the model fails on is split in halves until the failing record(s) are found; those go to ``on_failed``
(the runner dead-letters them), the rest is processed. With a :class:`~worker.stream.guard.Breaker`, a record is
blamed only if a known-good probe record runs right after it failed; if the probe fails too, the session is at fault:
the records not yet processed are kept and retried, and the breaker rebuilds the session or gives up
(:class:`~worker.stream.guard.InferenceDown` ends the stage: the worker stops, the kept records stay uncommitted).
A ``None`` in the inbox ends the stage (passed on to the outbox); when ``drop`` is set, results are no longer handed
on.

With a :class:`~worker.stream.swap.ModelSlot` the stage switches to a hot-swapped model between two model calls
(:meth:`ModelSlot.take`): each batch it hands on carries the :class:`~worker.stream.types.Scorer` (labels, model meta)
of the one model that scored all of it, and records tokenised by another tokenizer are tokenised again first.
``on_scored`` (shadow mode, ``worker/rollout/shadow.py``) sees every scored call; it must not block.

HTTP inputs (``worker/serve/lane.py``) come in through :meth:`InferQueue.submit` as items with a ``reply``: they are
merged into the same model calls as the stream's records, answered here (or failed, never dead-lettered) and never
handed to the outbox, so the encoder, the producer and the offsets see only the stream's records, in order.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from worker.observability import get_logger
from worker.stream.batcher import Batch
from worker.stream.guard import Breaker
from worker.stream.ports import InferenceResult, Model
from worker.stream.stats import RunStats
from worker.stream.swap import ModelSlot
from worker.stream.timing import Deadline
from worker.stream.types import Item, Scored, Scorer

log = get_logger(__name__)


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

    def wait_for_room(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds until the bounded queue has room (the stage took a batch)."""
        q = self.batches
        with q.not_full:  # the queue's own condition: get() notifies it
            if len(q.queue) >= q.maxsize > 0:
                q.not_full.wait(timeout)
            return not len(q.queue) >= q.maxsize > 0

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

    def submit(self, batch: Batch, max_size: int, max_tokens: int | None = None) -> bool:
        """Queue a batch of directly requested items (HTTP inputs with a ``reply``) behind what waits, past the
        bound (their own admission bounds them: ``worker/serve/lane.py``). Joined to the last queued batch when that
        one is direct too and both fit ``max_size`` / ``max_tokens``, so requests that arrive while the model is busy
        take few places (the stream's backpressure counts the places). False when the stage is ending."""
        q = self.batches
        with q.mutex:  # the stage takes batches under this lock: a batch still queued is not being read
            last = q.queue[-1] if q.queue else False
            if last is None:
                return False
            fits = last and len(last.items) + len(batch.items) <= max_size
            if fits and _direct(last) and (max_tokens is None or last.tokens + batch.tokens <= max_tokens):
                last.items.extend(batch.items)
                last.tokens += batch.tokens
                return True
            q.queue.append(batch)
            q.unfinished_tasks += 1
            q.not_empty.notify()
        return True

    def wake(self) -> None:
        """Queue an empty batch past the bound, so an idle stage reaches a batch boundary now (a model swap waits
        for one). Nothing when the stage is ending."""
        q = self.batches
        with q.mutex:
            if q.queue and q.queue[-1] is None:
                return
            q.queue.append(Batch(items=[], created=time.monotonic(), flushed_by="wake"))
            q.unfinished_tasks += 1
            q.not_empty.notify()

    def drop_and_end(self, deadline: Deadline) -> bool:
        """Drop every waiting batch; the stage ends after its current one. False if it could not be told so
        by the deadline."""
        with self._lock:
            self._ready.clear()
        while True:
            with contextlib.suppress(queue.Empty):
                while True:
                    _fail_replies(self.batches.get_nowait(), "dropped: the pipeline is stopping or restarting")
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
        breaker: Breaker | None = None,
        slot: ModelSlot | None = None,
        on_scored: Callable[[list[Item], np.ndarray, Scorer], None] | None = None,
    ) -> None:
        self.model = slot.model if slot is not None else model
        self.scorer = slot.scorer if slot is not None else Scorer.of(model)
        self.slot = slot
        self.on_scored = on_scored
        self.breaker = breaker
        self.inbox = inbox
        self.outbox = outbox
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.chunk_size = chunk_size
        self.stats = stats
        self.on_failed = on_failed

    def run(self, drop: threading.Event) -> None:
        for items, reason in self._merged():
            self._switch()  # a batch boundary: every call of this batch runs on one model
            self._process(self._retokenized(items), reason, drop)
        self._end(drop)

    def _switch(self) -> None:
        """Use the model the slot was offered, if any (see ``swap.py``)."""
        if self.slot is None or (model := self.slot.take()) is None:
            return
        self.model, self.scorer = model, self.slot.scorer
        if self.breaker is not None:
            self.breaker.use(model)

    def _retokenized(self, items: list[Item]) -> list[Item]:
        """``items``, those tokenised by another tokenizer than the model's (before a swap) tokenised again; one the
        new tokenizer fails on is failed (dead-lettered: ``inference_failed``)."""
        vocab = self.model.vocab
        if not any(item.vocab and item.vocab != vocab for item in items):
            return items
        kept: list[Item] = []
        for item in items:
            if item.vocab and item.vocab != vocab:
                try:
                    (ids,), (cut,) = self.model.tokenize([item.text])
                except Exception as exc:
                    self._failed(item, f"the swapped-in model's tokenizer failed: {exc!r}")
                    continue
                item.ids, item.truncated, item.vocab = ids, item.truncated or bool(cut), vocab
            kept.append(item)
        return kept

    def _process(self, items: list[Item], reason: str, drop: threading.Event) -> None:
        """Infer ``items`` until each is handed on or dead-lettered (or dropped). Raises
        :class:`~worker.stream.guard.InferenceDown` when the model is down for good (the kept records are never
        acknowledged)."""
        while items and not drop.is_set():
            items = self._infer(items, reason, drop)
            if items and (self.breaker is None or not self.breaker.failed(drop)):
                return

    def _end(self, drop: threading.Event) -> None:
        """The end marker for the next stage; when dropping, what it has not taken yet is dropped to make room."""
        while True:
            try:
                self.outbox.put(None, timeout=0.5)
                return
            except queue.Full:
                if drop.is_set():
                    with contextlib.suppress(queue.Empty):
                        while True:
                            self.outbox.get_nowait()

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
    def _infer(self, items: list[Item], reason: str, drop: threading.Event) -> list[Item]:
        """Hand on or dead-letter ``items``; the ones kept (not processed: the session, not a record, failed)."""
        try:
            start = time.perf_counter()
            result = self._call(items, self.chunk_size)
            elapsed = time.perf_counter() - start
        except Exception as exc:
            log.warning("batch_inference_failed", size=len(items), error=repr(exc))
            return items if not self._probe_ok() else self._isolate(items, drop)
        self.stats.count_batch(len(items), result.real_tokens, result.padded_tokens, elapsed)
        log.debug(
            "batch_inferred",
            size=len(items),
            tokens=result.real_tokens,
            padded=result.padded_tokens,
            ms=round(elapsed * 1000, 2),
            reason=reason,
            http=sum(1 for item in items if item.reply is not None),  # the batch's composition: HTTP inputs
        )
        self._put_out(items, result.probs, drop, _logits(result))
        return []

    def _isolate(self, items: list[Item], drop: threading.Event) -> list[Item]:
        """A failing batch is split in halves until the bad record(s) are found; the rest is processed. A record
        is blamed only when the probe runs right after it failed; else the session is at fault and the records
        not processed yet (a suffix of ``items``, so order holds) are returned, kept."""
        if len(items) == 1:
            try:
                result = self._call(items)
            except Exception as exc:
                if not self._probe_ok():
                    return items
                self._failed(items[0], repr(exc))
                return []
            self._put_out(items, result.probs, drop, _logits(result))
            return []
        mid = len(items) // 2
        for half, after in ((items[:mid], items[mid:]), (items[mid:], [])):
            try:
                result = self._call(half)
            except Exception:
                kept = self._isolate(half, drop)
                if kept:
                    return kept + after
                continue
            self._put_out(half, result.probs, drop, _logits(result))
        return []

    def _call(self, items: list[Item], chunk_size: int | None = None) -> InferenceResult:
        result = self.model.infer_ids([item.ids for item in items], chunk_size=chunk_size)
        if self.breaker is not None:
            self.breaker.succeeded()
        return result

    def _probe_ok(self) -> bool:
        """Whether the session runs a known-good record (always, without a breaker: every failure is a record's)."""
        return self.breaker is None or self.breaker.probe_ok()

    def _failed(self, item: Item, error: str) -> None:
        if item.reply is not None:
            item.reply.fail(error)
        else:
            self.on_failed(item, error)

    def _put_out(
        self, items: list[Item], probs: np.ndarray, drop: threading.Event, logits: np.ndarray | None = None
    ) -> None:
        """Answer the items with a reply (HTTP inputs); hand the others (stream records) to the encoder."""
        if self.on_scored is not None:
            self.on_scored(items, probs, self.scorer)
        if any(item.reply is not None for item in items):
            items, probs = _answer(items, probs, logits, self.scorer.labels)
            if not items:
                return
        while not drop.is_set():
            try:
                self.outbox.put((items, probs, self.scorer), timeout=0.5)
                return
            except queue.Full:
                pass


def _answer(
    items: list[Item], probs: np.ndarray, logits: np.ndarray | None, labels: Sequence[str]
) -> tuple[list[Item], np.ndarray]:
    """Resolve the replies of ``items``; the items without one (the stream's) and their rows, in order."""
    keep = [i for i, item in enumerate(items) if item.reply is None]
    for i, item in enumerate(items):
        if item.reply is not None:
            try:
                item.reply.resolve(probs[i], None if logits is None else logits[i], len(keep), labels)
            except Exception as exc:  # a reply must never stop the stage
                log.warning("reply_failed", error=repr(exc))
    return [items[i] for i in keep], probs[keep]


def _direct(batch: Batch) -> bool:
    return bool(batch.items) and batch.items[0].reply is not None


def _fail_replies(batch: Batch | None, error: str) -> None:
    for item in batch.items if batch is not None else ():
        if item.reply is not None:
            item.reply.fail(error)


def _logits(result: InferenceResult) -> np.ndarray | None:
    return result.logits


def _tokens(items: Sequence[Item]) -> int:
    return sum(item.tokens for item in items)


def peek(q: queue.Queue[Any]) -> list[Any]:
    """A snapshot of what waits in ``q``."""
    with q.mutex:
        return list(q.queue)
