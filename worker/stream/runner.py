"""The runner wires the stages: source → decode → batcher (the inference queue) → infer → encode → sink → commit.

Threads: the poll loop (the caller's: poll, decode, tokenise per poll, dead-letter bad input, put records in the
inference queue, commit acknowledged offsets, log summaries); the inference thread (``infer.py``: takes a batch from
the queue when the model is ready, ``batcher.py`` decides what it holds; ONNX Runtime releases the GIL, so polling and
producing overlap with compute); the sink thread (``encode.py``'s stage: encode and send; delivery callbacks ack
offsets). The queues between them are bounded; when the inference queue is full the consumer's partitions are paused
(backpressure) and resumed as soon as the stage takes a batch.

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
from collections.abc import Callable, Sequence
from typing import Any

from worker.model.buckets import resolve_batching
from worker.observability import get_logger
from worker.records import ErrorType
from worker.settings import Settings
from worker.stream.batcher import InferQueue
from worker.stream.commit import Committer
from worker.stream.common import ports, timing
from worker.stream.common.guard import Breaker, start_stage_threads
from worker.stream.common.stats import RunStats
from worker.stream.common.swap import ModelSlot
from worker.stream.common.types import Scorer, SourceRecord
from worker.stream.decode import Decoder
from worker.stream.encode import Encoder, EncodeStage, OutRecord
from worker.stream.infer import InferStage, Outbox
from worker.stream.kafka.cluster import Cluster
from worker.stream.kafka.watch import BrokerWatch
from worker.stream.offsets import OffsetTracker
from worker.stream.sink import Sink
from worker.stream.source import Source

log = get_logger(__name__)

EXIT_OK = 0
EXIT_INCOMPLETE = 1  # drain timed out, forced stop, or a fatal delivery error: unacknowledged work not committed
POLL_WAIT_S = 0.1  # longest a poll waits for records (the loop's other duties: commits, health, summaries)


class Runner:
    def __init__(
        self,
        settings: Settings,
        model: ports.Model,
        *,
        metrics: ports.PipelineMetrics | None = None,
        health: ports.HealthReporter | None = None,
        on_output: Callable[[OutRecord], None] | None = None,
        on_scored: Callable[[list[Any], Any, Scorer], None] | None = None,  # shadow mode (worker/rollout/)
        tracer: ports.BatchTracer | None = None,  # spans per model batch (worker/tracing/); None: the no-op
    ) -> None:
        settings.require_input()
        self.settings = s = settings
        self.slot = ModelSlot(model)  # the model in use (``model``); a hot swap replaces it (swap.py)
        self.on_scored = on_scored
        self.tracer = tracer
        self.metrics: ports.PipelineMetrics = metrics or ports.NullMetrics()
        self.health: ports.HealthReporter = health or ports.NullHealth()
        self.on_output = on_output
        self.stats = RunStats(self.metrics)
        self.tracker = OffsetTracker()
        # source → decode → [inbox: the batcher] → infer → [out_q] → encode → sink → commit
        self.source: Source | None = None  # created by run(): subscribing starts the group membership
        self.decoder = Decoder.from_settings(  # the format; a registry outage → not ready, records read again
            s.input, self.slot.tokenize, output=s.output, registry=s.schema_registry, labels=model.labels,
            on_unavailable=self.health.set_input_unavailable,
        )  # fmt: skip
        # "auto" batch sizes: by the provider the model's session got (a fallback to the CPU gets the CPU sizes)
        self.batching = b = resolve_batching(s.batching, model.provider)
        self.inbox = InferQueue.from_batching(b)
        self.out_q = Outbox(maxsize=b.queue_max_batches)
        self.encoder = Encoder.from_settings(s.output, labels=model.labels, model_meta=model.model_meta())
        self.sink: Sink | None = None  # one per pipeline generation, with the stage threads
        self.committer = Committer(
            self.tracker, self.metrics, interval_s=s.commit_interval_ms / 1000.0, log_interval_s=s.log_interval_s
        )
        self.broker = BrokerWatch(self.health, self.metrics, log_interval_s=s.log_interval_s)
        self.cluster = Cluster(  # bootstrap, output and dead-letter topics
            s.kafka, s.input, s.output, model.labels, self.health, self.broker, sink=lambda: self.sink
        )
        # lifecycle
        self._stop = threading.Event()  # stop() was called: leave the loop, shut down
        self._force = threading.Event()  # a forced stop: no drain
        self._drop = threading.Event()  # the current stage threads drop their work (forced stop, restart)
        self._gen = 0  # pipeline generation: callbacks of a replaced producer are ignored
        self._threads: list[threading.Thread] = []
        self._fatal: BaseException | None = None
        self._infer_down = threading.Event()  # the model's session is failing and being rebuilt: consume nothing
        self._backoff = timing.RestartBackoff()
        self._deadline: timing.Deadline | None = None  # the shutdown's, once it started
        self.metrics.set_model_info(**ports.model_info(model))
        self.health.set_model_loaded(True)

    @property
    def model(self) -> ports.Model:
        return self.slot.model

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

    def _graceful(self) -> bool:
        return not self._force.is_set() and self._fatal is None

    # ---- run loop ------------------------------------------------------------------------------------
    def run(self) -> int:
        """Run until stopped (or a fatal error); the exit code: EXIT_OK when everything consumed was committed."""
        s = self.settings
        if not self.cluster.open(self._stop, self._open_clients, release=self._close):
            return EXIT_OK  # stopped while waiting for the cluster: nothing was consumed
        self.health.set_assignment(0, True)
        log.info(
            "worker_started",
            topics=s.input_topics or None,
            pattern=s.input_pattern,
            group_id=s.group_id,
            bootstrap_servers=s.bootstrap_servers,
            provider=self.model.provider,
            model=self.model.model_id,
            max_batch_size=self.batching.max_batch_size,
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
        next_log = time.monotonic() + self.settings.log_interval_s
        while not self._stop.is_set() and self._fatal is None:
            self.health.beat()
            records = self._poll()
            if records:
                self._ingest(records)
            self._backpressure()
            self.stats.flush()  # acknowledged outputs → metrics
            self.committer.tick(self.source, skip=self.broker.unreachable)  # in an outage a commit can't land
            self.broker.tick(self.source)
            self.cluster.tick(self.source)  # hold input topics whose output topics are missing
            if time.monotonic() >= next_log:
                self._log_summary()
                next_log = time.monotonic() + self.settings.log_interval_s

    def _poll(self) -> list[SourceRecord]:
        """The next records, waiting at most ``POLL_WAIT_S``. Under backpressure it waits for the inference stage to
        take a batch instead: a paused consumer's poll() sleeps its whole timeout."""
        assert self.source is not None
        if self.source.paused and self.inbox.full():
            self.inbox.wait_for_room(POLL_WAIT_S)
            return self.source.poll(0)
        return self.source.poll(POLL_WAIT_S)

    def _ingest(self, records: Sequence[SourceRecord]) -> None:
        """source → decode → batcher: track, count and decode one poll's records into the inference queue;
        dead-letter bad ones."""
        accepted = self.tracker.track_polled(records)
        if not accepted:
            return
        self.stats.count_consumed(accepted)
        items, rejected = self.decoder.decode(accepted)
        self.decoder.read_again(self.tracker, self.source)  # records deferred (registry down): polled again later
        assert self.sink is not None
        for bad in rejected:
            self.sink.dead_letter(bad.record, bad.error_type, bad.message)
        if items:
            self.inbox.put(items)

    def _backpressure(self) -> None:
        """Pause the consumer while the inference queue is full (or the producer's buffer, or the model is down);
        resume it when there is room again."""
        backlog = self.inbox.full() or (self.sink is not None and self.sink.acks_full())  # dead letters fill it too
        assert self.source is not None
        hold = self._infer_down.is_set() or self.decoder.waiting()  # the model or the input's registry is down
        if (backlog or hold) and not self.source.paused:
            paused = self.source.pause_all()
            self.metrics.set_paused_partitions(paused)
            log.debug("backpressure_pause", partitions=paused, waiting=len(self.inbox))
        elif not backlog and self.source.paused and not self._stop.is_set() and not hold:
            self.source.resume_all()
            self.metrics.set_paused_partitions(0)
            log.debug("backpressure_resume")
        self.metrics.set_queue_depth(self.inbox.depth())

    def items_held(self) -> dict[str, int]:
        """Records waiting in each place between the poll and the model's output (a diagnostic, for tests)."""
        return {**self.inbox.items_held(), "encode_queue": self.out_q.records()}

    # ---- a pipeline generation: a producer and the stage threads ------------------------------------
    def _open_clients(self) -> None:
        s = self.settings
        self.source = Source(s.kafka, s.input, handler=self)  # subscribing starts the group membership
        self._start_pipeline()

    def _start_pipeline(self) -> None:
        self._gen += 1
        gen = self._gen
        self._drop = drop = threading.Event()
        if self._force.is_set():
            drop.set()
        self.inbox.reopen()  # after a restart: the previous generation's stage thread has ended

        def current(callback: Callable[..., None]) -> Callable[..., None]:
            return lambda *args: callback(*args) if gen == self._gen else None

        self.sink = Sink.create(
            self.settings.kafka,
            self.settings.output,
            max_length=self.settings.max_length,
            on_done=current(self._on_done),
            on_fatal=current(self._on_fatal),
            on_dead_letter=current(self.stats.count_dead_letter),
            stopping=drop,
        )
        infer, encode = self._stages(self.sink)
        loops = {"sentiment-infer": infer.run, "sentiment-sink": encode.run}
        self._threads = start_stage_threads(loops, drop, health=self.health, on_fatal=current(self._stage_failed))

    def _stages(self, sink: Sink) -> tuple[InferStage, EncodeStage]:
        """inbox → infer → out_q → encode → ``sink``; records they can't process are dead-lettered."""
        s = self.settings
        infer = InferStage(
            self.slot.model,
            self.inbox,
            self.out_q,
            chunk_size=self.batching.chunk_size,
            stats=self.stats,
            on_failed=lambda item, error: sink.dead_letter(item.record, ErrorType.INFERENCE_FAILED, error),
            breaker=Breaker.from_settings(s.inference, self.slot.model, health=self.health, down=self._infer_down),
            slot=self.slot,
            on_scored=self.on_scored,
            tracer=self.tracer,
        )
        encode = EncodeStage(
            self.encoder,
            self.out_q,
            send=sink.send_output,  # outputs wait while producer_buffer_bytes await acks
            on_failed=lambda item, error: sink.dead_letter(item.record, ErrorType.ENCODE_FAILED, error),
        )
        return infer, encode

    def _stop_stages(self, deadline: timing.Deadline) -> bool:
        """Drop all queued work and end the stage threads (their in-flight work is dropped too)."""
        self._drop.set()
        self.inbox.drop_and_end()
        for thread in self._threads:
            thread.join(timeout=deadline.remaining(at_least=0.1))
        with contextlib.suppress(queue.Empty):
            while True:
                self.out_q.get_nowait()
        return not any(thread.is_alive() for thread in self._threads)

    # ---- restart -------------------------------------------------------------------------------------
    def _restartable(self) -> bool:
        return self.sink is not None and self.sink.producer_failed()

    def _restart_pipeline(self) -> bool:
        """The producer can't go on and no record is to blame: rewind and carry on with a new producer.

        The work in flight is dropped, every owned partition is rewound to its first unacknowledged record
        (acknowledged work stays committable), a new producer and new stage threads start, and after a pause
        (:class:`RestartBackoff`) consumption resumes. False if it could not be done.
        """
        assert self.source is not None and self.sink is not None
        pause = self._backoff.next_pause(time.monotonic())
        log.warning("pipeline_restart", reason="producer_failed", error=repr(self._fatal), pause_s=pause)
        with contextlib.suppress(Exception):
            self.source.pause_all()
        if not self._stop_stages(timing.Deadline(self.settings.shutdown_timeout_s)):
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

    # ---- delivery callbacks (producer IO thread) -----------------------------------------------------
    def _on_done(self, record: SourceRecord, out: OutRecord | None) -> None:
        self.tracker.ack((record.topic, record.partition), record.offset)
        if out is None:
            return
        self.stats.count_produced(out.topic, out.label, time.time() - out.item.received)
        if self.on_output is not None:
            self.on_output(out)

    def _on_fatal(self, exc: BaseException) -> None:
        if self._fatal is None:
            log.error("fatal_delivery_error", error=repr(exc), note="unacknowledged offsets stay uncommitted")
            self._fatal = exc

    def _stage_failed(self, exc: BaseException) -> None:  # logged where it happened; commit only acknowledged work
        self._fatal = self._fatal or exc

    # ---- rebalance (consumer IO thread; the poll loop is blocked in poll() meanwhile) -----------------
    def prepare_revoke(self, partitions: list[Any]) -> Callable[[], dict[Any, int] | None]:
        self.inbox.flush()  # what waits runs at once
        # While shutting down (the consumer's close() revokes too) the shutdown's own deadline applies.
        deadline = self._deadline or timing.Deadline(self.settings.shutdown_timeout_s)
        return self.committer.drain_then_commit(
            partitions, drain=self._backpressure, deadline=deadline, give_up=lambda: not self._graceful()
        )

    def revoke_done(self, partitions: list[Any], offsets: dict[Any, int]) -> None:
        self.committer.committed_on_revoke(offsets)  # before forgetting them (or it re-adds their series)
        self.tracker.remove(partitions)
        self.metrics.forget_partitions(partitions)
        self._after_assignment_change()

    def assigned(self, partitions: list[Any]) -> None:
        self.tracker.assign(partitions)
        if self.source is not None:
            self.source.ensure_paused_state()
            self.cluster.assigned(self.source)
        self._after_assignment_change()

    def lost(self, partitions: list[Any]) -> None:
        self.tracker.remove(partitions)
        self.metrics.forget_partitions(partitions)
        self._after_assignment_change()

    def _after_assignment_change(self) -> None:
        owned = len(self.tracker.partitions())
        self.metrics.set_assigned_partitions(owned)
        self.health.set_assignment(owned, owned == 0)

    def _log_summary(self) -> None:
        snap = {k: v for k, v in self.stats.snapshot().items() if k not in ("labels", "dlq_reasons")}
        log.info("throughput", **snap, lag=self.broker.total_lag(), queue=self.inbox.depth())

    # ---- shutdown --------------------------------------------------------------------------------------
    def _shutdown(self) -> int:
        """Drain (graceful only), then commit what was acknowledged and close.

        Time bound: the drain and the producer flush end by ``shutdown_timeout_s`` (one :class:`Deadline` for
        every step); then the final commit and closing the producer take at most ``CLOSE_STEP_S`` each, leaving
        the group at most the session timeout (:func:`close_bound_s`). A forced or fatal stop skips the drain.
        Only acknowledged work is committed.
        """
        assert self.source is not None and self.sink is not None
        log.info("shutdown_started", forced=self._force.is_set(), fatal=repr(self._fatal) if self._fatal else None)
        deadline = self._deadline = timing.Deadline(self.settings.shutdown_timeout_s)
        with contextlib.suppress(Exception):
            self.source.pause_all()
        if self._graceful():
            self._drain(deadline)
        self._end_stages(deadline)
        if not self._force.is_set():
            self.sink.flush(deadline.remaining(at_least=0.1))
        pending = self.tracker.pending_count()
        forced = self._force.is_set()
        commit_s = (
            timing.CLOSE_STEP_S
            if forced
            else min(timing.FINAL_COMMIT_MAX_S, deadline.remaining(at_least=timing.CLOSE_STEP_S))
        )
        offsets, committed = self.committer.commit_final(self.source, commit_s)
        if not committed:
            pending = pending or -1
        self._close()
        complete = pending == 0 and self._graceful()
        log.info(
            "worker_stopped",
            complete=complete,
            pending=pending,
            committed={f"{t}:{p}": o for (t, p), o in offsets.items()},
            **{k: v for k, v in self.stats.snapshot().items() if k not in ("labels", "dlq_reasons")},
        )
        return EXIT_OK if complete else EXIT_INCOMPLETE

    def _drain(self, deadline: timing.Deadline) -> None:
        """Run what waits at once and wait until everything consumed is acknowledged (or the deadline, or a force)."""
        self.inbox.flush()
        while not deadline.expired() and self._graceful():
            self._backpressure()
            if self.tracker.wait_drained(timeout=0.05):
                break

    def _end_stages(self, deadline: timing.Deadline) -> None:
        """After a drain the stage threads end with their queues; a forced or fatal stop drops what is queued."""
        if not self._graceful():
            self._stop_stages(timing.Deadline(0.1))
            return
        self.inbox.end()
        for thread in self._threads:
            thread.join(timeout=deadline.remaining(at_least=0.1))

    def _close(self) -> None:
        """Leave the group and close the consumer, then close the producer (after a failed start: what exists)."""
        self.cluster.close()
        try:
            if self.source is not None:
                self.source.close(timeout_s=timing.leave_group_timeout_s(self.settings.input))
        except Exception as exc:
            log.warning("consumer_close_failed", error=repr(exc))
        try:
            if self.sink is not None:
                self.sink.close(0.0 if self._force.is_set() else timing.CLOSE_STEP_S)
        except Exception as exc:
            log.warning("producer_close_failed", error=repr(exc))
