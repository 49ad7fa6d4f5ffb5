"""The validation gate a hot-swap candidate passes before it may serve (README "Rolling out a model").

The candidate was loaded beside the serving model (``SentimentModel.load``: its ONNX file's sha256 matched its
manifest, its session was created and warmed up). Then, in order:

1. **labels**: the same label set as the serving model (order may differ: each batch carries its model's labels),
   unless ``allow_label_change``;
2. **canary run**: it scores the canary texts (:data:`CANARY_TEXTS`, 50 varied short texts, plus ``canary_file``'s)
   without raising, one finite probability row per text;
3. **agreement**: it gives the serving model's label to at least ``canary_min_agreement`` of them (skipped when the
   labels changed: they can't agree then; ``0`` turns it off);
4. **accuracy**: with labelled lines in ``canary_file`` (JSONL ``{"text": ..., "label": ...}``), it labels at least
   ``canary_min_accuracy`` of them right.

A refusal names its reason (the ``reason`` label of ``sentiment_model_swap_refusals_total``): ``labels_changed``,
``canary_failed``, ``canary_agreement``, ``canary_accuracy`` here; ``unavailable``, ``integrity``, ``load_failed``
and ``canary_file`` where the candidate is resolved and loaded (``controller.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from worker.settings import ModelRollout

# Short, varied texts: plain and mixed sentiment, negation, sarcasm, questions, slang, emoji, shouting, numbers,
# other languages, a single word, noise. What matters is that two versions of a model should label them alike.
CANARY_TEXTS: tuple[str, ...] = (
    "I loved this movie",
    "This was terrible",
    "Not bad at all",
    "The service was slow but the food was great",
    "Absolutely wonderful experience, would recommend",
    "Worst purchase I have ever made",
    "It's okay, nothing special",
    "I would not recommend this to anyone",
    "Great, another delay. Just what I needed.",
    "The staff were friendly and helpful",
    "The room was dirty and smelled bad",
    "best day ever!!!",
    "meh",
    "Fine.",
    "I can't believe how good this is",
    "I can't believe how bad this is",
    "Delivery was fast and the package arrived intact",
    "The battery died after two days",
    "Five stars, would buy again",
    "One star. Broke within a week.",
    "The plot was boring but the acting was brilliant",
    "Never again.",
    "What a waste of money",
    "Pretty good value for the price",
    "This app keeps crashing",
    "Customer support solved my problem in minutes",
    "I'm so disappointed",
    "I'm so happy with it",
    "It does what it says",
    "Why is this so complicated?",
    "love it 😍",
    "ugh 😡 hate it",
    "THIS IS AMAZING",
    "THIS IS AWFUL",
    "10/10 masterpiece",
    "0/10 do not watch",
    "The food was cold and the waiter was rude",
    "A lovely little place with great coffee",
    "Nothing works as advertised",
    "Surprisingly decent",
    "Could have been worse",
    "Could have been better",
    "Thanks, that fixed it!",
    "Refund requested, very unhappy",
    "c'est magnifique",
    "das ist schlecht",
    "ok",
    "good",
    "bad",
    "The weather today is cloudy",
)


class CanaryModel(Protocol):
    labels: Sequence[str]

    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]: ...

    def infer_ids(self, ids: Sequence[Sequence[int]], *, chunk_size: int | None = None) -> Any: ...


@dataclass(frozen=True, slots=True)
class Canary:
    """The canary set: texts every candidate scores, and the labelled ones (``labelled``: (text, label))."""

    texts: tuple[str, ...]
    labelled: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class GatePolicy:
    min_agreement: float = 0.9
    min_accuracy: float = 0.8
    allow_label_change: bool = False

    @classmethod
    def from_settings(cls, rollout: ModelRollout) -> GatePolicy:
        return cls(rollout.canary_min_agreement, rollout.canary_min_accuracy, rollout.allow_label_change)


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str = ""  # why it was refused ("" when ok)
    detail: str = ""
    agreement: float | None = None  # share of the canary texts given the serving model's label
    accuracy: float | None = None  # share of canary_file's labelled lines labelled right


def load_canary(path: Path | str | None) -> Canary:
    """The built-in texts plus ``path``'s: a text per line, or JSONL objects with ``text`` (and ``label``). Blank
    lines are skipped; ``ValueError`` for a line that starts like JSON but isn't an object with a string ``text``,
    or a file without a text."""
    if path is None:
        return Canary(CANARY_TEXTS)
    texts: list[str] = []
    labelled: list[tuple[str, str]] = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if not line.lstrip().startswith("{"):
            texts.append(line.strip())
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{n}: not valid JSON ({exc})") from None
        text, label = obj.get("text"), obj.get("label")
        if not isinstance(text, str) or not text.strip() or (label is not None and not isinstance(label, str)):
            raise ValueError(f'{path}:{n}: expected {{"text": "...", "label": "..." (optional)}}')
        texts.append(text)
        if label is not None:
            labelled.append((text, label))
    if not texts:
        raise ValueError(f"{path} holds no canary text")
    return Canary((*CANARY_TEXTS, *texts), tuple(labelled))


def predicted_labels(model: CanaryModel, texts: Sequence[str]) -> list[str]:
    """The model's label for each text; ``ValueError`` if its output is not one finite row per text."""
    ids, _ = model.tokenize(texts)
    probs = np.asarray(model.infer_ids(ids, chunk_size=16).probs)
    labels = list(model.labels)
    if probs.shape != (len(texts), len(labels)) or not np.isfinite(probs).all():
        raise ValueError(f"scores of shape {probs.shape} (finite: {bool(np.isfinite(probs).all())}) for {len(texts)} "
                         f"texts and {len(labels)} labels")  # fmt: skip
    return [labels[i] for i in probs.argmax(axis=1).tolist()]


def check(
    candidate: CanaryModel,
    serving_labels: Sequence[str],
    serving_predictions: Sequence[str] | None,
    canary: Canary,
    policy: GatePolicy,
) -> Verdict:
    """Gate ``candidate`` against the serving model (its labels, its predictions on ``canary.texts``)."""
    old, new = set(serving_labels), set(candidate.labels)
    changed = old != new
    if changed and not policy.allow_label_change:
        return Verdict(False, "labels_changed", f"labels {sorted(new)} differ from the serving {sorted(old)}")
    try:
        predictions = predicted_labels(candidate, canary.texts)
        labelled = predicted_labels(candidate, [text for text, _ in canary.labelled]) if canary.labelled else []
    except Exception as exc:
        return Verdict(False, "canary_failed", f"the candidate failed on the canary texts: {exc!r}"[:500])
    agreement = accuracy = None
    if not changed and serving_predictions is not None:
        agreement = sum(a == b for a, b in zip(predictions, serving_predictions, strict=True)) / len(predictions)
    if canary.labelled:
        accuracy = sum(p == label for p, (_, label) in zip(labelled, canary.labelled, strict=True)) / len(labelled)
    if agreement is not None and agreement < policy.min_agreement:
        detail = f"agrees with the serving model on {agreement:.1%} of {len(predictions)} canary texts"
        return Verdict(False, "canary_agreement", f"{detail} (< {policy.min_agreement:.1%})", agreement, accuracy)
    if accuracy is not None and accuracy < policy.min_accuracy:
        detail = f"labels {accuracy:.1%} of {len(labelled)} labelled canary texts right"
        return Verdict(False, "canary_accuracy", f"{detail} (< {policy.min_accuracy:.1%})", agreement, accuracy)
    return Verdict(True, "", "passed", agreement, accuracy)
