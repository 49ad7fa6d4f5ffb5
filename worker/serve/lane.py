"""The HTTP lane into the inference stage: a request's texts become items with a reply, batched with the stream's.

A request handler tokenises the texts, then :meth:`Lane.submit` puts them into the same
:class:`~worker.stream.batcher.InferQueue` the stream's poll loop fills. The queue (the one owner of the batch policy)
runs whatever waits when the model is ready, stream records and HTTP inputs alike, within ``max_batch_size`` and
``max_batch_tokens``; an HTTP input never waits for company. The inference stage answers an item that has a
:class:`~worker.stream.common.types.Reply` and hands only the others to the encoder, so an HTTP input never reaches
Kafka nor the offsets, and the stream's order and at-least-once bookkeeping are untouched.

Admission is bounded: at most ``max_queued`` inputs admitted and not answered yet (:class:`Overloaded` past that,
429). An input counts until the stage answers it or fails it (a timed-out request's inputs still count until the
stage gets to them), so the memory held is bounded whatever the clients do. :meth:`Lane.close` refuses new
requests; :meth:`Lane.fail_all` answers what is left once the stage is gone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from worker.observability import get_logger
from worker.stream.batcher import InferQueue
from worker.stream.common.types import Item

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class HttpSource:
    """The ``record`` of an HTTP item (a :class:`~worker.stream.common.types.SourceRecord` stand-in): never produced,
    never committed (the stage answers the item's reply instead)."""

    topic: str = "<http>"
    partition: int = -1
    offset: int = -1
    timestamp: int | None = None
    key: bytes | None = None
    value: bytes | None = None
    headers: Sequence[tuple[str, bytes]] | None = None


HTTP_SOURCE = HttpSource()


class Overloaded(Exception):
    """More inputs than the lane admits are waiting for the model (429, Retry-After)."""


class Unavailable(Exception):
    """The lane takes no new requests (shutting down, or the inference stage is gone) (503)."""


class InferenceFailed(Exception):
    """The model failed on an input, or the stage dropped it (500 or 503)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient  # the input itself is fine: retrying later may work (503)


@dataclass(frozen=True, slots=True)
class Scored:
    """One input's result: its probabilities and logits (rows of the model's output) and the model call it was in."""

    probs: np.ndarray
    logits: np.ndarray | None
    stream_in_batch: int  # stream records in the same model call (0: HTTP inputs only)
    truncated: bool
    labels: tuple[str, ...] = ()  # the columns of probs: the labels of the model that scored it (a swap may change)


class Pending:
    """One request in flight: its :attr:`future` completes when every input is answered, or fails on the first
    failure. Thread-safe: the inference thread answers, the event loop waits, a timeout may abandon it."""

    def __init__(self, count: int, truncated: Sequence[bool], release: Callable[[Pending, int], None]) -> None:
        self.future: Future[list[Scored]] = Future()
        self.count = count
        self.created = time.monotonic()
        self._truncated = list(truncated)
        self._rows: list[Scored | None] = [None] * count
        self._settled = [False] * count
        self._left = count
        self._lock = threading.Lock()
        self._release = release

    def reply(self, index: int) -> _Slot:
        return _Slot(self, index)

    def _settle(self, index: int) -> bool:
        """Mark input ``index`` answered; False if it already was (each input is released exactly once)."""
        with self._lock:
            if self._settled[index]:
                return False
            self._settled[index] = True
            self._left -= 1
        self._release(self, 1)
        return True

    def resolve(
        self,
        index: int,
        probs: np.ndarray,
        logits: np.ndarray | None,
        stream_in_batch: int,
        labels: Sequence[str] = (),
    ) -> None:
        if not self._settle(index):
            return
        self._rows[index] = Scored(
            np.array(probs, dtype=np.float32, copy=True),
            None if logits is None else np.array(logits, dtype=np.float32, copy=True),
            stream_in_batch,
            self._truncated[index],
            tuple(labels),
        )
        with self._lock:
            done = self._left == 0
        if done and not self.future.done():
            rows = [row for row in self._rows if row is not None]
            if len(rows) == self.count:
                _set(self.future, rows)

    def fail(self, index: int, error: BaseException) -> None:
        if self._settle(index) and not self.future.done():
            _set(self.future, error)

    def fail_rest(self, error: BaseException) -> None:
        """Fail every input not answered yet (releasing each)."""
        for index in range(self.count):
            self.fail(index, error)

    @property
    def done(self) -> bool:
        with self._lock:
            return self._left == 0


class _Slot:
    """The :class:`~worker.stream.common.types.Reply` of one input: its request and its index there."""

    __slots__ = ("index", "pending")

    def __init__(self, pending: Pending, index: int) -> None:
        self.pending = pending
        self.index = index

    def resolve(
        self, probs: np.ndarray, logits: np.ndarray | None, stream_in_batch: int, labels: Sequence[str] = ()
    ) -> None:
        self.pending.resolve(self.index, probs, logits, stream_in_batch, labels)

    def fail(self, error: str) -> None:
        self.pending.fail(self.index, InferenceFailed(error))


def _set(future: Future[list[Scored]], outcome: list[Scored] | BaseException) -> None:
    try:
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
    except Exception:  # already settled by another thread: the first outcome stands
        pass


class Lane:
    """Admission and submission of HTTP requests into the inference queue."""

    def __init__(
        self,
        inbox: InferQueue,
        *,
        max_queued: int,
        on_release: Callable[[int], None] | None = None,
    ) -> None:
        self.inbox = inbox
        self.max_queued = max_queued
        self._on_release = on_release
        self._lock = threading.Lock()
        self._held = 0
        self._closed = False
        self._pending: set[Pending] = set()

    @property
    def held(self) -> int:
        """Inputs admitted and not answered yet."""
        with self._lock:
            return self._held

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(
        self, ids: Sequence[list[int]], texts: Sequence[str], truncated: Sequence[bool], vocab: str = ""
    ) -> Pending:
        """Admit one request's tokenised inputs and queue them for the model; raises :class:`Overloaded` or
        :class:`Unavailable` without queueing anything. ``vocab``: the tokenizer that made ``ids`` (the stage
        tokenises them again if a hot swap changed it meanwhile)."""
        n = len(ids)
        with self._lock:
            if self._closed:
                raise Unavailable("the server is shutting down")
            if self._held + n > self.max_queued:
                raise Overloaded(
                    f"{self._held} inputs are waiting for the model; at most {self.max_queued} may (http_max_queued)"
                )
            self._held += n
            pending = Pending(n, truncated, self._release)
            self._pending.add(pending)
        received = time.time()
        items = [
            Item(HTTP_SOURCE, {}, text, received, list(seq), bool(cut), pending.reply(i), vocab)
            for i, (seq, text, cut) in enumerate(zip(ids, texts, truncated, strict=True))
        ]
        if not self.inbox.submit(items):
            pending.fail_rest(InferenceFailed("the inference stage is stopping", transient=True))
        return pending

    def _release(self, pending: Pending, n: int) -> None:
        with self._lock:
            self._held -= n
            if pending.done:
                self._pending.discard(pending)
        if self._on_release is not None:
            self._on_release(n)

    def close(self) -> None:
        """Refuse new requests (in-flight ones go on)."""
        with self._lock:
            self._closed = True

    def fail_all(self, reason: str) -> int:
        """Close, and fail every request still waiting (the stage that would answer it is gone); how many."""
        self.close()
        with self._lock:
            pending = list(self._pending)
        failed = [request for request in pending if not request.done]
        for request in failed:
            request.fail_rest(InferenceFailed(reason, transient=True))
        if failed:
            log.warning("http_requests_failed", requests=len(failed), reason=reason)
        return len(failed)
