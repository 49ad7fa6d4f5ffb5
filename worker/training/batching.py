"""Training batches: tokenise once, batch rows of similar length (little padding), pad each batch to its longest row."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from worker.training.data import Example
from worker.training.evaluate import EncodedBatch, encode_batches


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, group_size: int, rng: random.Random
) -> list[list[int]]:
    """Shuffle, cut into groups of ``group_size``, sort each group by length, batch, shuffle the batches.

    Batches hold similar lengths (little padding) while the order stays random across the epoch.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    group_size = max(group_size, batch_size)
    batches: list[list[int]] = []
    for start in range(0, len(order), group_size):
        group = sorted(order[start : start + group_size], key=lengths.__getitem__)
        batches.extend(group[i : i + batch_size] for i in range(0, len(group), batch_size))
    rng.shuffle(batches)
    return batches


@dataclass(frozen=True)
class TrainingSet:
    """The training rows tokenised once (unpadded): batches are padded to their own longest row."""

    ids: list[list[int]]
    lengths: list[int]
    labels: np.ndarray
    pad_id: int

    def padded(self, batch: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask) of the rows ``batch``, padded to the longest of them."""
        width = max(self.lengths[i] for i in batch)
        input_ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, i in enumerate(batch):
            input_ids[row, : self.lengths[i]] = self.ids[i]
            mask[row, : self.lengths[i]] = 1
        return input_ids, mask


EvalSet = tuple[list[EncodedBatch], np.ndarray]  # encoded batches, labels


def encode_training_set(tokenizer: Any, train: Sequence[Example], max_length: int) -> TrainingSet:
    """Tokenise the training rows once (truncated to ``max_length``, unpadded)."""
    texts = [t for t, _ in train]
    labels = np.asarray([y for _, y in train], dtype=np.int64)
    ids: list[list[int]] = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    return TrainingSet(ids, [len(x) for x in ids], labels, int(tokenizer.pad_token_id or 0))


def encode_eval_sets(
    tokenizer: Any, eval_sets: Mapping[str, Sequence[Example]], max_length: int, batch_size: int
) -> dict[str, EvalSet]:
    """Each eval set as length-sorted padded batches (``encode_batches``) plus its labels."""
    return {
        name: (
            encode_batches(tokenizer, [t for t, _ in rows], max_length=max_length, batch_size=batch_size),
            np.asarray([y for _, y in rows]),
        )
        for name, rows in eval_sets.items()
    }
