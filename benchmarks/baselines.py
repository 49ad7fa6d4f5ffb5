"""Baselines run in the same benchmark run as our pipeline.

(a) the naive consumer (:func:`naive_consumer_main`, run in a child process by ``end_to_end``): what users
    write by hand — a kafka-python consumer that calls ``transformers.pipeline("text-classification")`` once
    per message on the PyTorch weights of the same model and produces the result;
(b) PyTorch eager batched (:func:`torch_eager`): the same messages, batching and length sorting as the worker,
    through the PyTorch model (``torch.inference_mode``), no Kafka;
(c) model-only ONNX: ``benchmarks.model_only.pipeline_ceiling``.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from worker.observability import get_logger

log = get_logger(__name__)


def torch_eager(
    hf_dir: Path,
    texts: Sequence[str],
    *,
    max_batch_size: int,
    inference_batch_size: int,
    max_length: int = 128,
    threads: int = 0,
    repeats: int = 3,
) -> dict[str, Any]:
    """(b) PyTorch eager, batched like the worker: micro-batches sorted by length, chunks padded to their longest."""
    import os

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    tokenizer = AutoTokenizer.from_pretrained(hf_dir, use_fast=True)
    model = AutoModelForSequenceClassification.from_pretrained(hf_dir).eval()

    def run_once() -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            for start in range(0, len(texts), max_batch_size):
                batch = list(texts[start : start + max_batch_size])
                lengths = [len(x) for x in tokenizer(batch, truncation=True, max_length=max_length)["input_ids"]]
                order = sorted(range(len(batch)), key=lengths.__getitem__)
                for c in range(0, len(order), inference_batch_size):
                    chunk = [batch[i] for i in order[c : c + inference_batch_size]]
                    enc = tokenizer(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
                    torch.softmax(model(**enc).logits, dim=-1)
        return time.perf_counter() - started

    warm = list(texts[: min(len(texts), max_batch_size)])
    with torch.inference_mode():
        model(**tokenizer(warm, padding=True, truncation=True, max_length=max_length, return_tensors="pt"))
    rates = [len(texts) / run_once() for _ in range(repeats)]
    return {
        "messages": len(texts),
        "max_batch_size": max_batch_size,
        "inference_batch_size": inference_batch_size,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "msgs_per_s": round(statistics.median(rates), 1),
        "msgs_per_s_all": [round(r, 1) for r in rates],
    }


def naive_consumer_main(config: dict[str, Any], conn: Any) -> None:
    """(a) Child-process entry: the hand-written consumer. Sends "ready" after loading, stops on "stop".

    One message at a time: poll → json.loads → ``classifier(text)`` → producer.send (results carry the input's
    fields, so ``sent_at`` travels through). Offsets auto-commit every second (the worker commits every second too).
    """
    import threading

    from kafka import KafkaConsumer, KafkaProducer

    from worker.observability import configure_logging

    configure_logging("json", "warning")
    import torch
    from transformers import pipeline

    torch.set_num_threads(int(config.get("threads") or 0) or torch.get_num_threads())
    classifier = pipeline("text-classification", model=str(config["hf_dir"]), device=-1)
    stop = threading.Event()

    def control() -> None:
        while True:
            try:
                message = conn.recv()
            except EOFError:
                message = "stop"
            if message == "stop":
                stop.set()
                return

    threading.Thread(target=control, daemon=True).start()
    consumer = KafkaConsumer(
        config["topic"],
        bootstrap_servers=config["bootstrap"],
        group_id=config["group_id"],
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        auto_commit_interval_ms=1000,
        session_timeout_ms=config.get("session_timeout_ms", 6000),
        heartbeat_interval_ms=config.get("heartbeat_interval_ms", 1000),
    )
    producer = KafkaProducer(bootstrap_servers=config["bootstrap"])
    out_topic = config["output_topic"]
    text_field = config.get("text_field", "text")
    max_length = int(config.get("max_length", 128))
    processed = 0
    conn.send({"ready": True})
    try:
        while not stop.is_set():
            polled = consumer.poll(timeout_ms=200)
            for records in polled.values():
                for record in records:
                    value = json.loads(record.value)
                    result = classifier(value[text_field], truncation=True, max_length=max_length)[0]
                    value["sentiment"] = {"label": result["label"], "score": result["score"]}
                    producer.send(out_topic, key=record.key, value=json.dumps(value).encode())
                    processed += 1
                if stop.is_set():
                    break
        producer.flush()
    finally:
        consumer.close()
        producer.close()
        conn.send({"processed": processed})
