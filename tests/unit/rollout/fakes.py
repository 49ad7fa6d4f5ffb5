"""Fake models for the roll-out unit tests: labels from a rule on the text (ids are the text's code points)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from worker.model.runtime import InferenceResult


class RuleModel:
    """A model whose label for a text is ``rule(text)`` (an index into ``labels``); probabilities 0.9 / 0.1."""

    provider, precision, revision = "CPUExecutionProvider", "fp32", None

    def __init__(
        self,
        rule: Callable[[str], int] = lambda text: int("good" in text or "love" in text),
        labels: Sequence[str] = ("NEGATIVE", "POSITIVE"),
        sha256: str = "a" * 64,
        *,
        fail: bool = False,
        nan: bool = False,
        vocab: str = "",
    ) -> None:
        self.rule, self.labels, self.sha256 = rule, tuple(labels), sha256
        self.model_id = f"rule-{sha256[:6]}"
        self.fail, self.nan, self.vocab = fail, nan, vocab
        self.path = f"/models/{sha256[:6]}"
        self.calls = 0

    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        return [[ord(c) for c in text] or [0] for text in texts], [False] * len(texts)

    def infer_ids(self, ids: Sequence[Sequence[int]], *, chunk_size: int | None = None) -> InferenceResult:
        self.calls += 1
        if self.fail:
            raise RuntimeError("this model fails")
        probs = np.full((len(ids), len(self.labels)), 0.1 / max(1, len(self.labels) - 1), dtype=np.float32)
        for row, seq in enumerate(ids):
            probs[row, self.rule("".join(chr(c) for c in seq if c))] = 0.9
        if self.nan:
            probs[:] = np.nan
        return InferenceResult(probs, 0, 0)

    def model_meta(self) -> dict[str, Any]:
        return {"id": self.model_id, "revision": None, "onnx_sha256": self.sha256}
