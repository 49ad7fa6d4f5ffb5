"""Rolling out a model: hot swap (SIGHUP, model_watch_s, POST /admin/model), the canary gate, shadow mode."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from worker.settings.base import Section


class ModelRollout(Section):
    """How a new model is checked and swapped in, and the optional shadow model (docs/rollout.md)."""

    title = "Roll-out (swap, canary, shadow)"

    model_watch_s: float = Field(default=0, ge=0, description="Check `model` (a directory or symlink) every this "
        "many seconds and swap in a changed export (0 = off; SIGHUP and POST /admin/model work anyway).")  # fmt: skip
    allow_label_change: bool = Field(default=False, description="Let a swapped-in model have other labels.")
    canary_file: Path | None = Field(default=None, description="More canary texts for the swap gate: one per line, or "
        "JSONL with `text` (and `label`: then also scored for canary_min_accuracy).")  # fmt: skip
    canary_min_agreement: float = Field(default=0.9, ge=0, le=1, description="A candidate must give the serving "
        "model's label to at least this share of the canary texts (built-in + canary_file; 0 = no check).")  # fmt: skip
    canary_min_accuracy: float = Field(default=0.8, ge=0, le=1, description="A candidate must label at least this "
        "share of canary_file's labelled lines right.")  # fmt: skip
    shadow_model: str | None = Field(default=None, description="Shadow mode: a second model (hub id or dir) also "
        "scores a sample of the inputs, off the output path; only agreement and latency metrics.")  # fmt: skip
    shadow_sample_rate: float = Field(default=0.1, gt=0, le=1, description="Share of inputs the shadow model scores.")
