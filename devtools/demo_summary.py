"""What the demo prints: the first enriched records in full, progress, and a summary that keeps start-up apart.

Latency here is end to end: from the input record's timestamp (set by the producer when it sent it) to the broker's
acknowledgement of the enriched output (the worker's ``on_output`` callback); the in-worker part (from the worker
receiving the record) is given beside it. The records of a run fall in three groups:

- **start-up backlog**: produced before the worker was ready (model loaded, partitions assigned); their latency
  includes the wait for the start, so it says how long start-up and catching up took, not how fast the worker is;
- **catching up**: produced after the worker was ready, while the backlog was still being drained;
- **steady**: produced after the last backlog record came out: the latency a running worker gives this stream.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from worker.stream.encode import OutRecord


def percentiles(values_s: list[float]) -> dict[str, float | None]:
    """p50 and p99 in ms of seconds ``values_s`` (None when empty)."""
    if not values_s:
        return {"p50_ms": None, "p99_ms": None}
    import numpy as np

    ms = np.asarray(values_s) * 1000.0
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1)}


class LivePrinter:
    """on_output callback (producer IO thread): prints the first records in full, then a progress line; keeps, per
    output, (produced, acknowledged, received by the worker) wall-clock times for :meth:`summary`."""

    def __init__(self, show: int, expected: int | None, out: TextIO) -> None:
        self.show = show
        self.expected = expected  # None: not known yet (:meth:`expect`)
        self.out = out
        self.count = 0
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.labels: dict[str, int] = {}
        self.times: list[tuple[float, float, float]] = []  # (produced, acknowledged, received), epoch seconds

    def expect(self, expected: int) -> None:
        """The number of outputs that ends the run (known once the start-up backlog is)."""
        with self.lock:
            self.expected = expected
            if self.count >= expected:
                self.done.set()

    def __call__(self, out_record: OutRecord) -> None:
        now = time.time()
        item = out_record.item
        stamp = item.record.timestamp
        produced = stamp / 1000.0 if stamp is not None else item.received
        with self.lock:
            self.count += 1
            self.labels[out_record.label] = self.labels.get(out_record.label, 0) + 1
            self.times.append((produced, now, item.received))
            n = self.count
            if self.expected is not None and n >= self.expected:
                self.done.set()
        if n <= self.show:
            self._print_record(out_record)
        elif n % 100 == 0:
            print(f"... {n} enriched records", file=self.out, flush=True)

    def _print_record(self, out_record: OutRecord) -> None:
        value = json.loads(out_record.value)
        s = value["sentiment"]
        meta = value["sentiment_meta"]["source"]
        text = value.get("text", "")
        text = text if len(text) <= 90 else text[:87] + "..."
        print(
            f"[{meta['topic']}:{meta['partition']}@{meta['offset']}] → {out_record.topic}  "
            f"{s['label']:<8} {s['score']:.3f}  {text}",
            file=self.out,
            flush=True,
        )

    def summary(self, *, started: float, ready: float | None, wall_s: float) -> dict[str, Any]:
        """The run's figures: ``started`` / ``ready`` are the epoch times the worker was started and became ready
        (None: it never did)."""
        with self.lock:
            times, labels, count = list(self.times), dict(self.labels), self.count
        out: dict[str, Any] = {
            "enriched": count,
            "expected": self.expected,
            "labels": labels,
            "wall_s": round(wall_s, 1),
        }
        ready_at = ready if ready is not None else float("inf")
        backlog = [t for t in times if t[0] < ready_at]
        drained = max((t[1] for t in backlog), default=ready if ready is not None else None)
        out["start_up"] = {
            "worker_ready_s": None if ready is None else round(ready - started, 2),
            "backlog_records": len(backlog),
            "backlog_drained_s_after_ready": None if ready is None or drained is None else round(drained - ready, 2),
            "backlog_latency": percentiles([ack - produced for produced, ack, _ in backlog]),
        }
        after = [t for t in times if t[0] >= ready_at]
        steady = [t for t in after if drained is not None and t[0] >= drained]
        out["catching_up_records"] = len(after) - len(steady)
        span = (max(t[1] for t in steady) - min(t[1] for t in steady)) if len(steady) > 1 else 0.0  # outputs
        out["steady"] = {
            "records": len(steady),
            "msgs_per_s": round((len(steady) - 1) / span, 1) if span > 0 else None,
            "latency": percentiles([ack - produced for produced, ack, _ in steady]),
            "in_worker_latency": percentiles([ack - received for _, ack, received in steady]),
        }
        return out


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The summary as a few readable lines (the JSON follows them)."""
    start, steady = summary["start_up"], summary["steady"]
    lat, inner = steady["latency"], steady["in_worker_latency"]
    lines = [
        f"enriched {summary['enriched']}/{summary['expected']} records: "
        + ", ".join(f"{label} {n}" for label, n in sorted(summary["labels"].items())),
        f"start-up: worker ready after {start['worker_ready_s']} s (model load + group join); "
        f"{start['backlog_records']} records produced meanwhile, drained "
        f"{start['backlog_drained_s_after_ready']} s after it was ready "
        f"(their latency p50 {start['backlog_latency']['p50_ms']} ms, p99 {start['backlog_latency']['p99_ms']} ms, "
        "start-up included)",
    ]
    if steady["records"]:
        lines.append(
            f"steady state: {steady['records']} records at {steady['msgs_per_s']} msg/s: latency (produced → "
            f"output acknowledged) p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms; in the worker p50 "
            f"{inner['p50_ms']} ms, p99 {inner['p99_ms']} ms"
        )
    else:
        lines.append("steady state: no record was produced after the start-up backlog drained (raise --count)")
    return lines
