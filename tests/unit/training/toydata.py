"""A separable toy sentiment set for quick fine-tuning tests (shared by unit and integration tests)."""

from __future__ import annotations

import random

POSITIVE_WORDS = ["good", "great", "excellent", "amazing", "awesome", "wonderful", "love", "best", "nice", "happy"]
NEGATIVE_WORDS = ["bad", "terrible", "awful", "horrible", "hate", "worst", "poor", "boring", "sad", "broken"]
FILLER_WORDS = ["the", "movie", "was", "food", "service", "product", "phone", "really", "quite", "very"]


def toy_examples(n: int, seed: int) -> list[tuple[str, int]]:
    """Texts of three filler words plus one sentiment word; the label follows the sentiment word."""
    rng = random.Random(seed)
    rows: list[tuple[str, int]] = []
    for i in range(n):
        label = i % 2
        words = [*rng.sample(FILLER_WORDS, 3), rng.choice(POSITIVE_WORDS if label else NEGATIVE_WORDS)]
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows
