"""The real DistilBERT-base shape (6 layers, dim 768, vocab 30,522; random weights) through export → runtime."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.tiny_model import build_tiny_model, varied_texts
from worker.model.export import export_model, read_manifest
from worker.model.runtime import SentimentModel

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_distilbert_base_shape_export_matches_pytorch(tmp_path: Path) -> None:
    import torch
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification

    model_dir = tmp_path / "base"
    build_tiny_model(model_dir, train_steps=0)  # for its tokenizer; the weights are replaced below
    config = DistilBertConfig(
        vocab_size=30522,
        dim=768,
        n_layers=6,
        n_heads=12,
        hidden_dim=3072,
        max_position_embeddings=512,
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
    )
    torch.manual_seed(0)
    DistilBertForSequenceClassification(config).eval().save_pretrained(model_dir, safe_serialization=True)

    started = time.perf_counter()
    exported = export_model(model_dir, cache_dir=tmp_path / "cache")
    export_seconds = time.perf_counter() - started
    assert read_manifest(exported)["onnx_bytes"] > 200 * 2**20  # ~255 MiB, like the real model

    texts = varied_texts(24, seed=21)
    model = SentimentModel.load(exported, device="cpu", max_length=64)
    ids, _ = model.tokenize(texts)
    started = time.perf_counter()
    probs = model.infer_ids(ids, chunk_size=8).probs
    infer_seconds = time.perf_counter() - started

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    batch = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    torch_model = DistilBertForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        logits = torch_model(**batch).logits.numpy()
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    import onnxruntime as ort

    session = ort.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(["logits"], {k: v.numpy() for k, v in batch.items()})
    assert np.abs(onnx_logits - logits).max() <= 1e-4
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    print(f"base-shape export {export_seconds:.1f}s, {len(texts)} texts inferred in {infer_seconds:.2f}s")
