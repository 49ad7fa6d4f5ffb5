"""Limits, with the real worker (Runner) and the real exported model.

- Text length in characters (``max_text_chars``) and in tokens (``max_length``): ``text_overflow=truncate``
  classifies the start and marks the output ``truncated``; ``reject`` dead-letters it as ``too_long``.
- Record size (``max_message_bytes``, value + key + headers): over it → ``too_large``, whatever the overflow mode.
- Bounded internal queues: with a slow model and a large backlog, the consumer's partitions are paused
  (back-pressure), the records waiting between the poll and the model's output (open batch, ready batches, the
  two queues) and the records held by the worker stay within bounds set by the settings, while the backlog waits
  in Kafka.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.support.feeds import group_ids
from tests.support.kafka_utils import consume_all, create_topic, produce_values
from tests.support.waits import wait_for
from tests.support.worker_thread import WorkerThread, worker_settings
from worker.model.runtime import SentimentModel
from worker.records import DeadLetter, ErrorType

pytestmark = pytest.mark.integration

MAX_CHARS = 1000
MAX_TOKENS = 64
MAX_BYTES = 4096

CASES = {
    "short": ("good movie", None),
    "at_char_limit": ("a" * MAX_CHARS, None),  # one long word: exactly at the character limit, a few tokens
    "over_chars": ("good " * 400, "characters"),  # 2,000 characters
    "over_tokens": ("good " * 150, "tokens"),  # 750 characters but ~152 tokens
    "over_bytes": ("good " * 900, "bytes"),  # 4,500 characters: over max_message_bytes before anything else
}


@pytest.fixture(scope="module")
def model(tiny_onnx_dir) -> SentimentModel:
    return SentimentModel.load(tiny_onnx_dir, device="cpu", max_length=MAX_TOKENS)


@pytest.mark.parametrize("overflow", ["truncate", "reject"])
def test_text_length_limits_truncate_or_reject_and_size_limit_rejects(
    overflow, broker, topic_name, tiny_onnx_dir, model
) -> None:
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, 1)
    names = list(CASES)
    produce_values(
        bootstrap,
        topic_name,
        [(name.encode(), json.dumps({"case": name, "text": CASES[name][0]}).encode()) for name in names],
    )
    ids, _ = model.tokenize([CASES["at_char_limit"][0]])
    at_limit_tokens = len(ids[0])
    settings = worker_settings(
        bootstrap,
        topic_name,
        tiny_onnx_dir,
        max_text_chars=MAX_CHARS,
        max_length=MAX_TOKENS,
        max_message_bytes=MAX_BYTES,
        text_overflow=overflow,
    )
    worker = WorkerThread(settings, model).start()
    try:
        expect_out = 2 + (2 if overflow == "truncate" else 0)
        out = consume_all(bootstrap, f"{topic_name}.sentiment", expect_out, timeout_s=60, settle_s=0.5)
        dead = consume_all(bootstrap, f"{topic_name}.dlq", len(names) - expect_out, timeout_s=30, settle_s=0.5)
    finally:
        assert worker.stop() == 0
    enriched = {json.loads(r.value)["case"]: json.loads(r.value) for r in out}
    rejected = {r.key.decode(): DeadLetter.from_headers(r.headers) for r in dead}
    print(
        f"\nlimits ({overflow}): enriched={ {k: v['sentiment_meta']['truncated'] for k, v in enriched.items()} } "
        f"dead_lettered={ {k: (v.error_type.value, v.error_message[:60]) for k, v in rejected.items()} } "
        f"at_char_limit_tokens={at_limit_tokens}"
    )
    assert enriched["short"]["sentiment_meta"]["truncated"] is False
    # exactly max_text_chars characters (one long word: a few tokens) is within the limits, in both modes
    assert at_limit_tokens < MAX_TOKENS and enriched["at_char_limit"]["sentiment_meta"]["truncated"] is False
    assert (
        rejected["over_bytes"].error_type == ErrorType.TOO_LARGE
        and "max_message_bytes" in rejected["over_bytes"].error_message
    )
    if overflow == "truncate":
        assert enriched["over_chars"]["sentiment_meta"]["truncated"] is True
        assert enriched["over_tokens"]["sentiment_meta"]["truncated"] is True
        assert enriched["over_chars"]["text"] == CASES["over_chars"][0], "the output keeps the full input text"
    else:
        assert (
            rejected["over_chars"].error_type == ErrorType.TOO_LONG
            and "characters" in rejected["over_chars"].error_message
        )
        assert (
            rejected["over_tokens"].error_type == ErrorType.TOO_LONG
            and "tokens" in rejected["over_tokens"].error_message
        )


@pytest.fixture(scope="module")
def slow_model(tiny_onnx_dir) -> SentimentModel:
    """The real model, 40 ms slower per call (a slow device): the backlog builds up in front of it."""
    model = SentimentModel.load(tiny_onnx_dir, device="cpu")
    real = model.infer_ids

    def infer_ids(ids, **kwargs):
        time.sleep(0.04)
        return real(ids, **kwargs)

    model.infer_ids = infer_ids  # type: ignore[method-assign]
    return model


def test_backpressure_pauses_partitions_and_bounds_what_the_worker_holds(
    broker, topic_name, tiny_onnx_dir, slow_model
) -> None:
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, 2)
    total = 2500
    produce_values(
        bootstrap, topic_name, [(None, json.dumps({"id": i, "text": "good"}).encode()) for i in range(total)]
    )
    q, batch, poll = 2, 16, 50
    settings = worker_settings(
        bootstrap,
        topic_name,
        tiny_onnx_dir,
        group_id=group_ids(1, "backpressure")[0],
        queue_max_batches=q,
        max_batch_size=batch,
        max_poll_records=poll,
        max_wait_ms=5,
    )
    # Held records: an open batch, ready batches from one poll, the two queues, one batch in the model, one being
    # sent, and what the producer has not had acknowledged yet (a batch or two: acks are fast here).
    bound = batch * (2 * q + 4) + poll
    # Waiting between the poll and the model's output: the open batch and one poll's ready batches (the consumer is
    # paused while any wait: < batch + poll), each queue (q batches of at most max_batch_size records, merged ones
    # included), and one batch sampled in two places as it moves on.
    queue_bound = q * batch
    stages_bound = batch * (2 * q + 2) + poll
    worker = WorkerThread(settings, slow_model).start()
    runner = worker.runner
    peaks = {"held": 0, "in_stages": 0, "in_stages_paused": 0, "infer_queue": 0, "encode_queue": 0, "ready": 0}
    paused_seen = threading.Event()
    stop = threading.Event()

    def monitor() -> None:
        while not stop.is_set():
            waiting = runner.items_held()  # records: batcher, ready, infer_queue, encode_queue
            in_stages = sum(waiting.values())
            paused = runner.source is not None and runner.source.paused
            for name in ("infer_queue", "encode_queue", "ready"):
                peaks[name] = max(peaks[name], waiting[name])
            peaks["in_stages"] = max(peaks["in_stages"], in_stages)
            if paused:
                peaks["in_stages_paused"] = max(peaks["in_stages_paused"], in_stages)
                paused_seen.set()
            peaks["held"] = max(peaks["held"], runner.tracker.pending_count())
            time.sleep(0.002)

    sampler = threading.Thread(target=monitor, daemon=True)
    sampler.start()
    try:
        wait_for(lambda: runner.stats.produced >= total, 180, 0.2, f"{total} outputs")
    finally:
        stop.set()
        sampler.join(5)
        rc = worker.stop()
    print(
        f"\nbackpressure: records={total} queue_max_batches={q} max_batch_size={batch} max_poll_records={poll} "
        f"peak records: infer_queue={peaks['infer_queue']} encode_queue={peaks['encode_queue']} (bound {queue_bound}) "
        f"ready={peaks['ready']} in_stages={peaks['in_stages']} (paused: {peaks['in_stages_paused']}, bound "
        f"{stages_bound}) held={peaks['held']} (bound {bound}) paused={paused_seen.is_set()} "
        f"batches={runner.stats.batches}"
    )
    assert rc == 0
    assert paused_seen.is_set(), "the consumer was never paused by back-pressure"
    assert peaks["in_stages_paused"] > 0, "nothing was seen waiting while paused: the sampling measured nothing"
    assert peaks["infer_queue"] <= queue_bound and peaks["encode_queue"] <= queue_bound, peaks
    assert peaks["in_stages"] <= stages_bound, f"{peaks['in_stages']} records waited in stages, bound {stages_bound}"
    assert 0 < peaks["held"] <= bound, f"the worker held {peaks['held']} records, bound {bound}"
