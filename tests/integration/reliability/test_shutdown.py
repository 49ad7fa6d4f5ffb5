"""Graceful shutdown of the real worker process (``run``), against the real broker and exported model.

- SIGTERM while records wait in an open batch (long ``max_wait_ms``): the batch is flushed, inferred, produced
  and committed, exit 0.
- SIGTERM while a batch is inside the model (a slow model: ``slow_worker`` sleeps before each real model call):
  the in-flight and queued batches are finished, produced and committed, exit 0 within the bound; a restart
  then finishes the topic with 0 lost and 0 duplicates.
- A second SIGTERM during a slow drain forces exit 1 at once, and a drain longer than ``shutdown_timeout_s``
  ends in exit 1 within the bound: either way only acknowledged records are committed (every committed offset
  has its output), and a restart finishes with 0 lost.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter

import pytest

from devtools.ports import free_port
from tests.support.feeds import OutputReader, create_input_and_output, group_ids, message
from tests.support.http import http_status
from tests.support.kafka_utils import SAFER_GROUP_CONFIG, committed_offsets, consume_all, produce_values
from tests.support.metrics import metric, scrape
from tests.support.waits import wait_for
from tests.support.worker_process import WorkerProcess, worker_env
from worker.stream.common.timing import CLOSE_STEP_S, LEAVE_GROUP_MAX_S

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 2
SLOW = "tests.integration.reliability.slow_worker"
# The bound on exit after the first signal: the drain (shutdown_timeout_s), then the final commit, leaving the
# group and closing the producer (CLOSE_STEP_S each), plus interpreter teardown on a busy machine.
EXIT_MARGIN_S = 2 * CLOSE_STEP_S + min(LEAVE_GROUP_MAX_S, SAFER_GROUP_CONFIG["session_timeout_ms"] / 1000) + 8.0


def _setup(broker, topic: str, count: int) -> dict[int, int]:
    create_input_and_output(broker.bootstrap, topic, PARTITIONS)
    metas = produce_values(broker.bootstrap, topic, [(f"k{i % 10}".encode(), message(i)) for i in range(count)])
    end: dict[int, int] = {}
    for meta in metas:
        end[meta.partition] = max(end.get(meta.partition, 0), meta.offset + 1)
    return end


def _after(worker: WorkerProcess, name: str, start_event: str = "worker_started") -> list[dict]:
    """Events ``name`` logged after ``start_event`` (the model warm-up also runs inference)."""
    events = worker.events()
    starts = [i for i, e in enumerate(events) if e.get("event") == start_event]
    return [e for e in events[starts[0] + 1 :] if e.get("event") == name] if starts else []


def _finish(broker, topic: str, group: str, model_dir, total: int, log_path) -> list:
    """A normal worker finishes the topic; returns every output record."""
    worker = WorkerProcess(worker_env(broker.bootstrap, topic, group, model_dir), log_path).start()
    try:
        out = consume_all(broker.bootstrap, f"{topic}.sentiment", total, timeout_s=120, settle_s=1.0)
        wait_for(lambda: worker.events("partitions_assigned"), 60, what="the finishing worker to join")
    finally:
        assert worker.stop(60) == 0
    return out


def _slow_worker_env(
    broker, topic: str, group: str, model_dir, shutdown_timeout: float, *, infer_delay_s: float
) -> dict[str, str]:
    """Small batches, a short inference queue and a model slowed by ``infer_delay_s`` per call (slow_worker)."""
    env = worker_env(
        broker.bootstrap,
        topic,
        group,
        model_dir,
        max_batch_size=32,
        max_poll_records=64,
        queue_max_batches=2,
        commit_interval_ms=200,
        shutdown_timeout_s=shutdown_timeout,
    )
    env["RELIABILITY_INFER_DELAY_S"] = str(infer_delay_s)
    return env


def test_sigterm_with_an_open_batch_flushes_it_produces_commits_and_exits_0(
    broker, topic_name, tiny_onnx_dir, tmp_path
) -> None:
    count = 300
    end = _setup(broker, topic_name, count)
    (group,) = group_ids(1, "open-batch")
    port = free_port()
    env = worker_env(
        broker.bootstrap,
        topic_name,
        group,
        tiny_onnx_dir,
        max_batch_size=4096,
        max_wait_ms=600_000,  # the batch would stay open for 10 minutes
        metrics_port=port,
        commit_interval_ms=200,
        shutdown_timeout_s=30,
    )
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        wait_for(lambda: http_status(f"http://127.0.0.1:{port}/readyz") == 200, 90, what="readiness")
        wait_for(
            lambda: metric(scrape(port, timeout=2), "sentiment_messages_consumed_total") >= count,
            60,
            what="all records polled",
        )
        time.sleep(1.0)  # several commit intervals: nothing is done, so nothing may be committed
        before = len(consume_all(broker.bootstrap, f"{topic_name}.sentiment", 1, timeout_s=1.0))
        committed_before = committed_offsets(broker.bootstrap, group, topic_name)
        signalled = time.monotonic()
        worker.signal(signal.SIGTERM)
        rc = worker.wait(30 + EXIT_MARGIN_S)
        exit_s = time.monotonic() - signalled
    finally:
        if worker.alive():
            worker.kill()
    out = consume_all(broker.bootstrap, f"{topic_name}.sentiment", count, timeout_s=10, settle_s=0.5)
    committed = committed_offsets(broker.bootstrap, group, topic_name)
    stopped = worker.events("worker_stopped")[-1]
    print(
        f"\nopen-batch SIGTERM: polled={count} outputs_before={before} "
        f"committed_before={sum(committed_before.values())} outputs_after={len(out)} "
        f"committed_after={sum(committed.values())} rc={rc} exit_s={exit_s:.2f}"
    )
    assert rc == 0, worker.log_text()[-3000:]
    assert before == 0 and committed_before == {}, "records in an open batch are neither produced nor committed"
    assert sorted(json.loads(r.value)["id"] for r in out) == list(range(count))
    assert committed == end
    assert stopped["complete"] is True and stopped["pending"] == 0


def test_sigterm_mid_inference_finishes_in_flight_batches_and_exits_0_within_the_bound(
    broker, topic_name, tiny_onnx_dir, tmp_path
) -> None:
    count = 1500
    _setup(broker, topic_name, count)
    (group,) = group_ids(1, "mid-batch")
    shutdown_timeout = 60
    env = _slow_worker_env(broker, topic_name, group, tiny_onnx_dir, shutdown_timeout, infer_delay_s=0.4)
    reader = OutputReader(broker.bootstrap, f"{topic_name}.sentiment", PARTITIONS)
    reader.start()
    worker = WorkerProcess(env, tmp_path / "slow.log", module=SLOW).start()
    try:
        wait_for(lambda: len(_after(worker, "test_infer_started")) >= 3, 90, 0.05, "steady inference")
        time.sleep(0.15)  # inside the 0.4 s model call of a batch
        at_signal = len(reader)
        signalled = time.monotonic()
        worker.signal(signal.SIGTERM)
        rc = worker.wait(shutdown_timeout + EXIT_MARGIN_S)
        exit_s = time.monotonic() - signalled
        produced_by_first = reader.wait_caught_up(time.monotonic() + 1.0)
    finally:
        if worker.alive():
            worker.kill()
        reader.stop()
    stopped = worker.events("worker_stopped")[-1]
    committed = sum(committed_offsets(broker.bootstrap, group, topic_name).values())
    batches_after_signal = len(_after(worker, "test_infer_started", "signal_received"))
    print(
        f"\nmid-inference SIGTERM: outputs_at_signal={at_signal} batches_inferred_after_signal={batches_after_signal}"
        f" outputs_at_exit={produced_by_first} consumed={stopped['consumed']} committed={committed} rc={rc}"
        f" exit_s={exit_s:.2f} (bound {shutdown_timeout}+{EXIT_MARGIN_S:.0f})"
    )
    assert rc == 0, worker.log_text()[-3000:]
    assert exit_s <= shutdown_timeout + EXIT_MARGIN_S
    assert stopped["complete"] is True and stopped["pending"] == 0
    assert produced_by_first > at_signal and batches_after_signal >= 1, "work was in flight at the signal"
    assert stopped["consumed"] == stopped["produced"] == produced_by_first == committed
    assert committed < count, "the stop should land mid-stream"

    out = _finish(broker, topic_name, group, tiny_onnx_dir, count, tmp_path / "finish.log")
    ids = Counter(json.loads(r.value)["id"] for r in out)
    lost = set(range(count)) - set(ids)
    duplicates = sum(ids.values()) - len(ids)
    print(f"after restart: messages={count} lost={len(lost)} duplicates={duplicates}")
    assert not lost and duplicates == 0


# drain_timeout: when SIGTERM lands, one batch is inside the model and at least two more are queued
# (queue_max_batches=2, backpressure), so the drain needs ≥ 2 × delay_s = 6 s > shutdown_timeout_s = 4 s.
@pytest.mark.parametrize(
    ("case", "delay_s", "shutdown_timeout"),
    [("second_sigterm", 1.5, 120), ("drain_timeout", 3.0, 4)],
)
def test_incomplete_drain_exits_1_and_commits_only_acknowledged_records(
    case, delay_s, shutdown_timeout, broker, topic_name, tiny_onnx_dir, tmp_path
) -> None:
    count = 1500
    _setup(broker, topic_name, count)
    (group,) = group_ids(1, case.replace("_", "-"))
    env = _slow_worker_env(broker, topic_name, group, tiny_onnx_dir, shutdown_timeout, infer_delay_s=delay_s)
    worker = WorkerProcess(env, tmp_path / "slow.log", module=SLOW).start()
    try:
        wait_for(lambda: len(_after(worker, "test_infer_started")) >= 2, 90, 0.05, "steady inference")
        signalled = time.monotonic()
        worker.signal(signal.SIGTERM)
        bound = shutdown_timeout + EXIT_MARGIN_S
        if case == "second_sigterm":
            time.sleep(delay_s)  # the drain is under way (it would take many batches of delay_s)
            signalled = time.monotonic()
            worker.signal(signal.SIGTERM)
            bound = EXIT_MARGIN_S
        rc = worker.wait(bound + 30)
        exit_s = time.monotonic() - signalled
    finally:
        if worker.alive():
            worker.kill()
    stopped = worker.events("worker_stopped")[-1]
    committed = committed_offsets(broker.bootstrap, group, topic_name)
    out = consume_all(broker.bootstrap, f"{topic_name}.sentiment", count, timeout_s=3)
    sources = [json.loads(r.value)["sentiment_meta"]["source"] for r in out]
    done = {(src["partition"], src["offset"]) for src in sources}
    uncovered = [(p, o) for p, upto in committed.items() for o in range(upto) if (p, o) not in done]
    print(
        f"\n{case}: rc={rc} exit_s={exit_s:.2f} (bound {bound:.0f}) consumed={stopped['consumed']} "
        f"produced={stopped['produced']} pending={stopped['pending']} committed={sum(committed.values())} "
        f"outputs={len(out)} committed_without_output={len(uncovered)}"
    )
    assert rc == 1, worker.log_text()[-3000:]
    assert exit_s <= bound, f"exit took {exit_s:.1f}s, bound {bound:.0f}s"
    assert stopped["complete"] is False and stopped["pending"] > 0
    if case == "second_sigterm":
        assert worker.events("forced_stop")
    assert not uncovered, f"committed offsets without an output: {uncovered[:10]}"
    assert sum(committed.values()) < stopped["consumed"], "unacknowledged work must stay uncommitted"

    final = _finish(broker, topic_name, group, tiny_onnx_dir, count, tmp_path / "finish.log")
    ids = Counter(json.loads(r.value)["id"] for r in final)
    lost = set(range(count)) - set(ids)
    duplicates = sum(ids.values()) - len(ids)
    # re-done after the restart: exactly what the stopped worker wrote past its committed offsets
    expected = sum(1 for p, o in done if o >= committed.get(p, 0))
    print(f"after restart: messages={count} lost={len(lost)} duplicates={duplicates} (expected {expected})")
    assert not lost
    assert duplicates == expected
