"""ONNX Runtime's intra-op threads when the ``threads`` setting is 0 (automatic).

A small model's ops are too small to share between threads: the pool's hand-offs then cost more CPU than they save.
Measured with the near-free benchmark model (DistilBERT, dim 32, one layer, ~16 KFLOP per token) in the worker on
2 cores: one thread gave 9,130 msg/s at 141.1 µs of CPU per message, all cores 8,447 msg/s at 157.7 µs, in the
same run (``benchmarks/results/2026-12-01-cpu-2core-ceiling``). A real model (the starter: dim 384, 6 layers,
~21 MFLOP per token) needs the pool: its model-only speed on 2 cores comes from it. So 0 means one thread under
``SMALL_MODEL_FLOPS_PER_TOKEN``, all cores above it (or when the model's size can't be read from its config).
"""

from __future__ import annotations

from typing import Any

SMALL_MODEL_FLOPS_PER_TOKEN = 1_000_000


def flops_per_token(config: dict[str, Any]) -> float | None:
    """Multiply-adds ×2 per token of the transformer layers (projections and feed-forward; attention scores and
    embeddings left out), from an HF config (DistilBERT's or BERT's names); None when it doesn't say."""
    dim = config.get("dim") or config.get("hidden_size")
    layers = config.get("n_layers") or config.get("num_hidden_layers")
    ffn = config.get("hidden_dim") or config.get("intermediate_size")
    if not all(isinstance(v, int) and v > 0 for v in (dim, layers, ffn)):
        return None
    return 2.0 * layers * (4 * dim * dim + 2 * dim * ffn)


def intra_op_threads(requested: int, config: dict[str, Any]) -> int:
    """``requested`` when set (> 0); for 0: 1 for a small model, else 0 (ONNX Runtime's default: all cores)."""
    if requested > 0:
        return requested
    flops = flops_per_token(config)
    return 1 if flops is not None and flops < SMALL_MODEL_FLOPS_PER_TOKEN else 0
