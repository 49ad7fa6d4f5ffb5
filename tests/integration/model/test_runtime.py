"""SentimentModel on the tiny exported model: parity with PyTorch, chunking, truncation, providers, integrity."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import structlog

from tests.support.tiny_model import varied_texts
from worker.model import session
from worker.model.buckets import gpu_visible
from worker.model.runtime import (
    InferenceResult,
    ModelIntegrityError,
    Prediction,
    ProviderUnavailableError,
    SentimentModel,
)
from worker.records import ModelMeta

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]

TEXTS = [
    "I loved it",
    "This is the worst film I have ever seen, a total waste of time and money!",
    "ok",
    "",
    "The hotel room was dirty, the staff was rude, and the breakfast was cold. Never again. " * 3,
    "Ünïcödé àccents and emoji 🙂 are fine",
    "great great great",
]


def _torch_logits(model_dir: Path, texts: list[str], max_length: int) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits.numpy()


def test_onnx_logits_match_pytorch(tiny_model_dir: Path, tiny_onnx_dir: Path) -> None:
    """Same padded batch (different lengths + padding) through PyTorch and through the ONNX graph."""
    import onnxruntime as ort
    from transformers import AutoTokenizer

    texts = TEXTS + varied_texts(40, seed=11)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    batch = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="np")
    assert batch["attention_mask"].min() == 0, "the batch must contain padding"
    session = ort.InferenceSession(str(tiny_onnx_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(
        ["logits"], {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    )
    torch_logits = _torch_logits(tiny_model_dir, texts, 64)
    assert np.abs(onnx_logits - torch_logits).max() <= 1e-4
    assert np.abs(torch_logits).max() > 1.0, "logits should be decisive, not near zero"


def test_runtime_probs_match_pytorch(tiny_model_dir: Path, tiny_sentiment_model: SentimentModel) -> None:
    """The runtime's own tokenisation (tokenizers, truncation) + padding gives PyTorch's probabilities."""
    from transformers import AutoTokenizer

    texts = TEXTS + varied_texts(40, seed=12)
    hf = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids, _ = tiny_sentiment_model.tokenize(texts)
    assert ids == hf(texts, truncation=True, max_length=tiny_sentiment_model.max_length)["input_ids"]
    expected = _torch_logits(tiny_model_dir, texts, tiny_sentiment_model.max_length)
    expected = np.exp(expected) / np.exp(expected).sum(axis=1, keepdims=True)
    probs = tiny_sentiment_model.infer_ids(ids).probs
    assert probs.shape == (len(texts), 2) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_chunked_sorted_inference_keeps_input_order(tiny_sentiment_model: SentimentModel) -> None:
    texts = varied_texts(101, seed=13)
    ids, _ = tiny_sentiment_model.tokenize(texts)
    whole = tiny_sentiment_model.infer_ids(ids)
    assert isinstance(whole, InferenceResult)
    lengths = [len(x) for x in ids]
    assert whole.real_tokens == sum(lengths)
    assert whole.padded_tokens == len(ids) * max(lengths)
    for chunk_size in (1, 7, 16, 100):
        chunked = tiny_sentiment_model.infer_ids(ids, chunk_size=chunk_size)
        np.testing.assert_allclose(chunked.probs, whole.probs, atol=1e-5)
        assert chunked.real_tokens == whole.real_tokens
        assert chunked.padded_tokens <= whole.padded_tokens
    assert tiny_sentiment_model.infer_ids(ids, chunk_size=1).padded_tokens == whole.real_tokens
    assert tiny_sentiment_model.infer_ids(ids, chunk_size=16).padded_tokens < 0.8 * whole.padded_tokens
    assert tiny_sentiment_model.infer_ids(ids, chunk_size=500).padded_tokens == whole.padded_tokens
    with pytest.raises(ValueError, match="chunk_size"):
        tiny_sentiment_model.infer_ids(ids, chunk_size=0)
    empty = tiny_sentiment_model.infer_ids([])
    assert empty.probs.shape == (0, 2) and empty.real_tokens == empty.padded_tokens == 0


def test_truncation_flags(tiny_onnx_dir: Path) -> None:
    model = SentimentModel.load(tiny_onnx_dir, device="cpu", max_length=16, warmup=False)
    long_text = " ".join(["good"] * 30)
    ids, truncated = model.tokenize(["good movie", long_text, " ".join(["bad"] * 14), ""])
    assert truncated == [False, True, False, False]
    assert [len(x) for x in ids] == [4, 16, 16, 2]
    cls_id, sep_id = ids[3]
    assert ids[1][0] == cls_id and ids[1][-1] == sep_id, "special tokens are kept when truncating"


def test_predict_and_predictions(tiny_sentiment_model: SentimentModel) -> None:
    predictions = tiny_sentiment_model.predict(["I loved it", "terrible, awful, rude"])
    assert all(isinstance(p, Prediction) for p in predictions)
    first = predictions[0]
    assert set(first.scores) == {"NEGATIVE", "POSITIVE"}
    assert first.score == max(first.scores.values()) and first.label == max(first.scores, key=first.scores.get)
    assert sum(first.scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert [p.label for p in predictions] == ["POSITIVE", "NEGATIVE"]  # the toy rule it was trained on
    probs = np.array([[0.2, 0.8], [0.9, 0.1]], dtype=np.float32)
    assert [p.label for p in tiny_sentiment_model.to_predictions(probs)] == ["POSITIVE", "NEGATIVE"]


def test_model_attributes_and_meta(tiny_sentiment_model: SentimentModel, tiny_onnx_dir: Path) -> None:
    model = tiny_sentiment_model
    manifest = json.loads((tiny_onnx_dir / "sentiment-manifest.json").read_text())
    assert model.labels == ("NEGATIVE", "POSITIVE")
    assert model.sha256 == manifest["onnx_sha256"]
    assert model.precision == "fp32" and model.provider == "CPUExecutionProvider"
    assert model.path == tiny_onnx_dir and model.max_length == 128
    assert model.model_id == manifest["source"] and model.revision is None
    meta = ModelMeta(**model.model_meta())
    assert meta.provider == "CPUExecutionProvider" and meta.onnx_sha256 == model.sha256


def test_load_logs_model_loaded(tiny_onnx_dir: Path) -> None:
    with structlog.testing.capture_logs() as logs:
        SentimentModel.load(tiny_onnx_dir, device="cpu", threads=1)
    event = next(e for e in logs if e["event"] == "model_loaded")
    assert event["provider"] == "CPUExecutionProvider"
    assert event["precision"] == "fp32" and event["labels"] == ["NEGATIVE", "POSITIVE"]
    assert event["path"] == str(tiny_onnx_dir) and len(event["sha256"]) == 64


def test_tampered_onnx_is_rejected(tiny_onnx_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "export"
    shutil.copytree(tiny_onnx_dir, copy)
    with open(copy / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelIntegrityError, match="sha256"):
        SentimentModel.load(copy, device="cpu")


def test_reload_swaps_in_a_new_working_session_and_rechecks_the_file(tiny_onnx_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(tiny_onnx_dir, copy)
    model = SentimentModel.load(copy, device="cpu", threads=1)
    before = model.predict(["a good movie"])[0]
    old = model._session
    model.reload()
    assert model._session is not old and model.provider == "CPUExecutionProvider"
    assert model.predict(["a good movie"])[0] == before
    current = model._session
    with open(copy / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelIntegrityError, match="no longer matches"):
        model.reload()
    assert model._session is current, "a failed reload keeps the session it had"


def test_not_an_exported_dir(tiny_model_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not an exported model dir"):
        SentimentModel.load(tiny_model_dir, device="cpu")


@pytest.mark.skipif(gpu_visible(), reason="this machine has a GPU")
def test_cuda_demanded_without_gpu_fails_fast(tiny_onnx_dir: Path) -> None:
    with pytest.raises(ProviderUnavailableError, match="cuda"):
        SentimentModel.load(tiny_onnx_dir, device="cuda")


@pytest.mark.skipif(gpu_visible(), reason="this machine has a GPU")
def test_auto_without_gpu_uses_cpu_with_warning(tiny_onnx_dir: Path) -> None:
    with structlog.testing.capture_logs() as logs:
        model = SentimentModel.load(tiny_onnx_dir, device="auto")
    assert model.provider == "CPUExecutionProvider"
    assert model.model_meta()["provider"] == "CPUExecutionProvider"
    assert any(e["event"] == "cuda_unavailable_using_cpu" and e["log_level"] == "warning" for e in logs)


@pytest.mark.skipif(gpu_visible(), reason="this machine has a GPU")
def test_auto_probe_falls_back_when_cuda_session_fails(tiny_onnx_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU that looks present but whose CUDA provider can't start (e.g. no CUDA 13 / cuDNN 9 libraries): CPU,
    with a warning."""
    monkeypatch.setattr(session, "gpu_visible", lambda: True)
    with structlog.testing.capture_logs() as logs:
        model = SentimentModel.load(tiny_onnx_dir, device="auto")
    assert model.provider == "CPUExecutionProvider"
    warning = next(e for e in logs if e["event"] == "cuda_unavailable_using_cpu")
    assert "GPU is visible" in warning["reason"]


def test_runtime_path_imports_no_torch(tiny_onnx_dir: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from worker.model.resolve import resolve_model
        from worker.model.runtime import SentimentModel
        from worker.settings import load_settings

        path = resolve_model(load_settings(model={str(tiny_onnx_dir)!r}))
        model = SentimentModel.load(path, device="auto")
        print(model.predict(["I loved it"])[0].label)
        heavy = sorted(m for m in ("torch", "transformers", "optimum") if m in sys.modules)
        assert not heavy, heavy
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "POSITIVE"
