"""The simulated device (worker/model/simulated.py) on the tiny exported model: the forward pass is a wait of
rows/R seconds that holds no GIL and burns no CPU; tokenising stays real; it is off unless set."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from worker.model.loading import load_model
from worker.model.runtime import SentimentModel
from worker.model.simulated import SimulatedDeviceModel, device_wait, fake_logits, simulate_device
from worker.records import ModelMeta
from worker.settings import load_settings

pytestmark = pytest.mark.integration

TEXTS = ["I loved it", "the worst film I have ever seen", "ok", "great great great"] * 16  # 64 rows


def test_forward_pass_is_a_wait_of_rows_over_rate(tiny_sentiment_model: SentimentModel) -> None:
    sim = simulate_device(tiny_sentiment_model, 2_000.0)
    ids, truncated = sim.tokenize(TEXTS)
    assert (ids, truncated) == tiny_sentiment_model.tokenize(TEXTS), "tokenising stays the model's own"
    started = time.perf_counter()
    result = sim.infer_ids(ids, chunk_size=8)  # 8 calls of 8 rows: 64 / 2,000 = 32 ms of device time
    waited = time.perf_counter() - started
    assert waited >= 64 / 2_000
    assert waited < 64 / 2_000 + 0.25, f"the wait is rows/R plus little: {waited:.3f} s"
    assert result.probs.shape == (64, len(sim.labels))
    np.testing.assert_allclose(result.probs.sum(axis=1), 1.0, rtol=1e-5)
    assert result.real_tokens == sum(len(x) for x in ids), "padding and token counts stay real"
    # logits depend on the ids: different texts, different scores; the same text, the same scores
    assert len({round(float(p[0]), 6) for p in result.probs[:4]}) > 1
    np.testing.assert_allclose(result.probs[:4], result.probs[4:8])
    assert tiny_sentiment_model.model_meta().get("simulated") is None, "the wrapped model is unchanged"
    assert type(tiny_sentiment_model) is SentimentModel


def test_the_wait_releases_the_gil_and_burns_no_cpu() -> None:
    counted = [0]
    stop = threading.Event()

    def spin() -> None:  # pure Python: it runs only while the GIL is free
        while not stop.is_set():
            counted[0] += 1

    thread = threading.Thread(target=spin, daemon=True)
    cpu0 = time.thread_time()
    thread.start()
    try:
        time.sleep(0.02)
        before = counted[0]
        waited = device_wait(500, 2_500.0)  # 0.2 s
        during = counted[0] - before
    finally:
        stop.set()
        thread.join()
    own_cpu = time.thread_time() - cpu0  # this thread's CPU: the waiting one
    assert waited >= 0.2
    assert during > 10_000, f"another Python thread ran {during} iterations during the wait (the GIL was free)"
    assert own_cpu < 0.05, f"the waiting thread burnt {own_cpu:.3f} s of CPU"


def test_calls_queue_on_one_device() -> None:
    started = time.perf_counter()
    threads = [threading.Thread(target=device_wait, args=(100, 1_000.0)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.perf_counter() - started >= 0.3, "three 0.1 s calls on one device take 0.3 s, not 0.1"


def test_outputs_say_simulated_and_the_schema_accepts_it(tiny_sentiment_model: SentimentModel) -> None:
    meta = simulate_device(tiny_sentiment_model, 1_000.0).model_meta()
    assert meta["simulated"] is True and meta["provider"] == "SimulatedDevice"
    assert ModelMeta.model_validate(meta).simulated is True
    assert ModelMeta.model_validate(tiny_sentiment_model.model_meta()).simulated is False
    assert tiny_sentiment_model.model_meta()["provider"] == "CPUExecutionProvider", (
        "the wrapped model's meta is its own"
    )


def test_it_stands_for_an_accelerator_and_gets_its_batch_sizes(tiny_sentiment_model: SentimentModel) -> None:
    from worker.model.buckets import GPU_BATCH, resolve_batching
    from worker.settings import load_settings as load

    sim = simulate_device(tiny_sentiment_model, 1_000.0)
    batching = resolve_batching(load().batching, sim.provider)
    assert (batching.max_batch_size, batching.chunk_size) == (GPU_BATCH.max_batch_size, GPU_BATCH.inference_batch_size)
    sim.reload()  # a session rebuild (the circuit breaker's) keeps it simulated
    assert sim.provider == "SimulatedDevice" and sim.model_meta()["simulated"] is True


def test_fake_logits_shape_and_dtype() -> None:
    ids = np.array([[101, 2000, 102, 0], [101, 3000, 4000, 102]], dtype=np.int64)
    mask = (ids != 0).astype(np.int64)
    logits = fake_logits(ids, mask, 3)
    assert logits.shape == (2, 3) and logits.dtype == np.float32
    assert not np.allclose(logits[0], logits[1])


def test_off_unless_set_and_the_loader_picks_it_when_set(tiny_onnx_dir: Path, monkeypatch) -> None:
    plain = load_model(tiny_onnx_dir, load_settings(model=str(tiny_onnx_dir), device="cpu"))
    assert type(plain) is SentimentModel and "simulated" not in plain.model_meta()
    monkeypatch.setenv("SENTIMENT_SIMULATE_DEVICE_RATE", "4000")
    settings = load_settings(model=str(tiny_onnx_dir), device="cpu")
    assert settings.simulate_device_rate == 4000.0
    sim = load_model(tiny_onnx_dir, settings)
    assert isinstance(sim, SimulatedDeviceModel) and sim.rate == 4000.0
    assert sim.predict(["fine"])[0].label in sim.labels
    with pytest.raises(ValueError, match="> 0"):
        simulate_device(plain, 0.0)


def test_every_output_of_a_simulated_run_says_so(broker, topic_name: str, tiny_sentiment_model: SentimentModel) -> None:
    import json

    from tests.support.kafka_utils import consume_all, create_topic, produce_values
    from tests.support.worker_thread import WorkerThread, worker_settings
    from worker.records import EnrichedRecord

    create_topic(broker.bootstrap, topic_name, 2)
    values = [json.dumps({"id": i, "text": f"review number {i} was fine"}).encode() for i in range(300)]
    produce_values(broker.bootstrap, topic_name, [(None, v) for v in values])
    settings = worker_settings(broker.bootstrap, topic_name, tiny_sentiment_model.path, max_batch_size="auto")
    worker = WorkerThread(settings, simulate_device(tiny_sentiment_model, 3_000.0)).start()
    try:
        out = consume_all(broker.bootstrap, f"{topic_name}.sentiment", 300, timeout_s=90)
    finally:
        assert worker.stop() == 0
    assert len(out) == 300
    for record in out:
        enrichment = EnrichedRecord.model_validate(json.loads(record.value)).sentiment_meta
        assert enrichment.simulated is True, "sentiment_meta.simulated: true on every output"
        meta = enrichment.model
        assert meta.simulated is True and meta.provider == "SimulatedDevice"
    assert worker.runner.batching.chunk_size == 256, "an accelerator's calls"
