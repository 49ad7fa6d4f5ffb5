"""Inference stage: batches from the inference queue → the model → (items, probabilities) to the outbox.

One short loop on its own thread (ONNX Runtime releases the GIL, so polling and producing overlap with compute):
take the next batch when the model is ready for one (:meth:`~worker.stream.batcher.InferQueue.take`: the queue alone
decides what a batch holds and when it runs), run the model, hand the result on, and tell the queue how long the call
took (:meth:`~worker.stream.batcher.InferQueue.observe`: its pacing learns from it).

A batch the model fails on is split in halves until the failing record(s) are found; those go to ``on_failed``
(the runner dead-letters them), the rest is processed. With a :class:`~worker.stream.guard.Breaker`, a record is
blamed only if a known-good probe record runs right after it failed; if the probe fails too, the session is at fault:
the records not yet processed are kept and retried, and the breaker rebuilds the session or gives up
(:class:`~worker.stream.guard.InferenceDown` ends the stage: the worker stops, the kept records stay uncommitted).
When the queue ends the stage ends (a ``None`` is passed on to the outbox); when ``drop`` is set, results are no
longer handed on.

With a :class:`~worker.stream.swap.ModelSlot` the stage switches to a hot-swapped model between two model calls
(:meth:`ModelSlot.take`): each batch it hands on carries the :class:`~worker.stream.types.Scorer` (labels, model meta)
of the one model that scored all of it, and records tokenised by another tokenizer are tokenised again first.
``on_scored`` (shadow mode, ``worker/rollout/shadow.py``) sees every scored call; it must not block.

HTTP inputs (``worker/serve/lane.py``) are items with a ``reply``, queued with the stream's records: they ride in
the same model calls, are answered here (or failed, never dead-lettered) and never handed to the outbox, so the
encoder, the producer and the offsets see only the stream's records, in order.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from worker.observability import get_logger
from worker.stream.batcher import InferQueue
from worker.stream.common.guard import Breaker
from worker.stream.common.ports import BatchTracer, InferenceResult, Model, NullBatchTracer
from worker.stream.common.stats import RunStats
from worker.stream.common.swap import ModelSlot, scorer_of
from worker.stream.common.types import Item, Scored, Scorer

log = get_logger(__name__)


class Outbox(queue.Queue[Scored | None]):
    """The bounded hand-off from the inference stage to the encoder; counts the records it holds (a diagnostic: an
    upper bound, never below the true count)."""

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self._records = 0
        self._count_lock = threading.Lock()

    def put(self, scored: Scored | None, block: bool = True, timeout: float | None = None) -> None:
        n = _size(scored)
        self._count(n)
        try:
            super().put(scored, block, timeout)
        except BaseException:
            self._count(-n)
            raise

    def get(self, block: bool = True, timeout: float | None = None) -> Scored | None:
        scored = super().get(block, timeout)
        self._count(-_size(scored))
        return scored

    def records(self) -> int:
        with self._count_lock:
            return self._records

    def _count(self, n: int) -> None:
        with self._count_lock:
            self._records += n


def _size(scored: Scored | None) -> int:
    return 0 if scored is None else len(scored[0])


class InferStage:
    def __init__(
        self,
        model: Model,
        inbox: InferQueue,
        outbox: queue.Queue[Scored | None],
        *,
        chunk_size: int,
        stats: RunStats,
        on_failed: Callable[[Item, str], None],
        breaker: Breaker | None = None,
        slot: ModelSlot | None = None,
        on_scored: Callable[[list[Item], np.ndarray, Scorer], None] | None = None,
        tracer: BatchTracer | None = None,
    ) -> None:
        self.model = slot.model if slot is not None else model
        self.scorer = slot.scorer if slot is not None else scorer_of(model)
        self.slot = slot
        self.on_scored = on_scored
        self.breaker = breaker
        self.inbox = inbox
        self.outbox = outbox
        self.chunk_size = chunk_size
        self.stats = stats
        self.on_failed = on_failed
        self.tracer: BatchTracer = tracer or NullBatchTracer()  # called once per model batch (worker/tracing/)
        self._queued_s = 0.0

    def run(self, drop: threading.Event) -> None:
        while (batch := self.inbox.take()) is not None:
            self._switch()  # a batch boundary: every call of this batch runs on one model
            self._queued_s = time.monotonic() - batch.created  # how long its oldest record waited (the log's)
            self._process(self._retokenized(batch.items), batch.flushed_by, drop)
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

    # ---- predict, hand on -----------------------------------------------------------------------------
    def _infer(self, items: list[Item], reason: str, drop: threading.Event) -> list[Item]:
        """Hand on or dead-letter ``items``; the ones kept (not processed: the session, not a record, failed)."""
        try:
            start = time.perf_counter()
            result = self._call(items, self.chunk_size)
            elapsed = time.perf_counter() - start
        except Exception as exc:
            self.tracer.model_batch(items, time.perf_counter() - start, exc)
            log.warning("batch_inference_failed", size=len(items), error=repr(exc))
            return items if not self._probe_ok() else self._isolate(items, drop)
        self.tracer.model_batch(items, elapsed)
        self.stats.count_batch(len(items), result.real_tokens, result.padded_tokens, elapsed)
        self.inbox.observe(len(items), elapsed)
        log.debug(
            "batch_inferred",
            size=len(items),
            tokens=result.real_tokens,
            padded=result.padded_tokens,
            ms=round(elapsed * 1000, 2),
            reason=reason,  # why it ran: size, tokens, time, pace, direct, drain (batcher.py)
            queued_ms=round(self._queued_s * 1000, 2),
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


def _logits(result: InferenceResult) -> np.ndarray | None:
    return result.logits
