"""Scaling 1 → 3 → 1 during one continuous stream on a 6-partition topic, with real worker processes.

Scale-out: two workers join the group; the first one's partitions are revoked (eager protocol), it drains
them, commits synchronously before rejoining, and the partitions are spread over three workers.
Scale-in: the two are stopped with SIGTERM at the same moment; each drains, commits and leaves; the first
worker drains and commits on the resulting revoke and gets all six partitions back.
A graceful move never re-reads a record: every id appears exactly once (0 lost, 0 duplicates).
"""

from __future__ import annotations

import itertools
import time
from collections import Counter

import pytest

from tests.support.feeds import Feeder, OutputReader, create_input_and_output, group_ids
from tests.support.waits import wait_for
from tests.support.worker_process import WorkerProcess, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 6
MESSAGES = 9_000
RATE = 150.0


def _assignment(worker: WorkerProcess) -> set[str]:
    """The worker's current partitions, from its partitions_assigned / partitions_revoked log lines."""
    owned: set[str] = set()
    for event in worker.events():
        if event.get("event") == "partitions_assigned":
            owned = set(event["partitions"])
        elif event.get("event") in ("partitions_revoked", "partitions_lost"):
            owned -= set(event["partitions"])
    return owned


def _history(worker: WorkerProcess) -> list[int]:
    return [len(e["partitions"]) for e in worker.events("partitions_assigned")]


def test_scale_1_to_3_to_1_moves_partitions_without_loss_or_duplicates(
    broker, topic_name, tiny_onnx_dir, tmp_path
) -> None:
    started = time.monotonic()
    bootstrap = broker.bootstrap
    out_topic = create_input_and_output(bootstrap, topic_name, PARTITIONS)
    (group,) = group_ids(1, "scale")
    reader = OutputReader(bootstrap, out_topic, PARTITIONS)
    reader.start()
    feeder = Feeder(bootstrap, topic_name, MESSAGES, rate=RATE, seed=3, n_keys=60)

    def env(name: str) -> dict[str, str]:
        return worker_env(bootstrap, topic_name, group, tiny_onnx_dir, client_id=name, commit_interval_ms=500)

    w1 = WorkerProcess(env("w1"), tmp_path / "w1.log").start()
    w2 = WorkerProcess(env("w2"), tmp_path / "w2.log")
    w3 = WorkerProcess(env("w3"), tmp_path / "w3.log")
    marks: dict[str, tuple[float, int]] = {}
    rcs: dict[str, int] = {}
    try:
        wait_for(lambda: len(_assignment(w1)) == PARTITIONS, 120, what="w1 owning all partitions")
        feeder.start()
        time.sleep(8)
        marks["scale_out"] = (time.monotonic(), len(reader))
        w2.start()
        w3.start()
        wait_for(
            lambda: (
                all(len(_assignment(w)) == 2 for w in (w1, w2, w3))
                and set().union(*(_assignment(w) for w in (w1, w2, w3))) == {f"{topic_name}:{p}" for p in range(6)}
            ),
            120,
            0.2,
            "six partitions spread 2/2/2 over three workers",
        )
        marks["three_workers"] = (time.monotonic(), len(reader))
        time.sleep(12)
        marks["scale_in"] = (time.monotonic(), len(reader))
        assert feeder.is_alive(), "the stream should still be running when scaling in"
        w2.signal(15)
        w3.signal(15)
        rcs["w2"], rcs["w3"] = w2.wait(90), w3.wait(90)
        wait_for(lambda: len(_assignment(w1)) == PARTITIONS, 120, what="w1 owning all partitions again")
        marks["one_worker"] = (time.monotonic(), len(reader))
        feeder.join()
        assert feeder.error is None, feeder.error
        wait_for(lambda: len(reader) >= MESSAGES, 120, 0.5, f"{MESSAGES} outputs")
        rcs["w1"] = w1.stop(90)
        end = reader.wait_caught_up(time.monotonic() + 1.0)
        marks["end"] = (time.monotonic(), end)
    finally:
        for w in (w1, w2, w3):
            if w.alive():
                w.kill()
        reader.stop()
    records = reader.snapshot()
    ids = Counter(r.json()["id"] for r in records)
    lost = set(range(MESSAGES)) - set(ids)
    duplicates = sum(ids.values()) - len(ids)
    workers = {"w1": w1, "w2": w2, "w3": w3}
    produced = {name: (w.events("worker_stopped") or [{}])[-1].get("produced") for name, w in workers.items()}
    phases = list(marks.items())
    rates = {
        f"{a}->{b}": round((n2 - n1) / max(1e-9, t2 - t1), 1)
        for (a, (t1, n1)), (b, (t2, n2)) in itertools.pairwise(phases)
    }
    revokes = {name: len(w.events("revoke_committed")) for name, w in workers.items()}
    print(
        f"\nscaling summary: messages={MESSAGES} feed_rate={RATE:.0f}/s lost={len(lost)} duplicates={duplicates} "
        f"assignments(partition counts) w1={_history(w1)} w2={_history(w2)} w3={_history(w3)} "
        f"revoke_commits={revokes} produced_per_worker={produced} output_rate_per_phase={rates} "
        f"exit_codes={rcs} wall_s={time.monotonic() - started:.0f}"
    )
    assert rcs == {"w2": 0, "w3": 0, "w1": 0}, {n: w.log_text()[-2000:] for n, w in (("w2", w2), ("w3", w3))}
    assert not lost, f"{len(lost)} lost, e.g. {sorted(lost)[:10]}"
    assert duplicates == 0, f"{duplicates} duplicates from graceful rebalances: {ids.most_common(5)}"
    # partitions really moved: w1 had 6, then 2, then 6 again; w2 and w3 had 2 each
    h1 = _history(w1)
    assert h1[0] == PARTITIONS and 2 in h1 and h1[-1] == PARTITIONS, h1
    assert 2 in _history(w2) and 2 in _history(w3)
    assert all(p for p in produced.values()), f"every worker should have produced some records: {produced}"
    for w in (w1, w2, w3):
        assert not w.events("partitions_lost"), f"{w.log_path.name}: partitions lost instead of revoked"
        assert not w.events("revoke_drain_incomplete"), f"{w.log_path.name}: revoke drain timed out"
