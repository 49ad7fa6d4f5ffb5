"""Pacing: whether a partial batch should run now or wait for company, from what the queue has learned.

Two things are learned online, both cheap and lock-free (the caller, :class:`~worker.stream.batcher.InferQueue`,
holds its lock):

- the **arrival rate**: an exponentially decayed count of the records that arrived, over a window of
  ``rate_window_s`` (at a steady rate λ the count settles at λ × window; bursts, such as one poll's records, are
  smoothed, and the estimate decays towards 0 when nothing arrives);
- the model's **time per record at each batch size**: an EWMA of (seconds of a model call ÷ its records) per
  batch-size bucket (:data:`BUCKETS`). A size whose bucket has no observation yet borrows the nearest learned one.

The decision (:meth:`Pacer.run_now`), for ``n`` records waiting while the model is idle: run now when waiting can't
pay, that is when

- the model, running batches of ``n``, keeps up with the arrivals (λ × time per record at ``n`` ≤ ``keep_up``):
  records that arrive meanwhile form the next batch, and the model still has slack; waiting would only add latency;
- or no record is expected before the oldest one's ``max_wait`` is up (λ × the time left < 1);
- or the batch expected by then (``n`` + λ × the time left, at most ``max_batch_size``) would not take the model
  meaningfully less time per record (less than ``min_gain`` saved, by what was learned): on a CPU a transformer's
  time per record hardly falls past a few records, so a fuller batch buys no throughput there, only latency.

Otherwise (the arrivals outpace what the model does at this size and a fuller batch is cheaper per record) it waits,
at most until ``max_wait``. With no model time learned yet (no call has run) nothing says waiting can't pay: the
batch waits as ``max_wait`` says, like a plain micro-batcher, until the first call teaches it.
"""

from __future__ import annotations

import bisect
import math

# Batch-size buckets of the learned times: every size up to 4, then about 1.5x apart, up to Settings' largest batch.
BUCKETS: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536,
                            2048, 3072, 4096)  # fmt: skip


def bucket(size: int) -> int:
    """The bucket of a batch of ``size`` records: the largest bucket not above it (sizes past the last: the last)."""
    return BUCKETS[max(0, bisect.bisect_right(BUCKETS, max(1, size)) - 1)]


class Pacer:
    """Learned arrival rate and model time per record by batch size; :meth:`run_now` decides. Not thread-safe: its
    owner serialises the calls."""

    def __init__(
        self, *, rate_window_s: float = 1.0, alpha: float = 0.2, keep_up: float = 0.8, min_gain: float = 0.1
    ) -> None:
        if rate_window_s <= 0 or not 0 < alpha <= 1 or keep_up <= 0 or not 0 <= min_gain < 1:
            raise ValueError("rate_window_s and keep_up must be positive, alpha in (0, 1], min_gain in [0, 1)")
        self.rate_window_s = rate_window_s
        self.alpha = alpha
        self.keep_up = keep_up
        self.min_gain = min_gain
        self._count = 0.0  # arrivals, exponentially decayed (time constant rate_window_s)
        self._at: float | None = None  # when _count was last decayed
        self._per_record: dict[int, float] = {}  # bucket → EWMA of model seconds per record

    # ---- what happened -----------------------------------------------------------------------------------------
    def arrived(self, n: int, now: float) -> None:
        """``n`` records arrived at ``now`` (monotonic seconds)."""
        self._decay(now)
        self._count += n

    def observe(self, size: int, seconds: float) -> None:
        """A model call on ``size`` records took ``seconds``."""
        if size <= 0 or seconds < 0:
            return
        key, per_record = bucket(size), seconds / size
        old = self._per_record.get(key)
        self._per_record[key] = per_record if old is None else old + self.alpha * (per_record - old)

    # ---- what it learned ---------------------------------------------------------------------------------------
    def rate(self, now: float) -> float:
        """Records per second arriving (the decayed count over its window)."""
        self._decay(now)
        return self._count / self.rate_window_s

    def per_record_s(self, size: int) -> float | None:
        """Model seconds per record in a batch of ``size`` (the nearest learned bucket's); None: nothing learned."""
        if not self._per_record:
            return None
        key = bucket(size)
        if key in self._per_record:
            return self._per_record[key]
        nearest = min(self._per_record, key=lambda b: (abs(math.log(b / key)), b))
        return self._per_record[nearest]

    def batch_s(self, size: int) -> float | None:
        """Model seconds for a batch of ``size`` records (None: nothing learned)."""
        per_record = self.per_record_s(size)
        return None if per_record is None else per_record * size

    def learned(self) -> dict[int, float]:
        """Seconds per record by bucket (a copy; for logs and tests)."""
        return dict(self._per_record)

    # ---- the decision ------------------------------------------------------------------------------------------
    def run_now(self, n: int, time_left_s: float, now: float, max_size: int) -> bool:
        """Whether ``n`` waiting records (the model idle, the oldest due in ``time_left_s``, batches of at most
        ``max_size``) should run now."""
        per_record = self.per_record_s(n)
        if per_record is None:
            return False
        rate = self.rate(now)
        if rate * per_record <= self.keep_up or rate * time_left_s < 1.0:
            return True
        fuller = self.per_record_s(min(max_size, n + int(rate * time_left_s)))
        return fuller is None or fuller > per_record * (1.0 - self.min_gain)

    def _decay(self, now: float) -> None:
        if self._at is not None and now > self._at:
            self._count *= math.exp(-(now - self._at) / self.rate_window_s)
        if self._at is None or now > self._at:
            self._at = now
