"""The models of the GPU check, built where it runs (no network there): a DistilBERT-base-shape model with random
weights (``base``; ``--smoke``: a tiny one), exported to ONNX with ``torch.onnx.export`` (Optimum can't run beside
transformers 5) and converted to fp16 with the worker's own converter (``worker.model.precisions``).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from worker.model.manifest import MANIFEST_FORMAT_VERSION, ONNX_NAME, sha256_file, write_manifest

LABELS = {0: "NEGATIVE", 1: "POSITIVE"}
BASE_SHAPE: dict[str, int] = {}  # DistilBertConfig() defaults: dim 768, 6 layers, 12 heads, FFN 3072
TINY_SHAPE = {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64}
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def build_hf_model(directory: Path, *, shape: dict[str, int], tokenizer_dir: Path | None, seed: int = 0) -> Path:
    """A seeded random-weight DistilBertForSequenceClassification folder with an uncased tokenizer."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    directory.mkdir(parents=True, exist_ok=True)
    if tokenizer_dir is not None:
        for name in TOKENIZER_FILES:
            if (tokenizer_dir / name).is_file():
                shutil.copy2(tokenizer_dir / name, directory / name)
        vocab = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    else:  # no real tokenizer at hand (a smoke run on a bare machine): the benchmarks' toy vocabulary
        from benchmarks.models import _save_tiny_tokenizer

        _save_tiny_tokenizer(directory)
        vocab = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    config = DistilBertConfig(
        vocab_size=len(vocab),
        pad_token_id=int(vocab.get("[PAD]", 0)),
        id2label=dict(LABELS),
        label2id={v: k for k, v in LABELS.items()},
        **shape,
    )
    torch.manual_seed(seed)
    model = DistilBertForSequenceClassification(config).eval()
    model.save_pretrained(directory, safe_serialization=True)
    return directory


class _LogitsOnly:
    """Wraps the HF model so the ONNX graph has one output, ``logits``."""

    @staticmethod
    def wrap(model: Any) -> Any:
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

        return Wrapped().eval()


def export_onnx(hf_dir: Path, out_dir: Path) -> dict[str, Any]:
    """fp32 ONNX of ``hf_dir`` in an exported dir (manifest, config, tokenizer); returns what it measured."""
    import torch
    from transformers import DistilBertForSequenceClassification

    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    model = DistilBertForSequenceClassification.from_pretrained(hf_dir, attn_implementation="eager").eval()
    wrapped = _LogitsOnly.wrap(model)
    ids = torch.randint(1000, 2000, (2, 16), dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    dynamic = {"batch": 0, "sequence": 1}
    with torch.no_grad():
        torch.onnx.export(
            wrapped,
            (ids, mask),
            str(out_dir / ONNX_NAME),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={
                "input_ids": {v: k for k, v in dynamic.items()},
                "attention_mask": {v: k for k, v in dynamic.items()},
                "logits": {0: "batch"},
            },
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )
        expected = wrapped(ids, mask).numpy()
    import onnxruntime as ort

    session = ort.InferenceSession(str(out_dir / ONNX_NAME), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    for name in (*TOKENIZER_FILES, "config.json"):
        if (hf_dir / name).is_file():
            shutil.copy2(hf_dir / name, out_dir / name)
    _manifest(out_dir, "fp32", str(hf_dir))
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "max_abs_dlogit_vs_torch": float(np.abs(np.asarray(got) - expected).max()),
        "onnx_mb": round((out_dir / ONNX_NAME).stat().st_size / 2**20, 1),
    }


def convert_to_fp16(fp32_dir: Path, out_dir: Path) -> dict[str, Any]:
    from worker.model.precisions import FP16_OPTIONS, convert_fp16_file

    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    convert_fp16_file(fp32_dir / ONNX_NAME, out_dir / ONNX_NAME)
    for name in (*TOKENIZER_FILES, "config.json"):
        if (fp32_dir / name).is_file():
            shutil.copy2(fp32_dir / name, out_dir / name)
    _manifest(out_dir, "fp16", str(fp32_dir), options={"float16": FP16_OPTIONS})
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "onnx_mb": round((out_dir / ONNX_NAME).stat().st_size / 2**20, 1),
    }


def _labels(directory: Path) -> list[str]:
    id2label = json.loads((directory / "config.json").read_text(encoding="utf-8")).get("id2label") or LABELS
    return [str(id2label[k]) for k in sorted(id2label, key=int)]


def _manifest(directory: Path, precision: str, source: str, options: dict[str, Any] | None = None) -> None:
    write_manifest(
        directory,
        {
            "format_version": MANIFEST_FORMAT_VERSION,
            "source": source,
            "source_kind": "local",
            "revision": None,
            "precision": precision,
            "onnx_file": ONNX_NAME,
            "onnx_sha256": sha256_file(directory / ONNX_NAME),
            "labels": _labels(directory),
            "options": options or {},
        },
    )
