"""Crash safety: the real worker process is SIGKILLed at random moments during one continuous keyed stream.

After every kill the test waits until everything the dead process wrote has been read back, reads the group's
committed offsets (the dead process's last commit) and starts a new process, which resumes from there. So the
output splits into one segment per process, and the accounting is exact:

- lost: input ids never seen in the output — must be 0;
- duplicates: the extra occurrences of ids — must equal, summed over the killed processes, the records each
  one wrote *at or after its last committed offset* (those are read and written again by the next process;
  nothing before the commit ever is). That window is the in-flight window: what was consumed since the last
  commit (``commit_interval_ms`` × throughput) plus what sat in the bounded queues and the producer at the kill;
- order: per key, the first occurrences appear in input order.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter, defaultdict

import pytest

from tests.support.feeds import Feeder, OutputReader, create_input_and_output, group_ids
from tests.support.kafka_utils import committed_offsets
from tests.support.waits import wait_for
from tests.support.worker_process import WorkerProcess, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MESSAGES = 20_000
MIN_KILLS = 20
PARTITIONS = 4
SEED = 20251123
COMMIT_INTERVAL_MS = 1000  # the default: the in-flight window is what it is in production
# A killed member holds its partitions until its session times out; the next process can only join after that.
# 3 s keeps the 20+ restarts quick (heartbeats run on kafka-python's IO thread, so a busy worker still sends
# them); the test tolerates an unplanned rebalance anyway (see the end).
GROUP_TIMING = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 750}


def test_sigkill_at_random_moments_loses_nothing_and_duplicates_only_after_last_commit(
    broker, topic_name, tiny_onnx_dir, tmp_path
) -> None:
    started = time.monotonic()
    bootstrap = broker.bootstrap
    out_topic = create_input_and_output(bootstrap, topic_name, PARTITIONS)
    (group,) = group_ids(1, "kill9")
    env = worker_env(bootstrap, topic_name, group, tiny_onnx_dir, commit_interval_ms=COMMIT_INTERVAL_MS, **GROUP_TIMING)
    rng = random.Random(SEED)

    reader = OutputReader(bootstrap, out_topic, PARTITIONS)
    reader.start()
    feeder = Feeder(bootstrap, topic_name, MESSAGES, rate=160.0, seed=SEED, n_keys=200)
    feeder.start()

    # segments[k] = (records read when process k was dead and drained, committed offsets it left behind)
    segments: list[tuple[int, dict[int, int]]] = []
    kill_delays: list[float] = []
    kill_times: list[float] = []
    proc = WorkerProcess(env, tmp_path / "worker-0.log").start()
    try:
        while len(segments) < MIN_KILLS or feeder.is_alive():
            assert len(segments) < 60, "feeder never finished"
            proc.wait_event("partitions_assigned", timeout=120)
            delay = rng.uniform(0.0, 2.5)
            kill_delays.append(delay)
            time.sleep(delay)
            assert proc.alive(), f"worker exited on its own: rc={proc.proc.poll()}\n{proc.log_text()[-3000:]}"
            rc = proc.kill()
            kill_times.append(time.monotonic())
            assert rc == -9
            # Let the broker take in what the dead process had already sent, then read all of it back.
            boundary = reader.wait_caught_up(time.monotonic() + 1.0, timeout=60)
            segments.append((boundary, committed_offsets(bootstrap, group, topic_name)))
            proc = WorkerProcess(env, tmp_path / f"worker-{len(segments)}.log").start()
        feeder.join()
        assert feeder.error is None, feeder.error
        # The last process finishes the stream and stops gracefully.
        proc.wait_event("partitions_assigned", timeout=120)
        wait_for(
            lambda: len({r.json()["id"] for r in reader.snapshot()}) >= MESSAGES,
            timeout=180,
            interval=1.0,
            what="every id in the output",
        )
        final_rc = proc.stop(timeout=60)
        end = reader.wait_caught_up(time.monotonic() + 1.0)
    finally:
        if proc.alive():
            proc.kill()
        reader.stop()
    elapsed = time.monotonic() - started
    assert reader.error is None, reader.error
    records = reader.snapshot()[:end]

    # ---- lost / duplicates -------------------------------------------------------------------------------
    ids = [r.json()["id"] for r in records]
    counts = Counter(ids)
    lost = set(range(MESSAGES)) - set(counts)
    duplicates = len(ids) - len(counts)

    # Exact expectation: what each killed process wrote at or after the offsets committed when it died.
    # The window's age: how long before the kill the oldest of those records was written (read back).
    expected_per_kill = []
    window_ages = []
    lower = 0
    for (boundary, committed), killed_at in zip(segments, kill_times, strict=True):
        window = [
            rec
            for rec in records[lower:boundary]
            if rec.json()["sentiment_meta"]["source"]["offset"]
            >= committed.get(rec.json()["sentiment_meta"]["source"]["partition"], 0)
        ]
        expected_per_kill.append(len(window))
        if window:
            window_ages.append(killed_at - min(rec.at for rec in window))
        lower = boundary
    expected_duplicates = sum(expected_per_kill)

    # ---- per-key order of first occurrences and content ----------------------------------------------------
    first_seen: dict[bytes, list[int]] = defaultdict(list)
    seen: set[int] = set()
    for rec, i in zip(records, ids, strict=True):
        assert rec.key == feeder.keys[i], f"id {i}: key {rec.key!r}, expected {feeder.keys[i]!r}"
        if i not in seen:
            seen.add(i)
            first_seen[rec.key].append(i)
    out_of_order = sum(1 for key_ids in first_seen.values() for a, b in itertools.pairwise(key_ids) if b < a)

    unplanned = [
        (log.name, event["event"])
        for log in sorted(tmp_path.glob("worker-*.log"))
        for event in WorkerProcess({}, log).events()
        if event.get("event") in ("partitions_lost", "revoke_drain_incomplete", "fatal_delivery_error")
    ]
    kills = len(segments)
    print(
        f"\nkill -9 summary: messages={MESSAGES} kills={kills} lost={len(lost)} duplicates={duplicates} "
        f"(expected from the killed processes' uncommitted windows: {expected_duplicates}; per kill "
        f"max={max(expected_per_kill)} mean={expected_duplicates / kills:.0f}, oldest written "
        f"{max(window_ages, default=0):.2f}s before its kill) out_of_order_keys={out_of_order} "
        f"kill_delay_after_assignment_s=[{min(kill_delays):.2f}, {max(kill_delays):.2f}] "
        f"commit_interval_ms={COMMIT_INTERVAL_MS} wall_s={elapsed:.0f}"
    )
    assert final_rc == 0, proc.log_text()[-3000:]
    assert kills >= MIN_KILLS
    assert not lost, f"{len(lost)} ids lost, e.g. {sorted(lost)[:10]}"
    assert out_of_order == 0, "first occurrences out of input order for some key"
    if unplanned:
        # A session expiry on a starved machine rebalances outside the kills: its own (uncommitted) window adds
        # duplicates that the kill accounting can't see. The kill windows are still all re-read.
        print(f"note: unplanned group events {unplanned}: duplicates checked as a lower bound only")
        assert duplicates >= expected_duplicates
    else:
        assert duplicates == expected_duplicates, (
            f"{duplicates} duplicates, but the killed processes wrote {expected_duplicates} records after their last "
            f"commit (per kill: {expected_per_kill})"
        )
