"""The runner wires the stages: source → decode → batcher → infer → encode → sink → commit.

Threads:
- poll loop (the caller's thread): poll, decode/validate, tokenise per poll, batch, dead-letter bad input,
  hand full batches to the inference queue, commit acknowledged offsets, log summaries;
- inference thread: ONNX Runtime (releases the GIL, so polling and producing overlap with compute);
- sink thread: encode results and send them (async, delivery callbacks ack offsets).
The queues between them are bounded; when the inference queue is full the consumer's partitions are paused
(backpressure) and resumed when it drains, while poll() keeps being called.

Delivery guarantee (at-least-once): an offset is committed only when every record before it in its partition
was acknowledged by the broker, to its output topic or to the dead-letter topic (see ``offsets.py``).

If the producer gets into a fatal state (e.g. the cluster lost the idempotent producer's state), no record is to
blame: the runner drops the work in flight, rewinds each owned partition to its first unacknowledged record and
starts a new producer and stage threads (``pipeline_restart``, with a growing pause). The consumer keeps its group
membership, so the rest of the group sees no rebalance.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from worker.model.runtime import SentimentModel
from worker.observability import get_logger
from worker.records import ErrorType
from worker.settings import Settings
from worker.stream.batcher import Batch, Batcher
from worker.stream.decode import Decoder, Item, SourceRecord
from worker.stream.encode import Encoder, OutRecord
from worker.stream.offsets import OffsetTracker
from worker.stream.sink import Sink
from worker.stream.source import Source

log = get_logger(__name__)

EXIT_OK = 0
EXIT_INCOMPLETE = 1  # drain timed out, forced stop, or a fatal delivery error: unacknowledged work not committed
# After the drain (bounded by shutdown_timeout_s): the final commit (at least this long even when the drain used
# the whole budget) and closing the producer get at most CLOSE_STEP_S each. Leaving the group gets up to the session
# timeout, between CLOSE_STEP_S and LEAVE_GROUP_MAX_S: a LeaveGroup queued behind a JoinGroup the broker is holding
# has to wait for it, and past the session timeout the broker drops the member anyway.
CLOSE_STEP_S = 2.0
LEAVE_GROUP_MAX_S = 10.0


class _NullMetrics:
    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


@dataclass
class RunStats:
    consumed: int = 0
    produced: int = 0
    dead_lettered: int = 0
    batches: int = 0
    batch_items: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0
    infer_seconds: float = 0.0
    labels: Counter[str] = field(default_factory=Counter)
    dlq_reasons: Counter[str] = field(default_factory=Counter)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    started: float = field(default_factory=time.monotonic)

    def snapshot(self) -> dict[str, Any]:
        elapsed = max(1e-9, time.monotonic() - self.started)
        lat = np.array(self.latencies) if self.latencies else None
        return {
            "consumed": self.consumed,
            "produced": self.produced,
            "dead_lettered": self.dead_lettered,
            "batches": self.batches,
            "avg_batch_size": round(self.batch_items / self.batches, 2) if self.batches else 0.0,
            "padding_ratio": round(self.padded_tokens / self.real_tokens, 3) if self.real_tokens else 0.0,
            "msgs_per_s": round(self.produced / elapsed, 1),
            "latency_p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1) if lat is not None else None,
            "latency_p99_ms": round(float(np.percentile(lat, 99)) * 1000, 1) if lat is not None else None,
            "labels": dict(self.labels),
            "dlq_reasons": dict(self.dlq_reasons),
        }


class Runner:
    def __init__(
        self,
        settings: Settings,
        model: SentimentModel,
        *,
        metrics: Any | None = None,
        health: Any | None = None,
        on_output: Callable[[OutRecord], None] | None = None,
    ) -> None:
        settings.require_input()
        self.settings = settings
        self.model = model
        self.metrics = metrics or _NullMetrics()
        self.health = health or _NullMetrics()
        self.on_output = on_output
        self.tracker = OffsetTracker()
        self.batcher = Batcher(settings.max_batch_size, settings.max_wait_ms / 1000.0, settings.max_batch_tokens)
        self.decoder = Decoder.from_settings(settings, model.tokenize)
        self.encoder = Encoder(
            labels=model.labels,
            model_meta=model.model_meta(),
            output_topic=settings.output_topic,
            partitioning=settings.output_partitioning,
        )
        self.batch_q: queue.Queue[Batch | list[Item] | None] = queue.Queue(maxsize=settings.queue_max_batches)
        self.out_q: queue.Queue[tuple[list[Item], np.ndarray] | None] = queue.Queue(maxsize=settings.queue_max_batches)
        self._ready: deque[Batch] = deque()
        self._ready_lock = threading.Lock()
        self._stop = threading.Event()  # stop() was called: leave the loop, shut down
        self._force = threading.Event()  # a forced stop: no drain
        self._drop = threading.Event()  # the current stage threads drop their work (forced stop, restart)
        self._gen = 0  # pipeline generation: callbacks of a replaced producer are ignored
        self._last_restart = 0.0
        self._restart_pause = 0.0
        self._fatal: BaseException | None = None
        self._shutdown_deadline: float | None = None
        self._commit_failures = 0
        self._last_commit_failure_log = 0.0
        self.stats = RunStats()
        self._stats_lock = threading.Lock()
        self.source: Source | None = None
        self.sink: Sink | None = None
        self._threads: list[threading.Thread] = []
        self._lags: dict[tuple[str, int], int] = {}
        self._unreachable_since: float | None = None
        self._last_outage_log = 0.0
        self.metrics.set_model_info(
            model_id=model.model_id,
            revision=model.revision,
            provider=model.provider,
            precision=model.precision,
            sha256=model.sha256,
        )
        self.health.set_model_loaded(True)

    # ---- control -------------------------------------------------------------------------------------
    def stop(self, force: bool = False) -> None:
        """Request a graceful stop (drain, produce, commit). ``force`` (or a second call) skips the drain."""
        if force or self._stop.is_set() or self._fatal is not None:
            if not self._force.is_set():
                log.warning("forced_stop", note="unacknowledged work is not committed")
            self._force.set()
            self._drop.set()
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set() or self._fatal is not None

    # ---- main loop ---------------------------------------------------------------------------------
    def run(self) -> int:
        s = self.settings
        self.source = Source(s, handler=self)
        self._start_pipeline()
        self.health.set_assignment(0, True)
        log.info(
            "worker_started",
            topics=s.input_topics or None,
            pattern=s.input_pattern,
            group_id=s.group_id,
            bootstrap_servers=s.bootstrap_servers,
            provider=self.model.provider,
            model=self.model.model_id,
            max_batch_size=s.max_batch_size,
            max_wait_ms=s.max_wait_ms,
        )
        try:
            while True:
                self._loop()
                if self._stop.is_set() or self._fatal is None or not self._restartable():
                    break
                if not self._restart_pipeline():
                    break
        except Exception as exc:
            log.exception("poll_loop_failed", error=repr(exc))
            self._on_fatal(exc)
        return self._shutdown()

    def _loop(self) -> None:
        assert self.source is not None
        s = self.settings
        commit_every = s.commit_interval_ms / 1000.0
        next_commit = time.monotonic() + commit_every
        next_log = time.monotonic() + s.log_interval_s
        next_health = 0.0
        while not self._stop.is_set() and self._fatal is None:
            self.health.beat()
            due = self.batcher.time_until_due()
            timeout = 0.1 if due is None else min(0.1, due)
            records = self.source.poll(timeout)
            if records:
                self._ingest(records)
            batch = self.batcher.poll_due()
            if batch is not None:
                self._enqueue([batch])
            self._push_ready()
            now = time.monotonic()
            if now >= next_commit:
                if self._unreachable_since is None:  # during an outage a commit can't land: don't churn
                    self._commit_async()
                next_commit = now + commit_every
            if now >= next_health:
                self._check_health()
                next_health = now + 1.0
            if now >= next_log:
                self._log_summary()
                next_log = now + s.log_interval_s

    # ---- stage threads and producer (a pipeline generation) -------------------------------------------
    def _start_pipeline(self) -> None:
        self._gen += 1
        gen = self._gen
        self._drop = drop = threading.Event()
        if self._force.is_set():
            drop.set()

        def current(callback: Callable[..., None]) -> Callable[..., None]:
            return lambda *args: callback(*args) if gen == self._gen else None

        self.sink = Sink.create(
            self.settings,
            on_done=current(self._on_done),
            on_fatal=current(self._on_fatal),
            on_dead_letter=current(self._on_dead_letter),
            stopping=drop,
        )
        self._threads = [
            threading.Thread(target=self._infer_loop, args=(drop,), name="sentiment-infer", daemon=True),
            threading.Thread(target=self._sink_loop, args=(self.sink, drop), name="sentiment-sink", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _stop_stages(self, timeout_s: float) -> bool:
        """Drop all queued work and end the stage threads (their in-flight work is dropped too)."""
        self._drop.set()
        self.batcher.flush("drop")
        with self._ready_lock:
            self._ready.clear()
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(queue.Empty):
                while True:
                    self.batch_q.get_nowait()
            try:
                self.batch_q.put_nowait(None)
                break
            except queue.Full:
                if time.monotonic() > deadline:
                    return False
        for thread in self._threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(queue.Empty):
            while True:
                self.out_q.get_nowait()
        return not any(thread.is_alive() for thread in self._threads)

    def _restartable(self) -> bool:
        return self.sink is not None and self.sink.producer_failed()

    def _restart_pipeline(self) -> bool:
        """The producer can't go on and no record is to blame: rewind and carry on with a new producer.

        The work in flight is dropped, every owned partition is rewound to its first unacknowledged record
        (acknowledged work stays committable), a new producer and new stage threads start, and after a pause
        (1 s, doubling up to 30 s while restarts keep coming) consumption resumes. False if it could not be done.
        """
        assert self.source is not None and self.sink is not None
        now = time.monotonic()
        pause = 1.0 if now - self._last_restart > 120.0 else min(30.0, max(1.0, 2 * self._restart_pause))
        self._restart_pause = pause
        self._last_restart = now
        log.warning("pipeline_restart", reason="producer_failed", error=repr(self._fatal), pause_s=pause)
        with contextlib.suppress(Exception):
            self.source.pause_all()
        if not self._stop_stages(self.settings.shutdown_timeout_s):
            log.error("pipeline_restart_failed", reason="stage threads did not stop")
            return False
        with contextlib.suppress(Exception):
            self.sink.close(0.0)
        resume = self.tracker.rewind()
        for tp, offset in resume.items():
            self.source.seek(tp, offset)
        log.info("pipeline_rewound", offsets={f"{t}:{p}": o for (t, p), o in resume.items()})
        self._fatal = None
        try:
            self._start_pipeline()
        except Exception as exc:
            log.error("pipeline_restart_failed", error=repr(exc))
            self._fatal = exc
            return False
        if self._stop.wait(pause):
            return True  # stopping: the loop ends at once and shuts down the new (idle) pipeline
        self.source.resume_all()
        self.metrics.set_paused_partitions(0)
        return True

    def _ingest(self, records: Sequence[SourceRecord]) -> None:
        accepted: list[SourceRecord] = []
        i = 0
        while i < len(records):
            j = i
            tp = (records[i].topic, records[i].partition)
            while j < len(records) and (records[j].topic, records[j].partition) == tp:
                j += 1
            group = records[i:j]
            if self.tracker.track(tp, [r.offset for r in group]):
                accepted.extend(group)
            else:  # partition no longer ours (revoked mid-poll): not tracked, not committed, the next owner reads it
                log.debug("records_dropped_unowned", topic=tp[0], partition=tp[1], count=len(group))
            i = j
        if not accepted:
            return
        with self._stats_lock:
            self.stats.consumed += len(accepted)
        self.metrics.record_consumed(accepted[0].topic, len(accepted))
        items, rejected = self.decoder.decode(accepted)
        assert self.sink is not None
        for bad in rejected:
            self.sink.dead_letter(bad.record, bad.error_type, bad.message)
        if items:
            self._enqueue(self.batcher.add(items))

    def _enqueue(self, batches: list[Batch]) -> None:
        if batches:
            with self._ready_lock:
                self._ready.extend(batches)

    def _push_ready(self) -> None:
        """Move ready batches into the bounded inference queue; pause/resume the consumer on backpressure."""
        with self._ready_lock:
            while self._ready:
                try:
                    self.batch_q.put_nowait(self._ready[0])
                except queue.Full:
                    break
                self._ready.popleft()
            backlog = bool(self._ready)
        assert self.source is not None
        if backlog and not self.source.paused:
            paused = self.source.pause_all()
            self.metrics.set_paused_partitions(paused)
            log.debug("backpressure_pause", partitions=paused, ready_batches=len(self._ready))
        elif not backlog and self.source.paused and not self._stop.is_set():
            self.source.resume_all()
            self.metrics.set_paused_partitions(0)
            log.debug("backpressure_resume")
        self.metrics.set_queue_depth(self.batch_q.qsize() + len(self._ready))

    # ---- inference -----------------------------------------------------------------------------------
    def _infer_loop(self, drop: threading.Event) -> None:
        chunk = self.settings.inference_batch_size
        limit = self.settings.max_batch_size
        carry: Batch | list[Item] | None = None
        ending = False
        while True:
            if ending:
                self.out_q.put(None)
                return
            batch = carry if carry is not None else self.batch_q.get()
            carry = None
            if batch is None:
                self.out_q.put(None)
                return
            items = list(batch.items if isinstance(batch, Batch) else batch)
            reason = getattr(batch, "flushed_by", "split")
            # batches that queued up while the model was busy run as one call (up to max_batch_size): fewer,
            # fuller model calls when the load nears capacity, so the queue drains instead of growing
            while len(items) < limit:
                try:
                    queued = self.batch_q.get_nowait()
                except queue.Empty:
                    break
                if queued is None:
                    ending = True
                    break
                more = queued.items if isinstance(queued, Batch) else queued
                if len(items) + len(more) > limit:
                    carry = queued
                    break
                items.extend(more)
                reason = "merged"
            try:
                start = time.perf_counter()
                result = self.model.infer_ids([item.ids for item in items], chunk_size=chunk)
                elapsed = time.perf_counter() - start
            except Exception as exc:
                log.warning("batch_inference_failed", size=len(items), error=repr(exc))
                self._infer_isolating(items, drop)
                continue
            with self._stats_lock:
                st = self.stats
                st.batches += 1
                st.batch_items += len(items)
                st.real_tokens += result.real_tokens
                st.padded_tokens += result.padded_tokens
                st.infer_seconds += elapsed
            self.metrics.record_batch(len(items), result.real_tokens, result.padded_tokens, elapsed)
            log.debug(
                "batch_inferred",
                size=len(items),
                tokens=result.real_tokens,
                padded=result.padded_tokens,
                ms=round(elapsed * 1000, 2),
                reason=reason,
            )
            self._put_out(items, result.probs, drop)

    def _infer_isolating(self, items: list[Item], drop: threading.Event) -> None:
        """A failing batch is split in halves until the bad record(s) are found; the rest is processed."""
        if len(items) == 1:
            try:
                result = self.model.infer_ids([items[0].ids])
            except Exception as exc:
                assert self.sink is not None
                self.sink.dead_letter(items[0].record, ErrorType.INFERENCE_FAILED, repr(exc))
                return
            self._put_out(items, result.probs, drop)
            return
        mid = len(items) // 2
        for half in (items[:mid], items[mid:]):
            try:
                result = self.model.infer_ids([item.ids for item in half])
            except Exception:
                self._infer_isolating(half, drop)
                continue
            self._put_out(half, result.probs, drop)

    def _put_out(self, items: list[Item], probs: np.ndarray, drop: threading.Event) -> None:
        while not drop.is_set():
            try:
                self.out_q.put((items, probs), timeout=0.5)
                return
            except queue.Full:
                pass

    # ---- sink ----------------------------------------------------------------------------------------
    def _sink_loop(self, sink: Sink, drop: threading.Event) -> None:
        while True:
            msg = self.out_q.get()
            if msg is None:
                return
            if drop.is_set():
                continue
            items, probs = msg
            try:
                outs = self.encoder.encode(items, probs)
            except Exception:
                outs = []
                for item, row in zip(items, probs, strict=True):
                    try:
                        outs.extend(self.encoder.encode([item], row[None, :]))
                    except Exception as exc:
                        sink.dead_letter(item.record, ErrorType.ENCODE_FAILED, repr(exc))
            for out in outs:
                if drop.is_set():
                    break
                sink.send_output(out)

    # ---- delivery callbacks (producer IO thread) -----------------------------------------------------
    def _on_done(self, record: SourceRecord, out: OutRecord | None) -> None:
        self.tracker.ack((record.topic, record.partition), record.offset)
        if out is None:
            return
        latency = time.time() - out.item.received
        with self._stats_lock:
            self.stats.produced += 1
            self.stats.labels[out.label] += 1
            self.stats.latencies.append(latency)
        self.metrics.record_produced(out.topic, 1)
        self.metrics.observe_latencies([latency])
        if self.on_output is not None:
            self.on_output(out)

    def _on_dead_letter(self, reason: str) -> None:
        with self._stats_lock:
            self.stats.dead_lettered += 1
            self.stats.dlq_reasons[reason] += 1
        self.metrics.record_dead_letter(reason)

    def _on_fatal(self, exc: BaseException) -> None:
        if self._fatal is None:
            log.error("fatal_delivery_error", error=repr(exc), note="unacknowledged offsets stay uncommitted")
            self._fatal = exc

    # ---- commits ---------------------------------------------------------------------------------------
    def _commit_async(self) -> None:
        offsets = self.tracker.committable()
        if not offsets:
            return
        assert self.source is not None
        self.tracker.mark_committed(offsets)

        def done(_offsets: Any, response: Any) -> None:
            if isinstance(response, BaseException):
                self.tracker.mark_committed({tp: -1 for tp in offsets})  # retried at the next interval
                self._commit_failures += 1
                now = time.monotonic()
                # Once per log interval (an outage would otherwise log every commit_interval_ms).
                if now - self._last_commit_failure_log >= self.settings.log_interval_s:
                    self._last_commit_failure_log = now
                    log.warning("commit_failed", error=repr(response), failures=self._commit_failures)
            else:
                if self._commit_failures:
                    log.info("commit_recovered", failures=self._commit_failures)
                    self._commit_failures = 0
                    self._last_commit_failure_log = 0.0
                self.metrics.record_commit(offsets)

        self.source.commit_async(offsets, callback=done)
        log.debug("commit", offsets={f"{t}:{p}": o for (t, p), o in offsets.items()})

    # ---- rebalance (consumer IO thread; the poll loop is blocked in poll() meanwhile) -----------------
    def prepare_revoke(self, partitions: list[Any]) -> Callable[[], dict[Any, int] | None]:
        keys = [(tp[0], tp[1]) for tp in partitions]
        batch = self.batcher.flush("drain")
        if batch is not None:
            self._enqueue([batch])
        # While shutting down (the consumer's close() revokes too) the shutdown's own deadline applies.
        deadline = self._shutdown_deadline or time.monotonic() + self.settings.shutdown_timeout_s
        started = time.monotonic()

        def done() -> dict[Any, int] | None:
            self._push_ready()
            drained = self.tracker.pending_count(keys) == 0
            if not drained and time.monotonic() < deadline and not self._force.is_set() and self._fatal is None:
                return None
            if not drained:
                log.warning("revoke_drain_incomplete", pending=self.tracker.pending_count(keys))
            log.info("revoke_drained", seconds=round(time.monotonic() - started, 3))
            return self.tracker.committable(keys)

        return done

    def revoke_done(self, partitions: list[Any], offsets: dict[Any, int]) -> None:
        self.tracker.remove(partitions)
        self.metrics.forget_partitions(partitions)
        if offsets:
            self.metrics.record_commit(offsets)
        self._after_assignment_change()

    def assigned(self, partitions: list[Any]) -> None:
        self.tracker.assign(partitions)
        if self.source is not None:
            self.source.ensure_paused_state()
        self._after_assignment_change()

    def lost(self, partitions: list[Any]) -> None:
        self.tracker.remove(partitions)
        self.metrics.forget_partitions(partitions)
        self._after_assignment_change()

    def _after_assignment_change(self) -> None:
        owned = len(self.tracker.partitions())
        self.metrics.set_assigned_partitions(owned)
        self.health.set_assignment(owned, owned == 0)

    # ---- health & logs ---------------------------------------------------------------------------------
    def _check_health(self) -> None:
        assert self.source is not None
        reachable = self.source.broker_reachable()
        self.health.set_broker_reachable(reachable)
        now = time.monotonic()
        if not reachable:
            if self._unreachable_since is None:
                self._unreachable_since = now
            if now - self._last_outage_log >= self.settings.log_interval_s:
                self._last_outage_log = now
                log.warning("broker_unreachable", seconds=round(now - self._unreachable_since, 1))
            return
        if self._unreachable_since is not None:
            log.info("broker_reachable", outage_s=round(now - self._unreachable_since, 1))
            self._unreachable_since = None
            self._last_outage_log = 0.0
        try:
            self._lags = self.source.lag()
        except Exception as exc:
            log.debug("lag_unavailable", error=repr(exc))
            return
        self.metrics.set_lag(self._lags)

    def _log_summary(self) -> None:
        with self._stats_lock:
            snap = self.stats.snapshot()
        log.info(
            "throughput",
            **{k: v for k, v in snap.items() if k not in ("labels", "dlq_reasons")},
            lag=sum(self._lags.values()) if self._lags else None,
            queue=self.batch_q.qsize(),
        )

    # ---- shutdown --------------------------------------------------------------------------------------
    def _shutdown(self) -> int:
        """Drain (graceful only), then commit what was acknowledged and close.

        Time bound: the drain and the producer flush end by ``shutdown_timeout_s``; then the final commit and
        closing the producer take at most ``CLOSE_STEP_S`` each, leaving the group at most the session timeout
        (:func:`close_bound_s`). A forced or fatal stop skips the drain. Only acknowledged work is committed.
        """
        assert self.source is not None and self.sink is not None
        s = self.settings
        log.info("shutdown_started", forced=self._force.is_set(), fatal=repr(self._fatal) if self._fatal else None)
        deadline = self._shutdown_deadline = time.monotonic() + s.shutdown_timeout_s
        with contextlib.suppress(Exception):
            self.source.pause_all()
        if self._fatal is None and not self._force.is_set():
            batch = self.batcher.flush("drain")
            if batch is not None:
                self._enqueue([batch])
            while time.monotonic() < deadline and not self._force.is_set() and self._fatal is None:
                self._push_ready()
                if not self._ready and self.tracker.wait_drained(timeout=0.05):
                    break
        # stop the stage threads: after a drain they end with the queues; a forced or fatal stop drops what is
        # queued (daemons: it doesn't wait for them)
        if not self._force.is_set() and self._fatal is None:
            with contextlib.suppress(queue.Full):
                self.batch_q.put(None, timeout=max(0.1, deadline - time.monotonic()))
            for thread in self._threads:
                thread.join(timeout=max(0.1, deadline - time.monotonic()))
        else:
            self._stop_stages(0.1)
        if not self._force.is_set():
            self.sink.flush(max(0.1, deadline - time.monotonic()))
        pending = self.tracker.pending_count()
        offsets = self.tracker.committable()
        try:
            commit_timeout = min(10.0, max(CLOSE_STEP_S, deadline - time.monotonic()))
            self.source.commit_sync(offsets, timeout_s=CLOSE_STEP_S if self._force.is_set() else commit_timeout)
            if offsets:
                self.tracker.mark_committed(offsets)  # the close() revoke below has nothing left to commit
                self.metrics.record_commit(offsets)
        except Exception as exc:
            log.error("final_commit_failed", error=repr(exc))
            pending = pending or -1
        try:
            self.source.close(timeout_s=leave_group_timeout_s(s))
        except Exception as exc:
            log.warning("consumer_close_failed", error=repr(exc))
        try:
            self.sink.close(0.0 if self._force.is_set() else CLOSE_STEP_S)
        except Exception as exc:
            log.warning("producer_close_failed", error=repr(exc))
        with self._stats_lock:
            snap = self.stats.snapshot()
        complete = pending == 0 and self._fatal is None and not self._force.is_set()
        log.info(
            "worker_stopped",
            complete=complete,
            pending=pending,
            committed={f"{t}:{p}": o for (t, p), o in offsets.items()},
            **{k: v for k, v in snap.items() if k not in ("labels", "dlq_reasons")},
        )
        return EXIT_OK if complete else EXIT_INCOMPLETE


def leave_group_timeout_s(settings: Settings) -> float:
    return min(LEAVE_GROUP_MAX_S, max(CLOSE_STEP_S, settings.session_timeout_ms / 1000.0))


def close_bound_s(settings: Settings) -> float:
    """Most seconds a stop takes after the drain deadline: final commit, leaving the group, closing the producer."""
    return CLOSE_STEP_S + leave_group_timeout_s(settings) + CLOSE_STEP_S
