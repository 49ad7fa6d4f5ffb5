from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from worker.model.runtime import InferenceResult
from worker.stream.common.types import Item


@dataclass
class Rec:
    """A stand-in for kafka-python's ConsumerRecord (unit tests only)."""

    topic: str = "in"
    partition: int = 0
    offset: int = 0
    timestamp: int | None = 1_700_000_000_000
    key: bytes | None = b"k"
    value: bytes | None = b'{"text": "hello"}'
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def item(offset: int = 0, tokens: int = 5, partition: int = 0) -> Item:
    return Item(
        record=Rec(offset=offset, partition=partition),
        payload={"text": "x"},
        text="x",
        received=0.0,
        ids=list(range(tokens)),
    )


class FakeModel:
    """Just what the runner and its inference stage use of the model; records the size of every model call.

    ``fail_at_tokens``: a model call that holds a sequence of that many tokens raises (a record the model fails on).
    """

    model_id, revision, provider, precision, sha256 = "fake", None, "CPUExecutionProvider", "fp32", "0" * 64
    vocab = ""  # ids are never re-tokenised

    def __init__(self, fail_at_tokens: int | None = None) -> None:
        self.labels = ["NEGATIVE", "POSITIVE"]
        self.calls: list[int] = []
        self.fail_at_tokens = fail_at_tokens

    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        return [[1, 2]] * len(texts), [False] * len(texts)

    def model_meta(self) -> dict[str, Any]:
        return {"id": self.model_id}

    def reload(self) -> None:
        pass

    def infer_ids(self, ids: Sequence[Sequence[int]], *, chunk_size: int | None = None) -> InferenceResult:
        if self.fail_at_tokens is not None and any(len(seq) == self.fail_at_tokens for seq in ids):
            raise RuntimeError("the model failed on a record")
        self.calls.append(len(ids))
        return InferenceResult(np.full((len(ids), 2), 0.5, dtype=np.float32), 5 * len(ids), 5 * len(ids))
