"""How records are grouped for the model: batch size, wait, token budget, chunk per model call, queue depth.

``max_batch_size`` and ``inference_batch_size`` may be ``"auto"``: what suits depends on where the model runs,
which is known only once its session is up (``device auto`` may get CUDA or fall back to the CPU). The layer that
loads the model resolves them then (``worker.model.buckets.resolve_batching(batching, provider)`` picks the
defaults by the session's execution provider and calls :meth:`Batching.resolve`); a stage is handed the resolved
section.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from worker.settings.base import Section


class Batching(Section):
    """Batches: formed under max_batch_size / max_batch_tokens / max_wait_ms, run in chunks of inference_batch_size."""

    title = "Batching"

    max_batch_size: Annotated[int, Field(gt=0, le=4096)] | Literal["auto"] = Field(default="auto", description=
        "Flush a batch at this many records; 'auto': 64 when the model runs on the CPU, 1024 on a GPU (decided "
        "by the provider the model's session got, so a fallback to the CPU gets 64).")  # fmt: skip
    max_wait_ms: int = Field(default=20, ge=0, description="Flush a non-empty batch after this many ms.")
    max_batch_tokens: int | None = Field(
        default=None, gt=0, description="Optional token budget: flush before a batch exceeds it."
    )
    inference_batch_size: Annotated[int, Field(gt=0)] | Literal["auto"] = Field(default="auto", description=
        "Records per model call; a batch is sorted by length and run in chunks of this size so padding waste "
        "stays small (tweets: 8% at 8, 16% at 16; 2 cores: 8 is best). 'auto': 8 on the CPU, 256 on a GPU "
        "(as max_batch_size).")  # fmt: skip
    queue_max_batches: int = Field(
        default=4, gt=0, description="Bounded queue of batches between stages; full queue pauses the consumer."
    )

    @property
    def resolved(self) -> bool:
        """No ``"auto"`` left: the sizes are numbers a stage can use."""
        return self.max_batch_size != "auto" and self.inference_batch_size != "auto"

    def resolve(self, *, max_batch_size: int, inference_batch_size: int) -> Batching:
        """A copy with each ``"auto"`` replaced by the given default (numbers set by the user stay)."""
        return self.model_copy(
            update={
                "max_batch_size": max_batch_size if self.max_batch_size == "auto" else self.max_batch_size,
                "inference_batch_size": (
                    inference_batch_size if self.inference_batch_size == "auto" else self.inference_batch_size
                ),
            }
        )

    @property
    def batch_size(self) -> int:
        """``max_batch_size`` as a number; raises if it is still ``"auto"`` (resolve the section first)."""
        return _number(self.max_batch_size, "max_batch_size")

    @property
    def chunk_size(self) -> int:
        """``inference_batch_size`` as a number; raises if it is still ``"auto"`` (resolve the section first)."""
        return _number(self.inference_batch_size, "inference_batch_size")

    @property
    def max_wait_s(self) -> float:
        return self.max_wait_ms / 1000.0


def _number(value: int | str, name: str) -> int:
    if value == "auto":
        raise ValueError(f"{name} is 'auto': resolve the Batching section once the model's provider is known")
    return int(value)
