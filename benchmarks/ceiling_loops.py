"""The pipeline ceiling's single-threaded variants: what the worker's stack does on one core, with no worker.

Each runs in its own spawned process (``benchmarks.ceiling.run_variant``) on the preloaded input topic and reports
the steady window of ``benchmarks.ceiling_window``. The loop gets the speed-ups the worker has, so that "worker ÷
loop" compares like with like:

- ``loop``: kafka-python poll → ``orjson.loads`` → the tokenizer as the worker runs it (``encode_batch_fast``, one
  thread) → ONNX Runtime with one intra-op thread → numpy softmax → ``orjson.dumps`` → ``KafkaProducer.send``
  (acks=all, idempotent, the worker's 256 KiB producer batches: ``worker.stream.sink.PRODUCER_BATCH_BYTES``);
- ``loop_plain``: the same loop with the standard library's ``json`` and kafka-python's 16 KiB batches (what a
  first loop looks like; what the speed-ups are worth to a loop);
- ``passthrough`` / ``passthrough_json``: kafka-python consume + produce of the same records (same producer
  settings), without and with orjson decode/encode of each record;
- ``tokenizer``: the fast tokenizer alone, 64 texts a call, no Kafka.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from benchmarks.ceiling_window import TIMEOUT_S, sample_until, steady

CHUNK = 64  # the loop's model batch (the worker's default max_batch_size on CPU)
PLAIN_BATCH_BYTES = 16_384  # kafka-python's default batch_size

Transform = Callable[[list[Any]], list[tuple[bytes | None, bytes]]]


def _consumer(config: dict[str, Any]) -> Any:
    from kafka import KafkaConsumer

    return KafkaConsumer(
        config["topic"],
        bootstrap_servers=config["bootstrap"],
        group_id=config["group_id"],
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=500,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )


def _producer(config: dict[str, Any], batch_size: int | None = None) -> Any:
    from kafka import KafkaProducer

    from worker.stream.sink import PRODUCER_BATCH_BYTES

    return KafkaProducer(
        bootstrap_servers=config["bootstrap"],
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        batch_size=batch_size or PRODUCER_BATCH_BYTES,
    )


class _Acks:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, _metadata: Any) -> None:
        self.n += 1  # one writer: the producer's IO thread


def kafka_loop(config: dict[str, Any], transform: Transform, *, batch_size: int | None = None) -> dict[str, Any]:
    """Consume the input, ``transform`` each poll's records per partition into (key, value)s, produce them."""
    consumer, producer, acks = _consumer(config), _producer(config, batch_size), _Acks()
    total, out = config["total"], config["output_topic"]
    samples: list[Any] = []
    sampler = threading.Thread(target=lambda: samples.extend(sample_until(lambda: acks.n, total, TIMEOUT_S)))
    sampler.start()
    consumed = 0
    while consumed < total and sampler.is_alive():
        for tp, records in consumer.poll(timeout_ms=100).items():
            consumed += len(records)
            for key, value in transform(records):
                producer.send(out, key=key, value=value, partition=tp.partition).add_callback(acks)
        if consumed:
            consumer.commit_async()
    sampler.join()
    producer.close(timeout=10)
    consumer.close()
    return steady(samples, total)


def passthrough(config: dict[str, Any]) -> dict[str, Any]:
    return kafka_loop(config, lambda records: [(r.key, r.value) for r in records])


def passthrough_json(config: dict[str, Any]) -> dict[str, Any]:
    return kafka_loop(config, lambda records: [(r.key, orjson.dumps(orjson.loads(r.value))) for r in records])


def _model_transform(model_dir: str, loads: Callable[[bytes], Any], dumps: Callable[[Any], bytes]) -> Transform:
    """poll batch → per CHUNK records: loads → tokenize → pad → ONNX Runtime → softmax → dumps."""
    import numpy as np

    from worker.model.runtime import SentimentModel

    model = SentimentModel.load(Path(model_dir), device="cpu", threads=1)
    labels = list(model.labels)

    def transform(records: list[Any]) -> list[tuple[bytes | None, bytes]]:
        out: list[tuple[bytes | None, bytes]] = []
        for start in range(0, len(records), CHUNK):
            chunk = records[start : start + CHUNK]
            payloads = [loads(r.value) for r in chunk]
            ids, _truncated = model.tokenize([p["text"] for p in payloads])  # encode_batch_fast
            lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
            width = int(lengths.max())
            input_ids = np.zeros((len(ids), width), dtype=np.int64)
            for row, seq in enumerate(ids):
                input_ids[row, : len(seq)] = seq
            mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
            logits = model.batch_logits(input_ids, mask)
            exp = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = exp / exp.sum(axis=1, keepdims=True)
            best = probs.argmax(axis=1).tolist()
            for r, p, row, top in zip(chunk, payloads, probs.tolist(), best, strict=True):
                p["sentiment"] = {"label": labels[top], "score": row[top]}
                out.append((r.key, dumps(p)))
        return out

    return transform


def loop(config: dict[str, Any]) -> dict[str, Any]:
    """The single-threaded loop with the worker's speed-ups (orjson, 256 KiB batches, encode_batch_fast, 1 thread)."""
    return kafka_loop(config, _model_transform(config["model_dir"], orjson.loads, orjson.dumps))


def loop_plain(config: dict[str, Any]) -> dict[str, Any]:
    """The same loop with the standard library's json and kafka-python's default 16 KiB batches."""
    transform = _model_transform(config["model_dir"], json.loads, lambda p: json.dumps(p).encode())
    return kafka_loop(config, transform, batch_size=PLAIN_BATCH_BYTES)


def tokenizer(config: dict[str, Any]) -> dict[str, Any]:
    from worker.model.runtime import SentimentModel

    model = SentimentModel.load(Path(config["model_dir"]), device="cpu", threads=1)
    texts = config["texts"]
    best = float("inf")
    wall = 0.0
    for _ in range(3):
        started_wall, started_cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(texts), CHUNK):
            model.tokenize(texts[start : start + CHUNK])
        best = min(best, time.process_time() - started_cpu)
        wall = time.perf_counter() - started_wall
    return {"cpu_us_per_msg": round(best / len(texts) * 1e6, 1), "msgs_per_s": round(len(texts) / wall, 1)}
