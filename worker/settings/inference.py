"""The model: which one, where it runs (device, precision, threads), and how a failing session is handled."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from worker.settings.base import Section

DEFAULT_MODEL = "distilbert/distilbert-base-uncased-finetuned-sst-2-english"
# The revision transformers.pipeline("sentiment-analysis") pins for its default model.
DEFAULT_REVISION = "714eb0f"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sentiment-worker"


class Inference(Section):
    """The model and its ONNX Runtime session (``settings.inference``; ``settings.model`` is the model's id)."""

    title = "Model"

    model: str = Field(
        default=DEFAULT_MODEL,
        description="Hugging Face hub id, a local HF model dir, or an exported ONNX dir.",
    )
    model_revision: str | None = Field(
        default=DEFAULT_REVISION, description="Hub revision (commit/tag) for a hub id; ignored for local dirs."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="'cuda' fails if CUDA can't be used; 'auto' uses CUDA if a session gets it."
    )
    device_id: int = Field(default=0, ge=0, description="CUDA device id.")
    precision: Literal["fp32", "o3", "int8", "fp16"] = Field(
        default="fp32", description="fp32, o3 (ORT graph optimisation), int8 (dynamic, CPU), fp16 (CUDA only)."
    )
    max_length: int = Field(default=128, gt=2, le=512, description="Max sequence length in tokens.")
    threads: int = Field(default=0, ge=0, description="ONNX Runtime intra-op threads; 0 = automatic: one for a model under 1 MFLOP per token (its ops are too small to share), all cores otherwise.")  # noqa: E501  # fmt: skip
    intra_op_spinning: bool = Field(
        default=False,
        description="Let ONNX Runtime's intra-op threads busy-wait between ops. Off: the worker's poll, Kafka "
        "and producer threads share the cores (on 2 cores spinning doubled latency at 50% load); on: ~10% more "
        "model-only speed on an otherwise idle machine.",
    )
    cuda_graph: bool = Field(default=False, description="On CUDA: capture and replay a CUDA graph per shape bucket; "
        "needs every node of the model on CUDA, else it is dropped with a warning.")  # fmt: skip
    cache_dir: Path = Field(default_factory=default_cache_dir, description="Export and data cache.")
    simulate_device_rate: float | None = Field(
        default=None,
        gt=0,
        description="Simulated device: replace the model's forward pass by a wait of rows/R seconds (R = this "
        "rate in rows per second; the wait holds no GIL and burns no CPU), measuring how well the host feeds an "
        "accelerator; tokenizing, padding, encoding and producing stay real. Outputs say "
        "sentiment_meta.simulated: true. Unset = off.",
    )
    inference_failures_to_open: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Failures of the model session in a row (a batch fails and so does a known-good probe record) "
        "before the worker pauses consuming, reports not-ready and rebuilds the session. Only a record that fails "
        "while the probe runs is dead-lettered (inference_failed).",
    )
    inference_rebuild_attempts: int = Field(
        default=3,
        ge=0,
        le=100,
        description="Session rebuilds before giving up: the worker then exits 1 without committing the records "
        "the model failed on (they stay in Kafka for the next worker).",
    )
    inference_rebuild_backoff_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Pause before the first session rebuild; doubles per attempt (at most 60 s).",
    )

    @model_validator(mode="after")
    def _inference_consistent(self) -> Any:
        if self.precision == "fp16" and self.device == "cpu":
            raise ValueError("precision fp16 runs only on CUDA; use device cuda (or auto) or precision fp32/int8")
        return self
