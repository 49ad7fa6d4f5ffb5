"""Training batches for ``transformers.Trainer``: tokenise once, batch rows of similar length, shuffle the batches.

The Trainer's data loader pads each batch to its own longest row (``DataCollatorWithPadding``); the sampler
here decides which rows share a batch. Sorting by length inside groups of ~1,600 shuffled rows halved the
epoch time against random batches on a 2-core CPU (2% padding instead of ~45%), and shuffling the batches
afterwards keeps the order random across the epoch (``group_by_length`` would emit each group's batches
longest first).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from training.data import Example


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, group_size: int, rng: random.Random
) -> list[list[int]]:
    """Shuffle, cut into groups of ``group_size``, sort each group by length, batch, shuffle the batches.

    Batches hold similar lengths (little padding) while the order stays random across the epoch. The group
    size is rounded up to a multiple of ``batch_size``, so every batch is full except one, which comes last.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    group_size = -(-max(group_size, batch_size) // batch_size) * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(order), group_size):
        group = sorted(order[start : start + group_size], key=lengths.__getitem__)
        batches.extend(group[i : i + batch_size] for i in range(0, len(group), batch_size))
    rng.shuffle(batches)
    short = [b for b in batches if len(b) < batch_size]
    return [b for b in batches if len(b) == batch_size] + short


class LengthGroupedShuffleSampler:
    """A ``torch.utils.data.Sampler`` over :func:`length_grouped_batches`, flattened, new batches every epoch.

    The data loader cuts the indices into consecutive chunks of ``batch_size``: exactly these batches (all
    full but the last). Epoch ``e`` uses the seed ``seed + e * 1_000_003``, so a run resumed from a
    checkpoint sees the same batches as an uninterrupted one (the Trainer calls :meth:`set_epoch`).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, group_size: int, seed: int) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.group_size = group_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        rng = random.Random(self.seed + self.epoch * 1_000_003)
        return length_grouped_batches(self.lengths, self.batch_size, self.group_size, rng)

    def __iter__(self) -> Iterator[int]:
        return iter([i for batch in self.batches() for i in batch])

    def __len__(self) -> int:
        return len(self.lengths)


@dataclass(frozen=True)
class TokenisedSet:
    """Rows tokenised once (truncated, unpadded) as the Trainer's dataset: ``{input_ids, attention_mask, labels}``."""

    input_ids: list[list[int]]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        ids = self.input_ids[i]
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": self.labels[i]}

    @property
    def lengths(self) -> list[int]:
        return [len(x) for x in self.input_ids]


def tokenise(tokenizer: Any, rows: Sequence[Example], max_length: int, *, sort: bool = False) -> TokenisedSet:
    """Tokenise ``rows`` (truncated to ``max_length``); ``sort`` orders them by length (eval sets: less padding)."""
    ids: list[list[int]] = tokenizer([t for t, _ in rows], truncation=True, max_length=max_length)["input_ids"]
    labels = [int(y) for _, y in rows]
    if sort:
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        ids, labels = [ids[i] for i in order], [labels[i] for i in order]
    return TokenisedSet(ids, labels)


def padding_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of the padded token slots that are padding when each batch is padded to its longest row."""
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches if b)
    return 1 - sum(lengths) / padded if padded else 0.0
