"""A tiny DistilBERT sentiment classifier built locally (no network), for fast tests.

``build_tiny_model(dir)`` writes a normal Hugging Face model dir: the real
``DistilBertForSequenceClassification`` architecture (2 layers, dim 32, 2 heads, hidden_dim 64, labels
NEGATIVE/POSITIVE), a real WordPiece tokenizer saved as ``DistilBertTokenizerFast`` (so ``tokenizer.json``
exists), and weights from a fixed seed.

Why it is briefly trained: with purely random weights the [CLS] state hardly depends on the input, so
every logit margin is a near-tie and *any* perturbation flips labels — an fp32-vs-INT8 agreement test
then measures noise (it reached 56–91% here, whatever the head's scale: scaling the classifier scales
the quantisation error by the same factor). So the model is trained for a few hundred steps (~seconds,
deterministic) on a synthetic task: POSITIVE iff the text holds more positive than negative words.
Its decisions then rest on strong input features, like a fine-tuned model's, and its logits are
decisive; both labels occur. The "sentiment" is a toy rule, not a measure of real accuracy.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from benchmarks.models import toy_vocab, toy_wordpiece_tokenizer


def _words(text: str) -> list[str]:
    return text.split()


POSITIVE_WORDS = _words(
    """
good great excellent amazing awesome wonderful fantastic love loved lovely like liked best nice
happy glad enjoy enjoyed perfect beautiful brilliant fun favorite recommend superb
"""
)
NEGATIVE_WORDS = _words(
    """
bad terrible awful horrible hate hated worst poor boring sad angry disappointing disappointed waste
broken slow ugly annoying useless rude dirty cheap wrong problem fail failed never
"""
)
NEUTRAL_WORDS = _words(
    """
the a an and or but not no yes is are was were be been being am do does did have has had i you he
she it we they me him her us them my your his its our their this that these those what which who
whom whose when where why how all any both each few more most other some such only own same so than
too very can will just should now there here then once again also of in on at by for with about
against between into through during before after above below to from up down out off over under
further while if because as until movie film book food service product phone movies films story plot
acting actor actors music day time year people man woman thing things place way world life work
hotel room staff price order delivery quality battery screen camera app game show song restaurant
meal coffee really quite pretty rather much many well better worse still even ever back get got make
made go went gone come came see saw seen know knew think thought feel felt look looked want wanted
buy bought use used try tried give gave take took say said tell told find found keep kept one two
three first last new old big small long short high low little own right left
"""
)
_WORDS = [*NEUTRAL_WORDS, *POSITIVE_WORDS, *NEGATIVE_WORDS]
_EXTRA = ["!", "?", ".", ",", "xyzzy", "Qwerty", "2024", "LOL", "sooo", "can't"]


def _vocab() -> list[str]:
    return toy_vocab(_WORDS)


def toy_label(text: str) -> int:
    """The rule the tiny model learns: 1 (POSITIVE) iff more positive than negative words."""
    words = [w.strip(".,!?;:'\"()").lower() for w in text.split()]
    score = sum(w in POSITIVE_WORDS for w in words) - sum(w in NEGATIVE_WORDS for w in words)
    return int(score > 0)


def _random_text(rng: random.Random, *, sentiment_rate: float) -> str:
    length = rng.choice([1, 2, 3, 4, 5, 8, 12, 20, 35, 60])
    words: list[str] = []
    for _ in range(length):
        roll = rng.random()
        if roll < sentiment_rate:
            words.append(rng.choice(POSITIVE_WORDS if rng.random() < 0.5 else NEGATIVE_WORDS))
        elif roll < sentiment_rate + 0.08:
            words.append(rng.choice(_EXTRA))
        else:
            words.append(rng.choice(NEUTRAL_WORDS))
    if rng.random() < 0.3:
        words[0] = words[0].capitalize()
    return " ".join(words)


def varied_texts(n: int = 200, *, seed: int = 7) -> list[str]:
    """Deterministic, varied English-like texts (1 to 60 words, punctuation, capitals, unknown words)."""
    rng = random.Random(seed)
    handmade = [
        "I loved it",
        "I hated it",
        "This is the best movie I have ever seen!",
        "Terrible service. The food was cold and the staff was rude.",
        "meh",
        "OK",
        "Not bad, not great.",
        "The battery died after two days, what a waste of money",
        "Absolutely wonderful experience, would recommend to anyone :)",
        "zzz qqq xyzzy plugh",
        "12345 !!! ???",
        "The plot was boring but the music was beautiful and the actors were great",
    ]
    texts = list(handmade)
    while len(texts) < n:
        texts.append(_random_text(rng, sentiment_rate=rng.choice([0.0, 0.1, 0.25])))
    return texts[:n]


def build_tiny_model(directory: Path, *, seed: int = 1234, train_steps: int = 300) -> Path:
    """Write the tiny DistilBERT sequence classifier + fast tokenizer as a normal HF model dir."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    vocab = _vocab()
    token_ids = {token: i for i, token in enumerate(vocab)}
    tokenizer = toy_wordpiece_tokenizer(_WORDS)

    config = DistilBertConfig(
        vocab_size=len(vocab),
        dim=32,
        n_layers=2,
        n_heads=2,
        hidden_dim=64,
        max_position_embeddings=512,
        pad_token_id=token_ids["[PAD]"],
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
    )
    torch.manual_seed(seed)
    model = DistilBertForSequenceClassification(config)
    if train_steps > 0:
        rng = random.Random(seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
        model.train()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny matrices: more threads only add contention (10x slower on 2 cores)
        try:
            _train(model, tokenizer, rng, optimizer, train_steps)
        finally:
            torch.set_num_threads(threads)
    model.eval()
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


def _train(model: Any, tokenizer: Any, rng: random.Random, optimizer: Any, steps: int) -> None:
    import torch

    for _ in range(steps):
        texts = [_random_text(rng, sentiment_rate=rng.choice([0.0, 0.1, 0.25, 0.4])) for _ in range(32)]
        batch = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
        labels = torch.tensor([toy_label(t) for t in texts])
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
