"""Micro-batcher: flush at max batch size, at a token budget, or after max wait — whichever comes first.

Pure and clock-injected (unit-testable). Thread-safe: the poll loop adds and flushes; a rebalance drain may
flush from the consumer's IO thread while the poll loop is blocked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from worker.stream.types import Item


@dataclass(slots=True)
class Batch:
    items: list[Item]
    created: float  # monotonic time of the first item
    tokens: int = 0  # real tokens (sum of item lengths)
    seq: int = 0  # batch sequence number, for logs
    flushed_by: str = ""  # size | tokens | time | drain

    def __len__(self) -> int:
        return len(self.items)


@dataclass(slots=True)
class _Open:
    items: list[Item] = field(default_factory=list)
    created: float = 0.0
    tokens: int = 0


class Batcher:
    def __init__(
        self,
        max_size: int,
        max_wait_s: float,
        max_tokens: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size <= 0:
            raise ValueError("max_size must be positive")
        self.max_size = max_size
        self.max_wait_s = max(0.0, max_wait_s)
        self.max_tokens = max_tokens
        self._clock = clock
        self._open = _Open()
        self._lock = threading.Lock()
        self._seq = 0

    def __len__(self) -> int:
        return len(self._open.items)

    def add(self, items: Iterable[Item]) -> list[Batch]:
        """Add items in order; return the batches that became full (by size or token budget)."""
        ready: list[Batch] = []
        with self._lock:
            for item in items:
                cur = self._open
                if self.max_tokens is not None and cur.items and cur.tokens + item.tokens > self.max_tokens:
                    ready.append(self._close("tokens"))
                    cur = self._open
                if not cur.items:
                    cur.created = self._clock()
                cur.items.append(item)
                cur.tokens += item.tokens
                if len(cur.items) >= self.max_size:
                    ready.append(self._close("size"))
                elif self.max_tokens is not None and cur.tokens >= self.max_tokens:
                    ready.append(self._close("tokens"))
        return ready

    def time_until_due(self) -> float | None:
        """Seconds until the open batch must flush (0 if overdue); None if nothing is open."""
        with self._lock:
            if not self._open.items:
                return None
            return max(0.0, self._open.created + self.max_wait_s - self._clock())

    def poll_due(self) -> Batch | None:
        """The open batch if it waited max_wait or longer."""
        with self._lock:
            cur = self._open
            if cur.items and self._clock() - cur.created >= self.max_wait_s:
                return self._close("time")
        return None

    def flush(self, reason: str = "drain") -> Batch | None:
        with self._lock:
            return self._close(reason) if self._open.items else None

    def _close(self, reason: str) -> Batch:
        cur = self._open
        self._seq += 1
        batch = Batch(items=cur.items, created=cur.created, tokens=cur.tokens, seq=self._seq, flushed_by=reason)
        self._open = _Open()
        return batch
