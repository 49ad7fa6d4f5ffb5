"""Memory: the budget of records awaiting the broker's acks, and the bound of what the worker holds.

kafka-python 3 has no ``buffer_memory``: its producer queues whatever it is given. So the worker bounds what awaits
the broker's acknowledgement itself (``producer_buffer_bytes``). The sink (``sink.py``) charges every record it
sends (:meth:`AckBudget.cost`: ``RECORD_COPIES`` × its size + a per-record overhead, which covers the record in
the producer's batch, the output and source records the delivery callbacks keep, its decoded text and token ids and
the Python objects around them) until its future is answered. Outputs wait for room before they are sent
(:meth:`AckBudget.wait_for_room`): the encode queue fills, then the inference queue, and the consumer's partitions
are paused (a full budget pauses them too, for dead letters, which are charged but never wait: they are sent from
the poll loop). So, above an idle worker, the worker holds at most :func:`memory_bound` bytes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from worker.observability import get_logger
from worker.settings import Batching, Input, Output
from worker.stream.common.types import headers_size

log = get_logger(__name__)

RECORD_COPIES = 4  # output in the producer's batch + output value + source value + its decoded text
RECORD_OVERHEAD_BYTES = 4_096  # Python objects of one record on its way (record, item, payload, future, callbacks)
TOKEN_BYTES = 40  # one token id in a Python list
OUTPUT_EXTRA_BYTES = 1_024  # what an output adds to its input: sentiment, sentiment_meta, x-sentiment-* headers
FULL_LOG_INTERVAL_S = 10.0


class AckBudget:
    """Bytes charged for records awaiting acks; ``limit`` None = unbounded (counted only)."""

    def __init__(self, limit: int | None, per_record: int = RECORD_OVERHEAD_BYTES) -> None:
        self.limit = limit
        self.per_record = per_record
        self.used = 0
        self.peak = 0
        self.waits = 0  # times an output had to wait for room
        self._cond = threading.Condition()
        self._waiting = 0  # threads in wait_for_room: a release wakes them only when there are any
        self._last_log = 0.0

    @classmethod
    def from_settings(cls, output: Output, *, max_length: int) -> AckBudget:
        """``producer_buffer_bytes`` of the output section; ``max_length`` (tokens) sizes the per-record charge."""
        return cls(output.producer_buffer_bytes, RECORD_OVERHEAD_BYTES + TOKEN_BYTES * max_length)

    def cost(self, value: bytes | None, key: bytes | None, headers: Sequence[tuple[str, bytes | None]] | None) -> int:
        return self.size_cost(len(value or b"") + len(key or b"") + headers_size(headers))

    def size_cost(self, size: int) -> int:
        """The charge for a record of ``size`` bytes (value + key + headers)."""
        return RECORD_COPIES * size + self.per_record

    def charge(self, cost: int) -> None:
        with self._cond:
            self.used += cost
            self.peak = max(self.peak, self.used)

    def release(self, cost: int) -> None:
        with self._cond:
            self.used -= cost
            if self._waiting:
                self._cond.notify_all()

    def full(self) -> bool:
        return self.limit is not None and self.used >= self.limit

    def wait_for_room(self, cost: int, cancelled: Callable[[], bool]) -> bool:
        """Block until ``cost`` fits (a record always fits when nothing awaits acks); False if ``cancelled()``."""
        with self._cond:
            if self.limit is None or not self.used or self.used + cost <= self.limit:
                return True
            self.waits += 1
            now = time.monotonic()
            if now - self._last_log >= FULL_LOG_INTERVAL_S:
                self._last_log = now
                log.info("awaiting_acks_full", bytes=self.used, limit=self.limit, note="outputs wait for acks")
            self._waiting += 1
            try:
                while self.used and self.used + cost > self.limit:
                    if cancelled():
                        return False
                    self._cond.wait(0.1)
            finally:
                self._waiting -= 1
            return True


# ---- the bound -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemoryBound:
    """Bytes the worker may hold above an idle worker, by place (see README "Bounded memory")."""

    per_record: int  # one record on its way, charged like a record awaiting acks
    records_in_stages: int  # the poll, the open batch, the queues, the model, the sink
    in_stages: int
    awaiting_acks: int  # producer_buffer_bytes + what may be charged beyond it
    fetched: int  # fetched by the consumer, not yet polled

    @property
    def total(self) -> int:
        return self.in_stages + self.awaiting_acks + self.fetched


def max_partition_fetch_bytes(input: Input) -> int:
    """What the consumer fetches per partition at most (``source.consumer_config`` asks for this)."""
    return max(input.max_message_bytes * 2, 1_048_576)


def memory_bound(
    input: Input,
    output: Output,
    batching: Batching,
    *,
    max_length: int,
    input_bytes: int | None = None,
    partitions: int | None = None,
) -> MemoryBound:
    """The most the worker holds above idle, for input records of at most ``input_bytes`` (value + key + headers;
    default ``max_message_bytes``, the worst case) and ``partitions`` assigned partitions (default: unknown).

    per_record   = RECORD_COPIES × (input_bytes + OUTPUT_EXTRA_BYTES) + RECORD_OVERHEAD_BYTES + TOKEN_BYTES × max_length
    in stages    = ((2 × queue_max_batches + 4) × max_batch_size + max_poll_records) × per_record
    awaiting acks = producer_buffer_bytes + (max_poll_records + max_batch_size + 1) × per_record
                   (dead letters of one poll and of one batch are charged without waiting; one record is sent alone
                   when it is larger than the budget)
    fetched      = min(fetch_max_bytes, partitions × max_partition_fetch_bytes)

    ``batching`` must be resolved (no ``"auto"``: the bound depends on the provider's batch size).
    """
    size = input.max_message_bytes if input_bytes is None else input_bytes
    per_record = RECORD_COPIES * (size + OUTPUT_EXTRA_BYTES) + RECORD_OVERHEAD_BYTES + TOKEN_BYTES * max_length
    batch = batching.batch_size
    records = (2 * batching.queue_max_batches + 4) * batch + input.max_poll_records
    fetched = input.fetch_max_bytes
    if partitions is not None:
        fetched = min(fetched, partitions * max_partition_fetch_bytes(input))
    return MemoryBound(
        per_record=per_record,
        records_in_stages=records,
        in_stages=records * per_record,
        awaiting_acks=output.producer_buffer_bytes + (input.max_poll_records + batch + 1) * per_record,
        fetched=fetched,
    )
