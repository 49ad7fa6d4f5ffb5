"""Hot swap of the model in a running worker process (``sentiment-worker run``), against the real broker and real
exports (README "Rolling out a model").

The worker's ``model`` is a symlink the test points at another export (``tests/support/model_variants.py``) before
sending SIGHUP, while a feeder keeps producing:

- a valid new export: the outputs switch from the old ONNX sha256 to the new one exactly once per input partition
  (in offset order: all old, then all new), every record is enriched exactly once, the process is the same one and
  the group never rebalanced (one assignment, no revoke);
- SIGHUP with nothing changed: nothing is loaded (``model_unchanged``); a corrupt export, one with other labels, a
  missing directory and one that disagrees on the canary texts: each refused (logged, counted by reason), the stream
  goes on, every output scored by the original model;
- shadow mode: a second export scores every record on the side: agreement and latency metrics, outputs untouched.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from devtools.ports import free_port
from tests.support.feeds import Feeder, OutputReader, create_input_and_output, group_ids
from tests.support.metrics import metric, scrape
from tests.support.model_variants import point
from tests.support.waits import wait_for
from tests.support.worker_process import WorkerProcess, worker_env
from worker.model.manifest import read_manifest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4
SLOW_LOAD = "tests.integration.reliability.slow_load_worker"  # candidate loads sleep RELIABILITY_LOAD_DELAY_S
LOAD_DELAY_S = 3.0
META_KEYS = ("id", "revision", "onnx_sha256", "precision", "provider")


def _sha(exported: Path) -> str:
    return str(read_manifest(exported)["onnx_sha256"])


def _start(broker, topic: str, model: Path, tmp_path: Path, count: int, rate: float, load_delay_s=0.0, **settings):
    """Topics, an output reader, the worker process (metrics on), a feeder; the worker once it owns partitions."""
    out_topic = create_input_and_output(broker.bootstrap, topic, PARTITIONS)
    reader = OutputReader(broker.bootstrap, out_topic, PARTITIONS)
    reader.start()
    port = free_port()
    (group,) = group_ids(1, "swap")
    env = worker_env(broker.bootstrap, topic, group, model, metrics_port=port, commit_interval_ms=300, **settings)
    env["RELIABILITY_LOAD_DELAY_S"] = str(load_delay_s)
    worker = WorkerProcess(env, tmp_path / "worker.log", module=SLOW_LOAD).start()
    worker.wait_event("partitions_assigned", 60)
    feeder = Feeder(broker.bootstrap, topic, count, rate=rate, seed=11, n_keys=50)
    feeder.start()
    return worker, reader, feeder, port


def _outputs(reader: OutputReader) -> list[dict]:
    return [seen.json() for seen in reader.snapshot()]


def _finish(worker: WorkerProcess, reader: OutputReader, feeder: Feeder, count: int) -> list[dict]:
    feeder.join(120)
    assert feeder.error is None, feeder.error
    reader.wait_count(count, 120)
    time.sleep(1.0)  # nothing more should come (a duplicate would)
    return _outputs(reader)


def _exactly_once(outputs: list[dict], count: int) -> None:
    ids = Counter(value["id"] for value in outputs)
    lost = set(range(count)) - set(ids)
    duplicates = sum(n - 1 for n in ids.values())
    print(f"outputs {len(outputs)} of {count}: lost {len(lost)}, duplicates {duplicates}")
    assert not lost and not duplicates


def _no_rebalance(worker: WorkerProcess) -> None:
    assigned, revoked = worker.events("partitions_assigned"), worker.events("partitions_revoked")
    print(f"assignments {len(assigned)}, revokes {len(revoked)}, lost {len(worker.events('partitions_lost'))}")
    assert len(assigned) == 1 and not revoked and not worker.events("partitions_lost")
    assert sorted(assigned[0]["partitions"]) == sorted(f"{worker.env['SENTIMENT_INPUT_TOPICS']}:{p}"
                                                        for p in range(PARTITIONS))  # fmt: skip


def test_sighup_swaps_in_a_new_export_mid_stream_once_per_partition_without_loss_or_rebalance(
    broker, topic_name, tiny_onnx_dir, tiny_variant_dir, tmp_path
) -> None:
    count, old_sha, new_sha = 1500, _sha(tiny_onnx_dir), _sha(tiny_variant_dir)
    link = tmp_path / "model"
    point(link, tiny_onnx_dir)
    worker, reader, feeder, port = _start(broker, topic_name, link, tmp_path, count, 150, LOAD_DELAY_S)
    pid = worker.pid
    try:
        reader.wait_count(300, 60)
        point(link, tiny_variant_dir)
        signalled, before = time.monotonic(), len(reader)
        worker.signal(signal.SIGHUP)
        (swapped,) = worker.wait_event("model_swapped", 60)
        during = len(reader) - before
        took = time.monotonic() - signalled
        print(f"swap {took:.2f} s after SIGHUP ({swapped['seconds']} s to load (slowed by {LOAD_DELAY_S:g} s), "
              f"check and switch); outputs: {before} before, {during} during the load")  # fmt: skip
        assert during >= 100, "the stream flows while the candidate loads (a background thread)"
        assert (swapped["previous_sha256"], swapped["sha256"]) == (old_sha, new_sha)
        outputs = _finish(worker, reader, feeder, count)
        text = scrape(port)
        _no_rebalance(worker)
        assert worker.alive() and worker.pid == pid, "the same process throughout"
    finally:
        feeder.stop()
        rc = worker.stop(60)
        reader.stop()
    assert rc == 0
    _exactly_once(outputs, count)
    # per input partition, in offset order: the old model's records, then the new model's, one switch
    by_partition: dict[int, list[tuple[int, str]]] = {}
    for value in outputs:
        source = value["sentiment_meta"]["source"]
        by_partition.setdefault(source["partition"], []).append(
            (source["offset"], value["sentiment_meta"]["model"]["onnx_sha256"])
        )
    for partition, rows in sorted(by_partition.items()):
        shas = [sha for _, sha in sorted(rows)]
        switch = shas.index(new_sha)
        print(f"partition {partition}: {switch} old, {len(shas) - switch} new")
        assert 0 < switch < len(shas) and shas == [old_sha] * switch + [new_sha] * (len(shas) - switch)
    # the stream kept flowing: the longest pause between two outputs during the load and switch vs. before
    arrivals = [seen.at for seen in reader.snapshot()]
    gaps = list(itertools.pairwise(arrivals))
    near = max(b - a for a, b in gaps if signalled <= a <= signalled + LOAD_DELAY_S + 1)
    earlier = max(b - a for a, b in gaps if signalled - 5 <= a < signalled)
    print(f"longest gap between outputs: {near * 1000:.0f} ms during the load and switch, "
          f"{earlier * 1000:.0f} ms in the 5 s before the SIGHUP")  # fmt: skip
    assert metric(text, "sentiment_model_swaps_total") == 1
    assert f'sha256="{new_sha}"' in text and f'sha256="{old_sha}"' not in text, "one model_info series: the new"


def test_unchanged_and_refused_candidates_leave_the_stream_on_the_serving_model(
    broker, topic_name, tiny_onnx_dir, tiny_corrupt_dir, tiny_relabelled_dir, tiny_far_variant_dir, tmp_path
) -> None:
    count, sha = 1200, _sha(tiny_onnx_dir)
    link = tmp_path / "model"
    point(link, tiny_onnx_dir)
    worker, reader, feeder, port = _start(broker, topic_name, link, tmp_path, count, rate=100)
    pid = worker.pid
    try:
        reader.wait_count(100, 60)
        worker.signal(signal.SIGHUP)
        (unchanged,) = worker.wait_event("model_unchanged", 30)
        assert unchanged["sha256"] == sha and len(worker.events("model_loaded")) == 1, "nothing loaded"
        cases = [
            (tiny_corrupt_dir, "integrity"),
            (tiny_relabelled_dir, "labels_changed"),
            (tmp_path / "no-such-export", "unavailable"),
            (tiny_far_variant_dir, "canary_agreement"),
        ]
        for n, (target, reason) in enumerate(cases, 1):
            point(link, target)
            at = len(reader)
            worker.signal(signal.SIGHUP)
            refused = worker.wait_event("model_refused", 30, count=n)[-1]
            print(f"{Path(target).name}: refused {refused['reason']} in {refused['seconds']} s: "
                  f"{refused['detail'][:120]}")  # fmt: skip
            assert refused["reason"] == reason
            reader.wait_count(at + 20, 30)  # the stream goes on
        outputs = _finish(worker, reader, feeder, count)
        text = scrape(port)
        _no_rebalance(worker)
        assert worker.alive() and worker.pid == pid and not worker.events("model_swapped")
    finally:
        feeder.stop()
        rc = worker.stop(60)
        reader.stop()
    assert rc == 0
    _exactly_once(outputs, count)
    assert {value["sentiment_meta"]["model"]["onnx_sha256"] for value in outputs} == {sha}
    for _, reason in cases:
        assert metric(text, "sentiment_model_swap_refusals_total", reason=reason) == 1
    assert metric(text, "sentiment_model_reload_unchanged_total") == 1
    assert metric(text, "sentiment_model_reload_requests_total", trigger="signal") == 5
    assert metric(text, "sentiment_model_swaps_total") == 0
    errors = [e for e in worker.events() if e.get("level") in ("error", "critical")]
    assert not errors, errors[:3]


def test_shadow_mode_scores_a_sample_beside_the_model_and_publishes_agreement(
    broker, topic_name, tiny_onnx_dir, tiny_variant_dir, tmp_path
) -> None:
    count, sha = 600, _sha(tiny_onnx_dir)
    worker, reader, feeder, port = _start(
        broker, topic_name, tiny_onnx_dir, tmp_path, count, rate=200,
        shadow_model=str(tiny_variant_dir), shadow_sample_rate=0.5,
    )  # fmt: skip
    try:
        worker.wait_event("shadow_model_ready", 60)
        outputs = _finish(worker, reader, feeder, count)
        wait_for(lambda: metric(scrape(port), "sentiment_shadow_compared_total") > 0, 30, what="shadow metrics")
        text = scrape(port)
    finally:
        feeder.stop()
        rc = worker.stop(60)
        reader.stop()
    assert rc == 0
    _exactly_once(outputs, count)
    agree = metric(text, "sentiment_shadow_compared_total", result="agree")
    disagree = metric(text, "sentiment_shadow_compared_total", result="disagree")
    dropped = metric(text, "sentiment_shadow_dropped_total")
    ratio = metric(text, "sentiment_shadow_agreement_ratio")
    calls = metric(text, "sentiment_shadow_latency_seconds_count")
    seconds = metric(text, "sentiment_shadow_latency_seconds_sum")
    print(f"shadow: {agree + disagree:.0f} compared ({agree:.0f} agree, ratio {ratio:.3f}), {dropped:.0f} dropped, "
          f"{calls:.0f} calls, {seconds / max(calls, 1) * 1000:.1f} ms per call")  # fmt: skip
    assert agree + disagree + dropped >= 0.3 * count, "about half of the records sampled"
    assert agree + disagree > 0 and ratio == pytest.approx(agree / (agree + disagree)) and ratio >= 0.9
    assert calls > 0
    assert f'sha256="{_sha(tiny_variant_dir)}"' in text, "sentiment_shadow_model_info"
    assert {value["sentiment_meta"]["model"]["onnx_sha256"] for value in outputs} == {sha}, "outputs untouched"
    assert all(set(value["sentiment_meta"]["model"]) == set(META_KEYS) for value in outputs)
